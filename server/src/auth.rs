//! Who is calling: bearer tokens for `/api/v1` (tenant admin tokens on tenant hosts, the
//! platform token on the platform host) and the browser session for the consoles.
//!
//! A token is only ever compared by its SHA-256; a wrong token, a token of another tenant, a
//! revoked token and a deactivated owner all look the same to the caller (401).

use crate::domain::{TokenHash, TokenKind};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Store, UserRow};
use crate::tenancy::{Host, Tenant};
use axum::extract::FromRequestParts;
use http::request::Parts;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

pub const PLATFORM_TOKEN_SETTING: &str = "platform_admin_token_hash";

/// Session keys.
pub const SESSION_AUTH: &str = "auth";
pub const SESSION_CSRF: &str = "csrf";
pub const SESSION_FLASH: &str = "flash";

/// Who a browser session is signed in as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum SessionAuth {
    Tenant {
        tenant_id: String,
        user_id: String,
        /// When (µs): a session older than its user's last revocation is over. Sessions made
        /// before this field existed read as 0 (revoked by any revocation).
        #[serde(default)]
        signed_in_at: i64,
    },
    /// Signed in with the platform token whose id (a prefix of its stored hash) this names:
    /// rotating the token ends every platform session at once.
    Platform { token_id: String },
}

/// A non-secret identifier of a stored platform token hash.
pub fn platform_token_id(stored_hash: &str) -> String {
    stored_hash.chars().take(16).collect()
}

/// The id of the current platform token, if one exists.
pub async fn current_platform_token_id(
    store: &Store,
) -> Result<Option<String>, crate::store::StoreError> {
    Ok(store
        .platform_setting(PLATFORM_TOKEN_SETTING)
        .await?
        .map(|h| platform_token_id(&h)))
}

/// Replaces the platform token: the old one stops working, and so do the sessions signed in
/// with it. Returns the new token, to be shown once.
pub async fn rotate_platform_token(
    store: &Store,
) -> Result<secrecy::SecretString, crate::store::StoreError> {
    let token = crate::domain::NewToken::generate(TokenKind::Platform);
    store
        .set_platform_setting(PLATFORM_TOKEN_SETTING, token.hash.as_str())
        .await?;
    tracing::info!("platform admin token rotated");
    Ok(token.plaintext)
}

fn bearer(parts: &Parts) -> Option<&str> {
    let value = parts
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub fn host(parts: &Parts) -> Option<&Host> {
    parts.extensions.get::<Host>()
}

pub fn tenant_host(parts: &Parts) -> Option<Arc<Tenant>> {
    match host(parts)? {
        Host::Tenant(t) => Some(t.clone()),
        Host::Platform => None,
    }
}

/// A tenant administrator authenticated by an admin token on their tenant's host.
pub struct TenantAdmin {
    pub tenant: Arc<Tenant>,
    pub user: UserRow,
}

impl FromRequestParts<AppState> for TenantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let tenant = tenant_host(parts).ok_or(ApiError::NotFound)?;
        let hash = bearer(parts)
            .and_then(|t| TokenHash::of_presented(TokenKind::TenantAdmin, t))
            .ok_or(ApiError::Unauthorized)?;
        let user = state
            .store
            .admin_by_token(&tenant.tenant_id, &hash)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        // Admin tokens are the break-glass path beside SSO: every use is on the record.
        tracing::info!(audit = true, tenant.id = %tenant.tenant_id, user.id = %user.user_id,
            method = %parts.method, path = %parts.uri.path(), "admin token used");
        let e = crate::audit::Event::new(
            &tenant.tenant_id,
            crate::audit::Category::Security,
            "admin_token.use",
            "ok",
        )
        .by(&user.user_id, &user.email)
        .detail(serde_json::json!({ "method": parts.method.as_str(), "path": parts.uri.path() }));
        state.audit.note(e).await;
        Ok(Self { tenant, user })
    }
}

/// The platform operator, authenticated by the platform token on the platform host.
pub struct PlatformAdmin;

impl FromRequestParts<AppState> for PlatformAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !matches!(host(parts), Some(Host::Platform)) {
            return Err(ApiError::NotFound);
        }
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        if platform_token_valid(&state.store, token).await? {
            Ok(PlatformAdmin)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Checks a presented platform token against the stored hash, in constant time.
pub async fn platform_token_valid(
    store: &Store,
    token: &str,
) -> Result<bool, crate::store::StoreError> {
    let Some(presented) = TokenHash::of_presented(TokenKind::Platform, token) else {
        return Ok(false);
    };
    let Some(stored) = store.platform_setting(PLATFORM_TOKEN_SETTING).await? else {
        return Ok(false);
    };
    Ok(bool::from(
        presented.as_str().as_bytes().ct_eq(stored.as_bytes()),
    ))
}

/// Random 256-bit token for CSRF protection, base64url.
fn random_token() -> String {
    use base64::Engine;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The session's anti-CSRF token, created on first use (synchronizer-token pattern: each
/// state-changing form carries it and the server compares it with the session's copy).
pub async fn csrf_token(session: &Session) -> Result<String, tower_sessions::session::Error> {
    if let Some(t) = session.get::<String>(SESSION_CSRF).await? {
        return Ok(t);
    }
    let t = random_token();
    session.insert(SESSION_CSRF, &t).await?;
    Ok(t)
}

/// Whether `presented` is this session's anti-CSRF token (constant time).
pub async fn csrf_ok(session: &Session, presented: &str) -> bool {
    match session.get::<String>(SESSION_CSRF).await {
        Ok(Some(expected)) => bool::from(expected.as_bytes().ct_eq(presented.as_bytes())),
        _ => false,
    }
}

/// Starts a signed-in session: a new session id (no fixation), a new CSRF token.
pub async fn begin_session(
    session: &Session,
    auth: &SessionAuth,
) -> Result<(), tower_sessions::session::Error> {
    session.cycle_id().await?;
    session.insert(SESSION_AUTH, auth).await?;
    session.insert(SESSION_CSRF, random_token()).await?;
    Ok(())
}
