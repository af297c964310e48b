//! Portcullis as the OAuth 2.1 authorization server of its own gateway (MCP authorization,
//! 2025-11-25): each tenant host is an issuer, each `/mcp/{server}` endpoint a protected
//! resource.
//!
//! - Discovery: RFC 9728 protected-resource metadata at
//!   `/.well-known/oauth-protected-resource/mcp/{server}` (the gateway's 401 points there), RFC
//!   8414 metadata at `/.well-known/oauth-authorization-server` (and the OIDC discovery path).
//! - Clients register dynamically (RFC 7591): public clients, exact redirect URIs (https, or
//!   http to a loopback host).
//! - `/oauth/authorize`: code flow with PKCE S256 only and an RFC 8707 `resource` naming one
//!   gateway endpoint; the user signs in through the tenant's SSO (or is already signed in),
//!   then approves on a consent page (anti-CSRF token, never framed) naming the client, its
//!   redirect URI, the server and the tools it will reach. The redirect carries `iss` (RFC 9207).
//! - `/oauth/token`: the code (one use; a replayed code revokes what it issued) for a
//!   short-lived access token bound to that one endpoint and a refresh token; refresh tokens
//!   rotate, and a used one presented again revokes the whole grant.
//! - `/oauth/revoke` (RFC 7009) revokes the token's grant.
//!
//! Tokens are opaque and stored hashed; the gateway checks them against its in-memory snapshot
//! (rebuilt here before a token is handed out or after a revocation), so revocation bites on the
//! next request. A client token never travels upstream.

use crate::auth::{self, SessionAuth, SESSION_AUTH};
use crate::domain::{NewToken, TokenHash, TokenKind};
use crate::state::AppState;
use crate::store::{now_micros, Redeemed, Refreshed};
use crate::tenancy::{Host, Tenant};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use base64::Engine as _;
use http::{HeaderValue, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tower_sessions::Session;

/// Access tokens live ten minutes: revocation does not wait for them, but a leaked one dies soon.
pub const ACCESS_TTL_SECS: i64 = 600;
const REFRESH_TTL_US: i64 = 30 * 86_400_000_000;
const CODE_TTL_US: i64 = 60_000_000;
/// The one scope: use of the gateway endpoint the token is for.
pub const SCOPE: &str = "mcp";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(resource_metadata),
        )
        .route("/.well-known/oauth-authorization-server", get(as_metadata))
        .route("/.well-known/openid-configuration", get(as_metadata))
        .route("/oauth/register", post(register))
        .route("/oauth/authorize", get(authorize).post(consent))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
}

pub(crate) fn tenant_of(host: Option<Extension<Host>>) -> Option<Arc<Tenant>> {
    match host {
        Some(Extension(Host::Tenant(t))) => Some(t),
        _ => None,
    }
}

fn issuer(state: &AppState, t: &Tenant) -> String {
    state.urls.tenant(&t.slug)
}

/// The canonical URI of a gateway endpoint (the tokens' audience).
pub fn resource_uri(state: &AppState, t: &Tenant, server: &str) -> String {
    format!("{}{server}", state.urls.tenant_gateway(&t.slug))
}

/// The RFC 9728 metadata URL of a gateway endpoint (for the 401's `WWW-Authenticate`).
pub fn resource_metadata_url(state: &AppState, t: &Tenant, server: &str) -> String {
    format!(
        "{}/.well-known/oauth-protected-resource/mcp/{server}",
        state.urls.tenant(&t.slug)
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut res = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    res
}

async fn resource_metadata(
    State(state): State<AppState>,
    host: Option<Extension<Host>>,
    Path(server): Path<String>,
) -> Response {
    let Some(t) = tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Every endpoint has metadata (whether it exists is not revealed before authentication).
    Json(json!({
        "resource": resource_uri(&state, &t, &server),
        "authorization_servers": [issuer(&state, &t)],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": format!("{} · {server}", t.name),
    }))
    .into_response()
}

async fn as_metadata(State(state): State<AppState>, host: Option<Extension<Host>>) -> Response {
    let Some(t) = tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let iss = issuer(&state, &t);
    Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oauth/authorize"),
        "token_endpoint": format!("{iss}/oauth/token"),
        "registration_endpoint": format!("{iss}/oauth/register"),
        "revocation_endpoint": format!("{iss}/oauth/revoke"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "revocation_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": [SCOPE],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": true,
    }))
    .into_response()
}

