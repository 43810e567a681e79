//! PostgreSQL-only tests (`needs_postgres`): migrations under concurrent starts, a deadlock
//! between batches reported as a conflict, separate processes' pools racing (on records and on
//! the queue), and the errors that say what to fix. [`TestDatabase`]: a fresh database per test on the shared throwaway
//! cluster (fleetfn-testutil), dropped after it.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Row};

use crate::{Expect, Op, OpenError, PostgresStore, Store, StoreError, Table};

/// A fresh database on the test server, dropped (with `FORCE`) when this is.
pub(crate) struct TestDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let pg = fleetfn_testutil::require(
            fleetfn_testutil::POSTGRES,
            fleetfn_testutil::postgres::shared(),
        );
        let name = format!(
            "fleetfn_test_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(pg.admin_url())
            .await
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}"));
        // Where the server has ICU, a database whose default collation is not bytewise
        // (en-US): the records table's own `COLLATE "C"` must keep keys in byte order.
        let icu = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
        )))
        .execute(&mut admin)
        .await;
        if icu.is_err() {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        }
        let _ = admin.close().await;
        Self {
            url: pg.url(&name),
            admin_url: pg.admin_url().to_string(),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread of its own with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
    }
}

fn put(key: &str, v: i64, expect: Expect) -> Op {
    Op::put(Table::Functions, key, &serde_json::json!(v), expect)
}

mod needs_postgres {
    use super::*;

