//! Identity and access in the UI: the console's identity provider & SCIM settings, users and
//! groups, registries with the server × group matrix, the policy simulator, and the user portal
//! at `/` (my servers and tools, client configuration snippets, my gateway tokens).
//!
//! Every form posts one server function, `identity_action`, with an `op` naming the form; it
//! works without JavaScript (the page reloads) and with it (the page state refetches).

use crate::api::{IdentityAction, IdentityView, PortalState, SimulationView};
use crate::FlashBox;
use leptos::prelude::*;
use leptos_meta::Title;

/// A hidden `form[op]` and the CSRF token: the head of every identity form.
#[component]
pub(crate) fn FormHead(csrf: String, op: &'static str) -> impl IntoView {
    view! {
        <input type="hidden" name="csrf" value=csrf/>
        <input type="hidden" name="form[op]" value=op/>
    }
}

/// Identity provider (SSO) and SCIM provisioning settings.
#[component]
pub fn IdentitySettings(
    identity: IdentityView,
    csrf: String,
    action: ServerAction<IdentityAction>,
    secret: Option<String>,
) -> impl IntoView {
    let sso = identity.sso.clone();
    let configured = sso.is_some();
    let (issuer, client_id, scopes, claim, domains, secret_set) = match &sso {
        Some(s) => (
            s.issuer.clone(),
            s.client_id.clone(),
            s.scopes.clone(),
            s.groups_claim.clone(),
            s.allowed_domains.clone(),
            s.client_secret_set,
        ),
        None => (
            String::new(),
            String::new(),
            "openid email profile groups".to_owned(),
            "groups".to_owned(),
            String::new(),
            false,
        ),
    };
    let csrf2 = csrf.clone();
    let csrf3 = csrf.clone();
    view! {
        <section class="card">
            <h2>"Single sign-on (OpenID Connect)"</h2>
            <p id="sso-status">
                {if configured {
                    "Users sign in at the portal with your identity provider."
                } else {
                    "Not set up: users cannot sign in yet. The admin token remains the break-glass sign-in."
                }}
            </p>
            <p class="hint">"Register this redirect URI at your identity provider: "
                <code id="sso-redirect-uri">{identity.redirect_uri.clone()}</code></p>
            <ActionForm action attr:id="sso-form" attr:class="stacked">
                <FormHead csrf=csrf.clone() op="save_sso"/>
                <label for="sso-issuer">"Issuer URL"</label>
                <input type="url" id="sso-issuer" name="form[issuer]" required value=issuer placeholder="https://login.example.com/oauth2/default"/>
                <label for="sso-client-id">"Client ID"</label>
                <input type="text" id="sso-client-id" name="form[client_id]" required value=client_id/>
                <label for="sso-client-secret">
                    {if secret_set { "Client secret (stored encrypted; leave empty to keep it)" } else { "Client secret" }}
                </label>
                <input type="password" id="sso-client-secret" name="form[client_secret]" autocomplete="off"/>
                <label for="sso-scopes">"Scopes (space-separated)"</label>
                <input type="text" id="sso-scopes" name="form[scopes]" value=scopes/>
                <label for="sso-groups-claim">"Claim that carries groups"</label>
                <input type="text" id="sso-groups-claim" name="form[groups_claim]" value=claim/>
                <label for="sso-domains">"Allowed email domains (comma-separated; empty: any)"</label>
                <input type="text" id="sso-domains" name="form[allowed_domains]" value=domains/>
                <button type="submit" class="primary" id="sso-save">"Save and check discovery"</button>
            </ActionForm>
        </section>
        <section class="card">
            <h2>"SCIM provisioning"</h2>
            <p>"Base URL for your identity provider: " <code id="scim-base-url">{identity.scim_base_url.clone()}</code></p>
            <p id="scim-status">
                {if identity.scim_enabled {
                    "A SCIM token is set. Generating a new one stops the old one at once."
                } else {
                    "No SCIM token yet: provisioning is off."
                }}
            </p>
            {secret.map(|t| view! {
                <div class="created" id="scim-token">
                    <p>"New SCIM token (shown only once; give it to your identity provider):"</p>
                    <p><code class="secret" id="scim-token-value">{t}</code></p>
                </div>
            })}
            <ActionForm action attr:class="inline">
                <FormHead csrf=csrf2 op="rotate_scim"/>
                <button type="submit" class="primary" id="scim-rotate">
                    {if identity.scim_enabled { "Generate a new SCIM token" } else { "Turn on SCIM: generate a token" }}
                </button>
            </ActionForm>
            {configured.then(|| view! {
                <ActionForm action attr:class="inline">
                    <FormHead csrf=csrf3 op="disable_sso"/>
                    <button type="submit" class="ghost danger" id="sso-disable">"Turn single sign-on off"</button>
                </ActionForm>
            })}
        </section>
    }
}

