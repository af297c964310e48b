//! The audit log's rows (tenant-owned, append-only from the application's side), each tenant's
//! audit settings, and the SIEM destinations with their delivery cursors.

use super::{now_micros, Engine, Result, Store, StoreError};

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
    pub decision: Option<String>,
    pub client: Option<String>,
    pub agent: Option<String>,
    pub groups: Option<String>,
    pub ip: Option<String>,
    pub session_id: Option<String>,
    pub latency_us: Option<i64>,
    pub upstream_us: Option<i64>,
}

const COLUMNS: &str = "event_id, tenant_id, seq, at, category, action, actor_id, actor, server, \
     target, outcome, detail, prev_hash, hash, decision, client, agent, groups, ip, session_id, \
     latency_us, upstream_us";

/// What a search asks for (every field optional). Newest first, keyset by `seq`, unless
/// `ascending` (oldest first from `after_seq`: SIEM delivery).
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    pub category: Option<String>,
    /// The MCP method or event name (`tools/call`, `registry.create`); a trailing `*` matches a
    /// prefix (`tools/*`).
    pub action: Option<String>,
    /// The actor's email.
    pub actor: Option<String>,
    /// A group the actor was in when the event happened.
    pub group: Option<String>,
    pub agent: Option<String>,
    /// The MCP client (clientInfo name, a prefix matches).
    pub client: Option<String>,
    pub server: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    pub outcome: Option<String>,
    /// Text anywhere in the target (tool name, resource URI, prompt), any case.
    pub q: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Only events older than this `seq` (the previous page's last).
    pub before_seq: Option<i64>,
    /// Only events newer than this `seq` (with `ascending`).
    pub after_seq: Option<i64>,
    pub ascending: bool,
    pub limit: i64,
}

enum Bind {
    S(String),
    I(i64),
}

impl AuditQuery {
    /// The WHERE clause (after `tenant_id = $1`) and its values, for the filters present only
    /// (a generic plan with `$n IS NULL OR …` would not use the indexes at ten million rows).
    fn clause(&self) -> (String, Vec<Bind>) {
        let mut sql = String::new();
        let mut binds = Vec::new();
        let mut add = |sql: &mut String, cond: &str, b: Bind| {
            binds.push(b);
            sql.push_str(" AND ");
            sql.push_str(&cond.replace('?', &format!("${}", binds.len() + 1)));
        };
        fn text(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|s| !s.is_empty())
        }
        if let Some(v) = text(&self.category) {
            add(&mut sql, "category = ?", Bind::S(v.into()));
        }
        if let Some(v) = text(&self.action) {
            match v.strip_suffix('*') {
                Some(prefix) => add(
                    &mut sql,
                    "action LIKE ? ESCAPE '\\'",
                    Bind::S(format!("{}%", like_escape(prefix))),
                ),
                None => add(&mut sql, "action = ?", Bind::S(v.into())),
            }
        }
        if let Some(v) = text(&self.actor) {
            add(&mut sql, "actor = ?", Bind::S(v.to_lowercase()));
        }
        if let Some(v) = text(&self.group) {
            add(
                &mut sql,
                "groups LIKE ? ESCAPE '\\'",
                Bind::S(format!("%,{},%", like_escape(v))),
            );
        }
        if let Some(v) = text(&self.agent) {
            add(&mut sql, "agent = ?", Bind::S(v.into()));
        }
        if let Some(v) = text(&self.client) {
            add(
                &mut sql,
                "client LIKE ? ESCAPE '\\'",
                Bind::S(format!("{}%", like_escape(v))),
            );
        }
        if let Some(v) = text(&self.server) {
            add(&mut sql, "server = ?", Bind::S(v.into()));
        }
        if let Some(v) = text(&self.decision) {
            add(&mut sql, "decision = ?", Bind::S(v.into()));
        }
        if let Some(v) = text(&self.outcome) {
            add(&mut sql, "outcome = ?", Bind::S(v.into()));
        }
        if let Some(v) = text(&self.q) {
            add(
                &mut sql,
                "lower(target) LIKE ? ESCAPE '\\'",
                Bind::S(format!("%{}%", like_escape(&v.to_lowercase()))),
            );
        }
        if let Some(v) = self.since {
            add(&mut sql, "at >= ?", Bind::I(v));
        }
        if let Some(v) = self.until {
            add(&mut sql, "at < ?", Bind::I(v));
        }
        if let Some(v) = self.before_seq {
            add(&mut sql, "seq < ?", Bind::I(v));
        }
        if let Some(v) = self.after_seq {
            add(&mut sql, "seq > ?", Bind::I(v));
        }
        (sql, binds)
    }
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Calls per time bucket, and how many of them were denied.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Bucket {
    pub start: i64,
    pub calls: i64,
    pub denied: i64,
}

