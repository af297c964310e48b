//! `/api/v1/review-pack…`, `/api/v1/dashboard`, `/api/v1/signals…` and the tool classes, plus
//! the console's cookie-authenticated download `/admin/review-pack/download`. Generating a pack
//! is an audit event (`review_pack.generate`, admin category) naming its format and period.

use super::model::{Dashboard, DayPoint, KindCount, Pack, Statement};
use super::{Options, ReviewError, Sources, DAY_US};
use crate::audit::{Category, Event};
use crate::auth::TenantAdmin;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenancy::Tenant;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use http::{header, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/review-pack", get(pack))
        .route(
            "/api/v1/review-pack/statement",
            get(get_statement).put(put_statement),
        )
        .route("/api/v1/dashboard", get(dashboard_api))
        .route("/api/v1/signals", get(list_signals))
        .route("/api/v1/signals/scan", post(scan_now))
        .route("/api/v1/signals/settings", put(put_signal_settings))
        .route(
            "/api/v1/servers/{slug}/tool-classes/{tool}",
            put(put_tool_class).delete(delete_tool_class),
        )
}

/// `/admin/review-pack/download` (the console's downloads, cookie-authenticated).
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/review-pack/download", get(download))
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::Invalid(m) => ApiError::Invalid(m),
            ReviewError::Store(e) => e.into(),
            ReviewError::Access(e) => ApiError::Internal(e.to_string()),
            ReviewError::Vault(m) | ReviewError::Pdf(m) => ApiError::Internal(m),
        }
    }
}

/// The formats a pack comes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Html,
    Pdf,
    /// The console page (an HTML fragment; not a download format).
    Console,
}

impl Format {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "json" => Some(Self::Json),
            "html" => Some(Self::Html),
            "pdf" => Some(Self::Pdf),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Html => "html",
            Self::Pdf => "pdf",
            Self::Console => "console",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Html | Self::Console => "text/html; charset=utf-8",
            Self::Pdf => "application/pdf",
        }
    }
}

/// The builder's sources for a running server.
pub fn sources<'a>(state: &'a AppState, tenant: &Tenant) -> Sources<'a> {
    Sources {
        store: &state.store,
        vault: &state.vault,
        portal_url: Some(state.urls.tenant(&tenant.slug)),
        gateway_base_url: Some(
            state
                .urls
                .tenant_gateway(&tenant.slug)
                .trim_end_matches('/')
                .to_owned(),
        ),
    }
}

/// The pack rendered in `format`.
pub async fn render(pack: &Pack, format: Format) -> Result<Vec<u8>, ReviewError> {
    Ok(match format {
        Format::Json => {
            serde_json::to_vec_pretty(pack).map_err(|e| ReviewError::Invalid(e.to_string()))?
        }
        Format::Html => super::html::document(pack).into_bytes(),
        Format::Pdf => super::pdf::render(&super::html::document(pack)).await?,
        Format::Console => super::html::fragment(pack).into_bytes(),
    })
}

/// The file name a pack downloads as.
pub fn file_name(pack: &Pack, format: Format) -> String {
    let date: String = pack.generated_at.chars().take(10).collect();
    format!(
        "portcullis-review-pack-{}-{date}.{}",
        pack.tenant.slug,
        format.as_str()
    )
}

/// Builds, records and renders a pack for a signed-in admin (API or console).
pub async fn generate(
    state: &AppState,
    tenant: &Tenant,
    by: (&str, &str),
    days: Option<u32>,
    format: Format,
) -> Result<(Pack, Vec<u8>), ReviewError> {
    let opts = Options::new(days, crate::store::now_micros(), by.1)?;
    // The data inventory's per-replica tallies go to the database first.
    state.gateway.inventory.flush(&state.store).await;
    let pack = super::build(&sources(state, tenant), tenant, &opts).await?;
    let body = render(&pack, format).await?;
    let mut e = Event::new(
        &tenant.tenant_id,
        Category::Admin,
        "review_pack.generate",
        "ok",
    )
    .by(by.0, by.1);
    e.detail = json!({
        "format": format.as_str(), "days": pack.period.days, "from": pack.period.from,
        "to": pack.period.to, "risks": pack.risks.iter().map(|r| r.id).collect::<Vec<_>>(),
    });
    state.audit.note(e).await;
    Ok((pack, body))
}

