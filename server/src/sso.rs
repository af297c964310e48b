//! SSO per tenant: OpenID Connect authorization code flow with PKCE, nonce and state, through
//! the `openidconnect` crate (discovery, JWKS, ID token validation).
//!
//! - The tenant admin sets the IdP ([`IdpSettings`]): issuer, client id, client secret (sealed
//!   under the master key, never returned), scopes, the claim that carries groups, allowed email
//!   domains.
//! - `GET /auth/login` starts a sign-in: a fresh state, nonce and PKCE verifier are kept in the
//!   browser session (the verifier sealed), and the browser goes to the IdP.
//! - `GET /auth/callback` checks the state, exchanges the code with the verifier, validates the
//!   ID token (signature against the IdP's JWKS, issuer, audience, expiry, nonce), creates the
//!   user on first sign-in, replaces their IdP groups with the claim's, and signs them in.
//!   Anything wrong ends the attempt with a reason and changes nothing.
//! - Discovery documents (with their JWKS) are cached per tenant for ten minutes, and fetched
//!   again at once when a token's key is unknown (the IdP rotated its keys).

use crate::auth::{self, SessionAuth};
use crate::state::AppState;
use crate::store::{Store, StoreError};
use crate::tenancy::{Host, Tenant};
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tower_sessions::Session;

/// The tenant setting that holds the IdP settings (JSON of [`StoredIdp`]).
pub const SETTING: &str = "oidc";
const SESSION_PENDING: &str = "sso_pending";
/// How long a started sign-in may take.
const PENDING_TTL: Duration = Duration::from_secs(600);
const DISCOVERY_TTL: Duration = Duration::from_secs(600);

/// The IdP settings as admins write and read them (the secret is write-only).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdpSettings {
    pub issuer: String,
    pub client_id: String,
    /// Write-only; omitted or empty on an update keeps the stored secret.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Email domains allowed to sign in (empty: any).
    #[serde(default)]
    pub allowed_domains: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// What is stored: the settings and the sealed secret.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct StoredIdp {
    issuer: String,
    client_id: String,
    client_secret_sealed: Option<String>,
    scopes: Vec<String>,
    groups_claim: String,
    allowed_domains: Vec<String>,
}

/// The settings as the API shows them.
#[derive(Clone, Debug, Serialize)]
pub struct IdpView {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_set: bool,
    pub scopes: Vec<String>,
    pub groups_claim: String,
    pub allowed_domains: Vec<String>,
    /// Where the IdP must send users back (register it at the IdP).
    pub redirect_uri: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SsoError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How earlier releases sealed the client secret (read once by `vault::migrate_legacy`).
pub(crate) fn seal_context(tenant_id: &str) -> String {
    format!("tenant/{tenant_id}/oidc-client-secret")
}

/// `client_secret_sealed` when the secret is in the vault.
pub(crate) const IN_VAULT: &str = "vault";

/// Where the IdP client secret lives in the vault.
pub(crate) fn secret_slot(tenant_id: &str) -> crate::vault::Slot<'_> {
    crate::vault::Slot {
        table: "tenant_setting",
        row: tenant_id,
        name: "idp_client_secret",
    }
}

pub fn redirect_uri(state: &AppState, tenant_slug: &str) -> String {
    format!("{}/auth/callback", state.urls.tenant(tenant_slug))
}

fn view(state: &AppState, slug: &str, s: &StoredIdp) -> IdpView {
    IdpView {
        issuer: s.issuer.clone(),
        client_id: s.client_id.clone(),
        client_secret_set: s.client_secret_sealed.is_some(),
        scopes: s.scopes.clone(),
        groups_claim: s.groups_claim.clone(),
        allowed_domains: s.allowed_domains.clone(),
        redirect_uri: redirect_uri(state, slug),
    }
}

async fn stored(store: &Store, tenant_id: &str) -> Result<Option<StoredIdp>, StoreError> {
    Ok(store
        .tenant_setting(tenant_id, SETTING)
        .await?
        .and_then(|v| serde_json::from_str(&v).ok()))
}

