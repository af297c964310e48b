//! Users' own upstream accounts: a server whose credential mode is per-user takes each user's
//! own secret — a static one the user sets in the portal (`user_bearer`, `user_header`), or an
//! OAuth connection the user makes in the portal (`oauth`, see [`oauth`]).
//!
//! - The secret lives only in the vault, slot (`upstream_connection`, `{server}/{user}`,
//!   `token`); the `upstream_connection` row says what may be listed (kind, scope, expiry).
//! - The gateway asks [`credential`] on every request to such a server: the user's secret is
//!   read from the vault (no cache: a disconnection holds on every replica at once), an OAuth
//!   access token near its expiry is refreshed first, and the result is injected upstream as a
//!   sensitive header. Clients only ever hold gateway tokens.
//! - A user without a connection gets a clear refusal with the URL to connect
//!   ([`connect_url`]; URL-mode elicitation for clients that declared it).
//! - [`disconnect`] deletes the secret first (the gateway stops using it at once), then asks
//!   the upstream's RFC 7009 revocation endpoint to revoke the tokens, records the outcome and
//!   tells the user by mail. Deprovisioning a user ends all their connections
//!   ([`deprovisioned`]).

pub mod oauth;
pub mod routes;

use crate::audit::{Category, Event};
use crate::state::AppState;
use crate::store::{now_micros, ConnectionRow, ServerRow};
use crate::tenancy::Tenant;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use zeroize::{Zeroize, Zeroizing};

/// The vault table of users' connection secrets.
pub const TABLE: &str = "upstream_connection";

/// The vault owner id of a user's secret for a server.
pub fn owner(server_id: &str, user_id: &str) -> String {
    format!("{server_id}/{user_id}")
}

fn slot(owner: &str) -> crate::vault::Slot<'_> {
    crate::vault::Slot {
        table: TABLE,
        row: owner,
        name: "token",
    }
}

/// How a server takes each user's own credential.
#[derive(Debug, Clone)]
pub enum Mode {
    /// A secret each user sets in the portal, sent as `Authorization: Bearer …` or as the value
    /// of `header`.
    Static { header: HeaderName, bearer: bool },
    /// Each user's OAuth connection.
    OAuth(Arc<oauth::Settings>),
}

impl Mode {
    /// The per-user mode an admin's credential setting names, `None` for a shared credential.
    pub fn from_input(input: &crate::servers::CredentialInput) -> Result<Option<Mode>, String> {
        match input.kind.as_str() {
            "user_bearer" => Ok(Some(Mode::Static {
                header: http::header::AUTHORIZATION,
                bearer: true,
            })),
            "user_header" => {
                let name = input.header.as_deref().unwrap_or_default().trim();
                let header = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| "header: a valid HTTP header name is required".to_owned())?;
                if crate::servers::reserved_header(header.as_str()) {
                    return Err(format!(
                        "header: {} is set by the gateway itself",
                        header.as_str()
                    ));
                }
                Ok(Some(Mode::Static {
                    header,
                    bearer: false,
                }))
            }
            "oauth" => oauth::Settings::from_input(input).map(|s| Some(Mode::OAuth(Arc::new(s)))),
            _ => Ok(None),
        }
    }

    /// `static` or `oauth`.
    pub fn kind(&self) -> &'static str {
        match self {
            Mode::Static { .. } => "static",
            Mode::OAuth(_) => "oauth",
        }
    }
}

/// A server with per-user credentials, as the gateway snapshot holds it.
#[derive(Debug, Clone)]
pub struct PerUser {
    pub server_id: String,
    pub slug: String,
    /// The upstream's URL (Streamable HTTP).
    pub url: String,
    pub mode: Mode,
}

/// A user's secret as the vault holds it (JSON).
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Stored {
    Static {
        value: String,
    },
    Oauth {
        access_token: String,
        #[serde(default)]
        refresh_token: Option<String>,
        /// Unix seconds; `None`: the upstream did not say.
        #[serde(default)]
        expires_at: Option<i64>,
        /// Unix seconds.
        issued_at: i64,
        #[serde(default)]
        scope: String,
    },
}

impl Drop for Stored {
    fn drop(&mut self) {
        match self {
            Stored::Static { value } => value.zeroize(),
            Stored::Oauth {
                access_token,
                refresh_token,
                ..
            } => {
                access_token.zeroize();
                if let Some(r) = refresh_token {
                    r.zeroize();
                }
            }
        }
    }
}

