//! PostgreSQL backend: the same one `records` table as SQLite (keys in the `"C"` collation, so
//! they sort bytewise like SQLite's and the memory store's), conditional writes in READ COMMITTED
//! transactions (`UPDATE … WHERE rev = $n` re-checks the row after a concurrent commit, so a
//! racing writer matches nothing and gets `Conflict`), and versioned schema migrations applied at
//! open under a transaction-scoped advisory lock, so two processes starting at once apply each
//! migration once. The [`Queue`] is a `queue_items` table claimed with `FOR UPDATE SKIP LOCKED`,
//! so processes sharing the database never hand out one item twice.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Row};

use crate::queue::{Leased, NewItem, Queue, QueueStats, new_token};
use crate::{BoxFut, Expect, Op, OpenError, Record, Store, StoreError, Table, prefix_end};

/// Schema migrations, applied in order; the index + 1 is the schema version.
pub(crate) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE records (
        tbl   TEXT   NOT NULL,
        key   TEXT   COLLATE \"C\" NOT NULL,
        rev   BIGINT NOT NULL,
        value BYTEA  NOT NULL,
        PRIMARY KEY (tbl, key)
    )",
    // The work queue: a leased item's `available_ms` is its lease's end, so "claimable" is
    // just `available_ms <= now`.
    "CREATE TABLE queue_items (
        seq            BIGSERIAL PRIMARY KEY,
        id             TEXT      COLLATE \"C\" NOT NULL UNIQUE,
        queue          TEXT      NOT NULL,
        header         BYTEA     NOT NULL,
        body           BYTEA     NOT NULL,
        enqueued_ms    BIGINT    NOT NULL,
        available_ms   BIGINT    NOT NULL,
        claims         INTEGER   NOT NULL DEFAULT 0,
        token          TEXT      NULL,
        lease_until_ms BIGINT    NULL
    );
    CREATE INDEX queue_items_available ON queue_items (queue, available_ms);",
];

/// The advisory lock key held (transaction-scoped) while migrating: "fleetfn" in ASCII.
const MIGRATION_LOCK: i64 = 0x0066_6c65_6574_666e;

/// How long opening waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLSTATEs of a transaction PostgreSQL aborted because of a concurrent one: another writer
/// got there first, which callers handle like any other lost race.
const SERIALIZATION_FAILURE: &str = "40001";
const DEADLOCK_DETECTED: &str = "40P01";

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    target: String,
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// Where `opts` points, without the password: `user@host:port/db` or `user@/socket/dir:port/db`.
fn describe(opts: &PgConnectOptions) -> String {
    let host = opts
        .get_socket()
        .map_or_else(|| opts.get_host().to_string(), |s| s.display().to_string());
    format!(
        "{}@{host}:{}/{}",
        opts.get_username(),
        opts.get_port(),
        opts.get_database().unwrap_or(opts.get_username())
    )
}

/// Why the first connection failed, saying what to fix.
fn connect_error(target: &str, opts: &PgConnectOptions, e: sqlx::Error) -> OpenError {
    let target = target.to_string();
    match e {
        sqlx::Error::Io(io) => OpenError::Unreachable {
            target,
            detail: io.to_string(),
        },
        sqlx::Error::Tls(t) => OpenError::Tls {
            target,
            detail: t.to_string(),
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => OpenError::AuthFailed {
                target,
                user: opts.get_username().to_string(),
                detail: db.message().to_string(),
            },
            // invalid_catalog_name
            Some("3D000") => OpenError::NoDatabase {
                target,
                database: opts
                    .get_database()
                    .unwrap_or(opts.get_username())
                    .to_string(),
            },
            _ => OpenError::Store(StoreError::Backend(format!("{target}: {db}"))),
        },
        other => OpenError::Store(StoreError::Backend(format!("{target}: {other}"))),
    }
}

/// `url` parsed, or why it is not a PostgreSQL URL.
fn parse_url(url: &str) -> Result<PgConnectOptions, OpenError> {
    url.parse().map_err(|e: sqlx::Error| OpenError::BadUrl {
        url: redact(url),
        detail: e.to_string(),
    })
}

