//! The master key (key-encryption key) that will wrap every tenant's data keys in the vault.
//!
//! Embedded default: generated on first start into `{data_dir}/master.key`, mode 0600. With
//! PostgreSQL (several replicas) it must come from `PORTCULLIS_MASTER_KEY`, since a key on one
//! machine's disk would leave the other replicas unable to decrypt. Either way the database keeps
//! a fingerprint of the key, so a server started with the wrong key refuses to start instead of
//! failing later on every decryption. The key is never logged.

use crate::store::Store;
use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

pub const KEY_FILE: &str = "master.key";
pub(crate) const FINGERPRINT_SETTING: &str = "master_key_fingerprint";
/// Set (to the new key's fingerprint) while `keys rotate` re-wraps: servers make no new data
/// key meanwhile.
pub(crate) const ROTATING_SETTING: &str = "master_key_rotating";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("PORTCULLIS_MASTER_KEY must be the base64 encoding of exactly 32 bytes")]
    BadKey,
    #[error(
        "PORTCULLIS_MASTER_KEY is required with PostgreSQL (every replica needs the same key); \
         generate one with: head -c 32 /dev/urandom | base64"
    )]
    Missing,
    #[error("cannot read or write the master key file {path}: {message}")]
    File { path: String, message: String },
    #[error("{0} is not a valid master key file (base64 of 32 bytes expected)")]
    BadFile(String),
    #[error(
        "the master key does not match the one this database was set up with; \
         start with the original key (the fingerprints differ)"
    )]
    Mismatch,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// 32 secret bytes, zeroized on drop.
pub struct MasterKey(SecretBox<[u8; 32]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

impl MasterKey {
    fn decode(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Self(SecretBox::new(Box::new(arr))))
    }

    fn generate() -> (Self, String) {
        let mut arr = [0u8; 32];
        rand::rng().fill_bytes(&mut arr);
        let text = base64::engine::general_purpose::STANDARD.encode(arr);
        (Self(SecretBox::new(Box::new(arr))), text)
    }

    /// Encrypts a small secret (an IdP client secret) under a key derived from the master key
    /// for `context` (which also binds the ciphertext as associated data: a sealed value moved
    /// to another tenant or setting does not open). XChaCha20-Poly1305, random 192-bit nonce;
    /// the result is `v1:` + base64(nonce ‖ ciphertext).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> String {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.derive(context).into());
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                (&nonce).into(),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!(
            "v1:{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Decrypts what [`seal`](Self::seal) made for the same `context`; `None` when it was made
    /// for another context or key, or was altered.
    pub fn open(&self, context: &str, sealed: &str) -> Option<Vec<u8>> {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed.strip_prefix("v1:")?)
            .ok()?;
        if bytes.len() < 24 + 16 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(24);
        let cipher = chacha20poly1305::XChaCha20Poly1305::new(&self.derive(context).into());
        cipher
            .decrypt(
                nonce.into(),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .ok()
    }

    /// A per-purpose key: SHA-256 over a domain separator, the master key and the context.
    fn derive(&self, context: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"portcullis seal key v1\0");
        h.update(self.0.expose_secret());
        h.update(context.as_bytes());
        h.finalize().into()
    }

    /// The key-encryption key that wraps the vault's data keys (derived, so the master key
    /// itself never encrypts anything directly).
    pub fn vault_kek(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.derive("vault key-encryption key"))
    }

    /// The Ed25519 key that signs a tenant's audit checkpoints (derived from the master key and
    /// the tenant id, so it survives restarts and is the same on every replica).
    pub fn checkpoint_key(&self, tenant_id: &str) -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(
            &self.derive(&format!("audit checkpoint {tenant_id}")),
        )
    }

    /// A non-secret identifier of the key (domain-separated hash, 16 hex chars), safe to show
    /// admins and to store.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"portcullis master key fingerprint v1\0");
        h.update(self.0.expose_secret());
        hex::encode(&h.finalize()[..8])
    }
}

/// Loads (or on the embedded default, creates) the master key and checks it against the
/// fingerprint stored in the database.
pub async fn load_or_create(
    from_env: Option<&SecretString>,
    data_dir: &Path,
    postgres: bool,
    store: &Store,
) -> Result<MasterKey, KeyError> {
    let key = match from_env {
        Some(k) => MasterKey::decode(k.expose_secret()).ok_or(KeyError::BadKey)?,
        None if postgres => return Err(KeyError::Missing),
        None => load_or_create_file(&data_dir.join(KEY_FILE))?,
    };
    let fp = key.fingerprint();
    store
        .set_platform_setting_if_absent(FINGERPRINT_SETTING, &fp)
        .await?;
    match store.platform_setting(FINGERPRINT_SETTING).await? {
        Some(stored) if stored == fp => Ok(key),
        _ => Err(KeyError::Mismatch),
    }
}

