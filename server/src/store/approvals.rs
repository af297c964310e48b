//! Approval rules and requests (tenant-owned).

use super::{now_micros, Engine, Result, Store, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ApprovalRule {
    pub rule_id: String,
    pub server: String,
    pub tool: String,
    pub applies: String,
    pub timeout_secs: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct ApprovalRequest {
    pub approval_id: String,
    pub email: String,
    pub server: String,
    pub tool: String,
    pub arguments: String,
    pub status: String,
    pub decided_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_at: Option<i64>,
}

const REQUEST_COLUMNS: &str = "approval_id, email, server, tool, arguments, status, decided_by, \
     created_at, expires_at, decided_at";

impl Store {
    pub async fn list_approval_rules(&self, tenant_id: &str) -> Result<Vec<ApprovalRule>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ApprovalRule>(
                "SELECT rule_id, server, tool, applies, timeout_secs FROM approval_rule \
                 WHERE tenant_id = $1 ORDER BY created_at",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn create_approval_rule(&self, tenant_id: &str, r: &ApprovalRule) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO approval_rule (rule_id, tenant_id, server, tool, applies, timeout_secs, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&r.rule_id)
            .bind(tenant_id)
            .bind(&r.server)
            .bind(&r.tool)
            .bind(&r.applies)
            .bind(r.timeout_secs)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE change_counter SET version = version + 1 WHERE topic = 'approvals'",
            )
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_approval_rule(&self, tenant_id: &str, rule_id: &str) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query("DELETE FROM approval_rule WHERE tenant_id = $1 AND rule_id = $2")
                .bind(tenant_id)
                .bind(rule_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE change_counter SET version = version + 1 WHERE topic = 'approvals'",
            )
            .execute(&mut *tx)
            .await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_approval_request(
        &self,
        tenant_id: &str,
        approval_id: &str,
        user_id: &str,
        email: &str,
        server: &str,
        tool: &str,
        arguments: &str,
        expires_at: i64,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO approval_request (approval_id, tenant_id, user_id, email, server, tool, \
                 arguments, status, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9)",
            )
            .bind(approval_id)
            .bind(tenant_id)
            .bind(user_id)
            .bind(email)
            .bind(server)
            .bind(tool)
            .bind(arguments)
            .bind(now_micros())
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    pub async fn approval_request(
        &self,
        tenant_id: &str,
        approval_id: &str,
    ) -> Result<Option<ApprovalRequest>> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ApprovalRequest>(sqlx::AssertSqlSafe(format!(
                "SELECT {REQUEST_COLUMNS} FROM approval_request WHERE tenant_id = $1 AND approval_id = $2"
            )))
            .bind(tenant_id)
            .bind(approval_id)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row)
    }

    /// Pending requests first, then the most recent decisions.
    pub async fn list_approval_requests(&self, tenant_id: &str) -> Result<Vec<ApprovalRequest>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ApprovalRequest>(sqlx::AssertSqlSafe(format!(
                "SELECT {REQUEST_COLUMNS} FROM approval_request WHERE tenant_id = $1 \
                 ORDER BY CASE WHEN status = 'pending' THEN 0 ELSE 1 END, created_at DESC LIMIT 100"
            )))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Decides a pending request (approved, denied or expired); false when it was not pending
    /// any more (decided by someone else, or expired).
    pub async fn decide_approval(
        &self,
        tenant_id: &str,
        approval_id: &str,
        status: &str,
        decided_by: Option<&str>,
    ) -> Result<bool> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "UPDATE approval_request SET status = $3, decided_by = $4, decided_at = $5 \
                 WHERE tenant_id = $1 AND approval_id = $2 AND status = 'pending'",
            )
            .bind(tenant_id)
            .bind(approval_id)
            .bind(status)
            .bind(decided_by)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }
}