pub async fn settings(state: &AppState, tenant: &Tenant) -> Result<Option<IdpView>, SsoError> {
    Ok(stored(&state.store, &tenant.tenant_id)
        .await?
        .map(|s| view(state, &tenant.slug, &s)))
}

/// An issuer URL: https, or http on a loopback host (a local IdP in development and tests).
fn check_issuer(raw: &str) -> Result<String, SsoError> {
    let url = url::Url::parse(raw.trim())
        .map_err(|e| SsoError::Invalid(format!("issuer is not a URL: {e}")))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
        return Err(SsoError::Invalid(
            "issuer must be an https URL (http only on localhost)".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(SsoError::Invalid(
            "issuer must not carry credentials or a query".into(),
        ));
    }
    Ok(raw.trim().trim_end_matches('/').to_owned())
}

/// Checks, tries discovery against the IdP, and stores the settings (the secret sealed).
/// Nothing is stored when anything fails.
pub async fn save(
    state: &AppState,
    tenant: &Tenant,
    new: IdpSettings,
) -> Result<IdpView, SsoError> {
    let issuer = check_issuer(&new.issuer)?;
    let client_id = new.client_id.trim().to_owned();
    if client_id.is_empty() || client_id.len() > 512 {
        return Err(SsoError::Invalid(
            "client_id must be 1 to 512 characters".into(),
        ));
    }
    let mut scopes: Vec<String> = new
        .scopes
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if scopes.iter().any(|s| {
        s.len() > 128
            || !s
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    }) {
        return Err(SsoError::Invalid("scopes must be plain words".into()));
    }
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let groups_claim = new.groups_claim.trim().to_owned();
    if groups_claim.is_empty() || groups_claim.len() > 128 {
        return Err(SsoError::Invalid(
            "groups_claim must be 1 to 128 characters".into(),
        ));
    }
    let mut allowed_domains = Vec::new();
    for d in &new.allowed_domains {
        let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
        if d.is_empty() {
            continue;
        }
        if !d.contains('.') || d.contains(['@', '/', ' ']) {
            return Err(SsoError::Invalid(format!("{d:?} is not an email domain")));
        }
        allowed_domains.push(d);
    }
    let previous = stored(&state.store, &tenant.tenant_id).await?;
    // A new secret is stored only once everything else checked out (bad input changes nothing).
    let new_secret = match new.client_secret.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => {
            if s.len() > 4096 {
                return Err(SsoError::Invalid("client_secret is too long".into()));
            }
            Some(zeroize::Zeroizing::new(s.to_owned()))
        }
        _ => None,
    };
    let client_secret_sealed = match &new_secret {
        Some(_) => Some(IN_VAULT.to_owned()),
        None => previous.and_then(|p| p.client_secret_sealed),
    };
    // The IdP must answer discovery now: a typo is caught here, not at the first sign-in.
    let issuer_url =
        IssuerUrl::new(issuer.clone()).map_err(|e| SsoError::Invalid(format!("issuer: {e}")))?;
    CoreProviderMetadata::discover_async(issuer_url, state.gateway.client())
        .await
        .map_err(|e| {
            SsoError::Invalid(format!(
                "the IdP's discovery document at {issuer}/.well-known/openid-configuration could not be read: {}",
                error_chain(&e)
            ))
        })?;
    let s = StoredIdp {
        issuer,
        client_id,
        client_secret_sealed,
        scopes,
        groups_claim,
        allowed_domains,
    };
    let json = serde_json::to_string(&s).map_err(|e| SsoError::Invalid(e.to_string()))?;
    if let Some(secret) = &new_secret {
        state
            .vault
            .put(
                &state.store,
                &tenant.tenant_id,
                secret_slot(&tenant.tenant_id),
                secret,
                "identity",
            )
            .await
            .map_err(|e| match e {
                crate::vault::VaultError::Store(s) => SsoError::Store(s),
                other => SsoError::Invalid(format!("the secret could not be stored: {other}")),
            })?;
    }
    state
        .store
        .set_tenant_setting(&tenant.tenant_id, SETTING, &json)
        .await?;
    state.sso.forget(&tenant.tenant_id);
    tracing::info!(audit = true, tenant.id = %tenant.tenant_id, issuer = %s.issuer, "SSO settings saved");
    Ok(view(state, &tenant.slug, &s))
}

