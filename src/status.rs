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
            if let Some(at) = run.last_keepalive {
                let age = seconds(&(now - at));
                entry.insert("last-keepalive".into(), isoformat_seconds(&at).into());
                entry.insert("keepalive_age".into(), age.into());
                entry.insert(
                    "mia".into(),
                    (age > (run_timeout_minutes * 60) as f64).into(),
                );
            } else {
                entry.insert("keepalive_age".into(), Value::Null);
                entry.insert("last-keepalive".into(), Value::Null);
                entry.insert("mia".into(), Value::Null);
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

/// Announces the status on the `queue` channel from a background task, at most once per
/// `interval` and always ending with the latest state. Building the status reads every
/// active run, so doing it on each registration (as the Python runner does) costs
/// O(active runs) per assignment; subscribers only need the current picture.
#[derive(Debug, Clone)]
pub struct StatusAnnouncer {
    wake: Option<tokio::sync::mpsc::Sender<()>>,
}

/// What the announcer needs to build the status, cloned out of the application state.
pub struct AnnouncerParts {
    /// Where the active runs are read from.
    pub store: std::sync::Arc<dyn ActiveRunStore>,
    /// Where the status is published.
    pub events: crate::events::Events,
    /// Hosts never handed out, listed in the status.
    pub avoid_hosts: BTreeSet<String>,
    /// Minutes without keep-alive after which the status marks a run `mia`.
    pub run_timeout_minutes: i64,
    /// The time source for keep-alive ages.
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl StatusAnnouncer {
    /// Does nothing (no Redis, so nobody listens).
    pub fn disabled() -> Self {
        Self { wake: None }
    }

    /// Starts the background task; it ends when the last announcer handle is dropped.
    pub fn spawn(parts: AnnouncerParts, interval: std::time::Duration) -> Self {
        if !parts.events.is_enabled() {
            return Self::disabled();
        }
        let (wake, mut woken) = tokio::sync::mpsc::channel::<()>(1);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                let now = parts.clock.now();
                match status_json(
                    parts.store.as_ref(),
                    &parts.avoid_hosts,
                    parts.run_timeout_minutes,
                    now,
                )
                .await
                {
                    Ok(status) => {
                        parts
                            .events
                            .publish(crate::events::QUEUE_CHANNEL, &status)
                            .await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot build the status for the queue channel");
                    }
                }
                tokio::time::sleep(interval).await;
            }
        });
        Self { wake: Some(wake) }
    }

    /// Asks for an announcement; requests made while one is pending are merged into it.
    pub fn announce(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}