/// Redirect URIs a client may register: https, or http to a loopback host (native clients);
/// no fragment.
fn redirect_ok(uri: &str) -> bool {
    let Ok(u) = url::Url::parse(uri) else {
        return false;
    };
    if u.fragment().is_some() {
        return false;
    }
    match u.scheme() {
        "https" => true,
        "http" => matches!(
            u.host_str(),
            Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
        ),
        _ => false,
    }
}

async fn register(
    State(state): State<AppState>,
    host: Option<Extension<Host>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Some(t) = tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Json(v)) = body else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client_metadata",
            "a JSON body is required",
        );
    };
    let uris: Vec<String> = v["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() || uris.len() > 10 || !uris.iter().all(|u| redirect_ok(u) && u.len() < 2000)
    {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_redirect_uri",
            "redirect_uris: 1 to 10 URIs, each https or http to localhost, without a fragment",
        );
    }
    if let Some(m) = v["token_endpoint_auth_method"].as_str() {
        if m != "none" {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_client_metadata",
                "only public clients (token_endpoint_auth_method none, with PKCE) are supported",
            );
        }
    }
    let name: String = v["client_name"]
        .as_str()
        .unwrap_or("MCP client")
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    let client_id = match state
        .store
        .create_oauth_client(&t.tenant_id, &name, &json!(uris).to_string())
        .await
    {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "registering an OAuth client failed");
            return oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again",
            );
        }
    };
    state
        .audit
        .note(
            crate::audit::Event::new(
                &t.tenant_id,
                crate::audit::Category::Security,
                "oauth.register",
                "ok",
            )
            .target(client_id.clone())
            .detail(json!({"client_name": name, "redirect_uris": uris})),
        )
        .await;
    (
        StatusCode::CREATED,
        Json(json!({
            "client_id": client_id,
            "client_id_issued_at": now_micros() / 1_000_000,
            "client_name": name,
            "redirect_uris": uris,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        })),
    )
        .into_response()
}

/// An authorization request's parameters (the query of GET, the hidden fields of the consent).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
pub struct AuthRequest {
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    code_challenge_method: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    scope: Option<String>,
}

/// A checked request: the client's name and the server the tokens will be for.
struct Checked {
    client_name: String,
    server: String,
}

/// A problem with the client or redirect URI is shown here (never redirected: the URI is not
/// trusted); any other problem goes back to the client's redirect URI.
enum Refusal {
    Page(String),
    Redirect(String, &'static str, String),
}

/// Whether an address is one a metadata-document fetch must not reach (SSRF): loopback,
/// private, link-local (cloud metadata at 169.254.169.254), unspecified, multicast.
fn private_ip(ip: std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64 // CGNAT 100.64/10
        }
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00 // unique local
                || (v6.segments()[0] & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| private_ip(std::net::IpAddr::V4(v4)))
        }
    }
}

/// Largest client metadata document read.
const MAX_CIMD_BYTES: usize = 64 * 1024;

