//! PostgreSQL: the pool, migrations, and the queries, one module per table.

pub mod candidates;
pub mod codebases;
pub mod debian_versions;
pub mod load_fixture;
pub mod migrate;
pub mod publish_policies;
pub mod queue;
pub mod reviews;
pub mod run_history;
pub mod runs;
pub mod warm;
pub mod workers;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub use migrate::{MigrationReport, migrate};

/// How long a request waits for a working connection. A PostgreSQL that is down refuses at
/// once, but one that is frozen or unreachable (a host gone, a network partition) leaves the
/// health check of a pooled connection hanging: past this, the request answers 503 and the
/// worker retries, rather than holding its connection (and the worker) for half a minute.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(4);

/// Opens a pool. Connection attempts give up after [`ACQUIRE_TIMEOUT`] rather than hanging.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    pool_options(max_connections).connect(url).await
}

/// A pool that connects on first use, so a server can start while the database is down.
pub fn connect_lazy(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    pool_options(max_connections).connect_lazy(url)
}

/// A pooled connection idle for less than this is handed out without a health check: the
/// pool checked it when it came back (sqlx pings every connection it takes back; those
/// [`warm`] hands on had their statements succeed), so only a connection the server dropped
/// within this time (a restart, a terminated backend) reaches a request broken, and that
/// request answers 503.
pub const UNCHECKED_IDLE: Duration = Duration::from_millis(100);

/// The pool's settings: at most `max_connections`, [`ACQUIRE_TIMEOUT`], and a health check
/// (a round trip) only for connections idle for [`UNCHECKED_IDLE`] or longer. sqlx's default
/// checks every connection it hands out, on top of the check when it takes one back: two
/// round trips per use, most of them on connections used a millisecond earlier.
fn pool_options(max_connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= UNCHECKED_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// A pool for a state that has no database (the Python face's processor on Redis alone): it
/// points at a socket that cannot exist and is never used while the state says the database
/// is absent.
pub fn absent_pool() -> PgPool {
    let nowhere = sqlx::postgres::PgConnectOptions::new_without_pgpass()
        .socket("/nonexistent/janitor-runner/no-database");
    PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(nowhere)
}

/// The SQLSTATE of a database error, if the error came from the server.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(std::borrow::Cow::into_owned),
        _ => None,
    }
}

/// The constraint a database error names, if any.
pub fn constraint(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.constraint().map(str::to_string),
        _ => None,
    }
}

/// Naming the constraint violations a caller can explain: `.on_constraint(|name| ...)` turns
/// the violation of a named constraint into the caller's error, every other error through
/// `From`.
pub trait ConstraintExt<T> {
    /// The error `explain` gives for a violated constraint it names, else the error through
    /// `From`.
    fn on_constraint<E: From<sqlx::Error>>(
        self,
        explain: impl FnOnce(&str) -> Option<E>,
    ) -> Result<T, E>;
}

impl<T> ConstraintExt<T> for Result<T, sqlx::Error> {
    fn on_constraint<E: From<sqlx::Error>>(
        self,
        explain: impl FnOnce(&str) -> Option<E>,
    ) -> Result<T, E> {
        self.map_err(|error| {
            constraint(&error)
                .and_then(|name| explain(&name))
                .unwrap_or_else(|| E::from(error))
        })
    }
}

/// SQLSTATE class 22, data exception: a value the server refuses, such as a NUL byte in text
/// (22021) or a `\u0000` in jsonb (22P05).
pub fn is_invalid_input(error: &sqlx::Error) -> bool {
    sqlstate(error).is_some_and(|code| code.starts_with("22"))
}

/// The server cannot be reached or is going away: no connection within the acquire timeout,
/// a broken socket, SQLSTATE class 08 (connection exception), or 57P01-57P03 (the server is
/// shutting down or starting up, as during a restart). Retrying later can succeed.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        _ => sqlstate(error).is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_str(), "57P01" | "57P02" | "57P03")
        }),
    }
}

/// SQLSTATE class 53: the server is out of connections, memory or disk.
pub fn is_insufficient_resources(error: &sqlx::Error) -> bool {
    sqlstate(error).is_some_and(|code| code.starts_with("53"))
}
