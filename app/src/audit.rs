//! The console's audit page (`/admin/audit`): filters in the URL (so a search is a link a
//! reviewer can keep), charts (server-rendered SVG), the records with keyset paging and a
//! detail view, exports (streamed downloads of exactly the filtered records), chain
//! verification and a signed checkpoint, retention with its presets and legal hold, and SIEM
//! destinations with their delivery status.
//!
//! It reads and works without JavaScript: the filters are a GET form, every other form posts
//! `audit_action` and reloads.

use crate::api::{AuditAction, AuditBar, AuditPage, AuditPageQuery, AuditRecordView};
use crate::ErrorBox;
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[component]
pub(crate) fn FormHead(csrf: String, op: &'static str) -> impl IntoView {
    view! {
        <input type="hidden" name="csrf" value=csrf/>
        <input type="hidden" name="form[op]" value=op/>
    }
}

#[component]
pub fn AuditSection(csrf: String, action: ServerAction<AuditAction>) -> impl IntoView {
    let query = use_query_map();
    let filters = move || {
        let map = query.read();
        let mut q = AuditPageQuery::default();
        for k in AuditPageQuery::FILTERS
            .iter()
            .chain(["before", "event", "days"].iter())
        {
            if let Some(v) = map.get(k) {
                q.set(k, v);
            }
        }
        q
    };
    let data = Resource::new(
        move || (filters(), action.version().get()),
        |(q, _)| crate::api::load_audit(q),
    );
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading the audit log…"</p> }>
            {move || {
                let csrf = csrf.clone();
                Suspend::new(async move {
                    let q = filters();
                    match data.await {
                        Ok(page) => view! { <AuditBody page q csrf action/> }.into_any(),
                        Err(e) => view! { <ErrorBox message=e.to_string()/> }.into_any(),
                    }
                })
            }}
        </Suspense>
    }
}