/// A client known by its metadata document (Client ID Metadata Documents, MCP 2025-11-25):
/// `client_id` is an https URL with a path; the document there must name itself as
/// `client_id` and list the redirect URIs. Fetched without redirects, bounded in time and size,
/// never from private addresses; then kept as the tenant's client row.
async fn client_from_metadata(state: &AppState, t: &Tenant, client_id: &str) -> Result<(), String> {
    let u = url::Url::parse(client_id).map_err(|_| "client_id is not a URL".to_owned())?;
    if u.scheme() != "https"
        || u.path() == "/"
        || u.fragment().is_some()
        || !u.username().is_empty()
    {
        return Err("a client_id URL must be https with a path, without fragment or user".into());
    }
    let host = u.host_str().ok_or("client_id has no host")?.to_owned();
    let port = u.port_or_known_default().unwrap_or(443);
    let addrs: Vec<std::net::IpAddr> =
        tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .map(|a| a.ip())
            .collect();
    if !state.cimd_allow_private && (addrs.is_empty() || addrs.iter().any(|ip| private_ip(*ip))) {
        return Err(format!("{host} resolves to a private address: refused"));
    }
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state
            .gateway
            .client()
            .get(client_id)
            .header("accept", "application/json")
            .send(),
    )
    .await
    .map_err(|_| "the client metadata document did not come in time".to_owned())?
    .map_err(|e| format!("cannot fetch the client metadata document: {e}"))?;
    if !res.status().is_success() {
        return Err(format!(
            "the client metadata document answered {}",
            res.status()
        ));
    }
    let mut body = Vec::new();
    let mut stream = res.bytes_stream();
    use futures_util::StreamExt;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        body.extend_from_slice(&chunk);
        if body.len() > MAX_CIMD_BYTES {
            return Err("the client metadata document is too large".into());
        }
    }
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|_| "the client metadata document is not JSON".to_owned())?;
    if doc["client_id"].as_str() != Some(client_id) {
        return Err("the client metadata document does not name itself as client_id".into());
    }
    let uris: Vec<String> = doc["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() || uris.len() > 10 || !uris.iter().all(|x| redirect_ok(x)) {
        return Err(
            "the client metadata document's redirect_uris are missing or not allowed".into(),
        );
    }
    let name: String = doc["client_name"]
        .as_str()
        .unwrap_or(&host)
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    state
        .store
        .upsert_oauth_client(
            &t.tenant_id,
            client_id,
            &format!("{name} ({host})"),
            &json!(uris).to_string(),
        )
        .await
        .map_err(|e| e.to_string())
}

