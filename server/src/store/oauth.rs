//! OAuth rows: dynamically registered clients, authorization codes, grants and their tokens
//! (only hashes of codes and tokens are stored).

use super::{now_micros, Engine, Result, Store};

const BUMP: &str = "UPDATE change_counter SET version = version + 1 WHERE topic = 'api_tokens'";

/// A redeemed code: what its tokens are for.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CodeRow {
    pub client_id: String,
    pub user_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub server: String,
    pub expires_at: i64,
    pub grant_id: Option<String>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OAuthGrantRow {
    pub grant_id: String,
    pub client_id: String,
    pub user_id: String,
    pub server: String,
    pub revoked_at: Option<i64>,
}

/// A live OAuth access token for the gateway's snapshot.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct LiveAccessToken {
    pub token_hash: String,
    pub user_id: String,
    pub email: String,
    pub expires_at: i64,
    pub client_name: String,
    pub server: String,
}

/// What redeeming a code found.
#[derive(Debug)]
pub enum Redeemed {
    /// No such code (or another tenant's).
    Unknown,
    /// Already redeemed: its grant is revoked now (a replayed code).
    Replayed,
    /// First redemption: the code's request and the new grant.
    Fresh(CodeRow, String),
}

/// What presenting a refresh token found.
#[derive(Debug)]
pub enum Refreshed {
    Unknown,
    /// Already used (or its grant revoked): the whole grant is revoked now.
    Reused,
    Fresh(OAuthGrantRow),
}

