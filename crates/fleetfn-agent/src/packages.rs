//! Where an agent gets a code package its artifact store lacks. An agent of `fleetfn serve`
//! shares the server's artifact store and needs none; an agent that joined from another host
//! fetches packages by digest from the servers ([`PackageSource`]) and keeps them (a cache:
//! packages are content-addressed, so a kept one never goes stale).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use fleetfn_artifacts::{ArtifactStore, Digest};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fetches a code package by its sha256 (hex); `Err` says why it could not.
pub trait PackageSource: Send + Sync + std::fmt::Debug {
    fn fetch<'a>(&'a self, sha256_hex: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>>;
}

/// Makes sure `digest` is in `artifacts`: already there, or fetched from `source` and checked
/// against the digest (sha256 and size) before it is kept.
pub(crate) async fn ensure_package(
    artifacts: &ArtifactStore,
    digest: &Digest,
    source: Option<&Arc<dyn PackageSource>>,
) -> Result<(), String> {
    if artifacts.exists(digest).map_err(|e| e.to_string())? {
        return Ok(());
    }
    let Some(source) = source else {
        return Err(format!(
            "code package sha256 {} is not in this agent's artifact store",
            digest.hex()
        ));
    };
    let bytes = source.fetch(&digest.hex()).await?;
    // Hashing and writing up to 250 MB is blocking work: off the runtime's workers, so the
    // agent keeps answering its servers (and invokes) meanwhile.
    let (artifacts, want) = (artifacts.clone(), *digest);
    tokio::task::spawn_blocking(move || {
        let got = Digest::of(&bytes);
        if got != want {
            return Err(format!(
                "the package fetched for sha256 {} does not match it (got sha256 {}, {} bytes)",
                want.hex(),
                got.hex(),
                bytes.len()
            ));
        }
        artifacts.put(&bytes).map_err(|e| e.to_string())?;
        Ok(())
    })
    .await
    .map_err(|e| format!("checking the fetched package: {e}"))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(Vec<u8>);

    impl PackageSource for Fixed {
        fn fetch<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<u8>, String>> {
            let b = self.0.clone();
            Box::pin(async move { Ok(b) })
        }
    }

    #[tokio::test]
    async fn a_missing_package_is_fetched_checked_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::open(dir.path()).unwrap();
        let bytes = b"PK\x05\x06 not really a zip".to_vec();
        let digest = Digest::of(&bytes);
        let err = ensure_package(&store, &digest, None).await.unwrap_err();
        assert!(err.contains("not in this agent's artifact store"), "{err}");
        let good: Arc<dyn PackageSource> = Arc::new(Fixed(bytes.clone()));
        ensure_package(&store, &digest, Some(&good)).await.unwrap();
        assert_eq!(store.get(&digest).unwrap(), bytes);
        // A source that answers other bytes is not believed.
        let other = Digest::of(b"something else");
        let err = ensure_package(&store, &other, Some(&good))
            .await
            .unwrap_err();
        assert!(err.contains("does not match"), "{err}");
        assert!(!store.exists(&other).unwrap());
    }
}