async fn check(state: &AppState, t: &Tenant, r: &AuthRequest) -> Result<Checked, Refusal> {
    if r.client_id.starts_with("https://") {
        client_from_metadata(state, t, &r.client_id)
            .await
            .map_err(|why| Refusal::Page(format!("client_id: {why}")))?;
    }
    let client = state
        .store
        .oauth_client(&t.tenant_id, &r.client_id)
        .await
        .map_err(|_| Refusal::Page("the authorization server is unavailable".into()))?;
    let Some((client_name, uris)) = client else {
        return Err(Refusal::Page(
            "unknown client_id: register the client first".into(),
        ));
    };
    let uris: Vec<String> = serde_json::from_str(&uris).unwrap_or_default();
    if !uris.contains(&r.redirect_uri) {
        return Err(Refusal::Page(
            "redirect_uri is not one the client registered (exact match required)".into(),
        ));
    }
    let back = |code: &'static str, why: &str| {
        Refusal::Redirect(r.redirect_uri.clone(), code, why.to_owned())
    };
    if r.response_type != "code" {
        return Err(back(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    if r.code_challenge_method != "S256" || r.code_challenge.len() != 43 {
        return Err(back("invalid_request", "PKCE with S256 is required"));
    }
    if let Some(s) = &r.scope {
        if s.split_whitespace().any(|x| x != SCOPE) {
            return Err(back("invalid_scope", "the only scope is mcp"));
        }
    }
    let base = state.urls.tenant_gateway(&t.slug);
    let server = r
        .resource
        .trim_end_matches('/')
        .strip_prefix(&base)
        .filter(|s| !s.is_empty() && !s.contains('/'))
        .map(str::to_owned);
    let Some(server) = server else {
        return Err(back(
            "invalid_target",
            "resource must name one gateway endpoint of this tenant (RFC 8707)",
        ));
    };
    if state.gateway.server(&t.tenant_id, &server).is_none() {
        return Err(back("invalid_target", "no such MCP server"));
    }
    Ok(Checked {
        client_name,
        server,
    })
}

fn redirect_with(uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut u) = url::Url::parse(uri) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    Redirect::to(u.as_str()).into_response()
}

fn refuse(iss: &str, r: &AuthRequest, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Page(why) => page(
            StatusCode::BAD_REQUEST,
            "Authorization refused",
            &format!("<p id=\"oauth-error\">{}</p>", esc(&why)),
        ),
        Refusal::Redirect(uri, code, why) => {
            let mut p = vec![
                ("error", code),
                ("error_description", why.as_str()),
                ("iss", iss),
            ];
            if let Some(s) = &r.state {
                p.push(("state", s.as_str()));
            }
            redirect_with(&uri, &p)
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// A plain page in the product's style that may never be framed (clickjacking).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{} · Portcullis</title><link rel=\"stylesheet\" href=\"/pkg/portcullis.css\"></head>\
         <body><main class=\"centered\"><section class=\"card narrow\"><h1>{}</h1>{body}</section></main></body></html>",
        esc(title),
        esc(title)
    );
    let mut res = (status, Html(html)).into_response();
    let h = res.headers_mut();
    h.insert(
        http::header::X_FRAME_OPTIONS,
        HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "frame-ancestors 'none'; default-src 'self'; form-action 'self' https: http:",
        ),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    res
}

/// The signed-in user of this tenant (console or portal session), if still active and not
/// revoked.
pub(crate) async fn signed_in(
    state: &AppState,
    session: &Session,
    t: &Tenant,
) -> Option<crate::store::UserRow> {
    let Ok(Some(SessionAuth::Tenant {
        tenant_id,
        user_id,
        signed_in_at,
    })) = session.get::<SessionAuth>(SESSION_AUTH).await
    else {
        return None;
    };
    if tenant_id != t.tenant_id {
        return None;
    }
    let user = state.store.user(&t.tenant_id, &user_id).await.ok()??;
    let revoked = state
        .store
        .sessions_revoked_at(&t.tenant_id, &user_id)
        .await
        .ok()?;
    (user.active && revoked.is_none_or(|at| signed_in_at > at)).then_some(user)
}

async fn authorize(
    State(state): State<AppState>,
    host: Option<Extension<Host>>,
    session: Session,
    uri: http::Uri,
    Query(r): Query<AuthRequest>,
) -> Response {
    let Some(t) = tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let iss = issuer(&state, &t);
    let checked = match check(&state, &t, &r).await {
        Ok(c) => c,
        Err(refusal) => return refuse(&iss, &r, refusal),
    };
    let Some(user) = signed_in(&state, &session, &t).await else {
        // Sign in through the tenant's SSO, then come back here.
        let back = uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/oauth/authorize");
        let back: String = url::form_urlencoded::byte_serialize(back.as_bytes()).collect();
        return Redirect::to(&format!("/auth/login?return_to={back}")).into_response();
    };
    let policy = state.gateway.tenant_policy(&t.tenant_id);
    if !policy.reaches(&user.user_id, &checked.server) {
        return refuse(
            &iss,
            &r,
            Refusal::Redirect(
                r.redirect_uri.clone(),
                "access_denied",
                "you have no access to this server".into(),
            ),
        );
    }
    let tools = crate::access::reach(&policy, &user.email)
        .into_iter()
        .find(|x| x.server == checked.server)
        .map(|x| x.tools)
        .unwrap_or_default();
    let csrf = match auth::csrf_token(&session).await {
        Ok(c) => c,
        Err(_) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
    };
    let hidden =
        |k: &str, v: &str| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v));
    let mut fields = String::new();
    for (k, v) in [
        ("response_type", r.response_type.as_str()),
        ("client_id", &r.client_id),
        ("redirect_uri", &r.redirect_uri),
        ("code_challenge", &r.code_challenge),
        ("code_challenge_method", &r.code_challenge_method),
        ("resource", &r.resource),
        ("state", r.state.as_deref().unwrap_or_default()),
        ("scope", r.scope.as_deref().unwrap_or_default()),
        ("csrf", &csrf),
    ] {
        fields.push_str(&hidden(k, v));
    }
    let tool_list = if tools.is_empty() {
        "<p>The tools your access allows on it (none reviewed yet).</p>".to_owned()
    } else {
        format!(
            "<ul id=\"oauth-tools\">{}</ul>",
            tools
                .iter()
                .map(|x| format!("<li><code>{}</code></li>", esc(x)))
                .collect::<String>()
        )
    };
    let body = format!(
        "<p><strong id=\"oauth-client\">{}</strong> (client <code>{}</code>) asks to use the MCP server \
         <strong id=\"oauth-server\">{}</strong> as <strong>{}</strong>.</p>\
         <p>It will be sent back to <code id=\"oauth-redirect\">{}</code>. Approve only if you started this.</p>\
         <p>It may call:</p>{tool_list}\
         <form method=\"post\" action=\"/oauth/authorize\" id=\"oauth-consent\">{fields}\
         <button type=\"submit\" name=\"decision\" value=\"approve\" class=\"primary\" id=\"oauth-approve\">Approve</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"ghost\" id=\"oauth-deny\">Deny</button></form>",
        esc(&checked.client_name),
        esc(&r.client_id),
        esc(&checked.server),
        esc(&user.email),
        esc(&r.redirect_uri),
    );
    page(StatusCode::OK, "Allow access?", &body)
}

