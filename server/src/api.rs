//! `/api/v1`: the JSON API for automation, documented by `docs/openapi.json` (served at
//! `/api/v1/openapi.json`). Handlers are thin: extract, parse, call one service or store
//! function, map the result. Tenant endpoints answer only on tenant hosts, platform endpoints
//! only on the platform host; elsewhere they are 404.

use crate::access;
use crate::auth::{PlatformAdmin, TenantAdmin};
use crate::domain::{DisplayName, ServerSlug};
use crate::error::ApiError;
use crate::servers;
use crate::state::AppState;
use crate::tenancy::Tenant;
use crate::tenants::{self, format_time};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
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
        .route("/api/v1/servers", get(list_servers).post(add_server))
        .route(
            "/api/v1/servers/{slug}",
            get(get_server).delete(delete_server).patch(patch_server),
        )
        .route(
            "/api/v1/servers/{slug}/test",
            axum::routing::post(test_server),
        )
        .route(
            "/api/v1/servers/{slug}/credential",
            get(get_credential)
                .put(put_credential)
                .delete(delete_credential),
        )
        .route("/api/v1/servers/{slug}/connections", get(list_connections))
        .route(
            "/api/v1/servers/{slug}/connections/{user}",
            axum::routing::delete(end_connection),
        )
        .route(
            "/api/v1/servers/{slug}/filters",
            get(get_filters).put(put_filters).delete(delete_filters),
        )
        .route(
            "/api/v1/filters",
            get(get_default_filters)
                .put(put_default_filters)
                .delete(delete_default_filters),
        )
        .route("/api/v1/vault", get(vault_status))
        .route("/api/v1/vault/rotate", axum::routing::post(rotate_vault))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/revoke", axum::routing::post(revoke_tokens))
        .route("/api/v1/oauth/grants", get(list_grants))
        .route("/api/v1/approvals", get(list_approvals))
        .route(
            "/api/v1/approvals/{id}/{decision}",
            axum::routing::post(decide_approval),
        )
        .route(
            "/api/v1/approvals/rules",
            get(list_approval_rules).post(create_approval_rule),
        )
        .route(
            "/api/v1/approvals/rules/{id}",
            axum::routing::delete(delete_approval_rule),
        )
        .route("/api/v1/limits", get(list_limits).post(create_limit))
        .route("/api/v1/limits/{id}", axum::routing::delete(delete_limit))
        .route(
            "/api/v1/servers/{slug}/catalog",
            axum::routing::post(record_catalog),
        )
        .route("/api/v1/tool-changes", get(list_tool_changes))
        .route("/api/v1/inventory", get(tenant_inventory))
        .route(
            "/api/v1/filter-hooks",
            get(list_filter_hooks).post(add_filter_hook),
        )
        .route(
            "/api/v1/filter-hooks/{id}",
            axum::routing::delete(delete_filter_hook),
        )
        .route("/api/v1/servers/{slug}/inventory", get(server_inventory))
        .route(
            "/api/v1/servers/{slug}/tool-changes",
            get(list_server_tool_changes),
        )
        .route(
            "/api/v1/servers/{slug}/tool-changes/{tool}/{decision}",
            axum::routing::post(decide_tool_change),
        )
        .route(
            "/api/v1/registries",
            get(list_registries).post(create_registry),
        )
        .route(
            "/api/v1/registries/{slug}",
            get(get_registry)
                .delete(delete_registry)
                .patch(patch_registry),
        )
        .route(
            "/api/v1/registries/{slug}/grants",
            axum::routing::post(add_grant),
        )
        .route(
            "/api/v1/registries/{slug}/grants/{grant}",
            axum::routing::put(put_grant).delete(delete_grant),
        )
        .route("/api/v1/users", get(list_users))
        .route("/api/v1/users/{id}", axum::routing::patch(patch_user))
        .route("/api/v1/groups", get(list_groups))
        .route("/api/v1/policy/explain", axum::routing::post(explain))
        .route("/api/v1/policy/who-can", get(who_can))
        .route("/api/v1/policy/reach", get(reach))
        .route("/api/v1/scim/token", axum::routing::post(rotate_scim_token))
        .route("/api/v1/sso", get(get_sso).put(put_sso).delete(delete_sso))
        .merge(crate::audit::api::routes())
        .merge(crate::agents::api::routes())
        .merge(crate::review::api::routes())
}

