//! Upstream MCP servers of a tenant and users' gateway tokens: the rules shared by the CLI, the
//! JSON API and the console.

use crate::domain::{DisplayName, Email, NewToken, ServerSlug, ServerTransport, TokenKind};
use crate::state::Urls;
use crate::store::{ServerRow, Store, StoreError, UserRow};
use crate::tenants::format_time;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Invalid(String),
    #[error("a server with slug {0:?} already exists in this tenant")]
    Exists(String),
    #[error("no such server")]
    NotFound,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ServerError::NotFound,
            other => ServerError::Store(other),
        }
    }
}

/// A server as the API, the CLI and the console show it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerView {
    pub slug: String,
    pub name: String,
    pub description: String,
    /// The transport settings, tagged by `transport`.
    pub upstream: serde_json::Value,
    /// The gateway URL MCP clients connect to (absent where the public URL is unknown: the CLI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub created_at: String,
}

/// What a caller asks for when adding a server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServer {
    pub slug: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub upstream: serde_json::Value,
}

pub fn view(urls: Option<&Urls>, tenant_slug: &str, row: &ServerRow) -> ServerView {
    ServerView {
        slug: row.slug.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        upstream: serde_json::from_str(&row.config).unwrap_or(serde_json::Value::Null),
        endpoint: urls.map(|u| format!("{}{}", u.tenant_gateway(tenant_slug), row.slug)),
        created_at: format_time(row.created_at),
    }
}

/// Parses and stores a new server. Bad input changes nothing.
pub async fn add(
    store: &Store,
    tenant_id: &str,
    input: NewServer,
) -> Result<ServerRow, ServerError> {
    let slug = ServerSlug::parse(&input.slug).map_err(|e| ServerError::Invalid(e.0))?;
    let name = DisplayName::parse(input.name.as_deref().unwrap_or(slug.as_str()))
        .map_err(|e| ServerError::Invalid(format!("server {}", e.0)))?;
    let description = input.description.unwrap_or_default();
    if description.chars().count() > 1000 {
        return Err(ServerError::Invalid(
            "description must be at most 1000 characters".into(),
        ));
    }
    let upstream: ServerTransport = serde_json::from_value(input.upstream)
        .map_err(|e| ServerError::Invalid(format!("upstream: {e}")))?;
    let upstream = upstream
        .validate()
        .map_err(|e| ServerError::Invalid(format!("upstream: {}", e.0)))?;
    if matches!(upstream, ServerTransport::Stdio { sandbox: true, .. })
        && !crate::gateway::stdio::sandbox_available()
    {
        return Err(ServerError::Invalid(
            "upstream: this gateway cannot run a sandbox (bubblewrap is missing or cannot create namespaces here)".into(),
        ));
    }
    store
        .create_server(tenant_id, &slug, &name, description.trim(), &upstream)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ServerError::Exists(slug.as_str().to_owned()),
            other => ServerError::Store(other),
        })
}

pub async fn remove(store: &Store, tenant_id: &str, slug: &str) -> Result<(), ServerError> {
    let slug = ServerSlug::parse(slug).map_err(|_| ServerError::NotFound)?;
    Ok(store.delete_server(tenant_id, &slug).await?)
}

/// Issues a gateway token to the user with this email (created if missing); the token exists
/// only in the return value, the store keeps its hash.
pub async fn create_user_token(
    store: &Store,
    tenant_id: &str,
    email: &str,
    label: &str,
) -> Result<(UserRow, SecretString), ServerError> {
    create_scoped_token(store, tenant_id, email, label, &[], None).await
}

/// The longest a personal access token may live.
pub const MAX_TOKEN_DAYS: i64 = 365;

