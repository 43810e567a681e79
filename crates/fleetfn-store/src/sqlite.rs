//! SQLite backend: one `records` table in WAL mode, conditional writes in `BEGIN IMMEDIATE`
//! transactions (a connection whose batch failed and cannot be rolled back cleanly is closed, never
//! pooled), schema migrations applied in order at open; the [`Queue`] in a `queue_items` table,
//! claims serialized in `BEGIN IMMEDIATE` too.

use std::path::Path;
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::queue::{Leased, NewItem, Queue, QueueStats, new_token};
use crate::{BoxFut, Expect, Op, Record, Store, StoreError, Table, prefix_end};

/// Schema migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE records (
        tbl   TEXT    NOT NULL,
        key   TEXT    NOT NULL,
        rev   INTEGER NOT NULL,
        value BLOB    NOT NULL,
        PRIMARY KEY (tbl, key)
    ) WITHOUT ROWID",
    // The work queue: a leased item's `available_ms` is its lease's end, so "claimable" is
    // just `available_ms <= now`.
    "CREATE TABLE queue_items (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        id             TEXT    NOT NULL UNIQUE,
        queue          TEXT    NOT NULL,
        header         BLOB    NOT NULL,
        body           BLOB    NOT NULL,
        enqueued_ms    INTEGER NOT NULL,
        available_ms   INTEGER NOT NULL,
        claims         INTEGER NOT NULL DEFAULT 0,
        token          TEXT    NULL,
        lease_until_ms INTEGER NULL
    );
    CREATE INDEX queue_items_available ON queue_items (queue, available_ms);",
];

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

impl Queue for SqliteStore {
    fn enqueue(&self, item: NewItem) -> BoxFut<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO queue_items (id, queue, header, body, enqueued_ms, available_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&item.id)
            .bind(&item.queue)
            .bind(&item.header)
            .bind(&item.body)
            .bind(item.enqueued_ms)
            .bind(item.available_ms)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            one_row(done.rows_affected(), QUEUE_TABLE, item.id)
        })
    }

    fn claim<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
        lease_ms: i64,
        limit: usize,
    ) -> BoxFut<'a, Result<Vec<Leased>, StoreError>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let mut conn = self.pool.acquire().await.map_err(backend)?;
            let (outcome, clean) = run_claim(&mut conn, queue, now_ms, lease_ms, limit).await;
            if !clean {
                conn.close_on_drop();
            }
            outcome
        })
    }

    fn ack<'a>(&'a self, id: &'a str, token: &'a str) -> BoxFut<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM queue_items WHERE id = $1 AND token = $2")
                .bind(id)
                .bind(token)
                .execute(&self.pool)
                .await
                .map_err(backend)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn release<'a>(
        &'a self,
        id: &'a str,
        token: &'a str,
        header: Vec<u8>,
        available_ms: i64,
    ) -> BoxFut<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE queue_items SET header = $1, available_ms = $2, token = NULL, \
                 lease_until_ms = NULL WHERE id = $3 AND token = $4",
            )
            .bind(&header)
            .bind(available_ms)
            .bind(id)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn extend<'a>(
        &'a self,
        id: &'a str,
        token: &'a str,
        lease_until_ms: i64,
    ) -> BoxFut<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "UPDATE queue_items SET lease_until_ms = $1, available_ms = $1 \
                 WHERE id = $2 AND token = $3",
            )
            .bind(lease_until_ms)
            .bind(id)
            .bind(token)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn stats<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
    ) -> BoxFut<'a, Result<QueueStats, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT COUNT(*) AS depth, \
                 COUNT(CASE WHEN token IS NOT NULL AND lease_until_ms > $2 THEN 1 END) AS leased, \
                 MIN(enqueued_ms) AS oldest FROM queue_items WHERE queue = $1",
            )
            .bind(queue)
            .bind(now_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
            let depth: i64 = row.try_get("depth").map_err(backend)?;
            let leased: i64 = row.try_get("leased").map_err(backend)?;
            Ok(QueueStats {
                depth: u64::try_from(depth).unwrap_or(0),
                leased: u64::try_from(leased).unwrap_or(0),
                oldest_enqueued_ms: row.try_get("oldest").map_err(backend)?,
            })
        })
    }

    fn next_available<'a>(
        &'a self,
        queue: &'a str,
        now_ms: i64,
    ) -> BoxFut<'a, Result<Option<i64>, StoreError>> {
        Box::pin(async move {
            sqlx::query_scalar(
                "SELECT MIN(available_ms) FROM queue_items WHERE queue = $1 \
                 AND (token IS NULL OR lease_until_ms <= $2)",
            )
            .bind(queue)
            .bind(now_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
        })
    }
}

/// The table name [`StoreError::Conflict`] names for a duplicate item id.
const QUEUE_TABLE: &str = "queue_items";

/// One claim in a `BEGIN IMMEDIATE` transaction (so concurrent claims never read the same
/// available rows), and whether the connection is known to be outside a transaction afterwards
/// (as [`run_batch`]).
async fn run_claim(
    conn: &mut sqlx::SqliteConnection,
    queue: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> (Result<Vec<Leased>, StoreError>, bool) {
    let mut tx = match sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => return (Err(backend(e)), false),
    };
    let until = now_ms.saturating_add(lease_ms);
    let claimed = sqlx::query(
        "UPDATE queue_items SET claims = claims + 1, token = $1 || '.' || seq, \
         lease_until_ms = $2, available_ms = $2 \
         WHERE seq IN (SELECT seq FROM queue_items WHERE queue = $3 AND available_ms <= $4 \
         ORDER BY enqueued_ms, seq LIMIT $5) \
         RETURNING seq, id, queue, header, body, enqueued_ms, claims, token, lease_until_ms",
    )
    .bind(new_token())
    .bind(until)
    .bind(queue)
    .bind(now_ms)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await;
    match claimed {
        Ok(rows) => match tx.commit().await {
            Ok(()) => (leased_in_order(&rows), true),
            Err(e) => (Err(backend(e)), false),
        },
        Err(e) => {
            let clean = tx.rollback().await.is_ok();
            (Err(backend(e)), clean)
        }
    }
}

/// Claimed rows in claim order (RETURNING yields them in no particular order).
fn leased_in_order(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<Leased>, StoreError> {
    let mut items = rows
        .iter()
        .map(row_to_leased)
        .collect::<Result<Vec<_>, _>>()
        .map_err(backend)?;
    items.sort_by_key(|(seq, item)| (item.enqueued_ms, *seq));
    Ok(items.into_iter().map(|(_, item)| item).collect())
}

fn row_to_leased(row: &sqlx::sqlite::SqliteRow) -> Result<(i64, Leased), sqlx::Error> {
    let claims: i64 = row.try_get("claims")?;
    let item = Leased {
        id: row.try_get("id")?,
        queue: row.try_get("queue")?,
        header: row.try_get("header")?,
        body: row.try_get("body")?,
        enqueued_ms: row.try_get("enqueued_ms")?,
        claims: u32::try_from(claims).unwrap_or(u32::MAX),
        token: row.try_get("token")?,
        lease_until_ms: row.try_get("lease_until_ms")?,
    };
    Ok((row.try_get("seq")?, item))
}
