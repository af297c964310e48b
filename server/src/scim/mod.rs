//! SCIM 2.0 service provider (RFC 7643/7644) at `/scim/v2` on each tenant's host: the tenant's
//! identity provider (Okta, Entra ID, …) creates, updates, deactivates and deletes users and
//! groups here, authenticated by the tenant's SCIM token (`pct_scim_…`, stored hashed).
//!
//! - `filter.rs` parses and evaluates filters, `patch.rs` applies PatchOp requests (with the
//!   shapes Okta and Entra really send), `attrs.rs` projects `attributes`/`excludedAttributes`.
//! - Resources are rendered from the store: the columns the product relies on (userName, email,
//!   active, displayName, externalId, group names and members) are authoritative; the other
//!   attributes an IdP sends are kept as JSON and returned as they came.
//! - Every write refreshes this replica's gateway snapshot before it answers, so a deactivation
//!   or a removal from a group holds for the very next MCP request (other replicas follow the
//!   change counters).

pub mod attrs;
pub mod filter;
pub mod patch;

use crate::domain::{NewToken, TokenHash, TokenKind};
use crate::state::AppState;
use crate::store::{ScimGroupRow, ScimGroupWrite, ScimUserRow, ScimUserWrite, Store, StoreError};
use crate::tenancy::{Host, Tenant};
use crate::tenants::format_time;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use filter::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
use http::request::Parts;
use http::{HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The tenant setting that holds the SHA-256 of the SCIM token.
pub const TOKEN_SETTING: &str = "scim_token_hash";

const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const MAX_RESULTS: usize = 1000;
const DEFAULT_COUNT: usize = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(schema))
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route("/scim/v2/.search", axum::routing::post(search_all))
        .route("/scim/v2/Users/.search", axum::routing::post(search_users))
        .route(
            "/scim/v2/Groups/.search",
            axum::routing::post(search_groups),
        )
        .route(
            "/scim/v2/Users/{id}",
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route(
            "/scim/v2/Groups/{id}",
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/scim/v2", axum::routing::any(unknown))
        .route("/scim/v2/{*rest}", axum::routing::any(unknown))
}

/// Anything else under `/scim/v2`: a SCIM 404 (after authentication, so it reveals nothing).
async fn unknown(_c: ScimClient) -> ScimError {
    ScimError::not_found("endpoint")
}

/// A `SearchRequest` body (RFC 7644 §3.4.3): the query parameters of a list, POSTed.
fn search_query(body: &Bytes) -> ScimResult<ListQuery> {
    let v = read_body(body)?;
    let list = |k: &str| -> Option<String> {
        match filter::get_ci(&v, k)? {
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    };
    let num = |k: &str| filter::get_ci(&v, k).map(|n| n.to_string().trim_matches('"').to_owned());
    Ok(ListQuery {
        filter: filter::get_ci(&v, "filter")
            .and_then(Value::as_str)
            .map(str::to_owned),
        start_index: num("startIndex"),
        count: num("count"),
        attributes: list("attributes"),
        excluded_attributes: list("excludedAttributes"),
    })
}

/// A search at the service provider root: users and groups together.
async fn search_all(State(state): State<AppState>, c: ScimClient, body: Bytes) -> ScimResult {
    let q = search_query(&body)?;
    let mut resources = all_users(&state.store, &c).await?;
    resources.extend(all_groups(&state.store, &c).await?);
    list_response(resources, &q)
}

async fn search_users(state: State<AppState>, c: ScimClient, body: Bytes) -> ScimResult {
    let q = search_query(&body)?;
    list_users(state, c, Query(q)).await
}

async fn search_groups(state: State<AppState>, c: ScimClient, body: Bytes) -> ScimResult {
    let q = search_query(&body)?;
    list_groups(state, c, Query(q)).await
}

/// Replaces the tenant's SCIM token: the old one stops working at once. Returns the new one,
/// to be shown once.
pub async fn rotate_token(
    store: &Store,
    tenant_id: &str,
) -> Result<secrecy::SecretString, StoreError> {
    let token = NewToken::generate(TokenKind::Scim);
    store
        .set_tenant_setting(tenant_id, TOKEN_SETTING, token.hash.as_str())
        .await?;
    tracing::info!(audit = true, tenant.id = %tenant_id, "SCIM token rotated");
    Ok(token.plaintext)
}

/// Whether the tenant has a SCIM token (provisioning is on).
pub async fn token_configured(store: &Store, tenant_id: &str) -> Result<bool, StoreError> {
    Ok(store
        .tenant_setting(tenant_id, TOKEN_SETTING)
        .await?
        .is_some())
}

// ---- errors and responses -----------------------------------------------------------------

/// A SCIM error response (RFC 7644 §3.12).
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, format!("{what} not found"))
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::not_found("resource"),
            StoreError::Conflict(_) => Self::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                "a resource with that userName, email or displayName already exists",
            ),
            other => {
                tracing::error!(error = %other, "SCIM request failed in the store");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
            }
        }
    }
}