/// Whether `url` parses as a PostgreSQL URL (checked when `--store` is read).
pub(crate) fn check_url(url: &str) -> Result<(), OpenError> {
    parse_url(url).map(drop)
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, `?host=/socket/dir`
    /// for a Unix socket) and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let opts = parse_url(url)?.disable_statement_logging();
        let target = describe(&opts);
        // One direct connection first: the pool retries a refused connection until its timeout
        // and then reports only that it timed out.
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, opts.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(connect_error(&target, &opts, e)),
            Err(_) => {
                return Err(OpenError::Unreachable {
                    target,
                    detail: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
                });
            }
        };
        migrate(&mut conn).await?;
        conn.close().await.map_err(backend)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(opts);
        Ok(Self { pool, target })
    }

    /// `user@host:port/database` (no password), for logs.
    pub fn target(&self) -> &str {
        &self.target
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `url` with its password (if any) replaced by `***`, for error messages.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The last `@` ends the user info even when the password holds a raw `/`, `?` or `:`
    // (over-hiding is fine: this is only ever shown).
    let rest = match rest.rsplit_once('@') {
        Some((userinfo, after)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{after}"),
            None => format!("{userinfo}@{after}"),
        },
        None => rest.to_string(),
    };
    // libpq's `?password=…` too.
    let rest = match rest.split_once('?') {
        Some((head, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{head}?{}", query.join("&"))
        }
        None => rest,
    };
    format!("{scheme}://{rest}")
}

/// Applies the migrations this build knows and the database has not seen, in one transaction
/// holding [`MIGRATION_LOCK`]; a second process opening at the same time waits for it and then
/// finds nothing to do.
async fn migrate(conn: &mut sqlx::PgConnection) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(backend)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    BIGINT      PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?
        .get("v");
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(StoreError::Backend(format!(
            "the database's schema is at version {current}, newer than this fleetfn knows \
             ({known}): run a fleetfn at least as new as the one that last migrated it"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i + 1).unwrap_or(i64::MAX);
        if version <= current {
            continue;
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

fn row_to_record(row: &sqlx::postgres::PgRow) -> Record {
    Record {
        key: row.get("key"),
        revision: row.get("rev"),
        value: row.get("value"),
    }
}

impl Store for PostgresStore {
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
            // No upper bound (NULL) when no string is above every key with the prefix.
            let upper = prefix_end(prefix);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = if inclusive {
                sqlx::query(
                    "SELECT key, rev, value FROM records WHERE tbl = $1 AND key >= $2 \
                     AND ($3::text IS NULL OR key < $3) ORDER BY key LIMIT $4",
                )
            } else {
                sqlx::query(
                    "SELECT key, rev, value FROM records WHERE tbl = $1 AND key > $2 \
                     AND ($3::text IS NULL OR key < $3) ORDER BY key LIMIT $4",
                )
            }
            .bind(table.as_str())
            .bind(lower)
            .bind(upper.as_deref())
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            Ok(rows.iter().map(row_to_record).collect())
        })
    }

    fn count<'a>(&'a self, table: Table, prefix: &'a str) -> BoxFut<'a, Result<usize, StoreError>> {
        Box::pin(async move {
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM records WHERE tbl = $1 AND key >= $2 \
                 AND ($3::text IS NULL OR key < $3)",
            )
            .bind(table.as_str())
            .bind(prefix)
            .bind(prefix_end(prefix).as_deref())
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?
            .get("n");
            Ok(usize::try_from(n).unwrap_or(0))
        })
    }

    fn commit(&self, ops: Vec<Op>) -> BoxFut<'_, Result<Vec<i64>, StoreError>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await.map_err(backend)?;
            match apply(&mut tx, ops).await {
                Ok(revs) => {
                    tx.commit().await.map_err(backend)?;
                    Ok(revs)
                }
                Err(e) => {
                    // A failed rollback leaves sqlx to discard the connection on drop.
                    let _ = tx.rollback().await;
                    Err(e)
                }
            }
        })
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

/// An error of one op: PostgreSQL aborting the transaction for a concurrent one (a deadlock
/// between two batches writing the same rows in different orders) is that batch losing the race.
fn op_error(e: sqlx::Error, table: &'static str, key: &str) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && matches!(
            db.code().as_deref(),
            Some(SERIALIZATION_FAILURE | DEADLOCK_DETECTED)
        )
    {
        return StoreError::Conflict {
            table,
            key: key.to_string(),
        };
    }
    backend(e)
}

/// The operations of one batch inside its transaction; the first conflict or error ends it.
async fn apply(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
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
                // A concurrent insert of the same key makes this wait for that transaction,
                // then do nothing: zero rows, a conflict.
                let done = sqlx::query(
                    "INSERT INTO records (tbl, key, rev, value) VALUES ($1, $2, 1, $3) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(table.as_str())
                .bind(&key)
                .bind(&value)
                .execute(&mut **tx)
                .await
                .map_err(|e| op_error(e, table.as_str(), &key))?;
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
                    "UPDATE records SET rev = rev + 1, value = $1 \
                     WHERE tbl = $2 AND key = $3 AND rev = $4",
                )
                .bind(&value)
                .bind(table.as_str())
                .bind(&key)
                .bind(rev)
                .execute(&mut **tx)
                .await
                .map_err(|e| op_error(e, table.as_str(), &key))?;
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
                        .map_err(|e| op_error(e, table.as_str(), &key))?;
                one_row(done.rows_affected(), table.as_str(), key)?;
                revs.push(0);
            }
            Op::Check {
                table,
                key,
                revision,
            } => {
                // FOR SHARE: a concurrent writer of this row commits first (then this re-reads
                // its revision) or waits until this batch ends (a_takeover_waits_for_…).
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT rev FROM records WHERE tbl = $1 AND key = $2 FOR SHARE",
                )
                .bind(table.as_str())
                .bind(&key)
                .fetch_optional(&mut **tx)
                .await
                .map_err(|e| op_error(e, table.as_str(), &key))?;
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

