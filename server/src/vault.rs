//! The vault: envelope encryption of the secrets the control plane holds.
//!
//! - Each tenant has data keys (256-bit, random); the active one encrypts new secrets, older
//!   ones are retired once their secrets were re-encrypted (`rotate_data_key`). Data keys are
//!   stored only wrapped: AES-256-GCM under a key derived from the master key (the KEK,
//!   `keys.rs`), with associated data naming the tenant and key id, so a wrapped key copied to
//!   another tenant does not unwrap.
//! - A secret is AES-256-GCM under the tenant's data key with a fresh 96-bit random nonce and
//!   associated data naming tenant, owner table, owner row and name: a ciphertext moved to
//!   another row, name or tenant fails to decrypt. Stored as `v1:` + base64(nonce ‖ ct).
//! - Unwrapped data keys are cached in memory (zeroized on drop); decrypted secrets are handed
//!   out as `Zeroizing<String>` and never logged, recorded or returned by the API.

use crate::keys::MasterKey;
use crate::store::{now_micros, Store, StoreError, VaultKeyRow, VaultSecretRow};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

type DataKey = Arc<Zeroizing<[u8; 32]>>;

/// The key-encryption key: what wraps and unwraps the tenants' data keys. The vault knows it
/// only through this interface, so where it lives is pluggable:
///
/// - the master key from a file (`{data_dir}/master.key`, the embedded default) or from the
///   environment (`PORTCULLIS_MASTER_KEY`): [`MasterKey`] wraps locally with AES-256-GCM under a
///   key derived from it;
/// - a cloud KMS (AWS KMS `Encrypt`/`Decrypt` with the associated data as encryption context,
///   Google Cloud KMS with it as additional authenticated data, Azure Key Vault `wrapKey`):
///   an implementation calls the service, and the key never leaves it. Data keys are unwrapped
///   once per process and cached, so the KMS sees one call per tenant key, not per secret.
///
/// `aad` names the tenant and the data key's id: a wrapped key copied to another tenant or id
/// does not unwrap.
pub trait Kek: Send + Sync {
    /// A non-secret identifier, stored beside each wrapped key (which KEK unwraps it).
    fn fingerprint(&self) -> String;
    /// Wraps a data key.
    fn wrap(&self, aad: &[u8], data_key: &[u8; 32]) -> Result<String, VaultError>;
    /// Unwraps a data key this KEK wrapped.
    fn unwrap(&self, aad: &[u8], wrapped: &str) -> Result<Zeroizing<[u8; 32]>, VaultError>;
}

impl Kek for MasterKey {
    fn fingerprint(&self) -> String {
        MasterKey::fingerprint(self)
    }

    fn wrap(&self, aad: &[u8], data_key: &[u8; 32]) -> Result<String, VaultError> {
        Ok(seal_with(&self.vault_kek(), aad, data_key))
    }

    fn unwrap(&self, aad: &[u8], wrapped: &str) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        let raw = open_with(&self.vault_kek(), aad, wrapped).ok_or(VaultError::Corrupt)?;
        let arr: [u8; 32] = raw.as_slice().try_into().map_err(|_| VaultError::Corrupt)?;
        Ok(Zeroizing::new(arr))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("a vault secret does not decrypt: it was altered, moved, or sealed under another key")]
    Corrupt,
    #[error("the data key {0} of this tenant does not unwrap with the master key")]
    Unwrap(String),
    #[error("the master key is being rotated or was rotated: no new data key is made until this server runs with the new key")]
    KekChanged,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a secret belongs: the table and row that own it, and its name there.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    pub table: &'a str,
    pub row: &'a str,
    pub name: &'a str,
}

pub struct Vault {
    /// The master key: legacy values sealed before the vault existed, and the audit
    /// checkpoint keys' origin.
    master: Arc<MasterKey>,
    /// The current KEK: wraps new data keys.
    kek: Arc<dyn Kek>,
    /// The KEK a rotation replaced, if still configured: unwraps data keys the rotation has
    /// not re-wrapped yet.
    previous: Option<Arc<dyn Kek>>,
    /// (tenant, key id) → the unwrapped data key.
    keys: Mutex<HashMap<(String, String), DataKey>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(redacted)")
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> String {
    let cipher = Aes256Gcm::new(key.into());
    let mut nonce = [0u8; 12];
    rand::rng().fill_bytes(&mut nonce);
    // Encryption with a valid key and nonce cannot fail for inputs of this size.
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    format!("v1:{}", b64().encode(out))
}

fn open_with(key: &[u8; 32], aad: &[u8], sealed: &str) -> Option<Zeroizing<Vec<u8>>> {
    let bytes = b64().decode(sealed.strip_prefix("v1:")?).ok()?;
    if bytes.len() < 12 + 16 {
        return None;
    }
    let (nonce, ct) = bytes.split_at(12);
    Aes256Gcm::new(key.into())
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
        .map(Zeroizing::new)
}

fn secret_aad(tenant_id: &str, slot: Slot<'_>) -> Vec<u8> {
    format!(
        "portcullis vault secret v1\0{tenant_id}\0{}\0{}\0{}",
        slot.table, slot.row, slot.name
    )
    .into_bytes()
}

fn key_aad(tenant_id: &str, key_id: &str) -> Vec<u8> {
    format!("portcullis vault data key v1\0{tenant_id}\0{key_id}").into_bytes()
}

impl Vault {
    pub fn new(kek: Arc<MasterKey>) -> Self {
        Self::with_previous(kek, None)
    }