impl From<patch::PatchError> for ScimError {
    fn from(e: patch::PatchError) -> Self {
        Self::new(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            Some(e.scim_type),
            e.detail,
        )
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t);
        }
        let mut res = scim_json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"scim\""),
            );
        }
        res
    }
}

type ScimResult<T = Response> = Result<T, ScimError>;

fn scim_json(status: StatusCode, body: &Value) -> Response {
    let mut res = (status, body.to_string()).into_response();
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/scim+json"),
    );
    res
}

/// A request body: JSON under `application/scim+json` or `application/json` (IdPs send both).
fn read_body(bytes: &Bytes) -> ScimResult<Value> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        ));
    }
    Ok(v)
}

// ---- authentication ---------------------------------------------------------------------

/// The tenant's identity provider, authenticated by the SCIM token on the tenant's host.
pub struct ScimClient {
    tenant: Arc<Tenant>,
    base: String,
}

impl FromRequestParts<AppState> for ScimClient {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ScimResult<Self> {
        let Some(Host::Tenant(tenant)) = parts.extensions.get::<Host>().cloned() else {
            return Err(ScimError::not_found("endpoint"));
        };
        let unauthorized = || {
            ScimError::new(
                StatusCode::UNAUTHORIZED,
                None,
                "a valid SCIM bearer token is required",
            )
        };
        let presented = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .and_then(|(_, t)| TokenHash::of_presented(TokenKind::Scim, t))
            .ok_or_else(unauthorized)?;
        let stored = state
            .store
            .tenant_setting(&tenant.tenant_id, TOKEN_SETTING)
            .await?
            .ok_or_else(unauthorized)?;
        if !bool::from(presented.as_str().as_bytes().ct_eq(stored.as_bytes())) {
            tracing::warn!(tenant.id = %tenant.tenant_id, "SCIM request refused: wrong token");
            return Err(unauthorized());
        }
        let base = format!("{}/scim/v2", state.urls.tenant(&tenant.slug));
        Ok(Self { tenant, base })
    }
}

// ---- rendering --------------------------------------------------------------------------

fn meta(kind: &str, location: String, created: i64, updated: i64) -> Value {
    json!({
        "resourceType": kind,
        "created": format_time(created),
        "lastModified": format_time(updated),
        "location": location,
        "version": format!("W/\"{updated}\""),
    })
}

fn attributes_of(stored: Option<&str>) -> Map<String, Value> {
    stored
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| match v {
            Value::Object(m) => Some(m),
            _ => None,
        })
        .unwrap_or_default()
}

fn user_resource(base: &str, u: &ScimUserRow, groups: &[(String, String)]) -> Value {
    let mut m = attributes_of(u.scim_attributes.as_deref());
    let mut schemas: Vec<Value> = vec![json!(USER_SCHEMA)];
    if let Some(Value::Array(s)) = m.get("schemas") {
        for x in s {
            if x.as_str().is_some_and(|x| x != USER_SCHEMA) && !schemas.contains(x) {
                schemas.push(x.clone());
            }
        }
    }
    m.insert("schemas".into(), Value::Array(schemas));
    m.insert("id".into(), json!(u.user_id));
    m.insert(
        "userName".into(),
        json!(u.user_name.clone().unwrap_or_else(|| u.email.clone())),
    );
    // `active` as the IdP left it: a provisioned user whose `active` was never set (or was
    // removed) is active but shows no `active`; a deactivated user always shows false.
    if !u.active || u.scim_attributes.is_none() || m.contains_key("active") {
        m.insert("active".into(), json!(u.active));
    }
    match &u.external_id {
        Some(e) => m.insert("externalId".into(), json!(e)),
        None => m.remove("externalId"),
    };
    if let Some(d) = &u.display_name {
        m.insert("displayName".into(), json!(d));
    }
    if u.scim_attributes.is_none() && !m.contains_key("emails") {
        // A user made by the console or SSO: their email, as a SCIM email.
        m.insert(
            "emails".into(),
            json!([{"value": u.email, "type": "work", "primary": true}]),
        );
    }
    if groups.is_empty() {
        m.remove("groups");
    } else {
        let g: Vec<Value> = groups
            .iter()
            .map(|(id, name)| {
                json!({"value": id, "display": name, "$ref": format!("{base}/Groups/{id}"), "type": "direct"})
            })
            .collect();
        m.insert("groups".into(), Value::Array(g));
    }
    m.insert(
        "meta".into(),
        meta(
            "User",
            format!("{base}/Users/{}", u.user_id),
            u.created_at,
            u.updated_at,
        ),
    );
    Value::Object(m)
}

