//! The [`ControlPlane`] service: shared plumbing of every operation.

use std::path::PathBuf;
use std::sync::Arc;

use fleetfn_artifacts::{ArtifactStore, Digest};
use fleetfn_model::{LambdaError, Result, Scope};
use fleetfn_store::{Op, Record, Store, StoreError, Table};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::records::{FunctionRecord, VersionRecord, version_key};

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct ControlPlaneConfig {
    pub scope: Scope,
    /// Where code packages are stored.
    pub artifacts_dir: PathBuf,
    /// The key environment variables are sealed with in the store (see `crate::secrets`).
    pub env_key: crate::EnvKey,
}

/// One page of a listing and the marker of the next.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_marker: Option<String>,
}

/// Executes Lambda control-plane commands.
#[derive(Debug, Clone)]
pub struct ControlPlane {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) artifacts: Arc<ArtifactStore>,
    /// Behind an `Arc`: the API clones the control plane (in its state) many times a request.
    pub(crate) scope: Arc<Scope>,
    /// Bumped whenever desired state changes, so reconcilers act at once.
    pub(crate) changed: Arc<watch::Sender<u64>>,
    pub(crate) resolve_cache: Arc<crate::invoke::ResolveCache>,
    /// Whether code packages also live in the store (`fleetfn server`), not only on this disk.
    pub(crate) packages_in_store: bool,
    /// How long an invoke's resolution of a qualifier may be served from memory when other
    /// servers change desired state too (their commits do not bump `changed` here).
    pub(crate) resolve_ttl: Option<std::time::Duration>,
    /// Base of function URLs (`scheme://host[:port]`, the URL id prepended to the host); `None`:
    /// [`crate::default_url_base`] without a port.
    pub(crate) url_base: Option<Arc<str>>,
    pub(crate) url_cache: Arc<crate::function_urls::UrlCache>,
    /// The instance types capacity providers may name; `None`: any name is accepted.
    pub(crate) instance_types: Option<crate::capacity::KnownInstanceTypes>,
}

/// How many times an operation is recomputed after its write lost a race with a background
/// writer (the reconciler applying a scaling config, the data plane's version transitions):
/// such a race is not the caller's concurrent update and is not reported as one.
pub(crate) const RACE_ATTEMPTS: usize = 5;

pub(crate) fn store_err(e: StoreError) -> LambdaError {
    match e {
        StoreError::Conflict { key, .. } => LambdaError::conflict(format!(
            "The operation cannot be performed at this time. An update is in progress for resource: {key}. Retry the request."
        )),
        other => LambdaError::service(format!("fleetfn store error: {other}")),
    }
}

impl ControlPlane {
    pub fn new(store: Arc<dyn Store>, config: ControlPlaneConfig) -> Result<Self> {
        crate::secrets::install(&config.env_key)
            .map_err(|e| LambdaError::service(e.to_string()))?;
        let artifacts = ArtifactStore::open(&config.artifacts_dir).map_err(|e| {
            LambdaError::service(format!(
                "cannot open the artifact store at {}: {e}",
                config.artifacts_dir.display()
            ))
        })?;
        Ok(Self {
            store,
            artifacts: Arc::new(artifacts),
            scope: Arc::new(config.scope),
            changed: Arc::new(watch::Sender::new(0)),
            resolve_cache: Arc::default(),
            packages_in_store: false,
            resolve_ttl: None,
            url_base: None,
            url_cache: Arc::default(),
            instance_types: None,
        })
    }

    /// Refuses capacity providers whose `AllowedInstanceTypes`/`ExcludedInstanceTypes` name a
    /// type `known` does not match (the data plane's instance catalog).
    #[must_use]
    pub fn with_instance_types(self, known: crate::capacity::KnownInstanceTypes) -> Self {
        Self {
            instance_types: Some(known),
            ..self
        }
    }