    /// Four processes starting at once on an empty database: every open succeeds, each
    /// migration is applied once, and they share one table; a reopen keeps the data and applies
    /// nothing again.
    #[tokio::test]
    #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
    async fn concurrent_starts_migrate_once() {
        let db = TestDatabase::create().await;
        let opens: Vec<_> = (0..4)
            .map(|_| {
                let url = db.url.clone();
                tokio::spawn(async move { PostgresStore::open(&url).await })
            })
            .collect();
        let mut stores = Vec::new();
        for o in opens {
            stores.push(o.await.unwrap().unwrap_or_else(|e| panic!("open: {e}")));
        }
        let versions = |url: String| async move {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<i64, _>("version"))
                .collect::<Vec<_>>()
        };
        let want: Vec<i64> =
            (1..=i64::try_from(crate::postgres::MIGRATIONS.len()).unwrap()).collect();
        assert_eq!(versions(db.url.clone()).await, want);
        stores[0]
            .commit(vec![put("shared", 1, Expect::Absent)])
            .await
            .unwrap();
        let rec = stores[3].get(Table::Functions, "shared").await.unwrap();
        assert_eq!(rec.map(|r| r.revision), Some(1));
        for s in &stores {
            s.close().await;
        }
        let again = PostgresStore::open(&db.url).await.unwrap();
        assert_eq!(versions(db.url.clone()).await, want);
        let rec = again
            .get(Table::Functions, "shared")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rec.value, b"1");
        again.close().await;
    }

    /// A database migrated by a newer fleetfn is refused, not written to.
    #[tokio::test]
    #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
    async fn a_newer_schema_is_refused() {
        let db = TestDatabase::create().await;
        PostgresStore::open(&db.url).await.unwrap().close().await;
        let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("INSERT INTO schema_migrations (version) VALUES (999)")
            .execute(&mut c)
            .await
            .unwrap();
        let err = PostgresStore::open(&db.url).await.unwrap_err().to_string();
        assert!(err.contains("schema is at version 999"), "{err}");
    }

    /// Two batches locking the same rows in opposite orders: PostgreSQL aborts one with a
    /// deadlock, and the store reports that as a conflict (a lost race), not a backend error.
    #[tokio::test]
    #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
    async fn a_deadlock_is_a_conflict() {
        let db = TestDatabase::create().await;
        let s = PostgresStore::open(&db.url).await.unwrap();
        s.commit(vec![
            put("a", 0, Expect::Absent),
            put("b", 0, Expect::Absent),
        ])
        .await
        .unwrap();
        let mut other = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let mut tx = other.begin().await.unwrap();
        // Our side waits longest before checking for deadlocks (where allowed), so the batch,
        // which starts waiting first, is the one PostgreSQL aborts.
        let _ = sqlx::query("SET LOCAL deadlock_timeout = '10s'")
            .execute(&mut *tx)
            .await;
        sqlx::query("UPDATE records SET rev = rev WHERE tbl = 'functions' AND key = 'a'")
            .execute(&mut *tx)
            .await
            .unwrap();
        let batch = {
            let s = s.clone();
            tokio::spawn(async move {
                s.commit(vec![
                    put("b", 1, Expect::Revision(1)),
                    put("a", 1, Expect::Revision(1)),
                ])
                .await
            })
        };
        // Until the batch holds b and waits for our lock on a.
        let mut probe = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let waiting: i64 = sqlx::query("SELECT count(*) AS n FROM pg_locks WHERE NOT granted")
                .fetch_one(&mut probe)
                .await
                .unwrap()
                .get("n");
            if waiting > 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the batch never waited"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let ours =
            sqlx::query("UPDATE records SET rev = rev WHERE tbl = 'functions' AND key = 'b'")
                .execute(&mut *tx)
                .await;
        let theirs = batch.await.unwrap();
        assert!(ours.is_ok(), "our side was the deadlock victim: {ours:?}");
        tx.commit().await.unwrap();
        match theirs {
            Err(StoreError::Conflict { key, .. }) => assert_eq!(key, "a"),
            other => panic!("the deadlocked batch must be a conflict, not {other:?}"),
        }
        // Nothing of the aborted batch was written.
        let b = s.get(Table::Functions, "b").await.unwrap().unwrap();
        assert_eq!((b.revision, b.value), (1, b"0".to_vec()));
    }

    /// Writers in separate processes (separate pools) racing on one revision: one wins, the
    /// others see a conflict.
    #[tokio::test]
    #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
    async fn separate_pools_race_one_wins() {
        let db = TestDatabase::create().await;
        let first = PostgresStore::open(&db.url).await.unwrap();
        first
            .commit(vec![put("race", 0, Expect::Absent)])
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..6 {
            let url = db.url.clone();
            tasks.push(tokio::spawn(async move {
                let s = PostgresStore::open(&url).await.unwrap();
                let r = s.commit(vec![put("race", i, Expect::Revision(1))]).await;
                s.close().await;
                r
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(revs) => {
                    assert_eq!(revs, vec![2]);
                    wins += 1;
                }
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => panic!("a loser must see a conflict, not {e:?}"),
            }
        }
        assert_eq!(wins, 1);
    }

    /// Two processes' stores (separate pools) on one database, two consumers each, claiming 7
    /// at a time from 200 items and acking: every item is handed out exactly once in total
    /// (`FOR UPDATE SKIP LOCKED`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
    async fn separate_pools_claim_each_item_once() {
        use std::sync::Arc;
        let db = TestDatabase::create().await;
        let a = Arc::new(PostgresStore::open(&db.url).await.unwrap());
        let b = Arc::new(PostgresStore::open(&db.url).await.unwrap());
        crate::tests::queue_concurrent_claimers_share_nothing(&[a.clone(), b.clone()], 200).await;
        a.close().await;
        b.close().await;
    }

    /// A wrong user or password, and a database that does not exist, are named as such.
    #[tokio::test]
    #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
    async fn errors_say_what_to_fix() {
        let db = TestDatabase::create().await;
        let (scheme, rest) = db.url.split_once("://").unwrap();
        let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
        let wrong = format!("{scheme}://fleetfn_no_such_user:wrong@{host}");
        let err = PostgresStore::open(&wrong).await.unwrap_err();
        assert!(matches!(err, OpenError::AuthFailed { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("refused user \"fleetfn_no_such_user\""),
            "{msg}"
        );
        assert!(!msg.contains("wrong"), "no password in the message: {msg}");

        let missing = fleetfn_testutil::postgres::with_database(&db.url, "fleetfn_no_such_db");
        let err = PostgresStore::open(&missing).await.unwrap_err();
        assert!(matches!(err, OpenError::NoDatabase { .. }), "{err:?}");
        assert!(
            err.to_string().contains("createdb fleetfn_no_such_db"),
            "{err}"
        );
    }

    /// A fenced batch whose check has passed but which has not committed yet holds the term
    /// record against a takeover (`FOR SHARE`): the takeover waits, and the fenced batch commits
    /// first. Made deterministic by stalling the fenced batch on a row another transaction holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL (initdb/postgres, or FLEETFN_TEST_POSTGRES_URL); run by scripts/test (opt out: FLEETFN_TEST_OPT_OUT=postgres)"]
    async fn a_takeover_waits_for_a_fenced_batch_in_flight() {
        use std::sync::Arc;
        let db = TestDatabase::create().await;
        let store = Arc::new(PostgresStore::open(&db.url).await.unwrap());
        store
            .commit(vec![Op::put(Table::Leases, "l/term", &1, Expect::Absent)])
            .await
            .unwrap();
        // Another transaction holds an uncommitted insert of the key the fenced batch writes.
        let mut blocker = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
        sqlx::query("INSERT INTO records (tbl, key, rev, value) VALUES ('functions', 'x', 1, '1')")
            .execute(&mut blocker)
            .await
            .unwrap();
        let s = store.clone();
        let fenced = tokio::spawn(async move {
            s.commit(vec![
                Op::check(Table::Leases, "l/term", 1),
                Op::put(Table::Functions, "x", &2, Expect::Absent),
            ])
            .await
        });
        let lock_waiters = |url: String| async move {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
            n
        };
        // Bounded: the fenced batch (its check done) is stalled on the blocker within 10 s.
        let mut stalled = false;
        for _ in 0..200 {
            if lock_waiters(db.url.clone()).await >= 1 {
                stalled = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(stalled, "the fenced batch never waited on the blocker");
        let s = store.clone();
        let takeover = tokio::spawn(async move {
            s.commit(vec![Op::put(
                Table::Leases,
                "l/term",
                &2,
                Expect::Revision(1),
            )])
            .await
        });
        // The takeover must queue behind the fenced batch's share lock; without it, it would
        // commit at once. Bounded: 10 s.
        let mut queued = false;
        for _ in 0..200 {
            assert!(
                !takeover.is_finished(),
                "the takeover committed while a fenced batch that passed its check was in flight"
            );
            if lock_waiters(db.url.clone()).await >= 2 {
                queued = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(queued, "the takeover neither committed nor waited");
        sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
        fenced
            .await
            .unwrap()
            .expect("the fenced batch checked before the takeover, so it commits");
        takeover.await.unwrap().expect("then the takeover commits");
        let term = store.get(Table::Leases, "l/term").await.unwrap().unwrap();
        assert_eq!(term.revision, 2);
        store.close().await;
    }
}
