//! The admin key pair: from the environment, from the data dir, or generated on first start and
//! stored there with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use fleetfn_api::Credentials;
use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Stored {
    access_key_id: String,
    secret_access_key: String,
}

fn random(len: usize, alphabet: &[u8]) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())]))
        .collect()
}

/// Returns the credentials and whether they were generated just now.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<(Credentials, bool)> {
    if let (Ok(id), Ok(secret)) = (
        std::env::var("FLEETFN_ACCESS_KEY_ID"),
        std::env::var("FLEETFN_SECRET_ACCESS_KEY"),
    ) && !id.is_empty()
        && !secret.is_empty()
    {
        return Ok((
            Credentials {
                access_key_id: id,
                secret_access_key: secret,
            },
            false,
        ));
    }
    let path = data_dir.join("credentials.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let s: Stored =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        return Ok((
            Credentials {
                access_key_id: s.access_key_id,
                secret_access_key: s.secret_access_key,
            },
            false,
        ));
    }
    let stored = Stored {
        access_key_id: format!("AKIA{}", random(16, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")),
        secret_access_key: random(
            40,
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        ),
    };
    write_new_secret(&path, serde_json::to_string_pretty(&stored)?.as_bytes())?;
    Ok((
        Credentials {
            access_key_id: stored.access_key_id,
            secret_access_key: stored.secret_access_key,
        },
        true,
    ))
}

/// Name of the file (in the data dir) holding the key environment variables are sealed with.
pub const ENV_KEY_FILE: &str = "env.key";

/// The key environment variables are sealed with in the store: `env.key` in the data dir
/// (32 raw bytes, mode 0600), created when missing unless the store already holds sealed values
/// (`store_sealed`): then it is an error, not a new key, since the variables sealed with the
/// old one could never be read again.
pub fn load_or_create_env_key(
    data_dir: &Path,
    store_sealed: bool,
) -> anyhow::Result<fleetfn_server::EnvKey> {
    use std::os::unix::fs::PermissionsExt;
    let path = data_dir.join(ENV_KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                anyhow::bail!(
                    "{} is readable by others (mode {mode:o}); run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            }
            return fleetfn_server::EnvKey::from_bytes(&bytes)
                .with_context(|| format!("{} is not a fleetfn key file", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if store_sealed {
        anyhow::bail!(
            "{} is missing, but {} holds a store whose environment variables are encrypted with it. \
             Restore the key file from a backup of this data dir. (fleetfn does not make a new key \
             for an existing store; to start over, use a new --data-dir.)",
            path.display(),
            data_dir.display()
        );
    }
    let key = fleetfn_server::EnvKey::generate();
    write_new_secret(&path, key.as_bytes())?;
    Ok(key)
}

/// Creates `path` (which must not exist) with mode 0600 and `bytes`, synced to disk.
fn write_new_secret(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}