/// A name and how often it occurs (top tools, top users).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Count {
    pub name: String,
    pub count: i64,
}

/// How much a tenant's log holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct Volume {
    pub records: i64,
    pub oldest_at: Option<i64>,
    pub newest_seq: Option<i64>,
}

/// A tenant's audit settings (defaults when never saved).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AuditSettingsRow {
    pub arguments: String,
    pub retention_days: Option<i64>,
    pub retention_preset: Option<String>,
    pub legal_hold: bool,
    pub legal_hold_reason: Option<String>,
    pub last_purge_at: Option<i64>,
    pub last_purged: Option<i64>,
}

impl Default for AuditSettingsRow {
    fn default() -> Self {
        Self {
            arguments: "hashed".into(),
            retention_days: None,
            retention_preset: None,
            legal_hold: false,
            legal_hold_reason: None,
            last_purge_at: None,
            last_purged: None,
        }
    }
}

/// A SIEM destination as stored (its secret sealed).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SiemRow {
    pub destination_id: String,
    pub tenant_id: String,
    pub name: String,
    pub kind: String,
    pub settings: String,
    pub secret_sealed: Option<String>,
    pub enabled: bool,
    pub cursor_seq: i64,
    pub delivered: i64,
    pub last_ok_at: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    pub failures: i64,
    pub created_at: i64,
}

const SIEM_COLUMNS: &str = "destination_id, tenant_id, name, kind, settings, secret_sealed, \
     enabled, cursor_seq, delivered, last_ok_at, last_error, last_error_at, failures, created_at";

