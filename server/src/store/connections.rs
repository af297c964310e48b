//! Users' upstream connections (tenant-owned): what may be listed about a user's own account at
//! an upstream. The secret is in the vault (`connections::slot`); a connection's row and its
//! vault secret are written and deleted together by `connections`.

use super::{now_micros, Engine, Result, Store};

const BUMP: &str = "UPDATE change_counter SET version = version + 1 WHERE topic = 'connections'";

/// A connection as the portal, the console and the API list it (never the secret).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ConnectionRow {
    pub server_id: String,
    pub server_slug: String,
    pub user_id: String,
    pub email: String,
    /// `static` or `oauth`.
    pub kind: String,
    pub scope: String,
    pub expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

const SELECT: &str = "SELECT c.server_id, s.slug AS server_slug, c.user_id, u.email, c.kind, \
     c.scope, c.expires_at, c.created_at, c.updated_at FROM upstream_connection c \
     JOIN mcp_server s ON s.server_id = c.server_id \
     JOIN tenant_user u ON u.user_id = c.user_id WHERE c.tenant_id = $1";

impl Store {
    /// Records (or refreshes) a user's connection to a server.
    pub async fn put_connection(
        &self,
        tenant_id: &str,
        server_id: &str,
        user_id: &str,
        kind: &str,
        scope: &str,
        expires_at: Option<i64>,
    ) -> Result<()> {
        let now = now_micros();
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO upstream_connection (tenant_id, server_id, user_id, kind, scope, \
                 expires_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                 ON CONFLICT (tenant_id, server_id, user_id) DO UPDATE SET kind = excluded.kind, \
                 scope = excluded.scope, expires_at = excluded.expires_at, \
                 updated_at = excluded.updated_at",
            )
            .bind(tenant_id)
            .bind(server_id)
            .bind(user_id)
            .bind(kind)
            .bind(scope)
            .bind(expires_at)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// Deletes a user's connection row and its vault secret in one transaction; whether there
    /// was either.
    pub async fn delete_connection(
        &self,
        tenant_id: &str,
        server_id: &str,
        user_id: &str,
    ) -> Result<bool> {
        let owner = format!("{server_id}/{user_id}");
        let n = tenant_tx!(self, tenant_id, |tx| {
            let a = sqlx::query(
                "DELETE FROM vault_secret WHERE tenant_id = $1 AND owner_table = 'upstream_connection' \
                 AND owner_id = $2",
            )
            .bind(tenant_id)
            .bind(&owner)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let b = sqlx::query(
                "DELETE FROM upstream_connection WHERE tenant_id = $1 AND server_id = $2 \
                 AND user_id = $3",
            )
            .bind(tenant_id)
            .bind(server_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(BUMP).execute(&mut *tx).await?;
            a + b
        });
        Ok(n > 0)
    }

    /// A user's connections, by server slug.
    pub async fn user_connections(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<ConnectionRow>> {
        let sql = format!("{SELECT} AND c.user_id = $2 ORDER BY s.slug");
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant_id)
                .bind(user_id)
                .fetch_all(&mut *tx)
                .await?
        });
        Ok(rows)
    }

    /// A server's connections, by email.
    pub async fn server_connections(
        &self,
        tenant_id: &str,
        server_id: &str,
    ) -> Result<Vec<ConnectionRow>> {
        let sql = format!("{SELECT} AND c.server_id = $2 ORDER BY u.email");
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ConnectionRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant_id)
                .bind(server_id)
                .fetch_all(&mut *tx)
                .await?
        });
        Ok(rows)
    }
}
