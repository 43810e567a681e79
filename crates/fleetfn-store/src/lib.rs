//! Desired state of fleetfn: one `Store` trait over revisioned JSON records with optimistic
//! concurrency, its SQLite backend (the embedded default), its PostgreSQL backend (same table,
//! same SQL shape: `UPDATE … WHERE rev = $n`), [`StoreLocation`]/[`AnyStore`] choosing between
//! them from a `--store` value, and, with the `memory` feature, an in-memory one for tests.
//! Callers see tables of records keyed by string; every write names the revision it expects, and
//! a batch of writes commits atomically or not at all ([`Op::Check`] makes a batch conditional
//! on a record it does not write). [`lease`]: leadership among processes sharing a store, with
//! a fencing token. [`Queue`]: a durable work queue (leased items, oldest first) in the same store.
//! This crate knows nothing of Lambda semantics.
#![forbid(unsafe_code)]

pub mod lease;
#[cfg(any(test, feature = "memory"))]
mod memory;
mod postgres;
mod queue;
mod sqlite;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(any(test, feature = "memory"))]
pub use memory::MemoryStore;
pub use postgres::PostgresStore;
pub use queue::{Leased, NewItem, Queue, QueueStats};
pub use sqlite::SqliteStore;

/// A boxed future, so `dyn Store` works.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The record tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    CapacityProviders,
    Functions,
    Versions,
    Aliases,
    /// Secondary index: capacity provider → the function versions attached to it.
    CapacityProviderVersions,
    Meta,
    /// Usage for cost accounting: instance-seconds and requests per hour bucket.
    Usage,
    /// Leases among servers (the leader's term and heartbeat, [`lease`]).
    Leases,
    /// Code packages by sha256 (hex), raw zip bytes (not JSON), when the store holds them
    /// (`fleetfn server`).
    Packages,
    /// Join tokens for agents on other hosts (secrets only as hashes).
    JoinTokens,
    /// Agents that joined (credentials as hashes, and sealed for the servers to present).
    Agents,
    /// Joined agents claimed as instances of a `static` capacity provider, by agent id.
    Claims,
    /// Asynchronous invocation configs (retries, event age, destinations) by
    /// `function/qualifier`.
    EventInvokeConfigs,
    /// Event source mappings (SQS pollers) by UUID.
    EventSourceMappings,
    /// Function URL configs by `function/qualifier` (unqualified as `$LATEST`).
    FunctionUrls,
    /// Function URL ids → `function/qualifier`: the URL endpoint's lookup, and the ids' uniqueness.
    FunctionUrlIds,
    /// Resource-based policies by `function/qualifier` (unqualified as `$LATEST`).
    Policies,
    /// Lambda layers by name: the next version number (never reused after a delete).
    Layers,
    /// Layer versions by `name/version` (zero-padded), with their permissions policy.
    LayerVersions,
    /// Stack records of `fleetfn deploy` by stack name (opaque JSON; the record's revision is
    /// the stack's).
    Stacks,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CapacityProviders => "capacity_providers",
            Self::Functions => "functions",
            Self::Versions => "versions",
            Self::Aliases => "aliases",
            Self::CapacityProviderVersions => "capacity_provider_versions",
            Self::Meta => "meta",
            Self::Usage => "usage",
            Self::Leases => "leases",
            Self::Packages => "packages",
            Self::JoinTokens => "join_tokens",
            Self::Agents => "agents",
            Self::Claims => "claims",
            Self::EventInvokeConfigs => "event_invoke_configs",
            Self::EventSourceMappings => "event_source_mappings",
            Self::FunctionUrls => "function_urls",
            Self::FunctionUrlIds => "function_url_ids",
            Self::Policies => "policies",
            Self::Layers => "layers",
            Self::LayerVersions => "layer_versions",
            Self::Stacks => "stacks",
        }
    }
}

/// One stored record: its key, its revision (starts at 1, +1 per write) and its JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: String,
    pub revision: i64,
    pub value: Vec<u8>,
}

