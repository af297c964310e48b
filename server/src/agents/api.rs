//! `/api/v1/agents…`: agents (create, read, replace, delete), their tokens and their blast
//! radius. Revoking an agent's tokens is `POST /api/v1/tokens/revoke {"agent": slug}`.

use super::{blast_radius, view, Agent, AgentInput, BlastRadius};
use crate::api::{audited, body};
use crate::auth::TenantAdmin;
use crate::error::ApiError;
use crate::state::AppState;
use crate::tenants::format_time;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/agents", get(list).post(create))
        .route(
            "/api/v1/agents/{slug}",
            get(one).put(replace).delete(remove),
        )
        .route(
            "/api/v1/agents/{slug}/tokens",
            get(list_tokens).post(create_token),
        )
        .route(
            "/api/v1/agents/{slug}/tokens/{id}",
            axum::routing::delete(revoke_token),
        )
        .route("/api/v1/agents/{slug}/blast-radius", get(radius))
}

async fn list(State(state): State<AppState>, admin: TenantAdmin) -> Result<Json<Value>, ApiError> {
    let rows = state.store.list_agents(&admin.tenant.tenant_id).await?;
    let agents: Vec<Value> = rows
        .iter()
        .map(|r| view(&state, &admin.tenant.slug, r))
        .collect();
    Ok(Json(json!({ "agents": agents })))
}

async fn create(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<AgentInput>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let input = body(json)?;
    let row = super::create(&state.store, &admin.tenant.tenant_id, &input).await?;
    state.refresh_snapshots().await?;
    let v = view(&state, &admin.tenant.slug, &row);
    audited(
        &state,
        &admin,
        "agent.create",
        &format!("agent:{}", row.slug),
        v.clone(),
    )
    .await;
    Ok((StatusCode::CREATED, Json(v)))
}

async fn one(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = state
        .store
        .agent_by_slug(&admin.tenant.tenant_id, &slug)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(view(&state, &admin.tenant.slug, &row)))
}

async fn replace(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
    json: Result<Json<AgentInput>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let input = body(json)?;
    let row = super::update(&state.store, &admin.tenant.tenant_id, &slug, &input).await?;
    state.refresh_snapshots().await?;
    let v = view(&state, &admin.tenant.slug, &row);
    audited(
        &state,
        &admin,
        "agent.update",
        &format!("agent:{}", row.slug),
        v.clone(),
    )
    .await;
    Ok(Json(v))
}

async fn remove(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tid = &admin.tenant.tenant_id;
    let row = state
        .store
        .agent_by_slug(tid, &slug)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.store.delete_agent(tid, &row.agent_id).await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "agent.delete",
        &format!("agent:{}", row.slug),
        json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    expires_in_days: Option<i64>,
}

async fn create_token(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
    json: Result<Json<CreateToken>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = body(json)?;
    let (row, token) = super::issue_token(
        &state.store,
        &admin.tenant.tenant_id,
        &slug,
        req.label.as_deref().unwrap_or(""),
        req.expires_in_days,
    )
    .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "token.issue",
        &format!("agent:{}", row.slug),
        json!({"kind": "agent", "expires_in_days": req.expires_in_days}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "agent": row.slug,
            // Shown once: only its hash is stored.
            "token": token.expose_secret(),
            "endpoint": view(&state, &admin.tenant.slug, &row)["endpoint"],
        })),
    ))
}

async fn list_tokens(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tid = &admin.tenant.tenant_id;
    let row = state
        .store
        .agent_by_slug(tid, &slug)
        .await?
        .ok_or(ApiError::NotFound)?;
    let tokens: Vec<Value> = state
        .store
        .list_agent_tokens(tid, &row.agent_id)
        .await?
        .into_iter()
        .map(|t| {
            json!({
                "id": t.agent_token_id, "label": t.label,
                "created_at": format_time(t.created_at),
                "expires_at": t.expires_at.map(format_time),
                "last_used_at": t.last_used_at.map(format_time),
            })
        })
        .collect();
    Ok(Json(json!({ "agent": row.slug, "tokens": tokens })))
}

/// Revokes one of an agent's tokens by id (as listed); effective on the next request.
async fn revoke_token(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path((slug, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tid = &admin.tenant.tenant_id;
    let row = state
        .store
        .agent_by_slug(tid, &slug)
        .await?
        .ok_or(ApiError::NotFound)?;
    let label = state
        .store
        .revoke_agent_token_by_id(tid, &row.agent_id, &id)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.refresh_snapshots().await?;
    let e = crate::audit::Event::new(tid, crate::audit::Category::Security, "token.revoke", "ok")
        .by(&admin.user.user_id, &admin.user.email)
        .target(format!("agent:{}", row.slug))
        .detail(json!({"label": label, "token_id": id}));
    state.audit.note(e).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The blast radius of an agent, from the gateway's current snapshot (policy, reviewed
/// catalogs, tools seen in lists).
pub async fn compute(
    state: &AppState,
    tenant_id: &str,
    slug: &str,
) -> Result<Option<BlastRadius>, crate::store::StoreError> {
    let Some(row) = state.store.agent_by_slug(tenant_id, slug).await? else {
        return Ok(None);
    };
    let agent = Agent::from_row(&row);
    let servers: Vec<(String, String)> = state
        .store
        .list_servers(tenant_id)
        .await?
        .into_iter()
        .map(|s| (s.slug, s.name))
        .collect();
    let policy = state.gateway.tenant_policy(tenant_id);
    let gw = &state.gateway;
    Ok(Some(blast_radius(&agent, &policy, &servers, |server| {
        gw.observed_tools(tenant_id, server)
            .into_iter()
            .map(|t| {
                let h = gw.observed_hints(tenant_id, server, &t);
                (t, h)
            })
            .collect()
    })))
}

async fn radius(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<BlastRadius>, ApiError> {
    compute(&state, &admin.tenant.tenant_id, &slug)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}
