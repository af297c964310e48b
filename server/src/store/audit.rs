//! The audit log's rows (tenant-owned, append-only from the application's side).

use super::{now_micros, Engine, Result, Store};
use crate::audit::{Event, GENESIS};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AuditRow {
    pub event_id: String,
    pub tenant_id: String,
    pub seq: i64,
    pub at: i64,
    pub category: String,
    pub action: String,
    pub actor_id: Option<String>,
    pub actor: Option<String>,
    pub server: Option<String>,
    pub target: Option<String>,
    pub outcome: String,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

const COLUMNS: &str = "event_id, tenant_id, seq, at, category, action, actor_id, actor, server, \
     target, outcome, detail, prev_hash, hash";

/// What a search asks for (every field optional; newest first, keyset by `seq`).
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub category: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub server: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only events older than this `seq` (the previous page's last).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

impl Store {
    /// Appends events to the tenant's chain in one transaction: reads the tail, then gives each
    /// event the next `seq` and its chain hash. A concurrent append by another replica makes
    /// this fail with a conflict (unique `seq`); the caller retries.
    pub async fn append_audit(
        &self,
        tenant_id: &str,
        events: &[&Event],
        hash: fn(&str, &AuditRow) -> String,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            let tail: Option<(i64, String)> = sqlx::query_as(
                "SELECT seq, hash FROM audit_event WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (mut seq, mut prev) = tail.unwrap_or((0, GENESIS.to_owned()));
            for e in events {
                seq += 1;
                let mut row = AuditRow {
                    event_id: uuid::Uuid::now_v7().to_string(),
                    tenant_id: tenant_id.to_owned(),
                    seq,
                    at: now_micros(),
                    category: e.category.as_str().to_owned(),
                    action: e.action.clone(),
                    actor_id: e.actor_id.clone(),
                    actor: e.actor.clone(),
                    server: e.server.clone(),
                    target: e.target.clone(),
                    outcome: e.outcome.clone(),
                    detail: e.detail.to_string(),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                row.hash = hash(&prev, &row);
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO audit_event ({COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                )))
                .bind(&row.event_id)
                .bind(&row.tenant_id)
                .bind(row.seq)
                .bind(row.at)
                .bind(&row.category)
                .bind(&row.action)
                .bind(&row.actor_id)
                .bind(&row.actor)
                .bind(&row.server)
                .bind(&row.target)
                .bind(&row.outcome)
                .bind(&row.detail)
                .bind(&row.prev_hash)
                .bind(&row.hash)
                .execute(&mut *tx)
                .await
                .map_err(super::conflict_as("audit sequence number"))?;
                prev = row.hash;
            }
        });
        Ok(())
    }

    /// A tenant's whole chain in `seq` order (for verification).
    pub async fn audit_chain(&self, tenant_id: &str) -> Result<Vec<AuditRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_event WHERE tenant_id = $1 ORDER BY seq"
            )))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Events matching `q`, newest first.
    pub async fn search_audit(&self, tenant_id: &str, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_event WHERE tenant_id = $1 \
                 AND ($2 IS NULL OR category = $2) AND ($3 IS NULL OR action = $3) \
                 AND ($4 IS NULL OR actor = $4) AND ($5 IS NULL OR server = $5) \
                 AND ($6 IS NULL OR at >= $6) AND ($7 IS NULL OR at < $7) \
                 AND ($8 IS NULL OR seq < $8) ORDER BY seq DESC LIMIT $9"
            )))
            .bind(tenant_id)
            .bind(&q.category)
            .bind(&q.action)
            .bind(&q.actor)
            .bind(&q.server)
            .bind(q.since)
            .bind(q.until)
            .bind(q.before_seq)
            .bind(q.limit)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }
}