    /// The same control plane (code packages, change notifications, caches) writing through
    /// another store: a leader's loops use one whose writes are fenced by its lease
    /// (`fleetfn_store::lease::Fenced`).
    #[must_use]
    pub fn with_store(&self, store: Arc<dyn Store>) -> Self {
        Self {
            store,
            ..self.clone()
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// A receiver that sees a new value whenever desired state changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn artifacts(&self) -> &ArtifactStore {
        &self.artifacts
    }

    /// Keeps every code package in the store too (`fleetfn server`): any server can hand out
    /// any package, and none is lost with one server's disk.
    #[must_use]
    /// Invoke resolutions served from memory for at most `ttl` (besides being dropped at this
    /// server's own changes): for servers that share a store, where another server's publish
    /// or alias update must reach this one's invokes.
    pub fn with_resolve_ttl(self, ttl: std::time::Duration) -> Self {
        Self {
            resolve_ttl: Some(ttl),
            ..self
        }
    }

    /// Writes function URLs under `base` (`scheme://host[:port]`, e.g.
    /// `http://lambda-url.us-east-1.localhost:9001`, see [`crate::default_url_base`]): a URL is
    /// `scheme://<url-id>.host[:port]/`. Set by the server that serves them.
    #[must_use]
    pub fn with_url_base(self, base: impl Into<String>) -> Self {
        Self {
            url_base: Some(base.into().into()),
            ..self
        }
    }

    #[must_use]
    pub fn with_packages_in_store(self) -> Self {
        Self {
            packages_in_store: true,
            ..self
        }
    }

    /// Stores a code package on this server's disk and, when packages live in the store,
    /// there too, before any record refers to it.
    pub(crate) async fn put_package(&self, package: &crate::functions::Package) -> Result<Digest> {
        // Writing and syncing up to 50 MB blocks: off the runtime's threads.
        let artifacts = self.artifacts.clone();
        let (bytes, known) = (package.bytes.clone(), package.digest);
        let in_store = self.packages_in_store;
        let (digest, value) = tokio::task::spawn_blocking(move || {
            let digest = artifacts.put_digested(&bytes, known)?;
            Ok::<_, fleetfn_artifacts::StoreError>((digest, in_store.then(|| bytes.to_vec())))
        })
        .await
        .map_err(|e| LambdaError::service(format!("storing the code package: {e}")))?
        .map_err(|e| LambdaError::service(format!("cannot store the code package: {e}")))?;
        if let Some(value) = value {
            let put = Op::Put {
                table: Table::Packages,
                key: digest.hex(),
                value,
                expect: fleetfn_store::Expect::Absent,
            };
            match self.store.commit(vec![put]).await {
                // Already there: packages are content-addressed.
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => {
                    return Err(LambdaError::service(format!(
                        "cannot store the code package in the shared store: {e}"
                    )));
                }
            }
        }
        Ok(digest)
    }

    /// A code package's bytes by its sha256 (hex): from this server's disk, else from the store
    /// (checked against the digest, then kept on disk). `None` when neither has it.
    pub async fn package(&self, hex: &str) -> Result<Option<Vec<u8>>> {
        let Ok(digest) = Digest::from_hex(hex, 0) else {
            return Ok(None);
        };
        if let Ok(bytes) = tokio::fs::read(self.artifacts.blob_path(&digest)).await {
            return Ok(Some(bytes));
        }
        if !self.packages_in_store {
            return Ok(None);
        }
        let Some(rec) = self
            .store
            .get(Table::Packages, &digest.hex())
            .await
            .map_err(store_err)?
        else {
            return Ok(None);
        };
        // Hashing and writing up to 250 MB blocks: off the runtime's workers (the lease's
        // renewals and the API keep running meanwhile).
        let artifacts = self.artifacts.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            if Digest::of(&rec.value).hex() != digest.hex() {
                return Err(LambdaError::service(format!(
                    "the stored code package sha256 {} does not match its content",
                    digest.hex()
                )));
            }
            // A cache: a failure to keep it on disk costs only the next read.
            let _ = artifacts.put(&rec.value);
            Ok(rec.value)
        })
        .await
        .map_err(|e| LambdaError::service(format!("checking a code package: {e}")))??;
        Ok(Some(bytes))
    }

    pub(crate) async fn get_record<T: DeserializeOwned>(
        &self,
        table: Table,
        key: &str,
    ) -> Result<Option<(T, i64)>> {
        match self.store.get(table, key).await.map_err(store_err)? {
            Some(rec) => Ok(Some((decode(&rec)?, rec.revision))),
            None => Ok(None),
        }
    }

    pub(crate) async fn list_records<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(T, String, i64)>> {
        let recs = self
            .store
            .list(table, prefix, after, limit)
            .await
            .map_err(store_err)?;
        recs.iter()
            .map(|r| Ok((decode(r)?, r.key.clone(), r.revision)))
            .collect()
    }

    pub(crate) async fn commit(&self, ops: Vec<Op>) -> Result<Vec<i64>> {
        let revs = self.store.commit(ops).await.map_err(store_err)?;
        self.changed.send_modify(|n| *n += 1);
        Ok(revs)
    }

    /// [`Self::commit`] that reports a lost race (a record changed since it was read) as
    /// `Ok(None)`, for operations that recompute themselves from fresh reads.
    pub(crate) async fn commit_unless_raced(&self, ops: Vec<Op>) -> Result<Option<Vec<i64>>> {
        match self.store.commit(ops).await {
            Ok(revs) => {
                self.changed.send_modify(|n| *n += 1);
                Ok(Some(revs))
            }
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(store_err(e)),
        }
    }

    /// The function record, or `ResourceNotFoundException` in AWS's words.
    pub(crate) async fn function(&self, name: &str) -> Result<(FunctionRecord, i64)> {
        self.get_record(Table::Functions, name)
            .await?
            .ok_or_else(|| self.function_not_found(name, None))
    }

    pub(crate) fn function_not_found(&self, name: &str, qualifier: Option<&str>) -> LambdaError {
        let arn = match qualifier {
            Some(q) => self.scope.qualified_function_arn(name, q),
            None => self.scope.function_arn(name),
        };
        LambdaError::not_found(format!("Function not found: {arn}"))
    }

    pub(crate) async fn version(
        &self,
        function: &str,
        version: &str,
    ) -> Result<(VersionRecord, i64)> {
        self.get_record(Table::Versions, &version_key(function, version))
            .await?
            .ok_or_else(|| self.function_not_found(function, Some(version)))
    }

    /// The op removing a version's entry from the capacity provider index, if it has one.
    pub(crate) async fn index_delete_op(
        &self,
        cp: &str,
        function: &str,
        version: &str,
    ) -> Result<Option<Op>> {
        let ikey = crate::records::cp_version_key(cp, function, version);
        Ok(self
            .store
            .get(Table::CapacityProviderVersions, &ikey)
            .await
            .map_err(store_err)?
            .map(|irec| Op::delete(Table::CapacityProviderVersions, ikey, irec.revision)))
    }

    /// Reads one page of `limit` (clamped to `max`) items after the opaque `marker`.
    pub(crate) async fn page<T: DeserializeOwned>(
        &self,
        table: Table,
        prefix: &str,
        marker: Option<&str>,
        max_items: Option<u32>,
        max: usize,
    ) -> Result<Page<(T, String, i64)>> {
        let limit = max_items.map_or(max, |m| (m as usize).clamp(1, max));
        let after = marker.map(|m| format!("{prefix}{m}"));
        let mut items: Vec<(T, String, i64)> = self
            .list_records(table, prefix, after.as_deref(), limit + 1)
            .await?;
        let next_marker = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|(_, k, _)| k.strip_prefix(prefix).unwrap_or(k).to_string())
        } else {
            None
        };
        Ok(Page { items, next_marker })
    }
}

pub(crate) fn decode<T: DeserializeOwned>(rec: &Record) -> Result<T> {
    rec.decode()
        .map_err(|e| LambdaError::service(format!("fleetfn store error: {e}")))
}

pub(crate) fn new_revision_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