#[component]
fn AuditBody(
    page: AuditPage,
    q: AuditPageQuery,
    csrf: String,
    action: ServerAction<AuditAction>,
) -> impl IntoView {
    let filter_query = q.filter_query();
    let amp = if filter_query.is_empty() { "" } else { "&" };
    let export = |format: &str| format!("/admin/audit/export?format={format}{amp}{filter_query}");
    let next_href = page
        .next
        .map(|n| format!("/admin/audit?{filter_query}{amp}before={n}"));
    let detail_href = {
        let fq = filter_query.clone();
        move |id: &str| {
            format!(
                "/admin/audit?{fq}{}event={id}",
                if fq.is_empty() { "" } else { "&" }
            )
        }
    };
    let field = |name: &'static str, label: &'static str, placeholder: &'static str| {
        let value = q.get(name).to_owned();
        view! {
            <label>
                <span>{label}</span>
                <input type="text" name=name value=value placeholder=placeholder id=format!("audit-filter-{name}")/>
            </label>
        }
    };
    let decision = q.decision.clone();
    let category = q.category.clone();
    let rows = page
        .records
        .iter()
        .map(|r| record_row(r, detail_href(&r.id)))
        .collect_view();
    view! {
        <section class="card">
            <h2>"Activity"</h2>
            <Charts bars=page.buckets.clone() unit=page.bucket_unit.clone() tools=page.top_tools.clone() users=page.top_users.clone()/>
        </section>
        <section class="card">
            <h2>"Search"</h2>
            <form method="get" action="/admin/audit" class="filters" id="audit-filters">
                {field("user", "User (email)", "dev@acme.example")}
                {field("group", "Group", "engineering")}
                {field("server", "Server", "crm")}
                {field("method", "Method or event", "tools/call, tools/*, registry.create")}
                {field("q", "Tool, resource or prompt contains", "delete")}
                {field("agent", "Agent (token name)", "")}
                {field("client", "Client", "claude-code")}
                <label>
                    <span>"Decision"</span>
                    <select name="decision" id="audit-filter-decision">
                        <option value="" selected=decision.is_empty()>"Any"</option>
                        <option value="allow" selected=decision == "allow">"Allowed"</option>
                        <option value="deny" selected=decision == "deny">"Denied"</option>
                    </select>
                </label>
                <label>
                    <span>"Kind"</span>
                    <select name="category" id="audit-filter-category">
                        <option value="" selected=category.is_empty()>"Any"</option>
                        <option value="mcp" selected=category == "mcp">"MCP requests"</option>
                        <option value="admin" selected=category == "admin">"Admin changes"</option>
                        <option value="security" selected=category == "security">"Security events"</option>
                    </select>
                </label>
                <label><span>"From (date or RFC 3339)"</span>
                    <input type="text" name="since" value=q.since.clone() placeholder="2026-11-01" id="audit-filter-since"/></label>
                <label><span>"Until (exclusive)"</span>
                    <input type="text" name="until" value=q.until.clone() placeholder="2026-12-01" id="audit-filter-until"/></label>
                <div class="actions">
                    <button type="submit" class="primary" id="audit-search">"Search"</button>
                    <a href="/admin/audit" class="button ghost">"Clear"</a>
                </div>
            </form>
            {page.problem.clone().map(|p| view! { <ErrorBox message=p/> })}
            <p class="hint" id="audit-matching">
                {if page.matching > 100_000 {
                    "More than 100,000 matching records. ".to_owned()
                } else {
                    format!("{} matching records. ", page.matching)
                }}
                "Export exactly these (streamed; your browser shows the download's progress): "
                <a rel="external" download href=export("csv") id="audit-export-csv">"CSV"</a>" · "
                <a rel="external" download href=export("jsonl") id="audit-export-jsonl">"JSON Lines"</a>" · "
                <a rel="external" download href=export("ocsf") id="audit-export-ocsf">"OCSF (API Activity)"</a>
            </p>
        </section>
        {page.detail.clone().map(|d| view! { <Detail r=d/> })}
        <section class="card">
            <h2>"Records"</h2>
            <div class="table-wrap">
                <table class="audit" id="audit-records">
                    <thead><tr>
                        <th>"Time (UTC)"</th><th>"User"</th><th>"Client / agent"</th><th>"Server"</th>
                        <th>"Method"</th><th>"Target"</th><th>"Decision"</th><th>"Outcome"</th><th>"Latency"</th>
                    </tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            {if page.records.is_empty() { Some(view! { <p id="audit-empty">"No records match."</p> }) } else { None }}
            {next_href.map(|h| view! { <p><a href=h id="audit-next">"Older records →"</a></p> })}
        </section>
        <Integrity csrf=csrf.clone() action/>
        <Retention page=page.clone() csrf=csrf.clone() action/>
        <Siem page csrf action/>
    }
}

fn record_row(r: &AuditRecordView, href: String) -> impl IntoView {
    let decision_class = match r.decision.as_str() {
        "deny" => "badge badge-deny",
        "allow" => "badge badge-allow",
        _ => "badge",
    };
    let who = if r.client.is_empty() {
        r.agent.clone()
    } else if r.agent.is_empty() {
        r.client.clone()
    } else {
        format!("{} / {}", r.client, r.agent)
    };
    view! {
        <tr data-seq=r.seq>
            <td><a href=href class="audit-detail-link">{r.at.clone()}</a></td>
            <td>{r.actor.clone()}</td>
            <td>{who}</td>
            <td>{r.server.clone()}</td>
            <td><code>{r.action.clone()}</code></td>
            <td class="target">{r.target.clone()}</td>
            <td><span class=decision_class>{r.decision.clone()}</span></td>
            <td>{r.outcome.clone()}</td>
            <td>{r.latency.clone()}</td>
        </tr>
    }
}

