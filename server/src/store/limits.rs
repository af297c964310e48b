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

/// One replica's count for a rule's window, to add to the shared total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterDelta {
    pub limit_id: String,
    pub value: String,
    /// `minute` or `day`.
    pub kind: &'static str,
    pub window: i64,
    pub delta: i64,
}

/// A shared counter's total, as read back.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct CounterTotal {
    pub limit_id: String,
    pub value: String,
    pub kind: String,
    pub window_start: i64,
    pub count: i64,
}

impl Store {
    /// Adds each delta to its shared counter, then reads every counter of the windows
    /// `(minute, day)` that any replica changed since `since` (µs); windows older than the
    /// previous minute and day are deleted when `forget` is set.
    pub async fn add_limit_counts(
        &self,
        tenant_id: &str,
        deltas: &[CounterDelta],
        (minute, day): (i64, i64),
        since: i64,
        forget: bool,
    ) -> Result<Vec<CounterTotal>> {
        let now = now_micros();
        let totals = tenant_tx!(self, tenant_id, |tx| {
            for d in deltas.iter().filter(|d| d.delta > 0) {
                sqlx::query(
                    "INSERT INTO limit_counter (tenant_id, limit_id, value, kind, window_start, count, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (tenant_id, limit_id, value, kind, window_start) \
                     DO UPDATE SET count = limit_counter.count + excluded.count, updated_at = excluded.updated_at",
                )
                .bind(tenant_id)
                .bind(&d.limit_id)
                .bind(&d.value)
                .bind(d.kind)
                .bind(d.window)
                .bind(d.delta)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            if forget {
                sqlx::query(
                    "DELETE FROM limit_counter WHERE tenant_id = $1 AND \
                     ((kind = 'minute' AND window_start < $2) OR (kind = 'day' AND window_start < $3))",
                )
                .bind(tenant_id)
                .bind(minute - 1)
                .bind(day - 1)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query_as::<_, CounterTotal>(
                "SELECT limit_id, value, kind, window_start, count FROM limit_counter \
                 WHERE tenant_id = $1 AND updated_at >= $2 AND \
                 ((kind = 'minute' AND window_start = $3) OR (kind = 'day' AND window_start = $4))",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(minute)
            .bind(day)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(totals)
    }
}
