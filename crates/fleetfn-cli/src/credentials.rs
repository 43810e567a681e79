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
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(serde_json::to_string_pretty(&stored)?.as_bytes())?;
    f.sync_all()?;
    Ok((
        Credentials {
            access_key_id: stored.access_key_id,
            secret_access_key: stored.secret_access_key,
        },
        true,
    ))
}