/// The file that keeps the master key a rotation replaced (SQLite deployments).
pub const PREVIOUS_KEY_FILE: &str = "master.key.previous";

/// The previous master key, if one is configured (`PORTCULLIS_MASTER_KEY_PREVIOUS`, or the
/// `master.key.previous` file a rotation left): data keys wrapped under it before the
/// rotation reached them still unwrap.
pub fn load_previous(
    from_env: Option<&SecretString>,
    data_dir: &Path,
) -> Result<Option<MasterKey>, KeyError> {
    if let Some(k) = from_env {
        return MasterKey::decode(k.expose_secret())
            .map(Some)
            .ok_or(KeyError::BadKey);
    }
    let path = data_dir.join(PREVIOUS_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => MasterKey::decode(&text)
            .map(Some)
            .ok_or_else(|| KeyError::BadFile(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(KeyError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// A new master key and its text (base64), for `keys rotate`.
pub fn generate_key() -> (MasterKey, String) {
    MasterKey::generate()
}

/// Parses a master key given as base64 of 32 bytes.
pub fn decode_key(text: &str) -> Option<MasterKey> {
    MasterKey::decode(text)
}

/// Records `key` as the database's master key (after every data key was re-wrapped under it).
pub async fn record_fingerprint(store: &Store, key: &MasterKey) -> Result<(), KeyError> {
    store
        .set_platform_setting(FINGERPRINT_SETTING, &key.fingerprint())
        .await?;
    Ok(())
}

/// Installs a rotated key file pair: the old key becomes `master.key.previous`, the new one
/// `master.key` (each written to a temporary file, synced, then renamed; mode 0600).
pub fn install_rotated_files(
    data_dir: &Path,
    old_text: &str,
    new_text: &str,
) -> Result<(), KeyError> {
    let write = |name: &str, text: &str| -> Result<(), KeyError> {
        let path = data_dir.join(name);
        let tmp = data_dir.join(format!("{name}.tmp"));
        let file_err = |e: std::io::Error| KeyError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(file_err)?;
        f.write_all(text.as_bytes()).map_err(file_err)?;
        f.sync_all().map_err(file_err)?;
        std::fs::rename(&tmp, &path).map_err(file_err)
    };
    write(PREVIOUS_KEY_FILE, old_text)?;
    write(KEY_FILE, new_text)
}

/// The text of the key file (for a rotation, which keeps it as the previous key).
pub fn read_key_file(data_dir: &Path) -> Result<(MasterKey, String), KeyError> {
    let path = data_dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| KeyError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let key =
        MasterKey::decode(&text).ok_or_else(|| KeyError::BadFile(path.display().to_string()))?;
    Ok((key, text.trim().to_owned()))
}

fn load_or_create_file(path: &Path) -> Result<MasterKey, KeyError> {
    let file_err = |e: std::io::Error| KeyError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            MasterKey::decode(&text).ok_or_else(|| KeyError::BadFile(path.display().to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(file_err)?;
            }
            let (key, text) = MasterKey::generate();
            // create_new: never overwrite a key another process wrote a moment ago.
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            match opts.open(path) {
                Ok(mut f) => {
                    f.write_all(text.as_bytes()).map_err(file_err)?;
                    f.sync_all().map_err(file_err)?;
                    Ok(key)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_file(path)
                }
                Err(e) => Err(file_err(e)),
            }
        }
        Err(e) => Err(file_err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_file_is_private_and_reloads_to_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(KEY_FILE);
        let k1 = load_or_create_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let k2 = load_or_create_file(&path).unwrap();
        assert_eq!(k1.fingerprint(), k2.fingerprint());
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(MasterKey::decode("not base64!").is_none());
        let (k, _) = MasterKey::generate();
        let sealed = k.seal("tenant-1/oidc", b"s3cret");
        assert!(!sealed.contains("s3cret"));
        assert_eq!(
            k.open("tenant-1/oidc", &sealed).as_deref(),
            Some(&b"s3cret"[..])
        );
        assert_eq!(
            k.open("tenant-2/oidc", &sealed),
            None,
            "bound to its context"
        );
        let (other, _) = MasterKey::generate();
        assert_eq!(
            other.open("tenant-1/oidc", &sealed),
            None,
            "bound to its key"
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert_eq!(k.open("tenant-1/oidc", &tampered), None);
        assert!(MasterKey::decode("c2hvcnQ=").is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            load_or_create_file(&path),
            Err(KeyError::BadFile(_))
        ));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let (k, text) = MasterKey::generate();
        assert!(!format!("{k:?}").contains(&text));
    }
}
