//! Agents and their gateway tokens (tenant-owned tables). Every write bumps the `agents`
//! counter, so every replica's gateway snapshot follows within a second.

use super::{conflict_as, now_micros, Engine, Result, Store, StoreError};
use crate::domain::TokenHash;

const BUMP: &str = "UPDATE change_counter SET version = version + 1 WHERE topic = 'agents'";

/// An agent with its owner as the snapshot and the API see it.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentRow {
    pub agent_id: String,
    pub slug: String,
    pub name: String,
    pub description: String,
    /// `None`: owned by the tenant.
    pub owner_user_id: Option<String>,
    pub owner_email: Option<String>,
    /// Whether the owner is active (always true for a tenant-owned agent).
    pub owner_active: bool,
    /// JSON of `agents::ToolSet`.
    pub tool_set: String,
    pub disabled_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an admin writes: everything but ids and times.
#[derive(Clone, Debug)]
pub struct AgentWrite<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub owner_user_id: Option<&'a str>,
    pub tool_set: &'a str,
    pub disabled: bool,
}

/// An agent token as it is listed (never the token: it is not stored).
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentTokenRow {
    pub agent_token_id: String,
    pub label: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A live agent token for the gateway snapshot.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct LiveAgentToken {
    pub token_hash: String,
    pub slug: String,
    pub label: String,
    pub expires_at: Option<i64>,
}

const AGENT_SELECT: &str = "SELECT a.agent_id, a.slug, a.name, a.description, a.owner_user_id, \
     u.email AS owner_email, COALESCE(u.active, $2) AS owner_active, a.tool_set, a.disabled_at, \
     a.created_at, a.updated_at \
     FROM agent a LEFT JOIN tenant_user u ON u.tenant_id = a.tenant_id AND u.user_id = a.owner_user_id \
     WHERE a.tenant_id = $1";

impl Store {
    pub async fn list_agents(&self, tenant_id: &str) -> Result<Vec<AgentRow>> {
        let sql = format!("{AGENT_SELECT} ORDER BY a.slug");
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant_id)
                .bind(true)
                .fetch_all(&mut *tx)
                .await?
        });
        Ok(rows)
    }

    pub async fn agent_by_slug(&self, tenant_id: &str, slug: &str) -> Result<Option<AgentRow>> {
        let sql = format!("{AGENT_SELECT} AND a.slug = $3");
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(sql.clone()))
                .bind(tenant_id)
                .bind(true)
                .bind(slug)
                .fetch_optional(&mut *tx)
                .await?
        });
        Ok(row)
    }

    /// Creates an agent; `Conflict("agent")` when the slug is taken.
    pub async fn create_agent(&self, tenant_id: &str, a: &AgentWrite<'_>) -> Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_micros();
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO agent (agent_id, tenant_id, slug, name, description, owner_user_id, \
                 tool_set, disabled_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            )
            .bind(&id)
            .bind(tenant_id)
            .bind(a.slug)
            .bind(a.name)
            .bind(a.description)
            .bind(a.owner_user_id)
            .bind(a.tool_set)
            .bind(a.disabled.then_some(now))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as("agent"))?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(id)
    }

    /// Replaces an agent's settings (the slug stays; `disabled_at` keeps its first moment).
    pub async fn update_agent(
        &self,
        tenant_id: &str,
        agent_id: &str,
        a: &AgentWrite<'_>,
    ) -> Result<()> {
        let now = now_micros();
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE agent SET name = $3, description = $4, owner_user_id = $5, tool_set = $6, \
                 disabled_at = CASE WHEN $7 THEN COALESCE(disabled_at, $8) ELSE NULL END, \
                 updated_at = $8 WHERE tenant_id = $1 AND agent_id = $2",
            )
            .bind(tenant_id)
            .bind(agent_id)
            .bind(a.name)
            .bind(a.description)
            .bind(a.owner_user_id)
            .bind(a.tool_set)
            .bind(a.disabled)
            .bind(now)
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

    /// Deletes an agent and its tokens.
    pub async fn delete_agent(&self, tenant_id: &str, agent_id: &str) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query("DELETE FROM agent_token WHERE tenant_id = $1 AND agent_id = $2")
                .bind(tenant_id)
                .bind(agent_id)
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM agent WHERE tenant_id = $1 AND agent_id = $2")
                .bind(tenant_id)
                .bind(agent_id)
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

    pub async fn create_agent_token(
        &self,
        tenant_id: &str,
        agent_id: &str,
        hash: &TokenHash,
        label: &str,
        expires_at: Option<i64>,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO agent_token (agent_token_id, tenant_id, agent_id, token_hash, label, \
                 created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant_id)
            .bind(agent_id)
            .bind(hash.as_str())
            .bind(label)
            .bind(now_micros())
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// An agent's unrevoked tokens.
    pub async fn list_agent_tokens(
        &self,
        tenant_id: &str,
        agent_id: &str,
    ) -> Result<Vec<AgentTokenRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, AgentTokenRow>(
                "SELECT agent_token_id, label, created_at, expires_at, last_used_at FROM agent_token \
                 WHERE tenant_id = $1 AND agent_id = $2 AND revoked_at IS NULL ORDER BY created_at",
            )
            .bind(tenant_id)
            .bind(agent_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Revokes every live token of the agents whose `column` (`agent_id` or `owner_user_id`,
    /// never input) is `value`; returns (agent slug, token label) of each.
    async fn revoke_agent_tokens_where(
        &self,
        tenant_id: &str,
        column: &'static str,
        value: &str,
    ) -> Result<Vec<(String, String)>> {
        let select = format!(
            "SELECT a.slug, t.label FROM agent_token t JOIN agent a ON a.agent_id = t.agent_id \
             WHERE t.tenant_id = $1 AND a.{column} = $2 AND t.revoked_at IS NULL ORDER BY t.created_at"
        );
        let update = format!(
            "UPDATE agent_token SET revoked_at = $3 WHERE tenant_id = $1 AND revoked_at IS NULL \
             AND agent_id IN (SELECT agent_id FROM agent WHERE tenant_id = $1 AND {column} = $2)"
        );
        let revoked = tenant_tx!(self, tenant_id, |tx| {
            let rows: Vec<(String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(select.clone()))
                .bind(tenant_id)
                .bind(value)
                .fetch_all(&mut *tx)
                .await?;
            sqlx::query(sqlx::AssertSqlSafe(update.clone()))
                .bind(tenant_id)
                .bind(value)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
            rows
        });
        Ok(revoked)
    }

    /// Revokes every live token of one agent; returns their labels.
    pub async fn revoke_agent_tokens(
        &self,
        tenant_id: &str,
        agent_id: &str,
    ) -> Result<Vec<String>> {
        Ok(self
            .revoke_agent_tokens_where(tenant_id, "agent_id", agent_id)
            .await?
            .into_iter()
            .map(|(_, l)| l)
            .collect())
    }

    /// Revokes every live token of the agents a user owns: (agent slug, label) of each.
    pub async fn revoke_owned_agent_tokens(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<(String, String)>> {
        self.revoke_agent_tokens_where(tenant_id, "owner_user_id", user_id)
            .await
    }

    /// Revokes one live agent token by its hash: (agent slug, label).
    pub async fn revoke_agent_token_hash(
        &self,
        tenant_id: &str,
        hash: &TokenHash,
    ) -> Result<Option<(String, String)>> {
        let found = tenant_tx!(self, tenant_id, |tx| {
            let found: Option<(String, String)> = sqlx::query_as(
                "SELECT a.slug, t.label FROM agent_token t JOIN agent a ON a.agent_id = t.agent_id \
                 WHERE t.tenant_id = $1 AND t.token_hash = $2 AND t.revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(hash.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_some() {
                sqlx::query(
                    "UPDATE agent_token SET revoked_at = $3 WHERE tenant_id = $1 AND token_hash = $2",
                )
                .bind(tenant_id)
                .bind(hash.as_str())
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
                sqlx::query(BUMP).execute(&mut *tx).await?;
            }
            found
        });
        Ok(found)
    }

    /// Revokes one token of an agent by id; returns its label.
    pub async fn revoke_agent_token_by_id(
        &self,
        tenant_id: &str,
        agent_id: &str,
        token_id: &str,
    ) -> Result<Option<String>> {
        let label = tenant_tx!(self, tenant_id, |tx| {
            let label: Option<(String,)> = sqlx::query_as(
                "SELECT label FROM agent_token WHERE tenant_id = $1 AND agent_id = $2 \
                 AND agent_token_id = $3 AND revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(agent_id)
            .bind(token_id)
            .fetch_optional(&mut *tx)
            .await?;
            if label.is_some() {
                sqlx::query(
                    "UPDATE agent_token SET revoked_at = $4 WHERE tenant_id = $1 AND agent_id = $2 \
                     AND agent_token_id = $3",
                )
                .bind(tenant_id)
                .bind(agent_id)
                .bind(token_id)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
                sqlx::query(BUMP).execute(&mut *tx).await?;
            }
            label.map(|(l,)| l)
        });
        Ok(label)
    }

    /// Every unrevoked agent token of the tenant, for the gateway snapshot (whether the agent
    /// is enabled and its owner active is the snapshot's business: it holds the agents too).
    pub async fn list_live_agent_tokens(&self, tenant_id: &str) -> Result<Vec<LiveAgentToken>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, LiveAgentToken>(
                "SELECT t.token_hash, a.slug, t.label, t.expires_at \
                 FROM agent_token t JOIN agent a ON a.agent_id = t.agent_id \
                 WHERE t.tenant_id = $1 AND t.revoked_at IS NULL",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// The emails of the tenant's active admins (whom notifications about the tenant go to).
    pub async fn admin_emails(&self, tenant_id: &str) -> Result<Vec<String>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_scalar::<_, String>(
                "SELECT email FROM tenant_user WHERE tenant_id = $1 AND is_admin = $2 AND active = $2 \
                 ORDER BY email",
            )
            .bind(tenant_id)
            .bind(true)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }
}
