//! PostgreSQL holds the claims, Redis holds a copy for the readers that expect the Python
//! runner's keys (the site, the publisher, dashboards).
//!
//! Every answer comes from PostgreSQL, so a Redis restart (this deployment's Redis keeps
//! nothing on disk) or a Redis outage loses no claim and hands no item out twice. Writes
//! reach Redis from one background task per process, in the order this process made them,
//! off the request path. The same task reconciles the whole copy with PostgreSQL: at once
//! when Redis comes back empty (the marker key is gone) or a mirror write failed, and every
//! 10 s in any case, since two processes' writes to the copy can arrive out of order and a
//! killed process loses the writes it had queued.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use redis::aio::ConnectionManager;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::{ActiveRunStore, PostgresStore, RedisKeys, RunLeases, StoreError, StoredRun};
use crate::clock::Clock;
use crate::time::isoformat;

/// Mirror writes waiting for Redis; past this many the copy is marked stale and rebuilt by
/// the next reconciliation instead.
const QUEUED_WRITES: usize = 10_000;

/// How often the task checks whether Redis lost the copy.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// Checks between two unconditional reconciliations (10 s): a process killed with mirror
/// writes still queued leaves runs in the copy that are gone, until the second
/// reconciliation of another process after the kill removes them.
const CHECKS_PER_RECONCILE: u32 = 5;

enum MirrorWrite {
    Register {
        id: String,
        queue_id: i64,
        data: String,
        keepalive: String,
    },
    Update {
        id: String,
        data: String,
    },
    Remove {
        id: String,
        queue_id: i64,
    },
    Keepalive {
        id: String,
        at: String,
    },
    RateLimit {
        host: String,
        until: String,
    },
    /// Answered once every earlier write was tried, and the copy reconciled.
    Flush(oneshot::Sender<()>),
}

/// PostgreSQL as the source of truth, Redis as the Python runner's view of it.
#[derive(Clone)]
pub struct MirroredStore {
    truth: PostgresStore,
    writes: mpsc::Sender<MirrorWrite>,
    stale: Arc<AtomicBool>,
}

impl std::fmt::Debug for MirroredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroredStore").finish_non_exhaustive()
    }
}

impl MirroredStore {
    /// Starts the mirror task; it ends when the last clone of the store is dropped.
    pub fn spawn(
        truth: PostgresStore,
        conn: ConnectionManager,
        keys: RedisKeys,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (writes, received) = mpsc::channel(QUEUED_WRITES);
        let stale = Arc::new(AtomicBool::new(true));
        let task = MirrorTask {
            truth: truth.clone(),
            conn,
            keys,
            clock,
            stale: stale.clone(),
            orphans: HashSet::new(),
        };
        tokio::spawn(task.run(received));
        Self {
            truth,
            writes,
            stale,
        }
    }

    /// Waits until every write made so far reached Redis (or failed) and the copy was
    /// reconciled with PostgreSQL.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.writes.send(MirrorWrite::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    fn mirror_removal(&self, id: &str, removed: Option<&Value>) {
        if let Some(queue_id) = removed
            .and_then(|data| data.get("queue_id"))
            .and_then(Value::as_i64)
        {
            self.mirror(MirrorWrite::Remove {
                id: id.to_string(),
                queue_id,
            });
        }
    }

    fn mirror(&self, write: MirrorWrite) {
        if self.writes.try_send(write).is_err() {
            self.stale.store(true, Ordering::Relaxed);
        }
    }
}

#[async_trait]
impl ActiveRunStore for MirroredStore {
    async fn register_run(
        &self,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        self.truth.register_run(id, queue_id, data, now).await?;
        self.mirror(register_write(id, queue_id, data, now));
        Ok(())
    }

    async fn register_run_in(
        &self,
        conn: &mut sqlx::PgConnection,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        self.truth
            .register_run_in(conn, id, queue_id, data, now)
            .await?;
        // In a caller's transaction the claim commits later, with it; a copy written before
        // that commit shows a run that may still roll back. The reconciliation removes it then.
        self.mirror(register_write(id, queue_id, data, now));
        Ok(())
    }

    async fn update_run(&self, id: &str, data: &Value) -> Result<(), StoreError> {
        self.truth.update_run(id, data).await?;
        self.mirror(MirrorWrite::Update {
            id: id.to_string(),
            data: data.to_string(),
        });
        Ok(())
    }

    async fn get_run(&self, id: &str) -> Result<Option<Value>, StoreError> {
        self.truth.get_run(id).await
    }

    async fn unclaim_run(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let removed = self.truth.unclaim_run(id).await?;
        self.mirror_removal(id, removed.as_ref());
        Ok(removed)
    }

