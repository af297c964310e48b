//! `/api/v1/audit…`: search, one record, statistics for the charts, streaming export, chain
//! verification and signed checkpoints, the tenant's audit settings (argument policy,
//! retention, legal hold), purge, and SIEM destinations.

use super::export::{self, Format};
use super::{retention, siem, Category, Event};
use crate::auth::TenantAdmin;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::AuditQuery;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/audit", get(search))
        .route("/api/v1/audit/events/{id}", get(one))
        .route("/api/v1/audit/stats", get(stats))
        .route("/api/v1/audit/export", get(export_records))
        .route("/api/v1/audit/verify", get(verify))
        .route("/api/v1/audit/checkpoint", get(checkpoint))
        .route(
            "/api/v1/audit/settings",
            get(get_settings).put(put_settings),
        )
        .route("/api/v1/audit/purge", post(purge))
        .route("/api/v1/audit/siem", get(list_siem).post(create_siem))
        .route(
            "/api/v1/audit/siem/{id}",
            axum::routing::delete(delete_siem).patch(patch_siem),
        )
}

/// The filters of a search or export, as query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filters {
    pub category: Option<String>,
    pub action: Option<String>,
    /// Alias of `action`: the MCP method.
    pub method: Option<String>,
    #[serde(alias = "user")]
    pub actor: Option<String>,
    pub group: Option<String>,
    pub agent: Option<String>,
    pub client: Option<String>,
    pub server: Option<String>,
    pub decision: Option<String>,
    pub outcome: Option<String>,
    /// Text in the target (tool, resource URI, prompt).
    pub q: Option<String>,
    /// RFC 3339 times.
    pub since: Option<String>,
    pub until: Option<String>,
    /// The `next` of the previous page.
    pub before: Option<i64>,
    pub limit: Option<i64>,
    /// Exports: csv, jsonl or ocsf.
    pub format: Option<String>,
}

/// RFC 3339 (or a bare date, meaning its midnight UTC) to µs.
pub fn micros_of(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    let Some(t) = v.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let parsed = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::Date::parse(t, time::macros::format_description!("[year]-[month]-[day]"))
                .map(|d| d.midnight().assume_utc())
        })
        .map_err(|_| {
            ApiError::Invalid(format!(
                "{name} must be an RFC 3339 time or a date (YYYY-MM-DD)"
            ))
        })?;
    Ok(Some(
        i64::try_from(parsed.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX),
    ))
}

impl Filters {
    pub fn query(self, limit: i64) -> Result<AuditQuery, ApiError> {
        if let Some(d) = self.decision.as_deref() {
            if !["allow", "deny", ""].contains(&d) {
                return Err(ApiError::Invalid("decision must be allow or deny".into()));
            }
        }
        if let Some(c) = self.category.as_deref() {
            if !["mcp", "admin", "security", ""].contains(&c) {
                return Err(ApiError::Invalid(
                    "category must be mcp, admin or security".into(),
                ));
            }
        }
        Ok(AuditQuery {
            since: micros_of("since", self.since.as_deref())?,
            until: micros_of("until", self.until.as_deref())?,
            category: self.category,
            action: self.action.or(self.method),
            actor: self.actor,
            group: self.group,
            agent: self.agent,
            client: self.client,
            server: self.server,
            decision: self.decision,
            outcome: self.outcome,
            q: self.q,
            before_seq: self.before,
            after_seq: None,
            ascending: false,
            limit,
        })
    }
}

async fn search(
    State(state): State<AppState>,
    admin: TenantAdmin,
    q: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(f) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let limit = f.limit.unwrap_or(100).clamp(1, 1000);
    let query = f.query(limit)?;
    let rows = state
        .store
        .search_audit(&admin.tenant.tenant_id, &query)
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten();
    let events: Vec<Value> = rows.iter().map(export::view).collect();
    Ok(Json(json!({ "events": events, "next": next })))
}

async fn one(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = state
        .store
        .audit_event(&admin.tenant.tenant_id, &id)
        .await?;
    let mut v = export::view(&row);
    v["prev_hash"] = json!(row.prev_hash);
    Ok(Json(v))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatsQuery {
    /// How far back (days, 1–90; default 7).
    days: Option<i64>,
}

async fn stats(
    State(state): State<AppState>,
    admin: TenantAdmin,
    q: Result<Query<StatsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let days = q.days.unwrap_or(7);
    if !(1..=90).contains(&days) {
        return Err(ApiError::Invalid("days must be 1 to 90".into()));
    }
    Ok(Json(
        super::stats(&state.store, &admin.tenant.tenant_id, days).await?,
    ))
}

async fn export_records(
    State(state): State<AppState>,
    admin: TenantAdmin,
    q: Result<Query<Filters>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut f) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let format = Format::parse(f.format.take().as_deref().unwrap_or("jsonl"))
        .ok_or_else(|| ApiError::Invalid("format must be csv, jsonl or ocsf".into()))?;
    let query = f.query(export::PAGE)?;
    let actor = (
        admin.user.user_id.clone(),
        admin.user.email.clone(),
        "api".to_owned(),
    );
    Ok(export_response(&state, &admin.tenant.tenant_id, query, format, actor).await)
}