/// [`create_user_token`] for a personal access token: limited to `servers` (slugs of this
/// tenant; empty: every server the user may reach) and expiring after `expires_in_days`.
pub async fn create_scoped_token(
    store: &Store,
    tenant_id: &str,
    email: &str,
    label: &str,
    servers: &[String],
    expires_in_days: Option<i64>,
) -> Result<(UserRow, SecretString), ServerError> {
    let email = Email::parse(email).map_err(|e| ServerError::Invalid(format!("user: {}", e.0)))?;
    let label = label.trim();
    if label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(ServerError::Invalid(
            "label must be at most 100 plain characters".into(),
        ));
    }
    if let Some(d) = expires_in_days {
        if !(1..=MAX_TOKEN_DAYS).contains(&d) {
            return Err(ServerError::Invalid(format!(
                "expires_in_days must be 1 to {MAX_TOKEN_DAYS}"
            )));
        }
    }
    let mut scope: Vec<String> = Vec::new();
    if !servers.is_empty() {
        let known: Vec<String> = store
            .list_servers(tenant_id)
            .await?
            .into_iter()
            .map(|r| r.slug)
            .collect();
        for s in servers {
            let s = s.trim();
            if !known.iter().any(|k| k == s) {
                return Err(ServerError::Invalid(format!(
                    "servers: no server {s:?} in this tenant"
                )));
            }
            if !scope.iter().any(|x| x == s) {
                scope.push(s.to_owned());
            }
        }
    }
    let user = store.ensure_user(tenant_id, &email).await?;
    if !user.active {
        return Err(ServerError::Invalid(format!(
            "user {} is deactivated",
            user.email
        )));
    }
    let token = NewToken::generate(TokenKind::User);
    let expires_at = expires_in_days.map(|d| crate::store::now_micros() + d * 86_400_000_000);
    let scope_json = (!scope.is_empty()).then(|| serde_json::json!(scope).to_string());
    store
        .create_api_token(
            tenant_id,
            &user.user_id,
            &token.hash,
            if label.is_empty() { "api" } else { label },
            expires_at,
            scope_json.as_deref(),
        )
        .await?;
    tracing::info!(tenant.id = %tenant_id, user.id = %user.user_id, "gateway token issued");
    Ok((user, token.plaintext))
}

/// What a revocation took away.
#[derive(Debug, Default, serde::Serialize)]
pub struct Revoked {
    /// The revoked gateway tokens: their labels and users.
    pub tokens: Vec<RevokedToken>,
    /// Whether the user's console and portal sessions were ended too.
    pub sessions_ended: bool,
    /// The user's upstream connections that ended (revoked upstream where possible).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<crate::connections::Ended>,
}

#[derive(Debug, serde::Serialize)]
pub struct RevokedToken {
    pub user: String,
    pub label: String,
}

/// Revokes one gateway token (given in full, as its holder has it): a user's or an agent's.
pub async fn revoke_token(
    store: &Store,
    tenant_id: &str,
    token: &str,
) -> Result<Revoked, ServerError> {
    if let Some(hash) = crate::domain::TokenHash::of_presented(TokenKind::Agent, token.trim()) {
        return match store.revoke_agent_token_hash(tenant_id, &hash).await? {
            Some((agent, label)) => Ok(Revoked {
                tokens: vec![RevokedToken {
                    user: format!("agent:{agent}"),
                    label,
                }],
                sessions_ended: false,
                upstream: Vec::new(),
            }),
            None => Err(ServerError::NotFound),
        };
    }
    let hash =
        crate::domain::TokenHash::of_presented(TokenKind::User, token.trim()).ok_or_else(|| {
            ServerError::Invalid("token: not a gateway token (pct_user_… or pct_agent_…)".into())
        })?;
    match store.revoke_token_hash(tenant_id, &hash).await? {
        Some((label, user)) => Ok(Revoked {
            tokens: vec![RevokedToken { user, label }],
            sessions_ended: false,
            upstream: Vec::new(),
        }),
        None => Err(ServerError::NotFound),
    }
}

