//! A durable work queue beside the records ([`Queue`]): items (an opaque JSON header and a body)
//! are stored by the enqueuer before it answers, handed out in order of arrival to consumers
//! under a lease that expires (a consumer that dies loses its items to the next claimer), and
//! removed or put back only by the lease's holder. Several processes may consume one queue on
//! PostgreSQL (`FOR UPDATE SKIP LOCKED`); SQLite serializes claims in `BEGIN IMMEDIATE`.
//! The store knows nothing of what the items mean (fleetfn-events gives them their meaning).

use crate::{BoxFut, StoreError};

/// An item to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// Unique id (a duplicate id is refused with [`StoreError::Conflict`]).
    pub id: String,
    /// The queue the item belongs to (e.g. `async`), so one table holds several queues.
    pub queue: String,
    /// What the consumer reads besides the body (JSON, opaque here); rewritten by [`Queue::release`].
    pub header: Vec<u8>,
    /// The payload, never rewritten.
    pub body: Vec<u8>,
    /// When it was enqueued (ms since the Unix epoch).
    pub enqueued_ms: i64,
    /// When it may first be claimed (ms since the Unix epoch).
    pub available_ms: i64,
}

/// An item held under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    pub id: String,
    pub queue: String,
    pub header: Vec<u8>,
    pub body: Vec<u8>,
    pub enqueued_ms: i64,
    /// How many times it has been claimed, this claim included (a claim whose lease expired
    /// without an ack or release counts: that is a possible duplicate delivery).
    pub claims: u32,
    /// The lease: only this token acks, releases or extends it.
    pub token: String,
    /// When the lease ends unless extended (ms since the Unix epoch).
    pub lease_until_ms: i64,
}

/// How deep a queue is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Items stored (available, waiting for a retry time, or leased).
    pub depth: u64,
    /// Items under an unexpired lease.
    pub leased: u64,
    /// The oldest item's `enqueued_ms`, if any.
    pub oldest_enqueued_ms: Option<i64>,
}

/// The queue operations of a store.
pub trait Queue: Send + Sync + std::fmt::Debug {
    /// Stores `item` durably (committed when this returns).
    fn enqueue(&self, item: NewItem) -> BoxFut<'_, Result<(), StoreError>>;

    /// Leases at most `limit` items of `queue` that are available at `now_ms` (not before
    /// their `available_ms`, and not under an unexpired lease), oldest `enqueued_ms` first
    /// (ties in order of enqueue), each until `now_ms + lease_ms` under a new random token.
    /// Items leased by another consumer concurrently are skipped, never handed out twice.
    fn claim<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Leased>, StoreError>>;

    /// Deletes the item if `token` still holds its lease; `false` when it does not (the lease
    /// expired and the item was claimed again, or it is gone).
    fn ack<'a>(&'a self, id: &'a str, token: &'a str) -> BoxFut<'a, Result<bool, StoreError>>;

    /// Ends the lease, replaces the header and makes the item available again at
    /// `available_ms`, if `token` still holds it; `false` when it does not.
    fn release<'a>(
        &'a self,
        id: &'a str,
        token: &'a str,
        header: Vec<u8>,
        available_ms: i64,
    ) -> BoxFut<'a, Result<bool, StoreError>>;

    /// Moves the lease's end to `lease_until_ms` if `token` still holds it; `false` when not.
    fn extend<'a>(
        &'a self,
        id: &'a str,
        token: &'a str,
        lease_until_ms: i64,
    ) -> BoxFut<'a, Result<bool, StoreError>>;

    /// The depth of `queue` at `now_ms`.
    fn stats<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
    ) -> BoxFut<'a, Result<QueueStats, StoreError>>;

    /// The earliest `available_ms` among items of `queue` not under an unexpired lease at
    /// `now_ms` (when the next claim can succeed), if any.
    fn next_available<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
    ) -> BoxFut<'a, Result<Option<i64>, StoreError>>;
}

/// A fresh random lease token base (128 bits, hex); each item of a claim gets it suffixed with
/// its own sequence number, so every lease has a token of its own.
pub(crate) fn new_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}
