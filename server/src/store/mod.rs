//! The one store, two engines: SQLite (the embedded default) and PostgreSQL (production and
//! scale-out). Every query is written once in SQL that both engines accept (`$1` placeholders,
//! integer microsecond timestamps, text ids) and run on whichever pool is configured.
//!
//! Invariants:
//! - Every read or write of a tenant-owned table goes through [`Store::tenant_tx`] or names its
//!   `tenant_id` in the `WHERE` clause; on PostgreSQL `tenant_tx` also sets
//!   `portcullis.tenant_id`, which row-level security checks, so a forgotten filter still cannot
//!   read across tenants.
//! - Changes that running servers must see bump a row of `change_counter` in the same
//!   transaction (see `tenancy::watch_changes`).

use crate::domain::{DisplayName, Email, TenantSlug, TokenHash};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

pub use session::SessionStoreAdapter;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The PostgreSQL channel on which `change_counter` updates are announced.
pub const CHANGE_CHANNEL: &str = "portcullis_changes";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write (an existing slug, email…). 409.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// The row to change does not exist (or is another tenant's). 404.
    #[error("not found")]
    NotFound,
    /// The database failed or could not be reached. 500/503; details are logged only.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a unique-constraint violation to `Conflict(what)`, anything else to `Database`.
fn conflict_as(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
    move |e| match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Database(e),
    }
}

#[derive(Clone, Debug)]
enum Engine {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// The database. Cheap to clone (pools are reference-counted).
#[derive(Clone, Debug)]
pub struct Store {
    engine: Engine,
}

/// Runs `$body` with `$pool` bound to the configured pool; the body is compiled once per engine.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.engine {
            Engine::Sqlite($pool) => $body,
            Engine::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` in a transaction scoped to one tenant: on PostgreSQL it sets
/// `portcullis.tenant_id` for the transaction, which the row-level security policies check.
/// An early return (`?`) drops the transaction, which rolls it back.
macro_rules! tenant_tx {
    ($store:expr, $tenant:expr, |$tx:ident| $body:expr) => {
        match &$store.engine {
            Engine::Sqlite(pool) => {
                // IMMEDIATE: the write lock is taken at the start (waiting out busy_timeout), so
                // a transaction that reads and then writes cannot fail half-way with
                // SQLITE_BUSY_SNAPSHOT when another connection wrote in between.
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
            Engine::Postgres(pool) => {
                let mut $tx = pool.begin().await?;
                sqlx::query("SELECT set_config('portcullis.tenant_id', $1, true)")
                    .bind($tenant)
                    .execute(&mut *$tx)
                    .await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    };
}

mod agents;
mod approvals;
mod audit;
mod connections;
mod filters;
pub use filters::FilterHookRow;
mod identity;
mod limits;
mod oauth;
pub mod pins;
pub mod review;
mod scim;
mod servers;
mod session;
mod vault;

pub use agents::{AgentRow, AgentTokenRow, AgentWrite, LiveAgentToken};
pub use approvals::{ApprovalRequest, ApprovalRule};
pub use audit::{AuditQuery, AuditRow, AuditSettingsRow, Bucket, Count, SiemRow, Volume};
pub use connections::ConnectionRow;
pub use identity::{CatalogTool, GrantRow, GroupRow, RegistryRow, UserListRow};

pub use limits::{CounterDelta, CounterTotal, LimitRow};
pub use oauth::{CodeRow, LiveAccessToken, OAuthGrantRow, Redeemed, Refreshed};
pub use scim::{ScimGroupRow, ScimGroupWrite, ScimUserRow, ScimUserWrite};
pub use servers::{LiveToken, ServerRow, TokenRow};
pub use vault::{VaultKeyRow, VaultSecretRow};

/// Where the data lives, parsed from `DATABASE_URL` or the data directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseLocation {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl DatabaseLocation {
    /// `postgres://…` / `postgresql://…` selects PostgreSQL, `sqlite://PATH` a SQLite file.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            PgConnectOptions::from_str(url).map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
            Ok(Self::Postgres(url.to_owned()))
        } else if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err("sqlite:// needs a file path".into());
            }
            Ok(Self::Sqlite(path.into()))
        } else {
            Err("must start with postgres://, postgresql:// or sqlite://".into())
        }
    }

    /// A description safe to log: never includes a password.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(p) => format!("sqlite {}", p.display()),
            Self::Postgres(url) => match PgConnectOptions::from_str(url) {
                Ok(o) => format!(
                    "postgres {}:{}/{}",
                    o.get_host(),
                    o.get_port(),
                    o.get_database().unwrap_or("")
                ),
                Err(_) => "postgres".into(),
            },
        }
    }
}