/// Turns SSO off for the tenant (the bootstrap admin token still works: break-glass).
pub async fn disable(state: &AppState, tenant: &Tenant) -> Result<(), SsoError> {
    state
        .store
        .delete_tenant_setting(&tenant.tenant_id, SETTING)
        .await?;
    if let Err(e) = state
        .vault
        .delete(
            &state.store,
            &tenant.tenant_id,
            secret_slot(&tenant.tenant_id),
            "identity",
        )
        .await
    {
        tracing::error!(tenant.id = %tenant.tenant_id, error = %e, "the IdP client secret could not be deleted from the vault");
    }
    state.sso.forget(&tenant.tenant_id);
    tracing::info!(audit = true, tenant.id = %tenant.tenant_id, "SSO turned off");
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Discovery documents per tenant, with when they were fetched.
#[derive(Default)]
pub struct SsoCache(Mutex<HashMap<String, (String, Instant, CoreProviderMetadata)>>);

impl std::fmt::Debug for SsoCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SsoCache")
    }
}

impl SsoCache {
    fn forget(&self, tenant_id: &str) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(tenant_id);
        }
    }

    async fn metadata(
        &self,
        tenant_id: &str,
        issuer: &str,
        http: &reqwest::Client,
        fresh: bool,
    ) -> Result<CoreProviderMetadata, String> {
        if !fresh {
            if let Ok(m) = self.0.lock() {
                if let Some((iss, at, md)) = m.get(tenant_id) {
                    if iss == issuer && at.elapsed() < DISCOVERY_TTL {
                        return Ok(md.clone());
                    }
                }
            }
        }
        let url = IssuerUrl::new(issuer.to_owned()).map_err(|e| e.to_string())?;
        let md = CoreProviderMetadata::discover_async(url, http)
            .await
            .map_err(|e| error_chain(&e))?;
        if let Ok(mut m) = self.0.lock() {
            m.insert(
                tenant_id.to_owned(),
                (issuer.to_owned(), Instant::now(), md.clone()),
            );
        }
        Ok(md)
    }
}

/// A sign-in under way, kept in the browser's session.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    /// The PKCE verifier, sealed under the master key.
    verifier: String,
    return_to: String,
    started_unix: u64,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", axum::routing::post(logout))
}

/// A plain page for a refused or impossible sign-in (no secrets, no IdP error details beyond
/// the code).
fn problem(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed</title></head>\
         <body><main><h1>Sign-in failed</h1><p id=\"sso-error\">{}</p><p><a href=\"/auth/login\">Try again</a> · <a href=\"/\">Home</a></p></main></body></html>",
        html_escape(message)
    );
    (status, Html(body)).into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A safe place to go after sign-in: a path on this host.
fn safe_return(raw: Option<&str>) -> String {
    match raw {
        Some(p)
            if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') && p.len() < 512 =>
        {
            p.to_owned()
        }
        _ => "/".into(),
    }
}

struct Configured {
    tenant: Arc<Tenant>,
    idp: StoredIdp,
    client_secret: Option<String>,
}