/// The streamed export of `query` in `format`, after its own record is durable.
pub async fn export_response(
    state: &AppState,
    tenant_id: &str,
    query: AuditQuery,
    format: Format,
    (user_id, email, via): (String, String, String),
) -> Response {
    let records = state.store.count_audit(tenant_id, &query, None).await.ok();
    let e = Event::new(tenant_id, Category::Security, "audit.export", "ok")
        .by(&user_id, &email)
        .target(format.extension())
        .detail(
            json!({"format": format.extension(), "via": via, "records": records,
            "filter": super::describe(&query)}),
        );
    if let Err(e) = state.audit.record(e).await {
        // An export that cannot be recorded is not made.
        return ApiError::Internal(e.to_string()).into_response();
    }
    let stamp = export::time_micros(crate::store::now_micros()).replace([':', '.'], "-");
    let mut res = axum::body::Body::from_stream(export::stream(
        state.store.clone(),
        tenant_id.to_owned(),
        query,
        format,
    ))
    .into_response();
    let h = res.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(format.content_type()),
    );
    if let Ok(v) = http::HeaderValue::from_str(&format!(
        "attachment; filename=\"audit-{stamp}.{}\"",
        format.extension()
    )) {
        h.insert(http::header::CONTENT_DISPOSITION, v);
    }
    if let Some(n) = records {
        h.insert("x-portcullis-records", n.into());
    }
    res
}

async fn verify(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<super::Verification>, ApiError> {
    let (v, _, _) = super::verify_stored(&state.store, &admin.tenant.tenant_id).await?;
    crate::mail::chain_broken(state.mailer.as_ref(), &admin.tenant.tenant_id, &v);
    Ok(Json(v))
}

/// The chain's head, signed: keep it outside the product and a later rewrite of the log (even
/// one that recomputes every hash) is caught by comparing.
async fn checkpoint(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<Value>, ApiError> {
    let v = super::checkpoint(&state.store, &state.vault, &admin.tenant.tenant_id).await?;
    crate::mail::checkpoint_broken(state.mailer.as_ref(), &admin.tenant.tenant_id, &v);
    audited(
        &state,
        &admin,
        Category::Security,
        "audit.checkpoint",
        json!({"seq": v["seq"]}),
    )
    .await;
    Ok(Json(v))
}

async fn audited(state: &AppState, admin: &TenantAdmin, cat: Category, action: &str, d: Value) {
    let e = Event::new(&admin.tenant.tenant_id, cat, action, "ok")
        .by(&admin.user.user_id, &admin.user.email)
        .target("audit")
        .detail(d);
    state.audit.note(e).await;
}

async fn get_settings(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        retention::settings_view(&state.store, &admin.tenant.tenant_id).await?,
    ))
}

async fn put_settings(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<retention::SettingsInput>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let input = json
        .map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let (before, after) = retention::save(&state.store, &admin.tenant.tenant_id, input)
        .await
        .map_err(ApiError::Invalid)?;
    audited(
        &state,
        &admin,
        Category::Admin,
        "audit.settings.update",
        json!({"before": before, "after": after}),
    )
    .await;
    Ok(Json(
        retention::settings_view(&state.store, &admin.tenant.tenant_id).await?,
    ))
}

async fn purge(State(state): State<AppState>, admin: TenantAdmin) -> Result<Json<Value>, ApiError> {
    let actor = (admin.user.user_id.clone(), admin.user.email.clone());
    let report = retention::purge_tenant(
        &state.store,
        &state.audit,
        &admin.tenant.tenant_id,
        Some(actor),
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(serde_json::to_value(report).unwrap_or_default()))
}

async fn list_siem(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<Value>, ApiError> {
    let rows = state.store.list_siem(&admin.tenant.tenant_id).await?;
    let head = state
        .store
        .audit_volume(&admin.tenant.tenant_id)
        .await?
        .newest_seq
        .unwrap_or(0);
    let list: Vec<Value> = rows.iter().map(|r| siem::view(r, head)).collect();
    Ok(Json(json!({ "destinations": list })))
}

async fn create_siem(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<siem::NewDestination>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input = json
        .map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let row = siem::create(&state.store, &state.vault, &admin.tenant.tenant_id, input).await?;
    audited(
        &state,
        &admin,
        Category::Admin,
        "siem.create",
        json!({"name": row.name, "kind": row.kind, "settings": serde_json::from_str::<Value>(&row.settings).unwrap_or_default()}),
    )
    .await;
    let head = state
        .store
        .audit_volume(&admin.tenant.tenant_id)
        .await?
        .newest_seq
        .unwrap_or(0);
    Ok((StatusCode::CREATED, Json(siem::view(&row, head))))
}

async fn delete_siem(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let row = state
        .store
        .delete_siem(&admin.tenant.tenant_id, &id)
        .await?;
    audited(
        &state,
        &admin,
        Category::Admin,
        "siem.delete",
        json!({"name": row.name, "kind": row.kind}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SiemPatch {
    enabled: bool,
}

async fn patch_siem(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(id): Path<String>,
    json: Result<Json<SiemPatch>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let p = json
        .map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))?;
    state
        .store
        .set_siem_enabled(&admin.tenant.tenant_id, &id, p.enabled)
        .await?;
    audited(
        &state,
        &admin,
        Category::Admin,
        "siem.update",
        json!({"id": id, "enabled": p.enabled}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
