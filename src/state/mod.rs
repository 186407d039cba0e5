//! The active-run store: which runs are out with workers, which queue items they hold, when
//! each worker was last heard from, and which hosts are rate limited.
//!
//! One trait, three implementations: PostgreSQL (durable, the default without Redis), the
//! mirrored store (PostgreSQL holds the claims, Redis a copy under the Python runner's keys:
//! the default with Redis), and Redis alone (the Python runner's hashes as the source of
//! truth, so a Python runner can share them). Claiming a queue item is atomic in all three.

mod mirrored;
mod postgres;
mod redis;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use serde_json::Value;

pub use self::mirrored::{CHECK_INTERVAL as MIRROR_CHECK_INTERVAL, MirroredStore};
pub use self::postgres::PostgresStore;
pub use self::redis::{RedisKeys, RedisStore};

/// Claimed queue ids, and rate-limited hosts with the end of each block.
pub type ClaimsAndRateLimits = (Vec<i64>, Vec<(String, NaiveDateTime)>);

/// A stored run's JSON, as both stores keep it as text.
pub(crate) fn parse_run(text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::InvalidData(e.to_string()))
}

/// A run as stored: the ActiveRun JSON as last written (so its `current_duration` is stale,
/// as in the Python `/status`), and when its worker was last heard from.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRun {
    /// The run id (also its log id).
    pub id: String,
    /// The ActiveRun JSON as last written.
    pub data: Value,
    /// When the worker was last heard from, if ever.
    pub last_keepalive: Option<NaiveDateTime>,
}

/// Why the active-run store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another run already holds this queue item.
    #[error("queue item {queue_id} is already claimed by run {run_id}")]
    AlreadyClaimed {
        /// The queue item asked for.
        queue_id: i64,
        /// The run that holds it.
        run_id: String,
    },
    /// The queue item is no longer on the queue: a run for it was stored (or the row
    /// deleted) after the assignment chose it.
    #[error("queue item {0} is no longer queued")]
    QueueItemGone(i64),
    /// A run with this id is already registered.
    #[error("run {0} is already registered")]
    RunExists(String),
    /// What the store holds cannot be read (or its run leases were lost).
    #[error("active run data is not valid: {0}")]
    InvalidData(String),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Where the active runs, their claims on queue items, their keep-alives and the rate-limited
/// hosts are kept.
#[async_trait]
pub trait ActiveRunStore: Send + Sync + std::fmt::Debug {
    /// Registers a run and claims its queue item in one atomic step; fails with
    /// `AlreadyClaimed` if another run holds the item. `data` is the ActiveRun JSON.
    async fn register_run(
        &self,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError>;

    /// `register_run` for an assignment, on the connection that read the queue row (by an
    /// earlier statement). The row may have been taken, run and stored by another assigner
    /// since: the claim then fails with `QueueItemGone`, leaving no claim behind, rather than
    /// hand the item out a second time. The stores in the database write through `conn`:
    /// outside a transaction the claim commits at once, needing no second connection; in one,
    /// it commits with it (and a refused claim leaves that transaction aborted).
    async fn register_run_in(
        &self,
        conn: &mut sqlx::PgConnection,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError>;

    /// Replaces the stored JSON of a registered run. Unknown runs are left alone.
    async fn update_run(&self, id: &str, data: &Value) -> Result<(), StoreError>;

    /// The stored JSON of run `id`, `None` if it is not registered.
    async fn get_run(&self, id: &str) -> Result<Option<Value>, StoreError>;

    /// Removes a run and releases its queue item; returns what was stored, if anything.
    async fn unclaim_run(&self, id: &str) -> Result<Option<Value>, StoreError>;

    /// `unclaim_run` as part of the caller's transaction (the finish's, which stores the run),
    /// so the run is never both stored and still registered. Only stores whose claims live in
    /// the database (`claims_in_database`) do it in `conn`; the others ignore it.
    async fn unclaim_run_in(
        &self,
        conn: &mut sqlx::PgConnection,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        let _ = conn;
        self.unclaim_run(id).await
    }

    /// Told that the caller's committed transaction released run `id`'s claim itself (the
    /// statement that stores a finished run does, on the stores in the database), `stored`
    /// being what was registered. A store keeping a copy elsewhere drops the run from it;
    /// the others have nothing left to do.
    fn released_with_run(&self, id: &str, stored: &Value) {
        let _ = (id, stored);
    }

    /// Waits until what this store keeps elsewhere (the mirrored store's Redis copy) has
    /// every change made so far; at once for the others.
    async fn settle(&self) {}

    /// Every registered run.
    async fn list_runs(&self) -> Result<Vec<StoredRun>, StoreError>;

    /// How many runs are registered.
    async fn active_run_count(&self) -> Result<usize, StoreError>;

    /// Queue ids currently held by active runs.
    async fn assigned_queue_ids(&self) -> Result<Vec<i64>, StoreError>;

    /// Whether claims and rate limits live in the runner's own database
    /// (`runner_active_run`, `runner_rate_limited_host`), so queue queries can read them
    /// there rather than be given lists.
    fn claims_in_database(&self) -> bool {
        false
    }

    /// Records that run `id`'s worker was heard from at `at`.
    async fn keepalive(&self, id: &str, at: NaiveDateTime) -> Result<(), StoreError>;

    /// When run `id`'s worker was last heard from; `None` if never, or if the run is unknown.
    async fn last_keepalive(&self, id: &str) -> Result<Option<NaiveDateTime>, StoreError>;

    /// Blocks a host until `until` (a later call replaces the time).
    async fn rate_limit_host(&self, host: &str, until: NaiveDateTime) -> Result<(), StoreError>;

    /// Hosts still blocked at `now`, with the time their block ends.
    async fn rate_limited_hosts(
        &self,
        now: NaiveDateTime,
    ) -> Result<Vec<(String, NaiveDateTime)>, StoreError>;

    /// The queue ids held by active runs and the hosts blocked at `now`, together (in one
    /// round trip where the store can): what an assignment must step around.
    async fn claims_and_rate_limits(
        &self,
        now: NaiveDateTime,
    ) -> Result<ClaimsAndRateLimits, StoreError> {
        Ok((
            self.assigned_queue_ids().await?,
            self.rate_limited_hosts(now).await?,
        ))
    }

    /// Run leases for one watchdog pass of the process `holder`. A lease that its holder
    /// does not release ends by itself: at `ttl` (Redis), or when the holder's database
    /// session ends (PostgreSQL advisory locks).
    async fn run_leases(
        &self,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Box<dyn RunLeases>, StoreError>;
}

/// Leases on runs, so that of several runner processes only one checks (and perhaps aborts)
/// a given run at a time.
#[async_trait]
pub trait RunLeases: Send + Sync {
    /// Takes the lease on run `id`; false when another process holds it.
    async fn try_acquire(&self, id: &str) -> Result<bool, StoreError>;

    /// Gives the lease on run `id` back (only if this holder has it).
    async fn release(&self, id: &str) -> Result<(), StoreError>;

    /// Gives back every lease still held; the end of a pass.
    async fn finish(self: Box<Self>) -> Result<(), StoreError>;
}

/// The queue id recorded inside stored ActiveRun JSON.
fn queue_id_of(data: &Value) -> Result<i64, StoreError> {
    data.get("queue_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| StoreError::InvalidData("queue_id missing".to_string()))
}
