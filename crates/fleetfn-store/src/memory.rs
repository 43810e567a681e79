//! In-memory backend for tests (feature `memory`): the same revisions, conditional batches and
//! key-ordered prefix listing as the SQLite backend, with no I/O and no worker thread, so it
//! works under tokio's paused time; the [`Queue`] likewise. Nothing survives the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use crate::queue::{Leased, NewItem, Queue, QueueStats, new_token};
use crate::{BoxFut, Expect, Op, Record, Store, StoreError, Table};

/// Key → (revision, value).
type Rows = BTreeMap<String, (i64, Vec<u8>)>;
/// A batch's writes before they are applied: (table, key) → the row, or `None` when deleted.
type Staged = HashMap<(Table, String), Option<(i64, Vec<u8>)>>;

/// A [`Store`] held in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<HashMap<Table, Rows>>,
    queue: Mutex<Items>,
}

/// The queue's items by id, and the sequence number of the next one enqueued.
#[derive(Debug, Default)]
struct Items {
    by_id: HashMap<String, Item>,
    next_seq: u64,
}

/// A queue item as SQL stores it: `available_ms` is the lease's end while leased.
#[derive(Debug)]
struct Item {
    seq: u64,
    item: NewItem,
    claims: u32,
    lease: Option<(String, i64)>,
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

    fn items(&self) -> std::sync::MutexGuard<'_, Items> {
        // Every queue operation changes its item in one step: nothing is half-applied.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `f` to item `id` if `token` holds its lease; whether it did.
    fn with_lease(&self, id: &str, token: &str, f: impl FnOnce(&mut Item)) -> bool {
        let mut items = self.items();
        match items.by_id.get_mut(id) {
            Some(it) if it.lease.as_ref().is_some_and(|(t, _)| t == token) => {
                f(it);
                true
            }
            _ => false,
        }
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

impl Queue for MemoryStore {
    fn enqueue(&self, item: NewItem) -> BoxFut<'_, Result<(), StoreError>> {
        let outcome = {
            let mut items = self.items();
            if items.by_id.contains_key(&item.id) {
                Err(StoreError::Conflict {
                    table: "queue_items",
                    key: item.id,
                })
            } else {
                let seq = items.next_seq;
                items.next_seq += 1;
                items.by_id.insert(
                    item.id.clone(),
                    Item {
                        seq,
                        item,
                        claims: 0,
                        lease: None,
                    },
                );
                Ok(())
            }
        };
        Box::pin(async move { outcome })
    }

    fn claim<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Leased>, StoreError>> {
        let claimed = {
            let mut items = self.items();
            let mut ready: Vec<&mut Item> = items
                .by_id
                .values_mut()
                .filter(|it| it.item.queue == queue && it.item.available_ms <= now_ms)
                .collect();
            ready.sort_by_key(|it| (it.item.enqueued_ms, it.seq));
            let until = now_ms.saturating_add(lease_ms);
            let base = new_token();
            ready
                .into_iter()
                .take(limit)
                .map(|it| {
                    let token = format!("{base}.{}", it.seq);
                    it.claims = it.claims.saturating_add(1);
                    it.item.available_ms = until;
                    it.lease = Some((token.clone(), until));
                    Leased {
                        id: it.item.id.clone(),
                        queue: it.item.queue.clone(),
                        header: it.item.header.clone(),
                        body: it.item.body.clone(),
                        enqueued_ms: it.item.enqueued_ms,
                        claims: it.claims,
                        token,
                        lease_until_ms: until,
                    }
                })
                .collect()
        };
        Box::pin(async move { Ok(claimed) })
    }

    fn ack<'a>(&'a self, id: &'a str, token: &'a str) -> BoxFut<'a, Result<bool, StoreError>> {
        let done = {
            let mut items = self.items();
            let held = items
                .by_id
                .get(id)
                .is_some_and(|it| it.lease.as_ref().is_some_and(|(t, _)| t == token));
            if held {
                items.by_id.remove(id);
            }
            held
        };
        Box::pin(async move { Ok(done) })
    }

    fn release<'a>(
        &'a self,
        id: &'a str,
        token: &'a str,
        header: Vec<u8>,
        available_ms: i64,
    ) -> BoxFut<'a, Result<bool, StoreError>> {
        let done = self.with_lease(id, token, |it| {
            it.item.header = header;
            it.item.available_ms = available_ms;
            it.lease = None;
        });
        Box::pin(async move { Ok(done) })
    }

    fn extend<'a>(
        &'a self,
        id: &'a str,
        token: &'a str,
        lease_until_ms: i64,
    ) -> BoxFut<'a, Result<bool, StoreError>> {
        let done = self.with_lease(id, token, |it| {
            it.item.available_ms = lease_until_ms;
            if let Some((_, until)) = it.lease.as_mut() {
                *until = lease_until_ms;
            }
        });
        Box::pin(async move { Ok(done) })
    }

    fn stats<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
    ) -> BoxFut<'a, Result<QueueStats, StoreError>> {
        let mut stats = QueueStats::default();
        for it in self.items().by_id.values() {
            if it.item.queue != queue {
                continue;
            }
            stats.depth += 1;
            if it.lease.as_ref().is_some_and(|(_, until)| *until > now_ms) {
                stats.leased += 1;
            }
            stats.oldest_enqueued_ms = Some(
                stats
                    .oldest_enqueued_ms
                    .map_or(it.item.enqueued_ms, |o| o.min(it.item.enqueued_ms)),
            );
        }
        Box::pin(async move { Ok(stats) })
    }

    fn next_available<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
    ) -> BoxFut<'a, Result<Option<i64>, StoreError>> {
        let next = self
            .items()
            .by_id
            .values()
            .filter(|it| {
                it.item.queue == queue
                    && it.lease.as_ref().is_none_or(|(_, until)| *until <= now_ms)
            })
            .map(|it| it.item.available_ms)
            .min();
        Box::pin(async move { Ok(next) })
    }
}