    async fn unclaim_run_in(
        &self,
        conn: &mut sqlx::PgConnection,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        // Written to the copy before the caller commits; a rollback leaves the copy short of
        // a run PostgreSQL still has until the next reconciliation puts it back.
        let removed = self.truth.unclaim_run_in(conn, id).await?;
        self.mirror_removal(id, removed.as_ref());
        Ok(removed)
    }

    fn released_with_run(&self, id: &str, stored: &Value) {
        self.mirror_removal(id, Some(stored));
    }

    async fn settle(&self) {
        self.flush().await;
    }

    async fn list_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        self.truth.list_runs().await
    }

    async fn active_run_count(&self) -> Result<usize, StoreError> {
        self.truth.active_run_count().await
    }

    async fn assigned_queue_ids(&self) -> Result<Vec<i64>, StoreError> {
        self.truth.assigned_queue_ids().await
    }

    fn claims_in_database(&self) -> bool {
        true
    }

    async fn keepalive(&self, id: &str, at: NaiveDateTime) -> Result<(), StoreError> {
        self.truth.keepalive(id, at).await?;
        self.mirror(MirrorWrite::Keepalive {
            id: id.to_string(),
            at: isoformat(&at),
        });
        Ok(())
    }

    async fn last_keepalive(&self, id: &str) -> Result<Option<NaiveDateTime>, StoreError> {
        self.truth.last_keepalive(id).await
    }

    async fn rate_limit_host(&self, host: &str, until: NaiveDateTime) -> Result<(), StoreError> {
        self.truth.rate_limit_host(host, until).await?;
        self.mirror(MirrorWrite::RateLimit {
            host: host.to_string(),
            until: isoformat(&until),
        });
        Ok(())
    }

    async fn rate_limited_hosts(
        &self,
        now: NaiveDateTime,
    ) -> Result<Vec<(String, NaiveDateTime)>, StoreError> {
        self.truth.rate_limited_hosts(now).await
    }

    async fn run_leases(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Box<dyn RunLeases>, StoreError> {
        self.truth.run_leases(holder, ttl).await
    }
}

fn register_write(id: &str, queue_id: i64, data: &Value, now: NaiveDateTime) -> MirrorWrite {
    MirrorWrite::Register {
        id: id.to_string(),
        queue_id,
        data: data.to_string(),
        keepalive: isoformat(&now),
    }
}

/// The one writer of this process's copy.
struct MirrorTask {
    truth: PostgresStore,
    conn: ConnectionManager,
    keys: RedisKeys,
    clock: Arc<dyn Clock>,
    stale: Arc<AtomicBool>,
    /// Runs the copy showed and PostgreSQL did not at the last reconciliation.
    orphans: HashSet<String>,
}

impl MirrorTask {
    async fn run(mut self, mut received: mpsc::Receiver<MirrorWrite>) {
        let mut checks = tokio::time::interval(CHECK_INTERVAL);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_reconcile = 0u32;
        loop {
            tokio::select! {
                write = received.recv() => match write {
                    None => return,
                    Some(MirrorWrite::Flush(done)) => {
                        self.reconcile_logged().await;
                        since_reconcile = 0;
                        let _ = done.send(());
                    }
                    Some(write) => {
                        if let Err(error) = self.apply(write).await {
                            tracing::warn!(%error, "could not update the Redis copy of the active runs; it will be rebuilt");
                            self.stale.store(true, Ordering::Relaxed);
                        }
                    }
                },
                _ = checks.tick() => {
                    since_reconcile += 1;
                    if since_reconcile >= CHECKS_PER_RECONCILE || self.needs_reconcile().await {
                        self.reconcile_logged().await;
                        since_reconcile = 0;
                    }
                }
            }
        }
    }

    async fn needs_reconcile(&mut self) -> bool {
        if self.stale.load(Ordering::Relaxed) {
            return true;
        }
        let marker: Result<bool, _> = redis::cmd("EXISTS")
            .arg(&self.keys.mirror_marker)
            .query_async(&mut self.conn)
            .await;
        if let Ok(present) = marker {
            !present
        } else {
            self.stale.store(true, Ordering::Relaxed);
            true
        }
    }

    async fn reconcile_logged(&mut self) {
        let was_stale = self.stale.swap(false, Ordering::Relaxed);
        match self.reconcile().await {
            Ok(0) => {}
            Ok(changes) => {
                tracing::info!(
                    changes,
                    was_stale,
                    "rebuilt the Redis copy of the active runs"
                );
            }
            Err(error) => {
                self.stale.store(true, Ordering::Relaxed);
                tracing::debug!(%error, "could not reconcile the Redis copy of the active runs");
            }
        }
    }