fn group_resource(base: &str, g: &ScimGroupRow, members: &[(String, String)]) -> Value {
    let mut m = attributes_of(g.scim_attributes.as_deref());
    m.insert("schemas".into(), json!([GROUP_SCHEMA]));
    m.insert("id".into(), json!(g.group_id));
    m.insert("displayName".into(), json!(g.name));
    match &g.external_id {
        Some(e) => m.insert("externalId".into(), json!(e)),
        None => m.remove("externalId"),
    };
    if members.is_empty() {
        m.remove("members");
    } else {
        let list: Vec<Value> = members
            .iter()
            // No `display`: members are written by value, and an IdP compares what it wrote
            // with what it reads back.
            .map(|(id, _email)| {
                json!({"value": id, "type": "User", "$ref": format!("{base}/Users/{id}")})
            })
            .collect();
        m.insert("members".into(), Value::Array(list));
    }
    m.insert(
        "meta".into(),
        meta(
            "Group",
            format!("{base}/Groups/{}", g.group_id),
            g.created_at,
            g.updated_at,
        ),
    );
    Value::Object(m)
}

/// Every membership of the tenant, both ways: user → [(group id, name)], group → [(user id,
/// email)].
type Memberships = (
    HashMap<String, Vec<(String, String)>>,
    HashMap<String, Vec<(String, String)>>,
);

async fn memberships(store: &Store, tenant_id: &str) -> ScimResult<Memberships> {
    let groups: HashMap<String, String> = store
        .scim_groups(tenant_id)
        .await?
        .into_iter()
        .map(|g| (g.group_id, g.name))
        .collect();
    let (mut by_user, mut by_group): Memberships = Default::default();
    for (gid, uid, email) in store.scim_members(tenant_id).await? {
        if let Some(name) = groups.get(&gid) {
            by_user
                .entry(uid.clone())
                .or_default()
                .push((gid.clone(), name.clone()));
        }
        by_group.entry(gid).or_default().push((uid, email));
    }
    Ok((by_user, by_group))
}

// ---- list parameters --------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProjectQuery {
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

/// Filters, pages (1-based `startIndex`, `count` capped at 1000) and projects a list.
fn list_response(resources: Vec<Value>, q: &ListQuery) -> ScimResult {
    let filter = match q.filter.as_deref().map(str::trim) {
        Some(f) if !f.is_empty() => {
            Some(filter::parse(f).map_err(|e| ScimError::bad("invalidFilter", e))?)
        }
        _ => None,
    };
    let number = |s: &Option<String>, name: &str| -> ScimResult<Option<i64>> {
        s.as_deref()
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ScimError::bad("invalidValue", format!("{name} must be an integer"))
                })
            })
            .transpose()
    };
    let start = number(&q.start_index, "startIndex")?.unwrap_or(1).max(1) as usize;
    let count = number(&q.count, "count")?
        .map(|c| c.max(0) as usize)
        .unwrap_or(DEFAULT_COUNT)
        .min(MAX_RESULTS);
    let matching: Vec<Value> = resources
        .into_iter()
        .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r)))
        .collect();
    let total = matching.len();
    let page: Vec<Value> = matching
        .into_iter()
        .skip(start - 1)
        .take(count)
        .map(|r| {
            attrs::project(
                &r,
                q.attributes.as_deref(),
                q.excluded_attributes.as_deref(),
            )
        })
        .collect();
    Ok(scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        }),
    ))
}

// ---- users --------------------------------------------------------------------------------

