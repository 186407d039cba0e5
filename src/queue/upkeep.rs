//! Keeping the head of the queue cheap to scan.
//!
//! Every stored run deletes its queue item, and items go in queue order, so the rows deleted
//! since the queue was last vacuumed gather at the start of its `(bucket, priority, id)`
//! index. Each next-item scan starts there and reads every leaf page of those dead entries
//! (marked dead, but removed only by a vacuum): about one page per 200 items handed out.
//! Autovacuum comes for the queue only once a fifth of its rows are dead (80,000 of a
//! 400,000-row queue), so by then an assignment reads hundreds of pages to find its item.
//! The runner therefore vacuums the queue itself after every `every` deletions: in the
//! background, one at a time, never waiting for a lock (`SKIP_LOCKED`), with its index
//! entries removed even when they are few (`INDEX_CLEANUP ON`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;

/// How long one vacuum may take before it is cancelled (a queue of millions of rows takes
/// seconds; this bounds a stuck one).
const VACUUM_TIMEOUT: Duration = Duration::from_secs(600);

/// Counts the queue rows this runner deleted and vacuums the queue every so many.
#[derive(Debug, Clone)]
pub struct QueueUpkeep {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pool: PgPool,
    every: u64,
    deleted: AtomicU64,
    vacuuming: AtomicBool,
    vacuums: AtomicU64,
}

impl QueueUpkeep {
    /// Vacuums the queue in `pool` after every `every` deletions; 0 never does.
    pub fn new(pool: PgPool, every: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                pool,
                every,
                deleted: AtomicU64::new(0),
                vacuuming: AtomicBool::new(false),
                vacuums: AtomicU64::new(0),
            }),
        }
    }

    /// A queue row was deleted (a run stored). Starts a vacuum in the background when this
    /// is the `every`-th since the last one and none is running; returns its task then.
    pub fn deleted_one(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.inner.every;
        if every == 0 {
            return None;
        }
        let deleted = self.inner.deleted.fetch_add(1, Ordering::Relaxed) + 1;
        if deleted < every {
            return None;
        }
        if self
            .inner
            .vacuuming
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        self.inner.deleted.store(0, Ordering::Relaxed);
        let inner = self.inner.clone();
        Some(tokio::spawn(async move {
            let started = Instant::now();
            match tokio::time::timeout(VACUUM_TIMEOUT, vacuum(&inner.pool)).await {
                Ok(Ok(())) => {
                    inner.vacuums.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        elapsed_ms = started.elapsed().as_millis(),
                        after = deleted,
                        "vacuumed the queue"
                    );
                }
                Ok(Err(error)) => tracing::warn!(%error, "could not vacuum the queue"),
                Err(_) => tracing::warn!(
                    timeout_s = VACUUM_TIMEOUT.as_secs(),
                    "vacuuming the queue took too long; cancelled"
                ),
            }
            inner.vacuuming.store(false, Ordering::Release);
        }))
    }

    /// How many vacuums this runner completed.
    pub fn vacuums(&self) -> u64 {
        self.inner.vacuums.load(Ordering::Relaxed)
    }
}

/// `VACUUM` cannot run inside a transaction, so it goes alone, in autocommit. A role that
/// does not own the table gets a warning from PostgreSQL and nothing is done.
async fn vacuum(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON) queue")
        .execute(pool)
        .await
        .map(|_| ())
}