impl Store {
    pub async fn create_oauth_client(
        &self,
        tenant_id: &str,
        name: &str,
        redirect_uris: &str,
    ) -> Result<String> {
        let id = format!("pcc_{}", uuid::Uuid::new_v4().simple());
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO oauth_client (client_id, tenant_id, name, redirect_uris, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&id)
            .bind(tenant_id)
            .bind(name)
            .bind(redirect_uris)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        });
        Ok(id)
    }

    /// A client known by its metadata document (its `client_id` is the document's URL): made or
    /// refreshed from the document just fetched.
    pub async fn upsert_oauth_client(
        &self,
        tenant_id: &str,
        client_id: &str,
        name: &str,
        redirect_uris: &str,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO oauth_client (client_id, tenant_id, name, redirect_uris, created_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, client_id) DO UPDATE SET name = $3, \
                 redirect_uris = $4",
            )
            .bind(client_id)
            .bind(tenant_id)
            .bind(name)
            .bind(redirect_uris)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// A client's name and redirect URIs (JSON array).
    pub async fn oauth_client(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<Option<(String, String)>> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String)>(
                "SELECT name, redirect_uris FROM oauth_client WHERE tenant_id = $1 AND client_id = $2",
            )
            .bind(tenant_id)
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn create_oauth_code(
        &self,
        tenant_id: &str,
        code_hash: &str,
        client_id: &str,
        user_id: &str,
        redirect_uri: &str,
        code_challenge: &str,
        server: &str,
        expires_at: i64,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO oauth_code (code_hash, tenant_id, client_id, user_id, redirect_uri, \
                 code_challenge, server, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(code_hash)
            .bind(tenant_id)
            .bind(client_id)
            .bind(user_id)
            .bind(redirect_uri)
            .bind(code_challenge)
            .bind(server)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Redeems a code once: a fresh code makes a grant; a code seen before revokes the grant it
    /// made (RFC 6749 §4.1.2: a replayed code revokes what it issued).
    pub async fn redeem_oauth_code(&self, tenant_id: &str, code_hash: &str) -> Result<Redeemed> {
        let out = tenant_tx!(self, tenant_id, |tx| {
            let row = sqlx::query_as::<_, CodeRow>(
                "SELECT client_id, user_id, redirect_uri, code_challenge, server, expires_at, grant_id \
                 FROM oauth_code WHERE tenant_id = $1 AND code_hash = $2",
            )
            .bind(tenant_id)
            .bind(code_hash)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => Redeemed::Unknown,
                Some(r) if r.grant_id.is_some() => {
                    sqlx::query(
                        "UPDATE oauth_grant SET revoked_at = $3 WHERE tenant_id = $1 AND grant_id = $2 \
                         AND revoked_at IS NULL",
                    )
                    .bind(tenant_id)
                    .bind(&r.grant_id)
                    .bind(now_micros())
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(BUMP).execute(&mut *tx).await?;
                    Redeemed::Replayed
                }
                Some(r) => {
                    let grant = uuid::Uuid::now_v7().to_string();
                    sqlx::query(
                        "INSERT INTO oauth_grant (grant_id, tenant_id, client_id, user_id, server, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&grant)
                    .bind(tenant_id)
                    .bind(&r.client_id)
                    .bind(&r.user_id)
                    .bind(&r.server)
                    .bind(now_micros())
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "UPDATE oauth_code SET grant_id = $3 WHERE tenant_id = $1 AND code_hash = $2",
                    )
                    .bind(tenant_id)
                    .bind(code_hash)
                    .bind(&grant)
                    .execute(&mut *tx)
                    .await?;
                    Redeemed::Fresh(r, grant)
                }
            }
        });
        Ok(out)
    }

    /// Stores a grant's new access and refresh tokens (hashes).
    pub async fn issue_oauth_tokens(
        &self,
        tenant_id: &str,
        grant_id: &str,
        access: (&str, i64),
        refresh: (&str, i64),
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            for (hash, exp, kind) in [
                (access.0, access.1, "access"),
                (refresh.0, refresh.1, "refresh"),
            ] {
                sqlx::query(
                    "INSERT INTO oauth_token (token_hash, tenant_id, grant_id, kind, expires_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(hash)
                .bind(tenant_id)
                .bind(grant_id)
                .bind(kind)
                .bind(exp)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// Uses a refresh token once. A used one presented again revokes its whole grant
    /// (refresh-token reuse detection, OAuth 2.1 §4.3.1).
    pub async fn use_refresh_token(&self, tenant_id: &str, hash: &str) -> Result<Refreshed> {
        let out = tenant_tx!(self, tenant_id, |tx| {
            let found: Option<(String, Option<i64>, i64)> = sqlx::query_as(
                "SELECT grant_id, used_at, expires_at FROM oauth_token \
                 WHERE tenant_id = $1 AND token_hash = $2 AND kind = 'refresh'",
            )
            .bind(tenant_id)
            .bind(hash)
            .fetch_optional(&mut *tx)
            .await?;
            match found {
                None => Refreshed::Unknown,
                Some((grant_id, used, expires_at)) => {
                    let grant = sqlx::query_as::<_, OAuthGrantRow>(
                        "SELECT grant_id, client_id, user_id, server, revoked_at FROM oauth_grant \
                         WHERE tenant_id = $1 AND grant_id = $2",
                    )
                    .bind(tenant_id)
                    .bind(&grant_id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if used.is_some() || grant.revoked_at.is_some() {
                        sqlx::query(
                            "UPDATE oauth_grant SET revoked_at = $3 WHERE tenant_id = $1 \
                             AND grant_id = $2 AND revoked_at IS NULL",
                        )
                        .bind(tenant_id)
                        .bind(&grant_id)
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(BUMP).execute(&mut *tx).await?;
                        Refreshed::Reused
                    } else if expires_at <= now_micros() {
                        Refreshed::Unknown
                    } else {
                        sqlx::query(
                            "UPDATE oauth_token SET used_at = $3 WHERE tenant_id = $1 AND token_hash = $2",
                        )
                        .bind(tenant_id)
                        .bind(hash)
                        .bind(now_micros())
                        .execute(&mut *tx)
                        .await?;
                        Refreshed::Fresh(grant)
                    }
                }
            }
        });
        Ok(out)
    }

    /// Revokes the grant a token (access or refresh) belongs to; false when there is none.
    pub async fn revoke_oauth_token(&self, tenant_id: &str, hash: &str) -> Result<bool> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE oauth_grant SET revoked_at = $3 WHERE tenant_id = $1 AND revoked_at IS NULL \
                 AND grant_id IN (SELECT grant_id FROM oauth_token WHERE tenant_id = $1 AND token_hash = $2)",
            )
            .bind(tenant_id)
            .bind(hash)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(BUMP).execute(&mut *tx).await?;
            n
        });
        Ok(n > 0)
    }

    /// Revokes one grant (and so its tokens).
    pub async fn revoke_oauth_grant(&self, tenant_id: &str, grant_id: &str) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "UPDATE oauth_grant SET revoked_at = $3 WHERE tenant_id = $1 AND grant_id = $2 \
                 AND revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(grant_id)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
            sqlx::query(BUMP).execute(&mut *tx).await?;
        });
        Ok(())
    }

    /// A user's live grants: (grant id, client name, server, since µs).
    pub async fn list_user_grants(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Vec<(String, String, String, i64)>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, (String, String, String, i64)>(
                "SELECT g.grant_id, c.name, g.server, g.created_at FROM oauth_grant g \
                 JOIN oauth_client c ON c.tenant_id = g.tenant_id AND c.client_id = g.client_id \
                 WHERE g.tenant_id = $1 AND g.user_id = $2 AND g.revoked_at IS NULL ORDER BY g.created_at",
            )
            .bind(tenant_id)
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Revokes one grant if it is live; returns its client's name and user's email.
    pub async fn revoke_grant_by_id(
        &self,
        tenant_id: &str,
        grant_id: &str,
    ) -> Result<Option<(String, String, String)>> {
        let found = tenant_tx!(self, tenant_id, |tx| {
            let found: Option<(String, String, String)> = sqlx::query_as(
                "SELECT c.name, u.email, g.user_id FROM oauth_grant g \
                 JOIN oauth_client c ON c.tenant_id = g.tenant_id AND c.client_id = g.client_id \
                 JOIN tenant_user u ON u.tenant_id = g.tenant_id AND u.user_id = g.user_id \
                 WHERE g.tenant_id = $1 AND g.grant_id = $2 AND g.revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(grant_id)
            .fetch_optional(&mut *tx)
            .await?;
            if found.is_some() {
                sqlx::query(
                    "UPDATE oauth_grant SET revoked_at = $3 WHERE tenant_id = $1 AND grant_id = $2",
                )
                .bind(tenant_id)
                .bind(grant_id)
                .bind(now_micros())
                .execute(&mut *tx)
                .await?;
                sqlx::query(BUMP).execute(&mut *tx).await?;
            }
            found
        });
        Ok(found)
    }

    /// Revokes every OAuth grant of a user (with "revoke all access").
    pub async fn revoke_user_oauth(&self, tenant_id: &str, user_id: &str) -> Result<u64> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "UPDATE oauth_grant SET revoked_at = $3 WHERE tenant_id = $1 AND user_id = $2 \
                 AND revoked_at IS NULL",
            )
            .bind(tenant_id)
            .bind(user_id)
            .bind(now_micros())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query(BUMP).execute(&mut *tx).await?;
            n
        });
        Ok(n)
    }

    /// Every unexpired access token of an unrevoked grant of an active user (the snapshot).
    pub async fn list_live_access_tokens(&self, tenant_id: &str) -> Result<Vec<LiveAccessToken>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, LiveAccessToken>(
                "SELECT t.token_hash, u.user_id, u.email, t.expires_at, c.name AS client_name, g.server \
                 FROM oauth_token t \
                 JOIN oauth_grant g ON g.tenant_id = t.tenant_id AND g.grant_id = t.grant_id \
                 JOIN oauth_client c ON c.tenant_id = g.tenant_id AND c.client_id = g.client_id \
                 JOIN tenant_user u ON u.tenant_id = g.tenant_id AND u.user_id = g.user_id \
                 WHERE t.tenant_id = $1 AND t.kind = 'access' AND g.revoked_at IS NULL \
                 AND t.expires_at > $2 AND u.active = $3",
            )
            .bind(tenant_id)
            .bind(now_micros())
            .bind(true)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }
}
