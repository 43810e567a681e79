//! Environment variables at rest. The values of `Environment.Variables` in stored function and
//! version records are sealed with ChaCha20-Poly1305 (a random nonce per value, the variable's
//! name as associated data) under a key kept outside the store: `fleetfn serve` keeps it in a
//! file beside `credentials.json`. Sealing and opening happen in the records' serde
//! ([`sealed_config`]), so every write and read of a record goes through them and the rest of
//! the control plane and the data plane see plain values. The key is installed once per process
//! by [`ControlPlane::new`](crate::ControlPlane::new).

use std::sync::OnceLock;

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

/// Length of an [`EnvKey`] in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
/// Marks a sealed value: `fleetfn:sealed:v1:` + base64(nonce ‖ ciphertext ‖ tag).
const PREFIX: &str = "fleetfn:sealed:v1:";

/// The key environment variables are sealed with.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvKey([u8; KEY_LEN]);

impl std::fmt::Debug for EnvKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnvKey(..)")
    }
}

impl EnvKey {
    /// A key from exactly [`KEY_LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SecretsError> {
        <[u8; KEY_LEN]>::try_from(bytes)
            .map(Self)
            .map_err(|_| SecretsError::KeyLength(bytes.len()))
    }

    /// A new random key (from the operating system's CSPRNG, through `rand`'s thread RNG).
    pub fn generate() -> Self {
        let mut k = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut k);
        Self(k)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Why a key could not be used or a value not opened.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("the environment-variable key has {0} bytes; it must have exactly 32")]
    KeyLength(usize),
    #[error(
        "a different environment-variable key is already installed in this process; one process serves one data dir"
    )]
    KeyConflict,
    #[error("no environment-variable key is installed (ControlPlane::new installs it)")]
    NoKey,
    #[error(
        "the stored value of environment variable '{0}' cannot be decrypted with this data dir's key: the key file is not the one it was written with, or the record is damaged"
    )]
    Open(String),
}

static KEY: OnceLock<EnvKey> = OnceLock::new();

/// Installs the process's key; the same key again is fine, another one is refused.
pub(crate) fn install(key: &EnvKey) -> Result<(), SecretsError> {
    if KEY.get_or_init(|| key.clone()) == key {
        Ok(())
    } else {
        Err(SecretsError::KeyConflict)
    }
}

fn cipher() -> Result<ChaCha20Poly1305, SecretsError> {
    KEY.get()
        .map(|k| ChaCha20Poly1305::new(Key::from_slice(&k.0)))
        .ok_or(SecretsError::NoKey)
}

fn seal(c: &ChaCha20Poly1305, name: &str, value: &str) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let ct = c
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: value.as_bytes(),
                aad: name.as_bytes(),
            },
        )
        .expect("ChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
    let mut blob = Vec::with_capacity(NONCE_LEN + ct.len());
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&ct);
    format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

fn open(c: &ChaCha20Poly1305, name: &str, stored: &str) -> Result<String, SecretsError> {
    let fail = || SecretsError::Open(name.to_owned());
    let b64 = stored.strip_prefix(PREFIX).ok_or_else(fail)?;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| fail())?;
    if blob.len() < NONCE_LEN {
        return Err(fail());
    }
    let (nonce, ct) = blob.split_at(NONCE_LEN);
    let plain = c
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| fail())?;
    String::from_utf8(plain).map_err(|_| fail())
}

/// Seals a secret of the cluster's own (an agent's credential) for the store; `name` binds it
/// to its record, so a sealed value moved to another record does not open.
pub(crate) fn seal_secret(name: &str, value: &str) -> Result<String, SecretsError> {
    Ok(seal(&cipher()?, name, value))
}

/// Opens what [`seal_secret`] sealed under the same `name`.
pub(crate) fn open_secret(name: &str, stored: &str) -> Result<String, SecretsError> {
    open(&cipher()?, name, stored)
}

/// serde `with` module for the `FunctionConfiguration` of a stored record: variable values are
/// sealed on the way into the store and opened on the way out. Values stored before sealing
/// existed (no prefix) are read as they are and sealed at their record's next write.
pub(crate) mod sealed_config {
    use fleetfn_model::types::FunctionConfiguration;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        cfg: &FunctionConfiguration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        if cfg
            .environment
            .as_ref()
            .is_none_or(|e| e.variables.is_empty())
        {
            return cfg.serialize(s);
        }
        let c = super::cipher().map_err(serde::ser::Error::custom)?;
        let mut sealed = cfg.clone();
        if let Some(e) = sealed.environment.as_mut() {
            for (name, value) in &mut e.variables {
                *value = super::seal(&c, name, value);
            }
        }
        sealed.serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<FunctionConfiguration, D::Error> {
        let mut cfg = FunctionConfiguration::deserialize(d)?;
        if let Some(e) = cfg.environment.as_mut()
            && e.variables.values().any(|v| v.starts_with(super::PREFIX))
        {
            let c = super::cipher().map_err(serde::de::Error::custom)?;
            for (name, value) in &mut e.variables {
                if value.starts_with(super::PREFIX) {
                    *value = super::open(&c, name, value).map_err(serde::de::Error::custom)?;
                }
            }
        }
        Ok(cfg)
    }
}

/// Whether any function or version record in `store` holds a sealed value (so the store cannot
/// be read without its key). Reads the records raw, page by page.
pub async fn store_has_sealed_values(
    store: &dyn fleetfn_store::Store,
) -> Result<bool, fleetfn_store::StoreError> {
    use fleetfn_store::Table;
    const PAGE: usize = 500;
    let marker = PREFIX.as_bytes();
    for table in [Table::Functions, Table::Versions] {
        let mut after: Option<String> = None;
        loop {
            let page = store.list(table, "", after.as_deref(), PAGE).await?;
            if page
                .iter()
                .any(|r| r.value.windows(marker.len()).any(|w| w == marker))
            {
                return Ok(true);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = Some(last.key.clone()),
                _ => break,
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_are_bound_to_key_and_name() {
        let k = EnvKey::from_bytes(&[1; KEY_LEN]).unwrap();
        let c = ChaCha20Poly1305::new(Key::from_slice(k.as_bytes()));
        let sealed = seal(&c, "DB_PASSWORD", "hunter2");
        assert!(sealed.starts_with(PREFIX), "{sealed}");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            seal(&c, "DB_PASSWORD", "hunter2"),
            "a fresh nonce each time"
        );
        assert_eq!(open(&c, "DB_PASSWORD", &sealed).unwrap(), "hunter2");
        // Another name (a value moved to another variable) or another key cannot open it.
        assert!(matches!(open(&c, "OTHER", &sealed), Err(SecretsError::Open(n)) if n == "OTHER"));
        let other = ChaCha20Poly1305::new(Key::from_slice(&[2; KEY_LEN]));
        assert!(open(&other, "DB_PASSWORD", &sealed).is_err());
        assert!(matches!(
            EnvKey::from_bytes(&[0; 31]),
            Err(SecretsError::KeyLength(31))
        ));
    }
}
