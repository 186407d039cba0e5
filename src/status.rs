//! The runner status: active runs with keep-alive ages, avoided and rate-limited hosts.

use std::collections::BTreeSet;

use chrono::NaiveDateTime;
use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::models::ActiveRun;
use crate::state::ActiveRunStore;
use crate::time::{isoformat_seconds, seconds};

/// Active runs as stored (their `current_duration` is as of the last write), each with
/// `last-keepalive`, `keepalive_age` and `mia` added.
pub async fn processing(
    store: &dyn ActiveRunStore,
    run_timeout_minutes: i64,
    now: NaiveDateTime,
) -> Result<Vec<Value>> {
    let mut runs = store.list_runs().await?;
    runs.sort_by(|a, b| {
        a.data["queue_id"]
            .as_i64()
            .cmp(&b.data["queue_id"].as_i64())
    });
    Ok(runs
        .into_iter()
        .map(|run| {
            let mut entry = match run.data {
                Value::Object(obj) => obj,
                other => {
                    let mut obj = Map::new();
                    obj.insert("data".into(), other);
                    obj
                }
            };
            match run.last_keepalive {
                Some(at) => {
                    let age = seconds(&(now - at));
                    entry.insert("last-keepalive".into(), isoformat_seconds(&at).into());
                    entry.insert("keepalive_age".into(), age.into());
                    entry.insert(
                        "mia".into(),
                        (age > (run_timeout_minutes * 60) as f64).into(),
                    );
                }
                None => {
                    entry.insert("keepalive_age".into(), Value::Null);
                    entry.insert("last-keepalive".into(), Value::Null);
                    entry.insert("mia".into(), Value::Null);
                }
            }
            Value::Object(entry)
        })
        .collect())
}

/// `GET /status` and the `queue` channel message.
pub async fn status_json(
    store: &dyn ActiveRunStore,
    avoid_hosts: &BTreeSet<String>,
    run_timeout_minutes: i64,
    now: NaiveDateTime,
) -> Result<Value> {
    let processing = processing(store, run_timeout_minutes, now).await?;
    let rate_limited: Map<String, Value> = store
        .rate_limited_hosts(now)
        .await?
        .into_iter()
        .map(|(host, until)| (host, isoformat_seconds(&until).into()))
        .collect();
    Ok(json!({
        "processing": processing,
        "avoid_hosts": avoid_hosts.iter().collect::<Vec<_>>(),
        "rate_limit_hosts": rate_limited,
    }))
}

/// One active run, re-serialised with a fresh `current_duration`.
pub async fn active_run(
    store: &dyn ActiveRunStore,
    id: &str,
    now: NaiveDateTime,
) -> Result<Option<Value>> {
    let Some(data) = store.get_run(id).await? else {
        return Ok(None);
    };
    match ActiveRun::from_json(&data) {
        Ok(run) => Ok(Some(run.to_json(now))),
        // Entries this runner cannot parse are served as stored rather than hidden.
        Err(error) => {
            tracing::warn!(run_id = %id, %error, "active run entry does not parse");
            Ok(Some(data))
        }
    }
}

/// Announces the status on the `queue` channel (when Redis is configured).
pub async fn publish(state: &crate::app::AppState, now: NaiveDateTime) -> Result<()> {
    if !state.events.is_enabled() {
        return Ok(());
    }
    let status = status_json(
        state.store.as_ref(),
        &state.settings.avoid_hosts,
        state.settings.run_timeout_minutes,
        now,
    )
    .await?;
    state
        .events
        .publish(crate::events::QUEUE_CHANNEL, &status)
        .await;
    Ok(())
}