async fn configured(state: &AppState, host: Option<&Host>) -> Result<Configured, Response> {
    let Some(Host::Tenant(tenant)) = host.cloned() else {
        return Err(crate::tenancy::not_found());
    };
    let idp = match stored(&state.store, &tenant.tenant_id).await {
        Ok(Some(i)) => i,
        Ok(None) => {
            return Err(problem(
                StatusCode::NOT_FOUND,
                "single sign-on is not set up for this organisation; ask your administrator",
            ))
        }
        Err(e) => {
            tracing::error!(error = %e, "reading SSO settings failed");
            return Err(problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "try again shortly",
            ));
        }
    };
    let client_secret = match &idp.client_secret_sealed {
        Some(marker) if marker == IN_VAULT => match state
            .vault
            .get(
                &state.store,
                &tenant.tenant_id,
                secret_slot(&tenant.tenant_id),
            )
            .await
        {
            Ok(Some(s)) => Some(s.to_string()),
            Ok(None) | Err(_) => {
                tracing::error!(tenant.id = %tenant.tenant_id, "the IdP client secret cannot be read from the vault");
                return Err(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "single sign-on is misconfigured; ask your administrator",
                ));
            }
        },
        Some(sealed) => match state.keys.open(&seal_context(&tenant.tenant_id), sealed) {
            Some(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            None => {
                tracing::error!(tenant.id = %tenant.tenant_id, "the IdP client secret does not decrypt (wrong master key?)");
                return Err(problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "single sign-on is misconfigured; ask your administrator",
                ));
            }
        },
        None => None,
    };
    Ok(Configured {
        tenant,
        idp,
        client_secret,
    })
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    session: Session,
    host: Option<axum::Extension<Host>>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let c = match configured(&state, host.as_ref().map(|h| &h.0)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let md = match state
        .sso
        .metadata(
            &c.tenant.tenant_id,
            &c.idp.issuer,
            state.gateway.client(),
            false,
        )
        .await
    {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(tenant.id = %c.tenant.tenant_id, error = %e, "IdP discovery failed");
            return problem(
                StatusCode::BAD_GATEWAY,
                "the identity provider cannot be reached",
            );
        }
    };
    let Ok(redirect) = RedirectUrl::new(redirect_uri(&state, &c.tenant.slug)) else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "bad redirect URL");
    };
    let client = CoreClient::from_provider_metadata(
        md,
        ClientId::new(c.idp.client_id.clone()),
        c.client_secret.map(ClientSecret::new),
    )
    .set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client.authorize_url(
        CoreAuthenticationFlow::AuthorizationCode,
        CsrfToken::new_random,
        Nonce::new_random,
    );
    for s in c.idp.scopes.iter().filter(|s| *s != "openid") {
        req = req.add_scope(Scope::new(s.clone()));
    }
    let (url, csrf, nonce) = req.set_pkce_challenge(challenge).url();
    let pending = Pending {
        state: csrf.secret().clone(),
        nonce: nonce.secret().clone(),
        verifier: state.keys.seal(
            &format!("sso-pkce/{}", c.tenant.tenant_id),
            verifier.secret().as_bytes(),
        ),
        return_to: safe_return(q.return_to.as_deref()),
        started_unix: now_unix(),
    };
    if let Err(e) = session.insert(SESSION_PENDING, &pending).await {
        tracing::error!(error = %e, "storing the pending sign-in failed");
        return problem(StatusCode::SERVICE_UNAVAILABLE, "try again shortly");
    }
    Redirect::to(url.as_str()).into_response()
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn refuse(state: &AppState, tenant: &Tenant, why: &str) -> Response {
    tracing::warn!(audit = true, tenant.id = %tenant.tenant_id, reason = why, "SSO sign-in refused");
    let e = crate::audit::Event::new(
        &tenant.tenant_id,
        crate::audit::Category::Security,
        "sso.sign_in",
        "refused",
    )
    .detail(serde_json::json!({ "reason": why }));
    state.audit.note(e).await;
    problem(StatusCode::BAD_REQUEST, why)
}