/// `"True"`/`"false"` (Entra) or a JSON boolean.
fn boolean(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The columns of a user resource, checked; the rest of it kept as JSON.
fn user_write(resource: &Value) -> ScimResult<ScimUserWrite> {
    let get = |k: &str| filter::get_ci(resource, k);
    let user_name = text(get("userName"))
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
    if user_name.len() > 320 {
        return Err(ScimError::bad("invalidValue", "userName is too long"));
    }
    let active = match get("active") {
        None | Some(Value::Null) => true,
        v => {
            boolean(v).ok_or_else(|| ScimError::bad("invalidValue", "active must be a boolean"))?
        }
    };
    let emails = get("emails").and_then(Value::as_array);
    let email = emails
        .and_then(|list| {
            list.iter()
                .find(|e| boolean(e.get("primary")) == Some(true))
                .or_else(|| list.first())
        })
        .and_then(|e| text(e.get("value")))
        .unwrap_or_else(|| user_name.clone());
    let mut rest = resource.as_object().cloned().unwrap_or_default();
    if !matches!(get("active"), None | Some(Value::Null)) {
        // Normalised (Entra sends "False"): stored as the boolean it means.
        rest.retain(|k, _| !k.eq_ignore_ascii_case("active"));
        rest.insert("active".into(), json!(active));
    } else {
        rest.retain(|k, _| !k.eq_ignore_ascii_case("active"));
    }
    for k in ["id", "meta", "groups", "password"] {
        let keys: Vec<String> = rest
            .keys()
            .filter(|x| x.eq_ignore_ascii_case(k))
            .cloned()
            .collect();
        for key in keys {
            rest.remove(&key);
        }
    }
    Ok(ScimUserWrite {
        user_name,
        email,
        external_id: text(get("externalId")),
        display_name: text(get("displayName")),
        active,
        attributes: Value::Object(rest).to_string(),
    })
}

async fn load_user(store: &Store, c: &ScimClient, id: &str) -> ScimResult<Value> {
    let row = store
        .scim_user(&c.tenant.tenant_id, id)
        .await?
        .ok_or_else(|| ScimError::not_found("User"))?;
    let (by_user, _) = memberships(store, &c.tenant.tenant_id).await?;
    Ok(user_resource(
        &c.base,
        &row,
        by_user.get(id).map(Vec::as_slice).unwrap_or(&[]),
    ))
}

/// After a provisioning write: this replica's gateway follows at once.
async fn refreshed(state: &AppState) -> ScimResult<()> {
    state.refresh_snapshots().await?;
    Ok(())
}

/// Records a provisioning change in the durable audit log (the actor is the IdP).
async fn recorded(state: &AppState, c: &ScimClient, action: &str, target: &str, detail: Value) {
    let mut e = crate::audit::Event::new(
        &c.tenant.tenant_id,
        crate::audit::Category::Admin,
        action,
        "ok",
    )
    .target(target)
    .detail(detail);
    e.actor = Some("scim".into());
    state.audit.note(e).await;
}

/// Every user of the tenant, as SCIM resources.
async fn all_users(store: &Store, c: &ScimClient) -> ScimResult<Vec<Value>> {
    let (by_user, _) = memberships(store, &c.tenant.tenant_id).await?;
    Ok(store
        .scim_users(&c.tenant.tenant_id)
        .await?
        .iter()
        .map(|u| {
            let groups = by_user.get(&u.user_id).map(Vec::as_slice).unwrap_or(&[]);
            user_resource(&c.base, u, groups)
        })
        .collect())
}

/// Every group of the tenant, as SCIM resources.
async fn all_groups(store: &Store, c: &ScimClient) -> ScimResult<Vec<Value>> {
    let (_, by_group) = memberships(store, &c.tenant.tenant_id).await?;
    Ok(store
        .scim_groups(&c.tenant.tenant_id)
        .await?
        .iter()
        .map(|g| {
            let members = by_group.get(&g.group_id).map(Vec::as_slice).unwrap_or(&[]);
            group_resource(&c.base, g, members)
        })
        .collect())
}

/// One resource, projected per `attributes`/`excludedAttributes`.
fn projected(r: &Value, q: &ProjectQuery) -> Response {
    scim_json(
        StatusCode::OK,
        &attrs::project(r, q.attributes.as_deref(), q.excluded_attributes.as_deref()),
    )
}

/// 201 with the new resource and its `Location`.
fn created(r: &Value, location: String) -> Response {
    let mut res = scim_json(StatusCode::CREATED, r);
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(http::header::LOCATION, v);
    }
    res
}

async fn list_users(
    State(state): State<AppState>,
    c: ScimClient,
    Query(q): Query<ListQuery>,
) -> ScimResult {
    list_response(all_users(&state.store, &c).await?, &q)
}

async fn get_user(
    State(state): State<AppState>,
    c: ScimClient,
    Path(id): Path<String>,
    Query(q): Query<ProjectQuery>,
) -> ScimResult {
    Ok(projected(&load_user(&state.store, &c, &id).await?, &q))
}