impl Store {
    /// Appends events to the tenant's chain in one transaction: reads the tail, then gives each
    /// event the next `seq` and its chain hash; returns the new tail (seq, hash). On PostgreSQL
    /// a per-tenant advisory lock makes replicas append one after another; on SQLite the unique
    /// `seq` refuses a racing append (a conflict the caller retries). On SQLite, a `known` tail
    /// (what this process appended last) skips the read: the events go in as one multi-row
    /// `INSERT` in autocommit — one statement, atomic and durable on return — and a tail that
    /// another process moved meanwhile makes it a conflict (the caller forgets it and retries).
    pub async fn append_audit(
        &self,
        tenant_id: &str,
        events: &[&Event],
        hash: fn(&str, &AuditRow) -> String,
        known: Option<(i64, String)>,
    ) -> Result<(i64, String)> {
        if let (Engine::Sqlite(pool), Some((seq, prev))) = (&self.engine, known) {
            let (rows, tail) = chain_rows(tenant_id, events, hash, seq, prev);
            if let [one] = rows.as_slice() {
                insert_rows(std::slice::from_ref(one))
                    .execute(pool)
                    .await
                    .map_err(super::conflict_as("audit sequence number"))?;
            } else {
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                for chunk in chunks(&rows) {
                    insert_rows(chunk)
                        .execute(&mut *tx)
                        .await
                        .map_err(super::conflict_as("audit sequence number"))?;
                }
                tx.commit().await?;
            }
            return Ok(tail);
        }
        let postgres = matches!(self.engine, Engine::Postgres(_));
        let tail = tenant_tx!(self, tenant_id, |tx| {
            if postgres {
                sqlx::query(
                    "SELECT pg_advisory_xact_lock(hashtextextended('portcullis.audit.' || $1, 0))",
                )
                .bind(tenant_id)
                .execute(&mut *tx)
                .await?;
            }
            let tail: Option<(i64, String)> = sqlx::query_as(
                "SELECT seq, hash FROM audit_event WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
            let (seq, prev) = match tail {
                Some(t) => t,
                // An emptied log (everything purged) goes on from its last purge's anchor.
                None => sqlx::query_as::<_, (i64, String)>(
                    "SELECT anchor_seq, anchor_hash FROM audit_anchor WHERE tenant_id = $1",
                )
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or((0, GENESIS.to_owned())),
            };
            let (rows, tail) = chain_rows(tenant_id, events, hash, seq, prev);
            for chunk in chunks(&rows) {
                insert_rows(chunk)
                    .execute(&mut *tx)
                    .await
                    .map_err(super::conflict_as("audit sequence number"))?;
            }
            tail
        });
        Ok(tail)
    }

    /// The seq and hash the tenant's retained chain starts after (0 and the genesis hash when
    /// nothing was ever purged).
    pub async fn audit_anchor(&self, tenant_id: &str) -> Result<(i64, String)> {
        let anchor: Option<(i64, String)> = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as("SELECT anchor_seq, anchor_hash FROM audit_anchor WHERE tenant_id = $1")
                .bind(tenant_id)
                .fetch_optional(&mut *tx)
                .await?
        });
        Ok(anchor.unwrap_or((0, GENESIS.to_owned())))
    }

    /// A tenant's chain in `seq` order from `after_seq`, at most `limit` rows (verification
    /// walks it page by page).
    pub async fn audit_chain_page(
        &self,
        tenant_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_event WHERE tenant_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3"
            )))
            .bind(tenant_id)
            .bind(after_seq)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// A real write that changes nothing (the audit change counter set to itself): whether the
    /// database takes writes again after a failure.
    pub async fn audit_write_probe(&self) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE change_counter SET version = version WHERE topic = 'audit'")
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A tenant's whole chain in `seq` order.
    pub async fn audit_chain(&self, tenant_id: &str) -> Result<Vec<AuditRow>> {
        self.audit_chain_page(tenant_id, 0, i64::MAX).await
    }

    /// Events matching `q` (newest first unless `q.ascending`).
    pub async fn search_audit(&self, tenant_id: &str, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let (clause, binds) = q.clause();
        let order = if q.ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_event WHERE tenant_id = $1{clause} \
             ORDER BY seq {order} LIMIT {}",
            q.limit.clamp(1, 10_000)
        );
        let rows = tenant_tx!(self, tenant_id, |tx| {
            let mut query =
                sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(sql.clone())).bind(tenant_id);
            for b in &binds {
                query = match b {
                    Bind::S(s) => query.bind(s.clone()),
                    Bind::I(i) => query.bind(*i),
                };
            }
            query.fetch_all(&mut *tx).await?
        });
        Ok(rows)
    }

    /// How many events match `q` (its keyset and limit aside), counting no further than
    /// `cap + 1` when a cap is given (a page that shows "100,000+" need not count ten million).
    pub async fn count_audit(
        &self,
        tenant_id: &str,
        q: &AuditQuery,
        cap: Option<i64>,
    ) -> Result<i64> {
        let mut q = q.clone();
        q.before_seq = None;
        q.after_seq = None;
        let (clause, binds) = q.clause();
        let sql = match cap {
            Some(cap) => format!(
                "SELECT count(*) FROM (SELECT 1 FROM audit_event WHERE tenant_id = $1{clause} LIMIT {}) capped",
                cap.saturating_add(1)
            ),
            None => format!("SELECT count(*) FROM audit_event WHERE tenant_id = $1{clause}"),
        };
        let n = tenant_tx!(self, tenant_id, |tx| {
            let mut query =
                sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.clone())).bind(tenant_id);
            for b in &binds {
                query = match b {
                    Bind::S(s) => query.bind(s.clone()),
                    Bind::I(i) => query.bind(*i),
                };
            }
            query.fetch_one(&mut *tx).await?
        });
        Ok(n)
    }

    /// One event by id.
    pub async fn audit_event(&self, tenant_id: &str, event_id: &str) -> Result<AuditRow> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, AuditRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM audit_event WHERE tenant_id = $1 AND event_id = $2"
            )))
            .bind(tenant_id)
            .bind(event_id)
            .fetch_optional(&mut *tx)
            .await?
        });
        row.ok_or(StoreError::NotFound)
    }

    /// MCP calls per bucket of `bucket_us` since `since`, with denials.
    pub async fn audit_buckets(
        &self,
        tenant_id: &str,
        since: i64,
        bucket_us: i64,
    ) -> Result<Vec<Bucket>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, Bucket>(
                "SELECT (at / $3) * $3 AS start, count(*) AS calls, \
                 coalesce(sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END), 0) AS denied \
                 FROM audit_event WHERE tenant_id = $1 AND category = 'mcp' AND at >= $2 \
                 GROUP BY 1 ORDER BY 1",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(bucket_us)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// The most called tools (`server/tool`) and the most active users since `since`.
    pub async fn audit_top(
        &self,
        tenant_id: &str,
        since: i64,
        limit: i64,
    ) -> Result<(Vec<Count>, Vec<Count>)> {
        let (tools, users) = tenant_tx!(self, tenant_id, |tx| {
            let tools = sqlx::query_as::<_, Count>(
                "SELECT coalesce(server, '') || '/' || coalesce(target, '') AS name, count(*) AS count \
                 FROM audit_event WHERE tenant_id = $1 AND action = 'tools/call' AND at >= $2 \
                 GROUP BY server, target ORDER BY count(*) DESC, name LIMIT $3",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            let users = sqlx::query_as::<_, Count>(
                "SELECT actor AS name, count(*) AS count FROM audit_event \
                 WHERE tenant_id = $1 AND category = 'mcp' AND actor IS NOT NULL AND at >= $2 \
                 GROUP BY actor ORDER BY count(*) DESC, actor LIMIT $3",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            (tools, users)
        });
        Ok((tools, users))
    }

    /// How many records the tenant's log holds and how old the oldest is.
    pub async fn audit_volume(&self, tenant_id: &str) -> Result<Volume> {
        let v = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, Volume>(
                "SELECT count(*) AS records, min(at) AS oldest_at, max(seq) AS newest_seq \
                 FROM audit_event WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(v)
    }

    // ---- settings ----------------------------------------------------------------------

    pub async fn audit_settings(&self, tenant_id: &str) -> Result<AuditSettingsRow> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, AuditSettingsRow>(
                "SELECT arguments, retention_days, retention_preset, legal_hold, \
                 legal_hold_reason, last_purge_at, last_purged FROM audit_settings WHERE tenant_id = $1",
            )
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row.unwrap_or_default())
    }

    /// Saves the settings a person changes (argument policy, retention, legal hold); bumps the
    /// `audit` change counter so every replica's gateway picks the argument policy up.
    pub async fn save_audit_settings(&self, tenant_id: &str, s: &AuditSettingsRow) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO audit_settings (tenant_id, arguments, retention_days, retention_preset, \
                 legal_hold, legal_hold_reason, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant_id) DO UPDATE SET arguments = $2, retention_days = $3, \
                 retention_preset = $4, legal_hold = $5, legal_hold_reason = $6, updated_at = $7",
            )
            .bind(tenant_id)
            .bind(&s.arguments)
            .bind(s.retention_days)
            .bind(&s.retention_preset)
            .bind(s.legal_hold)
            .bind(&s.legal_hold_reason)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE change_counter SET version = version + 1 WHERE topic = 'audit'")
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// Every tenant's argument policy (for the gateway snapshot).
    pub async fn argument_policies(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for t in self.list_tenants().await? {
            let s = self.audit_settings(&t.tenant_id).await?;
            out.push((t.tenant_id, s.arguments));
        }
        Ok(out)
    }

    // ---- retention ---------------------------------------------------------------------

    /// The last seq (and its hash) recorded before `cutoff`: a purge removes the chain up to
    /// and with it. `None` when nothing is that old.
    pub async fn audit_purge_point(
        &self,
        tenant_id: &str,
        cutoff: i64,
    ) -> Result<Option<(i64, String, i64)>> {
        let point = tenant_tx!(self, tenant_id, |tx| {
            let last: Option<(i64,)> = sqlx::query_as(
                "SELECT max(seq) FROM audit_event WHERE tenant_id = $1 AND at < $2 HAVING count(*) > 0",
            )
            .bind(tenant_id)
            .bind(cutoff)
            .fetch_optional(&mut *tx)
            .await?;
            match last {
                Some((seq,)) => {
                    let (hash, n): (String, i64) = sqlx::query_as(
                        "SELECT (SELECT hash FROM audit_event WHERE tenant_id = $1 AND seq = $2), \
                         (SELECT count(*) FROM audit_event WHERE tenant_id = $1 AND seq <= $2)",
                    )
                    .bind(tenant_id)
                    .bind(seq)
                    .fetch_one(&mut *tx)
                    .await?;
                    Some((seq, hash, n))
                }
                None => None,
            }
        });
        Ok(point)
    }

    /// The retained chain will start after `through_seq` (whose hash it links to): written
    /// before any row goes, so that a purge cut short still verifies.
    pub async fn set_audit_anchor(
        &self,
        tenant_id: &str,
        through_seq: i64,
        through_hash: &str,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO audit_anchor (tenant_id, anchor_seq, anchor_hash) VALUES ($1, $2, $3) \
                 ON CONFLICT (tenant_id) DO UPDATE SET anchor_seq = $2, anchor_hash = $3",
            )
            .bind(tenant_id)
            .bind(through_seq)
            .bind(through_hash)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Deletes the tenant's records through `through_seq` (those dropped partitions did not
    /// take) and notes the purge in its settings. Returns how many rows this call deleted.
    pub async fn purge_audit_through(
        &self,
        tenant_id: &str,
        through_seq: i64,
        removed: i64,
    ) -> Result<u64> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query("DELETE FROM audit_event WHERE tenant_id = $1 AND seq <= $2")
                .bind(tenant_id)
                .bind(through_seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "INSERT INTO audit_settings (tenant_id, updated_at, last_purge_at, last_purged) \
                 VALUES ($1, $2, $2, $3) ON CONFLICT (tenant_id) DO UPDATE SET last_purge_at = $2, \
                 last_purged = $3",
            )
            .bind(tenant_id)
            .bind(now_micros())
            .bind(removed)
            .execute(&mut *tx)
            .await?;
            n
        });
        Ok(n)
    }

    /// PostgreSQL: drops the monthly partitions that ended before `before` and hold only rows
    /// the given purges cover. Returns the rows they held (0 on SQLite).
    pub async fn drop_covered_partitions(
        &self,
        purges: &[(String, i64)],
        before: i64,
    ) -> Result<i64> {
        let Engine::Postgres(pool) = &self.engine else {
            return Ok(0);
        };
        let tenants: Vec<String> = purges.iter().map(|(t, _)| t.clone()).collect();
        let through: Vec<i64> = purges.iter().map(|(_, s)| *s).collect();
        let (n,): (i64,) = sqlx::query_as("SELECT portcullis_audit_drop_covered($1, $2, $3)")
            .bind(tenants)
            .bind(through)
            .bind(before)
            .fetch_one(pool)
            .await?;
        Ok(n)
    }

    /// PostgreSQL: makes sure the monthly partitions for `at` values exist.
    pub async fn ensure_audit_partitions(&self, ats: &[i64]) -> Result<()> {
        let Engine::Postgres(pool) = &self.engine else {
            return Ok(());
        };
        for at in ats {
            sqlx::query("SELECT portcullis_audit_partition($1)")
                .bind(*at)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    // ---- SIEM destinations -------------------------------------------------------------

    pub async fn list_siem(&self, tenant_id: &str) -> Result<Vec<SiemRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, SiemRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {SIEM_COLUMNS} FROM siem_destination WHERE tenant_id = $1 ORDER BY name"
            )))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// A new destination; delivery starts after `start_seq` (the log's tail when it is made,
    /// unless it asked for history).
    pub async fn create_siem(
        &self,
        tenant_id: &str,
        name: &str,
        kind: &str,
        settings: &str,
        secret_sealed: Option<&str>,
        start_seq: i64,
    ) -> Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO siem_destination (destination_id, tenant_id, name, kind, settings, \
                 secret_sealed, enabled, cursor_seq, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&id)
            .bind(tenant_id)
            .bind(name)
            .bind(kind)
            .bind(settings)
            .bind(secret_sealed)
            .bind(true)
            .bind(start_seq)
            .bind(now_micros())
            .execute(&mut *tx)
            .await
            .map_err(super::conflict_as("destination"))?;
        });
        Ok(id)
    }

    /// Marks where a destination's secret is (`vault`), after it moved there.
    pub async fn set_siem_secret_marker(
        &self,
        tenant_id: &str,
        id: &str,
        marker: &str,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "UPDATE siem_destination SET secret_sealed = $3 WHERE tenant_id = $1 AND destination_id = $2",
            )
            .bind(tenant_id)
            .bind(id)
            .bind(marker)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_siem(&self, tenant_id: &str, id: &str) -> Result<SiemRow> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            let row = sqlx::query_as::<_, SiemRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {SIEM_COLUMNS} FROM siem_destination WHERE tenant_id = $1 AND destination_id = $2"
            )))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if row.is_some() {
                sqlx::query(
                    "DELETE FROM vault_secret WHERE tenant_id = $1 AND owner_table = 'siem_destination' \
                     AND owner_id = $2",
                )
                .bind(tenant_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM siem_destination WHERE tenant_id = $1 AND destination_id = $2",
                )
                .bind(tenant_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            row
        });
        row.ok_or(StoreError::NotFound)
    }

    pub async fn set_siem_enabled(&self, tenant_id: &str, id: &str, enabled: bool) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "UPDATE siem_destination SET enabled = $3 WHERE tenant_id = $1 AND destination_id = $2",
            )
            .bind(tenant_id)
            .bind(id)
            .bind(enabled)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// After a receiver took events through `seq`: the cursor moves on (only forward).
    pub async fn siem_delivered(
        &self,
        tenant_id: &str,
        id: &str,
        seq: i64,
        count: i64,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "UPDATE siem_destination SET cursor_seq = $3, delivered = delivered + $4, \
                 last_ok_at = $5, failures = 0 WHERE tenant_id = $1 AND destination_id = $2 AND cursor_seq < $3",
            )
            .bind(tenant_id)
            .bind(id)
            .bind(seq)
            .bind(count)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    pub async fn siem_failed(&self, tenant_id: &str, id: &str, error: &str) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "UPDATE siem_destination SET last_error = $3, last_error_at = $4, \
                 failures = failures + 1 WHERE tenant_id = $1 AND destination_id = $2",
            )
            .bind(tenant_id)
            .bind(id)
            .bind(error)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }
}