pub(crate) fn now_unix() -> i64 {
    now_micros() / 1_000_000
}

impl Stored {
    /// Whether an OAuth access token should be refreshed before use: within a fifth of its
    /// lifetime (at most a minute) of its expiry.
    fn stale(&self, now: i64) -> bool {
        match self {
            Stored::Oauth {
                expires_at: Some(exp),
                issued_at,
                ..
            } => {
                let skew = ((exp - issued_at) / 5).clamp(0, 60);
                now >= exp - skew
            }
            _ => false,
        }
    }

    fn expires_micros(&self) -> Option<i64> {
        match self {
            Stored::Oauth { expires_at, .. } => expires_at.map(|e| e * 1_000_000),
            Stored::Static { .. } => None,
        }
    }

    fn scope(&self) -> &str {
        match self {
            Stored::Oauth { scope, .. } => scope,
            Stored::Static { .. } => "",
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Stored::Static { .. } => "static",
            Stored::Oauth { .. } => "oauth",
        }
    }
}

/// Why a per-user server cannot be used by this user now.
#[derive(Debug)]
pub enum Unavailable {
    /// The user has not connected (or the connection ended): connect at the URL.
    NotConnected,
    /// The upstream refused the stored credential (refresh failed): connect again.
    Expired,
    /// The upstream's authorization server cannot be reached right now.
    Unreachable,
}

impl Unavailable {
    /// What the user is told (with the URL to connect at).
    pub fn message(&self, server: &str, url: &str) -> String {
        match self {
            Unavailable::NotConnected => format!(
                "{server} needs your own account: connect it at {url} and try again"
            ),
            Unavailable::Expired => format!(
                "your connection to {server} expired or was revoked upstream: connect again at {url}"
            ),
            Unavailable::Unreachable => format!(
                "the authorization server of {server} cannot be reached right now: try again shortly"
            ),
        }
    }

    /// The audit outcome.
    pub fn outcome(&self) -> &'static str {
        match self {
            Unavailable::NotConnected | Unavailable::Expired => "not_connected",
            Unavailable::Unreachable => "upstream_error",
        }
    }
}

/// Where a user connects their account for a server.
pub fn connect_url(state: &AppState, tenant_slug: &str, server_slug: &str) -> String {
    format!("{}/connect/{server_slug}", state.urls.tenant(tenant_slug))
}

pub(crate) async fn read(
    state: &AppState,
    tenant_id: &str,
    server_id: &str,
    user_id: &str,
) -> Result<Option<Stored>, crate::vault::VaultError> {
    let owner = owner(server_id, user_id);
    let Some(plain) = state
        .vault
        .get(&state.store, tenant_id, slot(&owner))
        .await?
    else {
        return Ok(None);
    };
    serde_json::from_str::<Stored>(&plain)
        .map(Some)
        .map_err(|_| crate::vault::VaultError::Corrupt)
}

pub(crate) async fn write(
    state: &AppState,
    tenant_id: &str,
    server_id: &str,
    user_id: &str,
    stored: &Stored,
) -> Result<(), crate::vault::VaultError> {
    let owner = owner(server_id, user_id);
    let json = Zeroizing::new(serde_json::to_string(stored).unwrap_or_default());
    state
        .vault
        .put(&state.store, tenant_id, slot(&owner), &json, "connections")
        .await?;
    state
        .store
        .put_connection(
            tenant_id,
            server_id,
            user_id,
            stored.kind(),
            stored.scope(),
            stored.expires_micros(),
        )
        .await?;
    Ok(())
}

/// Refreshes are one at a time per (tenant, server, user) on a replica.
fn refresh_lock(key: String) -> Arc<tokio::sync::Mutex<()>> {
    static LOCKS: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    > = std::sync::OnceLock::new();
    let mut m = crate::gateway::lock(LOCKS.get_or_init(Default::default));
    if m.len() > 10_000 {
        m.retain(|_, l| Arc::strong_count(l) > 1);
    }
    m.entry(key).or_default().clone()
}

