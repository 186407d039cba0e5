//! The run registry operations of the Python `QueueProcessor`, on the shared state: register,
//! update, look up and release active runs, abort them, rate-limit hosts, and the status and
//! wait estimates built from them. The HTTP handlers and the Python face both call these.

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::Value;

use crate::app::AppState;
use crate::assign::upstream::DEFAULT_RETRY_AFTER;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::models::{ActiveRun, JanitorResult};
use crate::state::StoreError;

/// Registers a run and claims its queue item; `StoreError::AlreadyClaimed` (inside
/// `Error::Store`) when another run holds the item. Counts it and announces the new status.
pub async fn register_run(state: &AppState, run: &ActiveRun, now: NaiveDateTime) -> Result<()> {
    state
        .store
        .register_run(&run.log_id, run.queue_id, &run.to_json(now), now)
        .await?;
    count_registration(state, run);
    Ok(())
}

/// The metrics and status announcement that follow a successful registration.
pub fn count_registration(state: &AppState, run: &ActiveRun) {
    let worker = Metrics::label(run.worker_name.as_deref());
    state.metrics.run_count.inc();
    state.metrics.active_runs.with_label_values(&[worker]).inc();
    state.status_announcer.announce();
}

/// Replaces the stored JSON of a registered run (unknown runs are left alone).
pub async fn update_run(state: &AppState, run: &ActiveRun, now: NaiveDateTime) -> Result<()> {
    let data = run.to_json(now);
    state.store.update_run(&run.log_id, &data).await?;
    state.own_runs.replace(&run.log_id, data);
    Ok(())
}

/// The registered run with this id, if any. Stored JSON that does not parse is an error.
pub async fn get_run(state: &AppState, id: &str) -> Result<Option<ActiveRun>> {
    match state.store.get_run(id).await? {
        Some(data) => ActiveRun::from_json(&data)
            .map(Some)
            .map_err(|e| Error::Store(StoreError::InvalidData(e.0))),
        None => Ok(None),
    }
}

/// Releases a run and its queue item; nothing happens for an unknown run.
pub async fn unclaim_run(state: &AppState, id: &str) -> Result<()> {
    state.own_runs.forget(id);
    if let Some(stored) = state.store.unclaim_run(id).await? {
        count_release(state, &stored);
    }
    Ok(())
}

/// Lowers the `active_runs` gauge for a run the store has released, under the worker its
/// stored JSON names (`worker`), the label it was counted under when registered.
pub fn count_release(state: &AppState, stored: &Value) {
    let worker = stored.get("worker").and_then(Value::as_str);
    state
        .metrics
        .active_runs
        .with_label_values(&[Metrics::label(worker)])
        .dec();
}

/// Ends a run the runner gives up on: stores a result with `code` and `description` (no
/// logs, no resume), deletes its queue row, releases it and reschedules the candidate.
/// `Error::RunExists` when a run with this id is already stored (the run is released).
pub async fn abort_run(
    state: &AppState,
    run: &ActiveRun,
    code: &str,
    description: &str,
    transient: Option<bool>,
    now: NaiveDateTime,
) -> Result<JanitorResult> {
    let mut result = JanitorResult::aborted(run, code, description, transient, now);
    crate::finish::finish_run(state, run, &mut result).await?;
    Ok(result)
}

/// Blocks `host` until `retry_after` (a time, or seconds from `now`), or for the default
/// two minutes when neither is given.
pub async fn rate_limited(
    state: &AppState,
    host: &str,
    retry_after: Option<RetryAfter>,
    now: NaiveDateTime,
) -> Result<NaiveDateTime> {
    let until = match retry_after {
        Some(RetryAfter::At(at)) => at,
        Some(RetryAfter::Seconds(seconds)) => now + TimeDelta::seconds(seconds.max(0)),
        None => now + DEFAULT_RETRY_AFTER,
    };
    state
        .metrics
        .rate_limited_host
        .with_label_values(&[host])
        .inc();
    state.store.rate_limit_host(host, until).await?;
    Ok(until)
}