impl Record {
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_slice(&self.value).map_err(|e| StoreError::Corrupt {
            key: self.key.clone(),
            detail: e.to_string(),
        })
    }
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The key must not exist.
    Absent,
    /// The key must exist at exactly this revision.
    Revision(i64),
}

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum Op {
    Put {
        table: Table,
        key: String,
        value: Vec<u8>,
        expect: Expect,
    },
    Delete {
        table: Table,
        key: String,
        revision: i64,
    },
    /// Writes nothing: the batch commits only if the key is at exactly this revision when it
    /// does (a fencing token: a leader's writes carry a check of its lease's term). A concurrent
    /// batch changing that key either commits before this one (then this one conflicts) or waits
    /// for it.
    Check {
        table: Table,
        key: String,
        revision: i64,
    },
}

impl Op {
    pub fn put<T: Serialize>(
        table: Table,
        key: impl Into<String>,
        value: &T,
        expect: Expect,
    ) -> Self {
        Self::Put {
            table,
            key: key.into(),
            // Serializing plain data structs to a Vec cannot fail.
            value: serde_json::to_vec(value).unwrap_or_default(),
            expect,
        }
    }
    pub fn delete(table: Table, key: impl Into<String>, revision: i64) -> Self {
        Self::Delete {
            table,
            key: key.into(),
            revision,
        }
    }
    pub fn check(table: Table, key: impl Into<String>, revision: i64) -> Self {
        Self::Check {
            table,
            key: key.into(),
            revision,
        }
    }
    /// The table and key this op touches.
    pub fn target(&self) -> (Table, &str) {
        match self {
            Self::Put { table, key, .. }
            | Self::Delete { table, key, .. }
            | Self::Check { table, key, .. } => (*table, key),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's expectation did not hold; nothing of the batch was written.
    #[error("conflict on {table}/{key}: the record changed concurrently")]
    Conflict { table: &'static str, key: String },
    #[error("stored record {key} is unreadable: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("store backend error: {0}")]
    Backend(String),
    /// A leader's write ([`lease::Fenced`]) after another process took the lease: nothing of
    /// the batch was written.
    #[error("not the leader any more: term {term} ended, another server leads now")]
    NotLeader { term: u64 },
}

/// Why a store could not be opened, saying what to fix.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "invalid store {url:?}: {detail} (expected postgres://USER:PASSWORD@HOST[:PORT]/DATABASE, \
         postgres:///DATABASE?host=/SOCKET/DIR, or sqlite:PATH)"
    )]
    BadUrl { url: String, detail: String },
    #[error(
        "cannot reach PostgreSQL at {target}: {detail}; is it running and listening there \
         (host, port, socket directory)?"
    )]
    Unreachable { target: String, detail: String },
    #[error(
        "PostgreSQL at {target} refused user {user:?}: {detail}; check the user and password in \
         the URL (or PGPASSWORD) and pg_hba.conf"
    )]
    AuthFailed {
        target: String,
        user: String,
        detail: String,
    },
    #[error(
        "PostgreSQL at {target} has no database {database:?}: create it (createdb {database}) or \
         name an existing one in the URL"
    )]
    NoDatabase { target: String, database: String },
    #[error(
        "PostgreSQL at {target}: {detail}; this fleetfn connects without TLS: use \
         sslmode=disable or sslmode=prefer, over a trusted network or a Unix socket"
    )]
    Tls { target: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which backend holds the state, from a `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (the database must exist; its tables are created).
    Postgres(String),
}

impl StoreLocation {
    /// `postgres://…` or `postgresql://…` (libpq's URL forms), or `sqlite:PATH`.
    pub fn parse(value: &str) -> Result<Self, OpenError> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            postgres::check_url(value)?;
            return Ok(Self::Postgres(value.to_string()));
        }
        if let Some(path) = value.strip_prefix("sqlite:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(OpenError::BadUrl {
                    url: value.to_string(),
                    detail: "no file path after sqlite:".into(),
                });
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        Err(OpenError::BadUrl {
            url: postgres::redact(value),
            detail: "unknown scheme".into(),
        })
    }
}