/// JSON bodies that fail to parse become a 400 in our envelope, not axum's plain text.
pub(crate) fn body<T>(json: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
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
    state.refresh_snapshots().await?;
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
    state.refresh_snapshots().await?;
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

async fn list_servers(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state.store.list_servers(&admin.tenant.tenant_id).await?;
    let servers: Vec<_> = rows
        .iter()
        .map(|r| servers::view(Some(&state.urls), &admin.tenant.slug, r))
        .collect();
    Ok(Json(serde_json::json!({ "servers": servers })))
}

async fn add_server(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<servers::NewServer>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let input = body(json)?;
    let row = servers::add(&state.store, &admin.tenant.tenant_id, input).await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "server.add",
        &row.slug,
        serde_json::json!({"transport": row.transport}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, server.slug = %row.slug, "server added");
    Ok((
        StatusCode::CREATED,
        Json(servers::view(Some(&state.urls), &admin.tenant.slug, &row)),
    ))
}

/// The admin's tenant's server with this slug; a malformed slug is simply not found.
async fn find_server(
    state: &AppState,
    admin: &TenantAdmin,
    slug: &str,
) -> Result<crate::store::ServerRow, ApiError> {
    let slug = ServerSlug::parse(slug).map_err(|_| ApiError::NotFound)?;
    state
        .store
        .server_by_slug(&admin.tenant.tenant_id, &slug)
        .await?
        .ok_or(ApiError::NotFound)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchServer {
    /// What the server does with tools outside its reviewed catalog: `allow` or `deny`.
    new_tools: String,
}

async fn patch_server(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
    json: Result<Json<PatchServer>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req = body(json)?;
    let deny = match req.new_tools.as_str() {
        "allow" => false,
        "deny" => true,
        other => {
            return Err(ApiError::Invalid(format!(
                "new_tools must be allow or deny, not {other:?}"
            )))
        }
    };
    let row = find_server(&state, &admin, &slug).await?;
    state
        .store
        .set_new_tools(&admin.tenant.tenant_id, &row.slug, deny)
        .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "server.new_tools",
        &row.slug,
        serde_json::json!({"new_tools": req.new_tools}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, server.slug = %row.slug, new_tools = %req.new_tools, "server access default changed");
    Ok(Json(
        serde_json::json!({ "slug": row.slug, "new_tools": req.new_tools }),
    ))
}

async fn get_server(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<servers::ServerView>, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    Ok(Json(servers::view(
        Some(&state.urls),
        &admin.tenant.slug,
        &row,
    )))
}

async fn delete_server(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    servers::remove(&state.store, &admin.tenant.tenant_id, &slug).await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "server.delete",
        &slug,
        serde_json::json!({}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, server.slug = %slug, "server deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    user_email: String,
    #[serde(default)]
    label: Option<String>,
    /// Server slugs the token is limited to (a personal access token); empty or absent: every
    /// server the user may reach.
    #[serde(default)]
    servers: Vec<String>,
    /// Days until the token expires (1–365); absent: it does not expire.
    #[serde(default)]
    expires_in_days: Option<i64>,
}

async fn create_token(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<CreateToken>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = body(json)?;
    let (user, token) = servers::create_scoped_token(
        &state.store,
        &admin.tenant.tenant_id,
        &req.user_email,
        req.label.as_deref().unwrap_or(""),
        &req.servers,
        req.expires_in_days,
    )
    .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "token.issue",
        &user.email,
        serde_json::json!({"kind": "gateway", "servers": req.servers,
            "expires_in_days": req.expires_in_days}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "user": user.email,
            // Shown once: only its hash is stored.
            "token": token.expose_secret(),
        })),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenListQuery {
    user: String,
}

/// The tenant's user a `?user=EMAIL` query names (404 when there is none).
async fn user_of_query(
    state: &AppState,
    admin: &TenantAdmin,
    q: Result<axum::extract::Query<TokenListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<crate::store::UserRow, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let email = crate::domain::Email::parse(&q.user)
        .map_err(|e| ApiError::Invalid(format!("user: {}", e.0)))?;
    state
        .store
        .user_by_email(&admin.tenant.tenant_id, &email)
        .await?
        .ok_or(ApiError::NotFound)
}

/// A user's live gateway tokens (never the tokens themselves): label, scope, expiry, last use.
async fn list_tokens(
    State(state): State<AppState>,
    admin: TenantAdmin,
    q: Result<axum::extract::Query<TokenListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = user_of_query(&state, &admin, q).await?;
    let rows = state
        .store
        .list_user_tokens(&admin.tenant.tenant_id, &user.user_id)
        .await?;
    let tokens: Vec<serde_json::Value> = rows
        .iter()
        .map(|t| {
            serde_json::json!({
                "id": t.api_token_id, "label": t.label, "created_at": format_time(t.created_at),
                "last_used_at": t.last_used_at.map(format_time),
                "expires_at": t.expires_at.map(format_time),
                "servers": t.servers.as_deref().and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok()),
            })
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "user": user.email, "tokens": tokens }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    /// One gateway token, in full.
    #[serde(default)]
    token: Option<String>,
    /// Everything this user holds: every gateway token and their console sessions.
    #[serde(default)]
    user_email: Option<String>,
    /// One OAuth client grant (all its tokens).
    #[serde(default)]
    grant_id: Option<String>,
    /// Every token of one agent (by slug).
    #[serde(default)]
    agent: Option<String>,
}

/// One-step revocation: effective on the next request (this replica's gateway snapshot is
/// rebuilt before the answer; other replicas follow the change notification).
async fn revoke_tokens(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<RevokeRequest>, JsonRejection>,
) -> Result<Json<servers::Revoked>, ApiError> {
    let req = body(json)?;
    let tid = &admin.tenant.tenant_id;
    let revoked = match (
        req.token.as_deref(),
        req.user_email.as_deref(),
        req.grant_id.as_deref(),
        req.agent.as_deref(),
    ) {
        (Some(t), None, None, None) => servers::revoke_token(&state.store, tid, t).await?,
        (None, Some(u), None, None) => {
            let mut r = servers::revoke_user(&state.store, tid, u).await?;
            let email = crate::domain::Email::parse(u).map_err(|e| ApiError::Invalid(e.0))?;
            if let Some(user) = state.store.user_by_email(tid, &email).await? {
                r.upstream = crate::connections::deprovisioned(
                    &state,
                    &admin.tenant,
                    &user.user_id,
                    &user.email,
                    "all access revoked by an administrator",
                )
                .await;
            }
            r
        }
        (None, None, None, Some(a)) => servers::revoke_agent(&state.store, tid, a).await?,
        (None, None, Some(g), None) => match state.store.revoke_grant_by_id(tid, g).await? {
            Some((client, user, _)) => servers::Revoked {
                tokens: vec![servers::RevokedToken {
                    user,
                    label: format!("OAuth: {client}"),
                }],
                sessions_ended: false,
                upstream: Vec::new(),
            },
            None => return Err(ApiError::NotFound),
        },
        _ => {
            return Err(ApiError::Invalid(
                "give exactly one of token, user_email, grant_id or agent".into(),
            ))
        }
    };
    state.refresh_snapshots().await?;
    let target = revoked
        .tokens
        .first()
        .map(|t| t.user.clone())
        .or(req.user_email.clone())
        .or(req.agent.as_ref().map(|a| format!("agent:{a}")))
        .unwrap_or_default();
    let e = crate::audit::Event::new(
        tid,
        crate::audit::Category::Security,
        if req.user_email.is_some() {
            "access.revoke_user"
        } else if req.agent.is_some() {
            "access.revoke_agent"
        } else {
            "token.revoke"
        },
        "ok",
    )
    .by(&admin.user.user_id, &admin.user.email)
    .target(target)
    .detail(serde_json::to_value(&revoked).unwrap_or_default());
    state.audit.note(e).await;
    crate::mail::revoked(&state, &admin.tenant, &revoked);
    Ok(Json(revoked))
}

/// A user's live OAuth grants (apps they allowed): revoke one with `POST /api/v1/tokens/revoke
/// {"grant_id"}`.
async fn list_grants(
    State(state): State<AppState>,
    admin: TenantAdmin,
    q: Result<axum::extract::Query<TokenListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = user_of_query(&state, &admin, q).await?;
    let grants: Vec<serde_json::Value> = state
        .store
        .list_user_grants(&admin.tenant.tenant_id, &user.user_id)
        .await?
        .into_iter()
        .map(|(id, client, server, since)| {
            serde_json::json!({"id": id, "client": client, "server": server, "since": format_time(since)})
        })
        .collect();
    Ok(Json(
        serde_json::json!({ "user": user.email, "grants": grants }),
    ))
}

/// Approval requests: pending first, then the latest decisions.
async fn list_approvals(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state
        .store
        .list_approval_requests(&admin.tenant.tenant_id)
        .await?;
    let list: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|r| {
            serde_json::json!({
                "id": r.approval_id, "user": r.email, "server": r.server, "tool": r.tool,
                "arguments": r.arguments, "status": r.status, "decided_by": r.decided_by,
                "created_at": format_time(r.created_at), "expires_at": format_time(r.expires_at),
                "decided_at": r.decided_at.map(format_time),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "approvals": list })))
}

/// Approves or denies a pending request; 409 when it is no longer pending.
async fn decide_approval(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path((id, decision)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let status = match decision.as_str() {
        "approve" => "approved",
        "deny" => "denied",
        _ => return Err(ApiError::NotFound),
    };
    let tid = &admin.tenant.tenant_id;
    if state.store.approval_request(tid, &id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    if !state
        .store
        .decide_approval(tid, &id, status, Some(&admin.user.email))
        .await?
    {
        return Err(ApiError::Conflict(
            "the request is no longer pending".into(),
        ));
    }
    audited(
        &state,
        &admin,
        "approval.decide",
        &id,
        serde_json::json!({"decision": status}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApprovalRule {
    /// A server slug, or `*` (default).
    #[serde(default = "each")]
    server: String,
    /// A tool name glob, `*` (default) for any.
    #[serde(default = "each")]
    tool: String,
    /// `destructive` (default: tools marked or presumed destructive) or `always`.
    #[serde(default)]
    applies: Option<String>,
    /// Seconds a call waits for a decision (1–3600, default 300).
    #[serde(default)]
    timeout_secs: Option<i64>,
}

async fn list_approval_rules(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state
        .store
        .list_approval_rules(&admin.tenant.tenant_id)
        .await?;
    Ok(Json(serde_json::json!({ "rules": rows })))
}

async fn create_approval_rule(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<NewApprovalRule>, JsonRejection>,
) -> Result<(StatusCode, Json<crate::store::ApprovalRule>), ApiError> {
    let r = body(json)?;
    let applies = r.applies.unwrap_or_else(|| "destructive".into());
    if applies != "destructive" && applies != "always" {
        return Err(ApiError::Invalid(
            "applies must be destructive or always".into(),
        ));
    }
    let timeout = r.timeout_secs.unwrap_or(300);
    if !(1..=3600).contains(&timeout) {
        return Err(ApiError::Invalid("timeout_secs must be 1 to 3600".into()));
    }
    let (server, tool) = (r.server.trim().to_owned(), r.tool.trim().to_owned());
    if server.is_empty() || server.len() > 100 || tool.is_empty() || tool.len() > 200 {
        return Err(ApiError::Invalid(
            "server and tool must be given (or *)".into(),
        ));
    }
    if globset::Glob::new(&tool).is_err() {
        return Err(ApiError::Invalid("tool is not a valid glob".into()));
    }
    let row = crate::store::ApprovalRule {
        rule_id: uuid::Uuid::now_v7().to_string(),
        server,
        tool,
        applies,
        timeout_secs: timeout,
    };
    state
        .store
        .create_approval_rule(&admin.tenant.tenant_id, &row)
        .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "approval_rule.create",
        &row.rule_id,
        serde_json::to_value(&row).unwrap_or_default(),
    )
    .await;
    Ok((StatusCode::CREATED, Json(row)))
}

async fn delete_approval_rule(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_approval_rule(&admin.tenant.tenant_id, &id)
        .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "approval_rule.delete",
        &id,
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLimit {
    /// user, agent, client, server or tool.
    subject: String,
    /// The one value the rule is for (an email, a token name, a clientInfo name, a server
    /// slug, a tool name), or `*`: each value separately.
    #[serde(default = "each")]
    value: String,
    requests_per_minute: Option<i64>,
    concurrent: Option<i64>,
    per_day: Option<i64>,
}

fn each() -> String {
    "*".into()
}

async fn list_limits(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let rows = state.store.list_limits(&admin.tenant.tenant_id).await?;
    Ok(Json(serde_json::json!({ "limits": rows })))
}

async fn create_limit(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<NewLimit>, JsonRejection>,
) -> Result<(StatusCode, Json<crate::store::LimitRow>), ApiError> {
    let l = body(json)?;
    if !crate::gateway::limits::SUBJECTS.contains(&l.subject.as_str()) {
        return Err(ApiError::Invalid(
            "subject must be user, agent, client, server or tool".into(),
        ));
    }
    let value = l.value.trim();
    if value.is_empty() || value.chars().count() > 200 {
        return Err(ApiError::Invalid(
            "value must be 1 to 200 characters (or *)".into(),
        ));
    }
    let nums = [l.requests_per_minute, l.concurrent, l.per_day];
    if nums.iter().all(Option::is_none) {
        return Err(ApiError::Invalid(
            "give at least one of requests_per_minute, concurrent, per_day".into(),
        ));
    }
    if nums.iter().flatten().any(|n| !(1..=1_000_000).contains(n)) {
        return Err(ApiError::Invalid("limits must be 1 to 1000000".into()));
    }
    let row = crate::store::LimitRow {
        limit_id: uuid::Uuid::now_v7().to_string(),
        subject: l.subject,
        value: if l.value.trim() == "*" {
            "*".into()
        } else {
            value.to_owned()
        },
        requests_per_minute: l.requests_per_minute,
        concurrent: l.concurrent,
        per_day: l.per_day,
    };
    state
        .store
        .create_limit(&admin.tenant.tenant_id, &row)
        .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "limit.create",
        &row.limit_id,
        serde_json::to_value(&row).unwrap_or_default(),
    )
    .await;
    Ok((StatusCode::CREATED, Json(row)))
}

async fn delete_limit(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .delete_limit(&admin.tenant.tenant_id, &id)
        .await?;
    state.refresh_snapshots().await?;
    audited(&state, &admin, "limit.delete", &id, serde_json::json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Test connection: discovery against the upstream. 200 with `ok: false` and the reason when the
/// upstream cannot be reached or misbehaves (the request itself was fine).
#[derive(Debug, Default, Deserialize)]
struct TestQuery {
    #[serde(default)]
    era: crate::gateway::discovery::Era,
}

async fn test_server(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
    axum::extract::Query(q): axum::extract::Query<TestQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    let upstream = row.upstream().map_err(ApiError::internal)?;
    let credential = match crate::connections::for_discovery(
        &state,
        &admin.tenant,
        &row.slug,
        &admin.user,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return Ok(Json(serde_json::json!({ "ok": false, "error": e }))),
    };
    let result = crate::gateway::discovery::discover(
        &state.gateway,
        &upstream,
        q.era,
        credential.as_deref(),
        state.gateway.env_secret(&admin.tenant.tenant_id, &row.slug),
    )
    .await;
    Ok(Json(match result {
        Ok(d) => serde_json::json!({ "ok": true, "discovery": d }),
        Err(e) => serde_json::json!({ "ok": false, "error": e }),
    }))
}

/// Records the server's current tools (discovered now) as its reviewed catalog: the tools a
/// `new_tools: deny` server allows, and the annotations policy trusts.
async fn record_catalog(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    let upstream = row.upstream().map_err(ApiError::internal)?;
    let credential =
        crate::connections::for_discovery(&state, &admin.tenant, &row.slug, &admin.user)
            .await
            .map_err(ApiError::Invalid)?;
    let d = crate::gateway::discovery::discover(
        &state.gateway,
        &upstream,
        Default::default(),
        credential.as_deref(),
        state.gateway.env_secret(&admin.tenant.tenant_id, &row.slug),
    )
    .await
    .map_err(|e| ApiError::Invalid(format!("the server could not be reached: {e}")))?;
    let tools: Vec<serde_json::Value> = d.tools.iter().map(access::tool_value).collect();
    let n =
        access::record_catalog(&state.store, &admin.tenant.tenant_id, &row.slug, &tools).await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "server.catalog",
        &row.slug,
        serde_json::json!({"tools": n}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, server.slug = %row.slug, tools = n, "tool catalog recorded");
    Ok(Json(
        serde_json::json!({ "server": row.slug, "tools": tools }),
    ))
}

async fn list_registries(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let list = access::list_registries(&state.store, &admin.tenant.tenant_id).await?;
    Ok(Json(serde_json::json!({ "registries": list })))
}

async fn create_registry(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<access::NewRegistry>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = body(json)?;
    let view = access::create_registry(&state.store, &admin.tenant.tenant_id, req).await?;
    state.refresh_snapshots().await?;
    audited(&state, &admin, "registry.create", &view.slug, serde_json::json!({"servers": view.servers, "grants": view.grants.iter().map(|g| &g.subject).collect::<Vec<_>>()})).await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, registry = %view.slug, "registry created");
    Ok((StatusCode::CREATED, Json(view)))
}

async fn get_registry(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<access::RegistryView>, ApiError> {
    Ok(Json(
        access::registry(&state.store, &admin.tenant.tenant_id, &slug).await?,
    ))
}

async fn patch_registry(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
    json: Result<Json<access::RegistryChange>, JsonRejection>,
) -> Result<Json<access::RegistryView>, ApiError> {
    let req = body(json)?;
    let view = access::update_registry(&state.store, &admin.tenant.tenant_id, &slug, req).await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "registry.change",
        &slug,
        serde_json::json!({"servers": view.servers, "name": view.name}),
    )
    .await;
    tracing::info!(audit = true, tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, registry = %slug, servers = ?view.servers, "registry changed");
    Ok(Json(view))
}

async fn delete_registry(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    access::delete_registry(&state.store, &admin.tenant.tenant_id, &slug).await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "registry.delete",
        &slug,
        serde_json::json!({}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, registry = %slug, "registry deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn add_grant(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
    json: Result<Json<access::NewGrant>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = body(json)?;
    let view = access::add_grant(&state.store, &admin.tenant.tenant_id, &slug, req).await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "grant.add",
        &slug,
        serde_json::json!({"grant": view.id, "subject": view.subject, "rules": view.rules_text}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, registry = %slug, grant.id = %view.id, "grant added");
    Ok((StatusCode::CREATED, Json(view)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutGrant {
    rules: Vec<crate::policy::Rule>,
}

async fn put_grant(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path((slug, grant)): Path<(String, String)>,
    json: Result<Json<PutGrant>, JsonRejection>,
) -> Result<Json<access::GrantView>, ApiError> {
    let req = body(json)?;
    let view = access::set_grant_rules(
        &state.store,
        &admin.tenant.tenant_id,
        &slug,
        &grant,
        req.rules,
    )
    .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "grant.rules",
        &slug,
        serde_json::json!({"grant": grant, "rules": view.rules_text}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, registry = %slug, grant.id = %grant, "grant rules replaced");
    Ok(Json(view))
}

async fn delete_grant(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path((slug, grant)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    access::delete_grant(&state.store, &admin.tenant.tenant_id, &slug, &grant).await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "grant.delete",
        &slug,
        serde_json::json!({"grant": grant}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, registry = %slug, grant.id = %grant, "grant deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn list_users(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let users = access::list_users(&state.store, &admin.tenant.tenant_id).await?;
    Ok(Json(serde_json::json!({ "users": users })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchUser {
    active: bool,
}

/// Activates or deactivates a user: a deactivated user's gateway tokens, MCP sessions and
/// console sessions stop working at once.
async fn patch_user(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(id): Path<String>,
    json: Result<Json<PatchUser>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let req = body(json)?;
    if id == admin.user.user_id && !req.active {
        return Err(ApiError::Invalid(
            "you cannot deactivate yourself (another admin can)".into(),
        ));
    }
    state
        .store
        .set_user_active(&admin.tenant.tenant_id, &id, req.active)
        .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        if req.active {
            "user.activate"
        } else {
            "user.deactivate"
        },
        &id,
        serde_json::json!({}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, target.user.id = %id, active = req.active, "user status changed");
    if !req.active {
        if let Some(u) = state.store.user(&admin.tenant.tenant_id, &id).await? {
            crate::mail::access_removed(
                &state,
                &admin.tenant,
                &u.email,
                "deactivated by an administrator",
            )
            .await;
            crate::connections::deprovisioned(
                &state,
                &admin.tenant,
                &id,
                &u.email,
                "deactivated by an administrator",
            )
            .await;
        }
    }
    Ok(Json(serde_json::json!({ "id": id, "active": req.active })))
}

async fn list_groups(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let groups = access::list_groups(&state.store, &admin.tenant.tenant_id).await?;
    Ok(Json(serde_json::json!({ "groups": groups })))
}

async fn explain(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<access::ExplainQuery>, JsonRejection>,
) -> Result<Json<access::ExplainView>, ApiError> {
    let q = body(json)?;
    let policy = state.gateway.tenant_policy(&admin.tenant.tenant_id);
    let tid = admin.tenant.tenant_id.clone();
    let observed = |server: &str, tool: &str| state.gateway.observed_hints(&tid, server, tool);
    Ok(Json(access::explain(&policy, &q, &observed)?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WhoCanQuery {
    server: String,
    #[serde(default)]
    tool: Option<String>,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    resource: Option<String>,
}

async fn who_can(
    State(state): State<AppState>,
    admin: TenantAdmin,
    axum::extract::Query(q): axum::extract::Query<WhoCanQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::policy::Kind;
    let (kind, name) = match (q.tool, q.prompt, q.resource) {
        (Some(t), None, None) => (Kind::Tool, t),
        (None, Some(p), None) => (Kind::Prompt, p),
        (None, None, Some(r)) => (Kind::Resource, r),
        _ => {
            return Err(ApiError::Invalid(
                "ask about exactly one of tool, prompt or resource".into(),
            ))
        }
    };
    let policy = state.gateway.tenant_policy(&admin.tenant.tenant_id);
    let tid = admin.tenant.tenant_id.clone();
    let observed = |server: &str, tool: &str| state.gateway.observed_hints(&tid, server, tool);
    let users = access::who_can(&policy, &q.server, kind, &name, &observed);
    Ok(Json(serde_json::json!({
        "server": q.server, "kind": kind, "name": name, "users": users,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReachQuery {
    user: String,
}

async fn reach(
    State(state): State<AppState>,
    admin: TenantAdmin,
    axum::extract::Query(q): axum::extract::Query<ReachQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let policy = state.gateway.tenant_policy(&admin.tenant.tenant_id);
    if policy.user_by_email(&q.user).is_none() {
        return Err(ApiError::NotFound);
    }
    Ok(Json(serde_json::json!({
        "user": q.user, "servers": access::reach(&policy, &q.user),
    })))
}

/// Generates (or replaces) the tenant's SCIM token; shown once. The old token stops working.
async fn rotate_scim_token(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<impl IntoResponse, ApiError> {
    let token = crate::scim::rotate_token(&state.store, &admin.tenant.tenant_id).await?;
    audited(
        &state,
        &admin,
        "scim.token_rotate",
        "scim",
        serde_json::json!({}),
    )
    .await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, "SCIM token rotated through the API");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "token": token.expose_secret(),
            "scim_base_url": format!("{}/scim/v2", state.urls.tenant(&admin.tenant.slug)),
        })),
    ))
}

async fn get_sso(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let v = crate::sso::settings(&state, &admin.tenant).await?;
    Ok(Json(serde_json::json!({
        "enabled": v.is_some(),
        "settings": v,
        "redirect_uri": crate::sso::redirect_uri(&state, &admin.tenant.slug),
    })))
}

async fn put_sso(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<crate::sso::IdpSettings>, JsonRejection>,
) -> Result<Json<crate::sso::IdpView>, ApiError> {
    let req = body(json)?;
    let v = crate::sso::save(&state, &admin.tenant, req).await?;
    audited(&state, &admin, "sso.settings", &v.issuer, serde_json::json!({"client_id": v.client_id, "scopes": v.scopes, "groups_claim": v.groups_claim, "allowed_domains": v.allowed_domains})).await;
    tracing::info!(tenant.id = %admin.tenant.tenant_id, user.id = %admin.user.user_id, "SSO settings changed through the API");
    Ok(Json(v))
}

async fn delete_sso(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<StatusCode, ApiError> {
    crate::sso::disable(&state, &admin.tenant).await?;
    audited(&state, &admin, "sso.disable", "sso", serde_json::json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Records an admin action in the durable audit log, once it has taken effect.
pub(crate) async fn audited(
    state: &AppState,
    admin: &TenantAdmin,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) {
    let e = crate::audit::Event::new(
        &admin.tenant.tenant_id,
        crate::audit::Category::Admin,
        action,
        "ok",
    )
    .by(&admin.user.user_id, &admin.user.email)
    .target(target)
    .detail(detail);
    state.audit.note(e).await;
}

impl From<servers::CredentialError> for ApiError {
    fn from(e: servers::CredentialError) -> Self {
        use servers::CredentialError;
        match e {
            CredentialError::Invalid(m) => ApiError::Invalid(m),
            CredentialError::NotFound => ApiError::NotFound,
            CredentialError::Store(s) => s.into(),
            CredentialError::Vault(v) => ApiError::internal(v),
        }
    }
}

/// What is set as a server's credential (kind, header, when, data key) — never the value.
async fn get_credential(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<servers::CredentialView>, ApiError> {
    servers::credential_view(&state.store, &admin.tenant.tenant_id, &slug, &state.vault)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Seals a server's credential in the vault; the gateway injects it from the next request.
async fn put_credential(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
    json: Result<Json<servers::CredentialInput>, JsonRejection>,
) -> Result<Json<servers::CredentialView>, ApiError> {
    let input = body(json)?;
    let view = servers::set_credential(
        &state.vault,
        &state.store,
        &admin.tenant.tenant_id,
        &slug,
        &input,
    )
    .await?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "server.credential.set",
        &slug,
        serde_json::json!({"kind": view.kind, "header": view.header, "key_id": view.key_id}),
    )
    .await;
    Ok(Json(view))
}

async fn delete_credential(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !servers::delete_credential(&state.vault, &state.store, &admin.tenant.tenant_id, &slug)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "server.credential.delete",
        &slug,
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// External filter hooks (the company's own DLP), in the order they run.
async fn list_filter_hooks(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let hooks: Vec<_> = state
        .store
        .filter_hooks(&admin.tenant.tenant_id)
        .await?
        .iter()
        .map(crate::filters::hooks::view)
        .collect();
    Ok(Json(serde_json::json!({ "hooks": hooks })))
}

fn hook_error(e: crate::filters::hooks::HookError) -> ApiError {
    use crate::filters::hooks::HookError;
    match e {
        HookError::Invalid(m) => ApiError::Invalid(m),
        HookError::NotFound => ApiError::Invalid("server: no such server".into()),
        HookError::Store(s) => s.into(),
        HookError::Vault(v) => ApiError::internal(v),
    }
}

/// Adds a hook; the answer carries its signing secret, shown this once.
async fn add_filter_hook(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<crate::filters::hooks::NewHook>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let req = body(json)?;
    let (hook, secret) =
        crate::filters::hooks::add(&state.store, &state.vault, &admin.tenant.tenant_id, &req)
            .await
            .map_err(hook_error)?;
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "filter_hook.add",
        &hook.id,
        serde_json::json!({"server": hook.server, "url": hook.url, "timeout_ms": hook.timeout_ms, "fail": hook.fail}),
    )
    .await;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "hook": hook, "secret": secret.as_str() })),
    ))
}

async fn delete_filter_hook(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !crate::filters::hooks::remove(&state.store, &state.vault, &admin.tenant.tenant_id, &id)
        .await
        .map_err(hook_error)?
    {
        return Err(ApiError::NotFound);
    }
    state.refresh_snapshots().await?;
    audited(
        &state,
        &admin,
        "filter_hook.delete",
        &id,
        serde_json::json!({}),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// The data inventory: which categories of data each server's answers carried (counted where a
/// filter policy is active), with counts and first/last seen.
async fn tenant_inventory(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    state.gateway.inventory.flush(&state.store).await;
    let entries =
        crate::filters::inventory::entries(&state.store, &admin.tenant.tenant_id, None).await?;
    Ok(Json(serde_json::json!({ "inventory": entries })))
}

async fn server_inventory(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    state.gateway.inventory.flush(&state.store).await;
    let entries =
        crate::filters::inventory::entries(&state.store, &admin.tenant.tenant_id, Some(&row.slug))
            .await?;
    Ok(Json(
        serde_json::json!({ "server": row.slug, "inventory": entries }),
    ))
}

/// The review queue of tools held by pinning (changed definitions) or waiting on a server that
/// denies new tools, with diffs against the pinned definitions.
async fn list_tool_changes(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let changes = crate::pins::queue(&state, &admin.tenant.tenant_id, None).await?;
    Ok(Json(serde_json::json!({ "changes": changes })))
}

async fn list_server_tool_changes(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    let changes = crate::pins::queue(&state, &admin.tenant.tenant_id, Some(&row.slug)).await?;
    let unpinned = state
        .store
        .unpinned_tools(&admin.tenant.tenant_id, &row.slug)
        .await?;
    Ok(Json(
        serde_json::json!({ "server": row.slug, "changes": changes, "unpinned": unpinned }),
    ))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolDecision {
    /// The digest of the definition the admin reviewed; when given it must still be the
    /// queued one.
    #[serde(default)]
    digest: Option<String>,
}

/// Approves (pins the queued definition) or dismisses (keeps the old pin) a queued tool.
async fn decide_tool_change(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path((slug, tool, decision)): Path<(String, String, String)>,
    json: Option<Json<ToolDecision>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let decision = match decision.as_str() {
        "approve" => crate::pins::Decision::Approve,
        "dismiss" => crate::pins::Decision::Dismiss,
        _ => return Err(ApiError::NotFound),
    };
    let row = find_server(&state, &admin, &slug).await?;
    let req = json.map(|Json(r)| r).unwrap_or_default();
    let change = crate::pins::decide(
        &state,
        &admin.tenant.tenant_id,
        (&admin.user.user_id, admin.user.email.as_str()),
        &row.slug,
        &tool,
        req.digest.as_deref(),
        decision,
    )
    .await
    .map_err(|e| match e {
        crate::pins::PinError::NotFound => ApiError::NotFound,
        crate::pins::PinError::Stale(_) => ApiError::Conflict(e.to_string()),
        crate::pins::PinError::Store(s) => s.into(),
    })?;
    Ok(Json(serde_json::json!({
        "server": change.server,
        "tool": change.tool,
        "decision": match decision { crate::pins::Decision::Approve => "approved", crate::pins::Decision::Dismiss => "dismissed" },
        "digest": change.digest,
    })))
}

/// A server's data filter policy (personal data and secrets in answers): its own and the
/// one in effect (its own, else the tenant's default).
async fn get_filters(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    Ok(Json(
        crate::filters::view(&state.store, &admin.tenant.tenant_id, &row.slug).await?,
    ))
}

async fn put_filters(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
    json: Result<Json<crate::filters::Policy>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let policy = body(json)?;
    filters_set(&state, &admin, &slug, &policy).await
}

async fn filters_set(
    state: &AppState,
    admin: &TenantAdmin,
    slug: &str,
    policy: &crate::filters::Policy,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::filters::SetError;
    crate::filters::set(&state.store, &admin.tenant.tenant_id, slug, policy)
        .await
        .map_err(|e| match e {
            SetError::Invalid(m) => ApiError::Invalid(m),
            SetError::NotFound => ApiError::NotFound,
            SetError::Store(s) => s.into(),
        })?;
    state.refresh_snapshots().await?;
    audited(
        state,
        admin,
        "filters.set",
        slug,
        serde_json::to_value(policy).unwrap_or_default(),
    )
    .await;
    Ok(Json(
        crate::filters::view(&state.store, &admin.tenant.tenant_id, slug).await?,
    ))
}

async fn filters_delete(
    state: &AppState,
    admin: &TenantAdmin,
    slug: &str,
) -> Result<StatusCode, ApiError> {
    if !state
        .store
        .delete_filter_policy(&admin.tenant.tenant_id, slug)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.refresh_snapshots().await?;
    audited(state, admin, "filters.delete", slug, serde_json::json!({})).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_filters(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<StatusCode, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    filters_delete(&state, &admin, &row.slug).await
}

/// The tenant's default filter policy (servers without their own).
async fn get_default_filters(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(
        crate::filters::view(&state.store, &admin.tenant.tenant_id, "*").await?,
    ))
}

async fn put_default_filters(
    State(state): State<AppState>,
    admin: TenantAdmin,
    json: Result<Json<crate::filters::Policy>, JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let policy = body(json)?;
    filters_set(&state, &admin, "*", &policy).await
}

async fn delete_default_filters(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<StatusCode, ApiError> {
    filters_delete(&state, &admin, "*").await
}

/// Users' own connections to a per-user server (who, which kind, scope, expiry) — never a
/// secret.
async fn list_connections(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path(slug): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    let rows = state
        .store
        .server_connections(&admin.tenant.tenant_id, &row.server_id)
        .await?;
    let mode = crate::connections::mode_of(&state, &admin.tenant.tenant_id, &row)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(serde_json::json!({
        "server": row.slug,
        "mode": mode.as_ref().map(crate::connections::Mode::kind),
        "connect_url": crate::connections::connect_url(&state, &admin.tenant.slug, &row.slug),
        "connections": rows.iter().map(crate::connections::view).collect::<Vec<_>>(),
    })))
}

/// Ends a user's connection to a server (by the user's email): the secret is deleted, the
/// upstream asked to revoke its tokens (RFC 7009), the user told.
async fn end_connection(
    State(state): State<AppState>,
    admin: TenantAdmin,
    Path((slug, user)): Path<(String, String)>,
) -> Result<Json<crate::connections::Ended>, ApiError> {
    let row = find_server(&state, &admin, &slug).await?;
    let email = crate::domain::Email::parse(&user).map_err(|_| ApiError::NotFound)?;
    let u = state
        .store
        .user_by_email(&admin.tenant.tenant_id, &email)
        .await?
        .ok_or(ApiError::NotFound)?;
    let ended = crate::connections::disconnect(
        &state,
        &admin.tenant,
        &row,
        &u.user_id,
        &u.email,
        crate::connections::EndedBy::Admin(&admin.user.user_id, &admin.user.email),
    )
    .await
    .map_err(ApiError::internal)?
    .ok_or(ApiError::NotFound)?;
    Ok(Json(ended))
}

/// The tenant's vault: its data keys (ids, when made and retired, the master key's
/// fingerprint that wraps each) and how many secrets it holds — never a key or a secret.
async fn vault_status(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let tid = &admin.tenant.tenant_id;
    let keys: Vec<serde_json::Value> = state
        .store
        .vault_keys(tid)
        .await?
        .into_iter()
        .map(|k| {
            serde_json::json!({"key_id": k.key_id, "created_at": format_time(k.created_at),
                "retired_at": k.retired_at.map(format_time), "active": k.retired_at.is_none(),
                "kek_fingerprint": k.kek_fingerprint})
        })
        .collect();
    let secrets = state.store.vault_secrets(tid).await?.len();
    Ok(Json(serde_json::json!({
        "algorithm": "AES-256-GCM",
        "kek_fingerprint": state.keys.fingerprint(),
        "keys": keys,
        "secrets": secrets,
    })))
}

/// Rotates the tenant's data key: a new key becomes active and every secret is re-encrypted
/// under it, in one transaction.
async fn rotate_vault(
    State(state): State<AppState>,
    admin: TenantAdmin,
) -> Result<Json<serde_json::Value>, ApiError> {
    let (key_id, moved) = state
        .vault
        .rotate_data_key(&state.store, &admin.tenant.tenant_id)
        .await
        .map_err(ApiError::internal)?;
    let e = crate::audit::Event::new(
        &admin.tenant.tenant_id,
        crate::audit::Category::Security,
        "vault.rotate",
        "ok",
    )
    .by(&admin.user.user_id, &admin.user.email)
    .target(key_id.clone())
    .detail(serde_json::json!({"key_id": key_id, "secrets": moved}));
    state.audit.note(e).await;
    Ok(Json(
        serde_json::json!({"key_id": key_id, "secrets_reencrypted": moved}),
    ))
}