    async fn apply(&mut self, write: MirrorWrite) -> Result<(), StoreError> {
        let keys = &self.keys;
        let mut pipe = redis::pipe();
        pipe.atomic();
        match write {
            MirrorWrite::Register {
                id,
                queue_id,
                data,
                keepalive,
            } => {
                pipe.hset(&keys.active_runs, &id, data)
                    .hset(&keys.assigned_queue_items, queue_id.to_string(), &id)
                    .hset(&keys.last_keepalive, &id, keepalive);
            }
            MirrorWrite::Update { id, data } => {
                // Only a run the copy still shows: a late update must not bring one back.
                let _: i64 = super::redis::UPDATE
                    .key(&keys.active_runs)
                    .arg(&id)
                    .arg(data)
                    .invoke_async(&mut self.conn)
                    .await?;
                return Ok(());
            }
            MirrorWrite::Keepalive { id, at } => {
                let _: i64 = super::redis::UPDATE
                    .key(&keys.last_keepalive)
                    .arg(&id)
                    .arg(at)
                    .invoke_async(&mut self.conn)
                    .await?;
                return Ok(());
            }
            MirrorWrite::Remove { id, queue_id } => {
                let _: i64 = REMOVE
                    .key(&keys.active_runs)
                    .key(&keys.assigned_queue_items)
                    .key(&keys.last_keepalive)
                    .arg(&id)
                    .arg(queue_id.to_string())
                    .invoke_async(&mut self.conn)
                    .await?;
                return Ok(());
            }
            MirrorWrite::RateLimit { host, until } => {
                pipe.hset(&keys.rate_limit_hosts, host, until);
            }
            MirrorWrite::Flush(done) => {
                let _ = done.send(());
                return Ok(());
            }
        }
        let _: () = pipe.query_async(&mut self.conn).await?;
        Ok(())
    }

    /// Makes the copy equal to PostgreSQL; returns how many fields it changed.
    ///
    /// A run the copy shows and PostgreSQL does not is removed only when the previous
    /// reconciliation saw it missing too: its registration may be in a transaction that has
    /// not committed yet (the copy is written before the assignment commits).
    async fn reconcile(&mut self) -> Result<usize, StoreError> {
        type Hash = HashMap<String, String>;
        let keys = self.keys.clone();
        let (copied_runs, copied_claims, copied_keepalives, copied_limits): (
            Hash,
            Hash,
            Hash,
            Hash,
        ) = redis::pipe()
            .hgetall(&keys.active_runs)
            .hgetall(&keys.assigned_queue_items)
            .hgetall(&keys.last_keepalive)
            .hgetall(&keys.rate_limit_hosts)
            .query_async(&mut self.conn)
            .await?;
        let runs = self.truth.list_runs().await?;
        let limits = self.truth.rate_limited_hosts(self.clock.now()).await?;

        let mut pipe = redis::pipe();
        pipe.atomic();
        let mut changes = 0usize;
        let mut held: HashMap<&str, String> = HashMap::with_capacity(runs.len());
        for run in &runs {
            let queue_id = super::queue_id_of(&run.data)?.to_string();
            let same_data = copied_runs
                .get(&run.id)
                .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
                .is_some_and(|copied| copied == run.data);
            if !same_data {
                pipe.hset(&keys.active_runs, &run.id, run.data.to_string());
                changes += 1;
            }
            if copied_claims.get(&queue_id) != Some(&run.id) {
                pipe.hset(&keys.assigned_queue_items, &queue_id, &run.id);
                changes += 1;
            }
            if let Some(at) = run.last_keepalive.as_ref().map(isoformat)
                && copied_keepalives.get(&run.id) != Some(&at)
            {
                pipe.hset(&keys.last_keepalive, &run.id, at);
                changes += 1;
            }
            held.insert(run.id.as_str(), queue_id);
        }
        let orphans: HashSet<String> = copied_runs
            .keys()
            .chain(copied_keepalives.keys())
            .chain(copied_claims.values())
            .filter(|id| !held.contains_key(id.as_str()))
            .cloned()
            .collect();
        for id in orphans.intersection(&self.orphans) {
            pipe.hdel(&keys.active_runs, id)
                .hdel(&keys.last_keepalive, id);
            changes += 1;
        }
        for (queue_id, id) in &copied_claims {
            let stale = match held.get(id.as_str()) {
                Some(held_queue_id) => held_queue_id != queue_id,
                None => self.orphans.contains(id),
            };
            if stale {
                pipe.hdel(&keys.assigned_queue_items, queue_id);
                changes += 1;
            }
        }
        for (host, until) in &limits {
            let until = isoformat(until);
            if copied_limits.get(host) != Some(&until) {
                pipe.hset(&keys.rate_limit_hosts, host, until);
                changes += 1;
            }
        }
        pipe.set(&keys.mirror_marker, "1");
        let _: () = pipe.query_async(&mut self.conn).await?;
        self.orphans = orphans;
        Ok(changes)
    }
}

// Removes a run and its claim, leaving a claim another run has taken since.
static REMOVE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
            redis.call('HDEL', KEYS[2], ARGV[2])
        end
        redis.call('HDEL', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[3], ARGV[1])
        return 0
        ",
    )
});