/// Users (groups, status, last seen) and groups.
#[component]
pub fn UsersAndGroups(
    identity: IdentityView,
    csrf: String,
    action: ServerAction<IdentityAction>,
) -> impl IntoView {
    let users = identity
        .users
        .into_iter()
        .map(|u| {
            let csrf = csrf.clone();
            let csrf2 = csrf.clone();
            let button_id = format!("toggle-{}", u.email.replace(['@', '.'], "-"));
            let revoke_id = format!("revoke-{}", u.email.replace(['@', '.'], "-"));
            let user_id = u.id.clone();
            let (label, next) = if u.active {
                ("Deactivate", "false")
            } else {
                ("Activate", "true")
            };
            view! {
                <tr class:inactive=!u.active>
                    <td>{u.email.clone()}{u.admin.then(|| view! { " " <span class="badge">"admin"</span> })}</td>
                    <td>{u.source}</td>
                    <td>{if u.groups.is_empty() { "—".to_owned() } else { u.groups.join(", ") }}</td>
                    <td>{if u.active { "active" } else { "deactivated" }}</td>
                    <td>{if u.last_seen.is_empty() { "never".to_owned() } else { u.last_seen }}</td>
                    <td>
                        <ActionForm action attr:class="inline">
                            <FormHead csrf op="set_active"/>
                            <input type="hidden" name="form[user_id]" value=u.id/>
                            <input type="hidden" name="form[active]" value=next/>
                            <button type="submit" class="ghost" id=button_id>{label}</button>
                        </ActionForm>
                        <ActionForm action attr:class="inline">
                            <FormHead csrf=csrf2 op="revoke_user"/>
                            <input type="hidden" name="form[user_id]" value=user_id/>
                            <button type="submit" class="ghost danger" id=revoke_id
                                title="Revoke every gateway token and end every console session of this user">
                                "Revoke all access"</button>
                        </ActionForm>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let groups_empty = identity.groups.is_empty();
    let groups = identity
        .groups
        .into_iter()
        .map(|g| view! { <tr><td>{g.name}</td><td>{g.source}</td><td>{g.members}</td></tr> })
        .collect_view();
    view! {
        <section class="card">
            <h2>"Users"</h2>
            <p class="hint">"Deactivating a user ends their gateway tokens, MCP sessions and console sessions at once."</p>
            <table class="table" id="user-table">
                <thead><tr><th>"Email"</th><th>"Source"</th><th>"Groups"</th><th>"Status"</th><th>"Last seen"</th><th></th></tr></thead>
                <tbody>{users}</tbody>
            </table>
        </section>
        <section class="card">
            <h2>"Groups"</h2>
            {if groups_empty {
                view! { <p id="no-groups">"No groups yet: they arrive with SCIM provisioning and SSO sign-ins, or when a registry is granted to group:NAME."</p> }.into_any()
            } else {
                view! {
                    <table class="table" id="group-table">
                        <thead><tr><th>"Group"</th><th>"Source"</th><th>"Members"</th></tr></thead>
                        <tbody>{groups}</tbody>
                    </table>
                }.into_any()
            }}
        </section>
    }
}

/// Registries, their grants, and the server × group matrix.
#[component]
pub fn Registries(
    identity: IdentityView,
    csrf: String,
    action: ServerAction<IdentityAction>,
) -> impl IntoView {
    let empty = identity.registries.is_empty();
    let list = identity
        .registries
        .into_iter()
        .map(|r| {
            let article_id = format!("registry-{}", r.slug);
            let (csrf_servers, csrf_grant, csrf_delete) = (csrf.clone(), csrf.clone(), csrf.clone());
            let (slug_servers, slug_grant, slug_delete) = (r.slug.clone(), r.slug.clone(), r.slug.clone());
            let delete_id = format!("delete-registry-{}", r.slug);
            let servers_id = format!("registry-servers-{}", r.slug);
            let grants = r
                .grants
                .into_iter()
                .map(|g| {
                    let csrf = csrf.clone();
                    let slug = r.slug.clone();
                    let remove_id = format!("remove-grant-{}-{}", r.slug, g.subject.replace([':', '@', '.'], "-"));
                    view! {
                        <li>
                            <strong>{g.subject}</strong>
                            {if g.rules.is_empty() {
                                view! { " — everything on these servers" }.into_any()
                            } else {
                                view! { <ul class="rules">{g.rules.into_iter().map(|t| view! { <li><code>{t}</code></li> }).collect_view()}</ul> }.into_any()
                            }}
                            <ActionForm action attr:class="inline">
                                <FormHead csrf op="delete_grant"/>
                                <input type="hidden" name="form[slug]" value=slug/>
                                <input type="hidden" name="form[grant_id]" value=g.id/>
                                <button type="submit" class="ghost danger" id=remove_id>"Remove grant"</button>
                            </ActionForm>
                        </li>
                    }
                })
                .collect_view();
            view! {
                <article class="registry" id=article_id>
                    <h3>{r.name}" " <code>{r.slug.clone()}</code></h3>
                    <ActionForm action attr:class="inline">
                        <FormHead csrf=csrf_servers op="update_registry"/>
                        <input type="hidden" name="form[slug]" value=slug_servers/>
                        <label for=servers_id.clone()>"Servers "</label>
                        <input type="text" id=servers_id name="form[servers]" value=r.servers.join(", ")/>
                        <button type="submit" class="ghost">"Save servers"</button>
                    </ActionForm>
                    <ul class="grants">{grants}</ul>
                    <ActionForm action attr:class="inline">
                        <FormHead csrf=csrf_grant op="add_grant"/>
                        <input type="hidden" name="form[slug]" value=slug_grant/>
                        <input type="text" name="form[grants]" required placeholder="group:NAME, user:EMAIL or everyone" aria-label="Grant to"/>
                        <input type="text" name="form[rules]" placeholder="rules (JSON, optional)" aria-label="Rules"/>
                        <button type="submit" class="ghost">"Add grant"</button>
                    </ActionForm>
                    <ActionForm action attr:class="inline">
                        <FormHead csrf=csrf_delete op="delete_registry"/>
                        <input type="hidden" name="form[slug]" value=slug_delete/>
                        <button type="submit" class="ghost danger" id=delete_id>"Delete registry"</button>
                    </ActionForm>
                </article>
            }
        })
        .collect_view();
    let matrix = identity.matrix;
    let matrix_empty = matrix.rows.is_empty() || matrix.groups.is_empty();
    let header = matrix
        .groups
        .iter()
        .map(|g| view! { <th>{g.clone()}</th> })
        .collect_view();
    let rows = matrix
        .rows
        .into_iter()
        .map(|(server, cells)| {
            view! {
                <tr>
                    <th scope="row"><code>{server}</code></th>
                    {cells.into_iter().map(|c| view! { <td>{c}</td> }).collect_view()}
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card">
            {if empty {
                view! {
                    <p id="no-registries">
                        "No registries: this tenant grants nothing to anyone yet. Every MCP server stays "
                        "invisible until a registry holding it is mapped to a group, a user or everyone."
                    </p>
                }.into_any()
            } else {
                view! { <div id="registry-list">{list}</div> }.into_any()
            }}
        </section>
        <section class="card">
            <h2>"Who may call what: servers × groups"</h2>
            {if matrix_empty {
                view! { <p class="hint">"Appears once registries map servers to groups or to everyone."</p> }.into_any()
            } else {
                view! {
                    <table class="table matrix" id="access-matrix">
                        <thead><tr><th>"Server"</th>{header}</tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="card">
            <h2>"New registry"</h2>
            <ActionForm action attr:id="registry-form" attr:class="stacked">
                <FormHead csrf=csrf.clone() op="create_registry"/>
                <label for="registry-slug">"Slug"</label>
                <input type="text" id="registry-slug" name="form[slug]" required maxlength="63"/>
                <label for="registry-name">"Name"</label>
                <input type="text" id="registry-name" name="form[name]" maxlength="200" placeholder="Engineering tools"/>
                <label for="registry-servers">"Servers (slugs, comma-separated)"</label>
                <input type="text" id="registry-servers" name="form[servers]" placeholder="crm, github"/>
                <label for="registry-grants">"Granted to (comma-separated: everyone, group:NAME, user:EMAIL)"</label>
                <input type="text" id="registry-grants" name="form[grants]" placeholder="group:engineering"/>
                <label for="registry-rules">"Rules for these grants (JSON list; empty: everything)"</label>
                <textarea id="registry-rules" name="form[rules]" rows="4"
                    placeholder=r#"[{"effect": "deny", "annotations": {"destructive": true}}]"#></textarea>
                <button type="submit" class="primary" id="registry-submit">"Create registry"</button>
            </ActionForm>
        </section>
    }
}

/// The policy simulator.
#[component]
pub fn Simulator(
    csrf: String,
    action: ServerAction<IdentityAction>,
    simulation: Option<SimulationView>,
) -> impl IntoView {
    let (csrf_who, csrf_reach) = (csrf.clone(), csrf.clone());
    view! {
        <section class="card">
            <h2>"Policy simulator"</h2>
            <p class="hint">"Can this user call this tool? The decision, the rule that made it and the chain that led there."</p>
            <ActionForm action attr:id="simulate-form" attr:class="stacked">
                <FormHead csrf op="simulate"/>
                <label for="sim-user">"User's email"</label>
                <input type="email" id="sim-user" name="form[user]" required/>
                <label for="sim-server">"Server"</label>
                <input type="text" id="sim-server" name="form[server]" required/>
                <label for="sim-tool">"Tool"</label>
                <input type="text" id="sim-tool" name="form[tool]" required/>
                <label for="sim-arguments">"Arguments (JSON object, optional)"</label>
                <input type="text" id="sim-arguments" name="form[arguments]" placeholder=r#"{"region": "EU"}"#/>
                <button type="submit" class="primary" id="simulate-submit">"Explain"</button>
            </ActionForm>
            <div class="grid">
                <ActionForm action attr:id="who-can-form" attr:class="stacked">
                    <FormHead csrf=csrf_who op="who_can"/>
                    <h3>"Who can call…"</h3>
                    <label for="who-server">"Server"</label>
                    <input type="text" id="who-server" name="form[server]" required/>
                    <label for="who-tool">"Tool"</label>
                    <input type="text" id="who-tool" name="form[tool]" required/>
                    <button type="submit" class="ghost" id="who-can-submit">"Who can?"</button>
                </ActionForm>
                <ActionForm action attr:id="reach-form" attr:class="stacked">
                    <FormHead csrf=csrf_reach op="reach"/>
                    <h3>"What can … reach?"</h3>
                    <label for="reach-user">"User's email"</label>
                    <input type="email" id="reach-user" name="form[user]" required/>
                    <button type="submit" class="ghost" id="reach-submit">"What can they reach?"</button>
                </ActionForm>
            </div>
            {simulation.map(|s| view! {
                <div class="created" id="simulation">
                    <p>{s.question}</p>
                    <p><strong id="simulation-decision">{s.decision}</strong>": " <span id="simulation-reason">{s.reason}</span></p>
                    <ol id="simulation-chain">{s.chain.into_iter().map(|c| view! { <li>{c}</li> }).collect_view()}</ol>
                </div>
            })}
        </section>
    }
}

/// "Your account" on a portal server card: connect, set, or disconnect the user's own
/// upstream account (a server that takes each user's own).
fn account_box(
    slug: &str,
    account: &str,
    since: &str,
    csrf: &str,
    action: ServerAction<IdentityAction>,
) -> Option<AnyView> {
    if account.is_empty() {
        return None;
    }
    let connected = !since.is_empty();
    let box_id = format!("account-{slug}");
    let disconnect = connected.then(|| {
        let csrf = csrf.to_owned();
        let slug_value = slug.to_owned();
        let button_id = format!("disconnect-{slug}");
        let label = if account == "oauth" {
            "Disconnect"
        } else {
            "Remove my secret"
        };
        view! {
            <ActionForm action attr:class="inline">
                <FormHead csrf op="portal_disconnect"/>
                <input type="hidden" name="form[slug]" value=slug_value/>
                <button type="submit" class="ghost danger" id=button_id>{label}</button>
            </ActionForm>
        }
    });
    let status = if connected {
        format!("Connected since {since}.")
    } else {
        "Not connected: calls to this server are refused until you connect.".to_owned()
    };
    let body = if account == "oauth" {
        let connect = (!connected).then(|| {
            let href = format!("/connect/{slug}");
            let id = format!("connect-{slug}");
            view! { <a class="button primary" href=href id=id rel="external">"Connect your account"</a> }
        });
        view! {
            <p class="hint">"This server works with your own account there. Portcullis keeps its tokens; your MCP clients never see them."</p>
            <p class="account-status">{status}</p>
            {connect}
            {disconnect}
        }
        .into_any()
    } else {
        let csrf = csrf.to_owned();
        let slug_value = slug.to_owned();
        let input_id = format!("secret-{slug}");
        let save_id = format!("save-secret-{slug}");
        view! {
            <p class="hint">"This server needs a secret of your own (an API key or token of yours). Portcullis keeps it encrypted and sends it only to this server."</p>
            <p class="account-status">{status}</p>
            <ActionForm action attr:class="inline">
                <FormHead csrf op="portal_set_secret"/>
                <input type="hidden" name="form[slug]" value=slug_value/>
                <input type="password" name="form[secret_value]" id=input_id autocomplete="off" placeholder="your secret" required/>
                <button type="submit" id=save_id>{if connected { "Replace" } else { "Save" }}</button>
            </ActionForm>
            {disconnect}
        }
        .into_any()
    };
    Some(
        view! {
            <section class="account" id=box_id>
                <h3>"Your account"</h3>
                {body}
            </section>
        }
        .into_any(),
    )
}

/// The user portal: sign in with SSO; then my servers and tools, how to connect, my tokens.
#[component]
pub fn Portal(state: PortalState, action: ServerAction<IdentityAction>) -> impl IntoView {
    let PortalState {
        tenant_name,
        csrf,
        flash,
        sso_enabled,
        user,
    } = state;
    let Some(user) = user else {
        return view! {
            <Title text=format!("{tenant_name} · Portcullis")/>
            <main class="centered">
                <section class="card narrow">
                    <p class="brand">"Portcullis"</p>
                    <h1>{tenant_name}</h1>
                    <FlashBox flash/>
                    {if sso_enabled {
                        view! {
                            <p>"Sign in with your company account to see the MCP servers and tools you may use."</p>
                            <p><a class="button primary" id="sso-sign-in" href="/auth/login" rel="external">"Sign in with single sign-on"</a></p>
                        }.into_any()
                    } else {
                        view! {
                            <p id="sso-not-configured">
                                "Signing in with your company account (single sign-on) is not configured for this organisation yet."
                            </p>
                        }.into_any()
                    }}
                    <p><a href="/admin">"Administrator sign-in"</a></p>
                </section>
            </main>
        }
        .into_any();
    };
    let no_servers = user.servers.is_empty();
    let servers = user
        .servers
        .into_iter()
        .map(|s| {
            let tools = if s.tools.is_empty() {
                view! { <p class="hint">"Tools appear here once the gateway has seen them (an administrator's review or any client's tool list)."</p> }.into_any()
            } else {
                view! { <ul class="tools">{s.tools.into_iter().map(|t| view! { <li><code>{t}</code></li> }).collect_view()}</ul> }.into_any()
            };
            let snippets = s
                .snippets
                .into_iter()
                .map(|(client, file, body)| {
                    view! {
                        <details class="snippet">
                            <summary>{client}</summary>
                            <p class="hint">{file}</p>
                            <pre><code>{body}</code></pre>
                        </details>
                    }
                })
                .collect_view();
            let article_id = format!("portal-server-{}", s.slug);
            let account = account_box(&s.slug, &s.account, &s.connected_since, &csrf, action);
            view! {
                <article class="card portal-server" id=article_id>
                    <h2>{s.name}" " <code>{s.slug}</code></h2>
                    <p>{s.description}</p>
                    <p>"Connect URL: " <code class="endpoint">{s.endpoint}</code></p>
                    {account}
                    {tools}
                    {snippets}
                </article>
            }
        })
        .collect_view();
    let tokens_empty = user.tokens.is_empty();
    let tokens = user
        .tokens
        .into_iter()
        .map(|t| {
            let csrf = csrf.clone();
            let button_id = format!("revoke-token-{}", t.id);
            view! {
                <tr>
                    <td>{t.label}</td><td>{t.created_at}</td><td>{t.last_used_at}</td><td>{t.expires_at}</td>
                    <td>
                        <ActionForm action attr:class="inline">
                            <FormHead csrf op="portal_revoke_token"/>
                            <input type="hidden" name="form[grant_id]" value=t.id/>
                            <button type="submit" class="ghost danger" id=button_id>"Revoke"</button>
                        </ActionForm>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let csrf_out = csrf.clone();
    let apps_empty = user.apps.is_empty();
    let apps = user
        .apps
        .into_iter()
        .map(|a| {
            let csrf = csrf.clone();
            let button_id = format!("revoke-app-{}", a.id);
            view! {
                <tr class="app-row">
                    <td>{a.client}</td><td>{a.server}</td><td>{a.since}</td>
                    <td>
                        <ActionForm action attr:class="inline">
                            <FormHead csrf op="portal_revoke_app"/>
                            <input type="hidden" name="form[grant_id]" value=a.id/>
                            <button type="submit" class="ghost danger" id=button_id>"Revoke"</button>
                        </ActionForm>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <Title text=format!("My MCP servers · {tenant_name} · Portcullis")/>
        <main class="portal">
            <header class="topbar">
                <span class="brand">"Portcullis"</span>
                <span class="tenant-name">{tenant_name}</span>
                <span class="spacer"></span>
                <span class="who" id="portal-user">{user.email}</span>
                {user.is_admin.then(|| view! { <a href="/admin">"Console"</a> })}
                <form method="post" action="/auth/logout" class="inline">
                    <input type="hidden" name="csrf" value=csrf_out/>
                    <button type="submit" class="ghost" id="portal-sign-out">"Sign out"</button>
                </form>
            </header>
            <FlashBox flash/>
            <h1>"My servers and tools"</h1>
            {if no_servers {
                view! { <p id="portal-no-servers">"No MCP server is granted to you yet. Ask your administrator."</p> }.into_any()
            } else {
                view! { <div id="portal-servers">{servers}</div> }.into_any()
            }}
            <section class="card">
                <h2>"My gateway tokens"</h2>
                <p class="hint">"MCP clients send one of these as a bearer token. Each is shown once, when it is made."</p>
                {user.new_token.map(|t| view! {
                    <div class="created" id="portal-new-token">
                        <p>"Your new token (shown only once):"</p>
                        <p><code class="secret" id="portal-new-token-value">{t}</code></p>
                    </div>
                })}
                {if tokens_empty {
                    view! { <p id="portal-no-tokens">"No tokens yet."</p> }.into_any()
                } else {
                    view! {
                        <table class="table" id="portal-tokens">
                            <thead><tr><th>"Label"</th><th>"Created"</th><th>"Last used"</th><th>"Expires"</th><th></th></tr></thead>
                            <tbody>{tokens}</tbody>
                        </table>
                    }.into_any()
                }}
                <h3>"Connected apps"</h3>
                <p class="hint">"MCP clients you allowed through the sign-in and consent page (OAuth). Revoking one ends its access at once."</p>
                {if apps_empty {
                    view! { <p id="portal-no-apps">"No apps connected."</p> }.into_any()
                } else {
                    view! {
                        <table class="table" id="portal-apps">
                            <thead><tr><th>"App"</th><th>"Server"</th><th>"Since"</th><th></th></tr></thead>
                            <tbody>{apps}</tbody>
                        </table>
                    }.into_any()
                }}
                <ActionForm action attr:id="portal-token-form" attr:class="stacked">
                    <FormHead csrf op="portal_token"/>
                    <label for="portal-token-label">"Label (where you will use it)"</label>
                    <input type="text" id="portal-token-label" name="form[label]" maxlength="100" placeholder="laptop: Claude Desktop"/>
                    <button type="submit" class="primary" id="portal-token-submit">"Create a token"</button>
                </ActionForm>
            </section>
        </main>
    }
    .into_any()
}

/// Rate limits and quotas: the rules, and a form to add one.
#[component]
pub fn Limits(
    limits: Vec<crate::api::LimitView>,
    csrf: String,
    action: ServerAction<IdentityAction>,
) -> impl IntoView {
    let empty = limits.is_empty();
    let rows = limits
        .into_iter()
        .map(|l| {
            let csrf = csrf.clone();
            view! {
                <tr class="limit-row">
                    <td>{l.subject}</td><td><code>{l.value}</code></td><td>{l.limits}</td>
                    <td>
                        <ActionForm action attr:class="inline">
                            <FormHead csrf op="delete_limit"/>
                            <input type="hidden" name="form[limit_id]" value=l.id/>
                            <button type="submit" class="ghost danger">"Remove"</button>
                        </ActionForm>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card" id="limits">
            <h2>"Rate limits and quotas"</h2>
            <p class="hint">"A call over a limit gets HTTP 429 and a JSON-RPC error saying when to retry; every throttle is in the audit log. Windows are fixed UTC minutes and days; replicas share their counts within about a second (concurrent calls count per replica)."</p>
            {if empty { Some(view! { <p id="no-limits">"No limits: calls are not throttled."</p> }) } else { None }}
            <table id="limit-list">
                <thead><tr><th>"Applies to"</th><th>"Value"</th><th>"Limits"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <ActionForm action attr:class="stacked" attr:id="limit-form">
                <FormHead csrf=csrf.clone() op="add_limit"/>
                <label for="limit-subject">"Applies to"</label>
                <select id="limit-subject" name="form[subject]">
                    <option value="user">"each user (or one, by email)"</option>
                    <option value="agent">"each agent (token or OAuth client name)"</option>
                    <option value="client">"each MCP client (clientInfo name)"</option>
                    <option value="server">"each server (or one, by slug)"</option>
                    <option value="tool">"each tool (or one, by name)"</option>
                </select>
                <label for="limit-value">"Value (* for each separately)"</label>
                <input type="text" id="limit-value" name="form[value]" value="*"/>
                <label for="limit-per-minute">"Requests per minute"</label>
                <input type="number" min="1" id="limit-per-minute" name="form[per_minute]"/>
                <label for="limit-concurrent">"Calls at once"</label>
                <input type="number" min="1" id="limit-concurrent" name="form[concurrent]"/>
                <label for="limit-per-day">"Requests per day"</label>
                <input type="number" min="1" id="limit-per-day" name="form[per_day]"/>
                <button type="submit" class="primary" id="limit-add">"Add limit"</button>
            </ActionForm>
        </section>
    }
}

/// Human approval: pending calls to approve or deny, recent decisions, and the rules.
#[component]
pub fn Approvals(
    rules: Vec<crate::api::ApprovalRuleView>,
    approvals: Vec<crate::api::ApprovalView>,
    csrf: String,
    action: ServerAction<IdentityAction>,
) -> impl IntoView {
    let no_rules = rules.is_empty();
    let rule_rows = rules
        .into_iter()
        .map(|r| {
            let csrf = csrf.clone();
            view! {
                <li class="approval-rule">{r.summary}" "
                    <ActionForm action attr:class="inline">
                        <FormHead csrf op="delete_approval_rule"/>
                        <input type="hidden" name="form[rule_id]" value=r.id/>
                        <button type="submit" class="ghost danger">"Remove"</button>
                    </ActionForm>
                </li>
            }
        })
        .collect_view();
    let no_requests = approvals.is_empty();
    let request_rows = approvals
        .into_iter()
        .map(|a| {
            let pending = a.status == "pending";
            let (csrf_a, csrf_d) = (csrf.clone(), csrf.clone());
            let (id_a, id_d) = (a.id.clone(), a.id.clone());
            let approve_id = format!("approve-{}", a.id);
            let deny_id = format!("deny-{}", a.id);
            view! {
                <tr class="approval-row" data-status=a.status.clone()>
                    <td>{a.created_at}</td><td>{a.user}</td><td>{a.server}</td><td><code>{a.tool}</code></td>
                    <td><code class="args">{a.arguments}</code></td>
                    <td>{if pending { "waiting".to_owned() } else { format!("{} {}", a.status, a.decided_by) }}</td>
                    <td>
                        {pending.then(|| view! {
                            <ActionForm action attr:class="inline">
                                <FormHead csrf=csrf_a op="approve"/>
                                <input type="hidden" name="form[approval_id]" value=id_a/>
                                <button type="submit" class="primary" id=approve_id>"Approve"</button>
                            </ActionForm>
                            <ActionForm action attr:class="inline">
                                <FormHead csrf=csrf_d op="deny"/>
                                <input type="hidden" name="form[approval_id]" value=id_d/>
                                <button type="submit" class="ghost danger" id=deny_id>"Deny"</button>
                            </ActionForm>
                        })}
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card" id="approvals">
            <h2>"Approvals"</h2>
            <p class="hint">"A call a rule covers waits, before it reaches the server, until someone here approves it; no decision in time is a denial. Every request and decision is in the audit log. Reload to see new requests."</p>
            {if no_requests { Some(view! { <p id="no-approvals">"No approval requests."</p> }) } else { None }}
            <table id="approval-list">
                <thead><tr><th>"Asked"</th><th>"User"</th><th>"Server"</th><th>"Tool"</th><th>"Arguments"</th><th>"Status"</th><th></th></tr></thead>
                <tbody>{request_rows}</tbody>
            </table>
            <h3>"Rules"</h3>
            {if no_rules { Some(view! { <p id="no-approval-rules">"No rules: no call waits for approval."</p> }) } else { None }}
            <ul id="approval-rules">{rule_rows}</ul>
            <ActionForm action attr:class="stacked" attr:id="approval-rule-form">
                <FormHead csrf=csrf.clone() op="add_approval_rule"/>
                <label for="approval-server">"Server (slug, or * for all)"</label>
                <input type="text" id="approval-server" name="form[server]" value="*"/>
                <label for="approval-tool">"Tool (name or glob)"</label>
                <input type="text" id="approval-tool" name="form[tool]" value="*"/>
                <label for="approval-applies">"Which calls"</label>
                <select id="approval-applies" name="form[applies]">
                    <option value="destructive">"Tools marked (or presumed) destructive"</option>
                    <option value="always">"Every call of these tools"</option>
                </select>
                <label for="approval-timeout">"Seconds to wait for a decision"</label>
                <input type="number" min="1" max="3600" id="approval-timeout" name="form[timeout]" value="300"/>
                <button type="submit" class="primary" id="approval-rule-add">"Add rule"</button>
            </ActionForm>
        </section>
    }
}