fn respond(pack: &Pack, body: Vec<u8>, format: Format, attachment: bool) -> Response {
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(format.content_type()) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if attachment || format != Format::Json {
        let disposition = format!("attachment; filename=\"{}\"", file_name(pack, format));
        if let Ok(v) = http::HeaderValue::from_str(&disposition) {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    res
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackQuery {
    format: Option<String>,
    days: Option<u32>,
}

fn format_of(q: Option<&str>) -> Result<Format, ApiError> {
    Format::parse(q.unwrap_or("json"))
        .ok_or_else(|| ApiError::Invalid("format must be json, html or pdf".into()))
}

async fn pack(
    State(state): State<AppState>,
    admin: TenantAdmin,
    q: Result<Query<PackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let format = format_of(q.format.as_deref())?;
    let (pack, body) = generate(
        &state,
        &admin.tenant,
        (&admin.user.user_id, &admin.user.email),
        q.days,
        format,
    )
    .await?;
    Ok(respond(&pack, body, format, false))
}

async fn download(
    State(state): State<AppState>,
    session: tower_sessions::Session,
    Query(q): Query<std::collections::HashMap<String, String>>,
    req: axum::extract::Request,
) -> Response {
    let (parts, _) = req.into_parts();
    let (tenant, user) = match crate::console::audit::cookie_admin(&state, &parts, &session).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(format) = Format::parse(q.get("format").map_or("html", String::as_str)) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "format must be json, html or pdf",
        )
            .into_response();
    };
    let days = match q.get("days").filter(|d| !d.is_empty()) {
        Some(d) => match d.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                return (StatusCode::UNPROCESSABLE_ENTITY, "days must be a number").into_response()
            }
        },
        None => None,
    };
    match generate(&state, &tenant, (&user.user_id, &user.email), days, format).await {
        Ok((pack, body)) => respond(&pack, body, format, true),
        Err(ReviewError::Invalid(m)) => (StatusCode::UNPROCESSABLE_ENTITY, m).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a review pack could not be made");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the review pack could not be made; the server log says why",
            )
                .into_response()
        }
    }
}

async fn get_statement(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<Statement>, ApiError> {
    Ok(Json(
        super::statement(&state.store, &admin.tenant.tenant_id).await?,
    ))
}

/// What an admin writes for section 6.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementInput {
    #[serde(default)]
    pub llm_routing: String,
    #[serde(default)]
    pub data_processing: String,
    #[serde(default)]
    pub regulation: String,
}

/// Saves the statement and records the change (API and console).
pub async fn set_statement(
    state: &AppState,
    tenant: &Tenant,
    by: (&str, &str),
    input: StatementInput,
) -> Result<Statement, ReviewError> {
    let before = super::statement(&state.store, &tenant.tenant_id).await?;
    let s = super::save_statement(
        &state.store,
        &tenant.tenant_id,
        Statement {
            llm_routing: input.llm_routing,
            data_processing: input.data_processing,
            regulation: input.regulation,
            updated_by: None,
            updated_at: None,
        },
        by.1,
        crate::store::now_micros(),
    )
    .await?;
    let mut e = Event::new(
        &tenant.tenant_id,
        Category::Admin,
        "review_pack.statement",
        "ok",
    )
    .by(by.0, by.1);
    e.detail = json!({
        "regulation": {"before": before.regulation, "after": s.regulation},
        "llm_routing_changed": before.llm_routing != s.llm_routing,
        "data_processing_changed": before.data_processing != s.data_processing,
    });
    state.audit.note(e).await;
    Ok(s)
}