#[component]
fn Detail(r: AuditRecordView) -> impl IntoView {
    let row = |k: &'static str, v: String| view! { <dt>{k}</dt><dd>{v}</dd> };
    view! {
        <section class="card" id="audit-detail">
            <h2>{format!("Record #{}", r.seq)}</h2>
            <dl class="kv">
                {row("Id", r.id.clone())}
                {row("Time (UTC)", r.at.clone())}
                {row("Kind", r.category.clone())}
                {row("Method or event", r.action.clone())}
                {row("User", r.actor.clone())}
                {row("Groups then", r.groups.clone())}
                {row("Agent (credential)", r.agent.clone())}
                {row("Client", r.client.clone())}
                {row("Address", r.ip.clone())}
                {row("Session", r.session.clone())}
                {row("Server", r.server.clone())}
                {row("Target", r.target.clone())}
                {row("Decision", r.decision.clone())}
                {row("Outcome", r.outcome.clone())}
                {row("Latency", r.latency.clone())}
                {row("Hash", r.hash.clone())}
                {row("Previous hash", r.prev_hash.clone())}
            </dl>
            <h3>"Particulars"</h3>
            <pre id="audit-detail-json">{r.detail.clone()}</pre>
        </section>
    }
}

/// Calls per bucket (denials in red) and the top tools and users, as inline SVG.
#[component]
fn Charts(
    bars: Vec<AuditBar>,
    unit: String,
    tools: Vec<(String, i64)>,
    users: Vec<(String, i64)>,
) -> impl IntoView {
    let (w, h) = (640.0_f64, 120.0_f64);
    let max = bars.iter().map(|b| b.calls).max().unwrap_or(0).max(1) as f64;
    let n = bars.len().max(1) as f64;
    let bw = w / n;
    let total: i64 = bars.iter().map(|b| b.calls).sum();
    let denied: i64 = bars.iter().map(|b| b.denied).sum();
    let rects = bars
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let x = i as f64 * bw;
            let ch = (b.calls as f64 / max) * (h - 10.0);
            let dh = (b.denied as f64 / max) * (h - 10.0);
            let title = format!("{}: {} calls, {} denied", b.label, b.calls, b.denied);
            view! {
                <g>
                    <title>{title}</title>
                    <rect class="bar-calls" x=format!("{x:.1}") y=format!("{:.1}", h - ch) width=format!("{:.1}", (bw - 1.0).max(1.0)) height=format!("{ch:.1}")/>
                    <rect class="bar-denied" x=format!("{x:.1}") y=format!("{:.1}", h - dh) width=format!("{:.1}", (bw - 1.0).max(1.0)) height=format!("{dh:.1}")/>
                </g>
            }
        })
        .collect_view();
    let list = |items: Vec<(String, i64)>, id: &'static str| {
        let top = items.first().map(|(_, c)| *c).unwrap_or(1).max(1);
        view! {
            <ol class="toplist" id=id>
                {items.into_iter().map(|(name, count)| {
                    let pct = count * 100 / top;
                    view! {
                        <li><span class="name">{name}</span><span class="count">{count}</span>
                            <span class="meter" style=format!("width: {pct}%")></span></li>
                    }
                }).collect_view()}
            </ol>
        }
    };
    view! {
        <p id="audit-chart-summary">{format!("{total} MCP requests, {denied} denied (per {unit}).")}</p>
        <svg class="chart" id="audit-chart" viewBox=format!("0 0 {w} {h}") role="img"
            aria-label=format!("MCP requests per {unit}: {total}, of which {denied} denied")>
            {rects}
        </svg>
        <div class="columns">
            <div><h3>"Top tools"</h3>{list(tools, "audit-top-tools")}</div>
            <div><h3>"Top users"</h3>{list(users, "audit-top-users")}</div>
        </div>
    }
}

#[component]
fn Integrity(csrf: String, action: ServerAction<AuditAction>) -> impl IntoView {
    view! {
        <section class="card">
            <h2>"Integrity"</h2>
            <p>"Each tenant's records form a hash chain: an edited, deleted or inserted record breaks it at that point. "
               "A signed checkpoint (Ed25519) of the chain's head, kept outside Portcullis, also exposes a rewrite of the whole chain."</p>
            <ActionForm action attr:class="inline">
                <FormHead csrf op="verify"/>
                <button type="submit" id="audit-verify">"Verify the chain now"</button>
            </ActionForm>
            " "
            <a rel="external" download href="/admin/audit/checkpoint" class="button ghost" id="audit-checkpoint">"Download a signed checkpoint"</a>
        </section>
    }
}