/// Revokes everything a user holds: every gateway token, and their console and portal sessions.
pub async fn revoke_user(
    store: &Store,
    tenant_id: &str,
    email: &str,
) -> Result<Revoked, ServerError> {
    let email = Email::parse(email).map_err(|e| ServerError::Invalid(format!("user: {}", e.0)))?;
    let user = store
        .user_by_email(tenant_id, &email)
        .await?
        .ok_or(ServerError::NotFound)?;
    let labels = store.revoke_user_access(tenant_id, &user.user_id).await?;
    store.revoke_user_oauth(tenant_id, &user.user_id).await?;
    // The agents they own lose their tokens too (they would stop anyway while the owner is
    // deactivated; revoked, they stay stopped if the owner comes back).
    let agents = store
        .revoke_owned_agent_tokens(tenant_id, &user.user_id)
        .await?;
    let mut tokens: Vec<RevokedToken> = labels
        .into_iter()
        .map(|label| RevokedToken {
            user: user.email.clone(),
            label,
        })
        .collect();
    tokens.extend(agents.into_iter().map(|(agent, label)| RevokedToken {
        user: user.email.clone(),
        label: format!("agent {agent}: {label}"),
    }));
    Ok(Revoked {
        tokens,
        sessions_ended: true,
        upstream: Vec::new(),
    })
}

/// Revokes every token of an agent (by slug).
pub async fn revoke_agent(
    store: &Store,
    tenant_id: &str,
    slug: &str,
) -> Result<Revoked, ServerError> {
    let agent = store
        .agent_by_slug(tenant_id, slug.trim())
        .await?
        .ok_or(ServerError::NotFound)?;
    let labels = store
        .revoke_agent_tokens(tenant_id, &agent.agent_id)
        .await?;
    let user = agent
        .owner_email
        .clone()
        .unwrap_or_else(|| format!("agent:{}", agent.slug));
    Ok(Revoked {
        tokens: labels
            .into_iter()
            .map(|label| RevokedToken {
                user: user.clone(),
                label: format!("agent {}: {label}", agent.slug),
            })
            .collect(),
        sessions_ended: false,
        upstream: Vec::new(),
    })
}

// ---- upstream credentials (in the vault) ------------------------------------------------------

/// Where a server's credential lives in the vault.
fn credential_slot(server_id: &str) -> crate::vault::Slot<'_> {
    crate::vault::Slot {
        table: "mcp_server",
        row: server_id,
        name: "credential",
    }
}

/// A server's credential as an admin sets it: `bearer` (sent as `Authorization: Bearer …`) or
/// `header` (a header of the admin's choosing, e.g. `X-Api-Key`).
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// `env` (stdio servers): the environment variable's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The secret. Never returned, logged or recorded. For `oauth`: the configured client's
    /// secret (empty: a public client, or dynamic registration).
    #[serde(default)]
    pub value: String,
    /// `oauth`: a client registered at the upstream's authorization server (absent: the
    /// gateway registers itself dynamically, RFC 7591).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `oauth`: the scopes to ask for (space-separated; absent: the upstream's advertised ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// `oauth`: the authorization server's issuer (absent: discovered from the upstream's
    /// protected resource metadata, RFC 9728).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_server: Option<String>,
}

/// What the gateway does with a server's credential.
pub enum Injected {
    /// A request header (Streamable HTTP servers).
    Header(crate::gateway::Credential),
    /// An environment variable of the process (stdio servers).
    Env(crate::gateway::EnvSecret),
    /// Each user's own (a per-user static secret or per-user OAuth), looked up per request.
    PerUser(crate::connections::Mode),
}

impl std::fmt::Debug for CredentialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialInput")
            .field("kind", &self.kind)
            .field("header", &self.header)
            .field("env", &self.env)
            .field("value", &"(redacted)")
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("authorization_server", &self.authorization_server)
            .finish()
    }
}

impl Drop for CredentialInput {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.value.zeroize();
    }
}