#[derive(Debug, Deserialize)]
struct ConsentForm {
    #[serde(flatten)]
    request: AuthRequest,
    csrf: String,
    decision: String,
}

async fn consent(
    State(state): State<AppState>,
    host: Option<Extension<Host>>,
    session: Session,
    Form(f): Form<ConsentForm>,
) -> Response {
    let Some(t) = tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let iss = issuer(&state, &t);
    let mut r = f.request;
    r.state = r.state.filter(|s| !s.is_empty());
    r.scope = r.scope.filter(|s| !s.is_empty());
    if !auth::csrf_ok(&session, &f.csrf).await {
        return page(StatusCode::FORBIDDEN, "Authorization refused", "<p id=\"oauth-error\">The form expired or did not come from this page. Start again from your MCP client.</p>");
    }
    let checked = match check(&state, &t, &r).await {
        Ok(c) => c,
        Err(refusal) => return refuse(&iss, &r, refusal),
    };
    let Some(user) = signed_in(&state, &session, &t).await else {
        return page(
            StatusCode::UNAUTHORIZED,
            "Authorization refused",
            "<p id=\"oauth-error\">You are signed out. Start again from your MCP client.</p>",
        );
    };
    let audit_event = |outcome: &str| {
        crate::audit::Event::new(
            &t.tenant_id,
            crate::audit::Category::Security,
            "oauth.consent",
            outcome,
        )
        .by(&user.user_id, &user.email)
        .target(r.client_id.clone())
        .detail(
            json!({"client_name": checked.client_name, "server": checked.server,
                "redirect_uri": r.redirect_uri}),
        )
    };
    if f.decision != "approve" {
        state.audit.note(audit_event("denied")).await;
        return refuse(
            &iss,
            &r,
            Refusal::Redirect(
                r.redirect_uri.clone(),
                "access_denied",
                "the user denied access".into(),
            ),
        );
    }
    if !state
        .gateway
        .tenant_policy(&t.tenant_id)
        .reaches(&user.user_id, &checked.server)
    {
        return refuse(
            &iss,
            &r,
            Refusal::Redirect(
                r.redirect_uri.clone(),
                "access_denied",
                "you have no access to this server".into(),
            ),
        );
    }
    let code = NewToken::generate(TokenKind::OAuthCode);
    if let Err(e) = state
        .store
        .create_oauth_code(
            &t.tenant_id,
            code.hash.as_str(),
            &r.client_id,
            &user.user_id,
            &r.redirect_uri,
            &r.code_challenge,
            &checked.server,
            now_micros() + CODE_TTL_US,
        )
        .await
    {
        tracing::error!(error = %e, "storing an authorization code failed");
        return refuse(
            &iss,
            &r,
            Refusal::Redirect(
                r.redirect_uri.clone(),
                "temporarily_unavailable",
                "try again".into(),
            ),
        );
    }
    state.audit.note(audit_event("approved")).await;
    let mut p = vec![
        ("code", code.plaintext.expose_secret()),
        ("iss", iss.as_str()),
    ];
    if let Some(s) = &r.state {
        p.push(("state", s.as_str()));
    }
    redirect_with(&r.redirect_uri, &p)
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    grant_type: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    code_verifier: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    scope: Option<String>,
}