async fn create_user(State(state): State<AppState>, c: ScimClient, body: Bytes) -> ScimResult {
    let resource = read_body(&body)?;
    let w = user_write(&resource)?;
    let id = state
        .store
        .scim_create_user(&c.tenant.tenant_id, &w)
        .await?;
    refreshed(&state).await?;
    recorded(
        &state,
        &c,
        "scim.user.create",
        &id,
        json!({"userName": w.user_name, "active": w.active}),
    )
    .await;
    tracing::info!(audit = true, tenant.id = %c.tenant.tenant_id, user.id = %id, active = w.active, "SCIM: user provisioned");
    let r = load_user(&state.store, &c, &id).await?;
    Ok(created(&r, format!("{}/Users/{id}", c.base)))
}

async fn write_user(state: &AppState, c: &ScimClient, id: &str, resource: &Value) -> ScimResult {
    let w = user_write(resource)?;
    let before = state.store.scim_user(&c.tenant.tenant_id, id).await?;
    state
        .store
        .scim_replace_user(&c.tenant.tenant_id, id, &w)
        .await?;
    refreshed(state).await?;
    let deactivated = before.as_ref().is_some_and(|b| b.active && !w.active);
    recorded(
        state,
        c,
        if deactivated {
            "scim.user.deactivate"
        } else {
            "scim.user.update"
        },
        id,
        json!({"userName": w.user_name, "active": w.active}),
    )
    .await;
    if deactivated {
        tracing::info!(audit = true, tenant.id = %c.tenant.tenant_id, user.id = %id, "SCIM: user deactivated; their tokens and sessions ended");
        if let Ok(Some(u)) = state.store.user(&c.tenant.tenant_id, id).await {
            crate::mail::access_removed(
                state,
                &c.tenant,
                &u.email,
                "deactivated by your identity provider (SCIM)",
            )
            .await;
            crate::connections::deprovisioned(state, &c.tenant, id, &u.email, "deactivated (SCIM)")
                .await;
        }
    } else {
        tracing::info!(audit = true, tenant.id = %c.tenant.tenant_id, user.id = %id, active = w.active, "SCIM: user updated");
    }
    let r = load_user(&state.store, c, id).await?;
    Ok(scim_json(StatusCode::OK, &r))
}