/// How long a host is blocked for: a moment, or a number of seconds (silver-platter's form,
/// which the Python runner crashes on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Until this moment (naive UTC).
    At(NaiveDateTime),
    /// For this many seconds from now (negative counts as 0).
    Seconds(i64),
}

/// Hosts blocked at `now`, with the end of each block.
pub async fn rate_limited_hosts(
    state: &AppState,
    now: NaiveDateTime,
) -> Result<Vec<(String, NaiveDateTime)>> {
    Ok(state.store.rate_limited_hosts(now).await?)
}

/// The hosts nothing is handed out from now: the avoided ones and the rate-limited ones.
pub async fn excluded_hosts(state: &AppState, now: NaiveDateTime) -> Result<Vec<String>> {
    Ok(with_avoided(state, rate_limited_hosts(state, now).await?))
}

/// The avoided hosts, then the rate-limited ones.
pub(crate) fn with_avoided(state: &AppState, limited: Vec<(String, NaiveDateTime)>) -> Vec<String> {
    let mut excluded: Vec<String> = state.settings.avoid_hosts.iter().cloned().collect();
    excluded.extend(limited.into_iter().map(|(host, _)| host));
    excluded
}

/// `GET /status` and the `queue` channel message.
pub async fn status_json(state: &AppState, now: NaiveDateTime) -> Result<Value> {
    crate::status::status_json(
        state.store.as_ref(),
        &state.settings.avoid_hosts,
        state.settings.run_timeout_minutes,
        now,
    )
    .await
}

/// Longest `/metrics` waits for the figures it reads when scraped; past it, the last ones
/// are served.
const SCRAPE_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Brings the gauges read at scrape time up to date: the queue's size by bucket and the
/// oldest keep-alive among the active runs. What cannot be read in time (the database down)
/// keeps its last value.
pub async fn refresh_scraped_gauges(state: &AppState) {
    let metrics = &state.metrics;
    if state.database.waiting_for().is_none() {
        let counts = tokio::time::timeout(
            SCRAPE_READ_TIMEOUT,
            crate::db::queue::bucket_counts(&state.pool),
        )
        .await;
        if let Ok(Ok(counts)) = counts {
            metrics.queue_size.reset();
            for (bucket, count) in counts {
                metrics
                    .queue_size
                    .with_label_values(&[bucket.as_str()])
                    .set(count);
            }
        }
    }
    let runs = tokio::time::timeout(SCRAPE_READ_TIMEOUT, state.store.list_runs()).await;
    if let Ok(Ok(runs)) = runs {
        let now = state.clock.now();
        let oldest = runs
            .iter()
            .filter_map(|stored| {
                stored.last_keepalive.or_else(|| {
                    ActiveRun::from_json(&stored.data)
                        .ok()
                        .map(|run| run.start_time)
                })
            })
            .map(|heard| crate::time::seconds(&(now - heard)))
            .fold(0.0_f64, f64::max);
        metrics.active_runs_keepalive_age_max.set(oldest);
    }
}

/// How many runs are out with workers.
pub async fn active_run_count(state: &AppState) -> Result<usize> {
    Ok(state.store.active_run_count().await?)
}

/// `estimate_wait`: the item's position, the work ahead of it spread over the active runs
/// (`None` when nothing runs, where the Python divides by zero), and the work ahead.
pub async fn estimate_wait(
    state: &AppState,
    codebase: &str,
    campaign: &str,
) -> Result<crate::queue::Position> {
    crate::queue::position(
        &state.pool,
        &state.queue_positions,
        state.store.as_ref(),
        codebase,
        campaign,
    )
    .await
}

/// The item the next assignment would start from: not held by a run, and not on an avoided
/// or currently rate-limited host.
pub async fn next_queue_item(
    state: &AppState,
    codebase: Option<&str>,
    campaign: Option<&str>,
    now: NaiveDateTime,
) -> Result<Option<(crate::models::QueueItem, crate::models::VcsInfo)>> {
    let excluded = excluded_hosts(state, now).await?;
    let assigned = state.store.assigned_queue_ids().await?;
    crate::queue::next_item(&state.pool, codebase, campaign, &excluded, &assigned).await
}
