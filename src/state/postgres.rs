//! The PostgreSQL store: tables `runner_active_run` and `runner_rate_limited_host`. A unique
//! constraint on the queue id makes the claim atomic across processes.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use super::{ActiveRunStore, RunLeases, StoreError, StoredRun};

/// First key of the watchdog's advisory locks (ASCII `jrwd`); the second is the run id's
/// `hashtext`. Two run ids with the same hash share a lock, which only delays one check.
const WATCHDOG_LOCK_CLASS: i32 = 0x6a72_7764;

/// The active-run store in the runner's PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// A store in the database behind `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

/// Whether a claim needs its queue row to be there still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QueueRow {
    /// An assignment's claim: the row must still be queued (see [`insert_claim`]).
    MustRemain,
    /// A registration from outside an assignment (the Python face, tests): any queue id.
    NotChecked,
}

/// The SQLSTATE of `runner_refuse_claim` (migration 10): a claim refused because its queue
/// row is gone.
const CLAIM_REFUSED: &str = "JRQ01";

/// Inserts the claim; the unique queue id makes a second claim fail, even across processes.
/// Outside a transaction the claim commits at once; in one, with it.
///
/// An assignment read its row in an earlier statement (nothing holds the row since): the
/// row may have been claimed, run and stored in between, its claim released with it. So
/// with `QueueRow::MustRemain` the row is locked once the claim is in, which reads its
/// latest committed state: a row deleted since, or being deleted by a finish still in
/// progress (waited for), is `QueueItemGone`, and the statement fails so that its claim does
/// not stay (a caller's transaction is left aborted). The lock comes after the insert so
/// that such a finish (it deletes the row and the earlier claim, on which the insert may be
/// waiting) never waits on this lock in turn. The refusal is the last branch of a CASE,
/// whose branches are taken in order (AND and OR promise none): it only ever follows a claim
/// made and a row found gone.
async fn insert_claim(
    conn: &mut PgConnection,
    id: &str,
    queue_id: i64,
    data: &Value,
    now: NaiveDateTime,
    queue_row: QueueRow,
) -> Result<(), StoreError> {
    let worker = data.get("worker").and_then(Value::as_str);
    let (claimed, holder): (bool, Option<String>) = sqlx::query_as(
        "WITH claim AS (
           INSERT INTO runner_active_run (id, queue_id, worker, data, last_keepalive)
           VALUES ($1, $2, $3, $4::json, $5)
           ON CONFLICT (queue_id) DO NOTHING
           RETURNING queue_id)
         SELECT CASE WHEN NOT EXISTS (SELECT FROM claim) THEN false
                     WHEN NOT $6 THEN true
                     WHEN EXISTS (SELECT FROM queue JOIN claim ON queue.id = claim.queue_id
                                  FOR KEY SHARE OF queue) THEN true
                     ELSE runner_refuse_claim($2)
                END,
                CASE WHEN NOT EXISTS (SELECT FROM claim)
                     THEN (SELECT r.id FROM runner_active_run r WHERE r.queue_id = $2) END",
    )
    .bind(id)
    .bind(queue_id)
    .bind(worker)
    .bind(data.to_string())
    .bind(now)
    .bind(queue_row == QueueRow::MustRemain)
    .fetch_one(&mut *conn)
    .await
    .map_err(|error| match &error {
        sqlx::Error::Database(db) if db.constraint() == Some("runner_active_run_pkey") => {
            StoreError::RunExists(id.to_string())
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some(CLAIM_REFUSED) => {
            StoreError::QueueItemGone(queue_id)
        }
        _ => StoreError::Database(error),
    })?;
    if claimed {
        return Ok(());
    }
    // A claim committed while the statement ran is not in its snapshot: look again.
    let holder = match holder {
        Some(holder) => Some(holder),
        None => {
            sqlx::query_scalar("SELECT id FROM runner_active_run WHERE queue_id = $1")
                .bind(queue_id)
                .fetch_optional(&mut *conn)
                .await?
        }
    };
    match holder {
        Some(run_id) if run_id == id => Err(StoreError::RunExists(run_id)),
        Some(run_id) => Err(StoreError::AlreadyClaimed { queue_id, run_id }),
        // The claim the insert met is released again: still not this run's to take.
        None => Err(StoreError::AlreadyClaimed {
            queue_id,
            run_id: "(a run released since)".to_string(),
        }),
    }
}

/// Deletes the claim; returns the run's stored JSON if it was registered.
async fn delete_claim(conn: &mut PgConnection, id: &str) -> Result<Option<Value>, StoreError> {
    let data: Option<String> =
        sqlx::query_scalar("DELETE FROM runner_active_run WHERE id = $1 RETURNING data::text")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    data.as_deref().map(super::parse_run).transpose()
}

#[async_trait]
impl ActiveRunStore for PostgresStore {
    async fn register_run(
        &self,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_claim(&mut conn, id, queue_id, data, now, QueueRow::NotChecked).await
    }