/// The table name [`StoreError::Conflict`] names for a duplicate item id.
const QUEUE_TABLE: &str = "queue_items";

/// SQLSTATE unique_violation.
const UNIQUE_VIOLATION: &str = "23505";

impl Queue for PostgresStore {
    fn enqueue(&self, item: NewItem) -> BoxFut<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let done = sqlx::query(
                "INSERT INTO queue_items (id, queue, header, body, enqueued_ms, available_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&item.id)
            .bind(&item.queue)
            .bind(&item.header)
            .bind(&item.body)
            .bind(item.enqueued_ms)
            .bind(item.available_ms)
            .execute(&self.pool)
            .await;
            match done {
                Ok(_) => Ok(()),
                Err(sqlx::Error::Database(db))
                    if db.code().as_deref() == Some(UNIQUE_VIOLATION) =>
                {
                    Err(StoreError::Conflict {
                        table: QUEUE_TABLE,
                        key: item.id,
                    })
                }
                Err(e) => Err(backend(e)),
            }
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
            let until = now_ms.saturating_add(lease_ms);
            // SKIP LOCKED: rows a concurrent claim is taking are passed over, never waited for
            // and handed out again; READ COMMITTED re-checks `available_ms` on a row another
            // claim committed meanwhile.
            let rows = sqlx::query(
                "UPDATE queue_items SET claims = claims + 1, token = $1 || '.' || seq::text, \
                 lease_until_ms = $2, available_ms = $2 \
                 WHERE seq IN (SELECT seq FROM queue_items WHERE queue = $3 AND available_ms <= $4 \
                 ORDER BY enqueued_ms, seq LIMIT $5 FOR UPDATE SKIP LOCKED) \
                 RETURNING seq, id, queue, header, body, enqueued_ms, claims, token, lease_until_ms",
            )
            .bind(new_token())
            .bind(until)
            .bind(queue)
            .bind(now_ms)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
            let mut items = rows
                .iter()
                .map(row_to_leased)
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend)?;
            // RETURNING yields rows in no particular order.
            items.sort_by_key(|(seq, item)| (item.enqueued_ms, *seq));
            Ok(items.into_iter().map(|(_, item)| item).collect())
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
                 COUNT(*) FILTER (WHERE token IS NOT NULL AND lease_until_ms > $2) AS leased, \
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

fn row_to_leased(row: &sqlx::postgres::PgRow) -> Result<(i64, Leased), sqlx::Error> {
    let claims: i32 = row.try_get("claims")?;
    let item = Leased {
        id: row.try_get("id")?,
        queue: row.try_get("queue")?,
        header: row.try_get("header")?,
        body: row.try_get("body")?,
        enqueued_ms: row.try_get("enqueued_ms")?,
        claims: u32::try_from(claims).unwrap_or(0),
        token: row.try_get("token")?,
        lease_until_ms: row.try_get("lease_until_ms")?,
    };
    Ok((row.try_get("seq")?, item))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://fleet:s3cret@db.example:5432/fleetfn?sslmode=disable"),
            "postgres://fleet:***@db.example:5432/fleetfn?sslmode=disable"
        );
        assert_eq!(redact("postgres://fleet@db/x"), "postgres://fleet@db/x");
        // A password with raw `/`, `?` or `@`-free tricks, and one in the query.
        for url in [
            "postgres://fleet:pa/ss?w@db:5432/x",
            "postgres://fleet:p:a:s@db/x",
            "postgres://db/x?password=s3cret&sslmode=disable",
            "postgres://fleet@db/x?sslmode=disable&PASSWORD=s3cret",
        ] {
            let shown = redact(url);
            for secret in ["pa/ss", "p:a:s", "s3cret"] {
                assert!(!shown.contains(secret), "{url} -> {shown}");
            }
        }
        assert_eq!(
            redact("postgres:///x?host=/run/pg"),
            "postgres:///x?host=/run/pg"
        );
    }

    #[test]
    fn describe_names_user_host_port_and_database_without_the_password() {
        let opts: PgConnectOptions = "postgres://fleet:s3cret@db.example:6543/state"
            .parse()
            .unwrap();
        assert_eq!(describe(&opts), "fleet@db.example:6543/state");
        let opts: PgConnectOptions = "postgres://fleet@localhost:5433/state?host=/run/pg"
            .parse()
            .unwrap();
        assert_eq!(describe(&opts), "fleet@/run/pg:5433/state");
    }
}