/// The rows of `events` chained after (seq, prev), and the new tail.
fn chain_rows(
    tenant_id: &str,
    events: &[&Event],
    hash: fn(&str, &AuditRow) -> String,
    mut seq: i64,
    mut prev: String,
) -> (Vec<AuditRow>, (i64, String)) {
    let mut rows = Vec::with_capacity(events.len());
    // `at` strictly increasing within a group.
    for (at, e) in (now_micros()..).zip(events.iter()) {
        seq += 1;
        let mut row = row_of(tenant_id, seq, at, e, &prev);
        row.hash = hash(&prev, &row);
        prev.clone_from(&row.hash);
        rows.push(row);
    }
    (rows, (seq, prev))
}

/// The rows in runs of a power of two (largest first): each run is one `INSERT`, and the
/// statements a connection prepares and caches stay nine shapes (1 to 256 rows) instead of one
/// per group size.
fn chunks(rows: &[AuditRow]) -> Vec<&[AuditRow]> {
    let mut out = Vec::new();
    let mut rest = rows;
    while !rest.is_empty() {
        let n = 1 << (usize::BITS - 1 - rest.len().min(256).leading_zeros());
        let (run, tail) = rest.split_at(n);
        out.push(run);
        rest = tail;
    }
    out
}

/// One `INSERT` of every row (22 parameters a row: runs of at most 256 rows stay far under
/// both engines' parameter limits).
fn insert_rows<'q, DB: sqlx::Database>(
    rows: &'q [AuditRow],
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut sql = format!("INSERT INTO audit_event ({COLUMNS}) VALUES ");
    for i in 0..rows.len() {
        let b = i * 22;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for j in 1..=22 {
            if j > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", b + j));
        }
        sql.push(')');
    }
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in rows {
        q = q
            .bind(row.event_id.clone())
            .bind(row.tenant_id.clone())
            .bind(row.seq)
            .bind(row.at)
            .bind(row.category.clone())
            .bind(row.action.clone())
            .bind(row.actor_id.clone())
            .bind(row.actor.clone())
            .bind(row.server.clone())
            .bind(row.target.clone())
            .bind(row.outcome.clone())
            .bind(row.detail.clone())
            .bind(row.prev_hash.clone())
            .bind(row.hash.clone())
            .bind(row.decision.clone())
            .bind(row.client.clone())
            .bind(row.agent.clone())
            .bind(row.groups.clone())
            .bind(row.ip.clone())
            .bind(row.session_id.clone())
            .bind(row.latency_us)
            .bind(row.upstream_us);
    }
    q
}

