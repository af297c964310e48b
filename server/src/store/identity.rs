//! Identity and access (tenant-owned tables): groups and their members, registries of servers,
//! the grants that map registries to subjects with their rules, servers' reviewed tool catalogs
//! and per-tenant settings. Every change bumps the `identity` change counter in its transaction,
//! so every replica recompiles the tenant's policy.

use super::{conflict_as, now_micros, Engine, Result, Store, StoreError};
use crate::policy::{
    GrantInput, GrantRules, GroupInput, Hints, PolicyInputs, ServerInput, Subject, UserInput,
};
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct GroupRow {
    pub group_id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub source: String,
    pub members: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct RegistryRow {
    pub registry_id: String,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct GrantRow {
    pub grant_id: String,
    pub registry_id: String,
    pub subject: String,
    pub rules: String,
    pub created_at: i64,
    /// The group's name or the user's email (None for everyone).
    pub subject_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UserListRow {
    pub user_id: String,
    pub email: String,
    pub display_name: Option<String>,
    pub is_admin: bool,
    pub active: bool,
    pub source: String,
    pub last_seen_at: Option<i64>,
}

/// A tool as recorded in a server's reviewed catalog.
#[derive(Clone, Debug)]
pub struct CatalogTool {
    pub name: String,
    pub description: String,
    /// JSON of the tool's `annotations` object (`{}` when it declared none).
    pub annotations: String,
    /// The pinned definition (canonical JSON, `pins::definition`) and its SHA-256 (hex).
    pub definition: Option<String>,
    pub digest: Option<String>,
}

/// A subject as the write paths take it: resolved ids.
fn subject_columns(s: &Subject) -> (Option<&str>, Option<&str>) {
    match s {
        Subject::Everyone => (None, None),
        Subject::Group { group_id } => (Some(group_id.as_str()), None),
        Subject::User { user_id } => (None, Some(user_id.as_str())),
    }
}

const BUMP_IDENTITY: &str =
    "UPDATE change_counter SET version = version + 1 WHERE topic = 'identity'";

fn rules_json(r: &GrantRules) -> Result<String> {
    serde_json::to_string(r).map_err(|e| StoreError::Database(sqlx::Error::Encode(Box::new(e))))
}

impl Store {
    /// Everything the policy compiler needs for one tenant, read in one transaction.
    pub async fn policy_inputs(&self, tenant_id: &str) -> Result<PolicyInputs> {
        let (users, members, groups, servers, catalog, grants, reg_servers) =
            tenant_tx!(self, tenant_id, |tx| {
                let users: Vec<(String, String, bool)> = sqlx::query_as(
                    "SELECT user_id, email, active FROM tenant_user WHERE tenant_id = $1",
                )
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
                let members: Vec<(String, String)> = sqlx::query_as(
                    "SELECT user_id, group_id FROM group_member WHERE tenant_id = $1",
                )
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
                let groups: Vec<(String, String)> = sqlx::query_as(
                    "SELECT group_id, name FROM user_group WHERE tenant_id = $1 ORDER BY name",
                )
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
                let servers: Vec<(String, String)> =
                    sqlx::query_as("SELECT slug, new_tools FROM mcp_server WHERE tenant_id = $1")
                        .bind(tenant_id)
                        .fetch_all(&mut *tx)
                        .await?;
                let catalog: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
                    "SELECT s.slug, t.name, t.annotations, t.digest FROM server_tool t \
                     JOIN mcp_server s ON s.server_id = t.server_id WHERE t.tenant_id = $1",
                )
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
                let held: Vec<(String, String)> = sqlx::query_as(
                    "SELECT s.slug, c.name FROM tool_change c \
                     JOIN mcp_server s ON s.server_id = c.server_id \
                     WHERE c.tenant_id = $1 AND c.kind = 'changed'",
                )
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
                let grants: Vec<(String, String, String, String, String)> = sqlx::query_as(
                    "SELECT g.grant_id, g.subject, g.rules, r.slug, r.name FROM registry_grant g \
                     JOIN registry r ON r.registry_id = g.registry_id \
                     WHERE g.tenant_id = $1 ORDER BY g.created_at, g.grant_id",
                )
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
                let reg_servers: Vec<(String, String)> = sqlx::query_as(
                    "SELECT r.slug, s.slug FROM registry_server rs \
                     JOIN registry r ON r.registry_id = rs.registry_id \
                     JOIN mcp_server s ON s.server_id = rs.server_id WHERE rs.tenant_id = $1",
                )
                .bind(tenant_id)
                .fetch_all(&mut *tx)
                .await?;
                (
                    users,
                    members,
                    groups,
                    servers,
                    (catalog, held),
                    grants,
                    reg_servers,
                )
            });
        let (catalog, held) = catalog;
        let mut user_groups: HashMap<String, Vec<String>> = HashMap::new();
        for (u, g) in members {
            user_groups.entry(u).or_default().push(g);
        }
        let mut catalogs: HashMap<String, HashMap<String, Hints>> = HashMap::new();
        let mut pins: HashMap<String, HashMap<String, String>> = HashMap::new();
        for (server, name, annotations, digest) in catalog {
            let v: Option<serde_json::Value> = serde_json::from_str(&annotations).ok();
            if let Some(d) = digest {
                pins.entry(server.clone())
                    .or_default()
                    .insert(name.clone(), d);
            }
            catalogs
                .entry(server)
                .or_default()
                .insert(name, Hints::from_annotations(v.as_ref()));
        }
        // An admin's class wins over what the server declares (read after the catalog: a
        // class set in between is picked up by the refresh its own write triggers).
        for (server, name, class) in self.tool_class_overrides(tenant_id).await? {
            if let Some(h) = catalogs.get_mut(&server).and_then(|c| c.get_mut(&name)) {
                h.apply_class(&class);
            }
        }
        let mut held_tools: HashMap<String, std::collections::HashSet<String>> = HashMap::new();
        for (server, name) in held {
            held_tools.entry(server).or_default().insert(name);
        }
        let mut registry_servers: HashMap<String, Vec<String>> = HashMap::new();
        for (r, s) in reg_servers {
            registry_servers.entry(r).or_default().push(s);
        }
        let mut out = PolicyInputs {
            users: users
                .into_iter()
                .map(|(user_id, email, active)| UserInput {
                    groups: user_groups.remove(&user_id).unwrap_or_default(),
                    user_id,
                    email,
                    active,
                })
                .collect(),
            groups: groups
                .into_iter()
                .map(|(group_id, name)| GroupInput { group_id, name })
                .collect(),
            servers: servers
                .into_iter()
                .map(|(slug, new_tools)| ServerInput {
                    catalog: catalogs.remove(&slug).unwrap_or_default(),
                    pins: pins.remove(&slug).unwrap_or_default(),
                    held: held_tools.remove(&slug).unwrap_or_default(),
                    slug,
                    // Anything but an explicit 'allow' fails closed.
                    new_tools_deny: new_tools != "allow",
                })
                .collect(),
            grants: Vec::new(),
        };
        for (grant_id, subject, rules, registry_slug, registry_name) in grants {
            let Some(subject) = Subject::parse_key(&subject) else {
                tracing::error!(grant.id = %grant_id, "a stored grant has an unreadable subject; left out");
                continue;
            };
            let rules: GrantRules = match serde_json::from_str(&rules) {
                Ok(r) => r,
                Err(e) => {
                    // A grant whose rules cannot be read grants nothing (fail closed).
                    tracing::error!(grant.id = %grant_id, error = %e, "stored grant rules do not parse; the grant is left out");
                    continue;
                }
            };
            out.grants.push(GrantInput {
                servers: registry_servers
                    .get(&registry_slug)
                    .cloned()
                    .unwrap_or_default(),
                grant_id,
                registry_slug,
                registry_name,
                subject,
                rules,
            });
        }
        Ok(out)
    }

    // ---- groups -------------------------------------------------------------------------

    /// The group named `name`, created (with `source`) if missing. Returns its id.
    pub async fn ensure_group(&self, tenant_id: &str, name: &str, source: &str) -> Result<String> {
        let id = tenant_tx!(self, tenant_id, |tx| {
            let now = now_micros();
            let n = sqlx::query(
                "INSERT INTO user_group (group_id, tenant_id, name, source, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (tenant_id, name) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant_id)
            .bind(name)
            .bind(source)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            }
            let id: String = sqlx::query_scalar(
                "SELECT group_id FROM user_group WHERE tenant_id = $1 AND name = $2",
            )
            .bind(tenant_id)
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
            id
        });
        Ok(id)
    }

    pub async fn list_groups(&self, tenant_id: &str) -> Result<Vec<GroupRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, GroupRow>(
                "SELECT g.group_id, g.name, g.external_id, g.source, \
                   (SELECT COUNT(*) FROM group_member m WHERE m.group_id = g.group_id) AS members \
                 FROM user_group g WHERE g.tenant_id = $1 ORDER BY g.name",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// (user id, group name) for every membership of the tenant.
    pub async fn memberships(&self, tenant_id: &str) -> Result<Vec<(String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT m.user_id, g.name FROM group_member m JOIN user_group g ON g.group_id = m.group_id \
                 WHERE m.tenant_id = $1 ORDER BY g.name",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    // ---- users --------------------------------------------------------------------------

    pub async fn list_users(&self, tenant_id: &str) -> Result<Vec<UserListRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, UserListRow>(
                "SELECT user_id, email, display_name, is_admin, active, source, last_seen_at \
                 FROM tenant_user WHERE tenant_id = $1 ORDER BY email",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Activates or deactivates a user. Deactivation takes effect everywhere at once: the
    /// gateway's snapshot drops the user's tokens and sessions (counters `identity` and
    /// `api_tokens`), and console sessions are checked against `active` on every request.
    pub async fn set_user_active(
        &self,
        tenant_id: &str,
        user_id: &str,
        active: bool,
    ) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE tenant_user SET active = $1, updated_at = $2 WHERE tenant_id = $3 AND user_id = $4",
            )
            .bind(active)
            .bind(now_micros())
            .bind(tenant_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE change_counter SET version = version + 1 WHERE topic = 'api_tokens'",
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

    /// Records that a user used the product (throttled by the caller).
    pub async fn touch_users_seen(&self, tenant_id: &str, users: &[(String, i64)]) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            for (user_id, at) in users {
                sqlx::query(
                    "UPDATE tenant_user SET last_seen_at = $1 WHERE tenant_id = $2 AND user_id = $3",
                )
                .bind(at)
                .bind(tenant_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            }
        });
        Ok(())
    }

    /// Records when gateway tokens (by hash) were last used (throttled by the caller).
    pub async fn touch_tokens_used(&self, tenant_id: &str, tokens: &[(String, i64)]) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            for (hash, at) in tokens {
                sqlx::query(
                    "UPDATE api_token SET last_used_at = $1 WHERE tenant_id = $2 AND token_hash = $3",
                )
                .bind(at)
                .bind(tenant_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
                // Agent tokens are hashed the same way; one of the two updates finds it.
                sqlx::query(
                    "UPDATE agent_token SET last_used_at = $1 WHERE tenant_id = $2 AND token_hash = $3",
                )
                .bind(at)
                .bind(tenant_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            }
        });
        Ok(())
    }

    // ---- registries and grants ----------------------------------------------------------

    /// Creates a registry holding `servers` (by id), mapped to `grants`, in one transaction.
    pub async fn create_registry(
        &self,
        tenant_id: &str,
        slug: &str,
        name: &str,
        description: &str,
        server_ids: &[String],
        grants: &[(Subject, GrantRules)],
    ) -> Result<RegistryRow> {
        let now = now_micros();
        let row = RegistryRow {
            registry_id: uuid::Uuid::now_v7().to_string(),
            slug: slug.to_owned(),
            name: name.to_owned(),
            description: description.to_owned(),
            created_at: now,
        };
        let mut rules = Vec::with_capacity(grants.len());
        for (_, r) in grants {
            rules.push(rules_json(r)?);
        }
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO registry (registry_id, tenant_id, slug, name, description, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
            )
            .bind(&row.registry_id)
            .bind(tenant_id)
            .bind(slug)
            .bind(name)
            .bind(description)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as("registry"))?;
            for server_id in server_ids {
                sqlx::query(
                    "INSERT INTO registry_server (tenant_id, registry_id, server_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (registry_id, server_id) DO NOTHING",
                )
                .bind(tenant_id)
                .bind(&row.registry_id)
                .bind(server_id)
                .execute(&mut *tx)
                .await?;
            }
            for ((subject, _), rules) in grants.iter().zip(&rules) {
                let (group_id, user_id) = subject_columns(subject);
                sqlx::query(
                    "INSERT INTO registry_grant (grant_id, tenant_id, registry_id, subject, group_id, user_id, rules, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(tenant_id)
                .bind(&row.registry_id)
                .bind(subject.key())
                .bind(group_id)
                .bind(user_id)
                .bind(rules)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(conflict_as("grant for that subject"))?;
            }
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
        });
        Ok(row)
    }

    pub async fn list_registries(&self, tenant_id: &str) -> Result<Vec<RegistryRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, RegistryRow>(
                "SELECT registry_id, slug, name, description, created_at FROM registry \
                 WHERE tenant_id = $1 ORDER BY slug",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// (registry id, server slug) for every registry of the tenant.
    pub async fn registry_servers(&self, tenant_id: &str) -> Result<Vec<(String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT rs.registry_id, s.slug FROM registry_server rs \
                 JOIN mcp_server s ON s.server_id = rs.server_id WHERE rs.tenant_id = $1 ORDER BY s.slug",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn list_grants(&self, tenant_id: &str) -> Result<Vec<GrantRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, GrantRow>(
                "SELECT g.grant_id, g.registry_id, g.subject, g.rules, g.created_at, \
                   COALESCE(ug.name, u.email) AS subject_name \
                 FROM registry_grant g \
                 LEFT JOIN user_group ug ON ug.group_id = g.group_id \
                 LEFT JOIN tenant_user u ON u.user_id = g.user_id \
                 WHERE g.tenant_id = $1 ORDER BY g.created_at, g.grant_id",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Changes a registry's name, description and (when given) its servers, in one transaction.
    pub async fn update_registry(
        &self,
        tenant_id: &str,
        slug: &str,
        name: Option<&str>,
        description: Option<&str>,
        server_ids: Option<&[String]>,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            let registry_id: Option<String> = sqlx::query_scalar(
                "SELECT registry_id FROM registry WHERE tenant_id = $1 AND slug = $2",
            )
            .bind(tenant_id)
            .bind(slug)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(registry_id) = registry_id else {
                return Err(StoreError::NotFound);
            };
            sqlx::query(
                "UPDATE registry SET name = COALESCE($1, name), description = COALESCE($2, description), \
                 updated_at = $3 WHERE tenant_id = $4 AND registry_id = $5",
            )
            .bind(name)
            .bind(description)
            .bind(now_micros())
            .bind(tenant_id)
            .bind(&registry_id)
            .execute(&mut *tx)
            .await?;
            if let Some(ids) = server_ids {
                sqlx::query(
                    "DELETE FROM registry_server WHERE tenant_id = $1 AND registry_id = $2",
                )
                .bind(tenant_id)
                .bind(&registry_id)
                .execute(&mut *tx)
                .await?;
                for server_id in ids {
                    sqlx::query(
                        "INSERT INTO registry_server (tenant_id, registry_id, server_id) VALUES ($1, $2, $3) \
                         ON CONFLICT (registry_id, server_id) DO NOTHING",
                    )
                    .bind(tenant_id)
                    .bind(&registry_id)
                    .bind(server_id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
        });
        Ok(())
    }

    pub async fn delete_registry(&self, tenant_id: &str, slug: &str) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query("DELETE FROM registry WHERE tenant_id = $1 AND slug = $2")
                .bind(tenant_id)
                .bind(slug)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Adds a grant to the registry `slug`; returns its id.
    pub async fn add_grant(
        &self,
        tenant_id: &str,
        registry_slug: &str,
        subject: &Subject,
        rules: &GrantRules,
    ) -> Result<String> {
        let rules = rules_json(rules)?;
        let id = uuid::Uuid::now_v7().to_string();
        let (group_id, user_id) = subject_columns(subject);
        tenant_tx!(self, tenant_id, |tx| {
            let registry_id: Option<String> = sqlx::query_scalar(
                "SELECT registry_id FROM registry WHERE tenant_id = $1 AND slug = $2",
            )
            .bind(tenant_id)
            .bind(registry_slug)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(registry_id) = registry_id else {
                return Err(StoreError::NotFound);
            };
            let now = now_micros();
            sqlx::query(
                "INSERT INTO registry_grant (grant_id, tenant_id, registry_id, subject, group_id, user_id, rules, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
            )
            .bind(&id)
            .bind(tenant_id)
            .bind(&registry_id)
            .bind(subject.key())
            .bind(group_id)
            .bind(user_id)
            .bind(&rules)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as("grant for that subject"))?;
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
        });
        Ok(id)
    }

    pub async fn set_grant_rules(
        &self,
        tenant_id: &str,
        grant_id: &str,
        rules: &GrantRules,
    ) -> Result<()> {
        let rules = rules_json(rules)?;
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE registry_grant SET rules = $1, updated_at = $2 WHERE tenant_id = $3 AND grant_id = $4",
            )
            .bind(&rules)
            .bind(now_micros())
            .bind(tenant_id)
            .bind(grant_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    pub async fn delete_grant(&self, tenant_id: &str, grant_id: &str) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n =
                sqlx::query("DELETE FROM registry_grant WHERE tenant_id = $1 AND grant_id = $2")
                    .bind(tenant_id)
                    .bind(grant_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ---- servers' access settings -------------------------------------------------------

    /// Sets what a server does with tools outside its reviewed catalog.
    pub async fn set_new_tools(&self, tenant_id: &str, slug: &str, deny: bool) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE mcp_server SET new_tools = $1, updated_at = $2 WHERE tenant_id = $3 AND slug = $4",
            )
            .bind(if deny { "deny" } else { "allow" })
            .bind(now_micros())
            .bind(tenant_id)
            .bind(slug)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Replaces a server's reviewed catalog with `tools`.
    pub async fn record_catalog(
        &self,
        tenant_id: &str,
        server_id: &str,
        tools: &[CatalogTool],
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query("DELETE FROM server_tool WHERE tenant_id = $1 AND server_id = $2")
                .bind(tenant_id)
                .bind(server_id)
                .execute(&mut *tx)
                .await?;
            // Recording the catalog reviews every tool as the server serves it now.
            sqlx::query("DELETE FROM tool_change WHERE tenant_id = $1 AND server_id = $2")
                .bind(tenant_id)
                .bind(server_id)
                .execute(&mut *tx)
                .await?;
            let now = now_micros();
            for t in tools {
                sqlx::query(
                    "INSERT INTO server_tool (tenant_id, server_id, name, description, annotations, reviewed_at, definition, digest) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (server_id, name) DO NOTHING",
                )
                .bind(tenant_id)
                .bind(server_id)
                .bind(&t.name)
                .bind(&t.description)
                .bind(&t.annotations)
                .bind(now)
                .bind(&t.definition)
                .bind(&t.digest)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
        });
        Ok(())
    }

    // ---- per-tenant settings ------------------------------------------------------------

    pub async fn tenant_setting(&self, tenant_id: &str, name: &str) -> Result<Option<String>> {
        let v = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_scalar(
                "SELECT value FROM tenant_setting WHERE tenant_id = $1 AND name = $2",
            )
            .bind(tenant_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(v)
    }

    /// Break-glass: `email` becomes an active admin of the tenant (created if missing) with a
    /// new admin token, in one transaction.
    pub async fn recover_admin(
        &self,
        tenant_id: &str,
        email: &crate::domain::Email,
        hash: &crate::domain::TokenHash,
        label: &str,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            let now = now_micros();
            sqlx::query(
                "INSERT INTO tenant_user (user_id, tenant_id, email, is_admin, active, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4, $5, $5) \
                 ON CONFLICT (tenant_id, email) DO UPDATE SET is_admin = $4, active = $4, updated_at = $5",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant_id)
            .bind(email.as_str())
            .bind(true)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let user_id: String = sqlx::query_scalar(
                "SELECT user_id FROM tenant_user WHERE tenant_id = $1 AND email = $2",
            )
            .bind(tenant_id)
            .bind(email.as_str())
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO admin_token (admin_token_id, tenant_id, user_id, token_hash, label, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant_id)
            .bind(&user_id)
            .bind(hash.as_str())
            .bind(label)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            sqlx::query(
                "UPDATE change_counter SET version = version + 1 WHERE topic = 'api_tokens'",
            )
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_tenant_setting(&self, tenant_id: &str, name: &str) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query("DELETE FROM tenant_setting WHERE tenant_id = $1 AND name = $2")
                .bind(tenant_id)
                .bind(name)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// A successful SSO sign-in: the user with this email (created on first sign-in), their
    /// display name, and their IdP groups replaced by `groups` (memberships added by SCIM or
    /// the console stay). `None` when the user exists but is deactivated: no sign-in.
    pub async fn sso_sign_in(
        &self,
        tenant_id: &str,
        email: &crate::domain::Email,
        name: Option<&str>,
        groups: &[String],
    ) -> Result<Option<super::UserRow>> {
        let user = tenant_tx!(self, tenant_id, |tx| {
            let now = now_micros();
            let created = sqlx::query(
                "INSERT INTO tenant_user (user_id, tenant_id, email, display_name, is_admin, active, created_at, updated_at, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 'sso') ON CONFLICT (tenant_id, email) DO NOTHING",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(tenant_id)
            .bind(email.as_str())
            .bind(name)
            .bind(false)
            .bind(true)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            let user = sqlx::query_as::<_, super::UserRow>(
                "SELECT user_id, tenant_id, email, is_admin, active FROM tenant_user \
                 WHERE tenant_id = $1 AND email = $2",
            )
            .bind(tenant_id)
            .bind(email.as_str())
            .fetch_one(&mut *tx)
            .await?;
            if !user.active {
                return Ok(None);
            }
            sqlx::query(
                "UPDATE tenant_user SET last_seen_at = $1, display_name = COALESCE($2, display_name) \
                 WHERE tenant_id = $3 AND user_id = $4",
            )
            .bind(now)
            .bind(name)
            .bind(tenant_id)
            .bind(&user.user_id)
            .execute(&mut *tx)
            .await?;
            // The usual sign-in changes no group: then nothing is recompiled anywhere.
            let mut current: Vec<String> = sqlx::query_scalar(
                "SELECT g.name FROM group_member m JOIN user_group g ON g.group_id = m.group_id \
                 WHERE m.tenant_id = $1 AND m.user_id = $2 AND m.source = 'sso'",
            )
            .bind(tenant_id)
            .bind(&user.user_id)
            .fetch_all(&mut *tx)
            .await?;
            current.sort();
            let mut wanted = groups.to_vec();
            wanted.sort();
            wanted.dedup();
            let changed = created || current != wanted;
            if changed {
                sqlx::query(
                    "DELETE FROM group_member WHERE tenant_id = $1 AND user_id = $2 AND source = 'sso'",
                )
                .bind(tenant_id)
                .bind(&user.user_id)
                .execute(&mut *tx)
                .await?;
            }
            for g in groups.iter().filter(|_| changed) {
                sqlx::query(
                    "INSERT INTO user_group (group_id, tenant_id, name, source, created_at, updated_at) \
                     VALUES ($1, $2, $3, 'sso', $4, $4) ON CONFLICT (tenant_id, name) DO NOTHING",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(tenant_id)
                .bind(g)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO group_member (tenant_id, group_id, user_id, source, added_at) \
                     SELECT $1, group_id, $2, 'sso', $3 FROM user_group WHERE tenant_id = $1 AND name = $4 \
                     ON CONFLICT (group_id, user_id) DO NOTHING",
                )
                .bind(tenant_id)
                .bind(&user.user_id)
                .bind(now)
                .bind(g)
                .execute(&mut *tx)
                .await?;
            }
            if changed {
                sqlx::query(BUMP_IDENTITY).execute(&mut *tx).await?;
            }
            Some(user)
        });
        Ok(user)
    }

    pub async fn set_tenant_setting(&self, tenant_id: &str, name: &str, value: &str) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO tenant_setting (tenant_id, name, value, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(tenant_id)
            .bind(name)
            .bind(value)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }
}
