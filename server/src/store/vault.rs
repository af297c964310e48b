//! The vault's rows (tenant-owned): wrapped data keys and sealed secrets. Only ciphertext is
//! stored here; `crate::vault` does the cryptography.

use super::{now_micros, Engine, Result, Store};

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct VaultKeyRow {
    pub key_id: String,
    pub wrapped: String,
    pub kek_fingerprint: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct VaultSecretRow {
    pub owner_table: String,
    pub owner_id: String,
    pub name: String,
    pub key_id: String,
    pub ciphertext: String,
    pub updated_at: i64,
}

impl Store {
    /// The tenant's data keys, newest first.
    pub async fn vault_keys(&self, tenant_id: &str) -> Result<Vec<VaultKeyRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, VaultKeyRow>(
                "SELECT key_id, wrapped, kek_fingerprint, created_at, retired_at FROM vault_key \
                 WHERE tenant_id = $1 ORDER BY created_at DESC, key_id DESC",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    /// Stores a tenant's first data key unless another replica stored one first; returns the
    /// active key as it stands after.
    pub async fn insert_first_vault_key(
        &self,
        tenant_id: &str,
        key: &VaultKeyRow,
    ) -> Result<VaultKeyRow> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            let active: Option<VaultKeyRow> = sqlx::query_as(
                "SELECT key_id, wrapped, kek_fingerprint, created_at, retired_at FROM vault_key \
                 WHERE tenant_id = $1 AND retired_at IS NULL",
            )
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
            match active {
                Some(a) => a,
                None => {
                    sqlx::query(
                        "INSERT INTO vault_key (tenant_id, key_id, wrapped, kek_fingerprint, created_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(tenant_id)
                    .bind(&key.key_id)
                    .bind(&key.wrapped)
                    .bind(&key.kek_fingerprint)
                    .bind(key.created_at)
                    .execute(&mut *tx)
                    .await?;
                    key.clone()
                }
            }
        });
        Ok(row)
    }

    /// Makes `key` the tenant's active data key and replaces the secrets' ciphertexts with
    /// `reencrypted` (owner table, owner id, name, ciphertext), in one transaction: either every
    /// secret moved to the new key, or nothing changed.
    pub async fn rotate_vault_key(
        &self,
        tenant_id: &str,
        key: &VaultKeyRow,
        reencrypted: &[(String, String, String, String)],
    ) -> Result<()> {
        let now = now_micros();
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "UPDATE vault_key SET retired_at = $2 WHERE tenant_id = $1 AND retired_at IS NULL",
            )
            .bind(tenant_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO vault_key (tenant_id, key_id, wrapped, kek_fingerprint, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant_id)
            .bind(&key.key_id)
            .bind(&key.wrapped)
            .bind(&key.kek_fingerprint)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await?;
            for (table, owner, name, ct) in reencrypted {
                sqlx::query(
                    "UPDATE vault_secret SET key_id = $5, ciphertext = $6 \
                     WHERE tenant_id = $1 AND owner_table = $2 AND owner_id = $3 AND name = $4",
                )
                .bind(tenant_id)
                .bind(table)
                .bind(owner)
                .bind(name)
                .bind(&key.key_id)
                .bind(ct)
                .execute(&mut *tx)
                .await?;
            }
        });
        Ok(())
    }

    /// Replaces a data key's wrapping (a master key rotation); the key itself is unchanged.
    pub async fn rewrap_vault_key(
        &self,
        tenant_id: &str,
        key_id: &str,
        wrapped: &str,
        kek_fingerprint: &str,
    ) -> Result<()> {
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "UPDATE vault_key SET wrapped = $3, kek_fingerprint = $4 \
                 WHERE tenant_id = $1 AND key_id = $2",
            )
            .bind(tenant_id)
            .bind(key_id)
            .bind(wrapped)
            .bind(kek_fingerprint)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    pub async fn vault_secrets(&self, tenant_id: &str) -> Result<Vec<VaultSecretRow>> {
        let rows = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, VaultSecretRow>(
                "SELECT owner_table, owner_id, name, key_id, ciphertext, updated_at FROM vault_secret \
                 WHERE tenant_id = $1 ORDER BY owner_table, owner_id, name",
            )
            .bind(tenant_id)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows)
    }

    pub async fn vault_secret(
        &self,
        tenant_id: &str,
        owner_table: &str,
        owner_id: &str,
        name: &str,
    ) -> Result<Option<VaultSecretRow>> {
        let row = tenant_tx!(self, tenant_id, |tx| {
            sqlx::query_as::<_, VaultSecretRow>(
                "SELECT owner_table, owner_id, name, key_id, ciphertext, updated_at FROM vault_secret \
                 WHERE tenant_id = $1 AND owner_table = $2 AND owner_id = $3 AND name = $4",
            )
            .bind(tenant_id)
            .bind(owner_table)
            .bind(owner_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row)
    }

    /// Writes a sealed secret (insert or replace) and bumps `topic`'s change counter (the
    /// snapshots that hold the secret follow).
    pub async fn put_vault_secret(
        &self,
        tenant_id: &str,
        row: &VaultSecretRow,
        topic: &str,
    ) -> Result<()> {
        let now = now_micros();
        tenant_tx!(self, tenant_id, |tx| {
            sqlx::query(
                "INSERT INTO vault_secret (tenant_id, owner_table, owner_id, name, key_id, ciphertext, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                 ON CONFLICT (tenant_id, owner_table, owner_id, name) \
                 DO UPDATE SET key_id = excluded.key_id, ciphertext = excluded.ciphertext, \
                 updated_at = excluded.updated_at",
            )
            .bind(tenant_id)
            .bind(&row.owner_table)
            .bind(&row.owner_id)
            .bind(&row.name)
            .bind(&row.key_id)
            .bind(&row.ciphertext)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE change_counter SET version = version + 1 WHERE topic = $1")
                .bind(topic)
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// Deletes a secret; whether there was one.
    pub async fn delete_vault_secret(
        &self,
        tenant_id: &str,
        owner_table: &str,
        owner_id: &str,
        name: &str,
        topic: &str,
    ) -> Result<bool> {
        let n = tenant_tx!(self, tenant_id, |tx| {
            let n = sqlx::query(
                "DELETE FROM vault_secret WHERE tenant_id = $1 AND owner_table = $2 \
                 AND owner_id = $3 AND name = $4",
            )
            .bind(tenant_id)
            .bind(owner_table)
            .bind(owner_id)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            sqlx::query("UPDATE change_counter SET version = version + 1 WHERE topic = $1")
                .bind(topic)
                .execute(&mut *tx)
                .await?;
            n
        });
        Ok(n > 0)
    }
}