    pub fn with_previous(kek: Arc<MasterKey>, previous: Option<Arc<MasterKey>>) -> Self {
        Self::with_kek(kek.clone(), kek, previous.map(|p| p as Arc<dyn Kek>))
    }

    /// A vault whose data keys are wrapped by `kek` (a KMS, say) rather than the master key.
    pub fn with_kek(
        master: Arc<MasterKey>,
        kek: Arc<dyn Kek>,
        previous: Option<Arc<dyn Kek>>,
    ) -> Self {
        Self {
            master,
            kek,
            previous,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The KEK that wrapped `row` (by its fingerprint).
    fn kek_for(&self, row: &VaultKeyRow) -> Option<&dyn Kek> {
        std::iter::once(&self.kek)
            .chain(self.previous.iter())
            .find(|k| k.fingerprint() == row.kek_fingerprint)
            .map(AsRef::as_ref)
    }

    fn cached(&self, tenant_id: &str, key_id: &str) -> Option<DataKey> {
        crate::gateway::lock(&self.keys)
            .get(&(tenant_id.to_owned(), key_id.to_owned()))
            .cloned()
    }

    fn unwrap_key(&self, tenant_id: &str, row: &VaultKeyRow) -> Result<DataKey, VaultError> {
        if let Some(k) = self.cached(tenant_id, &row.key_id) {
            return Ok(k);
        }
        let key: DataKey = Arc::new(
            self.kek_for(row)
                .ok_or_else(|| VaultError::Unwrap(row.key_id.clone()))?
                .unwrap(&key_aad(tenant_id, &row.key_id), &row.wrapped)
                .map_err(|_| VaultError::Unwrap(row.key_id.clone()))?,
        );
        crate::gateway::lock(&self.keys)
            .insert((tenant_id.to_owned(), row.key_id.clone()), key.clone());
        Ok(key)
    }

    /// Whether this server may wrap new data keys: its master key is the database's, and no
    /// rotation is under way (a data key wrapped under a key being retired would be lost with
    /// it; `keys rotate` marks the rotation first, and re-wraps stragglers after).
    async fn may_make_keys(&self, store: &Store) -> Result<(), VaultError> {
        let fp = store
            .platform_setting(crate::keys::FINGERPRINT_SETTING)
            .await?;
        let rotating = store
            .platform_setting(crate::keys::ROTATING_SETTING)
            .await?;
        if fp.as_deref() != Some(self.master.fingerprint().as_str())
            || rotating.is_some_and(|r| !r.is_empty())
        {
            return Err(VaultError::KekChanged);
        }
        Ok(())
    }

    /// A new data key, wrapped under the KEK.
    fn new_key(&self, tenant_id: &str, key_id: &str) -> Result<(VaultKeyRow, DataKey), VaultError> {
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(raw.as_mut());
        let wrapped = self.kek.wrap(&key_aad(tenant_id, key_id), &raw)?;
        Ok((
            VaultKeyRow {
                key_id: key_id.to_owned(),
                wrapped,
                kek_fingerprint: self.kek.fingerprint(),
                created_at: now_micros(),
                retired_at: None,
            },
            Arc::new(raw),
        ))
    }

    /// The tenant's active data key (made on first use).
    async fn active(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<(String, DataKey), VaultError> {
        let keys = store.vault_keys(tenant_id).await?;
        let row = match keys.into_iter().find(|k| k.retired_at.is_none()) {
            Some(r) => r,
            None => {
                self.may_make_keys(store).await?;
                let (row, _) = self.new_key(tenant_id, "k1")?;
                // Another replica may have made one first: use whichever was stored (a race
                // that both lost to the other's insert reads the winner's).
                match store.insert_first_vault_key(tenant_id, &row).await {
                    Ok(r) => r,
                    Err(e) => store
                        .vault_keys(tenant_id)
                        .await?
                        .into_iter()
                        .find(|k| k.retired_at.is_none())
                        .ok_or(VaultError::Store(e))?,
                }
            }
        };
        let key = self.unwrap_key(tenant_id, &row)?;
        Ok((row.key_id, key))
    }

    /// Seals `plaintext` into `slot` (replacing what was there) and bumps `topic`.
    pub async fn put(
        &self,
        store: &Store,
        tenant_id: &str,
        slot: Slot<'_>,
        plaintext: &str,
        topic: &str,
    ) -> Result<(), VaultError> {
        let (key_id, key) = self.active(store, tenant_id).await?;
        let ciphertext = seal_with(&key, &secret_aad(tenant_id, slot), plaintext.as_bytes());
        store
            .put_vault_secret(
                tenant_id,
                &VaultSecretRow {
                    owner_table: slot.table.to_owned(),
                    owner_id: slot.row.to_owned(),
                    name: slot.name.to_owned(),
                    key_id,
                    ciphertext,
                    updated_at: now_micros(),
                },
                topic,
            )
            .await?;
        Ok(())
    }

    /// The secret in `slot`, if any.
    pub async fn get(
        &self,
        store: &Store,
        tenant_id: &str,
        slot: Slot<'_>,
    ) -> Result<Option<Zeroizing<String>>, VaultError> {
        let Some(row) = store
            .vault_secret(tenant_id, slot.table, slot.row, slot.name)
            .await?
        else {
            return Ok(None);
        };
        self.open_row(store, tenant_id, &row).await.map(Some)
    }

    async fn open_row(
        &self,
        store: &Store,
        tenant_id: &str,
        row: &VaultSecretRow,
    ) -> Result<Zeroizing<String>, VaultError> {
        let key = match self.cached(tenant_id, &row.key_id) {
            Some(k) => k,
            None => {
                let keys = store.vault_keys(tenant_id).await?;
                let k = keys
                    .iter()
                    .find(|k| k.key_id == row.key_id)
                    .ok_or_else(|| VaultError::Unwrap(row.key_id.clone()))?;
                self.unwrap_key(tenant_id, k)?
            }
        };
        let slot = Slot {
            table: &row.owner_table,
            row: &row.owner_id,
            name: &row.name,
        };
        let plain = open_with(&key, &secret_aad(tenant_id, slot), &row.ciphertext)
            .ok_or(VaultError::Corrupt)?;
        String::from_utf8(plain.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| VaultError::Corrupt)
    }

    pub async fn delete(
        &self,
        store: &Store,
        tenant_id: &str,
        slot: Slot<'_>,
        topic: &str,
    ) -> Result<bool, VaultError> {
        Ok(store
            .delete_vault_secret(tenant_id, slot.table, slot.row, slot.name, topic)
            .await?)
    }

    /// The master key itself, for values sealed before the vault existed (read once, then
    /// moved into the vault by `migrate_legacy`).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// The tenant's Ed25519 key for audit checkpoints, kept in the vault (so rotating the
    /// master key does not change it). Made on first use from the value earlier releases
    /// derived from the master key, so checkpoints signed before stay verifiable with the
    /// same public key.
    pub async fn checkpoint_key(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<ed25519_dalek::SigningKey, VaultError> {
        let slot = Slot {
            table: "tenant",
            row: tenant_id,
            name: "audit_checkpoint_key",
        };
        if let Some(hexed) = self.get(store, tenant_id, slot).await? {
            let bytes =
                Zeroizing::new(hex::decode(hexed.as_str()).map_err(|_| VaultError::Corrupt)?);
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| VaultError::Corrupt)?;
            return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
        }
        let key = self.master.checkpoint_key(tenant_id);
        let hexed = Zeroizing::new(hex::encode(key.to_bytes()));
        self.put(store, tenant_id, slot, &hexed, "audit").await?;
        Ok(key)
    }

    /// Makes a new data key the tenant's active one and re-encrypts every secret under it, in
    /// one transaction; returns the new key id and how many secrets moved.
    pub async fn rotate_data_key(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<(String, usize), VaultError> {
        self.may_make_keys(store).await?;
        let keys = store.vault_keys(tenant_id).await?;
        let next = keys
            .iter()
            .filter_map(|k| k.key_id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let key_id = format!("k{next}");
        let (row, key) = self.new_key(tenant_id, &key_id)?;
        let mut moved = Vec::new();
        for s in store.vault_secrets(tenant_id).await? {
            let plain = self.open_row(store, tenant_id, &s).await?;
            let slot = Slot {
                table: &s.owner_table,
                row: &s.owner_id,
                name: &s.name,
            };
            let ct = seal_with(&key, &secret_aad(tenant_id, slot), plain.as_bytes());
            moved.push((
                s.owner_table.clone(),
                s.owner_id.clone(),
                s.name.clone(),
                ct,
            ));
        }
        store.rotate_vault_key(tenant_id, &row, &moved).await?;
        crate::gateway::lock(&self.keys).insert((tenant_id.to_owned(), key_id.clone()), key);
        Ok((key_id, moved.len()))
    }
}

/// Re-wraps every tenant's data keys under `new` (a master key rotation): each key is
/// unwrapped with whichever of this vault's master keys wrapped it, wrapped under `new`, and
/// stored with `new`'s fingerprint. Returns (tenants, data keys re-wrapped). Secrets are not
/// touched: they stay encrypted under their data keys.
pub async fn rewrap_all(
    store: &Store,
    vault: &Vault,
    new: &dyn Kek,
) -> Result<(usize, usize), VaultError> {
    let fp = new.fingerprint();
    let (mut tenants, mut rewrapped) = (0, 0);
    for t in store.list_tenants().await? {
        tenants += 1;
        for row in store.vault_keys(&t.tenant_id).await? {
            if row.kek_fingerprint == fp {
                continue;
            }
            let key = vault.unwrap_key(&t.tenant_id, &row)?;
            let wrapped = new.wrap(&key_aad(&t.tenant_id, &row.key_id), &key)?;
            store
                .rewrap_vault_key(&t.tenant_id, &row.key_id, &wrapped, &fp)
                .await?;
            rewrapped += 1;
        }
    }
    Ok((tenants, rewrapped))
}

/// Moves secrets sealed directly with the master key by earlier releases (IdP client secrets,
/// SIEM credentials) into the vault, once, at start-up; idempotent (what moved is marked
/// `vault` where it was). A value that does not open is left alone and logged.
pub async fn migrate_legacy(store: &Store, vault: &Vault) -> Result<usize, VaultError> {
    let mut moved = 0;
    for t in store.list_tenants().await? {
        let tid = &t.tenant_id;
        if let Some(json) = store.tenant_setting(tid, crate::sso::SETTING).await? {
            let mut v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            if let Some(sealed) = v
                .get("client_secret_sealed")
                .and_then(serde_json::Value::as_str)
                .filter(|s| s.starts_with("v1:"))
                .map(str::to_owned)
            {
                match vault.master().open(&crate::sso::seal_context(tid), &sealed) {
                    Some(plain) => {
                        let plain = Zeroizing::new(String::from_utf8_lossy(&plain).into_owned());
                        vault
                            .put(store, tid, crate::sso::secret_slot(tid), &plain, "identity")
                            .await?;
                        v["client_secret_sealed"] = serde_json::json!(crate::sso::IN_VAULT);
                        store
                            .set_tenant_setting(tid, crate::sso::SETTING, &v.to_string())
                            .await?;
                        moved += 1;
                    }
                    None => {
                        tracing::error!(tenant.id = %tid, "a legacy IdP client secret does not open; left as it is")
                    }
                }
            }
        }
        for d in store.list_siem(tid).await? {
            let Some(sealed) = d.secret_sealed.as_deref().filter(|s| s.starts_with("v1:")) else {
                continue;
            };
            match vault
                .master()
                .open(&crate::audit::siem::seal_context(tid, &d.name), sealed)
            {
                Some(plain) => {
                    let plain = Zeroizing::new(String::from_utf8_lossy(&plain).into_owned());
                    vault
                        .put(
                            store,
                            tid,
                            crate::audit::siem::secret_slot(&d.destination_id),
                            &plain,
                            "audit",
                        )
                        .await?;
                    store
                        .set_siem_secret_marker(tid, &d.destination_id, crate::sso::IN_VAULT)
                        .await?;
                    moved += 1;
                }
                None => {
                    tracing::error!(tenant.id = %tid, siem = %d.name, "a legacy SIEM secret does not open; left as it is")
                }
            }
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_opens_only_in_its_own_slot_and_tenant() {
        let key = [7u8; 32];
        let slot = Slot {
            table: "mcp_server",
            row: "s1",
            name: "credential",
        };
        let sealed = seal_with(&key, &secret_aad("t1", slot), b"canary-value");
        assert!(sealed.starts_with("v1:"));
        assert!(!sealed.contains("canary"));
        let opened = open_with(&key, &secret_aad("t1", slot), &sealed).expect("opens");
        assert_eq!(opened.as_slice(), b"canary-value");
        for (tenant, other) in [
            ("t2", slot),
            ("t1", Slot { row: "s2", ..slot }),
            (
                "t1",
                Slot {
                    name: "other",
                    ..slot
                },
            ),
            (
                "t1",
                Slot {
                    table: "siem_destination",
                    ..slot
                },
            ),
        ] {
            assert!(
                open_with(&key, &secret_aad(tenant, other), &sealed).is_none(),
                "moved to {tenant}/{other:?}"
            );
        }
        assert!(open_with(&[8u8; 32], &secret_aad("t1", slot), &sealed).is_none());
        // Nonces are fresh: the same secret seals differently each time.
        assert_ne!(
            sealed,
            seal_with(&key, &secret_aad("t1", slot), b"canary-value")
        );
    }
}
