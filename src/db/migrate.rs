//! Schema migrations, for fresh databases and for adopting an existing Janitor database.
//!
//! An existing database already holds the upstream schema but has never seen our migration
//! table. Running our first migrations there would fail (the types exist) or, worse, replace
//! views. So before migrating, under an advisory lock, the upstream parts that are present are
//! recorded as applied without running them; only the runner's additive migrations then run.

use sqlx::migrate::Migrator;
use sqlx::{Connection, PgPool};

/// Our own bookkeeping table; every table the runner adds starts with `runner_`.
pub const MIGRATIONS_TABLE: &str = "runner_schema_migrations";

/// Migrations that create the upstream schema, and the table whose presence shows that an
/// existing database already has what they would create.
const UPSTREAM_PARTS: [(i64, &str); 2] =
    [(20260101000001, "run"), (20260101000002, "debian_build")];

// Serialises start-up of several runner processes against one database.
const ADOPTION_LOCK_KEY: i64 = 0x6a61_6e69_746f_7201;

/// What `migrate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Upstream migrations recognised as already present and recorded without running.
    pub adopted: Vec<i64>,
}

/// The runner's migrations (`migrations/`, embedded at build time), recorded in
/// [`MIGRATIONS_TABLE`].
pub fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
    migrator
}

/// Brings the database up to date, adopting an existing Janitor schema if there is one.
pub async fn migrate(pool: &PgPool) -> Result<MigrationReport, sqlx::migrate::MigrateError> {
    let migrator = migrator();
    let mut conn = pool.acquire().await?;
    // Polled rather than waited for: a session blocked in `pg_advisory_lock` keeps its
    // statement's transaction open, and `CREATE INDEX CONCURRENTLY` in the holder's migration
    // waits for every open transaction, so two runners starting together would deadlock.
    while !sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
        .bind(ADOPTION_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?
    {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let outcome = adopt_and_run(&migrator, &mut conn).await;
    let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(ADOPTION_LOCK_KEY)
        .execute(&mut *conn)
        .await;
    let report = outcome?;
    unlock?;
    Ok(report)
}

async fn adopt_and_run(
    migrator: &Migrator,
    conn: &mut sqlx::PgConnection,
) -> Result<MigrationReport, sqlx::migrate::MigrateError> {
    let mut report = MigrationReport::default();
    let bookkeeping_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(&mut *conn)
        .await?;
    if !bookkeeping_exists {
        for (version, marker_table) in UPSTREAM_PARTS {
            let present: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(format!("public.{marker_table}"))
                .fetch_one(&mut *conn)
                .await?;
            if !present {
                break;
            }
            record_as_applied(migrator, conn, version).await?;
            report.adopted.push(version);
        }
        if !report.adopted.is_empty() {
            tracing::info!(versions = ?report.adopted, "adopted an existing Janitor schema");
        }
    }
    migrator.run_direct(None, conn, false).await?;
    Ok(report)
}

async fn record_as_applied(
    migrator: &Migrator,
    conn: &mut sqlx::PgConnection,
    version: i64,
) -> Result<(), sqlx::migrate::MigrateError> {
    let migration = migrator
        .iter()
        .find(|m| m.version == version)
        .ok_or(sqlx::migrate::MigrateError::VersionMissing(version))?;
    let mut tx = conn.begin().await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
            success BOOLEAN NOT NULL,
            checksum BYTEA NOT NULL,
            execution_time BIGINT NOT NULL)"
    )))
    .execute(&mut *tx)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {MIGRATIONS_TABLE} (version, description, success, checksum, execution_time)
         VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING"
    )))
    .bind(migration.version)
    .bind(format!("{} (adopted)", migration.description))
    .bind(migration.checksum.as_ref())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
