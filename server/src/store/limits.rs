//! Rate-limit rules (tenant-owned).

use super::{now_micros, Engine, Result, Store, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct LimitRow {
    pub limit_id: String,
    pub subject: String,
    pub value: String,
    pub requests_per_minute: Option<i64>,
    pub concurrent: Option<i64>,
    pub per_day: Option<i64>,
}

const BUMP: &str = "UPDATE change_counter SET version = version + 1 WHERE topic = 'limits'";

impl Store {
    pub async fn list_limits(&self, tenant_id: &str) -> Result<Vec<LimitRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, LimitRow>(
                "SELECT limit_id, subject, value, requests_per_minute, concurrent, per_day \
                 FROM rate_limit WHERE tenant_id = $1 ORDER BY created_at",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn create_limit(&self, tenant_id: &str, l: &LimitRow) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO rate_limit (limit_id, tenant_id, subject, value, requests_per_minute, \
                 concurrent, per_day, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&l.limit_id)
            .bind(tenant_id)
            .bind(&l.subject)
            .bind(&l.value)
            .bind(l.requests_per_minute)
            .bind(l.concurrent)
            .bind(l.per_day)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(())
    }

    pub async fn delete_limit(&self, tenant_id: &str, limit_id: &str) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query("DELETE FROM rate_limit WHERE tenant_id = $1 AND limit_id = $2")
                .bind(tenant_id)
                .bind(limit_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(BUMP).execute(&mut *tx).await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
