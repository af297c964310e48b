//! What the Security Review Pack, the dashboard and the anomaly signals read (tenant-owned):
//! aggregates over the audit log, admins' tool classifications and raised signals.

use super::{now_micros, Engine, Result, Store};

const BUMP_IDENTITY: &str =
    "UPDATE change_counter SET version = version + 1 WHERE topic = 'identity'";

/// One UTC day of MCP traffic.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct DayRow {
    /// Days since the Unix epoch.
    pub day: i64,
    pub calls: i64,
    pub denials: i64,
    pub users: i64,
}

/// Per client and server in a period: calls, distinct users, the last call.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct FlowRow {
    pub client: Option<String>,
    pub server: Option<String>,
    pub calls: i64,
    pub users: i64,
    pub last_at: i64,
}

/// One hour of one subject's MCP traffic (the signals' baseline). In these rows `agent` is the
/// agent principal of a call to an agent endpoint (the record's `agent` elsewhere names the
/// credential a user's client presented, which is still the user's call).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct HourRow {
    pub actor: Option<String>,
    pub agent: Option<String>,
    /// Hours since the Unix epoch.
    pub hour: i64,
    pub calls: i64,
    pub denials: i64,
    pub filtered: i64,
}

/// One MCP record as the signals read it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SignalRecordRow {
    pub seq: i64,
    pub at: i64,
    pub action: String,
    pub actor: Option<String>,
    pub agent: Option<String>,
    pub server: Option<String>,
    pub target: Option<String>,
    pub decision: Option<String>,
    /// The filters acted on the answer (personal data, secrets or an injection verdict).
    pub filtered: bool,
    /// The answer carried a prompt-injection verdict.
    pub injection: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct SignalRow {
    pub signal_id: String,
    pub dedup_key: String,
    pub kind: String,
    pub subject: String,
    pub severity: String,
    pub at: i64,
    pub summary: String,
    pub detail: String,
}

const DAY_US: i64 = 86_400_000_000;
const HOUR_US: i64 = 3_600_000_000;

