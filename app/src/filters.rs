//! The console's Filters page: what the gateway does with personal data, secrets and prompt
//! injection per server (and the tenant's default), a box to try a policy on a text, the
//! queue of tools held by definition pinning (with diffs), and filtering activity per day.

use crate::api::{FiltersView, IdentityAction, SimulationView};
use crate::identity::FormHead;
use leptos::prelude::*;

fn select(name: &'static str, options: &'static [&'static str], current: String) -> impl IntoView {
    let opts = options
        .iter()
        .map(|o| {
            let selected = *o == current;
            view! { <option value=*o selected=selected>{*o}</option> }
        })
        .collect_view();
    view! { <select name=name>{opts}</select> }
}

const DATA_ACTIONS: &[&str] = &["off", "log", "redact", "mask", "block"];
const INJECTION_ACTIONS: &[&str] = &["off", "log", "flag", "block"];
const DATA_OR_INHERIT: &[&str] = &["inherit", "off", "log", "redact", "mask", "block"];
const INJECTION_OR_INHERIT: &[&str] = &["inherit", "off", "log", "flag", "block"];
/// The detector's types, as policies name them.
const TYPES: &[&str] = &[
    "EMAIL",
    "PHONE",
    "CREDIT_CARD",
    "IBAN",
    "US_SSN",
    "NATIONAL_ID",
    "DATE_OF_BIRTH",
    "POSTAL_ADDRESS",
    "PERSON_NAME",
    "IP_ADDRESS",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "GCP_API_KEY",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "SLACK_TOKEN",
    "STRIPE_KEY",
    "JWT",
    "PRIVATE_KEY",
    "DATABASE_URL",
    "GENERIC_SECRET",
];

#[component]
pub fn Filters(
    view: FiltersView,
    csrf: String,
    action: ServerAction<IdentityAction>,
    result: Option<SimulationView>,
    /// A hook's signing secret, just made (shown once).
    secret: Option<String>,
) -> impl IntoView {
    let no_changes = view.changes_empty();
    let inventory = view
        .inventory
        .iter()
        .map(|(server, category, class, answers, last)| {
            view! {
                <tr class="inventory-row">
                    <td><code>{server.clone()}</code></td><td>{category.clone()}</td><td>{class.clone()}</td>
                    <td>{answers.to_string()}</td><td>{last.clone()}</td>
                </tr>
            }
        })
        .collect_view();
    let csrf_hooks = csrf.clone();
    let hooks = view
        .hooks
        .iter()
        .map(|(id, server, url, timeout, fail)| {
            let c = csrf_hooks.clone();
            let hook_id = id.clone();
            view! {
                <tr class="hook-row">
                    <td><code>{id.clone()}</code></td>
                    <td>{if server == "*" { "every server".to_owned() } else { server.clone() }}</td>
                    <td><code>{url.clone()}</code></td><td>{format!("{timeout} ms")}</td><td>{format!("fails {fail}")}</td>
                    <td>
                        <ActionForm action attr:class="inline">
                            <FormHead csrf=c op="filter_hook_remove"/>
                            <input type="hidden" name="form[hook_id]" value=hook_id/>
                            <button type="submit" class="ghost danger remove-hook">"Remove"</button>
                        </ActionForm>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let no_hooks = view.hooks.is_empty();
    let policies = view
        .policies
        .iter()
        .map(|p| {
            let scope = if p.scope == "*" {
                "default (every server without its own)".to_owned()
            } else {
                p.scope.clone()
            };
            let row_id = format!(
                "filter-{}",
                if p.scope == "*" { "default" } else { &p.scope }
            );
            let tools = p
                .tools
                .iter()
                .map(|t| view! { <li class="tool-rule">{t.clone()}</li> })
                .collect_view();
            view! {
                <tr class="filter-policy" id=row_id>
                    <td>{scope}</td><td>{p.pii.clone()}</td><td>{p.secrets.clone()}</td>
                    <td>{p.injection.clone()}</td><td>{p.arguments.clone()}</td>
                    <td class="entity-rules">{p.entities.join(", ")}</td>
                    <td><ul class="tool-rules">{tools}</ul></td>
                </tr>
            }
        })
        .collect_view();
    let mut scopes = vec!["*".to_owned()];
    scopes.extend(view.servers.iter().cloned());
    // One `<option>` list per form (a view is used once).
    let option_list = |scopes: &[String]| {
        scopes
            .iter()
            .map(|s| {
                let label = if s == "*" {
                    "default".to_owned()
                } else {
                    s.clone()
                };
                view! { <option value=s.clone()>{label}</option> }
            })
            .collect_view()
    };
    let (scope_options, try_options, entity_scopes, tool_scopes, hook_scopes) = (
        option_list(&scopes),
        option_list(&scopes),
        option_list(&scopes),
        option_list(&scopes),
        option_list(&scopes),
    );
    let type_options = TYPES
        .iter()
        .map(|t| view! { <option value=*t>{*t}</option> })
        .collect_view();
    let (csrf_entity, csrf_tool, csrf_hook) = (csrf.clone(), csrf.clone(), csrf.clone());
    let csrf_changes = csrf.clone();
    let changes = view
        .changes
        .into_iter()
        .map(move |c| {
            let (c1, c2) = (csrf_changes.clone(), csrf_changes.clone());
            let id = format!("change-{}-{}", c.server, c.tool);
            let diff = c
                .diff
                .iter()
                .map(|l| {
                    let class = match l.chars().next() {
                        Some('+') => "add",
                        Some('-') => "del",
                        _ => "same",
                    };
                    view! { <span class=class>{l.clone()}"\n"</span> }
                })
                .collect_view();
            let (s1, s2, t1, t2, d1, d2) = (
                c.server.clone(),
                c.server.clone(),
                c.tool.clone(),
                c.tool.clone(),
                c.digest.clone(),
                c.digest.clone(),
            );
            let what = if c.kind == "new" {
                "a new tool (the server denies new tools)"
            } else {
                "its definition changed since review"
            };
            let pending = c.status == "pending";
            view! {
                <li class="tool-change" id=id data-status=c.status.clone()>
                    <p><strong>{c.tool.clone()}</strong>" on "<code>{c.server.clone()}</code>": "{what}
                        " — "{c.status.clone()}", first seen "{c.first_seen_at}", last seen "{c.last_seen_at}</p>
                    <pre class="diff">{diff}</pre>
                    <ActionForm action attr:class="inline">
                        <FormHead csrf=c1 op="tool_approve"/>
                        <input type="hidden" name="form[slug]" value=s1/>
                        <input type="hidden" name="form[tool]" value=t1/>
                        <input type="hidden" name="form[digest]" value=d1/>
                        <button type="submit" class="primary approve-change">"Approve this definition"</button>
                    </ActionForm>
                    {pending.then(|| view! {
                        <ActionForm action attr:class="inline">
                            <FormHead csrf=c2 op="tool_dismiss"/>
                            <input type="hidden" name="form[slug]" value=s2/>
                            <input type="hidden" name="form[tool]" value=t2/>
                            <input type="hidden" name="form[digest]" value=d2/>
                            <button type="submit" class="ghost danger dismiss-change">"Keep the pinned one"</button>
                        </ActionForm>
                    })}
                </li>
            }
            .into_any()
        })
        .collect_view();
    let unpinned = (!view.unpinned.is_empty()).then(|| {
        let items = view
            .unpinned
            .iter()
            .map(|(s, tools)| view! { <li><code>{s.clone()}</code>": "{tools.join(", ")}</li> })
            .collect_view();
        view! {
            <p class="hint">"Reviewed before pinning existed (not checked until the catalog is recorded again on the Servers page):"</p>
            <ul id="unpinned">{items}</ul>
        }
        .into_any()
    });
    let max = view
        .activity
        .iter()
        .map(|(_, a, b, c)| a + b + c)
        .max()
        .unwrap_or(0)
        .max(1);
    let bars = view
        .activity
        .iter()
        .map(|(day, changed, blocked, flagged)| {
            let w = |n: u64| format!("width: {}%", n * 100 / max);
            view! {
                <tr class="activity-day">
                    <td>{day.clone()}</td>
                    <td class="bars">
                        <span class="bar changed" style=w(*changed) title=format!("{changed} redacted or masked")></span>
                        <span class="bar blocked" style=w(*blocked) title=format!("{blocked} blocked")></span>
                        <span class="bar flagged" style=w(*flagged) title=format!("{flagged} flagged or logged")></span>
                    </td>
                    <td>{format!("{changed} / {blocked} / {flagged}")}</td>
                </tr>
            }
        })
        .collect_view();
    let (csrf_set, csrf_try) = (csrf.clone(), csrf);
    view! {
        <section class="card" id="filter-policies">
            <h2>"Filter policies"</h2>
            <p class="hint">"Answers of tools, resources and prompts pass these filters before they reach a client; listed descriptions are screened for prompt injection. Every decision is in the audit record (types, counts, verdicts — never the values)."</p>
            <table id="filter-policy-list">
                <thead><tr><th>"Scope"</th><th>"Personal data"</th><th>"Secrets"</th><th>"Injection"</th><th>"Arguments"</th><th>"Per type"</th><th>"Per tool"</th></tr></thead>
                <tbody>{policies}</tbody>
            </table>
            <p class="hint">"Names and postal addresses are recorded under the personal-data action but changed only when a per-type rule names them: business answers are full of them."</p>
            <ActionForm action attr:class="inline" attr:id="filter-set">
                <FormHead csrf=csrf_set op="filter_set"/>
                <select name="form[slug]">{scope_options}</select>
                <label>"Personal data "{select("form[pii]", DATA_ACTIONS, "redact".into())}</label>
                <label>"Secrets "{select("form[secrets]", DATA_ACTIONS, "redact".into())}</label>
                <label>"Injection "{select("form[injection]", INJECTION_ACTIONS, "flag".into())}</label>
                <button type="submit" class="primary">"Save"</button>
            </ActionForm>
            <h3>"Per type"</h3>
            <ActionForm action attr:class="inline" attr:id="filter-entity">
                <FormHead csrf=csrf_entity op="filter_entity"/>
                <select name="form[slug]">{entity_scopes}</select>
                <select name="form[entity]" id="filter-entity-type">{type_options}</select>
                <label>"Action "{select("form[action]", DATA_OR_INHERIT, "redact".into())}</label>
                <button type="submit" class="primary">"Set"</button>
            </ActionForm>
            <h3>"Per tool"</h3>
            <p class="hint">"A tool's own actions (inherit: the scope's), and field rules for its structured results: JSON Pointers, one per line, where "<code>"*"</code>" matches any key or index ("<code>"/contacts/*/name"</code>"). Keep lists what may pass; drop removes after it. Everything on inherit and no paths removes the tool's rules."</p>
            <ActionForm action attr:id="filter-tool">
                <FormHead csrf=csrf_tool op="filter_tool"/>
                <select name="form[slug]">{tool_scopes}</select>
                <input type="text" name="form[tool]" id="filter-tool-name" placeholder="tool name" required/>
                <label>"Personal data "{select("form[pii]", DATA_OR_INHERIT, "inherit".into())}</label>
                <label>"Secrets "{select("form[secrets]", DATA_OR_INHERIT, "inherit".into())}</label>
                <label>"Injection "{select("form[injection]", INJECTION_OR_INHERIT, "inherit".into())}</label>
                <label>"Keep "<textarea name="form[keep]" id="filter-tool-keep" rows="3" placeholder="/name\n/company"></textarea></label>
                <label>"Drop "<textarea name="form[drop]" id="filter-tool-drop" rows="3" placeholder="/ssn"></textarea></label>
                <button type="submit" class="primary" id="filter-tool-save">"Save tool rules"</button>
            </ActionForm>
        </section>
        <section class="card" id="filter-try">
            <h2>"Try it"</h2>
            <p class="hint">"Runs a scope's policy on a text, as the gateway would on a tool's answer. Nothing is stored or recorded."</p>
            <ActionForm action>
                <FormHead csrf=csrf_try op="filter_try"/>
                <select name="form[slug]">{try_options}</select>
                <textarea name="form[text]" rows="5" id="filter-try-text" placeholder="Paste a tool response…"></textarea>
                <button type="submit" class="primary" id="filter-try-run">"Try"</button>
            </ActionForm>
            {result.map(|s| view! {
                <div class="created" id="filter-try-result">
                    <p><strong>{s.question}</strong></p>
                    <p><strong id="filter-try-decision">{s.decision}</strong>": " <span>{s.reason}</span></p>
                    <ol>{s.chain.into_iter().map(|c| view! { <li><pre>{c}</pre></li> }).collect_view()}</ol>
                </div>
            })}
        </section>
        <section class="card" id="tool-changes">
            <h2>"Tool changes"</h2>
            <p class="hint">"Recording a server's catalog pins each tool's definition. A tool whose name, description, schemas or annotations change upstream is hidden and refused until you approve the new definition; on servers that deny new tools, new tools wait here too."</p>
            {if no_changes {
                view! { <p id="no-tool-changes">"Nothing waits for review."</p> }.into_any()
            } else {
                view! { <ul id="tool-change-list">{changes}</ul> }.into_any()
            }}
            {unpinned}
        </section>
        <section class="card" id="data-inventory">
            <h2>"Data inventory"</h2>
            <p class="hint">"Which categories of data each server's answers carried, counted where a filter policy is active (set "<code>"log"</code>" to take stock without changing answers)."</p>
            <table id="inventory-list">
                <thead><tr><th>"Server"</th><th>"Category"</th><th>"Class"</th><th>"Answers"</th><th>"Last seen"</th></tr></thead>
                <tbody>{inventory}</tbody>
            </table>
        </section>
        <section class="card" id="filter-hooks">
            <h2>"External hooks"</h2>
            <p class="hint">"Your own DLP, called with each answer after the built-in filters: a signed POST ("<code>"x-portcullis-signature: t=…,v1=HMAC-SHA256(secret, t.body)"</code>"), answered with allow, deny or a modified result. Its signing secret is shown once, when it is added."</p>
            {secret.map(|s| view! {
                <div class="created" id="hook-secret">
                    <p>"Signing secret (shown once — store it in your DLP service now):"</p>
                    <p><code class="secret" id="hook-secret-value">{s}</code></p>
                </div>
            })}
            <ActionForm action attr:class="inline" attr:id="filter-hook-add">
                <FormHead csrf=csrf_hook op="filter_hook_add"/>
                <select name="form[slug]">{hook_scopes}</select>
                <input type="url" name="form[url]" id="filter-hook-url" placeholder="https://dlp.example.com/portcullis" required/>
                <label>"Timeout (ms) "<input type="number" name="form[timeout]" min="100" max="10000" value="2000"/></label>
                <label>"On failure "{select("form[fail]", &["closed", "open"], "closed".into())}</label>
                <button type="submit" class="primary">"Add hook"</button>
            </ActionForm>
            {if no_hooks {
                view! { <p id="no-hooks">"No hooks."</p> }.into_any()
            } else {
                view! {
                    <table id="hook-list">
                        <thead><tr><th>"Hook"</th><th>"Servers"</th><th>"URL"</th><th>"Timeout"</th><th>"On failure"</th><th></th></tr></thead>
                        <tbody>{hooks}</tbody>
                    </table>
                }.into_any()
            }}
        </section>
        <section class="card" id="filter-activity">
            <h2>"Activity"</h2>
            <p class="hint">"Answers the filters changed, blocked, or flagged and logged, per day (last 14 days)."</p>
            <table id="filter-activity-chart">
                <thead><tr><th>"Day"</th><th></th><th>"changed / blocked / flagged"</th></tr></thead>
                <tbody>{bars}</tbody>
            </table>
        </section>
    }
}