/// The header the gateway injects for this user's request to a per-user server.
pub async fn credential(
    state: &AppState,
    tenant_id: &str,
    server: &PerUser,
    user_id: &str,
    email: &str,
) -> Result<crate::gateway::Credential, Unavailable> {
    let stored = match read(state, tenant_id, &server.server_id, user_id).await {
        Ok(Some(s)) => s,
        Ok(None) => return Err(Unavailable::NotConnected),
        Err(e) => {
            tracing::error!(tenant.id = %tenant_id, server.slug = %server.slug, error = %e,
                "a user's upstream credential cannot be read from the vault");
            return Err(Unavailable::NotConnected);
        }
    };
    let (header, value) = match (&server.mode, &stored) {
        (Mode::Static { header, bearer }, Stored::Static { value }) => (
            header.clone(),
            if *bearer {
                Zeroizing::new(format!("Bearer {value}"))
            } else {
                Zeroizing::new(value.clone())
            },
        ),
        (Mode::OAuth(_), Stored::Oauth { .. }) => {
            let token = if stored.stale(now_unix()) {
                refresh(state, tenant_id, server, user_id, email).await?
            } else {
                match &stored {
                    Stored::Oauth { access_token, .. } => Zeroizing::new(access_token.clone()),
                    Stored::Static { .. } => return Err(Unavailable::NotConnected),
                }
            };
            (
                http::header::AUTHORIZATION,
                Zeroizing::new(format!("Bearer {}", token.as_str())),
            )
        }
        // Set under another mode (the admin changed it): connect again.
        _ => return Err(Unavailable::NotConnected),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| Unavailable::NotConnected)?;
    value.set_sensitive(true);
    Ok(crate::gateway::Credential::new(header, value))
}

/// Refreshes the user's access token (one refresh at a time; a refresh another request or
/// replica made meanwhile is used as is). On `invalid_grant` the connection is ended.
async fn refresh(
    state: &AppState,
    tenant_id: &str,
    server: &PerUser,
    user_id: &str,
    email: &str,
) -> Result<Zeroizing<String>, Unavailable> {
    let lock = refresh_lock(format!("{tenant_id}/{}/{user_id}", server.server_id));
    let _held = lock.lock().await;
    let stored = match read(state, tenant_id, &server.server_id, user_id).await {
        Ok(Some(s)) => s,
        _ => return Err(Unavailable::NotConnected),
    };
    let Stored::Oauth {
        access_token,
        refresh_token,
        ..
    } = &stored
    else {
        return Err(Unavailable::NotConnected);
    };
    if !stored.stale(now_unix()) {
        return Ok(Zeroizing::new(access_token.clone()));
    }
    let Some(refresh_token) = refresh_token.clone().map(Zeroizing::new) else {
        end_expired(state, tenant_id, server, user_id, email, "no refresh token").await;
        return Err(Unavailable::Expired);
    };
    match oauth::refresh(state, tenant_id, server, &refresh_token).await {
        Ok(fresh) => {
            let token = match &fresh {
                Stored::Oauth { access_token, .. } => Zeroizing::new(access_token.clone()),
                Stored::Static { .. } => return Err(Unavailable::NotConnected),
            };
            if let Err(e) = write(state, tenant_id, &server.server_id, user_id, &fresh).await {
                tracing::error!(error = %e, "a refreshed upstream token could not be stored");
                return Err(Unavailable::Unreachable);
            }
            state
                .audit
                .note(
                    Event::new(
                        tenant_id,
                        Category::Security,
                        "upstream.token_refresh",
                        "ok",
                    )
                    .by(user_id, email)
                    .target(server.slug.clone()),
                )
                .await;
            Ok(token)
        }
        Err(oauth::OAuthError::Rejected(why)) => {
            end_expired(state, tenant_id, server, user_id, email, &why).await;
            Err(Unavailable::Expired)
        }
        Err(e) => {
            tracing::warn!(tenant.id = %tenant_id, server.slug = %server.slug, error = %e,
                "refreshing a user's upstream token failed");
            Err(Unavailable::Unreachable)
        }
    }
}

