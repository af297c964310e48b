//! The console's Credentials page: the tenant's vault (data keys, which master key wraps them,
//! rotation) and each server's upstream credential (set, replace, remove; never shown).

use crate::api::{CredentialsView, IdentityAction};
use crate::identity::FormHead;
use leptos::prelude::*;

#[component]
pub fn Credentials(
    view: CredentialsView,
    csrf: String,
    action: ServerAction<IdentityAction>,
) -> impl IntoView {
    let keys = view
        .keys
        .into_iter()
        .map(|(id, created, retired, active)| {
            view! {
                <tr class="vault-key" data-active=if active { "true" } else { "false" }>
                    <td><code>{id}</code></td><td>{created}</td>
                    <td>{if active { "active".to_owned() } else { format!("retired {retired}") }}</td>
                </tr>
            }
        })
        .collect_view();
    let rows = view
        .servers
        .into_iter()
        .map(|s| {
            let (c1, c2) = (csrf.clone(), csrf.clone());
            let connected = (!s.connected.is_empty()).then(|| {
                let items = s
                    .connected
                    .iter()
                    .map(|(user_id, email, kind, since)| {
                        let csrf = csrf.clone();
                        let slug = s.slug.clone();
                        let user_id = user_id.clone();
                        let button_id = format!("end-{}-{}", s.slug, email.replace(['@', '.'], "-"));
                        view! {
                            <li class="connection">
                                {format!("{email} ({kind}, since {since}) ")}
                                <ActionForm action attr:class="inline">
                                    <FormHead csrf op="connection_end"/>
                                    <input type="hidden" name="form[slug]" value=slug/>
                                    <input type="hidden" name="form[user_id]" value=user_id/>
                                    <button type="submit" class="ghost danger" id=button_id>"End"</button>
                                </ActionForm>
                            </li>
                        }
                        .into_any()
                    })
                    .collect_view();
                view! { <ul class="connections">{items}</ul> }.into_any()
            });
            let (s1, s2) = (s.slug.clone(), s.slug.clone());
            let row_id = format!("credential-{}", s.slug);
            let http = s.transport == "streamable_http";
            let stdio = s.transport == "stdio";
            let set = !s.kind.is_empty();
            let per_user = matches!(s.kind.as_str(), "user_bearer" | "user_header" | "oauth");
            let status = if set && per_user {
                format!(
                    "{} — each user's own, in {} (since {}); {} user(s) connected",
                    s.kind,
                    s.header,
                    s.updated_at,
                    s.connected.len()
                )
            } else if set {
                format!("{} in {} (since {})", s.kind, s.header, s.updated_at)
            } else {
                "none".to_owned()
            };
            view! {
                <tr class="credential-row" id=row_id data-set=if set { "true" } else { "false" }>
                    <td>{s.name}" "<code>{s.slug}</code></td>
                    <td class="credential-status">{status}{connected}</td>
                    <td>
                        {if http {
                            view! {
                                <ActionForm action attr:class="inline">
                                    <FormHead csrf=c1 op="credential_set"/>
                                    <input type="hidden" name="form[slug]" value=s1/>
                                    <select name="form[kind]">
                                        <option value="bearer">"Bearer token"</option>
                                        <option value="header">"Header"</option>
                                        <option value="user_bearer">"Each user's own bearer token"</option>
                                        <option value="user_header">"Each user's own header"</option>
                                        <option value="oauth">"Each user's own OAuth account"</option>
                                    </select>
                                    <input type="text" name="form[header]" placeholder="X-Api-Key (for a header)"/>
                                    <input type="password" name="form[secret_value]" autocomplete="off" placeholder="secret (OAuth: client secret, optional)"/>
                                    <input type="text" name="form[client_id]" placeholder="OAuth client id (empty: register dynamically)"/>
                                    <input type="text" name="form[scopes]" placeholder="OAuth scopes (optional)"/>
                                    <input type="text" name="form[issuer]" placeholder="OAuth authorization server (empty: discover)"/>
                                    <button type="submit" class="primary">{if set { "Replace" } else { "Set" }}</button>
                                </ActionForm>
                            }
                            .into_any()
                        } else if stdio {
                            view! {
                                <ActionForm action attr:class="inline">
                                    <FormHead csrf=c1 op="credential_set"/>
                                    <input type="hidden" name="form[slug]" value=s1/>
                                    <input type="hidden" name="form[kind]" value="env"/>
                                    <input type="text" name="form[header]" placeholder="variable, e.g. GITHUB_TOKEN"/>
                                    <input type="password" name="form[secret_value]" autocomplete="off" placeholder="secret"/>
                                    <button type="submit" class="primary">{if set { "Replace" } else { "Set" }}</button>
                                </ActionForm>
                            }
                            .into_any()
                        } else {
                            view! { <span class="hint">"legacy SSE servers: not yet"</span> }.into_any()
                        }}
                        {set.then(|| view! {
                            <ActionForm action attr:class="inline">
                                <FormHead csrf=c2 op="credential_delete"/>
                                <input type="hidden" name="form[slug]" value=s2/>
                                <button type="submit" class="ghost danger">"Remove"</button>
                            </ActionForm>
                        })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card" id="vault">
            <h2>"Vault"</h2>
            <p class="hint">"Every secret of this tenant is encrypted (AES-256-GCM) under its data key; data keys are stored only wrapped by the master key (fingerprint "<code id="kek-fingerprint">{view.kek_fingerprint}</code>"). Rotating makes a new data key and re-encrypts every secret under it."</p>
            <p id="vault-secrets">{format!("{} secret(s) in the vault.", view.secrets)}</p>
            <table id="vault-keys">
                <thead><tr><th>"Data key"</th><th>"Made"</th><th>"State"</th></tr></thead>
                <tbody>{keys}</tbody>
            </table>
            <ActionForm action attr:class="inline">
                <FormHead csrf=csrf.clone() op="vault_rotate"/>
                <button type="submit" class="primary" id="vault-rotate">"Rotate the data key"</button>
            </ActionForm>
        </section>
        <section class="card" id="credentials">
            <h2>"Upstream credentials"</h2>
            <p class="hint">"The gateway injects a server's credential into every request to it; MCP clients never see it. Values are write-only: nobody can read them back here or in the API."</p>
            <table id="credential-list">
                <thead><tr><th>"Server"</th><th>"Credential"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        </section>
    }
}
