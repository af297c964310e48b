//! Per-user OAuth to an upstream MCP server: the gateway is the OAuth client, users connect
//! their accounts in the portal, and only the gateway ever holds the upstream's tokens.
//!
//! - Discovery: the upstream's protected resource metadata (RFC 9728: from the
//!   `WWW-Authenticate: Bearer resource_metadata=…` of an unauthenticated request, else the
//!   well-known URIs) names its authorization server, whose metadata (RFC 8414, or OpenID
//!   discovery) gives the endpoints. An admin may name the authorization server instead.
//! - Registration: a client the admin configured, or dynamic registration (RFC 7591) once per
//!   server, kept in the vault (`mcp_server`, id, `oauth_client`).
//! - The flow: authorization code with PKCE S256 and the `resource` indicator (RFC 8707) naming
//!   the upstream, by the `oauth2` crate over the gateway's HTTP client; `iss` in the response
//!   is checked (RFC 9207). Refresh with the same resource; revocation per RFC 7009.

use super::{now_unix, PerUser, Stored};
use crate::state::AppState;
use crate::vault::{Slot, VaultError};
use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// An admin's OAuth setting for a server.
pub struct Settings {
    pub client_id: Option<String>,
    client_secret: Option<Zeroizing<String>>,
    pub scopes: Option<String>,
    pub authorization_server: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "(redacted)"),
            )
            .field("scopes", &self.scopes)
            .field("authorization_server", &self.authorization_server)
            .finish()
    }
}

fn http_url(raw: &str, what: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(raw.trim()).map_err(|_| format!("{what}: not a URL"))?;
    if !matches!(u.scheme(), "https" | "http") || u.host_str().is_none() {
        return Err(format!("{what}: an http(s) URL is required"));
    }
    if u.fragment().is_some() || !u.username().is_empty() {
        return Err(format!("{what}: no fragment or user name"));
    }
    Ok(u)
}

impl Settings {
    pub fn from_input(input: &crate::servers::CredentialInput) -> Result<Settings, String> {
        let client_id = input
            .client_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if client_id
            .as_ref()
            .is_some_and(|c| c.len() > 255 || c.chars().any(char::is_control))
        {
            return Err("client_id: at most 255 plain characters".into());
        }
        let secret = input.value.trim();
        if !secret.is_empty() && client_id.is_none() {
            return Err(
                "value (the client secret) goes with a client_id; leave both empty to register dynamically"
                    .into(),
            );
        }
        if secret.len() > 4096 {
            return Err("value: at most 4096 characters".into());
        }
        let scopes = input
            .scopes
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        if scopes.as_ref().is_some_and(|s| {
            s.len() > 1000 || s.chars().any(|c| c.is_control() || c == '"' || c == '\\')
        }) {
            return Err("scopes: space-separated scope names".into());
        }
        let authorization_server = match input.authorization_server.as_deref().map(str::trim) {
            Some(s) if !s.is_empty() => Some(
                http_url(s, "authorization_server")?
                    .as_str()
                    .trim_end_matches('/')
                    .to_owned(),
            ),
            _ => None,
        };
        Ok(Settings {
            client_id,
            client_secret: (!secret.is_empty()).then(|| Zeroizing::new(secret.to_owned())),
            scopes,
            authorization_server,
        })
    }
}

/// Where a server's OAuth client registration (and discovered endpoints) live in the vault.
pub fn client_slot(server_id: &str) -> Slot<'_> {
    Slot {
        table: "mcp_server",
        row: server_id,
        name: "oauth_client",
    }
}