impl Store {
    /// Admins' tool classes: (server slug, tool, class), sorted.
    pub async fn tool_class_overrides(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<(String, String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String, String)>(
                "SELECT s.slug, o.name, o.class FROM tool_class_override o \
                 JOIN mcp_server s ON s.server_id = o.server_id \
                 WHERE o.tenant_id = $1 ORDER BY s.slug, o.name",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Sets (or, with `None`, clears) an admin's class for a tool; bumps `identity` (the
    /// policy reads the classes).
    pub async fn set_tool_class(
        &self,
        tenant_id: &str,
        server_id: &str,
        tool: &str,
        class: Option<&str>,
        by: &str,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            match class {
                Some(class) => {
                    sqlx::query(
                        "INSERT INTO tool_class_override (tenant_id, server_id, name, class, set_by, set_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (server_id, name) \
                         DO UPDATE SET class = excluded.class, set_by = excluded.set_by, set_at = excluded.set_at",
                    )
                    .bind(tenant_id)
                    .bind(server_id)
                    .bind(tool)
                    .bind(class)
                    .bind(by)
                    .bind(now_micros())
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "DELETE FROM tool_class_override WHERE tenant_id = $1 AND server_id = $2 AND name = $3",
                    )
                    .bind(tenant_id)
                    .bind(server_id)
                    .bind(tool)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// The reviewed catalog with review times: (server slug, tool, annotations JSON, reviewed
    /// at, pinned digest).
    pub async fn catalog_rows(
        &self,
        tenant_id: &str,
    ) -> Result<Vec<(String, String, String, i64, Option<String>)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String, String, i64, Option<String>)>(
                "SELECT s.slug, t.name, t.annotations, t.reviewed_at, t.digest FROM server_tool t \
                 JOIN mcp_server s ON s.server_id = t.server_id WHERE t.tenant_id = $1 \
                 ORDER BY s.slug, t.name",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Servers' `new_tools` settings: (slug, `allow`|`deny`).
    pub async fn new_tools_settings(&self, tenant_id: &str) -> Result<Vec<(String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT slug, new_tools FROM mcp_server WHERE tenant_id = $1 ORDER BY slug",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Events other than MCP requests in `[since, until)`: (action, count), by action.
    pub async fn audit_action_counts(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT action, count(*) FROM audit_event WHERE tenant_id = $1 AND at >= $2 \
                 AND at < $3 AND category <> 'mcp' GROUP BY action ORDER BY action",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// When an action matching `pattern` (SQL LIKE) last happened, if ever.
    pub async fn audit_last(&self, tenant_id: &str, pattern: &str) -> Result<Option<i64>> {
        let at = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT max(at) FROM audit_event WHERE tenant_id = $1 AND action LIKE $2",
            )
            .bind(tenant_id)
            .bind(pattern)
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(at)
    }

    /// Records per UTC day over the whole log: (day, records, MCP records).
    pub async fn audit_days(&self, tenant_id: &str) -> Result<Vec<(i64, i64, i64)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (i64, i64, i64)>(
                "SELECT at / $2 AS day, count(*), \
                 coalesce(sum(CASE WHEN category = 'mcp' THEN 1 ELSE 0 END), 0) \
                 FROM audit_event WHERE tenant_id = $1 GROUP BY 1 ORDER BY 1",
            )
            .bind(tenant_id)
            .bind(DAY_US)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// MCP traffic per UTC day in `[since, until)`.
    pub async fn mcp_days(&self, tenant_id: &str, since: i64, until: i64) -> Result<Vec<DayRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, DayRow>(
                "SELECT at / $4 AS day, count(*) AS calls, \
                 coalesce(sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END), 0) AS denials, \
                 count(DISTINCT actor) AS users \
                 FROM audit_event WHERE tenant_id = $1 AND category = 'mcp' AND at >= $2 AND at < $3 \
                 GROUP BY 1 ORDER BY 1",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .bind(DAY_US)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Distinct active callers in `[since, until)`.
    pub async fn mcp_users(&self, tenant_id: &str, since: i64, until: i64) -> Result<i64> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(DISTINCT actor) FROM audit_event WHERE tenant_id = $1 \
                 AND category = 'mcp' AND at >= $2 AND at < $3 AND actor IS NOT NULL",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(n)
    }

    /// The most called servers in `[since, until)`: (server, calls).
    pub async fn top_servers(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT server, count(*) FROM audit_event WHERE tenant_id = $1 AND category = 'mcp' \
                 AND server IS NOT NULL AND at >= $2 AND at < $3 \
                 GROUP BY server ORDER BY count(*) DESC, server LIMIT $4",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Which clients called which servers in `[since, until)` (answered requests only: a
    /// refused call carried no data to the client).
    pub async fn client_flows(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<FlowRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, FlowRow>(
                "SELECT client, server, count(*) AS calls, count(DISTINCT actor) AS users, \
                 max(at) AS last_at FROM audit_event WHERE tenant_id = $1 AND category = 'mcp' \
                 AND at >= $2 AND at < $3 AND server IS NOT NULL AND outcome = 'ok' \
                 GROUP BY client, server ORDER BY client, server",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// The user agents each client came with in `[since, until)`: (client, user agent).
    pub async fn client_user_agents(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<(Option<String>, String)>> {
        let sql = match &self.engine {
            Engine::Sqlite(_) => {
                "SELECT DISTINCT client, json_extract(detail, '$.user_agent') AS ua FROM audit_event \
                 WHERE tenant_id = $1 AND category = 'mcp' AND at >= $2 AND at < $3 \
                 AND json_extract(detail, '$.user_agent') IS NOT NULL ORDER BY 1, 2 LIMIT 500"
            }
            Engine::Postgres(_) => {
                "SELECT DISTINCT client, (detail::json ->> 'user_agent') AS ua FROM audit_event \
                 WHERE tenant_id = $1 AND category = 'mcp' AND at >= $2 AND at < $3 \
                 AND (detail::json ->> 'user_agent') IS NOT NULL ORDER BY 1, 2 LIMIT 500"
            }
        };
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (Option<String>, String)>(sql)
                .bind(tenant_id)
                .bind(since)
                .bind(until)
                .fetch_all(&mut *tx)
                .await?
        });
        Ok(rows)
    }

    /// Per subject and hour in `[since, until)`: calls, denials, answers the filters acted on.
    pub async fn subject_hours(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<HourRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, HourRow>(
                "SELECT actor, CASE WHEN detail LIKE '%\"agent_endpoint\"%' THEN agent END AS agent, at / $4 AS hour, count(*) AS calls, \
                 coalesce(sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END), 0) AS denials, \
                 coalesce(sum(CASE WHEN detail LIKE '%\"filters\"%' OR detail LIKE '%\"injection\"%' \
                 THEN 1 ELSE 0 END), 0) AS filtered \
                 FROM audit_event WHERE tenant_id = $1 AND category = 'mcp' AND at >= $2 AND at < $3 \
                 GROUP BY 1, 2, 3",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .bind(HOUR_US)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Tools each subject called (and was let through) in `[since, until)`: (actor, agent,
    /// server, tool).
    #[allow(clippy::type_complexity)]
    pub async fn subject_tools(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<(Option<String>, Option<String>, String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (Option<String>, Option<String>, String, String)>(
                "SELECT DISTINCT actor, CASE WHEN detail LIKE '%\"agent_endpoint\"%' THEN agent END, server, target FROM audit_event \
                 WHERE tenant_id = $1 AND action = 'tools/call' AND at >= $2 AND at < $3 \
                 AND decision = 'allow' AND server IS NOT NULL AND target IS NOT NULL",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// MCP records in `[since, until)`, oldest first, at most `limit`; the detail is reduced
    /// in the query to what the detectors read (so a scan holds no record's text).
    pub async fn signal_records(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<SignalRecordRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, SignalRecordRow>(
                "SELECT seq, at, action, actor, CASE WHEN detail LIKE '%\"agent_endpoint\"%' THEN agent END AS agent, server, target, decision, \
                 (detail LIKE '%\"filters\"%' OR detail LIKE '%\"injection\"%') AS filtered, \
                 (detail LIKE '%\"injection\"%') AS injection \
                 FROM audit_event WHERE tenant_id = $1 AND category = 'mcp' AND at >= $2 AND at < $3 \
                 ORDER BY seq LIMIT $4",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Stores a signal unless one with its key exists; true when this call stored it.
    pub async fn insert_signal(&self, tenant_id: &str, s: &SignalRow) -> Result<bool> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO anomaly_signal (signal_id, tenant_id, dedup_key, kind, subject, severity, at, summary, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (tenant_id, dedup_key) DO NOTHING",
            )
            .bind(&s.signal_id)
            .bind(tenant_id)
            .bind(&s.dedup_key)
            .bind(&s.kind)
            .bind(&s.subject)
            .bind(&s.severity)
            .bind(s.at)
            .bind(&s.summary)
            .bind(&s.detail)
            .execute(&mut *tx)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    /// Signals raised since `since`, newest first.
    pub async fn signals(&self, tenant_id: &str, since: i64, limit: i64) -> Result<Vec<SignalRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, SignalRow>(
                "SELECT signal_id, dedup_key, kind, subject, severity, at, summary, detail \
                 FROM anomaly_signal WHERE tenant_id = $1 AND at >= $2 ORDER BY at DESC, signal_id DESC LIMIT $3",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// MCP records in `[since, until)` that the filters acted on (answers or arguments),
    /// newest first, at most 100,000: (server, at, outcome, detail JSON).
    #[allow(clippy::type_complexity)]
    pub async fn filter_records(
        &self,
        tenant_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<(Option<String>, i64, String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (Option<String>, i64, String, String)>(
                "SELECT server, at, outcome, detail FROM audit_event WHERE tenant_id = $1 \
                 AND at >= $2 AND at < $3 AND category = 'mcp' \
                 AND (detail LIKE '%\"filters\"%' OR detail LIKE '%\"injection\"%' \
                 OR detail LIKE '%\"arguments_filters\"%') ORDER BY at DESC LIMIT 100000",
            )
            .bind(tenant_id)
            .bind(since)
            .bind(until)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }
}
