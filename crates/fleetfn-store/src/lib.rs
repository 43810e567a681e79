//! Desired state of fleetfn: one `Store` trait over revisioned JSON records with optimistic
//! concurrency, its SQLite backend (the embedded default) and, with the `memory` feature, an
//! in-memory one for tests. Callers see tables of records keyed by string; every write names the
//! revision it expects, and a batch of writes commits atomically or not at all. A PostgreSQL
//! backend implements the same trait with the same SQL shape (`UPDATE … WHERE rev = $n`). This
//! crate knows nothing of Lambda semantics.
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "memory"))]
mod memory;
mod sqlite;

use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(any(test, feature = "memory"))]
pub use memory::MemoryStore;
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
