//! Queue positions from memory: the queue in (bucket, priority, id) order with running sums of the
//! estimated durations, so a position lookup is a hash probe instead of counting the rows ahead
//! (which, on a long queue, means reading most of an index).
//!
//! The snapshot is only used while it is exact. Every statement that changes the queue bumps the
//! sequence `runner_queue_version` (a trigger, migration 4), so a lookup reads that one value and
//! compares. A stale snapshot answers nothing: the lookup falls back to the SQL count, and a fresh
//! snapshot is built in the background (one at a time, at most once per [`MIN_REBUILD_INTERVAL`] or
//! ten times the last rebuild's duration, whichever is longer). A snapshot is built only when no
//! queue writer is between its change and its commit (writers hold a shared advisory lock until
//! they commit; the builder try-locks it exclusively), so the version it records covers exactly the
//! rows it read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgPool};

use crate::db;

/// How often a stale snapshot may be rebuilt at most; between rebuilds lookups use SQL.
pub const MIN_REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// A rebuild may take at most this share of the time (the wait after one is this many times
/// its duration), so a queue that changes all the time costs a bounded amount of rebuilding.
const REBUILD_COST_FACTOR: u32 = 10;

/// (codebase, campaign, estimated duration in µs), in queue order.
type QueueRow = (String, String, Option<i64>);

/// One exact picture of the queue.
#[derive(Debug, Default)]
struct Snapshot {
    version: i64,
    /// (codebase, campaign) → the 1-based position of its first row and the wait ahead.
    positions: HashMap<(String, String), (i64, Option<f64>)>,
}

#[derive(Debug, Default)]
struct Inner {
    snapshot: Option<Arc<Snapshot>>,
    rebuilding: bool,
    /// When the last rebuild finished, and how long it took.
    last_rebuild: Option<(Instant, Duration)>,
}

/// Cached queue positions; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct QueuePositions {
    inner: Arc<Mutex<Inner>>,
}

impl QueuePositions {
    /// An empty cache; lookups fill it in the background.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same answer as [`db::queue::position`] (and the `queue_positions` view): the
    /// 1-based position of the first row for (codebase, campaign) and the seconds of
    /// estimated work ahead of it.
    pub async fn lookup(
        &self,
        pool: &PgPool,
        codebase: &str,
        campaign: &str,
    ) -> Result<Option<(i64, Option<f64>)>, sqlx::Error> {
        let current = db::queue::version(pool).await?;
        let snapshot = self.lock().snapshot.clone();
        if let Some(snapshot) = snapshot.filter(|s| s.version == current) {
            return Ok(snapshot
                .positions
                .get(&(codebase.to_string(), campaign.to_string()))
                .copied());
        }
        self.refresh_in_background(pool);
        db::queue::position(pool, codebase, campaign).await
    }

    /// Builds a snapshot now (when no queue writer is mid-transaction) and keeps it.
    /// Returns whether one was built.
    pub async fn rebuild(&self, pool: &PgPool) -> Result<bool, sqlx::Error> {
        let started = Instant::now();
        let built = build_snapshot(pool).await;
        let mut inner = self.lock();
        inner.last_rebuild = Some((Instant::now(), started.elapsed()));
        let built = built?;
        match built {
            Some(snapshot) => {
                inner.snapshot = Some(Arc::new(snapshot));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn refresh_in_background(&self, pool: &PgPool) {
        {
            let mut inner = self.lock();
            let recent = inner.last_rebuild.is_some_and(|(at, took)| {
                at.elapsed() < MIN_REBUILD_INTERVAL.max(took * REBUILD_COST_FACTOR)
            });
            if inner.rebuilding || recent {
                return;
            }
            inner.rebuilding = true;
        }
        let this = self.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            if let Err(error) = this.rebuild(&pool).await {
                tracing::warn!(%error, "could not rebuild the queue position snapshot");
            }
            this.lock().rebuilding = false;
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The data is replaced whole, never left half-written, so a poisoned lock is usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads the version and the queue in one snapshot, taken while no writer holds an
/// uncommitted change; `None` if some writer does.
async fn build_snapshot(pool: &PgPool) -> Result<Option<Snapshot>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    if !db::queue::try_lock_writers(&mut conn).await? {
        return Ok(None);
    }
    let result = async {
        let mut tx = conn.begin().await?;
        db::queue::snapshot_isolation(&mut tx).await?;
        // The first read fixes the transaction's snapshot; writers wait for the lock only
        // until it is released just after.
        let version = db::queue::version(&mut *tx).await?;
        db::queue::unlock_writers(&mut tx).await?;
        let rows = db::queue::run_order(&mut tx).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(Snapshot {
            version,
            positions: positions(rows),
        })
    }
    .await;
    if result.is_err() {
        // Never leave the lock held on a pooled connection (a no-op if already released).
        let _ = db::queue::unlock_writers(&mut conn).await;
    }
    result.map(Some)
}

/// Positions as the `queue_positions` view numbers them: rows in (bucket, priority, id)
/// order, the wait the sum of the known durations ahead (NULL when nothing ahead has one and
/// the row has none either, as `coalesce(sum, CASE ...)` in the SQL path).
fn positions(rows: Vec<QueueRow>) -> HashMap<(String, String), (i64, Option<f64>)> {
    let mut positions = HashMap::with_capacity(rows.len());
    let mut ahead: Option<i128> = None;
    for (index, (codebase, campaign, micros)) in rows.into_iter().enumerate() {
        let wait = match (ahead, micros) {
            (Some(total), _) => Some(seconds(total)),
            (None, Some(_)) => Some(0.0),
            (None, None) => None,
        };
        positions
            .entry((codebase, campaign))
            .or_insert((index as i64 + 1, wait));
        if let Some(micros) = micros {
            ahead = Some(ahead.unwrap_or(0) + i128::from(micros));
        }
    }
    positions
}

/// Microseconds as PostgreSQL's `extract(epoch FROM interval)::float8` gives seconds: the
/// exact decimal, rounded once to the nearest double.
fn seconds(micros: i128) -> f64 {
    // Exact below 2^53 µs (285 years of queued work), so the division rounds once.
    micros as f64 / 1e6
}
