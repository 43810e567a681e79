//! Leadership among processes sharing one store: a lease with a fencing token, on the store's own
//! conditional writes (no clock shared between hosts, no database-specific locks).
//!
//! Two records in [`Table::Leases`]: `<name>/term` changes only when leadership changes hands (its
//! revision is the fencing token) and `<name>/heartbeat` is rewritten by the leader every
//! `renew_every`. A follower takes over when it has seen the heartbeat's revision unchanged for a
//! whole `ttl` by its own monotonic clock (as Kubernetes' leader election does with its observed
//! time), writing both records conditionally in one batch, so of several contenders one wins and a
//! late renewal of the old leader conflicts. A leader that has not renewed for `valid_for`
//! (< `ttl`, measured from the start of its last successful renewal) stops calling itself leader,
//! so it never overlaps a successor whose clock runs at the same rate. Whatever a paused or
//! partitioned former leader still tries to write is refused anyway: every leader write goes
//! through [`Fenced`], which adds an [`Op::Check`] of the term record at the revision of its term.
//! A leader that shuts down deletes its heartbeat, and a follower takes over at its next poll.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{BoxFut, Expect, Op, Record, Store, StoreError, Table};

/// Timing of a lease. Takeover after a leader dies takes at most `ttl + poll_every` plus a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a heartbeat unchanged means its leader is gone.
    pub ttl: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// How often a follower looks.
    pub poll_every: Duration,
    /// How long after the start of its last successful renewal a leader still acts as one
    /// (less than `ttl`, the margin covering the renewal's own round trip).
    pub valid_for: Duration,
}

impl Default for LeaseConfig {
    /// Takeover within 3.5 s of a leader's death (the cluster's goal is 5 s).
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(3),
            renew_every: Duration::from_millis(750),
            poll_every: Duration::from_millis(500),
            valid_for: Duration::from_secs(2),
        }
    }
}

impl LeaseConfig {
    /// `Err` says which bound is broken.
    pub fn check(&self) -> Result<(), String> {
        if self.renew_every.is_zero() || self.poll_every.is_zero() {
            return Err("renew and poll intervals must be above zero".into());
        }
        if self.valid_for >= self.ttl {
            return Err(format!(
                "valid_for ({:?}) must be below ttl ({:?}) or two leaders could overlap",
                self.valid_for, self.ttl
            ));
        }
        if self.renew_every >= self.valid_for {
            return Err(format!(
                "renew_every ({:?}) must be below valid_for ({:?}) or the leader lapses between renewals",
                self.renew_every, self.valid_for
            ));
        }
        Ok(())
    }
}

/// The check every leader write carries: the term record still at the revision of this term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub revision: i64,
}

impl Fence {
    pub fn op(&self) -> Op {
        Op::check(Table::Leases, self.key.clone(), self.revision)
    }
}

/// What an elector believes it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Following `leader` (its holder id), or nobody known yet.
    Follower { leader: Option<String> },
    /// Leading term `term` (1 for the first leader, +1 at each change of hands).
    Leader { term: u64, fence: Fence },
}

impl Role {
    pub fn is_leader(&self) -> bool {
        matches!(self, Self::Leader { .. })
    }
}

/// The stored value of both records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Holder {
    holder: String,
    term: u64,
}

fn decode(rec: &Record) -> Result<Holder, StoreError> {
    rec.decode()
}

/// One contender for the lease `name`, as the process `id` (unique per process: a restarted
/// process is a new contender).
#[derive(Debug)]
pub struct Elector {
    store: Arc<dyn Store>,
    id: String,
    term_key: String,
    heartbeat_key: String,
    cfg: LeaseConfig,
}

/// A leader's own view of its lease.
#[derive(Debug)]
struct Held {
    term: u64,
    fence: Fence,
    heartbeat_rev: i64,
    /// Start of the last successful renewal (or of the takeover).
    renewed: Instant,
}

/// A follower's last look at the heartbeat: what it was (revision, holder and term: a
/// revision alone repeats when a released heartbeat is made anew) and since when it is
/// unchanged.
#[derive(Debug)]
struct Seen {
    revision: i64,
    holder: String,
    term: u64,
    since: Instant,
}

