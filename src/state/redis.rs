//! The Redis store: the Python runner's hashes `active-runs`, `assigned-queue-items`,
//! `last-keepalive` and `rate-limit-hosts`, with the same field and value encodings.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::NaiveDateTime;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde_json::Value;

use super::{ActiveRunStore, ClaimsAndRateLimits, RunLeases, StoreError, StoredRun, queue_id_of};
use crate::time::{isoformat, parse_timestamp};

/// Key names. The defaults are the Python runner's; a prefix keeps several instances (or
/// test runs) apart on one server.
#[derive(Debug, Clone)]
pub struct RedisKeys {
    /// The hash of active runs: run id to the run's JSON.
    pub active_runs: String,
    /// The hash of claims: queue id to the run id holding it.
    pub assigned_queue_items: String,
    /// The hash of keep-alives: run id to the time of its last one.
    pub last_keepalive: String,
    /// The hash of rate-limited hosts: host to the end of its block.
    pub rate_limit_hosts: String,
    /// Before a run id: the watchdog's lease on that run (not a Python key).
    pub watchdog_lease: String,
    /// Present while the mirror of a PostgreSQL-backed runner is complete (not a Python key):
    /// a Redis that restarted empty lacks it.
    pub mirror_marker: String,
}

impl RedisKeys {
    /// The Python runner's key names behind `prefix` (empty for the names themselves).
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            active_runs: format!("{prefix}active-runs"),
            assigned_queue_items: format!("{prefix}assigned-queue-items"),
            last_keepalive: format!("{prefix}last-keepalive"),
            rate_limit_hosts: format!("{prefix}rate-limit-hosts"),
            watchdog_lease: format!("{prefix}watchdog-lease:"),
            mirror_marker: format!("{prefix}janitor-runner-mirror"),
        }
    }
}

impl Default for RedisKeys {
    fn default() -> Self {
        Self::with_prefix("")
    }
}

// Claim and register in one step: HSETNX makes the claim, and only the winner writes the run.
static REGISTER: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then
            return redis.call('HGET', KEYS[2], ARGV[2])
        end
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
        redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
        return false
        ",
    )
});

// Rewrite a run only while it is still registered, so a late update cannot resurrect it.
pub(super) static UPDATE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
            redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        end
        return 0
        ",
    )
});

// Remove a run in one round trip, its queue id read from its own JSON; release only our own
// claim: a late unclaim must not free an item another run now holds. A run whose JSON has no
// integer queue id is left in place and returned as 'invalid'.
static UNCLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local data = redis.call('HGET', KEYS[1], ARGV[1])
        if not data or data == '' then
            return false
        end
        local ok, run = pcall(cjson.decode, data)
        if not ok or type(run) ~= 'table' or type(run['queue_id']) ~= 'number'
            or run['queue_id'] % 1 ~= 0 then
            return {'invalid', data}
        end
        local queue_id = string.format('%d', run['queue_id'])
        if redis.call('HGET', KEYS[2], queue_id) == ARGV[1] then
            redis.call('HDEL', KEYS[2], queue_id)
        end
        redis.call('HDEL', KEYS[1], ARGV[1])
        redis.call('HDEL', KEYS[3], ARGV[1])
        return {'removed', data}
        ",
    )
});

// A keep-alive only for a run that is still registered, so a ping answered after the run
// finished leaves nothing behind.
static KEEPALIVE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
            redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
        end
        return 0
        ",
    )
});

// Give a lease back only if it is still ours (it may have expired and been taken since).
static RELEASE_LEASE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            redis.call('DEL', KEYS[1])
        end
        return 0
        ",
    )
});

/// The active runs and claims kept in Redis alone, as the Python runner keeps them.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    keys: RedisKeys,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("keys", &self.keys)
            .finish()
    }
}

impl RedisStore {
    /// A store on this connection, under these keys.
    pub fn new(conn: ConnectionManager, keys: RedisKeys) -> Self {
        Self { conn, keys }
    }
}

#[async_trait]
impl ActiveRunStore for RedisStore {
    async fn register_run(
        &self,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let holder: Option<String> = REGISTER
            .key(&self.keys.active_runs)
            .key(&self.keys.assigned_queue_items)
            .key(&self.keys.last_keepalive)
            .arg(id)
            .arg(queue_id.to_string())
            .arg(data.to_string())
            .arg(isoformat(&now))
            .invoke_async(&mut conn)
            .await?;
        match holder {
            None => Ok(()),
            Some(run_id) => Err(StoreError::AlreadyClaimed { queue_id, run_id }),
        }
    }