async fn callback(
    State(state): State<AppState>,
    session: Session,
    host: Option<axum::Extension<Host>>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let c = match configured(&state, host.as_ref().map(|h| &h.0)).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let tenant = c.tenant.clone();
    // The pending sign-in is used once, whatever happens next.
    let pending: Option<Pending> = session.remove(SESSION_PENDING).await.ok().flatten();
    let Some(pending) = pending else {
        return refuse(
            &state,
            &tenant,
            "no sign-in was started in this browser (or it was already used)",
        )
        .await;
    };
    if now_unix().saturating_sub(pending.started_unix) > PENDING_TTL.as_secs() {
        return refuse(&state, &tenant, "the sign-in took too long; start again").await;
    }
    let state_ok = q
        .state
        .as_deref()
        .is_some_and(|s| bool::from(s.as_bytes().ct_eq(pending.state.as_bytes())));
    if !state_ok {
        return refuse(
            &state,
            &tenant,
            "the sign-in response does not match this browser's sign-in (state)",
        )
        .await;
    }
    if let Some(e) = q.error.as_deref() {
        let e: String = e
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return refuse(
            &state,
            &tenant,
            &format!("the identity provider refused the sign-in ({e})"),
        )
        .await;
    }
    let Some(code) = q.code else {
        return refuse(&state, &tenant, "the identity provider sent no code").await;
    };
    let Some(verifier) = state
        .keys
        .open(&format!("sso-pkce/{}", tenant.tenant_id), &pending.verifier)
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return refuse(&state, &tenant, "the sign-in state is damaged; start again").await;
    };
    let http = state.gateway.client();
    let md = match state
        .sso
        .metadata(&tenant.tenant_id, &c.idp.issuer, http, false)
        .await
    {
        Ok(m) => m,
        Err(_) => {
            return problem(
                StatusCode::BAD_GATEWAY,
                "the identity provider cannot be reached",
            )
        }
    };
    let Ok(redirect) = RedirectUrl::new(redirect_uri(&state, &tenant.slug)) else {
        return problem(StatusCode::INTERNAL_SERVER_ERROR, "bad redirect URL");
    };
    let build = |md: CoreProviderMetadata| {
        CoreClient::from_provider_metadata(
            md,
            ClientId::new(c.idp.client_id.clone()),
            c.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect.clone())
    };
    let client = build(md);
    let exchange = match client.exchange_code(AuthorizationCode::new(code)) {
        Ok(r) => r,
        Err(_) => {
            return refuse(
                &state,
                &tenant,
                "the identity provider has no token endpoint",
            )
            .await
        }
    };
    let token = match exchange
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(http)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(tenant.id = %tenant.tenant_id, error = %error_chain(&e), "code exchange failed");
            return refuse(
                &state,
                &tenant,
                "the sign-in code was refused by the identity provider (expired or already used)",
            )
            .await;
        }
    };
    let Some(id_token) = token.id_token() else {
        return refuse(
            &state,
            &tenant,
            "the identity provider returned no ID token",
        )
        .await;
    };
    let nonce = Nonce::new(pending.nonce.clone());
    let verifier = client.id_token_verifier();
    let first = id_token.claims(&verifier, &nonce).cloned();
    let claims = match first {
        Ok(cl) => cl,
        Err(first) => {
            // An unknown signing key may mean the IdP rotated its keys: fetch JWKS once more.
            let Ok(md) = state
                .sso
                .metadata(&tenant.tenant_id, &c.idp.issuer, http, true)
                .await
            else {
                return refuse(&state, &tenant, "the ID token could not be checked").await;
            };
            let client = build(md);
            let verifier = client.id_token_verifier();
            let again = id_token.claims(&verifier, &nonce).cloned();
            match again {
                Ok(cl) => cl,
                Err(_) => {
                    tracing::warn!(tenant.id = %tenant.tenant_id, error = %first, "ID token refused");
                    return refuse(&state, &tenant, "the ID token is not valid for this sign-in (signature, issuer, audience, expiry or nonce)").await;
                }
            }
        }
    };
    let Some(email) = claims
        .email()
        .map(|e| e.as_str().trim().to_ascii_lowercase())
    else {
        return refuse(
            &state,
            &tenant,
            "the identity provider sent no email address (add the email scope)",
        )
        .await;
    };
    if claims.email_verified() == Some(false) {
        return refuse(
            &state,
            &tenant,
            "the email address is not verified at the identity provider",
        )
        .await;
    }
    let Ok(email_parsed) = crate::domain::Email::parse(&email) else {
        return refuse(&state, &tenant, "the email address is not valid").await;
    };
    if !c.idp.allowed_domains.is_empty() {
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if !c.idp.allowed_domains.iter().any(|d| d == domain) {
            return refuse(
                &state,
                &tenant,
                &format!("email domain {domain} is not allowed to sign in here"),
            )
            .await;
        }
    }
    // The groups claim: read from the (now verified) ID token's payload.
    let groups = groups_claim(&id_token.to_string(), &c.idp.groups_claim);
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().to_owned());
    let user = match state
        .store
        .sso_sign_in(&tenant.tenant_id, &email_parsed, name.as_deref(), &groups)
        .await
    {
        Ok(Some(u)) => u,
        Ok(None) => return refuse(&state, &tenant, "this account is deactivated").await,
        Err(e) => {
            tracing::error!(error = %e, "SSO sign-in could not be recorded");
            return problem(StatusCode::SERVICE_UNAVAILABLE, "try again shortly");
        }
    };
    if let Err(e) = state.refresh_snapshots().await {
        tracing::error!(error = %e, "refreshing snapshots after sign-in failed");
    }
    if let Err(e) = auth::begin_session(
        &session,
        &SessionAuth::Tenant {
            tenant_id: tenant.tenant_id.clone(),
            user_id: user.user_id.clone(),
            signed_in_at: crate::store::now_micros(),
        },
    )
    .await
    {
        tracing::error!(error = %e, "starting the session failed");
        return problem(StatusCode::SERVICE_UNAVAILABLE, "try again shortly");
    }
    tracing::info!(audit = true, tenant.id = %tenant.tenant_id, user.id = %user.user_id,
        groups = groups.len(), "signed in with SSO");
    let e = crate::audit::Event::new(
        &tenant.tenant_id,
        crate::audit::Category::Security,
        "sso.sign_in",
        "ok",
    )
    .by(&user.user_id, &user.email)
    .detail(serde_json::json!({ "groups": groups }));
    state.audit.note(e).await;
    Redirect::to(&pending.return_to).into_response()
}