async fn put_user(
    State(state): State<AppState>,
    c: ScimClient,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult {
    let resource = read_body(&body)?;
    load_user(&state.store, &c, &id).await?;
    write_user(&state, &c, &id, &resource).await
}

async fn patch_user(
    State(state): State<AppState>,
    c: ScimClient,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult {
    let ops = read_body(&body)?;
    let mut resource = load_user(&state.store, &c, &id).await?;
    patch::apply(&mut resource, &ops)?;
    write_user(&state, &c, &id, &resource).await
}

async fn delete_user(
    State(state): State<AppState>,
    c: ScimClient,
    Path(id): Path<String>,
) -> ScimResult {
    let email = state
        .store
        .user(&c.tenant.tenant_id, &id)
        .await
        .ok()
        .flatten()
        .map(|u| u.email);
    // Their upstream accounts end (revoked upstream) while the user still exists to own them.
    if let Some(email) = &email {
        crate::connections::deprovisioned(&state, &c.tenant, &id, email, "deleted (SCIM)").await;
    }
    state
        .store
        .scim_delete_user(&c.tenant.tenant_id, &id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ScimError::not_found("User"),
            e => e.into(),
        })?;
    refreshed(&state).await?;
    recorded(&state, &c, "scim.user.delete", &id, json!({})).await;
    tracing::info!(audit = true, tenant.id = %c.tenant.tenant_id, user.id = %id, "SCIM: user deleted; their tokens and sessions ended");
    if let Some(email) = email {
        crate::mail::access_removed(
            &state,
            &c.tenant,
            &email,
            "removed by your identity provider (SCIM)",
        )
        .await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- groups -------------------------------------------------------------------------------

/// The columns of a group resource, checked against the tenant's users.
fn group_write(resource: &Value, users: &HashSet<String>) -> ScimResult<ScimGroupWrite> {
    let get = |k: &str| filter::get_ci(resource, k);
    let name = text(get("displayName"))
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
    if name.len() > 256 {
        return Err(ScimError::bad("invalidValue", "displayName is too long"));
    }
    let members = match get("members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            let mut ids = Vec::new();
            for m in list {
                let id = text(m.get("value")).ok_or_else(|| {
                    ScimError::bad("invalidValue", "every member needs a value (a user id)")
                })?;
                if !users.contains(&id) {
                    return Err(ScimError::bad(
                        "invalidValue",
                        format!("member {id:?} is not a user of this tenant"),
                    ));
                }
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        }
        Some(_) => return Err(ScimError::bad("invalidValue", "members must be a list")),
    };
    let mut rest = resource.as_object().cloned().unwrap_or_default();
    let drop: Vec<String> = rest
        .keys()
        .filter(|k| {
            ["id", "meta", "members"]
                .iter()
                .any(|x| k.eq_ignore_ascii_case(x))
        })
        .cloned()
        .collect();
    for k in drop {
        rest.remove(&k);
    }
    Ok(ScimGroupWrite {
        name,
        external_id: text(get("externalId")),
        attributes: Value::Object(rest).to_string(),
        members: Some(members),
    })
}

async fn user_ids(store: &Store, tenant_id: &str) -> ScimResult<HashSet<String>> {
    Ok(store
        .scim_users(tenant_id)
        .await?
        .into_iter()
        .map(|u| u.user_id)
        .collect())
}

async fn load_group(store: &Store, c: &ScimClient, id: &str) -> ScimResult<Value> {
    let row = store
        .scim_group(&c.tenant.tenant_id, id)
        .await?
        .ok_or_else(|| ScimError::not_found("Group"))?;
    let (_, by_group) = memberships(store, &c.tenant.tenant_id).await?;
    Ok(group_resource(
        &c.base,
        &row,
        by_group.get(id).map(Vec::as_slice).unwrap_or(&[]),
    ))
}

async fn list_groups(
    State(state): State<AppState>,
    c: ScimClient,
    Query(q): Query<ListQuery>,
) -> ScimResult {
    list_response(all_groups(&state.store, &c).await?, &q)
}

async fn get_group(
    State(state): State<AppState>,
    c: ScimClient,
    Path(id): Path<String>,
    Query(q): Query<ProjectQuery>,
) -> ScimResult {
    Ok(projected(&load_group(&state.store, &c, &id).await?, &q))
}

async fn create_group(State(state): State<AppState>, c: ScimClient, body: Bytes) -> ScimResult {
    let resource = read_body(&body)?;
    let users = user_ids(&state.store, &c.tenant.tenant_id).await?;
    let w = group_write(&resource, &users)?;
    let id = state
        .store
        .scim_create_group(&c.tenant.tenant_id, &w)
        .await?;
    refreshed(&state).await?;
    recorded(
        &state,
        &c,
        "scim.group.create",
        &id,
        json!({"displayName": w.name, "members": w.members}),
    )
    .await;
    tracing::info!(audit = true, tenant.id = %c.tenant.tenant_id, group.id = %id, group.name = %w.name, "SCIM: group provisioned");
    let r = load_group(&state.store, &c, &id).await?;
    Ok(created(&r, format!("{}/Groups/{id}", c.base)))
}

async fn write_group(state: &AppState, c: &ScimClient, id: &str, resource: &Value) -> ScimResult {
    let users = user_ids(&state.store, &c.tenant.tenant_id).await?;
    let w = group_write(resource, &users)?;
    state
        .store
        .scim_replace_group(&c.tenant.tenant_id, id, &w)
        .await?;
    refreshed(state).await?;
    recorded(
        state,
        c,
        "scim.group.update",
        id,
        json!({"displayName": w.name, "members": w.members}),
    )
    .await;
    tracing::info!(audit = true, tenant.id = %c.tenant.tenant_id, group.id = %id, group.name = %w.name,
        members = w.members.as_ref().map_or(0, Vec::len), "SCIM: group updated");
    let r = load_group(&state.store, c, id).await?;
    Ok(scim_json(StatusCode::OK, &r))
}

async fn put_group(
    State(state): State<AppState>,
    c: ScimClient,
    Path(id): Path<String>,
    body: Bytes,
) -> ScimResult {
    let resource = read_body(&body)?;
    load_group(&state.store, &c, &id).await?;
    write_group(&state, &c, &id, &resource).await
}

async fn patch_group(
    State(state): State<AppState>,
    c: ScimClient,
    Path(id): Path<String>,
    Query(q): Query<ProjectQuery>,
    body: Bytes,
) -> ScimResult {
    let ops = read_body(&body)?;
    let mut resource = load_group(&state.store, &c, &id).await?;
    patch::apply(&mut resource, &ops)?;
    let res = write_group(&state, &c, &id, &resource).await?;
    // The whole group unless the IdP asked for less (`excludedAttributes=members`, common with
    // large groups).
    if q.attributes.is_none() && q.excluded_attributes.is_none() {
        return Ok(res);
    }
    Ok(projected(&load_group(&state.store, &c, &id).await?, &q))
}

async fn delete_group(
    State(state): State<AppState>,
    c: ScimClient,
    Path(id): Path<String>,
) -> ScimResult {
    state
        .store
        .scim_delete_group(&c.tenant.tenant_id, &id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ScimError::not_found("Group"),
            e => e.into(),
        })?;
    refreshed(&state).await?;
    recorded(&state, &c, "scim.group.delete", &id, json!({})).await;
    tracing::info!(audit = true, tenant.id = %c.tenant.tenant_id, group.id = %id, "SCIM: group deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- discovery ----------------------------------------------------------------------------

async fn service_provider_config(c: ScimClient) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": true},
            "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": false},
            "sort": {"supported": false},
            "etag": {"supported": false},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "The tenant's SCIM token (console: Identity → SCIM, or `portcullis scim token`)",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{}/ServiceProviderConfig", c.base),
            },
        }),
    )
}

