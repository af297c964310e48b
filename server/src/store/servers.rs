//! Upstream MCP servers and the users' gateway tokens (tenant-owned tables).

use super::{conflict_as, now_micros, Engine, Result, Store, StoreError, UserRow};
use crate::domain::{DisplayName, Email, ServerSlug, ServerTransport, TokenHash};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ServerRow {
    pub server_id: String,
    pub tenant_id: String,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub transport: String,
    /// JSON of `ServerTransport`.
    pub config: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ServerRow {
    /// The stored transport settings, parsed. A row that no longer parses (a migration bug)
    /// is an error, never a default.
    pub fn upstream(&self) -> Result<ServerTransport, serde_json::Error> {
        serde_json::from_str(&self.config)
    }
}

/// A gateway token as the snapshot holds it: its hash and its owner.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveToken {
    pub token_hash: String,
    pub user_id: String,
    pub email: String,
    pub expires_at: Option<i64>,
    pub label: String,
    /// JSON array of the server slugs the token is scoped to; `None`: all.
    pub servers: Option<String>,
}

/// A gateway token as its owner sees it listed.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    pub api_token_id: String,
    pub label: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// JSON array of the server slugs the token is scoped to; `None`: all.
    pub servers: Option<String>,
}

const SERVER_COLUMNS: &str =
    "server_id, tenant_id, slug, name, description, transport, config, created_at, updated_at";

