//! The lease in one process on the memory store with tokio's paused time: one leader among
//! contenders, takeover after a death within `ttl + poll_every`, handover at shutdown, a leader
//! cut off from the store stepping down before anyone may take over, and fenced writes of a
//! former leader refused.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::MemoryStore;

/// A store that can be cut off: `OK`, every call failing (`FAIL`) or never answering (`HANG`).
#[derive(Debug)]
struct Cuttable {
    inner: Arc<dyn Store>,
    mode: AtomicU8,
}

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

impl Cuttable {
    fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            mode: AtomicU8::new(OK),
        })
    }
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
    fn gate<'a, T: Send + 'a>(
        &'a self,
        f: BoxFut<'a, Result<T, StoreError>>,
    ) -> BoxFut<'a, Result<T, StoreError>> {
        match self.mode.load(Ordering::SeqCst) {
            FAIL => Box::pin(async { Err(StoreError::Backend("connection refused".into())) }),
            HANG => Box::pin(std::future::pending()),
            _ => f,
        }
    }
}

impl Store for Cuttable {
    fn get<'a>(
        &'a self,
        table: Table,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<Record>, StoreError>> {
        self.gate(self.inner.get(table, key))
    }
    fn list<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Record>, StoreError>> {
        self.gate(self.inner.list(table, prefix, after, limit))
    }
    fn count<'a>(&'a self, table: Table, prefix: &'a str) -> BoxFut<'a, Result<usize, StoreError>> {
        self.gate(self.inner.count(table, prefix))
    }
    fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, Result<Vec<i64>, StoreError>> {
        self.gate(self.inner.commit(ops))
    }
}

/// A store whose every call takes `delay` (paused time) before it reaches the inner store: a
/// slow database, a full connection pool.
#[derive(Debug)]
struct Delayed {
    inner: Arc<dyn Store>,
    delay: Duration,
}

impl Delayed {
    fn wrap<'a, T: Send + 'a>(
        &'a self,
        f: impl FnOnce() -> BoxFut<'a, Result<T, StoreError>> + Send + 'a,
    ) -> BoxFut<'a, Result<T, StoreError>> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            f().await
        })
    }
}

impl Store for Delayed {
    fn get<'a>(
        &'a self,
        table: Table,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<Record>, StoreError>> {
        self.wrap(move || self.inner.get(table, key))
    }
    fn list<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Record>, StoreError>> {
        self.wrap(move || self.inner.list(table, prefix, after, limit))
    }
    fn count<'a>(&'a self, table: Table, prefix: &'a str) -> BoxFut<'a, Result<usize, StoreError>> {
        self.wrap(move || self.inner.count(table, prefix))
    }
    fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, Result<Vec<i64>, StoreError>> {
        self.wrap(move || self.inner.commit(ops))
    }
}

/// Every role change of every contender, with the (paused) time it happened.
type Timeline = Arc<Mutex<Vec<(Instant, String, Role)>>>;

struct Contender {
    id: String,
    role: watch::Receiver<Role>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Contender {
    fn start(store: Arc<dyn Store>, id: &str, timeline: &Timeline) -> Self {
        let (tx, rx) = watch::channel(Role::Follower { leader: None });
        let (stop, stopped) = oneshot::channel::<()>();
        let elector = Elector::new(store, "leader", id, LeaseConfig::default());
        let task = tokio::spawn(elector.run(tx, async {
            let _ = stopped.await;
        }));
        let mut watch = rx.clone();
        let (timeline, name) = (timeline.clone(), id.to_string());
        tokio::spawn(async move {
            while watch.changed().await.is_ok() {
                let role = watch.borrow_and_update().clone();
                timeline
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((Instant::now(), name.clone(), role));
            }
        });
        Self {
            id: id.to_string(),
            role: rx,
            stop: Some(stop),
            task,
        }
    }

    /// Waits (paused time, bounded) until this contender leads; returns its role.
    async fn until_leader(&mut self, within: Duration) -> Role {
        let r = tokio::time::timeout(within, self.role.wait_for(Role::is_leader))
            .await
            .unwrap_or_else(|_| panic!("{} did not lead within {within:?}", self.id))
            .expect("elector alive");
        r.clone()
    }

    fn is_leader(&self) -> bool {
        self.role.borrow().is_leader()
    }
}

/// Leadership intervals from a timeline: (id, from, to) with `to` = None while still leading.
fn intervals(timeline: &Timeline) -> Vec<(String, Instant, Option<Instant>)> {
    let events = timeline
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut open: Vec<(String, Instant)> = Vec::new();
    let mut done = Vec::new();
    for (at, id, role) in events {
        let pos = open.iter().position(|(o, _)| *o == id);
        match (role.is_leader(), pos) {
            (true, None) => open.push((id, at)),
            (false, Some(i)) => {
                let (id, from) = open.remove(i);
                done.push((id, from, Some(at)));
            }
            _ => {}
        }
    }
    done.extend(open.into_iter().map(|(id, from)| (id, from, None)));
    done
}

/// No two leadership intervals overlap (touching is fine: one ends, the next begins).
fn assert_no_overlap(timeline: &Timeline) {
    let mut iv = intervals(timeline);
    iv.sort_by_key(|(_, from, _)| *from);
    for pair in iv.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let a_end =
            a.2.unwrap_or_else(|| panic!("{} still leads while {} leads too", a.0, b.0));
        assert!(
            a_end <= b.1,
            "{} led until {:?} but {} from {:?}",
            a.0,
            a_end,
            b.0,
            b.1
        );
    }
}