fn resource_type_of(base: &str, id: &str) -> Option<Value> {
    let (endpoint, schema, ext) = match id {
        "User" => (
            "/Users",
            USER_SCHEMA,
            json!([{"schema": ENTERPRISE_USER_SCHEMA, "required": false}]),
        ),
        "Group" => ("/Groups", GROUP_SCHEMA, json!([])),
        _ => return None,
    };
    let mut v = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": id, "name": id, "endpoint": endpoint,
        "description": format!("{id}s of this tenant"),
        "schema": schema,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")},
    });
    if ext.as_array().is_some_and(|a| !a.is_empty()) {
        v["schemaExtensions"] = ext;
    }
    Some(v)
}

fn list_of(items: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        &json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": items.len(),
            "startIndex": 1,
            "itemsPerPage": items.len(),
            "Resources": items,
        }),
    )
}

async fn resource_types(c: ScimClient) -> Response {
    list_of(
        ["User", "Group"]
            .iter()
            .filter_map(|id| resource_type_of(&c.base, id))
            .collect(),
    )
}

async fn resource_type(c: ScimClient, Path(id): Path<String>) -> ScimResult {
    resource_type_of(&c.base, &id)
        .map(|v| scim_json(StatusCode::OK, &v))
        .ok_or_else(|| ScimError::not_found("ResourceType"))
}

/// One attribute definition (RFC 7643 §7).
fn attr(
    name: &str,
    ty: &str,
    multi: bool,
    required: bool,
    mutability: &str,
    sub: Vec<Value>,
) -> Value {
    let mut v = json!({
        "name": name, "type": ty, "multiValued": multi, "required": required,
        "caseExact": false, "mutability": mutability, "returned": "default",
        "uniqueness": "none", "description": name,
    });
    if !sub.is_empty() {
        v["subAttributes"] = Value::Array(sub);
    }
    v
}

