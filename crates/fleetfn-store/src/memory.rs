//! In-memory backend for tests (feature `memory`): the same revisions, conditional batches and
//! key-ordered prefix listing as the SQLite backend, with no I/O and no worker thread, so it
//! works under tokio's paused time. Nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::{BoxFut, Expect, Op, Record, Store, StoreError, Table};

/// Key → (revision, value).
type Rows = BTreeMap<String, (i64, Vec<u8>)>;
/// A batch's writes before they are applied: (table, key) → the row, or `None` when deleted.
type Staged = HashMap<(Table, String), Option<(i64, Vec<u8>)>>;

/// A [`Store`] held in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<HashMap<Table, Rows>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, HashMap<Table, Rows>> {
        // A panic while holding the lock cannot leave a half-applied batch (batches are staged
        // first), so the data is consistent.
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn conflict(table: Table, key: String) -> StoreError {
    StoreError::Conflict {
        table: table.as_str(),
        key,
    }
}

impl Store for MemoryStore {
    fn get<'a>(
        &'a self,
        table: Table,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<Record>, StoreError>> {
        let found = self.tables().get(&table).and_then(|rows| {
            rows.get(key).map(|(rev, value)| Record {
                key: key.to_string(),
                revision: *rev,
                value: value.clone(),
            })
        });
        Box::pin(async move { Ok(found) })
    }

    fn list<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Record>, StoreError>> {
        let out = self.tables().get(&table).map_or_else(Vec::new, |rows| {
            rows.range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .filter(|(k, _)| after.is_none_or(|a| k.as_str() > a))
                .take(limit)
                .map(|(k, (rev, value))| Record {
                    key: k.clone(),
                    revision: *rev,
                    value: value.clone(),
                })
                .collect()
        });
        Box::pin(async move { Ok(out) })
    }

    fn count<'a>(&'a self, table: Table, prefix: &'a str) -> BoxFut<'a, Result<usize, StoreError>> {
        let n = self.tables().get(&table).map_or(0, |rows| {
            rows.range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .count()
        });
        Box::pin(async move { Ok(n) })
    }

    fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, Result<Vec<i64>, StoreError>> {
        let outcome = (|| {
            let mut tables = self.tables();
            // Staged writes (None: deleted), checked in order against the batch's own earlier
            // writes, then applied all at once.
            let mut staged = Staged::new();
            let mut revs = Vec::with_capacity(ops.len());
            for op in ops {
                let (table, key) = op.target();
                let key = key.to_string();
                let current = match staged.get(&(table, key.clone())) {
                    Some(s) => s.as_ref().map(|(rev, _)| *rev),
                    None => tables
                        .get(&table)
                        .and_then(|rows| rows.get(&key))
                        .map(|(rev, _)| *rev),
                };
                match op {
                    Op::Put { value, expect, .. } => {
                        let rev = match (expect, current) {
                            (Expect::Absent, None) => 1,
                            (Expect::Revision(want), Some(have)) if want == have => have + 1,
                            _ => return Err(conflict(table, key)),
                        };
                        staged.insert((table, key), Some((rev, value)));
                        revs.push(rev);
                    }
                    Op::Delete { revision, .. } => {
                        if current != Some(revision) {
                            return Err(conflict(table, key));
                        }
                        staged.insert((table, key), None);
                        revs.push(0);
                    }
                    Op::Check { revision, .. } => {
                        if current != Some(revision) {
                            return Err(conflict(table, key));
                        }
                        revs.push(revision);
                    }
                }
            }
            for ((table, key), row) in staged {
                let rows = tables.entry(table).or_default();
                match row {
                    Some(r) => {
                        rows.insert(key, r);
                    }
                    None => {
                        rows.remove(&key);
                    }
                }
            }
            Ok(revs)
        })();
        Box::pin(async move { outcome })
    }
}
