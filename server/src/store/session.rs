//! tower-sessions' `SessionStore` over our own `web_session` table, so that browser sessions
//! live in the same database (either engine) as everything else and survive restarts and
//! replica changes.

use super::{now_micros, Engine, Store};
use async_trait::async_trait;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};

#[derive(Clone, Debug)]
pub struct SessionStoreAdapter(pub Store);

fn backend(e: impl std::fmt::Display) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

fn expires_micros(record: &Record) -> i64 {
    let nanos = record.expiry_date.unix_timestamp_nanos() / 1000;
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

impl Store {
    /// Deletes one session; also used to end sessions of a signed-out or deactivated user.
    pub async fn delete_session(&self, id: &str) -> super::Result<()> {
        with_pool!(self, |pool| {
            sqlx::query("DELETE FROM web_session WHERE session_id = $1")
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn delete_expired_sessions(&self) -> super::Result<u64> {
        let n = with_pool!(self, |pool| {
            sqlx::query("DELETE FROM web_session WHERE expires_at < $1")
                .bind(now_micros())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}

#[async_trait]
impl SessionStore for SessionStoreAdapter {
    /// Inserts a new record, drawing a fresh id while the random one collides with an existing
    /// session (never overwriting someone else's session).
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        let data_of = |r: &Record| serde_json::to_string(r).map_err(backend);
        let store = &self.0;
        loop {
            let data = data_of(record)?;
            let id = record.id.to_string();
            let expires = expires_micros(record);
            let inserted = with_pool!(store, |pool| {
                sqlx::query(
                    "INSERT INTO web_session (session_id, data, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (session_id) DO NOTHING",
                )
                .bind(&id)
                .bind(&data)
                .bind(expires)
                .execute(pool)
                .await
                .map_err(backend)?
                .rows_affected()
            });
            if inserted == 1 {
                return Ok(());
            }
            record.id = Id::default();
        }
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(record).map_err(backend)?;
        let id = record.id.to_string();
        let expires = expires_micros(record);
        let store = &self.0;
        with_pool!(store, |pool| {
            sqlx::query(
                "INSERT INTO web_session (session_id, data, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (session_id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at",
            )
            .bind(&id)
            .bind(&data)
            .bind(expires)
            .execute(pool)
            .await
            .map_err(backend)?;
        });
        Ok(())
    }

    async fn load(&self, session_id: &Id) -> session_store::Result<Option<Record>> {
        let id = session_id.to_string();
        let store = &self.0;
        let data: Option<String> = with_pool!(store, |pool| {
            sqlx::query_scalar(
                "SELECT data FROM web_session WHERE session_id = $1 AND expires_at > $2",
            )
            .bind(&id)
            .bind(now_micros())
            .fetch_optional(pool)
            .await
            .map_err(backend)?
        });
        data.map(|d| serde_json::from_str(&d).map_err(backend))
            .transpose()
    }

    async fn delete(&self, session_id: &Id) -> session_store::Result<()> {
        self.0
            .delete_session(&session_id.to_string())
            .await
            .map_err(backend)
    }
}

#[async_trait]
impl ExpiredDeletion for SessionStoreAdapter {
    async fn delete_expired(&self) -> session_store::Result<()> {
        self.0.delete_expired_sessions().await.map_err(backend)?;
        Ok(())
    }
}