fn schema_of(base: &str, id: &str) -> Option<Value> {
    let rw = "readWrite";
    let attributes = match id {
        USER_SCHEMA => {
            let mut user_name = attr("userName", "string", false, true, rw, vec![]);
            user_name["uniqueness"] = json!("server");
            vec![
                user_name,
                attr(
                    "name",
                    "complex",
                    false,
                    false,
                    rw,
                    vec![
                        attr("formatted", "string", false, false, rw, vec![]),
                        attr("familyName", "string", false, false, rw, vec![]),
                        attr("givenName", "string", false, false, rw, vec![]),
                    ],
                ),
                attr("displayName", "string", false, false, rw, vec![]),
                attr("title", "string", false, false, rw, vec![]),
                attr("active", "boolean", false, false, rw, vec![]),
                attr(
                    "emails",
                    "complex",
                    true,
                    false,
                    rw,
                    vec![
                        attr("value", "string", false, false, rw, vec![]),
                        {
                            let mut t = attr("type", "string", false, false, rw, vec![]);
                            t["canonicalValues"] = json!(["work", "home", "other"]);
                            t
                        },
                        attr("primary", "boolean", false, false, rw, vec![]),
                    ],
                ),
                attr(
                    "groups",
                    "complex",
                    true,
                    false,
                    "readOnly",
                    vec![
                        attr("value", "string", false, false, "readOnly", vec![]),
                        {
                            let mut v = attr("$ref", "reference", false, false, "readOnly", vec![]);
                            v["referenceTypes"] = json!(["Group"]);
                            v
                        },
                        attr("display", "string", false, false, "readOnly", vec![]),
                        {
                            let mut v = attr("type", "string", false, false, "readOnly", vec![]);
                            v["canonicalValues"] = json!(["direct"]);
                            v
                        },
                    ],
                ),
            ]
        }
        GROUP_SCHEMA => vec![
            attr("displayName", "string", false, true, rw, vec![]),
            attr(
                "members",
                "complex",
                true,
                false,
                rw,
                vec![
                    {
                        let mut v = attr("value", "string", false, false, "immutable", vec![]);
                        v["caseExact"] = json!(true);
                        v
                    },
                    {
                        // Members are users (no nested groups): `$ref` names a User.
                        let mut v = attr("$ref", "reference", false, false, "immutable", vec![]);
                        v["referenceTypes"] = json!(["User"]);
                        v
                    },
                    {
                        let mut v = attr("type", "string", false, false, "immutable", vec![]);
                        v["canonicalValues"] = json!(["User"]);
                        v
                    },
                ],
            ),
        ],
        ENTERPRISE_USER_SCHEMA => vec![
            attr("employeeNumber", "string", false, false, rw, vec![]),
            attr("department", "string", false, false, rw, vec![]),
        ],
        _ => return None,
    };
    let name = match id {
        USER_SCHEMA => "User",
        GROUP_SCHEMA => "Group",
        _ => "EnterpriseUser",
    };
    Some(json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id, "name": name, "description": format!("{name} schema"),
        "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    }))
}

async fn schemas(c: ScimClient) -> Response {
    list_of(
        [USER_SCHEMA, GROUP_SCHEMA, ENTERPRISE_USER_SCHEMA]
            .iter()
            .filter_map(|id| schema_of(&c.base, id))
            .collect(),
    )
}

async fn schema(c: ScimClient, Path(id): Path<String>) -> ScimResult {
    schema_of(&c.base, &id)
        .map(|v| scim_json(StatusCode::OK, &v))
        .ok_or_else(|| ScimError::not_found("Schema"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_resource_takes_its_columns_from_the_store_and_the_rest_from_the_idp() {
        let w = user_write(&json!({
            "schemas": [USER_SCHEMA, ENTERPRISE_USER_SCHEMA],
            "userName": "bob@acme.test", "active": "False", "password": "hunter2",
            "emails": [{"value": "b@home.test"}, {"value": "bob@acme.test", "primary": "True"}],
            ENTERPRISE_USER_SCHEMA: {"department": "Sales"},
            "groups": [{"value": "forged"}],
        }))
        .unwrap();
        assert_eq!(w.email, "bob@acme.test", "the primary email");
        assert!(!w.active, "Entra's \"False\" is false");
        assert!(
            !w.attributes.contains("hunter2"),
            "passwords are never stored"
        );
        assert!(
            !w.attributes.contains("forged"),
            "groups come from memberships only"
        );
        let row = ScimUserRow {
            user_id: "u1".into(),
            email: w.email.clone(),
            user_name: Some(w.user_name.clone()),
            external_id: None,
            display_name: None,
            active: w.active,
            scim_attributes: Some(w.attributes.clone()),
            created_at: 0,
            updated_at: 1,
        };
        let r = user_resource("https://t/scim/v2", &row, &[("g1".into(), "sales".into())]);
        assert_eq!(r["id"], "u1");
        assert_eq!(r["active"], false);
        assert_eq!(r[ENTERPRISE_USER_SCHEMA]["department"], "Sales");
        assert_eq!(r["groups"][0]["display"], "sales");
        assert_eq!(r["meta"]["location"], "https://t/scim/v2/Users/u1");
        assert_eq!(r["schemas"][1], ENTERPRISE_USER_SCHEMA);
        assert!(
            user_write(&json!({"active": true})).is_err(),
            "userName is required"
        );
        assert!(user_write(&json!({"userName": "x", "active": "maybe"})).is_err());
    }

    #[test]
    fn groups_name_only_users_of_the_tenant() {
        let users = HashSet::from(["u1".to_owned()]);
        let ok = group_write(
            &json!({"displayName": "sales", "members": [{"value": "u1"}, {"value": "u1"}]}),
            &users,
        )
        .unwrap();
        assert_eq!(ok.members, Some(vec!["u1".to_owned()]));
        assert!(group_write(
            &json!({"displayName": "x", "members": [{"value": "u2"}]}),
            &users
        )
        .is_err());
        assert!(group_write(&json!({"members": []}), &users).is_err());
    }

    #[test]
    fn lists_filter_page_and_project() {
        let resources: Vec<Value> = (1..=5)
            .map(|i| json!({"id": format!("{i}"), "userName": format!("user{i}@x.test"), "schemas": [USER_SCHEMA], "meta": {"resourceType": "User"}}))
            .collect();
        let q = ListQuery {
            filter: Some("userName sw \"USER\"".into()),
            start_index: Some("2".into()),
            count: Some("2".into()),
            attributes: Some("userName".into()),
            ..Default::default()
        };
        let res = list_response(resources.clone(), &q).unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let bad = ListQuery {
            filter: Some("userName xx \"a\"".into()),
            ..Default::default()
        };
        let err = list_response(resources, &bad).unwrap_err();
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.scim_type, Some("invalidFilter"));
    }
}