impl CredentialInput {
    /// What it becomes for the gateway; the message says what is wrong.
    fn injected(&self) -> Result<Injected, String> {
        if let Some(mode) = crate::connections::Mode::from_input(self)? {
            return Ok(Injected::PerUser(mode));
        }
        if self.kind != "env" {
            return self.to_header().map(Injected::Header);
        }
        let value = self.value.trim();
        if value.is_empty() || value.len() > 8192 || value.contains('\0') {
            return Err("value: 1 to 8192 characters".into());
        }
        let name = self.env.as_deref().unwrap_or_default().trim();
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err("env: a variable name of A-Z, 0-9 and _ is required".into());
        }
        // Variables the gateway sets itself or that change how programs load.
        if matches!(name, "PATH" | "HOME" | "TMPDIR" | "LANG")
            || name.starts_with("LD_")
            || name.starts_with("DYLD_")
        {
            return Err(format!("env: {name} cannot be set"));
        }
        Ok(Injected::Env(crate::gateway::EnvSecret::new(
            name.to_owned(),
            zeroize::Zeroizing::new(value.to_owned()),
        )))
    }

    /// The header it becomes; the message says what is wrong.
    fn to_header(&self) -> Result<crate::gateway::Credential, String> {
        use http::{HeaderName, HeaderValue};
        let value = self.value.trim();
        if value.is_empty() || value.len() > 8192 {
            return Err("value: 1 to 8192 characters".into());
        }
        let (name, value) = match self.kind.as_str() {
            "bearer" => (http::header::AUTHORIZATION, format!("Bearer {value}")),
            "header" => {
                let name = self.header.as_deref().unwrap_or_default().trim();
                let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| "header: a valid HTTP header name is required".to_owned())?;
                if reserved_header(name.as_str()) {
                    return Err(format!(
                        "header: {} is set by the gateway itself",
                        name.as_str()
                    ));
                }
                (name, value.to_owned())
            }
            _ => return Err("kind must be bearer, header or env".into()),
        };
        let mut value = HeaderValue::from_str(&value)
            .map_err(|_| "value: printable ASCII only (it goes in an HTTP header)".to_owned())?;
        value.set_sensitive(true);
        Ok(crate::gateway::Credential::new(name, value))
    }
}

/// Headers the gateway itself sets or the protocol depends on: no credential may be sent in
/// one.
pub fn reserved_header(name: &str) -> bool {
    const RESERVED: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "accept",
        "transfer-encoding",
        "connection",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
        "te",
        "upgrade",
    ];
    RESERVED.contains(&name)
}