impl std::fmt::Display for StoreLocation {
    /// The backend and where, without a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(path) => write!(f, "SQLite {}", path.display()),
            Self::Postgres(url) => write!(f, "PostgreSQL {}", postgres::redact(url)),
        }
    }
}

/// The store a [`StoreLocation`] names.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl AnyStore {
    /// Opens the store (applying pending migrations).
    pub async fn open(location: &StoreLocation) -> Result<Self, OpenError> {
        Ok(match location {
            StoreLocation::Sqlite(path) => Self::Sqlite(SqliteStore::open(path).await?),
            StoreLocation::Postgres(url) => Self::Postgres(PostgresStore::open(url).await?),
        })
    }

    /// Closes its connections (checkpointing SQLite's WAL).
    pub async fn close(&self) {
        match self {
            Self::Sqlite(s) => s.close().await,
            Self::Postgres(s) => s.close().await,
        }
    }

    fn inner(&self) -> &dyn Store {
        match self {
            Self::Sqlite(s) => s,
            Self::Postgres(s) => s,
        }
    }

    fn queue(&self) -> &dyn Queue {
        match self {
            Self::Sqlite(s) => s,
            Self::Postgres(s) => s,
        }
    }
}

impl Store for AnyStore {
    fn get<'a>(
        &'a self,
        table: Table,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<Record>, StoreError>> {
        self.inner().get(table, key)
    }

    fn list<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Record>, StoreError>> {
        self.inner().list(table, prefix, after, limit)
    }

    fn count<'a>(&'a self, table: Table, prefix: &'a str) -> BoxFut<'a, Result<usize, StoreError>> {
        self.inner().count(table, prefix)
    }

    fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, Result<Vec<i64>, StoreError>> {
        self.inner().commit(ops)
    }
}

impl Queue for AnyStore {
    fn enqueue(&self, item: NewItem) -> BoxFut<'_, Result<(), StoreError>> {
        self.queue().enqueue(item)
    }

    fn claim<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Leased>, StoreError>> {
        self.queue().claim(queue, now_ms, lease_ms, limit)
    }

    fn ack<'a>(&'a self, id: &'a str, token: &'a str) -> BoxFut<'a, Result<bool, StoreError>> {
        self.queue().ack(id, token)
    }

    fn release<'a>(
        &'a self,
        id: &'a str,
        token: &'a str,
        header: Vec<u8>,
        available_ms: i64,
    ) -> BoxFut<'a, Result<bool, StoreError>> {
        self.queue().release(id, token, header, available_ms)
    }

    fn extend<'a>(
        &'a self,
        id: &'a str,
        token: &'a str,
        lease_until_ms: i64,
    ) -> BoxFut<'a, Result<bool, StoreError>> {
        self.queue().extend(id, token, lease_until_ms)
    }

    fn stats<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
    ) -> BoxFut<'a, Result<QueueStats, StoreError>> {
        self.queue().stats(queue, now_ms)
    }

    fn next_available<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
    ) -> BoxFut<'a, Result<Option<i64>, StoreError>> {
        self.queue().next_available(queue, now_ms)
    }
}

/// The smallest string greater than every string starting with `prefix`, for range scans
/// (`None`: no such string, the range is unbounded above).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        if let Some(next) = char::from_u32(u32::from(last) + 1) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Revisioned record storage with atomic conditional batches.
pub trait Store: Send + Sync + std::fmt::Debug {
    fn get<'a>(
        &'a self,
        table: Table,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<Record>, StoreError>>;

    /// Records whose key starts with `prefix` and sorts after `after`, in key order, at most `limit`.
    fn list<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Record>, StoreError>>;

    fn count<'a>(&'a self, table: Table, prefix: &'a str) -> BoxFut<'a, Result<usize, StoreError>>;

    /// Applies all ops in one transaction; returns the new revision of each op (0 for deletes).
    fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, Result<Vec<i64>, StoreError>>;
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_postgres;