/// What the gateway knows of an upstream's authorization server and its client there.
#[derive(Serialize, Deserialize)]
pub(crate) struct Registered {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    #[serde(default)]
    revocation_endpoint: Option<String>,
    /// The resource indicator: the upstream MCP server's canonical URL.
    resource: String,
    scopes: Vec<String>,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
    /// client_secret_basic, client_secret_post or none.
    auth_method: String,
    redirect_uri: String,
    /// Registered dynamically (RFC 7591) rather than configured.
    dynamic: bool,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(s) = &mut self.client_secret {
            s.zeroize();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The upstream's authorization server cannot be found or used (a configuration problem).
    #[error("{0}")]
    Discovery(String),
    /// The authorization server refused (invalid_grant and the like).
    #[error("the upstream's authorization server refused: {0}")]
    Rejected(String),
    /// It could not be reached.
    #[error("the upstream's authorization server cannot be reached: {0}")]
    Unreachable(String),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

fn client(reg: &Registered) -> Result<Client, OAuthError> {
    let bad = |what: &str| OAuthError::Discovery(format!("the upstream's {what} is not a URL"));
    let mut c = BasicClient::new(ClientId::new(reg.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(reg.authorization_endpoint.clone())
                .map_err(|_| bad("authorization endpoint"))?,
        )
        .set_token_uri(
            TokenUrl::new(reg.token_endpoint.clone()).map_err(|_| bad("token endpoint"))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(reg.redirect_uri.clone()).map_err(|_| bad("redirect URI"))?,
        );
    if let Some(s) = &reg.client_secret {
        c = c.set_client_secret(ClientSecret::new(s.clone()));
    }
    if reg.auth_method == "client_secret_post" {
        c = c.set_auth_type(AuthType::RequestBody);
    }
    Ok(c)
}

/// The redirect URI of a tenant's connections.
pub fn redirect_uri(state: &AppState, tenant_slug: &str) -> String {
    format!("{}/connected", state.urls.tenant(tenant_slug))
}

const JSON_LIMIT: usize = 256 * 1024;

async fn get_json(http: &reqwest::Client, url: &str) -> Option<serde_json::Value> {
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        http.get(url).header("accept", "application/json").send(),
    )
    .await
    .ok()?
    .ok()?;
    if !res.status().is_success() {
        return None;
    }
    let bytes = res.bytes().await.ok()?;
    if bytes.len() > JSON_LIMIT {
        return None;
    }
    serde_json::from_slice(&bytes).ok()
}

/// `resource_metadata="…"` of a `WWW-Authenticate: Bearer …` header.
fn resource_metadata(header: &str) -> Option<String> {
    let i = header.find("resource_metadata=")?;
    let rest = &header[i + "resource_metadata=".len()..];
    let v = match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?,
        None => rest.split([',', ' ']).next()?,
    };
    Some(v.to_owned())
}

fn same_origin_path_prefix(resource: &url::Url, server: &url::Url) -> bool {
    resource.origin() == server.origin() && server.path().starts_with(resource.path())
}

/// Finds the upstream's authorization server and what to ask it for.
async fn discover(
    http: &reqwest::Client,
    server_url: &str,
    settings: &Settings,
) -> Result<(serde_json::Value, String, Vec<String>), OAuthError> {
    let server = url::Url::parse(server_url)
        .map_err(|_| OAuthError::Discovery("the server's URL is not a URL".into()))?;
    let mut resource = server_url.to_owned();
    let mut advertised: Vec<String> = Vec::new();
    let issuer = match &settings.authorization_server {
        Some(i) => i.clone(),
        None => {
            // RFC 9728 §5: the upstream's own pointer first, then the well-known URIs.
            let mut candidates = Vec::new();
            let probe = tokio::time::timeout(
                std::time::Duration::from_secs(15),
                http.post(server_url)
                    .header("content-type", "application/json")
                    .header("accept", "application/json, text/event-stream")
                    .body(r#"{"jsonrpc":"2.0","id":0,"method":"ping"}"#)
                    .send(),
            )
            .await;
            if let Ok(Ok(res)) = probe {
                if let Some(m) = res
                    .headers()
                    .get_all(http::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(resource_metadata)
                {
                    candidates.push(m);
                }
            }
            let origin = server.origin().ascii_serialization();
            let path = server.path().trim_end_matches('/');
            if !path.is_empty() {
                candidates.push(format!(
                    "{origin}/.well-known/oauth-protected-resource{path}"
                ));
            }
            candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
            let mut found = None;
            for c in candidates {
                let Ok(u) = http_url(&c, "resource metadata") else {
                    continue;
                };
                if let Some(m) = get_json(http, u.as_str()).await {
                    if m.get("authorization_servers")
                        .and_then(|a| a.as_array())
                        .is_some_and(|a| !a.is_empty())
                    {
                        found = Some(m);
                        break;
                    }
                }
            }
            let prm = found.ok_or_else(|| {
                OAuthError::Discovery(
                    "the upstream publishes no protected resource metadata (RFC 9728) naming an authorization server; set authorization_server".into(),
                )
            })?;
            // The metadata must be about this server (RFC 9728 §3.3).
            if let Some(r) = prm.get("resource").and_then(|r| r.as_str()) {
                let ok = url::Url::parse(r).is_ok_and(|ru| same_origin_path_prefix(&ru, &server));
                if !ok {
                    return Err(OAuthError::Discovery(format!(
                        "the upstream's resource metadata names another resource ({r})"
                    )));
                }
                resource = r.to_owned();
            }
            advertised = prm
                .get("scopes_supported")
                .and_then(|s| s.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            prm["authorization_servers"][0]
                .as_str()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned()
        }
    };
    let iu = http_url(&issuer, "authorization server").map_err(OAuthError::Discovery)?;
    let origin = iu.origin().ascii_serialization();
    let path = iu.path().trim_end_matches('/');
    // RFC 8414 §3 (path-inserted), then OpenID discovery both ways.
    let candidates = [
        format!("{origin}/.well-known/oauth-authorization-server{path}"),
        format!("{origin}/.well-known/openid-configuration{path}"),
        format!("{issuer}/.well-known/openid-configuration"),
    ];
    let mut md = None;
    for c in candidates {
        if let Some(m) = get_json(http, &c).await {
            md = Some(m);
            break;
        }
    }
    let md = md.ok_or_else(|| {
        OAuthError::Discovery(format!(
            "the authorization server {issuer} publishes no metadata (RFC 8414)"
        ))
    })?;
    let same = md
        .get("issuer")
        .and_then(|i| i.as_str())
        .is_some_and(|i| i.trim_end_matches('/') == issuer);
    if !same {
        return Err(OAuthError::Discovery(format!(
            "the metadata of {issuer} names another issuer"
        )));
    }
    let s256 = md
        .get("code_challenge_methods_supported")
        .and_then(|m| m.as_array())
        .is_some_and(|m| m.iter().any(|x| x == "S256"));
    if !s256 {
        return Err(OAuthError::Discovery(format!(
            "the authorization server {issuer} does not support PKCE S256"
        )));
    }
    let scopes = match &settings.scopes {
        Some(s) => s.split_whitespace().map(str::to_owned).collect(),
        None => advertised,
    };
    Ok((md, resource, scopes))
}

/// Registers the gateway at the authorization server (RFC 7591).
async fn register(
    http: &reqwest::Client,
    md: &serde_json::Value,
    redirect: &str,
    tenant_name: &str,
) -> Result<(String, Option<String>, String), OAuthError> {
    let endpoint = md
        .get("registration_endpoint")
        .and_then(|e| e.as_str())
        .ok_or_else(|| {
            OAuthError::Discovery(
                "the upstream's authorization server offers no dynamic registration: configure a client_id"
                    .into(),
            )
        })?;
    let methods: Vec<&str> = md
        .get("token_endpoint_auth_methods_supported")
        .and_then(|m| m.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_else(|| vec!["client_secret_basic"]);
    let method = ["client_secret_basic", "client_secret_post", "none"]
        .into_iter()
        .find(|m| methods.contains(m))
        .ok_or_else(|| {
            OAuthError::Discovery(
                "the upstream's authorization server supports none of client_secret_basic, client_secret_post, none".into(),
            )
        })?;
    let body = serde_json::json!({
        "client_name": format!("Portcullis gateway ({tenant_name})"),
        "redirect_uris": [redirect],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
    });
    // No `scope` here: it is asked for at authorization (an authorization server may refuse
    // resource scopes as client metadata).
    let res = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        http.post(endpoint)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send(),
    )
    .await
    .map_err(|_| OAuthError::Unreachable("registration timed out".into()))?
    .map_err(|e| OAuthError::Unreachable(format!("registration: {}", e.without_url())))?;
    let status = res.status();
    let bytes = res
        .bytes()
        .await
        .map_err(|e| OAuthError::Unreachable(e.without_url().to_string()))?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    if !status.is_success() {
        return Err(OAuthError::Discovery(format!(
            "dynamic registration was refused ({status}: {})",
            v.get("error_description")
                .or_else(|| v.get("error"))
                .and_then(|e| e.as_str())
                .unwrap_or("no reason given")
        )));
    }
    let id = v.get("client_id").and_then(|c| c.as_str()).ok_or_else(|| {
        OAuthError::Discovery("dynamic registration returned no client_id".into())
    })?;
    let secret = v
        .get("client_secret")
        .and_then(|c| c.as_str())
        .map(str::to_owned);
    let method = v
        .get("token_endpoint_auth_method")
        .and_then(|m| m.as_str())
        .unwrap_or(method);
    Ok((id.to_owned(), secret, method.to_owned()))
}

async fn stored_registration(
    state: &AppState,
    tenant_id: &str,
    server_id: &str,
) -> Result<Option<Registered>, OAuthError> {
    let Some(plain) = state
        .vault
        .get(&state.store, tenant_id, client_slot(server_id))
        .await?
    else {
        return Ok(None);
    };
    serde_json::from_str::<Registered>(&plain)
        .map(Some)
        .map_err(|_| OAuthError::Vault(VaultError::Corrupt))
}

/// The gateway's client at the upstream's authorization server: the stored one, else
/// discovered and registered now.
async fn registered(
    state: &AppState,
    tenant: &crate::tenancy::Tenant,
    server: &PerUser,
    settings: &Settings,
) -> Result<Registered, OAuthError> {
    let redirect = redirect_uri(state, &tenant.slug);
    if let Some(r) = stored_registration(state, &tenant.tenant_id, &server.server_id).await? {
        if r.redirect_uri == redirect {
            return Ok(r);
        }
    }
    let http = state.gateway.client();
    let (md, resource, scopes) = discover(http, &server.url, settings).await?;
    let endpoint = |k: &str| -> Result<String, OAuthError> {
        md.get(k)
            .and_then(|e| e.as_str())
            .map(str::to_owned)
            .ok_or_else(|| {
                OAuthError::Discovery(format!("the authorization server's metadata has no {k}"))
            })
    };
    let (client_id, client_secret, auth_method, dynamic) = match &settings.client_id {
        Some(id) => (
            id.clone(),
            settings
                .client_secret
                .as_ref()
                .map(|s| s.as_str().to_owned()),
            if settings.client_secret.is_some() {
                "client_secret_basic".to_owned()
            } else {
                "none".to_owned()
            },
            false,
        ),
        None => {
            let (id, secret, method) = register(http, &md, &redirect, &tenant.name).await?;
            (id, secret, method, true)
        }
    };
    let reg = Registered {
        issuer: endpoint("issuer")?.trim_end_matches('/').to_owned(),
        authorization_endpoint: endpoint("authorization_endpoint")?,
        token_endpoint: endpoint("token_endpoint")?,
        revocation_endpoint: md
            .get("revocation_endpoint")
            .and_then(|e| e.as_str())
            .map(str::to_owned),
        resource,
        scopes,
        client_id,
        client_secret,
        auth_method,
        redirect_uri: redirect,
        dynamic,
    };
    let json = Zeroizing::new(serde_json::to_string(&reg).unwrap_or_default());
    state
        .vault
        .put(
            &state.store,
            &tenant.tenant_id,
            client_slot(&server.server_id),
            &json,
            "connections",
        )
        .await?;
    state
        .audit
        .note(
            crate::audit::Event::new(
                &tenant.tenant_id,
                crate::audit::Category::Admin,
                "upstream.oauth_client",
                "ok",
            )
            .target(server.slug.clone())
            .detail(serde_json::json!({
                "issuer": reg.issuer,
                "client_id": reg.client_id,
                "dynamic": reg.dynamic,
                "revocation": reg.revocation_endpoint.is_some(),
            })),
        )
        .await;
    Ok(reg)
}

/// A connection under way: the authorization URL to send the browser to, the state it comes
/// back with, and the PKCE verifier (kept sealed in the browser's session).
pub struct Started {
    pub url: String,
    pub state: String,
    pub verifier: Zeroizing<String>,
}

/// Starts a user's connection: discovery and registration if needed, then the authorization
/// URL with PKCE S256 and the resource indicator.
pub async fn start(
    state: &AppState,
    tenant: &crate::tenancy::Tenant,
    server: &PerUser,
    settings: &Settings,
) -> Result<Started, OAuthError> {
    let reg = registered(state, tenant, server, settings).await?;
    let c = client(&reg)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = c
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_extra_param("resource", reg.resource.clone());
    for s in &reg.scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    let (url, csrf) = req.url();
    Ok(Started {
        url: url.to_string(),
        state: csrf.secret().clone(),
        verifier: Zeroizing::new(verifier.secret().clone()),
    })
}

fn token_error<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
) -> OAuthError {
    match e {
        RequestTokenError::ServerResponse(r) => OAuthError::Rejected(r.error().to_string()),
        RequestTokenError::Request(_) => OAuthError::Unreachable("the request failed".into()),
        RequestTokenError::Parse(_, _) => {
            OAuthError::Rejected("the token response could not be read".into())
        }
        RequestTokenError::Other(m) => OAuthError::Unreachable(m),
    }
}

fn stored_from(
    res: &oauth2::basic::BasicTokenResponse,
    old_refresh: Option<&str>,
) -> Result<Stored, OAuthError> {
    if *res.token_type() != BasicTokenType::Bearer {
        return Err(OAuthError::Rejected(
            "the upstream issued a token that is not a bearer token".into(),
        ));
    }
    let now = now_unix();
    Ok(Stored::Oauth {
        access_token: res.access_token().secret().clone(),
        refresh_token: res
            .refresh_token()
            .map(|r| r.secret().clone())
            .or_else(|| old_refresh.map(str::to_owned)),
        expires_at: res
            .expires_in()
            .map(|d| now + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4)),
        issued_at: now,
        scope: res
            .scopes()
            .map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
    })
}

/// Finishes a connection: checks the issuer (RFC 9207) and exchanges the code.
pub(crate) async fn finish(
    state: &AppState,
    tenant_id: &str,
    server_id: &str,
    code: &str,
    verifier: &str,
    iss: Option<&str>,
) -> Result<Stored, OAuthError> {
    let reg = stored_registration(state, tenant_id, server_id)
        .await?
        .ok_or_else(|| {
            OAuthError::Rejected(
                "the connection was started under another setting: start again".into(),
            )
        })?;
    if let Some(iss) = iss {
        if iss.trim_end_matches('/') != reg.issuer {
            return Err(OAuthError::Rejected(
                "the answer came from another authorization server".into(),
            ));
        }
    }
    let c = client(&reg)?;
    let res = c
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .add_extra_param("resource", reg.resource.clone())
        .request_async(state.gateway.client())
        .await
        .map_err(token_error)?;
    stored_from(&res, None)
}

/// A new access token for a refresh token (the same resource).
pub(crate) async fn refresh(
    state: &AppState,
    tenant_id: &str,
    server: &PerUser,
    refresh_token: &str,
) -> Result<Stored, OAuthError> {
    let reg = stored_registration(state, tenant_id, &server.server_id)
        .await?
        .ok_or_else(|| OAuthError::Rejected("the gateway's registration is gone".into()))?;
    let c = client(&reg)?;
    let rt = RefreshToken::new(refresh_token.to_owned());
    let res = c
        .exchange_refresh_token(&rt)
        .add_extra_param("resource", reg.resource.clone())
        .request_async(state.gateway.client())
        .await
        .map_err(|e| match token_error(e) {
            OAuthError::Rejected(r)
                if r != "invalid_grant" && r != "invalid_client" && r != "unauthorized_client" =>
            {
                OAuthError::Unreachable(r)
            }
            other => other,
        })?;
    stored_from(&res, Some(refresh_token))
}

/// Asks the upstream to revoke a connection's tokens (RFC 7009): the refresh token (which
/// ends the grant), then the access token. `revoked`, `failed` or `not_supported`.
pub(crate) async fn revoke(
    state: &AppState,
    tenant_id: &str,
    server_id: &str,
    stored: &Stored,
) -> String {
    let Stored::Oauth {
        access_token,
        refresh_token,
        ..
    } = stored
    else {
        return "none".into();
    };
    let reg = match stored_registration(state, tenant_id, server_id).await {
        Ok(Some(r)) => r,
        _ => return "not_supported".into(),
    };
    let Some(endpoint) = reg.revocation_endpoint.clone() else {
        return "not_supported".into();
    };
    // By hand (a form POST with the client's authentication): the oauth2 crate sends
    // revocations to https endpoints only, and an upstream on a private network may be plain
    // http like its token endpoint.
    let http = state.gateway.client();
    let mut tokens: Vec<(&str, &str)> = Vec::new();
    if let Some(r) = refresh_token {
        tokens.push(("refresh_token", r.as_str()));
    }
    tokens.push(("access_token", access_token.as_str()));
    let form = |k: &str| -> String { url::form_urlencoded::byte_serialize(k.as_bytes()).collect() };
    let mut any = false;
    for (i, (hint, token)) in tokens.into_iter().enumerate() {
        let mut body = format!("token={}&token_type_hint={hint}", form(token));
        let mut req = http
            .post(&endpoint)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .timeout(std::time::Duration::from_secs(15));
        match (reg.auth_method.as_str(), &reg.client_secret) {
            ("client_secret_basic", Some(secret)) => {
                use base64::Engine as _;
                let pair = Zeroizing::new(format!("{}:{}", form(&reg.client_id), form(secret)));
                let b64 = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()),
                );
                req = req.header("authorization", format!("Basic {}", b64.as_str()));
            }
            ("client_secret_post", Some(secret)) => {
                body.push_str(&format!(
                    "&client_id={}&client_secret={}",
                    form(&reg.client_id),
                    form(secret)
                ));
            }
            _ => body.push_str(&format!("&client_id={}", form(&reg.client_id))),
        }
        let body = Zeroizing::new(body);
        match req.body(body.as_str().to_owned()).send().await {
            Ok(res) if res.status().is_success() => any = true,
            // An authorization server that cannot revoke self-contained (JWT) access tokens
            // says so (unsupported_token_type); revoking the refresh token ended the grant.
            Ok(res) if i > 0 && any => {
                tracing::debug!(status = %res.status(), "the upstream did not revoke the access token");
            }
            Ok(res) => {
                tracing::warn!(status = %res.status(), "the upstream's revocation endpoint refused");
            }
            Err(e) => {
                tracing::warn!(error = %e.without_url(), "the upstream's revocation endpoint cannot be reached");
            }
        }
    }
    if any {
        "revoked".into()
    } else {
        "failed".into()
    }
}
