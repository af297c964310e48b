//! The console's Agents page: each agent's tool set, endpoint, tokens and blast radius (which
//! systems and tools it reaches, which of them write, destroy or reach outside), and the forms
//! to create, edit, disable, issue tokens for, revoke and delete agents. Every form posts
//! `identity_action` with an `agent_*` op, so it works without JavaScript too.

use crate::api::{AgentView, IdentityAction};
use crate::identity::FormHead;
use leptos::prelude::*;

#[component]
pub fn Agents(
    agents: Vec<AgentView>,
    users: Vec<String>,
    servers: Vec<String>,
    csrf: String,
    action: ServerAction<IdentityAction>,
    secret: Option<String>,
) -> impl IntoView {
    let empty = agents.is_empty();
    let cards = agents
        .into_iter()
        .map(|a| {
            let (c1, c2, c3, c4) = (csrf.clone(), csrf.clone(), csrf.clone(), csrf.clone());
            let (s1, s2, s3, s4) = (a.slug.clone(), a.slug.clone(), a.slug.clone(), a.slug.clone());
            let card_id = format!("agent-{}", a.slug);
            let state = if a.enabled {
                "enabled".to_owned()
            } else if a.disabled {
                "disabled".to_owned()
            } else {
                "stopped: its owner is deactivated".to_owned()
            };
            let tokens = a
                .tokens
                .iter()
                .map(|t| {
                    let used = if t.last_used_at.is_empty() { "never used".to_owned() } else { format!("last used {}", t.last_used_at) };
                    let expires = if t.expires_at.is_empty() { "no expiry".to_owned() } else { format!("expires {}", t.expires_at) };
                    view! { <li class="agent-token">{t.label.clone()}" — created "{t.created_at.clone()}", "{used}", "{expires}</li> }
                })
                .collect_view();
            let no_tokens = a.tokens.is_empty();
            let systems = a
                .systems
                .into_iter()
                .map(|s| {
                    let tools = s
                        .tools
                        .into_iter()
                        .map(|(name, kind, outside)| {
                            view! {
                                <li class="reach-tool" data-kind=kind.clone()>
                                    <code>{name}</code>" "<span class=format!("tag {kind}")>{kind.clone()}</span>
                                    {outside.then(|| view! { " " <span class="tag outside">"reaches outside"</span> })}
                                </li>
                            }
                        })
                        .collect_view();
                    let unmatched = (!s.unmatched.is_empty()).then(|| {
                        view! { <p class="hint">"Also named, not seen yet: "<code>{s.unmatched.clone()}</code></p> }
                    });
                    let server = s.server.clone();
                    view! {
                        <div class="reach-system" data-server=server>
                            <h4>{s.name}" ("<code>{s.server}</code>")"
                                {(!s.reachable).then(|| view! { " " <span class="tag destructive">"not reachable now"</span> })}
                            </h4>
                            <ul>{tools}</ul>
                            {unmatched}
                        </div>
                    }
                })
                .collect_view();
            view! {
                <section class="card agent" id=card_id data-enabled=if a.enabled { "true" } else { "false" }>
                    <h2>{a.name}" "<code>{a.slug.clone()}</code></h2>
                    <p>"Owner: "{a.owner}" · "<span class="agent-state">{state}</span></p>
                    <p>"Endpoint: "<code class="agent-endpoint">{a.endpoint}</code></p>
                    <h3>"Blast radius"</h3>
                    <p class="agent-radius">{a.radius}</p>
                    {systems}
                    <h3>"Tool set"</h3>
                    <ActionForm action attr:class="stacked">
                        <FormHead csrf=c1 op="agent_update"/>
                        <input type="hidden" name="form[slug]" value=s1/>
                        <label>"One line per server: server: tool, tool (globs allowed)"</label>
                        <textarea name="form[tool_set]" rows="3" class="agent-tool-set">{a.tool_set}</textarea>
                        <label>
                            <select name="form[active]">
                                <option value="true" selected=!a.disabled>"Enabled"</option>
                                <option value="false" selected=a.disabled>"Disabled"</option>
                            </select>
                        </label>
                        <button type="submit" class="primary">"Save"</button>
                    </ActionForm>
                    <h3>"Tokens"</h3>
                    {if no_tokens { Some(view! { <p class="hint">"No tokens: nothing can act as this agent."</p> }) } else { None }}
                    <ul class="agent-tokens">{tokens}</ul>
                    <ActionForm action attr:class="inline">
                        <FormHead csrf=c2 op="agent_token"/>
                        <input type="hidden" name="form[slug]" value=s2/>
                        <input type="text" name="form[label]" placeholder="label"/>
                        <button type="submit" class="primary">"Issue a token"</button>
                    </ActionForm>
                    <ActionForm action attr:class="inline">
                        <FormHead csrf=c3 op="agent_revoke"/>
                        <input type="hidden" name="form[slug]" value=s3/>
                        <button type="submit" class="ghost danger">"Revoke all its tokens"</button>
                    </ActionForm>
                    <ActionForm action attr:class="inline">
                        <FormHead csrf=c4 op="agent_delete"/>
                        <input type="hidden" name="form[slug]" value=s4/>
                        <button type="submit" class="ghost danger">"Delete agent"</button>
                    </ActionForm>
                </section>
            }
        })
        .collect_view();
    let owners = users
        .into_iter()
        .map(|u| view! { <option value=u.clone()>{u.clone()}</option> })
        .collect_view();
    let server_hint = if servers.is_empty() {
        "No servers yet: add one first.".to_owned()
    } else {
        format!("Servers: {}", servers.join(", "))
    };
    view! {
        {secret.map(|t| view! {
            <section class="card created" id="agent-token">
                <p>"New agent token (shown only once; the agent sends it as a bearer token to its endpoint):"</p>
                <p><code class="secret" id="agent-token-value">{t}</code></p>
            </section>
        })}
        {if empty { Some(view! { <section class="card"><p id="no-agents">"No agents yet."</p></section> }) } else { None }}
        {cards}
        <section class="card" id="agent-new">
            <h2>"New agent"</h2>
            <p class="hint">"An agent reaches only its tool set, and only as far as its owner may: deactivating the owner stops it. A tenant-owned agent has exactly its set."</p>
            <ActionForm action attr:class="stacked" attr:id="agent-form">
                <FormHead csrf=csrf.clone() op="agent_create"/>
                <label for="agent-slug">"Slug (its endpoint is /mcp/agents/slug)"</label>
                <input type="text" id="agent-slug" name="form[slug]" required/>
                <label for="agent-name">"Name"</label>
                <input type="text" id="agent-name" name="form[name]"/>
                <label for="agent-owner">"Owner"</label>
                <select id="agent-owner" name="form[owner]">
                    <option value="">"the tenant"</option>
                    {owners}
                </select>
                <label for="agent-tools">"Tool set: one line per server, server: tool, tool"</label>
                <textarea id="agent-tools" name="form[tool_set]" rows="4" placeholder="crm: search_contacts, get_contact"></textarea>
                <p class="hint">{server_hint}</p>
                <button type="submit" class="primary" id="agent-create">"Create agent"</button>
            </ActionForm>
        </section>
    }
}
