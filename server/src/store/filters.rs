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

    /// MCP records since `since` (µs) that the filters acted on: (at, outcome, detail JSON).
    /// Bounded to the latest 50,000.
    pub async fn filter_activity(
        &self,
        tenant_id: &str,
        since: i64,
    ) -> Result<Vec<(i64, String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (i64, String, String)>(
                "SELECT at, outcome, detail FROM audit_event WHERE tenant_id = $1 AND at >= $2 \
                 AND category = 'mcp' AND (detail LIKE '%\"filters\"%' OR detail LIKE '%\"injection\"%') \
                 ORDER BY at DESC LIMIT 50000",
            )
            .bind(tenant_id)
            .bind(since)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }
}
