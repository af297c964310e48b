//! Filter policies (tenant-owned): per server slug or '*' for the tenant's default. Writes
//! bump the `servers` counter: the gateway snapshot holds the policies.

use super::{now_micros, Engine, Result, Store};

const BUMP: &str = "UPDATE change_counter SET version = version + 1 WHERE topic = 'servers'";

impl Store {
    /// Every filter policy of the tenant: (server slug or '*', settings JSON).
    pub async fn filter_policies(&self, tenant_id: &str) -> Result<Vec<(String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT server_slug, settings FROM filter_policy WHERE tenant_id = $1 \
                 ORDER BY server_slug",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn put_filter_policy(
        &self,
        tenant_id: &str,
        server_slug: &str,
        settings: &str,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO filter_policy (tenant_id, server_slug, settings, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, server_slug) \
                 DO UPDATE SET settings = excluded.settings, updated_at = excluded.updated_at",
            )
            .bind(tenant_id)
            .bind(server_slug)
            .bind(settings)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// Whether there was one.
    pub async fn delete_filter_policy(&self, tenant_id: &str, server_slug: &str) -> Result<bool> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n =
                sqlx::query("DELETE FROM filter_policy WHERE tenant_id = $1 AND server_slug = $2")
                    .bind(tenant_id)
                    .bind(server_slug)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            sqlx::query(BUMP).execute(&mut *tx).await?;
            n
        });
        Ok(n > 0)
    }

    /// MCP records since `since` (µs) that the filters acted on, on answers or on arguments:
    /// (at, outcome, detail JSON).
    /// Bounded to the latest 50,000.
    pub async fn filter_activity(
        &self,
        tenant_id: &str,
        since: i64,
    ) -> Result<Vec<(i64, String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (i64, String, String)>(
                "SELECT at, outcome, detail FROM audit_event WHERE tenant_id = $1 AND at >= $2 \
                 AND category = 'mcp' AND (detail LIKE '%\"filters\"%' OR detail LIKE '%\"injection\"%' \
                 OR detail LIKE '%\"arguments_filters\"%') \
                 ORDER BY at DESC LIMIT 50000",
            )
            .bind(tenant_id)
            .bind(since)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Adds tallies to the data inventory (one transaction for the tenant).
    pub async fn add_inventory(
        &self,
        tenant_id: &str,
        rows: &[(String, String, crate::filters::inventory::Tally)],
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            for (server, category, t) in rows {
                sqlx::query(
                    "INSERT INTO data_inventory (tenant_id, server_slug, category, answers, findings, \
                     first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant_id, server_slug, category) DO UPDATE SET \
                     answers = data_inventory.answers + excluded.answers, \
                     findings = data_inventory.findings + excluded.findings, \
                     first_seen_at = CASE WHEN excluded.first_seen_at < data_inventory.first_seen_at \
                       THEN excluded.first_seen_at ELSE data_inventory.first_seen_at END, \
                     last_seen_at = CASE WHEN excluded.last_seen_at > data_inventory.last_seen_at \
                       THEN excluded.last_seen_at ELSE data_inventory.last_seen_at END",
                )
                .bind(tenant_id)
                .bind(server)
                .bind(category)
                .bind(t.answers as i64)
                .bind(t.findings as i64)
                .bind(t.first)
                .bind(t.last)
                .execute(&mut *tx)
                .await?;
            }
        });
        Ok(())
    }

    /// The data inventory: (server, category, answers, findings, first seen, last seen).
    #[allow(clippy::type_complexity)]
    pub async fn inventory(
        &self,
        tenant_id: &str,
        server: Option<&str>,
    ) -> Result<Vec<(String, String, i64, i64, i64, i64)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String, i64, i64, i64, i64)>(
                "SELECT server_slug, category, answers, findings, first_seen_at, last_seen_at \
                 FROM data_inventory WHERE tenant_id = $1 AND ($2 = '' OR server_slug = $2) \
                 ORDER BY server_slug, category",
            )
            .bind(tenant_id)
            .bind(server.unwrap_or(""))
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// The tenant's filter hooks, oldest first.
    pub async fn filter_hooks(&self, tenant_id: &str) -> Result<Vec<FilterHookRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, FilterHookRow>(
                "SELECT hook_id, server_slug, url, timeout_ms, fail_mode, created_at FROM filter_hook \
                 WHERE tenant_id = $1 ORDER BY created_at, hook_id",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn insert_filter_hook(&self, tenant_id: &str, h: &FilterHookRow) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO filter_hook (hook_id, tenant_id, server_slug, url, timeout_ms, fail_mode, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&h.hook_id)
            .bind(tenant_id)
            .bind(&h.server_slug)
            .bind(&h.url)
            .bind(h.timeout_ms)
            .bind(&h.fail_mode)
            .bind(h.created_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// Whether there was one.
    pub async fn delete_filter_hook(&self, tenant_id: &str, hook_id: &str) -> Result<bool> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query("DELETE FROM filter_hook WHERE tenant_id = $1 AND hook_id = $2")
                .bind(tenant_id)
                .bind(hook_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(BUMP).execute(&mut *tx).await?;
            n
        });
        Ok(n > 0)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FilterHookRow {
    pub hook_id: String,
    pub server_slug: String,
    pub url: String,
    pub timeout_ms: i64,
    pub fail_mode: String,
    pub created_at: i64,
}