/// A connection the upstream no longer accepts: deleted and recorded.
async fn end_expired(
    state: &AppState,
    tenant_id: &str,
    server: &PerUser,
    user_id: &str,
    email: &str,
    why: &str,
) {
    if let Err(e) = state
        .store
        .delete_connection(tenant_id, &server.server_id, user_id)
        .await
    {
        tracing::error!(error = %e, "an expired upstream connection could not be deleted");
    }
    state
        .audit
        .note(
            Event::new(
                tenant_id,
                Category::Security,
                "upstream.token_refresh",
                "failed",
            )
            .by(user_id, email)
            .target(server.slug.clone())
            .detail(serde_json::json!({"reason": why, "connection": "ended"})),
        )
        .await;
    crate::mail::security(
        state.mailer.as_ref(),
        tenant_id,
        format!(
            "{email}'s connection to {} ended: the upstream no longer accepts it ({why})",
            server.slug
        ),
    );
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such server")]
    NotFound,
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The per-user mode of a server (from the vault), if it has one.
pub async fn mode_of(
    state: &AppState,
    tenant_id: &str,
    row: &ServerRow,
) -> Result<Option<Mode>, crate::vault::VaultError> {
    Ok(
        match crate::servers::credential(&state.vault, &state.store, tenant_id, row).await? {
            Some(crate::servers::Injected::PerUser(m)) => Some(m),
            _ => None,
        },
    )
}

/// A user sets their own static secret for a server (portal).
pub async fn set_static(
    state: &AppState,
    tenant: &Tenant,
    row: &ServerRow,
    user: &crate::store::UserRow,
    value: &str,
) -> Result<(), ConnectionError> {
    let Some(Mode::Static { .. }) = mode_of(state, &tenant.tenant_id, row).await? else {
        return Err(ConnectionError::Invalid(
            "this server does not take a secret of your own".into(),
        ));
    };
    let value = value.trim();
    if value.is_empty() || value.len() > 8192 {
        return Err(ConnectionError::Invalid(
            "the secret must be 1 to 8192 characters".into(),
        ));
    }
    if HeaderValue::from_str(value).is_err() || value.contains(char::is_control) {
        return Err(ConnectionError::Invalid(
            "the secret must be printable ASCII (it goes in an HTTP header)".into(),
        ));
    }
    let stored = Stored::Static {
        value: value.to_owned(),
    };
    write(
        state,
        &tenant.tenant_id,
        &row.server_id,
        &user.user_id,
        &stored,
    )
    .await?;
    connected(state, tenant, row, user, "static").await;
    Ok(())
}

/// Records and announces a new connection.
pub(crate) async fn connected(
    state: &AppState,
    tenant: &Tenant,
    row: &ServerRow,
    user: &crate::store::UserRow,
    kind: &str,
) {
    state
        .audit
        .note(
            Event::new(
                &tenant.tenant_id,
                Category::Security,
                "upstream.connect",
                "ok",
            )
            .by(&user.user_id, &user.email)
            .target(row.slug.clone())
            .detail(serde_json::json!({"kind": kind})),
        )
        .await;
    crate::mail::notify(
        state.mailer.as_ref(),
        &tenant.tenant_id,
        &user.email,
        &format!("Account connected: {}", row.name),
        format!(
            "Your account for {} was connected to Portcullis ({}). The gateway uses it for your \
             requests to this server; your MCP clients never see it.\n\nIf this was not you, \
             disconnect it in the portal and tell your administrator: {}\n",
            row.name,
            tenant.name,
            state.urls.tenant(&tenant.slug)
        ),
    );
}

/// Who ended a connection.
pub enum EndedBy<'a> {
    /// The user themselves (portal).
    User,
    /// An admin (console or API), by id and email.
    Admin(&'a str, &'a str),
    /// Deprovisioning (SCIM, deactivation, revoke-all).
    Deprovisioning(&'a str),
}

/// What ending a connection did.
#[derive(Debug, Clone, Serialize)]
pub struct Ended {
    pub server: String,
    pub kind: String,
    /// `revoked`, `failed`, `not_supported` (no revocation endpoint), or `none` (a static
    /// secret: nothing to revoke upstream).
    pub upstream_revocation: String,
}

/// Ends a user's connection to a server: the secret is deleted (the gateway stops using it
/// at once), the upstream is asked to revoke its tokens (RFC 7009), the outcome is recorded,
/// and the user is told. `None`: there was no connection.
pub async fn disconnect(
    state: &AppState,
    tenant: &Tenant,
    row: &ServerRow,
    user_id: &str,
    email: &str,
    by: EndedBy<'_>,
) -> Result<Option<Ended>, ConnectionError> {
    let stored = read(state, &tenant.tenant_id, &row.server_id, user_id)
        .await
        .ok()
        .flatten();
    let existed = state
        .store
        .delete_connection(&tenant.tenant_id, &row.server_id, user_id)
        .await?;
    if !existed && stored.is_none() {
        return Ok(None);
    }
    let kind = stored.as_ref().map_or("static", Stored::kind).to_owned();
    let upstream_revocation = match &stored {
        Some(s @ Stored::Oauth { .. }) => {
            oauth::revoke(state, &tenant.tenant_id, &row.server_id, s).await
        }
        _ => "none".to_owned(),
    };
    let (actor_id, actor_email, via) = match by {
        EndedBy::User => (user_id, email, "portal".to_owned()),
        EndedBy::Admin(id, e) => (id, e, "admin".to_owned()),
        EndedBy::Deprovisioning(how) => (user_id, email, format!("deprovisioning: {how}")),
    };
    state
        .audit
        .note(
            Event::new(
                &tenant.tenant_id,
                Category::Security,
                "upstream.disconnect",
                if upstream_revocation == "failed" {
                    "partial"
                } else {
                    "ok"
                },
            )
            .by(actor_id, actor_email)
            .target(row.slug.clone())
            .detail(serde_json::json!({
                "user": email,
                "kind": kind,
                "upstream_revocation": upstream_revocation,
                "via": via,
            })),
        )
        .await;
    if upstream_revocation == "failed" {
        crate::mail::security(
            state.mailer.as_ref(),
            &tenant.tenant_id,
            format!(
                "{email}'s tokens at {} were deleted, but the upstream could not be reached to revoke them",
                row.slug
            ),
        );
    }
    let who = if actor_email.eq_ignore_ascii_case(email) {
        "You disconnected".to_owned()
    } else {
        format!("Your account was disconnected ({via}):")
    };
    crate::mail::notify(
        state.mailer.as_ref(),
        &tenant.tenant_id,
        email,
        &format!("Account disconnected: {}", row.name),
        format!(
            "{who} {} in Portcullis ({}). The gateway deleted its credential{}.\n",
            row.name,
            tenant.name,
            match upstream_revocation.as_str() {
                "revoked" => " and the upstream revoked its tokens",
                "failed" => "; the upstream could not be reached to revoke its tokens",
                _ => "",
            }
        ),
    );
    Ok(Some(Ended {
        server: row.slug.clone(),
        kind,
        upstream_revocation,
    }))
}

/// A user lost their access (deactivated, deleted, or all access revoked): every upstream
/// connection of theirs ends, revoked upstream where possible.
pub async fn deprovisioned(
    state: &AppState,
    tenant: &Tenant,
    user_id: &str,
    email: &str,
    how: &str,
) -> Vec<Ended> {
    let rows = match state
        .store
        .user_connections(&tenant.tenant_id, user_id)
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "a deprovisioned user's connections could not be read");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for c in rows {
        let Ok(Some(row)) = state
            .store
            .server_by_id(&tenant.tenant_id, &c.server_id)
            .await
        else {
            continue;
        };
        match disconnect(
            state,
            tenant,
            &row,
            user_id,
            email,
            EndedBy::Deprovisioning(how),
        )
        .await
        {
            Ok(Some(e)) => out.push(e),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "a deprovisioned user's connection could not be ended")
            }
        }
    }
    out
}