    async fn register_run_in(
        &self,
        conn: &mut PgConnection,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        insert_claim(conn, id, queue_id, data, now, QueueRow::MustRemain).await
    }

    async fn update_run(&self, id: &str, data: &Value) -> Result<(), StoreError> {
        sqlx::query("UPDATE runner_active_run SET data = $2::json WHERE id = $1")
            .bind(id)
            .bind(data.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_run(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let data: Option<String> =
            sqlx::query_scalar("SELECT data::text FROM runner_active_run WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        data.as_deref().map(super::parse_run).transpose()
    }

    async fn unclaim_run(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        delete_claim(&mut conn, id).await
    }

    async fn unclaim_run_in(
        &self,
        conn: &mut PgConnection,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        delete_claim(conn, id).await
    }

    async fn list_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let rows: Vec<(String, String, Option<NaiveDateTime>)> = sqlx::query_as(
            "SELECT id, data::text, last_keepalive FROM runner_active_run ORDER BY queue_id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, data, last_keepalive)| {
                Ok(StoredRun {
                    id,
                    data: super::parse_run(&data)?,
                    last_keepalive,
                })
            })
            .collect()
    }

    async fn active_run_count(&self) -> Result<usize, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM runner_active_run")
            .fetch_one(&self.pool)
            .await?;
        Ok(usize::try_from(count).unwrap_or_default())
    }

    async fn assigned_queue_ids(&self) -> Result<Vec<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT queue_id FROM runner_active_run")
            .fetch_all(&self.pool)
            .await?)
    }

    fn claims_in_database(&self) -> bool {
        true
    }

    async fn keepalive(&self, id: &str, at: NaiveDateTime) -> Result<(), StoreError> {
        sqlx::query("UPDATE runner_active_run SET last_keepalive = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn last_keepalive(&self, id: &str) -> Result<Option<NaiveDateTime>, StoreError> {
        let at: Option<Option<NaiveDateTime>> =
            sqlx::query_scalar("SELECT last_keepalive FROM runner_active_run WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(at.flatten())
    }

    async fn rate_limit_host(&self, host: &str, until: NaiveDateTime) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO runner_rate_limited_host (host, until) VALUES ($1, $2)
             ON CONFLICT (host) DO UPDATE SET until = EXCLUDED.until",
        )
        .bind(host)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn rate_limited_hosts(
        &self,
        now: NaiveDateTime,
    ) -> Result<Vec<(String, NaiveDateTime)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT host, until FROM runner_rate_limited_host WHERE until > $1 ORDER BY host",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn run_leases(
        &self,
        _holder: &str,
        _ttl: std::time::Duration,
    ) -> Result<Box<dyn RunLeases>, StoreError> {
        let conn = self.pool.acquire().await?;
        Ok(Box::new(AdvisoryLeases {
            conn: tokio::sync::Mutex::new(Some(conn)),
        }))
    }
}

/// Session advisory locks on one connection held for the pass: they end with the session,
/// so a runner process that dies mid-pass frees its runs at once.
struct AdvisoryLeases {
    conn: tokio::sync::Mutex<Option<sqlx::pool::PoolConnection<sqlx::Postgres>>>,
}

impl AdvisoryLeases {
    const TRY_LOCK: &'static str = "SELECT pg_try_advisory_lock($1, hashtext($2))";
    const UNLOCK: &'static str = "SELECT pg_advisory_unlock($1, hashtext($2))";

    async fn call(&self, query: &'static str, id: &str) -> Result<bool, StoreError> {
        let mut guard = self.conn.lock().await;
        let conn = guard.as_mut().ok_or_else(|| {
            StoreError::InvalidData("the run leases lost their database session".into())
        })?;
        let outcome = sqlx::query_scalar(query)
            .bind(WATCHDOG_LOCK_CLASS)
            .bind(id)
            .fetch_one(&mut **conn)
            .await;
        if outcome.is_err() {
            // The session may still hold locks: never hand it back to the pool.
            if let Some(mut conn) = guard.take() {
                conn.close_on_drop();
            }
        }
        Ok(outcome?)
    }
}

#[async_trait]
impl RunLeases for AdvisoryLeases {
    async fn try_acquire(&self, id: &str) -> Result<bool, StoreError> {
        self.call(Self::TRY_LOCK, id).await
    }

    async fn release(&self, id: &str) -> Result<(), StoreError> {
        self.call(Self::UNLOCK, id).await.map(|_| ())
    }

    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.lock().await.take() else {
            return Ok(());
        };
        if let Err(error) = sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *conn)
            .await
        {
            conn.close_on_drop();
            return Err(error.into());
        }
        Ok(())
    }
}

impl Drop for AdvisoryLeases {
    fn drop(&mut self) {
        // Dropped without `finish` (a pass cancelled at shutdown): the locks go with the
        // session.
        if let Some(conn) = self.conn.get_mut().as_mut() {
            conn.close_on_drop();
        }
    }
}