/// What an admin sees of a server's credential: never the value.
#[derive(Debug, Clone, Serialize)]
pub struct CredentialView {
    pub kind: String,
    pub header: String,
    pub updated_at: String,
    /// The data key it is sealed under.
    pub key_id: String,
    /// Each user connects their own account (user_bearer, user_header, oauth).
    pub per_user: bool,
    /// `oauth`: the configured client (absent: dynamic registration), scopes and
    /// authorization server (absent: discovered). Never the client secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_server: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such server")]
    NotFound,
    #[error(transparent)]
    Vault(#[from] crate::vault::VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn server_row(
    store: &Store,
    tenant_id: &str,
    slug: &str,
) -> Result<ServerRow, CredentialError> {
    let slug = ServerSlug::parse(slug).map_err(|_| CredentialError::NotFound)?;
    store
        .server_by_slug(tenant_id, &slug)
        .await?
        .ok_or(CredentialError::NotFound)
}

/// Seals a server's credential in the vault; the gateway injects it from the next request.
pub async fn set_credential(
    vault: &crate::vault::Vault,
    store: &Store,
    tenant_id: &str,
    slug: &str,
    input: &CredentialInput,
) -> Result<CredentialView, CredentialError> {
    let row = server_row(store, tenant_id, slug).await?;
    match (row.transport.as_str(), input.kind.as_str()) {
        ("streamable_http", "bearer" | "header" | "user_bearer" | "user_header" | "oauth")
        | ("stdio", "env") => {}
        ("stdio", _) => {
            return Err(CredentialError::Invalid(
                "a stdio server takes its credential as an environment variable: kind env".into(),
            ))
        }
        ("streamable_http", "env") => {
            return Err(CredentialError::Invalid(
                "a Streamable HTTP server takes its credential in a header: kind bearer or header"
                    .into(),
            ))
        }
        ("sse", "bearer" | "header") => {}
        ("sse", _) => {
            return Err(CredentialError::Invalid(
                "a legacy SSE server takes a shared credential in a header: kind bearer or header"
                    .into(),
            ))
        }
        _ => {
            return Err(CredentialError::Invalid(
                "kind must be bearer, header, env, user_bearer, user_header or oauth".into(),
            ))
        }
    }
    input.injected().map_err(CredentialError::Invalid)?;
    // A changed OAuth setting is discovered (and the gateway registered) afresh on the next
    // connection; users' existing connections stay until they or an admin end them.
    vault
        .delete(
            store,
            tenant_id,
            crate::connections::oauth::client_slot(&row.server_id),
            "connections",
        )
        .await?;
    let json = zeroize::Zeroizing::new(serde_json::to_string(input).unwrap_or_default());
    vault
        .put(
            store,
            tenant_id,
            credential_slot(&row.server_id),
            &json,
            "servers",
        )
        .await?;
    credential_view(store, tenant_id, slug, vault)
        .await?
        .ok_or(CredentialError::NotFound)
}

/// Deletes a server's credential; whether there was one.
pub async fn delete_credential(
    vault: &crate::vault::Vault,
    store: &Store,
    tenant_id: &str,
    slug: &str,
) -> Result<bool, CredentialError> {
    let row = server_row(store, tenant_id, slug).await?;
    Ok(vault
        .delete(store, tenant_id, credential_slot(&row.server_id), "servers")
        .await?)
}

/// What is set for a server (never the value).
pub async fn credential_view(
    store: &Store,
    tenant_id: &str,
    slug: &str,
    vault: &crate::vault::Vault,
) -> Result<Option<CredentialView>, CredentialError> {
    let row = server_row(store, tenant_id, slug).await?;
    let Some(sealed) = store
        .vault_secret(tenant_id, "mcp_server", &row.server_id, "credential")
        .await?
    else {
        return Ok(None);
    };
    let plain = vault
        .get(store, tenant_id, credential_slot(&row.server_id))
        .await?
        .ok_or(CredentialError::NotFound)?;
    let input: CredentialInput = serde_json::from_str(&plain)
        .map_err(|_| CredentialError::Vault(crate::vault::VaultError::Corrupt))?;
    Ok(Some(CredentialView {
        header: match input.kind.as_str() {
            "bearer" | "user_bearer" | "oauth" => "authorization".into(),
            "env" => input.env.clone().unwrap_or_default(),
            _ => input
                .header
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase(),
        },
        kind: input.kind.clone(),
        updated_at: format_time(sealed.updated_at),
        key_id: sealed.key_id,
        per_user: matches!(input.kind.as_str(), "user_bearer" | "user_header" | "oauth"),
        client_id: input.client_id.clone(),
        scopes: input.scopes.clone(),
        authorization_server: input.authorization_server.clone(),
    }))
}

/// The header the gateway injects for a server, decrypted for the snapshot.
pub async fn credential(
    vault: &crate::vault::Vault,
    store: &Store,
    tenant_id: &str,
    row: &ServerRow,
) -> Result<Option<Injected>, crate::vault::VaultError> {
    let Some(plain) = vault
        .get(store, tenant_id, credential_slot(&row.server_id))
        .await?
    else {
        return Ok(None);
    };
    let input: CredentialInput =
        serde_json::from_str(&plain).map_err(|_| crate::vault::VaultError::Corrupt)?;
    input
        .injected()
        .map(Some)
        .map_err(|_| crate::vault::VaultError::Corrupt)
}
