//! Conformance tests every backend must pass (records and the queue), run against SQLite in a
//! temp dir, against the in-memory store and against PostgreSQL (`needs_postgres`: a throwaway
//! cluster, fleetfn-testutil); then SQLite-only tests (reopen, a failed transaction, an older
//! schema), PostgreSQL-only ones (tests_postgres.rs) and the `--store` parsing.

use std::sync::Arc;

use super::*;

/// A backend: records and the queue.
pub(crate) trait Backend: Store + Queue {}
impl<T: Store + Queue> Backend for T {}

/// A fresh store of one backend, with whatever must outlive it (its temp dir, its database).
type Opened = (Box<dyn std::any::Any + Send>, Arc<dyn Backend>);

async fn open_sqlite() -> Opened {
    let (dir, store) = open().await;
    (Box::new(dir), Arc::new(store))
}

async fn open_memory() -> Opened {
    (Box::new(()), Arc::new(MemoryStore::new()))
}

async fn open_postgres() -> Opened {
    let db = crate::tests_postgres::TestDatabase::create().await;
    let store = PostgresStore::open(&db.url).await.unwrap();
    (Box::new(db), Arc::new(store))
}

/// The contract tests, one `#[tokio::test]` each, for the backend `$open` opens, each with the
/// attributes given (`#[ignore = …]` for a backend the host may lack).
macro_rules! contract_tests {
    ($module:ident, $open:ident $(, #[$attr:meta])*) => {
        mod $module {
            #[tokio::test]
            $(#[$attr])*
            async fn put_get_and_revisions() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::put_get_and_revisions(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn conflicts_abort_the_whole_batch() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::conflicts_abort_the_whole_batch(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn list_by_prefix_with_pagination() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::list_by_prefix_with_pagination(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn keys_sort_bytewise() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::keys_sort_bytewise(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn concurrent_writers_one_wins() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::concurrent_writers_one_wins(s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn concurrent_creators_one_wins() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::concurrent_creators_one_wins(s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn a_check_fences_the_batch() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::a_check_fences_the_batch(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn a_batch_sees_its_own_earlier_writes() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::a_batch_sees_its_own_earlier_writes(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn queue_claims_in_arrival_order() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::queue_claims_in_arrival_order(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn queue_an_expired_lease_is_claimed_again() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::queue_an_expired_lease_is_claimed_again(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn queue_ack_release_and_extend() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::queue_ack_release_and_extend(&*s).await;
            }
            #[tokio::test]
            $(#[$attr])*
            async fn queue_stats_and_next_available_per_queue() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::queue_stats_and_next_available_per_queue(&*s).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            $(#[$attr])*
            async fn queue_concurrent_claimers_share_nothing() {
                let (_d, s) = crate::tests::$open().await;
                crate::tests::queue_concurrent_claimers_share_nothing(&[s.clone(), s], 60).await;
            }
        }
    };
}

contract_tests!(sqlite, open_sqlite);

contract_tests!(memory, open_memory);

mod needs_postgres {
    contract_tests!(
        postgres,
        open_postgres,
        #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
    );
}

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    (dir, store)
}

fn val(s: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "v": s })).unwrap()
}

async fn put_get_and_revisions(s: &dyn Store) {
    assert!(s.get(Table::Functions, "a").await.unwrap().is_none());
    let revs = s
        .commit(vec![Op::put(
            Table::Functions,
            "a",
            &serde_json::json!({"v": "1"}),
            Expect::Absent,
        )])
        .await
        .unwrap();
    assert_eq!(revs, vec![1]);
    let rec = s.get(Table::Functions, "a").await.unwrap().unwrap();
    assert_eq!(rec.revision, 1);
    let revs = s
        .commit(vec![Op::Put {
            table: Table::Functions,
            key: "a".into(),
            value: val("2"),
            expect: Expect::Revision(1),
        }])
        .await
        .unwrap();
    assert_eq!(revs, vec![2]);
    let rec = s.get(Table::Functions, "a").await.unwrap().unwrap();
    assert_eq!(rec.value, val("2"));
    // Same key in another table is independent.
    assert!(s.get(Table::Versions, "a").await.unwrap().is_none());
}

async fn conflicts_abort_the_whole_batch(s: &dyn Store) {
    s.commit(vec![Op::Put {
        table: Table::Functions,
        key: "a".into(),
        value: val("1"),
        expect: Expect::Absent,
    }])
    .await
    .unwrap();
    // Second insert of the same key conflicts; the first op of the batch must not persist.
    let err = s
        .commit(vec![
            Op::Put {
                table: Table::Versions,
                key: "a/1".into(),
                value: val("x"),
                expect: Expect::Absent,
            },
            Op::Put {
                table: Table::Functions,
                key: "a".into(),
                value: val("dup"),
                expect: Expect::Absent,
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { key, .. } if key == "a"));
    assert!(s.get(Table::Versions, "a/1").await.unwrap().is_none());
    // Stale revision conflicts.
    let err = s
        .commit(vec![Op::Put {
            table: Table::Functions,
            key: "a".into(),
            value: val("2"),
            expect: Expect::Revision(7),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    // Delete needs the current revision.
    assert!(
        s.commit(vec![Op::delete(Table::Functions, "a", 2)])
            .await
            .is_err()
    );
    s.commit(vec![Op::delete(Table::Functions, "a", 1)])
        .await
        .unwrap();
    assert!(s.get(Table::Functions, "a").await.unwrap().is_none());
}

async fn list_by_prefix_with_pagination(s: &dyn Store) {
    let mut ops = Vec::new();
    for k in ["f1/001", "f1/002", "f1/003", "f10/001", "f2/001"] {
        ops.push(Op::Put {
            table: Table::Versions,
            key: k.into(),
            value: val(k),
            expect: Expect::Absent,
        });
    }
    s.commit(ops).await.unwrap();
    let page = s.list(Table::Versions, "f1/", None, 2).await.unwrap();
    let keys: Vec<_> = page.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["f1/001", "f1/002"]);
    let page = s
        .list(Table::Versions, "f1/", Some("f1/002"), 2)
        .await
        .unwrap();
    let keys: Vec<_> = page.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["f1/003"]);
    assert_eq!(s.count(Table::Versions, "f1/").await.unwrap(), 3);
    assert_eq!(s.count(Table::Versions, "").await.unwrap(), 5);
    let all = s.list(Table::Versions, "", None, 100).await.unwrap();
    assert_eq!(all.len(), 5);
}

#[tokio::test]
async fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.commit(vec![Op::Put {
            table: Table::CapacityProviders,
            key: "cp".into(),
            value: val("kept"),
            expect: Expect::Absent,
        }])
        .await
        .unwrap();
        s.close().await;
    }
    let s = SqliteStore::open(&path).await.unwrap();
    let rec = s
        .get(Table::CapacityProviders, "cp")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.value, val("kept"));
}

/// Keys list in byte order (as Rust's `str` ordering), whatever the backend's locale: upper
/// case before `_` before lower case, multi-byte UTF-8 last.
async fn keys_sort_bytewise(s: &dyn Store) {
    let keys = [
        "p/b", "p/B", "p/_x", "p/a-1", "p/a1", "p/Z", "p/é", "p/~", "p/a", "q/0", "o/9",
    ];
    let ops = keys
        .iter()
        .map(|k| Op::put(Table::Functions, *k, &serde_json::json!(k), Expect::Absent))
        .collect();
    s.commit(ops).await.unwrap();
    let mut want: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| k.starts_with("p/"))
        .collect();
    want.sort_unstable();
    let listed: Vec<String> = s
        .list(Table::Functions, "p/", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(listed, want);
    // Pages of 3 from `after` walk the same order.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = s
            .list(Table::Functions, "p/", after.as_deref(), 3)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        paged.extend(page.into_iter().map(|r| r.key));
    }
    assert_eq!(paged, want);
    assert_eq!(s.count(Table::Functions, "p/").await.unwrap(), want.len());
    assert_eq!(s.count(Table::Functions, "p/a").await.unwrap(), 3);
}

/// Racing creators of one key: exactly one wins, every other gets `Conflict` (not a backend
/// error), and the winner's value is the one stored.
async fn concurrent_creators_one_wins(s: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let r = s
                .commit(vec![Op::Put {
                    table: Table::Versions,
                    key: "new".into(),
                    value: val(&i.to_string()),
                    expect: Expect::Absent,
                }])
                .await;
            (i, r)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        match t.await.unwrap() {
            (i, Ok(revs)) => {
                assert_eq!(revs, vec![1]);
                winners.push(i);
            }
            (_, Err(StoreError::Conflict { key, .. })) => assert_eq!(key, "new"),
            (_, Err(e)) => panic!("a loser must see a conflict, not {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let rec = s.get(Table::Versions, "new").await.unwrap().unwrap();
    assert_eq!(rec.value, val(&winners[0].to_string()));
}

async fn concurrent_writers_one_wins(s: Arc<dyn Store>) {
    s.commit(vec![Op::Put {
        table: Table::Functions,
        key: "race".into(),
        value: val("0"),
        expect: Expect::Absent,
    }])
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.commit(vec![Op::Put {
                table: Table::Functions,
                key: "race".into(),
                value: val(&i.to_string()),
                expect: Expect::Revision(1),
            }])
            .await
        }));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => wins += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("a loser must see a conflict, not {e:?}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(
        s.get(Table::Functions, "race")
            .await
            .unwrap()
            .unwrap()
            .revision,
        2
    );
}

/// A batch that fails inside SQLite in a way that ends the transaction there (a trigger's
/// `RAISE(ROLLBACK)`, as SQLite itself does on some ENOSPC/SQLITE_FULL paths) must not leave a
/// pooled connection that believes it is still in a transaction: the next batches on every
/// connection of the pool succeed and see what was committed.
#[tokio::test]
async fn a_failed_batch_leaves_no_connection_inside_a_transaction() {
    use sqlx::ConnectOptions;
    let (dir, s) = open().await;
    s.commit(vec![Op::put(
        Table::Functions,
        "before",
        &serde_json::json!({"v": "0"}),
        Expect::Absent,
    )])
    .await
    .unwrap();
    let mut admin = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("state.db"))
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TRIGGER inject_failure BEFORE INSERT ON records WHEN NEW.key = 'boom' \
         BEGIN SELECT RAISE(ROLLBACK, 'injected write failure'); END",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    // More failed batches than the pool has connections, so every connection sees one.
    for i in 0..8 {
        let err = s
            .commit(vec![
                Op::put(
                    Table::Functions,
                    format!("lost-{i}"),
                    &serde_json::json!({"v": i}),
                    Expect::Absent,
                ),
                Op::put(
                    Table::Functions,
                    "boom",
                    &serde_json::json!({}),
                    Expect::Absent,
                ),
            ])
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    }
    for i in 0..8 {
        let revs = s
            .commit(vec![Op::put(
                Table::Functions,
                format!("after-{i}"),
                &serde_json::json!({"v": i}),
                Expect::Absent,
            )])
            .await
            .unwrap_or_else(|e| panic!("batch {i} after the failures: {e}"));
        assert_eq!(revs, vec![1]);
    }
    let keys: Vec<String> = s
        .list(Table::Functions, "", None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    let mut want: Vec<String> = (0..8).map(|i| format!("after-{i}")).collect();
    want.push("before".into());
    assert_eq!(
        keys, want,
        "committed state only, nothing of the failed batches"
    );
}

async fn a_batch_sees_its_own_earlier_writes(s: &dyn Store) {
    // Insert, then update the revision the batch itself created, then another key's delete of
    // what the batch inserted: all in one batch.
    let revs = s
        .commit(vec![
            Op::put(Table::Aliases, "f/a", &serde_json::json!(1), Expect::Absent),
            Op::put(
                Table::Aliases,
                "f/a",
                &serde_json::json!(2),
                Expect::Revision(1),
            ),
            Op::put(Table::Aliases, "f/b", &serde_json::json!(3), Expect::Absent),
            Op::delete(Table::Aliases, "f/b", 1),
        ])
        .await
        .unwrap();
    assert_eq!(revs, vec![1, 2, 1, 0]);
    let a = s.get(Table::Aliases, "f/a").await.unwrap().unwrap();
    assert_eq!((a.revision, a.value), (2, b"2".to_vec()));
    assert!(s.get(Table::Aliases, "f/b").await.unwrap().is_none());
    // `after` below the prefix lists the whole prefix; empty tables count zero.
    let listed = s.list(Table::Aliases, "f/", Some("a"), 10).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(s.count(Table::Usage, "").await.unwrap(), 0);
    assert!(s.list(Table::Usage, "", None, 10).await.unwrap().is_empty());
}

#[test]
fn store_locations_parse_and_print_without_passwords() {
    let pg = StoreLocation::parse("postgres://fleet:s3cret@db:5432/state").unwrap();
    assert_eq!(
        pg,
        StoreLocation::Postgres("postgres://fleet:s3cret@db:5432/state".into())
    );
    assert_eq!(
        pg.to_string(),
        "PostgreSQL postgres://fleet:***@db:5432/state"
    );
    assert!(matches!(
        StoreLocation::parse("postgresql:///state?host=/run/postgresql"),
        Ok(StoreLocation::Postgres(_))
    ));
    assert_eq!(
        StoreLocation::parse("sqlite:/var/lib/fleetfn/state.db").unwrap(),
        StoreLocation::Sqlite("/var/lib/fleetfn/state.db".into())
    );
    assert_eq!(
        StoreLocation::parse("sqlite://rel/state.db").unwrap(),
        StoreLocation::Sqlite("rel/state.db".into())
    );
    let err = StoreLocation::parse("mysql://u:pw@h/db")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown scheme"), "{err}");
    assert!(err.contains("expected postgres://"), "{err}");
    assert!(!err.contains("pw@"), "the password is not repeated: {err}");
    assert!(StoreLocation::parse("sqlite:").is_err());
}

#[tokio::test]
async fn a_bad_postgres_url_says_so() {
    let err = PostgresStore::open("postgres://u:pw@host:notaport/db")
        .await
        .unwrap_err();
    assert!(matches!(err, OpenError::BadUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains(":pw@"), "{err}");
}

#[tokio::test]
async fn an_unreachable_postgres_says_where_it_looked() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = PostgresStore::open(&format!("postgres://u:pw@127.0.0.1:{port}/db"))
        .await
        .unwrap_err();
    assert!(matches!(err, OpenError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("u@127.0.0.1:{port}/db")), "{msg}");
    assert!(msg.contains("is it running"), "{msg}");
}

/// `Op::Check` writes nothing and fails the whole batch unless its key is at that revision.
async fn a_check_fences_the_batch(s: &dyn Store) {
    let fence = |rev| Op::check(Table::Leases, "l/term", rev);
    s.commit(vec![Op::put(Table::Leases, "l/term", &1, Expect::Absent)])
        .await
        .unwrap();
    let revs = s
        .commit(vec![
            Op::put(Table::Functions, "a", &1, Expect::Absent),
            fence(1),
        ])
        .await
        .unwrap();
    assert_eq!(revs, vec![1, 1]);
    assert_eq!(
        s.get(Table::Leases, "l/term")
            .await
            .unwrap()
            .unwrap()
            .revision,
        1,
        "not written"
    );
    s.commit(vec![Op::put(
        Table::Leases,
        "l/term",
        &2,
        Expect::Revision(1),
    )])
    .await
    .unwrap();
    let err = s
        .commit(vec![
            Op::put(Table::Functions, "b", &1, Expect::Absent),
            fence(1),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { table: "leases", key } if key == "l/term"),
        "{err:?}"
    );
    assert!(
        s.get(Table::Functions, "b").await.unwrap().is_none(),
        "the batch was rolled back"
    );
    // A check of a key that is not there fails too.
    let err = s
        .commit(vec![Op::check(Table::Leases, "l/none", 1)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    // A batch's check sees the batch's own earlier write.
    s.commit(vec![
        Op::put(Table::Leases, "l/term", &3, Expect::Revision(2)),
        fence(3),
    ])
    .await
    .unwrap();
}

fn item(id: &str, queue: &str, enqueued_ms: i64, available_ms: i64) -> NewItem {
    NewItem {
        id: id.into(),
        queue: queue.into(),
        header: format!("{{\"h\":\"{id}\"}}").into_bytes(),
        body: format!("body of {id}").into_bytes(),
        enqueued_ms,
        available_ms,
    }
}

fn ids(items: &[Leased]) -> Vec<&str> {
    items.iter().map(|i| i.id.as_str()).collect()
}

/// Oldest `enqueued_ms` first, ties in order of enqueue, at most `limit`, not before
/// `available_ms`; a duplicate id is a conflict.
async fn queue_claims_in_arrival_order(q: &dyn Queue) {
    q.enqueue(item("c", "work", 300, 300)).await.unwrap();
    q.enqueue(item("a", "work", 100, 100)).await.unwrap();
    q.enqueue(item("b", "work", 100, 100)).await.unwrap();
    q.enqueue(item("later", "work", 150, 5_000)).await.unwrap();
    assert!(q.claim("work", 1_000, 30_000, 0).await.unwrap().is_empty());

    let first = q.claim("work", 1_000, 30_000, 2).await.unwrap();
    assert_eq!(ids(&first), ["a", "b"]);
    for (got, id) in first.iter().zip(["a", "b"]) {
        let want = item(id, "work", 100, 100);
        assert_eq!(got.queue, "work");
        assert_eq!((&got.header, &got.body), (&want.header, &want.body));
        assert_eq!(got.enqueued_ms, 100);
        assert_eq!(got.claims, 1);
        assert_eq!(got.lease_until_ms, 31_000);
        assert!(got.token.len() >= 16, "{:?}", got.token);
    }
    assert_ne!(first[0].token, first[1].token);

    // `later` is not available before 5 000.
    let rest = q.claim("work", 1_000, 30_000, 10).await.unwrap();
    assert_eq!(ids(&rest), ["c"]);
    assert!(q.claim("work", 4_999, 30_000, 10).await.unwrap().is_empty());
    let later = q.claim("work", 5_000, 30_000, 10).await.unwrap();
    assert_eq!(ids(&later), ["later"]);
    assert_eq!(later[0].claims, 1);

    // A duplicate id, in this queue or another, is refused and changes nothing.
    for queue in ["work", "other"] {
        let err = q.enqueue(item("a", queue, 1, 1)).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { table: "queue_items", key } if key == "a"),
            "{err:?}"
        );
    }
    assert!(
        q.claim("other", 10_000, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.stats("work", 5_000).await.unwrap().depth, 4);
}

/// A leased item is not handed out again before its lease ends; after, it is (a second claim,
/// a new token), and the old token can no longer ack, release or extend it.
async fn queue_an_expired_lease_is_claimed_again(q: &dyn Queue) {
    q.enqueue(item("x", "work", 0, 0)).await.unwrap();
    let first = q.claim("work", 1_000, 500, 10).await.unwrap();
    assert_eq!(ids(&first), ["x"]);
    let old = first[0].token.clone();
    assert!(q.claim("work", 1_499, 500, 10).await.unwrap().is_empty());
    assert_eq!(q.stats("work", 1_499).await.unwrap().leased, 1);

    let second = q.claim("work", 1_500, 500, 10).await.unwrap();
    assert_eq!(ids(&second), ["x"]);
    assert_eq!(second[0].claims, 2);
    assert_eq!(second[0].lease_until_ms, 2_000);
    let new = second[0].token.clone();
    assert_ne!(new, old);

    assert!(!q.ack("x", &old).await.unwrap());
    assert!(!q.release("x", &old, b"{}".to_vec(), 0).await.unwrap());
    assert!(!q.extend("x", &old, 99_999).await.unwrap());
    // The stale calls changed nothing: still leased until 2 000 under the new token.
    assert!(q.claim("work", 1_999, 500, 10).await.unwrap().is_empty());
    assert!(q.ack("x", &new).await.unwrap());
    assert!(!q.ack("x", &new).await.unwrap(), "gone");
    assert_eq!(q.stats("work", 1_999).await.unwrap().depth, 0);
}

/// Ack deletes; release puts the item back with a new header at a given time; extend pushes
/// the lease's end.
async fn queue_ack_release_and_extend(q: &dyn Queue) {
    q.enqueue(item("a", "work", 0, 0)).await.unwrap();
    q.enqueue(item("b", "work", 1, 1)).await.unwrap();
    let leased = q.claim("work", 10, 100, 10).await.unwrap();
    assert_eq!(ids(&leased), ["a", "b"]);
    let (a, b) = (&leased[0], &leased[1]);
    let stats = q.stats("work", 10).await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            depth: 2,
            leased: 2,
            oldest_enqueued_ms: Some(0)
        }
    );
    // A token is the lease of its own item only.
    assert!(!q.ack("a", &b.token).await.unwrap());

    assert!(q.ack("a", &a.token).await.unwrap());
    let stats = q.stats("work", 10).await.unwrap();
    assert_eq!((stats.depth, stats.leased), (1, 1));
    assert_eq!(stats.oldest_enqueued_ms, Some(1));

    // Extended past 110: not claimable at 200, still leased.
    assert!(q.extend("b", &b.token, 500).await.unwrap());
    assert!(q.claim("work", 200, 100, 10).await.unwrap().is_empty());
    assert_eq!(q.stats("work", 200).await.unwrap().leased, 1);
    assert_eq!(q.next_available("work", 200).await.unwrap(), None);

    // Released with a new header, available again at 1 000.
    let retry = br#"{"attempt":2}"#.to_vec();
    assert!(
        q.release("b", &b.token, retry.clone(), 1_000)
            .await
            .unwrap()
    );
    assert!(!q.extend("b", &b.token, 5_000).await.unwrap(), "released");
    assert!(!q.ack("b", &b.token).await.unwrap(), "released");
    let stats = q.stats("work", 200).await.unwrap();
    assert_eq!((stats.depth, stats.leased), (1, 0));
    assert_eq!(q.next_available("work", 200).await.unwrap(), Some(1_000));
    assert!(q.claim("work", 999, 100, 10).await.unwrap().is_empty());
    let again = q.claim("work", 1_000, 100, 10).await.unwrap();
    assert_eq!(ids(&again), ["b"]);
    assert_eq!(again[0].header, retry);
    assert_eq!(again[0].body, b"body of b");
    assert_eq!(again[0].enqueued_ms, 1, "enqueued_ms is kept");
    assert_eq!(again[0].claims, 2);
    assert!(!q.release("b", &b.token, b"{}".to_vec(), 0).await.unwrap());
    assert!(q.ack("b", &again[0].token).await.unwrap());
    assert_eq!(q.stats("work", 1_000).await.unwrap(), QueueStats::default());
}

/// Depth, leased and oldest per queue; the next time a claim can succeed; queues are separate.
async fn queue_stats_and_next_available_per_queue(q: &dyn Queue) {
    assert_eq!(q.stats("q1", 0).await.unwrap(), QueueStats::default());
    assert_eq!(q.next_available("q1", 0).await.unwrap(), None);
    q.enqueue(item("i1", "q1", 10, 10)).await.unwrap();
    q.enqueue(item("i2", "q1", 20, 500)).await.unwrap();
    q.enqueue(item("j1", "q2", 5, 7)).await.unwrap();

    assert_eq!(
        q.stats("q1", 100).await.unwrap(),
        QueueStats {
            depth: 2,
            leased: 0,
            oldest_enqueued_ms: Some(10)
        }
    );
    assert_eq!(
        q.stats("q2", 100).await.unwrap(),
        QueueStats {
            depth: 1,
            leased: 0,
            oldest_enqueued_ms: Some(5)
        }
    );
    assert_eq!(q.next_available("q1", 100).await.unwrap(), Some(10));
    assert_eq!(q.next_available("q2", 100).await.unwrap(), Some(7));

    let got = q.claim("q1", 100, 1_000, 10).await.unwrap();
    assert_eq!(ids(&got), ["i1"]);
    assert_eq!(q.stats("q1", 100).await.unwrap().leased, 1);
    assert_eq!(q.stats("q2", 100).await.unwrap().leased, 0);
    // i1 is leased until 1 100: the next claim can succeed when i2 becomes available.
    assert_eq!(q.next_available("q1", 100).await.unwrap(), Some(500));
    // At 1 100 the lease has ended: i1 counts as available again (since 1 100), not leased.
    assert_eq!(q.next_available("q1", 1_100).await.unwrap(), Some(500));
    assert_eq!(
        q.stats("q1", 1_100).await.unwrap(),
        QueueStats {
            depth: 2,
            leased: 0,
            oldest_enqueued_ms: Some(10)
        }
    );
    // q2 is untouched by q1's claims.
    let got = q.claim("q2", 100, 1_000, 10).await.unwrap();
    assert_eq!(ids(&got), ["j1"]);
    assert!(q.ack("j1", &got[0].token).await.unwrap());
    assert_eq!(q.stats("q2", 100).await.unwrap(), QueueStats::default());
    assert_eq!(q.next_available("q2", 100).await.unwrap(), None);
    assert_eq!(q.stats("q1", 100).await.unwrap().depth, 2);
}

/// Consumers on `stores` (handles on one queue: one store, or several processes' stores on one
/// database), two tasks each, claiming 7 at a time and acking until the queue is empty: every
/// one of `n` items is handed out exactly once in total.
pub(crate) async fn queue_concurrent_claimers_share_nothing(stores: &[Arc<dyn Backend>], n: usize) {
    for i in 0..n {
        let at = i64::try_from(i).unwrap();
        stores[i % stores.len()]
            .enqueue(item(&format!("item-{i:04}"), "work", at, at))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for s in stores.iter().chain(stores) {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            // Bounded: far more rounds than needed.
            for _ in 0..200 {
                let leased = s.claim("work", 1_000_000, 600_000, 7).await.unwrap();
                if leased.is_empty() {
                    break;
                }
                assert!(leased.len() <= 7);
                for l in leased {
                    assert_eq!(l.claims, 1, "{} handed out again", l.id);
                    assert!(s.ack(&l.id, &l.token).await.unwrap(), "{}", l.id);
                    got.push(l.id);
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), total, "an item was handed out twice");
    let want: Vec<String> = (0..n).map(|i| format!("item-{i:04}")).collect();
    assert_eq!(all, want);
    assert_eq!(
        stores[0].stats("work", 1_000_000).await.unwrap(),
        QueueStats::default()
    );
}

/// Queue items and their leases survive closing and reopening the SQLite file.
#[tokio::test]
async fn queue_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let token = {
        let s = SqliteStore::open(&path).await.unwrap();
        s.enqueue(item("kept", "work", 1, 1)).await.unwrap();
        s.enqueue(item("leased", "work", 0, 0)).await.unwrap();
        let got = s.claim("work", 10, 1_000, 1).await.unwrap();
        assert_eq!(ids(&got), ["leased"]);
        s.close().await;
        got[0].token.clone()
    };
    let s = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        s.stats("work", 10).await.unwrap(),
        QueueStats {
            depth: 2,
            leased: 1,
            oldest_enqueued_ms: Some(0)
        }
    );
    assert!(s.ack("leased", &token).await.unwrap());
    let got = s.claim("work", 10, 1_000, 10).await.unwrap();
    assert_eq!(ids(&got), ["kept"]);
    assert_eq!(got[0].body, b"body of kept");
    assert_eq!(got[0].header, item("kept", "work", 1, 1).header);
}

/// A database at schema version 1 (before the queue) gets the queue table when opened, and its
/// records are kept.
#[tokio::test]
async fn an_older_sqlite_schema_gets_the_queue() {
    use sqlx::ConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let s = SqliteStore::open(&path).await.unwrap();
        s.commit(vec![Op::put(
            Table::Functions,
            "f",
            &serde_json::json!(1),
            Expect::Absent,
        )])
        .await
        .unwrap();
        s.close().await;
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql("DROP TABLE queue_items; DELETE FROM schema_version WHERE version > 1")
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::Connection::close(c).await.unwrap();
    }
    let s = SqliteStore::open(&path).await.unwrap();
    assert!(s.get(Table::Functions, "f").await.unwrap().is_some());
    s.enqueue(item("a", "work", 0, 0)).await.unwrap();
    assert_eq!(ids(&s.claim("work", 0, 10, 10).await.unwrap()), ["a"]);
}
