//! `/api/v1`: the JSON API for automation, documented by `docs/openapi.json` (served at
//! `/api/v1/openapi.json`). Handlers are thin: extract, parse, call one service or store
//! function, map the result. Tenant endpoints answer only on tenant hosts, platform endpoints
//! only on the platform host; elsewhere they are 404.

use crate::auth::{PlatformAdmin, TenantAdmin};
use crate::domain::DisplayName;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenancy::Tenant;
use crate::tenants::{self, format_time};
use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/tenant", get(get_tenant).patch(patch_tenant))
        .route("/api/v1/me", get(me))
        .route("/api/v1/tenants", get(list_tenants).post(create_tenant))
}

/// JSON bodies that fail to parse become a 400 in our envelope, not axum's plain text.
fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    json.map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

async fn openapi() -> impl IntoResponse {
    ([(http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

#[derive(Debug, Serialize)]
pub struct TenantView {
    pub slug: String,
    pub name: String,
    pub created_at: String,
    pub console_url: String,
    pub gateway_base_url: String,
}

fn tenant_view(state: &AppState, slug: &str, name: &str, created_at: i64) -> TenantView {
    TenantView {
        slug: slug.to_owned(),
        name: name.to_owned(),
        created_at: format_time(created_at),
        console_url: state.urls.tenant_console(slug),
        gateway_base_url: state.urls.tenant_gateway(slug),
    }
}

fn view_of(state: &AppState, t: &Tenant) -> TenantView {
    tenant_view(state, &t.slug, &t.name, t.created_at)
}

async fn get_tenant(State(state): State<AppState>, admin: TenantAdmin) -> Json<TenantView> {
    Json(view_of(&state, &admin.tenant))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchTenant {
    name: String,
}

async fn patch_tenant(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<PatchTenant>, JsonRejection>,
) -> Result<Json<TenantView>, ApiError> {
    let patch = body(json)?;
    let name =
        DisplayName::parse(&patch.name).map_err(|e| ApiError::Invalid(format!("name: {}", e.0)))?;
    state
        .store
        .rename_tenant(&admin.tenant.tenant_id, &name)
        .await?;
    state.tenancy.refresh(&state.store).await?;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, "tenant renamed");
    Ok(Json(tenant_view(
        &state,
        &admin.tenant.slug,
        name.as_str(),
        admin.tenant.created_at,
    )))
}

#[derive(Debug, Serialize)]
struct Me {
    user_id: String,
    email: String,
    is_admin: bool,
    tenant: String,
}

async fn me(admin: TenantAdmin) -> Json<Me> {
    Json(Me {
        user_id: admin.user.user_id,
        email: admin.user.email,
        is_admin: admin.user.is_admin,
        tenant: admin.tenant.slug.clone(),
    })
}

async fn list_tenants(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state.store.list_tenants().await?;
    let tenants: Vec<TenantView> = rows
        .iter()
        .map(|r| tenant_view(&state, &r.slug, &r.name, r.created_at))
        .collect();
    Ok(Json(serde_json::json!({ "tenants": tenants })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    slug: String,
    name: String,
    admin_email: String,
}

async fn create_tenant(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    json: Result<Json<CreateTenant>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = body(json)?;
    let created = tenants::create(&state.store, &req.slug, &req.name, &req.admin_email).await?;
    // Serve the new tenant from this replica at once; others follow via the change counter.
    state.tenancy.refresh(&state.store).await?;
    let t = &created.tenant;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "tenant": tenant_view(&state, &t.slug, &t.name, t.created_at),
            "admin_email": created.admin_email,
            // Shown once: only its hash is stored.
            "admin_token": created.admin_token.expose_secret(),
        })),
    ))
}
