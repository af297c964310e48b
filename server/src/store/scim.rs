//! SCIM provisioning writes: users and groups as an identity provider manages them. Each write
//! is one transaction that also bumps the `identity` (and, for users, `api_tokens`) counters,
//! so a deactivation or a lost group reaches every replica's gateway snapshot.

use super::{now_micros, Engine, Result, Store, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimUserRow {
    pub user_id: String,
    pub email: String,
    pub user_name: Option<String>,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    pub scim_attributes: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ScimGroupRow {
    pub group_id: String,
    pub name: String,
    pub external_id: Option<String>,
    pub scim_attributes: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns a SCIM user write sets.
#[derive(Clone, Debug)]
pub struct ScimUserWrite {
    pub user_name: String,
    /// The login email: the primary email, else the first, else the userName.
    pub email: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    /// The rest of the resource, as JSON.
    pub attributes: String,
}

#[derive(Clone, Debug)]
pub struct ScimGroupWrite {
    pub name: String,
    pub external_id: Option<String>,
    pub attributes: String,
    /// User ids; `None` leaves the membership as it is.
    pub members: Option<Vec<String>>,
}

const USER_COLUMNS: &str = "user_id, email, user_name, external_id, display_name, active, \
     scim_attributes, created_at, updated_at";
const GROUP_COLUMNS: &str = "group_id, name, external_id, scim_attributes, created_at, updated_at";

const BUMP: &str = "UPDATE change_counter SET version = version + 1 \
     WHERE topic = 'identity' OR topic = 'api_tokens'";

/// A unique violation on a SCIM write means the userName, email or group name is taken.
fn uniqueness(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict("resource"),
        _ => StoreError::Database(e),
    }
}

/// Replaces a group's members inside a transaction (an unknown user id: `NotFound`).
macro_rules! write_members {
    ($tx:ident, $tenant:expr, $group:expr, $members:expr) => {{
        sqlx::query("DELETE FROM group_member WHERE tenant_id = $1 AND group_id = $2")
            .bind($tenant)
            .bind($group)
            .execute(&mut *$tx)
            .await?;
        let now = now_micros();
        for user_id in $members {
            sqlx::query(
                "INSERT INTO group_member (tenant_id, group_id, user_id, source, added_at) \
                 VALUES ($1, $2, $3, 'scim', $4) ON CONFLICT (group_id, user_id) DO NOTHING",
            )
            .bind($tenant)
            .bind($group)
            .bind(user_id)
            .bind(now)
            .execute(&mut *$tx)
            .await
            .map_err(|e| match &e {
                sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::NotFound,
                _ => StoreError::Database(e),
            })?;
        }
    }};
}

impl Store {
    pub async fn scim_users(&self, tenant_id: &str) -> Result<Vec<ScimUserRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ScimUserRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM tenant_user WHERE tenant_id = $1 ORDER BY created_at, user_id"
            )))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn scim_user(&self, tenant_id: &str, id: &str) -> Result<Option<ScimUserRow>> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ScimUserRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {USER_COLUMNS} FROM tenant_user WHERE tenant_id = $1 AND user_id = $2"
            )))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row)
    }

    /// Creates a user, or adopts a user made before provisioning (by the console or a grant to
    /// `user:EMAIL`) who has the same email and no userName yet. Returns the user id.
    pub async fn scim_create_user(&self, tenant_id: &str, w: &ScimUserWrite) -> Result<String> {
        let id = tenant_tx!(self, tenant_id, |tx| {
            let now = now_micros();
            let adopt: Option<String> = sqlx::query_scalar(
                "SELECT user_id FROM tenant_user WHERE tenant_id = $1 AND LOWER(email) = LOWER($2) \
                 AND user_name IS NULL",
            )
            .bind(tenant_id)
            .bind(&w.email)
            .fetch_optional(&mut *tx)
            .await?;
            let id = match adopt {
                Some(id) => {
                    sqlx::query(
                        "UPDATE tenant_user SET user_name = $1, external_id = $2, display_name = $3, \
                         active = $4, scim_attributes = $5, source = 'scim', updated_at = $6 \
                         WHERE tenant_id = $7 AND user_id = $8",
                    )
                    .bind(&w.user_name)
                    .bind(&w.external_id)
                    .bind(&w.display_name)
                    .bind(w.active)
                    .bind(&w.attributes)
                    .bind(now)
                    .bind(tenant_id)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(uniqueness)?;
                    id
                }
                None => {
                    let id = uuid::Uuid::now_v7().to_string();
                    sqlx::query(
                        "INSERT INTO tenant_user (user_id, tenant_id, email, display_name, is_admin, active, \
                           created_at, updated_at, source, user_name, external_id, scim_attributes) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 'scim', $8, $9, $10)",
                    )
                    .bind(&id)
                    .bind(tenant_id)
                    .bind(&w.email)
                    .bind(&w.display_name)
                    .bind(false)
                    .bind(w.active)
                    .bind(now)
                    .bind(&w.user_name)
                    .bind(&w.external_id)
                    .bind(&w.attributes)
                    .execute(&mut *tx)
                    .await
                    .map_err(uniqueness)?;
                    id
                }
            };
            sqlx::query(BUMP).execute(&mut *tx).await?;
            id
        });
        Ok(id)
    }

    pub async fn scim_replace_user(
        &self,
        tenant_id: &str,
        id: &str,
        w: &ScimUserWrite,
    ) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE tenant_user SET user_name = $1, email = $2, external_id = $3, display_name = $4, \
                 active = $5, scim_attributes = $6, updated_at = $7 WHERE tenant_id = $8 AND user_id = $9",
            )
            .bind(&w.user_name)
            .bind(&w.email)
            .bind(&w.external_id)
            .bind(&w.display_name)
            .bind(w.active)
            .bind(&w.attributes)
            .bind(now_micros())
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(uniqueness)?
            .rows_affected();
            sqlx::query(BUMP).execute(&mut *tx).await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Deletes a user with everything that is theirs (tokens, memberships, grants).
    pub async fn scim_delete_user(&self, tenant_id: &str, id: &str) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query("DELETE FROM tenant_user WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(id)
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

    pub async fn scim_groups(&self, tenant_id: &str) -> Result<Vec<ScimGroupRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ScimGroupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {GROUP_COLUMNS} FROM user_group WHERE tenant_id = $1 ORDER BY created_at, group_id"
            )))
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn scim_group(&self, tenant_id: &str, id: &str) -> Result<Option<ScimGroupRow>> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, ScimGroupRow>(sqlx::AssertSqlSafe(format!(
                "SELECT {GROUP_COLUMNS} FROM user_group WHERE tenant_id = $1 AND group_id = $2"
            )))
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row)
    }

    /// (group id, user id, user email) of every membership of the tenant.
    pub async fn scim_members(&self, tenant_id: &str) -> Result<Vec<(String, String, String)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String, String)>(
                "SELECT m.group_id, m.user_id, u.email FROM group_member m \
                 JOIN tenant_user u ON u.user_id = m.user_id WHERE m.tenant_id = $1 ORDER BY u.email",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Creates a group, or adopts one of the same name that provisioning did not make (created
    /// for a grant before the IdP pushed it). Returns the group id.
    pub async fn scim_create_group(&self, tenant_id: &str, w: &ScimGroupWrite) -> Result<String> {
        let id = tenant_tx!(self, tenant_id, |tx| {
            let now = now_micros();
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT group_id FROM user_group WHERE tenant_id = $1 AND name = $2 AND source <> 'scim'",
            )
            .bind(tenant_id)
            .bind(&w.name)
            .fetch_optional(&mut *tx)
            .await?;
            let id = match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE user_group SET external_id = $1, scim_attributes = $2, source = 'scim', \
                         updated_at = $3 WHERE tenant_id = $4 AND group_id = $5",
                    )
                    .bind(&w.external_id)
                    .bind(&w.attributes)
                    .bind(now)
                    .bind(tenant_id)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
                None => {
                    let id = uuid::Uuid::now_v7().to_string();
                    sqlx::query(
                        "INSERT INTO user_group (group_id, tenant_id, name, external_id, source, scim_attributes, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, 'scim', $5, $6, $6)",
                    )
                    .bind(&id)
                    .bind(tenant_id)
                    .bind(&w.name)
                    .bind(&w.external_id)
                    .bind(&w.attributes)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(uniqueness)?;
                    id
                }
            };
            if let Some(members) = &w.members {
                write_members!(tx, tenant_id, &id, members);
            }
            sqlx::query(BUMP).execute(&mut *tx).await?;
            id
        });
        Ok(id)
    }

    pub async fn scim_replace_group(
        &self,
        tenant_id: &str,
        id: &str,
        w: &ScimGroupWrite,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE user_group SET name = $1, external_id = $2, scim_attributes = $3, updated_at = $4 \
                 WHERE tenant_id = $5 AND group_id = $6",
            )
            .bind(&w.name)
            .bind(&w.external_id)
            .bind(&w.attributes)
            .bind(now_micros())
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(uniqueness)?
            .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            if let Some(members) = &w.members {
                write_members!(tx, tenant_id, id, members);
            }
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(())
    }

    pub async fn scim_delete_group(&self, tenant_id: &str, id: &str) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query("DELETE FROM user_group WHERE tenant_id = $1 AND group_id = $2")
                .bind(tenant_id)
                .bind(id)
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
