//! PostgreSQL: the pool, migrations, and the queries, one module per table.

pub mod candidates;
pub mod codebases;
pub mod migrate;
pub mod queue;
pub mod runs;

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub use migrate::{MigrationReport, migrate};

/// Opens a pool. Connection attempts give up after `acquire_timeout` rather than hanging.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await
}

/// The SQLSTATE of a database error, if the error came from the server.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
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

/// SQLSTATE class 53: the server is out of connections, memory or disk.
pub fn is_insufficient_resources(error: &sqlx::Error) -> bool {
    sqlstate(error).is_some_and(|code| code.starts_with("53"))
}