impl Elector {
    pub fn new(store: Arc<dyn Store>, name: &str, id: impl Into<String>, cfg: LeaseConfig) -> Self {
        Self {
            store,
            id: id.into(),
            term_key: format!("{name}/term"),
            heartbeat_key: format!("{name}/heartbeat"),
            cfg,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Contends until `shutdown` completes, publishing every change of role on `role`; a leader
    /// then gives the lease up (deletes its heartbeat) so a follower takes over at once.
    pub async fn run(
        self,
        role: watch::Sender<Role>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut held: Option<Held> = None;
        let mut seen: Option<Seen> = None;
        let mut next = Instant::now();
        loop {
            let deadline = held.as_ref().map(|h| h.renewed + self.cfg.valid_for);
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep_until(next) => {}
                () = sleep_until_opt(deadline) => {
                    // Not renewed in time: stop acting as leader before anyone may take over.
                    held = None;
                    publish(&role, Role::Follower { leader: None });
                    next = Instant::now();
                    continue;
                }
            }
            let started = Instant::now();
            if let Some(h) = held.take() {
                next = started + self.cfg.renew_every;
                // The renewal races the validity deadline: a hung store must not keep a leader.
                let renewed = tokio::select! {
                    r = self.renew(&h) => r,
                    () = tokio::time::sleep_until(h.renewed + self.cfg.valid_for) => Err(StoreError::Backend("renewal did not finish in time".into())),
                };
                match renewed {
                    Ok(rev) => {
                        held = Some(Held {
                            heartbeat_rev: rev,
                            renewed: started,
                            ..h
                        });
                    }
                    Err(StoreError::Backend(_)) if started < h.renewed + self.cfg.valid_for => {
                        // A failed round trip: try again soon while still valid.
                        next = started + self.cfg.poll_every.min(self.cfg.renew_every);
                        held = Some(h);
                    }
                    Err(_) => {
                        seen = None;
                        publish(&role, Role::Follower { leader: None });
                    }
                }
            } else {
                next = started + self.cfg.poll_every;
                let looked = tokio::time::timeout(self.cfg.ttl, self.contend(&mut seen))
                    .await
                    .unwrap_or_else(|_| {
                        Err(StoreError::Backend("the store did not answer".into()))
                    });
                match looked {
                    Ok(Ok(h)) => {
                        publish(
                            &role,
                            Role::Leader {
                                term: h.term,
                                fence: h.fence.clone(),
                            },
                        );
                        next = started + self.cfg.renew_every;
                        held = Some(h);
                    }
                    Ok(Err(leader)) => publish(&role, Role::Follower { leader }),
                    Err(_) => {} // store unreachable or silent: look again at the next poll
                }
            }
        }
        if let Some(h) = held {
            // Released only while the term is ours; failing that, the lease just expires.
            let release = self.store.commit(vec![
                Op::delete(Table::Leases, self.heartbeat_key.clone(), h.heartbeat_rev),
                h.fence.op(),
            ]);
            let _ = tokio::time::timeout(self.cfg.renew_every, release).await;
        }
        publish(&role, Role::Follower { leader: None });
    }

    async fn renew(&self, h: &Held) -> Result<i64, StoreError> {
        let revs = self
            .store
            .commit(vec![
                Op::put(
                    Table::Leases,
                    self.heartbeat_key.clone(),
                    &Holder {
                        holder: self.id.clone(),
                        term: h.term,
                    },
                    Expect::Revision(h.heartbeat_rev),
                ),
                h.fence.op(),
            ])
            .await?;
        Ok(revs[0])
    }

    /// One look as a follower: `Ok(Ok(held))` when this elector took the lease, `Ok(Err(leader))`
    /// when someone else holds it (or nobody is known yet).
    async fn contend(
        &self,
        seen: &mut Option<Seen>,
    ) -> Result<Result<Held, Option<String>>, StoreError> {
        let heartbeat = self.store.get(Table::Leases, &self.heartbeat_key).await?;
        let term = self.store.get(Table::Leases, &self.term_key).await?;
        // A heartbeat first seen is counted from when the read returned, not when it was
        // sent: a slow read may return a renewal made while it waited.
        let now = Instant::now();
        let current = match &heartbeat {
            None => None,
            Some(rec) => {
                let holder = decode(rec)?;
                let unchanged_since = match seen {
                    Some(s)
                        if s.revision == rec.revision
                            && s.holder == holder.holder
                            && s.term == holder.term =>
                    {
                        s.since
                    }
                    _ => {
                        *seen = Some(Seen {
                            revision: rec.revision,
                            holder: holder.holder.clone(),
                            term: holder.term,
                            since: now,
                        });
                        now
                    }
                };
                if now.duration_since(unchanged_since) < self.cfg.ttl {
                    return Ok(Err(Some(holder.holder)));
                }
                Some((rec.revision, holder.holder))
            }
        };
        // Nobody holds it, or its holder stopped renewing a ttl ago: take it.
        let (term_no, term_expect) = match &term {
            None => (1, Expect::Absent),
            Some(rec) => (decode(rec)?.term + 1, Expect::Revision(rec.revision)),
        };
        let value = Holder {
            holder: self.id.clone(),
            term: term_no,
        };
        let heartbeat_expect = match &current {
            None => Expect::Absent,
            Some((rev, _)) => Expect::Revision(*rev),
        };
        let ops = vec![
            Op::put(Table::Leases, self.term_key.clone(), &value, term_expect),
            Op::put(
                Table::Leases,
                self.heartbeat_key.clone(),
                &value,
                heartbeat_expect,
            ),
        ];
        let writing = Instant::now();
        match self.store.commit(ops).await {
            Ok(revs) => {
                *seen = None;
                Ok(Ok(Held {
                    term: term_no,
                    fence: Fence {
                        key: self.term_key.clone(),
                        revision: revs[0],
                    },
                    heartbeat_rev: revs[1],
                    // Its validity counts from when the write that took the lease started
                    // (followers count from after they see that write).
                    renewed: writing,
                }))
            }
            // Another contender (or a late renewal) got there first: follow and look again.
            Err(StoreError::Conflict { .. }) => Ok(Err(current.map(|(_, h)| h))),
            Err(e) => Err(e),
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn publish(role: &watch::Sender<Role>, new: Role) {
    role.send_if_modified(|r| {
        if *r == new {
            false
        } else {
            *r = new;
            true
        }
    });
}

/// A store whose every write batch carries the leader's fence: once another process has taken
/// the lease, every commit fails with [`StoreError::NotLeader`] and nothing of it is written.
#[derive(Debug, Clone)]
pub struct Fenced {
    inner: Arc<dyn Store>,
    term: u64,
    fence: Fence,
}

impl Fenced {
    pub fn new(inner: Arc<dyn Store>, term: u64, fence: Fence) -> Self {
        Self { inner, term, fence }
    }

    /// For the current role: `None` unless it is a leader's.
    pub fn for_role(inner: Arc<dyn Store>, role: &Role) -> Option<Self> {
        match role {
            Role::Leader { term, fence } => Some(Self::new(inner, *term, fence.clone())),
            Role::Follower { .. } => None,
        }
    }
}

impl Store for Fenced {
    fn get<'a>(
        &'a self,
        table: Table,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<Record>, StoreError>> {
        self.inner.get(table, key)
    }

    fn list<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Record>, StoreError>> {
        self.inner.list(table, prefix, after, limit)
    }

    fn count<'a>(&'a self, table: Table, prefix: &'a str) -> BoxFut<'a, Result<usize, StoreError>> {
        self.inner.count(table, prefix)
    }

    fn commit(&self, mut ops: Vec<Op>) -> BoxFut<'_, Result<Vec<i64>, StoreError>> {
        ops.push(self.fence.op());
        Box::pin(async move {
            match self.inner.commit(ops).await {
                Ok(mut revs) => {
                    revs.pop();
                    Ok(revs)
                }
                Err(StoreError::Conflict { table, key })
                    if table == Table::Leases.as_str() && key == self.fence.key =>
                {
                    Err(StoreError::NotLeader { term: self.term })
                }
                Err(e) => Err(e),
            }
        })
    }
}

#[cfg(test)]
mod tests;