/// A replayed code or reused refresh token revoked its grant (in the store): the gateway
/// forgets the grant's tokens now, the event is recorded, the client gets `invalid_grant`.
async fn revoked_for_misuse(state: &AppState, t: &Tenant, action: &str, why: &str) -> Response {
    let _ = state.refresh_snapshots().await;
    state
        .audit
        .note(
            crate::audit::Event::new(
                &t.tenant_id,
                crate::audit::Category::Security,
                action,
                "refused",
            )
            .detail(json!({})),
        )
        .await;
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn token(
    State(state): State<AppState>,
    host: Option<Extension<Host>>,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(t) = tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Form(f)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a form-encoded body with grant_type is required",
        );
    };
    let bad_grant = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
    let (grant_id, client_id, server, user_id) = match f.grant_type.as_str() {
        "authorization_code" => {
            let Some(hash) = f
                .code
                .as_deref()
                .and_then(|c| TokenHash::of_presented(TokenKind::OAuthCode, c))
            else {
                return bad_grant("unknown authorization code");
            };
            let redeemed = match state
                .store
                .redeem_oauth_code(&t.tenant_id, hash.as_str())
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "redeeming a code failed");
                    return oauth_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "try again",
                    );
                }
            };
            let (code, grant) = match redeemed {
                Redeemed::Unknown => return bad_grant("unknown authorization code"),
                Redeemed::Replayed => {
                    return revoked_for_misuse(
                        &state,
                        &t,
                        "oauth.code_replayed",
                        "the authorization code was already used: the tokens it issued are revoked",
                    )
                    .await;
                }
                Redeemed::Fresh(code, grant) => (code, grant),
            };
            // From here a refusal also revokes the grant the redemption made: the code is
            // spent either way and its grant never becomes usable.
            let refuse_grant = |why: &'static str| {
                let store = state.store.clone();
                let tid = t.tenant_id.clone();
                let g = grant.clone();
                async move {
                    let _ = store.revoke_oauth_grant(&tid, &g).await;
                    bad_grant(why)
                }
            };
            if code.expires_at <= now_micros() {
                return refuse_grant("the authorization code expired").await;
            }
            if f.client_id.as_deref() != Some(code.client_id.as_str()) {
                return refuse_grant("the code was issued to another client").await;
            }
            if f.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
                return refuse_grant("redirect_uri does not match the authorization request").await;
            }
            match f.code_verifier.as_deref() {
                Some(v) if v.len() >= 43 && v.len() <= 128 && s256(v) == code.code_challenge => {}
                _ => return refuse_grant("PKCE verification failed").await,
            }
            if let Some(res) = f.resource.as_deref() {
                if res.trim_end_matches('/') != resource_uri(&state, &t, &code.server) {
                    return refuse_grant("resource does not match the authorization request").await;
                }
            }
            (grant, code.client_id, code.server, code.user_id)
        }
        "refresh_token" => {
            let Some(hash) = f
                .refresh_token
                .as_deref()
                .and_then(|c| TokenHash::of_presented(TokenKind::OAuthRefresh, c))
            else {
                return bad_grant("unknown refresh token");
            };
            match state
                .store
                .use_refresh_token(&t.tenant_id, hash.as_str())
                .await
            {
                Ok(Refreshed::Fresh(g)) => {
                    if f.client_id.as_deref().is_some_and(|c| c != g.client_id) {
                        return bad_grant("the refresh token was issued to another client");
                    }
                    (g.grant_id, g.client_id, g.server, g.user_id)
                }
                Ok(Refreshed::Reused) => {
                    return revoked_for_misuse(
                        &state,
                        &t,
                        "oauth.refresh_reused",
                        "the refresh token was already used: the whole grant is revoked",
                    )
                    .await;
                }
                Ok(Refreshed::Unknown) => return bad_grant("unknown or expired refresh token"),
                Err(e) => {
                    tracing::error!(error = %e, "refreshing failed");
                    return oauth_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "temporarily_unavailable",
                        "try again",
                    );
                }
            }
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be authorization_code or refresh_token",
            )
        }
    };
    let access = NewToken::generate(TokenKind::OAuthAccess);
    let refresh = NewToken::generate(TokenKind::OAuthRefresh);
    let now = now_micros();
    if let Err(e) = state
        .store
        .issue_oauth_tokens(
            &t.tenant_id,
            &grant_id,
            (access.hash.as_str(), now + ACCESS_TTL_SECS * 1_000_000),
            (refresh.hash.as_str(), now + REFRESH_TTL_US),
        )
        .await
    {
        tracing::error!(error = %e, "issuing OAuth tokens failed");
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "try again",
        );
    }
    // The gateway knows the token before the client has it.
    if let Err(e) = state.refresh_snapshots().await {
        tracing::error!(error = %e, "refreshing the gateway snapshot failed");
    }
    state
        .audit
        .note(
            crate::audit::Event::new(
                &t.tenant_id,
                crate::audit::Category::Security,
                "oauth.token",
                "ok",
            )
            .target(client_id.clone())
            .detail(json!({"grant_type": f.grant_type, "server": server, "user_id": user_id})),
        )
        .await;
    let mut res = Json(json!({
        "access_token": access.plaintext.expose_secret(),
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL_SECS,
        "refresh_token": refresh.plaintext.expose_secret(),
        "scope": SCOPE,
    }))
    .into_response();
    res.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    res
}