fn memory() -> Arc<dyn Store> {
    Arc::new(MemoryStore::new())
}

#[tokio::test(start_paused = true)]
async fn one_contender_leads_and_keeps_renewing() {
    let store = memory();
    let timeline = Timeline::default();
    let mut a = Contender::start(store.clone(), "a", &timeline);
    let role = a.until_leader(Duration::from_secs(1)).await;
    assert!(matches!(role, Role::Leader { term: 1, .. }), "{role:?}");
    let hb = store
        .get(Table::Leases, "leader/heartbeat")
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let later = store
        .get(Table::Leases, "leader/heartbeat")
        .await
        .unwrap()
        .unwrap();
    // 30 s at one renewal per 750 ms.
    assert!(
        later.revision - hb.revision >= 39,
        "{} renewals",
        later.revision - hb.revision
    );
    assert!(a.is_leader());
    assert_eq!(intervals(&timeline).len(), 1, "leadership never lapsed");
}

#[tokio::test(start_paused = true)]
async fn of_three_contenders_exactly_one_leads() {
    let store = memory();
    let timeline = Timeline::default();
    let cs: Vec<Contender> = ["a", "b", "c"]
        .iter()
        .map(|id| Contender::start(store.clone(), id, &timeline))
        .collect();
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let leaders = cs.iter().filter(|c| c.is_leader()).count();
        assert!(leaders <= 1, "{leaders} leaders");
    }
    assert_eq!(cs.iter().filter(|c| c.is_leader()).count(), 1);
    let iv = intervals(&timeline);
    assert_eq!(iv.len(), 1, "one term, never handed over: {iv:?}");
    let term = store
        .get(Table::Leases, "leader/term")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(term.revision, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_leader_is_replaced_within_ttl_and_a_poll() {
    let store = memory();
    let timeline = Timeline::default();
    let mut a = Contender::start(store.clone(), "a", &timeline);
    a.until_leader(Duration::from_secs(1)).await;
    let mut b = Contender::start(store.clone(), "b", &timeline);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!b.is_leader());
    // kill -9: the task is gone without releasing anything.
    a.task.abort();
    let killed = Instant::now();
    let role = b.until_leader(Duration::from_secs(10)).await;
    let took = killed.elapsed();
    let cfg = LeaseConfig::default();
    assert!(took <= cfg.ttl + cfg.poll_every, "takeover took {took:?}");
    assert!(
        took >= cfg.ttl - cfg.renew_every,
        "took over a live lease after {took:?}"
    );
    assert!(matches!(role, Role::Leader { term: 2, .. }), "{role:?}");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_shuts_down_hands_over_at_the_next_poll() {
    let store = memory();
    let timeline = Timeline::default();
    let mut a = Contender::start(store.clone(), "a", &timeline);
    a.until_leader(Duration::from_secs(1)).await;
    let mut b = Contender::start(store.clone(), "b", &timeline);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = a.stop.take().expect("running").send(());
    let stopped = Instant::now();
    (&mut a.task).await.unwrap();
    assert!(!a.is_leader(), "stepped down at shutdown");
    b.until_leader(Duration::from_secs(10)).await;
    assert!(
        stopped.elapsed() <= LeaseConfig::default().poll_every,
        "{:?}",
        stopped.elapsed()
    );
    assert_no_overlap(&timeline);
}

/// A leader whose store fails (`FAIL`) or hangs (`HANG`) steps down by its own clock before a
/// follower that still reaches the store can take over.
async fn cut_off_leader_steps_down_first(mode: u8, follower_delay: Duration) {
    let store = memory();
    let timeline = Timeline::default();
    let cut = Cuttable::new(store.clone());
    let mut a = Contender::start(cut.clone(), "a", &timeline);
    a.until_leader(Duration::from_secs(1)).await;
    let b_store: Arc<dyn Store> = Arc::new(Delayed {
        inner: store.clone(),
        delay: follower_delay,
    });
    let mut b = Contender::start(b_store, "b", &timeline);
    tokio::time::sleep(Duration::from_millis(5_300)).await;
    cut.set(mode);
    let cut_at = Instant::now();
    b.until_leader(Duration::from_secs(10)).await;
    assert!(!a.is_leader());
    assert_no_overlap(&timeline);
    let iv = intervals(&timeline);
    let a_end = iv
        .iter()
        .find(|(id, _, _)| id == "a")
        .and_then(|(_, _, end)| *end)
        .expect("a stepped down");
    let cfg = LeaseConfig::default();
    assert!(
        a_end.duration_since(cut_at) <= cfg.valid_for,
        "a led {:?} after the cut",
        a_end.duration_since(cut_at)
    );
    // While cut off, a keeps following nobody it can see; reconnected, it follows b.
    cut.set(OK);
    // A call that hung when cut off gives up after ttl; then a poll.
    tokio::time::sleep(cfg.ttl + cfg.poll_every * 2).await;
    assert_eq!(
        *a.role.borrow(),
        Role::Follower {
            leader: Some("b".into())
        }
    );
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_store_fails_steps_down_before_a_takeover() {
    cut_off_leader_steps_down_first(FAIL, Duration::ZERO).await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_store_hangs_steps_down_before_a_takeover() {
    cut_off_leader_steps_down_first(HANG, Duration::ZERO).await;
}

/// The follower's store calls take 0.7 s each (the reply reflects the store when it returns): it
/// must count the heartbeat's age from when a read returns, not from when it was sent.
#[tokio::test(start_paused = true)]
async fn a_slow_follower_still_never_overlaps_a_cut_off_leader() {
    for mode in [FAIL, HANG] {
        cut_off_leader_steps_down_first(mode, Duration::from_millis(700)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_former_leaders_fenced_writes_are_refused() {
    let store = memory();
    let timeline = Timeline::default();
    let cut = Cuttable::new(store.clone());
    let mut a = Contender::start(cut.clone(), "a", &timeline);
    let a_role = a.until_leader(Duration::from_secs(1)).await;
    // A paused process: a still holds its fenced store, the elector cannot reach the store.
    let a_writes = Fenced::for_role(store.clone(), &a_role).expect("a leads");
    a_writes
        .commit(vec![Op::put(
            Table::Functions,
            "before",
            &1,
            Expect::Absent,
        )])
        .await
        .expect("the leader writes");
    let mut b = Contender::start(store.clone(), "b", &timeline);
    cut.set(HANG);
    let b_role = b.until_leader(Duration::from_secs(10)).await;
    let err = a_writes
        .commit(vec![Op::put(Table::Functions, "after", &1, Expect::Absent)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotLeader { term: 1 }), "{err:?}");
    assert!(err.to_string().contains("not the leader"), "{err}");
    assert!(
        store
            .get(Table::Functions, "after")
            .await
            .unwrap()
            .is_none(),
        "nothing written"
    );
    let b_writes = Fenced::for_role(store.clone(), &b_role).expect("b leads");
    let revs = b_writes
        .commit(vec![Op::put(Table::Functions, "after", &2, Expect::Absent)])
        .await
        .unwrap();
    assert_eq!(revs, vec![1], "the fence's own revision is not returned");
}

#[test]
fn the_default_timing_is_consistent_and_bad_timing_is_refused() {
    LeaseConfig::default().check().unwrap();
    let overlap = LeaseConfig {
        valid_for: Duration::from_secs(3),
        ..LeaseConfig::default()
    };
    assert!(overlap.check().unwrap_err().contains("below ttl"));
    let lapse = LeaseConfig {
        renew_every: Duration::from_secs(2),
        ..LeaseConfig::default()
    };
    assert!(lapse.check().unwrap_err().contains("lapses"));
}