/// A connection as the API and console list it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionView {
    pub server: String,
    pub user: String,
    pub kind: String,
    pub scope: String,
    /// When the upstream access token expires (oauth; refreshed before then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub connected_at: String,
    pub updated_at: String,
}

pub fn view(c: &ConnectionRow) -> ConnectionView {
    use crate::tenants::format_time;
    ConnectionView {
        server: c.server_slug.clone(),
        user: c.email.clone(),
        kind: c.kind.clone(),
        scope: c.scope.clone(),
        expires_at: c.expires_at.map(format_time),
        connected_at: format_time(c.created_at),
        updated_at: format_time(c.updated_at),
    }
}

/// The credential to look at a server's tools with on behalf of `user` (an admin testing a
/// server or recording its catalog): the shared one, or for a per-user server the user's own
/// connection. The message says what is missing.
pub async fn for_discovery(
    state: &AppState,
    tenant: &Tenant,
    slug: &str,
    user: &crate::store::UserRow,
) -> Result<Option<Arc<crate::gateway::Credential>>, String> {
    let Some(pu) = state.gateway.per_user(&tenant.tenant_id, slug) else {
        return Ok(state.gateway.credential(&tenant.tenant_id, slug));
    };
    credential(state, &tenant.tenant_id, &pu, &user.user_id, &user.email)
        .await
        .map(|c| Some(Arc::new(c)))
        .map_err(|u| u.message(slug, &connect_url(state, &tenant.slug, slug)))
}