    async fn register_run_in(
        &self,
        conn: &mut sqlx::PgConnection,
        id: &str,
        queue_id: i64,
        data: &Value,
        now: NaiveDateTime,
    ) -> Result<(), StoreError> {
        self.register_run(id, queue_id, data, now).await?;
        // Every path that deletes a claimed row commits the deletion before it releases the
        // claim here (a finish stores its run, then unclaims). So once this claim is in, a
        // fresh read shows whether an earlier holder's run was stored since the row was
        // chosen; a statement of its own, in READ COMMITTED, takes that fresh snapshot.
        let queued = sqlx::query_scalar("SELECT EXISTS (SELECT FROM queue WHERE id = $1)")
            .bind(queue_id)
            .fetch_one(&mut *conn)
            .await;
        match queued {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.unclaim_run(id).await?;
                Err(StoreError::QueueItemGone(queue_id))
            }
            Err(error) => {
                // No claim is left behind an assignment that fails.
                self.unclaim_run(id).await?;
                Err(StoreError::Database(error))
            }
        }
    }

    async fn update_run(&self, id: &str, data: &Value) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = UPDATE
            .key(&self.keys.active_runs)
            .arg(id)
            .arg(data.to_string())
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn get_run(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn.hget(&self.keys.active_runs, id).await?;
        raw.filter(|r| !r.is_empty())
            .map(|r| super::parse_run(&r))
            .transpose()
    }

    async fn unclaim_run(&self, id: &str) -> Result<Option<Value>, StoreError> {
        let mut conn = self.conn.clone();
        let removed: Option<(String, String)> = UNCLAIM
            .key(&self.keys.active_runs)
            .key(&self.keys.assigned_queue_items)
            .key(&self.keys.last_keepalive)
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        let Some((outcome, raw)) = removed else {
            return Ok(None);
        };
        let data = super::parse_run(&raw)?;
        if outcome != "removed" {
            // Left in place: say why, as reading it would.
            queue_id_of(&data)?;
            return Err(StoreError::InvalidData(format!(
                "run {id} has no integer queue_id"
            )));
        }
        Ok(Some(data))
    }

    async fn list_runs(&self) -> Result<Vec<StoredRun>, StoreError> {
        let mut conn = self.conn.clone();
        let runs: Vec<(String, String)> = conn.hgetall(&self.keys.active_runs).await?;
        let keepalives: Vec<(String, String)> = conn.hgetall(&self.keys.last_keepalive).await?;
        let keepalives: std::collections::HashMap<String, String> =
            keepalives.into_iter().collect();
        let mut out = Vec::with_capacity(runs.len());
        for (id, raw) in runs {
            let data = super::parse_run(&raw)?;
            let last_keepalive = keepalives.get(&id).and_then(|ts| parse_timestamp(ts).ok());
            out.push(StoredRun {
                id,
                data,
                last_keepalive,
            });
        }
        Ok(out)
    }

    async fn active_run_count(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        Ok(conn.hlen(&self.keys.active_runs).await?)
    }

    async fn assigned_queue_ids(&self) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.conn.clone();
        let keys: Vec<String> = conn.hkeys(&self.keys.assigned_queue_items).await?;
        Ok(queue_ids(&keys))
    }

    async fn claims_and_rate_limits(
        &self,
        now: NaiveDateTime,
    ) -> Result<ClaimsAndRateLimits, StoreError> {
        let mut conn = self.conn.clone();
        let (claims, limits): (Vec<String>, Vec<(String, String)>) = redis::pipe()
            .hkeys(&self.keys.assigned_queue_items)
            .hgetall(&self.keys.rate_limit_hosts)
            .query_async(&mut conn)
            .await?;
        Ok((queue_ids(&claims), still_limited(limits, now)))
    }

    async fn keepalive(&self, id: &str, at: NaiveDateTime) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = KEEPALIVE
            .key(&self.keys.active_runs)
            .key(&self.keys.last_keepalive)
            .arg(id)
            .arg(isoformat(&at))
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn last_keepalive(&self, id: &str) -> Result<Option<NaiveDateTime>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<String> = conn.hget(&self.keys.last_keepalive, id).await?;
        Ok(raw.and_then(|ts| parse_timestamp(&ts).ok()))
    }

    async fn rate_limit_host(&self, host: &str, until: NaiveDateTime) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: () = conn
            .hset(&self.keys.rate_limit_hosts, host, isoformat(&until))
            .await?;
        Ok(())
    }

    async fn rate_limited_hosts(
        &self,
        now: NaiveDateTime,
    ) -> Result<Vec<(String, NaiveDateTime)>, StoreError> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, String)> = conn.hgetall(&self.keys.rate_limit_hosts).await?;
        Ok(still_limited(entries, now))
    }

    async fn run_leases(
        &self,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<Box<dyn RunLeases>, StoreError> {
        Ok(Box::new(ExpiringLeases {
            conn: self.conn.clone(),
            prefix: self.keys.watchdog_lease.clone(),
            holder: holder.to_string(),
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1),
        }))
    }
}

/// The fields of `assigned-queue-items` that are queue ids.
fn queue_ids(fields: &[String]) -> Vec<i64> {
    fields.iter().filter_map(|k| k.parse().ok()).collect()
}

/// The `rate-limit-hosts` entries still blocking at `now`.
fn still_limited(
    entries: Vec<(String, String)>,
    now: NaiveDateTime,
) -> Vec<(String, NaiveDateTime)> {
    entries
        .into_iter()
        .filter_map(|(host, ts)| parse_timestamp(&ts).ok().map(|until| (host, until)))
        .filter(|(_, until)| *until > now)
        .collect()
}

/// `SET <prefix><run id> <holder> NX PX <ttl>`: a lease that expires by itself if its holder
/// dies.
struct ExpiringLeases {
    conn: ConnectionManager,
    prefix: String,
    holder: String,
    ttl_ms: u64,
}

#[async_trait]
impl RunLeases for ExpiringLeases {
    async fn try_acquire(&self, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(format!("{}{id}", self.prefix))
            .arg(&self.holder)
            .arg("NX")
            .arg("PX")
            .arg(self.ttl_ms)
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }

    async fn release(&self, id: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = RELEASE_LEASE
            .key(format!("{}{id}", self.prefix))
            .arg(&self.holder)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<(), StoreError> {
        // Each lease is given back after its check; the rest expire.
        Ok(())
    }
}
