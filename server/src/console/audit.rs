//! The console's audit page (app/src/audit.rs) on the server: its data for a set of filters,
//! its forms, and the two downloads a signed-in admin gets by cookie (the JSON API takes
//! bearer tokens): the streamed export and the signed checkpoint.

use super::{flash, internal, session, tenant_of, Backend};
use crate::audit::{export, retention, siem, Category, Event};
use crate::state::AppState;
use app::api::{
    AuditBar, AuditForm, AuditPage, AuditPageQuery, AuditRecordView, AuditSettingsView,
    BackendError, FlashKind, SiemView,
};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use serde_json::{json, Value};
use tower_sessions::Session;

fn text(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn latency(r: &crate::store::AuditRow) -> String {
    match (r.latency_us, r.upstream_us) {
        (Some(t), Some(u)) => format!(
            "{:.1} ms ({:.1} upstream)",
            t as f64 / 1000.0,
            u as f64 / 1000.0
        ),
        (Some(t), None) => format!("{:.1} ms", t as f64 / 1000.0),
        _ => String::new(),
    }
}

fn record_view(r: &crate::store::AuditRow) -> AuditRecordView {
    let detail: Value = serde_json::from_str(&r.detail).unwrap_or_default();
    AuditRecordView {
        id: r.event_id.clone(),
        seq: r.seq,
        at: export::time_micros(r.at),
        category: r.category.clone(),
        action: r.action.clone(),
        actor: text(&r.actor),
        groups: r
            .groups
            .as_deref()
            .unwrap_or_default()
            .trim_matches(',')
            .replace(',', ", "),
        agent: text(&r.agent),
        client: text(&r.client),
        ip: text(&r.ip),
        session: text(&r.session_id),
        server: text(&r.server),
        target: text(&r.target),
        decision: text(&r.decision),
        outcome: match detail.get("error_code").and_then(Value::as_i64) {
            Some(code) => format!("{} {code}", r.outcome),
            None => r.outcome.clone(),
        },
        latency: latency(r),
        detail: serde_json::to_string_pretty(&detail).unwrap_or_default(),
        hash: r.hash.clone(),
        prev_hash: r.prev_hash.clone(),
    }
}

/// The page's filters as an API query (the same rules as `/api/v1/audit`).
fn filters_of(q: &AuditPageQuery) -> crate::audit::api::Filters {
    let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    crate::audit::api::Filters {
        actor: opt(&q.user),
        group: opt(&q.group),
        agent: opt(&q.agent),
        client: opt(&q.client),
        server: opt(&q.server),
        method: opt(&q.method),
        decision: opt(&q.decision),
        category: opt(&q.category),
        q: opt(&q.q),
        since: opt(&q.since),
        until: opt(&q.until),
        before: q.before.trim().parse().ok(),
        ..Default::default()
    }
}

const PAGE: i64 = 50;
/// The page counts matching records up to this (and says "more than" beyond).
const MATCHING_CAP: i64 = 100_000;

impl Backend {
    pub(super) async fn audit_page_for(
        &self,
        parts: &http::request::Parts,
        q: AuditPageQuery,
    ) -> Result<AuditPage, BackendError> {
        let tenant = tenant_of(parts)?;
        let session = session(parts)?;
        self.signed_in_admin(&session, &tenant)
            .await?
            .ok_or(BackendError::SignedOut)?;
        let st = &self.state;
        let tid = &tenant.tenant_id;
        let mut page = AuditPage::default();
        match filters_of(&q).query(PAGE) {
            Ok(query) => {
                let rows = st.store.search_audit(tid, &query).await.map_err(internal)?;
                page.next = (rows.len() as i64 == PAGE)
                    .then(|| rows.last().map(|r| r.seq))
                    .flatten();
                page.records = rows.iter().map(record_view).collect();
                page.matching = st
                    .store
                    .count_audit(tid, &query, Some(MATCHING_CAP))
                    .await
                    .map_err(internal)?;
            }
            Err(e) => page.problem = Some(e.to_string()),
        }
        if !q.event.is_empty() {
            page.detail = st
                .store
                .audit_event(tid, &q.event)
                .await
                .ok()
                .map(|r| record_view(&r));
        }
        let days = q
            .days
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=90).contains(d))
            .unwrap_or(7);
        let stats = crate::audit::stats(&st.store, tid, days)
            .await
            .map_err(internal)?;
        page.bucket_unit = if stats["bucket_seconds"] == 3600 {
            "hour"
        } else {
            "day"
        }
        .into();
        page.buckets = stats["buckets"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|b| AuditBar {
                        label: b["start"]
                            .as_str()
                            .unwrap_or_default()
                            .chars()
                            .take(16)
                            .collect(),
                        calls: b["calls"].as_i64().unwrap_or(0),
                        denied: b["denied"].as_i64().unwrap_or(0),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let pairs = |v: &Value| -> Vec<(String, i64)> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            (
                                c["name"].as_str().unwrap_or_default().to_owned(),
                                c["count"].as_i64().unwrap_or(0),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        page.top_tools = pairs(&stats["top_tools"]);
        page.top_users = pairs(&stats["top_users"]);
        let s = st.store.audit_settings(tid).await.map_err(internal)?;
        let v = st.store.audit_volume(tid).await.map_err(internal)?;
        page.settings = AuditSettingsView {
            arguments: s.arguments.clone(),
            retention_days: s.retention_days,
            retention_preset: text(&s.retention_preset),
            legal_hold: s.legal_hold,
            legal_hold_reason: text(&s.legal_hold_reason),
            records: v.records,
            oldest: v.oldest_at.map(export::time_micros).unwrap_or_default(),
            last_purge: s
                .last_purge_at
                .map(|at| {
                    format!(
                        "{} ({} records)",
                        export::time_micros(at),
                        s.last_purged.unwrap_or(0)
                    )
                })
                .unwrap_or_default(),
            presets: retention::PRESETS
                .iter()
                .map(|(n, d, why)| ((*n).to_owned(), *d, (*why).to_owned()))
                .collect(),
        };
        let head = v.newest_seq.unwrap_or(0);
        page.destinations = st
            .store
            .list_siem(tid)
            .await
            .map_err(internal)?
            .iter()
            .map(|r| {
                let view = siem::view(r, head);
                let settings = &view["settings"];
                SiemView {
                    id: r.destination_id.clone(),
                    name: r.name.clone(),
                    kind: r.kind.clone(),
                    target: match r.kind.as_str() {
                        "syslog" => format!(
                            "{}://{}:{}",
                            if settings["tls"] == true {
                                "tls"
                            } else {
                                "tcp"
                            },
                            settings["host"].as_str().unwrap_or_default(),
                            settings["port"]
                        ),
                        _ => settings["url"].as_str().unwrap_or_default().to_owned(),
                    },
                    enabled: r.enabled,
                    behind: view["behind"].as_i64().unwrap_or(0),
                    delivered: r.delivered,
                    last_ok: r.last_ok_at.map(export::time_micros).unwrap_or_default(),
                    last_error: text(&r.last_error),
                    failures: r.failures,
                }
            })
            .collect();
        Ok(page)
    }

    pub(super) async fn audit_form(
        &self,
        parts: &http::request::Parts,
        csrf: &str,
        form: AuditForm,
    ) -> Result<bool, BackendError> {
        let (tenant, session, admin) = self.admin_form(parts, csrf).await?;
        let st = &self.state;
        let tid = tenant.tenant_id.clone();
        let by = |action: &str, cat: Category, detail: Value| {
            Event::new(&tid, cat, action, "ok")
                .by(&admin.user_id, &admin.email)
                .target("audit")
                .detail(detail)
        };
        let result: Result<String, String> = match form.op.as_str() {
            "review_statement" => {
                let input = crate::review::api::StatementInput {
                    llm_routing: form.llm_routing.clone(),
                    data_processing: form.data_processing.clone(),
                    regulation: form.regulation.clone(),
                };
                match crate::review::api::set_statement(
                    st,
                    &tenant,
                    (&admin.user_id, &admin.email),
                    input,
                )
                .await
                {
                    Ok(_) => Ok("Statement saved: it is part of every pack from now on.".into()),
                    Err(crate::review::ReviewError::Invalid(m)) => Err(format!("Not saved: {m}.")),
                    Err(e) => return Err(internal(e)),
                }
            }
            "tool_class" => {
                let (server, tool) = form.tool.split_once('/').unwrap_or(("", ""));
                let class = Some(form.class.as_str()).filter(|c| !c.is_empty());
                match crate::review::api::set_tool_class(
                    st,
                    &tenant,
                    (&admin.user_id, &admin.email),
                    server,
                    tool,
                    class,
                )
                .await
                {
                    Ok(()) => Ok(match class {
                        Some(c) => format!("{server}/{tool} is now classed {c}."),
                        None => format!("{server}/{tool} is classed as its annotations say."),
                    }),
                    Err(crate::error::ApiError::Invalid(m)) => Err(format!("Not saved: {m}.")),
                    Err(crate::error::ApiError::NotFound) => {
                        Err("Not saved: no such server.".into())
                    }
                    Err(e) => return Err(internal(e)),
                }
            }
            "settings" => {
                let days = form.retention_days.trim();
                let input = retention::SettingsInput {
                    arguments: Some(form.arguments.clone()).filter(|a| !a.is_empty()),
                    retention_days: match form.preset.as_str() {
                        "custom" => Some(Some(days.parse::<i64>().unwrap_or(0))),
                        _ => None,
                    },
                    preset: Some(form.preset.clone()).filter(|p| !p.is_empty() && p != "custom"),
                    legal_hold: Some(form.legal_hold == "on"),
                    legal_hold_reason: Some(form.legal_hold_reason.clone()),
                };
                match retention::save(&st.store, &tid, input).await {
                    Ok((before, after)) => {
                        st.audit
                            .note(by(
                                "audit.settings.update",
                                Category::Admin,
                                json!({"before": before, "after": after}),
                            ))
                            .await;
                        Ok("Audit settings saved.".into())
                    }
                    Err(e) => Err(format!("Not saved: {e}.")),
                }
            }
            "purge_now" => {
                match retention::purge_tenant(
                    &st.store,
                    &st.audit,
                    &tid,
                    Some((admin.user_id.clone(), admin.email.clone())),
                )
                .await
                {
                    Ok(r) => Ok(match r.skipped {
                        Some(why) => format!("Nothing purged: {why}."),
                        None => format!("Purged {} records.", r.purged),
                    }),
                    Err(e) => Err(format!("The purge failed: {e}")),
                }
            }
            "verify" => {
                let (v, seq, _) = crate::audit::verify_stored(&st.store, &tid)
                    .await
                    .map_err(internal)?;
                crate::mail::chain_broken(st.mailer.as_ref(), &tid, &v);
                st.audit
                    .note(by(
                        "audit.verify",
                        Category::Security,
                        json!({"ok": v.ok, "records": v.records}),
                    ))
                    .await;
                match v.first_break {
                    None => Ok(format!(
                        "The chain holds: {} records verified, head at #{seq}.",
                        v.records
                    )),
                    Some(b) => Err(format!(
                        "The chain is BROKEN at record #{} ({}): {}.",
                        b.seq, b.event_id, b.problem
                    )),
                }
            }
            "add_siem" => {
                let opt = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_owned());
                let input = siem::NewDestination {
                    name: form.name.clone(),
                    kind: form.kind.clone(),
                    host: if form.kind == "syslog" {
                        opt(&form.host)
                    } else {
                        None
                    },
                    port: if form.kind == "syslog" {
                        form.port.trim().parse().ok()
                    } else {
                        None
                    },
                    tls: form.kind == "syslog" && form.tls == "on",
                    ca_pem: if form.kind == "syslog" {
                        opt(&form.ca_pem)
                    } else {
                        None
                    },
                    url: if form.kind == "syslog" {
                        None
                    } else {
                        opt(&form.url)
                    },
                    secret: if form.kind == "syslog" {
                        None
                    } else {
                        opt(&form.secret)
                    },
                    start: Some(
                        if form.start == "beginning" {
                            "beginning"
                        } else {
                            "now"
                        }
                        .into(),
                    ),
                };
                match siem::create(&st.store, &st.vault, &tid, input).await {
                    Ok(row) => {
                        st.audit
                            .note(by(
                                "siem.create",
                                Category::Admin,
                                json!({"name": row.name, "kind": row.kind}),
                            ))
                            .await;
                        Ok(format!("Destination {} added.", row.name))
                    }
                    Err(e) => Err(format!("Not added: {e}.")),
                }
            }
            "delete_siem" => match st.store.delete_siem(&tid, &form.id).await {
                Ok(row) => {
                    st.audit
                        .note(by(
                            "siem.delete",
                            Category::Admin,
                            json!({"name": row.name}),
                        ))
                        .await;
                    Ok(format!("Destination {} deleted.", row.name))
                }
                Err(_) => Err("No such destination.".into()),
            },
            "toggle_siem" => {
                let rows = st.store.list_siem(&tid).await.map_err(internal)?;
                match rows.iter().find(|r| r.destination_id == form.id) {
                    Some(r) => {
                        st.store
                            .set_siem_enabled(&tid, &r.destination_id, !r.enabled)
                            .await
                            .map_err(internal)?;
                        st.audit
                            .note(by(
                                "siem.update",
                                Category::Admin,
                                json!({"name": r.name, "enabled": !r.enabled}),
                            ))
                            .await;
                        Ok(format!(
                            "Destination {} {}.",
                            r.name,
                            if r.enabled { "paused" } else { "resumed" }
                        ))
                    }
                    None => Err("No such destination.".into()),
                }
            }
            other => Err(format!("Unknown form {other:?}.")),
        };
        match result {
            Ok(m) => {
                flash(&session, FlashKind::Info, m).await?;
                Ok(true)
            }
            Err(m) => {
                flash(&session, FlashKind::Error, m).await?;
                Ok(false)
            }
        }
    }
}

/// The signed-in admin of the request's tenant (cookie session), for the downloads.
pub(crate) async fn cookie_admin(
    state: &AppState,
    parts: &http::request::Parts,
    session: &Session,
) -> Result<
    (
        std::sync::Arc<crate::tenancy::Tenant>,
        crate::store::UserRow,
    ),
    Response,
> {
    let backend = Backend {
        state: state.clone(),
    };
    let tenant = tenant_of(parts).map_err(|_| StatusCode::NOT_FOUND.into_response())?;
    match backend.signed_in_admin(session, &tenant).await {
        Ok(Some(u)) => Ok((tenant, u)),
        _ => Err((StatusCode::UNAUTHORIZED, "sign in to the console first").into_response()),
    }
}

#[derive(Debug, serde::Deserialize)]
struct ExportQuery {
    format: Option<String>,
    #[serde(flatten)]
    page: std::collections::HashMap<String, String>,
}

async fn export_download(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<ExportQuery>,
    req: axum::extract::Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (tenant, user) = match cookie_admin(&state, &parts, &session).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(format) = export::Format::parse(q.format.as_deref().unwrap_or("csv")) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "format must be csv, jsonl or ocsf",
        )
            .into_response();
    };
    let mut page = AuditPageQuery::default();
    for k in AuditPageQuery::FILTERS {
        if let Some(v) = q.page.get(k) {
            page.set(k, v.clone());
        }
    }
    let query = match filters_of(&page).query(export::PAGE) {
        Ok(q) => q,
        Err(e) => return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response(),
    };
    crate::audit::api::export_response(
        &state,
        &tenant.tenant_id,
        query,
        format,
        (user.user_id, user.email, "console".into()),
    )
    .await
}