/// The groups in a verified JWT's payload under `claim` (a list of strings, or one string).
fn groups_claim(jwt: &str, claim: &str) -> Vec<String> {
    use base64::Engine;
    let payload = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
    let mut out: Vec<String> = match payload.as_ref().and_then(|p| p.get(claim)) {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    };
    out.retain(|g| !g.is_empty() && g.len() <= 256);
    out.sort();
    out.dedup();
    out.truncate(1000);
    out
}

async fn logout(session: Session) -> Response {
    let _ = session.flush().await;
    Redirect::to("/").into_response()
}

/// Whether SSO is set up for a tenant (for the portal's sign-in button).
pub async fn enabled(store: &Store, tenant_id: &str) -> bool {
    matches!(store.tenant_setting(tenant_id, SETTING).await, Ok(Some(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_return(Some("/admin")), "/admin");
        for bad in ["//evil.test", "https://evil.test", "/\\evil", ""] {
            assert_eq!(safe_return(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_return(None), "/");
    }

    #[test]
    fn issuers_are_https_except_on_loopback() {
        assert!(check_issuer("https://login.example.com/oauth2/default/").is_ok());
        assert!(check_issuer("http://127.0.0.1:4000").is_ok());
        assert!(check_issuer("http://idp.example.com").is_err());
        assert!(check_issuer("https://u:p@idp.example.com").is_err());
        assert!(check_issuer("not a url").is_err());
    }

    #[test]
    fn the_groups_claim_is_read_as_a_list() {
        use base64::Engine;
        let enc = |v: serde_json::Value| {
            format!(
                "h.{}.s",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
            )
        };
        let jwt = enc(serde_json::json!({"groups": ["sales", "eng", "sales"], "roles": "admin"}));
        assert_eq!(groups_claim(&jwt, "groups"), ["eng", "sales"]);
        assert_eq!(groups_claim(&jwt, "roles"), ["admin"]);
        assert!(groups_claim(&jwt, "missing").is_empty());
        assert!(groups_claim("garbage", "groups").is_empty());
    }
}
