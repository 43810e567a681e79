//! Conformance tests every backend must pass, run against SQLite in a temp dir and against the
//! in-memory store; then SQLite-only tests (reopen, a failed transaction).

use std::sync::Arc;

use super::*;

/// A fresh store of one backend, with whatever must outlive it (its temp dir).
type Opened = (Option<tempfile::TempDir>, Arc<dyn Store>);

async fn open_sqlite() -> Opened {
    let (dir, store) = open().await;
    (Some(dir), Arc::new(store))
}

async fn open_memory() -> Opened {
    (None, Arc::new(MemoryStore::new()))
}

/// The contract tests, one `#[tokio::test]` each, for the backend `$open` opens.
macro_rules! contract_tests {
    ($module:ident, $open:ident) => {
        mod $module {
            #[tokio::test]
            async fn put_get_and_revisions() {
                let (_d, s) = super::$open().await;
                super::put_get_and_revisions(&*s).await;
            }
            #[tokio::test]
            async fn conflicts_abort_the_whole_batch() {
                let (_d, s) = super::$open().await;
                super::conflicts_abort_the_whole_batch(&*s).await;
            }
            #[tokio::test]
            async fn list_by_prefix_with_pagination() {
                let (_d, s) = super::$open().await;
                super::list_by_prefix_with_pagination(&*s).await;
            }
            #[tokio::test]
            async fn concurrent_writers_one_wins() {
                let (_d, s) = super::$open().await;
                super::concurrent_writers_one_wins(s).await;
            }
            #[tokio::test]
            async fn a_batch_sees_its_own_earlier_writes() {
                let (_d, s) = super::$open().await;
                super::a_batch_sees_its_own_earlier_writes(&*s).await;
            }
        }
    };
}

contract_tests!(sqlite, open_sqlite);

contract_tests!(memory, open_memory);

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
            .is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() {
            wins += 1;
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