#[derive(Debug, Deserialize)]
struct RevokeForm {
    token: String,
    #[serde(default)]
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// RFC 7009: the token's grant is revoked; the answer is 200 whatever the token was.
async fn revoke(
    State(state): State<AppState>,
    host: Option<Extension<Host>>,
    form: Result<Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(t) = tenant_of(host) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok(Form(f)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        );
    };
    let hash = TokenHash::of_presented(TokenKind::OAuthAccess, &f.token)
        .or_else(|| TokenHash::of_presented(TokenKind::OAuthRefresh, &f.token));
    if let Some(h) = hash {
        match state
            .store
            .revoke_oauth_token(&t.tenant_id, h.as_str())
            .await
        {
            Ok(true) => {
                let _ = state.refresh_snapshots().await;
                state
                    .audit
                    .note(
                        crate::audit::Event::new(
                            &t.tenant_id,
                            crate::audit::Category::Security,
                            "oauth.revoke",
                            "ok",
                        )
                        .detail(json!({})),
                    )
                    .await;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %e, "revoking an OAuth token failed");
                return oauth_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "try again",
                );
            }
        }
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_documents_never_come_from_private_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.9",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(private_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(!private_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn redirect_uris_are_https_or_loopback_http_without_fragments() {
        assert!(redirect_ok("https://app.example.com/cb"));
        assert!(redirect_ok("http://127.0.0.1:33418/callback"));
        assert!(redirect_ok("http://localhost/cb"));
        assert!(!redirect_ok("http://evil.example/cb"));
        assert!(!redirect_ok("https://app.example.com/cb#frag"));
        assert!(!redirect_ok("javascript:alert(1)"));
        assert!(!redirect_ok("not a url"));
    }

    #[test]
    fn pkce_s256_is_base64url_sha256_of_the_verifier() {
        // Computed independently with Python's hashlib and base64.
        assert_eq!(
            s256("dBjftJeZ4CQP1-JmhIlOcOjdGTZiNtCzXXH5ZkNV3Dqm5dH2Dw1k"),
            "QRINePBR9ciGPHIdxwEpZRiyL-F3Ab3npw8P6n0Q4sE"
        );
    }
}
