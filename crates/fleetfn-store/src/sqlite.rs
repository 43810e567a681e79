//! SQLite backend: one `records` table in WAL mode, conditional writes in `BEGIN IMMEDIATE`
//! transactions (a connection whose batch failed and cannot be rolled back cleanly is closed, never
//! pooled), schema migrations applied in order at open.

use std::path::Path;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::{BoxFut, Expect, Op, Record, Store, StoreError, Table, prefix_end};

/// Schema migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &["CREATE TABLE records (
        tbl   TEXT    NOT NULL,
        key   TEXT    NOT NULL,
        rev   INTEGER NOT NULL,
        value BLOB    NOT NULL,
        PRIMARY KEY (tbl, key)
    ) WITHOUT ROWID"];

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await
            .map_err(backend)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?
            .get("v");
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
            if version <= current {
                continue;
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// Closes the pool, checkpointing the WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn row_to_record(row: &sqlx::sqlite::SqliteRow) -> Record {
    Record {
        key: row.get("key"),
        revision: row.get("rev"),
        value: row.get("value"),
    }
}

impl Store for SqliteStore {
    fn get<'a>(
        &'a self,
        table: Table,
        key: &'a str,
    ) -> BoxFut<'a, Result<Option<Record>, StoreError>> {
        Box::pin(async move {
            let row =
                sqlx::query("SELECT key, rev, value FROM records WHERE tbl = $1 AND key = $2")
                    .bind(table.as_str())
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend)?;
            Ok(row.as_ref().map(row_to_record))
        })
    }

    fn list<'a>(
        &'a self,
        table: Table,
        prefix: &'a str,
        after: Option<&'a str>,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Record>, StoreError>> {
        Box::pin(async move {
            let lower = match after {
                Some(a) if a >= prefix => a,
                _ => prefix,
            };
            let inclusive = after.is_none() || after.is_some_and(|a| a < prefix);
            // An upper bound of U+10FFFF is above every key; keys are ASCII here.
            let upper = prefix_end(prefix).unwrap_or_else(|| "\u{10FFFF}".to_string());
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = if inclusive {
                sqlx::query(
                    "SELECT key, rev, value FROM records WHERE tbl = $1 AND key >= $2 AND key < $3 ORDER BY key LIMIT $4",
                )
            } else {
                sqlx::query(
                    "SELECT key, rev, value FROM records WHERE tbl = $1 AND key > $2 AND key < $3 ORDER BY key LIMIT $4",
                )
            }
            .bind(table.as_str())
            .bind(lower)
            .bind(&upper)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            Ok(rows.iter().map(row_to_record).collect())
        })
    }

    fn count<'a>(&'a self, table: Table, prefix: &'a str) -> BoxFut<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let upper = prefix_end(prefix).unwrap_or_else(|| "\u{10FFFF}".to_string());
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM records WHERE tbl = $1 AND key >= $2 AND key < $3",
            )
            .bind(table.as_str())
            .bind(prefix)
            .bind(&upper)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?
            .get("n");
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, Result<Vec<i64>, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            let (outcome, clean) = run_batch(&mut conn, ops).await;
            if !clean {
                conn.close_on_drop();
            }
            outcome
        })
    }
}

/// One batch in a `BEGIN IMMEDIATE` transaction, and whether the connection is known to be
/// outside a transaction afterwards. It is not after a failed BEGIN or COMMIT, or a ROLLBACK
/// that failed (SQLite may already have ended the transaction itself, e.g. on SQLITE_FULL,
/// which leaves sqlx's bookkeeping inside one); such a connection is closed, not pooled.
async fn run_batch(
    conn: &mut sqlx::SqliteConnection,
    ops: Vec<Op>,
) -> (Result<Vec<i64>, StoreError>, bool) {
    let mut tx = match sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => return (Err(backend(e)), false),
    };
    match apply(&mut tx, ops).await {
        Ok(revs) => match tx.commit().await {
            Ok(()) => (Ok(revs), true),
            Err(e) => (Err(backend(e)), false),
        },
        Err(e) => {
            let clean = tx.rollback().await.is_ok();
            (Err(e), clean)
        }
    }
}

/// A conditional write touched its one row, or its condition did not hold: a conflict.
fn one_row(rows: u64, table: &'static str, key: String) -> Result<(), StoreError> {
    if rows == 1 {
        Ok(())
    } else {
        Err(StoreError::Conflict { table, key })
    }
}

/// The operations of one batch inside its transaction; the first conflict or error ends it.
async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    ops: Vec<Op>,
) -> Result<Vec<i64>, StoreError> {
    let mut revs = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Op::Put {
                table,
                key,
                value,
                expect: Expect::Absent,
            } => {
                let done = sqlx::query(
                        "INSERT INTO records (tbl, key, rev, value) VALUES ($1, $2, 1, $3) ON CONFLICT DO NOTHING",
                    )
                    .bind(table.as_str())
                    .bind(&key)
                    .bind(&value)
                    .execute(&mut **tx)
                    .await
                    .map_err(backend)?;
                one_row(done.rows_affected(), table.as_str(), key)?;
                revs.push(1);
            }
            Op::Put {
                table,
                key,
                value,
                expect: Expect::Revision(rev),
            } => {
                let done = sqlx::query(
                        "UPDATE records SET rev = rev + 1, value = $1 WHERE tbl = $2 AND key = $3 AND rev = $4",
                    )
                    .bind(&value)
                    .bind(table.as_str())
                    .bind(&key)
                    .bind(rev)
                    .execute(&mut **tx)
                    .await
                    .map_err(backend)?;
                one_row(done.rows_affected(), table.as_str(), key)?;
                revs.push(rev + 1);
            }
            Op::Delete {
                table,
                key,
                revision,
            } => {
                let done =
                    sqlx::query("DELETE FROM records WHERE tbl = $1 AND key = $2 AND rev = $3")
                        .bind(table.as_str())
                        .bind(&key)
                        .bind(revision)
                        .execute(&mut **tx)
                        .await
                        .map_err(backend)?;
                one_row(done.rows_affected(), table.as_str(), key)?;
                revs.push(0);
            }
            Op::Check {
                table,
                key,
                revision,
            } => {
                // BEGIN IMMEDIATE serializes batches: nothing changes the row before this one commits.
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT rev FROM records WHERE tbl = $1 AND key = $2")
                        .bind(table.as_str())
                        .bind(&key)
                        .fetch_optional(&mut **tx)
                        .await
                        .map_err(backend)?;
                if found != Some(revision) {
                    return Err(StoreError::Conflict {
                        table: table.as_str(),
                        key,
                    });
                }
                revs.push(revision);
            }
        }
    }
    Ok(revs)
}
