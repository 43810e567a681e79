//! Conformance tests every backend must pass, run against SQLite in a temp dir, against the
//! in-memory store and against PostgreSQL (`needs_postgres`: a throwaway cluster,
//! fleetfn-testutil); then SQLite-only tests (reopen, a failed transaction), PostgreSQL-only
//! ones (tests_postgres.rs) and the `--store` parsing.

use std::sync::Arc;

use super::*;

/// A fresh store of one backend, with whatever must outlive it (its temp dir, its database).
type Opened = (Box<dyn std::any::Any + Send>, Arc<dyn Store>);

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
