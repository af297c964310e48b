//! The tool-change queue (tenant-owned, `tool_change`) and the pins in `server_tool`
//! (`crate::pins` owns the rules). Every write that changes what is held bumps the `identity`
//! counter: the compiled policy holds the pins and the held tools.

use super::{now_micros, CatalogTool, Engine, Result, Store};

const BUMP_IDENTITY: &str =
    "UPDATE change_counter SET version = version + 1 WHERE topic = 'identity'";

/// A queued tool, with the pin it differs from.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ToolChangeRow {
    pub server: String,
    pub name: String,
    pub kind: String,
    pub status: String,
    pub definition: String,
    pub digest: String,
    pub pinned_definition: Option<String>,
    pub pinned_digest: Option<String>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

const SELECT_CHANGES: &str = "SELECT s.slug AS server, c.name, c.kind, c.status, c.definition, \
     c.digest, t.definition AS pinned_definition, t.digest AS pinned_digest, c.first_seen_at, \
     c.last_seen_at FROM tool_change c JOIN mcp_server s ON s.server_id = c.server_id \
     LEFT JOIN server_tool t ON t.server_id = c.server_id AND t.name = c.name \
     WHERE c.tenant_id = $1";

impl Store {
    /// Records that `server`'s tool `name` is served with `definition` (a change of a pinned
    /// tool, or a new tool). True when this is news: no row yet, or another definition than
    /// the queued one (which then is pending again).
    pub async fn note_tool_change(
        &self,
        tenant_id: &str,
        server: &str,
        name: &str,
        kind: &str,
        definition: &str,
        digest: &str,
    ) -> Result<bool> {
        let news = tenant_tx!(self, tenant_id, |tx| {
            let server_id: Option<String> = sqlx::query_scalar(
                "SELECT server_id FROM mcp_server WHERE tenant_id = $1 AND slug = $2",
            )
            .bind(tenant_id)
            .bind(server)
            .fetch_optional(&mut *tx)
            .await?;
            match server_id {
                None => false,
                Some(server_id) => {
                    let now = now_micros();
                    let current: Option<String> = sqlx::query_scalar(
                        "SELECT digest FROM tool_change WHERE server_id = $1 AND name = $2",
                    )
                    .bind(&server_id)
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                    // A sighting that reaches us after an admin pinned what it saw (it was
                    // queued before the decision) is no change: it must not hold the tool again.
                    let pinned: Option<Option<String>> = sqlx::query_scalar(
                        "SELECT digest FROM server_tool WHERE server_id = $1 AND name = $2",
                    )
                    .bind(&server_id)
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if current.is_none() && pinned.flatten().as_deref() == Some(digest) {
                        false
                    } else if current.as_deref() == Some(digest) {
                        sqlx::query(
                            "UPDATE tool_change SET last_seen_at = $1 WHERE server_id = $2 AND name = $3",
                        )
                        .bind(now)
                        .bind(&server_id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                        false
                    } else {
                        sqlx::query(
                            "INSERT INTO tool_change (tenant_id, server_id, name, kind, definition, digest, \
                             status, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $7) \
                             ON CONFLICT (server_id, name) DO UPDATE SET kind = excluded.kind, \
                             definition = excluded.definition, digest = excluded.digest, status = 'pending', \
                             first_seen_at = excluded.first_seen_at, last_seen_at = excluded.last_seen_at",
                        )
                        .bind(tenant_id)
                        .bind(&server_id)
                        .bind(name)
                        .bind(kind)
                        .bind(definition)
                        .bind(digest)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
                        true
                    }
                }
            }
        });
        Ok(news)
    }

    /// Removes the queued change of `kind` of a tool (it is served as pinned again). True when
    /// there was one.
    pub async fn clear_tool_change(
        &self,
        tenant_id: &str,
        server: &str,
        name: &str,
        kind: &str,
    ) -> Result<bool> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "DELETE FROM tool_change WHERE tenant_id = $1 AND name = $2 AND kind = $3 AND \
                 server_id = (SELECT server_id FROM mcp_server WHERE tenant_id = $1 AND slug = $4)",
            )
            .bind(tenant_id)
            .bind(name)
            .bind(kind)
            .bind(server)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            }
            n
        });
        Ok(n > 0)
    }

    /// The queue, pending first, then by server and tool.
    pub async fn tool_changes(
        &self,
        tenant_id: &str,
        server: Option<&str>,
    ) -> Result<Vec<ToolChangeRow>> {
        let sql = format!(
            "{SELECT_CHANGES}{} ORDER BY CASE c.status WHEN 'pending' THEN 0 ELSE 1 END, s.slug, c.name",
            if server.is_some() { " AND s.slug = $2" } else { "" }
        );
        let rows = tenant_tx!(self, tenant_id, |tx| {
            let q = sqlx::query_as::<_, ToolChangeRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant_id);
            let q = match server {
                Some(s) => q.bind(s),
                None => q,
            };
            q.fetch_all(&mut *tx).await?
        });
        Ok(rows)
    }

    pub async fn tool_change(
        &self,
        tenant_id: &str,
        server: &str,
        name: &str,
    ) -> Result<Option<ToolChangeRow>> {
        let sql = format!("{SELECT_CHANGES} AND s.slug = $2 AND c.name = $3");
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ToolChangeRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant_id)
                .bind(server)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?
        });
        Ok(row)
    }

    /// Pins the queued definition (`digest` must still be the queued one): the tool's catalog
    /// entry is replaced (or added) and the queue row removed. False when there is no such row.
    pub async fn approve_tool_change(
        &self,
        tenant_id: &str,
        server: &str,
        name: &str,
        digest: &str,
        tool: &CatalogTool,
    ) -> Result<bool> {
        let ok = tenant_tx!(self, tenant_id, |tx| {
            let server_id: Option<String> = sqlx::query_scalar(
                "SELECT c.server_id FROM tool_change c JOIN mcp_server s ON s.server_id = c.server_id \
                 WHERE c.tenant_id = $1 AND s.slug = $2 AND c.name = $3 AND c.digest = $4",
            )
            .bind(tenant_id)
            .bind(server)
            .bind(name)
            .bind(digest)
            .fetch_optional(&mut *tx)
            .await?;
            match server_id {
                None => false,
                Some(server_id) => {
                    sqlx::query(
                        "INSERT INTO server_tool (tenant_id, server_id, name, description, annotations, \
                         reviewed_at, definition, digest) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (server_id, name) DO UPDATE SET description = excluded.description, \
                         annotations = excluded.annotations, reviewed_at = excluded.reviewed_at, \
                         definition = excluded.definition, digest = excluded.digest",
                    )
                    .bind(tenant_id)
                    .bind(&server_id)
                    .bind(&tool.name)
                    .bind(&tool.description)
                    .bind(&tool.annotations)
                    .bind(now_micros())
                    .bind(&tool.definition)
                    .bind(&tool.digest)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM tool_change WHERE server_id = $1 AND name = $2")
                        .bind(&server_id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
                    true
                }
            }
        });
        Ok(ok)
    }

    /// Marks the queued definition dismissed (it stays refused; not reported again).
    pub async fn dismiss_tool_change(
        &self,
        tenant_id: &str,
        server: &str,
        name: &str,
        digest: &str,
    ) -> Result<bool> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE tool_change SET status = 'dismissed' WHERE tenant_id = $1 AND name = $2 \
                 AND digest = $3 AND server_id = (SELECT server_id FROM mcp_server WHERE tenant_id = $1 AND slug = $4)",
            )
            .bind(tenant_id)
            .bind(name)
            .bind(digest)
            .bind(server)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            n
        });
        Ok(n > 0)
    }

    /// Tools of a server's catalog with no pin (recorded before pinning existed).
    pub async fn unpinned_tools(&self, tenant_id: &str, server: &str) -> Result<Vec<String>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_scalar(
                "SELECT t.name FROM server_tool t JOIN mcp_server s ON s.server_id = t.server_id \
                 WHERE t.tenant_id = $1 AND s.slug = $2 AND t.digest IS NULL ORDER BY t.name",
            )
            .bind(tenant_id)
            .bind(server)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }
}