fn row_of(tenant_id: &str, seq: i64, at: i64, e: &Event, prev: &str) -> AuditRow {
    AuditRow {
        event_id: uuid::Uuid::now_v7().to_string(),
        tenant_id: tenant_id.to_owned(),
        seq,
        at,
        category: e.category.as_str().to_owned(),
        action: e.action.clone(),
        actor_id: e.actor_id.clone(),
        actor: e.actor.clone(),
        server: e.server.clone(),
        target: e.target.clone(),
        outcome: e.outcome.clone(),
        detail: e.detail.to_string(),
        prev_hash: prev.to_owned(),
        hash: String::new(),
        decision: e.decision.clone(),
        client: e.client.clone(),
        agent: e.agent.clone(),
        groups: (!e.groups.is_empty()).then(|| format!(",{},", e.groups.join(","))),
        ip: e.ip.clone(),
        session_id: e.session_id.clone(),
        latency_us: e.latency_us,
        upstream_us: e.upstream_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_in_as_runs_of_a_power_of_two_largest_first() {
        let e = Event::new("t", crate::audit::Category::Mcp, "tools/call", "ok");
        let rows: Vec<AuditRow> = (0..600).map(|i| row_of("t", i, i, &e, "")).collect();
        for n in [0, 1, 2, 3, 7, 64, 255, 256, 257, 600] {
            let sizes: Vec<usize> = chunks(&rows[..n]).iter().map(|c| c.len()).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n, "{sizes:?}");
            assert!(
                sizes.iter().all(|s| s.is_power_of_two() && *s <= 256),
                "{sizes:?}"
            );
            assert!(sizes.windows(2).all(|w| w[0] >= w[1]), "{sizes:?}");
        }
        assert_eq!(
            chunks(&rows[..7])
                .iter()
                .map(|c| c.len())
                .collect::<Vec<_>>(),
            [4, 2, 1]
        );
        // Each run keeps the rows' order.
        let runs = chunks(&rows[..3]);
        assert_eq!((runs[0][0].seq, runs[0][1].seq, runs[1][0].seq), (0, 1, 2));
    }
}