#[component]
fn Retention(page: AuditPage, csrf: String, action: ServerAction<AuditAction>) -> impl IntoView {
    let s = page.settings;
    let preset = s.retention_preset.clone();
    let presets = s.presets.clone();
    let arguments = s.arguments.clone();
    let days = s.retention_days.map(|d| d.to_string()).unwrap_or_default();
    let rule = match s.retention_days {
        Some(d) => format!(
            "Records older than {d} days are purged hourly{}.",
            if s.legal_hold {
                " — suspended: legal hold"
            } else {
                ""
            }
        ),
        None => "Records are kept forever (no retention period).".to_owned(),
    };
    let csrf2 = csrf.clone();
    view! {
        <section class="card" id="audit-retention">
            <h2>"Retention and recording"</h2>
            <p id="audit-volume">{format!("{} records; oldest {}. Last purge: {}.", s.records,
                if s.oldest.is_empty() { "—".to_owned() } else { s.oldest.clone() },
                if s.last_purge.is_empty() { "never".to_owned() } else { s.last_purge.clone() })}</p>
            <p id="audit-rule"><strong>{rule}</strong></p>
            {s.legal_hold.then(|| view! { <p class="flash flash-info" id="audit-hold">{format!("Legal hold: {}", if s.legal_hold_reason.is_empty() { "(no reason given)".to_owned() } else { s.legal_hold_reason.clone() })}</p> })}
            <ActionForm action attr:class="stacked" attr:id="audit-settings-form">
                <FormHead csrf=csrf.clone() op="settings"/>
                <fieldset>
                    <legend>"Retention period"</legend>
                    <label><input type="radio" name="form[preset]" value="forever" checked=s.retention_days.is_none()/>" Keep forever"</label>
                    {presets.into_iter().map(|(name, d, why)| {
                        let checked = preset == name;
                        view! {
                            <label><input type="radio" name="form[preset]" value=name.clone() checked=checked/>
                                {format!(" {d} days — ")}<span class="hint">{why}</span></label>
                        }
                    }).collect_view()}
                    <label><input type="radio" name="form[preset]" value="custom" checked=preset == "custom"/>" Custom: "
                        <input type="number" min="1" max="3650" name="form[retention_days]" value=days id="audit-days"/>" days"</label>
                </fieldset>
                <label><input type="checkbox" name="form[legal_hold]" value="on" checked=s.legal_hold id="audit-legal-hold"/>
                    " Legal hold: suspend every purge"</label>
                <label for="audit-hold-reason">"Reason (matter, ticket)"</label>
                <input type="text" name="form[legal_hold_reason]" id="audit-hold-reason" value=s.legal_hold_reason.clone()/>
                <label for="audit-arguments">"Tool arguments in records"</label>
                <select name="form[arguments]" id="audit-arguments">
                    <option value="none" selected=arguments == "none">"Not recorded"</option>
                    <option value="hashed" selected=arguments == "hashed">"SHA-256 only (default)"</option>
                    <option value="redacted" selected=arguments == "redacted">"Shape only: keys kept, values replaced by their type"</option>
                    <option value="full" selected=arguments == "full">"Full values (up to 16 KiB)"</option>
                </select>
                <button type="submit" class="primary" id="audit-settings-save">"Save"</button>
            </ActionForm>
            <ActionForm action attr:class="inline">
                <FormHead csrf=csrf2 op="purge_now"/>
                <button type="submit" id="audit-purge">"Apply retention now"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn Siem(page: AuditPage, csrf: String, action: ServerAction<AuditAction>) -> impl IntoView {
    let rows = page
        .destinations
        .into_iter()
        .map(|d| {
            let status = if !d.enabled {
                "paused".to_owned()
            } else if d.failures > 0 {
                format!("failing ({} attempts): {}", d.failures, d.last_error)
            } else if d.behind > 0 {
                format!("{} records to send", d.behind)
            } else {
                "up to date".to_owned()
            };
            let (csrf_a, csrf_b) = (csrf.clone(), csrf.clone());
            let (id_a, id_b) = (d.id.clone(), d.id.clone());
            let toggle = if d.enabled { "Pause" } else { "Resume" };
            view! {
                <tr class="siem-row" data-name=d.name.clone()>
                    <td>{d.name.clone()}</td><td>{d.kind.clone()}</td><td><code>{d.target.clone()}</code></td>
                    <td class="siem-status">{status}</td><td>{d.delivered}</td>
                    <td>{if d.last_ok.is_empty() { "—".to_owned() } else { d.last_ok.clone() }}</td>
                    <td>
                        <ActionForm action attr:class="inline">
                            <FormHead csrf=csrf_a op="toggle_siem"/>
                            <input type="hidden" name="form[id]" value=id_a/>
                            <button type="submit" class="ghost">{toggle}</button>
                        </ActionForm>
                        <ActionForm action attr:class="inline">
                            <FormHead csrf=csrf_b op="delete_siem"/>
                            <input type="hidden" name="form[id]" value=id_b/>
                            <button type="submit" class="ghost danger">"Delete"</button>
                        </ActionForm>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="card" id="audit-siem">
            <h2>"SIEM streaming"</h2>
            <p class="hint">"Every record is delivered at least once, in order, from a cursor kept in the database: a receiver that is down is retried with backoff and gets everything when it is back."</p>
            <div class="table-wrap">
                <table id="siem-destinations">
                    <thead><tr><th>"Name"</th><th>"Kind"</th><th>"Where"</th><th>"Status"</th><th>"Delivered"</th><th>"Last delivery"</th><th></th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
            </div>
            <h3>"Add a destination"</h3>
            <ActionForm action attr:class="stacked" attr:id="siem-form">
                <FormHead csrf=csrf.clone() op="add_siem"/>
                <label for="siem-name">"Name"</label>
                <input type="text" id="siem-name" name="form[name]" required/>
                <label for="siem-kind">"Kind"</label>
                <select id="siem-kind" name="form[kind]">
                    <option value="syslog">"Syslog (RFC 5424, TCP or TLS)"</option>
                    <option value="webhook">"HTTPS webhook (JSON batches, HMAC-SHA256 signed)"</option>
                    <option value="splunk_hec">"Splunk HTTP Event Collector"</option>
                </select>
                <label for="siem-host">"Syslog host and port"</label>
                <div class="row">
                    <input type="text" id="siem-host" name="form[host]" placeholder="siem.example.com"/>
                    <input type="number" id="siem-port" name="form[port]" placeholder="6514" min="1" max="65535"/>
                </div>
                <label><input type="checkbox" name="form[tls]" value="on" id="siem-tls" checked/>" TLS (RFC 5425)"</label>
                <label for="siem-ca">"CA certificate (PEM) of the syslog receiver (empty: system roots)"</label>
                <textarea id="siem-ca" name="form[ca_pem]" rows="3"></textarea>
                <label for="siem-url">"Webhook or HEC URL"</label>
                <input type="url" id="siem-url" name="form[url]" placeholder="https://siem.example.com/services/collector/event"/>
                <label for="siem-secret">"HMAC key (webhook) or HEC token — stored encrypted, never shown again"</label>
                <input type="password" id="siem-secret" name="form[secret]" autocomplete="off"/>
                <label><input type="checkbox" name="form[start]" value="beginning" id="siem-history"/>" Send the retained history too (else from now on)"</label>
                <button type="submit" class="primary" id="siem-add">"Add destination"</button>
            </ActionForm>
        </section>
    }
}