async fn put_statement(
    State(state): State<AppState>,
    admin: TenantAdmin,
    body: Result<Json<StatementInput>, JsonRejection>,
) -> Result<Json<Statement>, ApiError> {
    let Json(input) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    Ok(Json(
        set_statement(
            &state,
            &admin.tenant,
            (&admin.user.user_id, &admin.user.email),
            input,
        )
        .await?,
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DaysQuery {
    days: Option<u32>,
}

/// The console home's dashboard over the last `days` (default 14).
pub async fn dashboard(
    state: &AppState,
    tenant: &Tenant,
    days: Option<u32>,
) -> Result<Dashboard, ReviewError> {
    let days = days.unwrap_or(14);
    let opts = Options::new(Some(days), crate::store::now_micros(), "dashboard")?;
    let store = &state.store;
    let tid = &tenant.tenant_id;
    let (since, until) = (opts.since(), opts.now);
    let first_day = since / DAY_US + 1;
    let last_day = until / DAY_US;
    let mut series: Vec<DayPoint> = (first_day..=last_day)
        .map(|d| DayPoint {
            date: crate::tenants::format_time(d * DAY_US)
                .chars()
                .take(10)
                .collect(),
            calls: 0,
            denials: 0,
            redactions: 0,
            injection_blocks: 0,
            active_users: 0,
        })
        .collect();
    let day_start = first_day * DAY_US;
    for row in store.mcp_days(tid, day_start, until).await? {
        if let Some(p) = usize::try_from(row.day - first_day)
            .ok()
            .and_then(|i| series.get_mut(i))
        {
            p.calls = row.calls;
            p.denials = row.denials;
            p.active_users = row.users;
        }
    }
    for (_, at, _, detail) in store.filter_records(tid, day_start, until).await? {
        let Ok(d) = serde_json::from_str::<Value>(&detail) else {
            continue;
        };
        let (_, t) = super::tally(&d);
        if let Some(p) = usize::try_from(at / DAY_US - first_day)
            .ok()
            .and_then(|i| series.get_mut(i))
        {
            p.redactions += t.redacted + t.masked + t.blocked;
            p.injection_blocks += t.injections_blocked;
        }
    }
    let kc = |v: Vec<(String, i64)>| {
        v.into_iter()
            .map(|(kind, count)| KindCount { kind, count })
            .collect::<Vec<_>>()
    };
    let top_servers = kc(store.top_servers(tid, day_start, until, 5).await?);
    let (tools, _) = store.audit_top(tid, day_start, 5).await?;
    let top_tools = tools
        .into_iter()
        .map(|c| KindCount {
            kind: c.name,
            count: c.count,
        })
        .collect();
    // The open risks are the pack's (built now, for the last 30 days), but for the chain
    // check: that walks the whole log, which the pack does and the home page must not.
    state.gateway.inventory.flush(store).await;
    let mut opts = Options::new(None, until, "dashboard")?;
    opts.verify_chain = false;
    let pack = super::build(&sources(state, tenant), tenant, &opts).await?;
    Ok(Dashboard {
        days,
        series,
        top_servers,
        top_tools,
        open_risks: pack.risks.len(),
        high_risks: pack.risks.iter().filter(|r| r.severity == "high").count(),
        signals: store
            .signals(tid, since, 10)
            .await?
            .into_iter()
            .map(super::signals::facts)
            .collect(),
    })
}

async fn dashboard_api(
    State(state): State<AppState>,
    admin: TenantAdmin,
    q: Result<Query<DaysQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Dashboard>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    Ok(Json(dashboard(&state, &admin.tenant, q.days).await?))
}

async fn list_signals(
    State(state): State<AppState>,
    admin: TenantAdmin,
    q: Result<Query<DaysQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Invalid(e.body_text()))?;
    let opts = Options::new(Some(q.days.unwrap_or(7)), crate::store::now_micros(), "")?;
    let rows = state
        .store
        .signals(&admin.tenant.tenant_id, opts.since(), 500)
        .await?;
    Ok(Json(
        json!({"signals": rows.into_iter().map(signal_json).collect::<Vec<_>>()}),
    ))
}

fn signal_json(r: crate::store::review::SignalRow) -> Value {
    let detail: Value = serde_json::from_str(&r.detail).unwrap_or_default();
    json!({
        "id": r.signal_id, "kind": r.kind, "subject": r.subject, "severity": r.severity,
        "at": crate::tenants::format_time(r.at), "summary": r.summary,
        "numbers": detail["numbers"], "records": detail["seqs"],
        "records_href": detail["records_href"],
    })
}

/// Runs the detectors over the last hour now (they also run in the background).
async fn scan_now(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<Value>, ApiError> {
    let rows =
        super::signals::scan(&state, &admin.tenant.tenant_id, crate::store::now_micros()).await?;
    Ok(Json(
        json!({"raised": rows.into_iter().map(signal_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalSettings {
    mail: bool,
}

async fn put_signal_settings(
    State(state): State<AppState>,
    admin: TenantAdmin,
    body: Result<Json<SignalSettings>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(s) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let v = json!({"mail": s.mail});
    state
        .store
        .set_tenant_setting(
            &admin.tenant.tenant_id,
            super::signals::SETTING,
            &v.to_string(),
        )
        .await?;
    let mut e = Event::new(
        &admin.tenant.tenant_id,
        Category::Admin,
        "signals.settings",
        "ok",
    )
    .by(&admin.user.user_id, &admin.user.email);
    e.detail = v.clone();
    state.audit.note(e).await;
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassInput {
    class: String,
}

/// Sets an admin's class for a tool of the reviewed catalog (API and console).
pub async fn set_tool_class(
    state: &AppState,
    tenant: &Tenant,
    by: (&str, &str),
    slug: &str,
    tool: &str,
    class: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(c) = class {
        if !matches!(c, "read_only" | "writing" | "destructive") {
            return Err(ApiError::Invalid(
                "class must be read_only, writing or destructive".into(),
            ));
        }
    }
    let tid = &tenant.tenant_id;
    let parsed = crate::domain::ServerSlug::parse(slug).map_err(|_| ApiError::NotFound)?;
    let row = state
        .store
        .server_by_slug(tid, &parsed)
        .await?
        .ok_or(ApiError::NotFound)?;
    let known = state
        .store
        .catalog_rows(tid)
        .await?
        .iter()
        .any(|(s, t, ..)| s == slug && t == tool);
    if !known {
        return Err(ApiError::Invalid(format!(
            "{tool} is not in {slug}'s reviewed catalog: review the server first"
        )));
    }
    state
        .store
        .set_tool_class(tid, &row.server_id, tool, class, by.1)
        .await?;
    let mut e = Event::new(tid, Category::Admin, "tool.class", "ok")
        .by(by.0, by.1)
        .server(slug);
    e.target = Some(tool.to_owned());
    e.detail = json!({"class": class});
    state.audit.note(e).await;
    state
        .refresh_snapshots()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(())
}

async fn put_tool_class(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path((slug, tool)): Path<(String, String)>,
    body: Result<Json<ClassInput>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(input) = body.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    set_tool_class(
        &state,
        &admin.tenant,
        (&admin.user.user_id, &admin.user.email),
        &slug,
        &tool,
        Some(&input.class),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_tool_class(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path((slug, tool)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    set_tool_class(
        &state,
        &admin.tenant,
        (&admin.user.user_id, &admin.user.email),
        &slug,
        &tool,
        None,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