impl Store {
    pub async fn create_server(
        &self,
        tenant_id: &str,
        slug: &ServerSlug,
        name: &DisplayName,
        description: &str,
        upstream: &ServerTransport,
    ) -> Result<ServerRow> {
        let now = now_micros();
        let row = ServerRow {
            server_id: uuid::Uuid::now_v7().to_string(),
            tenant_id: tenant_id.to_owned(),
            slug: slug.as_str().to_owned(),
            name: name.as_str().to_owned(),
            description: description.to_owned(),
            transport: upstream.kind().to_owned(),
            config: serde_json::to_string(upstream)
                .map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))?,
            created_at: now,
            updated_at: now,
        };
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO mcp_server (server_id, tenant_id, slug, name, description, transport, config, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(&row.server_id)
            .bind(&row.tenant_id)
            .bind(&row.slug)
            .bind(&row.name)
            .bind(&row.description)
            .bind(&row.transport)
            .bind(&row.config)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as("server"))?;
            sqlx::query("UPDATE change_counter SET version = version + 1 WHERE topic = 'servers'")
                .execute(&mut *tx)
                .await?;
        });
        Ok(row)
    }

    pub async fn list_servers(&self, tenant_id: &str) -> Result<Vec<ServerRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {SERVER_COLUMNS} FROM mcp_server WHERE tenant_id = $1 ORDER BY slug"
            )))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn server_by_slug(
        &self,
        tenant_id: &str,
        slug: &ServerSlug,
    ) -> Result<Option<ServerRow>> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {SERVER_COLUMNS} FROM mcp_server WHERE tenant_id = $1 AND slug = $2"
            )))
            .bind(tenant_id)
            .bind(slug.as_str())
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row)
    }

    pub async fn server_by_id(
        &self,
        tenant_id: &str,
        server_id: &str,
    ) -> Result<Option<ServerRow>> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ServerRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {SERVER_COLUMNS} FROM mcp_server WHERE tenant_id = $1 AND server_id = $2"
            )))
            .bind(tenant_id)
            .bind(server_id)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row)
    }

    pub async fn delete_server(&self, tenant_id: &str, slug: &ServerSlug) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            // Its secrets go with it.
            sqlx::query(
                "DELETE FROM vault_secret WHERE tenant_id = $1 AND owner_table = 'mcp_server' \
                 AND owner_id IN (SELECT server_id FROM mcp_server WHERE tenant_id = $1 AND slug = $2)",
            )
            .bind(tenant_id)
            .bind(slug.as_str())
            .execute(&mut *tx)
            .await?;
            // And its users' connections' secrets (the rows go by cascade).
            sqlx::query(
                "DELETE FROM vault_secret WHERE tenant_id = $1 AND owner_table = 'upstream_connection' \
                 AND owner_id IN (SELECT server_id || '/' || user_id FROM upstream_connection \
                 WHERE tenant_id = $1 AND server_id IN \
                 (SELECT server_id FROM mcp_server WHERE tenant_id = $1 AND slug = $2))",
            )
            .bind(tenant_id)
            .bind(slug.as_str())
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM filter_policy WHERE tenant_id = $1 AND server_slug = $2")
                .bind(tenant_id)
                .bind(slug.as_str())
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM mcp_server WHERE tenant_id = $1 AND slug = $2")
                .bind(tenant_id)
                .bind(slug.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("UPDATE change_counter SET version = version + 1 WHERE topic = 'servers'")
                .execute(&mut *tx)
                .await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The tenant's user with this email, if there is one.
    pub async fn user_by_email(&self, tenant_id: &str, email: &Email) -> Result<Option<UserRow>> {
        let user = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, UserRow>(
                "SELECT user_id, tenant_id, email, is_admin, active FROM tenant_user \
                 WHERE tenant_id = $1 AND email = $2",
            )
            .bind(tenant_id)
            .bind(email.as_str())
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(user)
    }

    /// The tenant's user with this email, created (active, not an admin) if missing.
    pub async fn ensure_user(&self, tenant_id: &str, email: &Email) -> Result<UserRow> {
        let user = tenant_tx!(self, tenant_id, |tx| {
            let now = now_micros();
            sqlx::query(
                "INSERT INTO tenant_user (user_id, tenant_id, email, is_admin, active, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (tenant_id, email) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant_id)
            .bind(email.as_str())
            .bind(false)
            .bind(true)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query_as::<_, UserRow>(
                "SELECT user_id, tenant_id, email, is_admin, active FROM tenant_user \
                 WHERE tenant_id = $1 AND email = $2",
            )
            .bind(tenant_id)
            .bind(email.as_str())
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(user)
    }

    pub async fn create_api_token(
        &self,
        tenant_id: &str,
        user_id: &str,
        hash: &TokenHash,
        label: &str,
        expires_at: Option<i64>,
        servers: Option<&str>,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO api_token (api_token_id, tenant_id, user_id, token_hash, label, created_at, expires_at, servers) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant_id)
            .bind(user_id)
            .bind(hash.as_str())
            .bind(label)
            .bind(now_micros())
            .bind(expires_at)
            .bind(servers)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE change_counter SET version = version + 1 WHERE topic = 'api_tokens'",
            )
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// A user's unrevoked gateway tokens (never the tokens themselves: they are not stored).
    pub async fn list_user_tokens(&self, tenant_id: &str, user_id: &str) -> Result<Vec<TokenRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, TokenRow>(
                "SELECT api_token_id, label, created_at, last_used_at, expires_at, servers FROM api_token \
                 WHERE tenant_id = $1 AND user_id = $2 AND revoked_at IS NULL ORDER BY created_at",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Revokes one live gateway token by its hash; returns its label and its user's email.
    pub async fn revoke_token_hash(
        &self,
        tenant_id: &str,
        hash: &TokenHash,
    ) -> Result<Option<(String, String)>> {
        let found = tenant_tx!(self, tenant_id, |tx| {
            let found: Option<(String, String)> = sqlx::query_as(
                "SELECT t.label, u.email FROM api_token t JOIN tenant_user u \
                   ON u.tenant_id = t.tenant_id AND u.user_id = t.user_id \
                 WHERE t.tenant_id = $1 AND t.token_hash = $2 AND t.revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(hash.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_some() {
                sqlx::query(
                    "UPDATE api_token SET revoked_at = $3 WHERE tenant_id = $1 AND token_hash = $2",
                )
                .bind(tenant_id)
                .bind(hash.as_str())
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE change_counter SET version = version + 1 WHERE topic = 'api_tokens'",
                )
                .execute(&mut *tx)
                .await?;
            }
            found
        });
        Ok(found)
    }

    /// Revokes one of a user's own live gateway tokens by id; returns its label.
    pub async fn revoke_user_token_by_id(
        &self,
        tenant_id: &str,
        user_id: &str,
        token_id: &str,
    ) -> Result<Option<String>> {
        let label = tenant_tx!(self, tenant_id, |tx| {
            let label: Option<(String,)> = sqlx::query_as(
                "SELECT label FROM api_token WHERE tenant_id = $1 AND user_id = $2 \
                 AND api_token_id = $3 AND revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(token_id)
            .fetch_optional(&mut *tx)
            .await?;
            if label.is_some() {
                sqlx::query(
                    "UPDATE api_token SET revoked_at = $4 WHERE tenant_id = $1 AND user_id = $2 \
                     AND api_token_id = $3",
                )
                .bind(tenant_id)
                .bind(user_id)
                .bind(token_id)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE change_counter SET version = version + 1 WHERE topic = 'api_tokens'",
                )
                .execute(&mut *tx)
                .await?;
            }
            label.map(|(l,)| l)
        });
        Ok(label)
    }

    /// Revokes every live gateway token of a user and ends their console and portal sessions
    /// (those signed in before now); returns the revoked tokens' labels.
    pub async fn revoke_user_access(&self, tenant_id: &str, user_id: &str) -> Result<Vec<String>> {
        let labels = tenant_tx!(self, tenant_id, |tx| {
            let labels: Vec<(String,)> = sqlx::query_as(
                "SELECT label FROM api_token WHERE tenant_id = $1 AND user_id = $2 \
                 AND revoked_at IS NULL ORDER BY created_at",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?;
            let now = now_micros();
            sqlx::query(
                "UPDATE api_token SET revoked_at = $3 WHERE tenant_id = $1 AND user_id = $2 \
                 AND revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE tenant_user SET sessions_revoked_at = $3 WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE change_counter SET version = version + 1 WHERE topic = 'api_tokens'",
            )
            .execute(&mut *tx)
            .await?;
            labels.into_iter().map(|(l,)| l).collect::<Vec<_>>()
        });
        Ok(labels)
    }

    /// When the user's console and portal sessions were last revoked (µs), if ever.
    pub async fn sessions_revoked_at(&self, tenant_id: &str, user_id: &str) -> Result<Option<i64>> {
        let at = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT sessions_revoked_at FROM tenant_user WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
            .flatten()
        });
        Ok(at)
    }

    /// Every unrevoked gateway token of the tenant's active users, for the gateway's in-memory
    /// snapshot (the hot path never reads tokens from the database).
    pub async fn list_live_tokens(&self, tenant_id: &str) -> Result<Vec<LiveToken>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, LiveToken>(
                "SELECT t.token_hash, u.user_id, u.email, t.expires_at, t.label, t.servers \
                 FROM api_token t JOIN tenant_user u ON u.tenant_id = t.tenant_id AND u.user_id = t.user_id \
                 WHERE t.tenant_id = $1 AND t.revoked_at IS NULL AND u.active = $2",
            )
            .bind(tenant_id)
            .bind(true)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// The active user owning an unrevoked, unexpired gateway token of this tenant.
    pub async fn user_by_api_token(
        &self,
        tenant_id: &str,
        hash: &TokenHash,
    ) -> Result<Option<UserRow>> {
        let user = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, UserRow>(
                "SELECT u.user_id, u.tenant_id, u.email, u.is_admin, u.active \
                 FROM api_token t JOIN tenant_user u ON u.tenant_id = t.tenant_id AND u.user_id = t.user_id \
                 WHERE t.tenant_id = $1 AND t.token_hash = $2 AND t.revoked_at IS NULL \
                   AND (t.expires_at IS NULL OR t.expires_at > $3) AND u.active = $4",
            )
            .bind(tenant_id)
            .bind(hash.as_str())
            .bind(now_micros())
            .bind(true)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(user)
    }

    // ---- MCP sessions' owners (gateway/mod.rs: HttpSessions, the hub's sessions) ----------

    /// Records who opened a session (by the SHA-256 of its id), and for a session of the
    /// gateway's own (stdio, legacy SSE upstreams) its protocol version; drops the tenant's
    /// records older than a day in the same transaction.
    pub async fn put_gateway_session(
        &self,
        tenant_id: &str,
        session_hash: &str,
        user_id: &str,
        server_slug: &str,
        protocol_version: Option<&str>,
    ) -> Result<()> {
        let now = now_micros();
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query("DELETE FROM gateway_session WHERE tenant_id = $1 AND created_at < $2")
                .bind(tenant_id)
                .bind(now - GATEWAY_SESSION_TTL_US)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO gateway_session (session_hash, tenant_id, user_id, server_slug, created_at, protocol_version) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_hash) DO NOTHING",
            )
            .bind(session_hash)
            .bind(tenant_id)
            .bind(user_id)
            .bind(server_slug)
            .bind(now)
            .bind(protocol_version)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Who opened a session of this tenant, if it is known and less than a day old:
    /// (user id, server slug, protocol version of a session of the gateway's own).
    pub async fn gateway_session_owner(
        &self,
        tenant_id: &str,
        session_hash: &str,
    ) -> Result<Option<(String, String, Option<String>)>> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String, Option<String>)>(
                "SELECT user_id, server_slug, protocol_version FROM gateway_session \
                 WHERE tenant_id = $1 AND session_hash = $2 AND created_at >= $3",
            )
            .bind(tenant_id)
            .bind(session_hash)
            .bind(now_micros() - GATEWAY_SESSION_TTL_US)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row)
    }

    /// Forgets a session the client ended.
    pub async fn delete_gateway_session(&self, tenant_id: &str, session_hash: &str) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query("DELETE FROM gateway_session WHERE tenant_id = $1 AND session_hash = $2")
                .bind(tenant_id)
                .bind(session_hash)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }
}

/// How long another replica will carry on a session it did not open.
const GATEWAY_SESSION_TTL_US: i64 = 24 * 3_600_000_000;