async fn checkpoint_download(
    State(state): State<AppState>,
    session: Session,
    req: axum::extract::Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (tenant, user) = match cookie_admin(&state, &parts, &session).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let v = match crate::audit::checkpoint(&state.store, &state.vault, &tenant.tenant_id).await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "a checkpoint could not be made");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    crate::mail::checkpoint_broken(state.mailer.as_ref(), &tenant.tenant_id, &v);
    state
        .audit
        .note(
            Event::new(
                &tenant.tenant_id,
                Category::Security,
                "audit.checkpoint",
                "ok",
            )
            .by(&user.user_id, &user.email)
            .target("audit")
            .detail(json!({"seq": v["seq"], "via": "console"})),
        )
        .await;
    let mut res = axum::Json(v).into_response();
    if let Ok(h) = http::HeaderValue::from_str(&format!(
        "attachment; filename=\"audit-checkpoint-{}.json\"",
        tenant.slug
    )) {
        res.headers_mut()
            .insert(http::header::CONTENT_DISPOSITION, h);
    }
    res
}

/// `/admin/audit/export` and `/admin/audit/checkpoint` (cookie-authenticated downloads).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/audit/export", get(export_download))
        .route("/admin/audit/checkpoint", get(checkpoint_download))
}

impl Backend {
    /// The review pack page: the pack for `days` (recorded as a generation), the statement
    /// and the reviewed tools with their classes.
    pub(super) async fn review_page_for(
        &self,
        parts: &http::request::Parts,
        days: u32,
    ) -> Result<app::api::ReviewPage, BackendError> {
        let tenant = tenant_of(parts)?;
        let admin = self
            .signed_in_admin(&session(parts)?, &tenant)
            .await?
            .ok_or(BackendError::SignedOut)?;
        let st = &self.state;
        let days = days.clamp(1, crate::review::MAX_DAYS);
        let (pack, html) = crate::review::api::generate(
            st,
            &tenant,
            (&admin.user_id, &admin.email),
            Some(days),
            crate::review::api::Format::Console,
        )
        .await
        .map_err(internal)?;
        let html = String::from_utf8_lossy(&html).into_owned();
        let statement = &pack.clients.statement;
        let tools = pack
            .servers
            .iter()
            .flat_map(|s| {
                s.tools.iter().map(|t| {
                    (
                        s.slug.clone(),
                        t.name.clone(),
                        t.class.to_owned(),
                        t.class_source.to_owned(),
                    )
                })
            })
            .collect();
        Ok(app::api::ReviewPage {
            html,
            days: pack.period.days,
            risks: pack.risks.len(),
            generated_at: pack.generated_at.clone(),
            llm_routing: statement.llm_routing.clone(),
            data_processing: statement.data_processing.clone(),
            regulation: statement.regulation.clone(),
            tools,
        })
    }

    /// The console home's dashboard, rendered.
    pub(super) async fn dashboard_for(
        &self,
        parts: &http::request::Parts,
    ) -> Result<String, BackendError> {
        let tenant = tenant_of(parts)?;
        self.signed_in_admin(&session(parts)?, &tenant)
            .await?
            .ok_or(BackendError::SignedOut)?;
        let d = crate::review::api::dashboard(&self.state, &tenant, None)
            .await
            .map_err(internal)?;
        Ok(crate::review::html::dashboard(&d))
    }
}