pub fn now_micros() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct TenantRow {
    pub tenant_id: String,
    pub slug: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct UserRow {
    pub user_id: String,
    pub tenant_id: String,
    pub email: String,
    pub is_admin: bool,
    pub active: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserCounts {
    pub users: i64,
    pub admins: i64,
}

impl Store {
    /// Opens the database (creating a SQLite file if missing) and applies pending migrations.
    pub async fn open(location: &DatabaseLocation) -> Result<Self> {
        let store = match location {
            DatabaseLocation::Sqlite(path) => Self::open_sqlite(path).await?,
            DatabaseLocation::Postgres(url) => Self::open_postgres(url).await?,
        };
        Ok(store)
    }

    async fn open_sqlite(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(e.into()))?;
            }
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL in WAL mode: a committed transaction survives a killed process; only an
            // OS crash or power loss could lose the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // 1 MiB of page cache per connection (SQLite's default is 2 MiB): the hot path
            // appends and reads by index; memory under load is a goal (BENCHMARKS.md).
            .pragma("cache_size", "-1024")
            .disable_statement_logging();
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // An embedded database's connection cannot go stale: no ping before each use (a
            // round trip to the connection's thread on every query).
            .test_before_acquire(false)
            .connect_with(opts)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        Ok(Self {
            engine: Engine::Sqlite(pool),
        })
    }

    async fn open_postgres(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url)?.disable_statement_logging();
        // Migrations run on a connection of their own, as the login role (they need DDL).
        let mut conn = sqlx::PgConnection::connect_with(&opts).await?;
        POSTGRES_MIGRATIONS.run(&mut conn).await?;
        conn.close().await?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Queries run as portcullis_app, which row-level security binds even when
                    // the login role is a superuser (superusers bypass RLS).
                    let can: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'portcullis_app') \
                         AND pg_has_role(current_user, 'portcullis_app', 'MEMBER')",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    if can {
                        sqlx::query("SET ROLE portcullis_app")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await?;
        Ok(Self {
            engine: Engine::Postgres(pool),
        })
    }

    /// Applies pending migrations (they also run on every open).
    pub async fn migrate(&self) -> Result<()> {
        match &self.engine {
            Engine::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
            Engine::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                sqlx::query("RESET ROLE").execute(&mut *conn).await?;
                let res = POSTGRES_MIGRATIONS.run(&mut *conn).await;
                // Do not return this connection to the pool with the login role.
                conn.detach().close().await.ok();
                res?
            }
        }
        Ok(())
    }

    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite(_) => "sqlite",
            Engine::Postgres(_) => "postgres",
        }
    }

    /// The PostgreSQL pool, for LISTEN/NOTIFY; `None` on SQLite.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.engine {
            Engine::Postgres(p) => Some(p),
            Engine::Sqlite(_) => None,
        }
    }

    /// A cheap round trip for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }

    // ---- platform settings ----------------------------------------------------------------

    pub async fn platform_setting(&self, name: &str) -> Result<Option<String>> {
        let v = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT value FROM platform_setting WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        Ok(v)
    }

    /// Stores `value` unless a value is already there; returns whether it was stored. Used for
    /// first-start secrets so that two replicas starting at once agree on one.
    pub async fn set_platform_setting_if_absent(&self, name: &str, value: &str) -> Result<bool> {
        let n = with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO platform_setting (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(value)
            .bind(now_micros())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn set_platform_setting(&self, name: &str, value: &str) -> Result<()> {
        with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO platform_setting (name, value, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )
            .bind(name)
            .bind(value)
            .bind(now_micros())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    // ---- change counters ------------------------------------------------------------------

    pub async fn change_version(&self, topic: &str) -> Result<i64> {
        let v = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT version FROM change_counter WHERE topic = $1")
                .bind(topic)
                .fetch_optional(pool)
                .await?
        });
        Ok(v.unwrap_or(0))
    }

    // ---- tenants --------------------------------------------------------------------------

    pub async fn list_tenants(&self) -> Result<Vec<TenantRow>> {
        let rows = with_pool!(self, |pool| {
            sqlx::query_as::<_, TenantRow>(
                "SELECT tenant_id, slug, name, created_at, updated_at FROM tenant ORDER BY slug",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    pub async fn tenant_by_slug(&self, slug: &TenantSlug) -> Result<Option<TenantRow>> {
        let row = with_pool!(self, |pool| {
            sqlx::query_as::<_, TenantRow>(
                "SELECT tenant_id, slug, name, created_at, updated_at FROM tenant WHERE slug = $1",
            )
            .bind(slug.as_str())
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Creates a tenant with its first admin user and that admin's bootstrap token, in one
    /// transaction, and tells running servers (change counter `tenants`).
    pub async fn create_tenant(
        &self,
        slug: &TenantSlug,
        name: &DisplayName,
        admin_email: &Email,
        admin_token: &TokenHash,
    ) -> Result<TenantRow> {
        let now = now_micros();
        let tenant = TenantRow {
            tenant_id: uuid::Uuid::now_v7().to_string(),
            slug: slug.as_str().to_owned(),
            name: name.as_str().to_owned(),
            created_at: now,
            updated_at: now,
        };
        let user_id = uuid::Uuid::now_v7().to_string();
        tenant_tx!(self, &tenant.tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO tenant (tenant_id, slug, name, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .bind(&tenant.tenant_id)
            .bind(&tenant.slug)
            .bind(&tenant.name)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as("tenant"))?;
            sqlx::query(
                "INSERT INTO tenant_user (user_id, tenant_id, email, is_admin, active, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $4, $5, $5)",
            )
            .bind(&user_id)
            .bind(&tenant.tenant_id)
            .bind(admin_email.as_str())
            .bind(true)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(conflict_as("user"))?;
            sqlx::query(
                "INSERT INTO admin_token (admin_token_id, tenant_id, user_id, token_hash, label, created_at) \
                 VALUES ($1, $2, $3, $4, 'bootstrap', $5)",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(&tenant.tenant_id)
            .bind(&user_id)
            .bind(admin_token.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE change_counter SET version = version + 1 WHERE topic = 'tenants'")
                .execute(&mut *tx)
                .await?;
        });
        Ok(tenant)
    }

    pub async fn rename_tenant(&self, tenant_id: &str, name: &DisplayName) -> Result<()> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n =
                sqlx::query("UPDATE tenant SET name = $1, updated_at = $2 WHERE tenant_id = $3")
                    .bind(name.as_str())
                    .bind(now_micros())
                    .bind(tenant_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            sqlx::query("UPDATE change_counter SET version = version + 1 WHERE topic = 'tenants'")
                .execute(&mut *tx)
                .await?;
            n
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    // ---- users and admin tokens -----------------------------------------------------------

    /// The active admin user owning an unrevoked admin token of this tenant, if any; records
    /// the token's last use.
    pub async fn admin_by_token(
        &self,
        tenant_id: &str,
        hash: &TokenHash,
    ) -> Result<Option<UserRow>> {
        let user = tenant_tx!(self, tenant_id, |tx| {
            let user = sqlx::query_as::<_, UserRow>(
                "SELECT u.user_id, u.tenant_id, u.email, u.is_admin, u.active \
                 FROM admin_token t JOIN tenant_user u \
                   ON u.tenant_id = t.tenant_id AND u.user_id = t.user_id \
                 WHERE t.tenant_id = $1 AND t.token_hash = $2 AND t.revoked_at IS NULL \
                   AND u.active = $3 AND u.is_admin = $3",
            )
            .bind(tenant_id)
            .bind(hash.as_str())
            .bind(true)
            .fetch_optional(&mut *tx)
            .await?;
            if user.is_some() {
                sqlx::query(
                    "UPDATE admin_token SET last_used_at = $1 WHERE tenant_id = $2 AND token_hash = $3",
                )
                .bind(now_micros())
                .bind(tenant_id)
                .bind(hash.as_str())
                .execute(&mut *tx)
                .await?;
            }
            user
        });
        Ok(user)
    }

    pub async fn user(&self, tenant_id: &str, user_id: &str) -> Result<Option<UserRow>> {
        let user = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, UserRow>(
                "SELECT user_id, tenant_id, email, is_admin, active FROM tenant_user \
                 WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(user)
    }

    pub async fn user_counts(&self, tenant_id: &str) -> Result<UserCounts> {
        let counts = tenant_tx!(self, tenant_id, |tx| {
            let users: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tenant_user WHERE tenant_id = $1 AND active = $2",
            )
            .bind(tenant_id)
            .bind(true)
            .fetch_one(&mut *tx)
            .await?;
            let admins: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM tenant_user WHERE tenant_id = $1 AND active = $2 AND is_admin = $2",
            )
            .bind(tenant_id)
            .bind(true)
            .fetch_one(&mut *tx)
            .await?;
            UserCounts { users, admins }
        });
        Ok(counts)
    }

    /// Counts `tenant_user` rows visible without any tenant scope. Row-level security makes this
    /// 0 on PostgreSQL whatever the table holds; it exists so tests can prove that.
    pub async fn count_users_unscoped(&self) -> Result<i64> {
        let n = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM tenant_user")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_pick_the_engine_or_say_what_is_wrong() {
        assert_eq!(
            DatabaseLocation::parse("sqlite:///var/lib/p.db"),
            Ok(DatabaseLocation::Sqlite("/var/lib/p.db".into()))
        );
        assert!(matches!(
            DatabaseLocation::parse("postgres://u:secret@db:5432/portcullis"),
            Ok(DatabaseLocation::Postgres(_))
        ));
        assert!(DatabaseLocation::parse("mysql://x").is_err());
        assert!(DatabaseLocation::parse("sqlite://").is_err());
    }

    #[test]
    fn redacted_postgres_location_hides_the_password() {
        let loc = DatabaseLocation::parse("postgres://u:hunter2@db:5433/p").unwrap();
        let shown = loc.redacted();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db:5433/p"), "{shown}");
    }
}
