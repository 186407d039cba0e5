//! The watchdog: notices runs whose worker has gone quiet, pings them through their
//! backchannel, records keep-alives, and aborts the runs that are gone, so their queue items
//! are handed out again.
//!
//! Every `KEEPALIVE_INTERVAL` it looks at each active run. A run last heard from less than
//! `run_timeout / 3` minutes ago is left alone. The others are checked concurrently:
//! - a ping that finds the worker on the run is a keep-alive;
//! - a worker on another run (or none), a Jenkins build that failed or vanished: abort
//!   `run-disappeared`, with the ping's reason;
//! - a ping that fails or times out changes nothing, but once the run has not been heard of
//!   for `run_timeout` minutes it is aborted `worker-timeout` (`No keepalives received in
//!   <age>.`); so are runs that cannot be pinged (no backchannel; a Jenkins build that ended
//!   without uploading, counted from the run's start: DECISIONS.md 12);
//! - a run without backchannel silent for more than a day is `run-disappeared` (only reachable
//!   with a `--run-timeout` over a day, as in Python).
//!
//! Aborts are transient and go through `registry::abort_run`, the path of every finished
//! run: run row, queue row, `result` and `queue` messages, metrics, reschedule.
//!
//! Several runner processes may each run a watchdog on one database and store: a run is
//! checked under a lease from the store (`ActiveRunStore::run_leases`), re-read once the lease
//! is held, so one process at a time pings or aborts it. A worker's finish racing an abort
//! ends with one outcome, because both store the same run id: the first commit wins and the
//! other gets `RunExists`, which the watchdog logs and counts, nothing more.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::SharedState;
use crate::backchannel::{BackchannelError, Pong};
use crate::error::{Error, Result};
use crate::models::{ActiveRun, BackchannelInfo};
use crate::time::timedelta_str;

/// Pause between two passes (the Python's `KEEPALIVE_INTERVAL`).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// How long a lease lasts where the store cannot tell that its holder died (Redis).
const LEASE_TTL: Duration = Duration::from_secs(300);
/// The longest one run's check (ping, then perhaps the abort) may take; inside the lease.
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);
/// Checks under way at once in one pass.
const CONCURRENT_CHECKS: usize = 32;
/// After a stop is asked for, how long a pass under way may take to end cleanly.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Runs due for a check.
    pub due: usize,
    /// Runs whose worker answered a ping for them.
    pub alive: usize,
    /// Runs whose ping failed without their time being up.
    pub unreachable: usize,
    /// Runs aborted: (run id, result code).
    pub aborted: Vec<(String, String)>,
    /// Aborts that found the run already stored (its worker finished first).
    pub already_finished: usize,
    /// Runs another process was checking.
    pub leased_elsewhere: usize,
    /// Runs that finished, or were pinged by another process, before their check began.
    pub no_longer_due: usize,
    /// Checks that failed (store or database errors, unreadable runs).
    pub errors: usize,
}

/// The outcome of checking one run.
#[derive(Debug)]
enum Checked {
    Alive,
    Unreachable,
    Quiet,
    Aborted(&'static str),
    AlreadyFinished,
    NoLongerDue,
    LeasedElsewhere,
    /// The check outlasted `CHECK_TIMEOUT` and was given up (its lease may have expired).
    TooSlow,
}

/// A run's age since it was last heard from decides whether it needs a check at all: not
/// before `run_timeout // 3` whole minutes (Python's integer division), and for a run
/// without backchannel not before its time is up.
fn needs_check(run: &ActiveRun, silent_for: TimeDelta, run_timeout_minutes: i64) -> bool {
    if silent_for < TimeDelta::minutes(run_timeout_minutes.div_euclid(3)) {
        return false;
    }
    let run_timeout = TimeDelta::minutes(run_timeout_minutes);
    match run.backchannel {
        // Nothing to ask: only a run whose time is up needs anything done.
        BackchannelInfo::None => silent_for > run_timeout || silent_for > TimeDelta::days(1),
        _ => true,
    }
}

/// The watchdog of one runner process.
#[derive(Debug)]
pub struct Watchdog {
    state: SharedState,
    /// Names this process in the store's leases.
    holder: String,
    /// Runs whose last ping from this process failed (the `active_runs_ping_failed` gauge).
    failing: Mutex<BTreeSet<String>>,
}

impl Watchdog {
    /// A watchdog for this process, named uniquely in the store's leases.
    pub fn new(state: SharedState) -> Self {
        Self {
            state,
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            failing: Mutex::new(BTreeSet::new()),
        }
    }

    fn run_timeout_minutes(&self) -> i64 {
        self.state.settings.run_timeout_minutes
    }

    /// One look at every active run; checks the runs that are due.
    #[tracing::instrument(name = "watchdog.pass", skip_all)]
    pub async fn run_pass(&self) -> Result<PassReport> {
        let mut report = PassReport::default();
        let now = self.state.clock.now();
        let runs = self.state.store.list_runs().await?;
        let mut due = Vec::new();
        for stored in &runs {
            let run = match ActiveRun::from_json(&stored.data) {
                Ok(run) => run,
                Err(error) => {
                    tracing::error!(run_id = %stored.id, %error, "active run is unreadable; not checked");
                    report.errors += 1;
                    continue;
                }
            };
            let silent_for = now - stored.last_keepalive.unwrap_or(run.start_time);
            if needs_check(&run, silent_for, self.run_timeout_minutes()) {
                due.push(stored.id.clone());
            }
        }
        // A run whose ping failed stays due until someone's ping succeeds or it ends; one no
        // longer due is not failing any more, whichever process pinged it.
        self.forget_failures_except(due.iter().map(String::as_str));
        report.due = due.len();
        if due.is_empty() {
            return Ok(report);
        }
        let leases = self.state.store.run_leases(&self.holder, LEASE_TTL).await?;
        let held = &*leases;
        let outcomes: Vec<(String, Result<Checked>)> = futures::stream::iter(due)
            .map(|id| async move {
                let outcome = self.check_under_lease(held, &id).await;
                (id, outcome)
            })
            .buffer_unordered(CONCURRENT_CHECKS)
            .collect()
            .await;
        for (id, outcome) in outcomes {
            match outcome {
                Ok(Checked::Alive) => report.alive += 1,
                Ok(Checked::Unreachable) => report.unreachable += 1,
                Ok(Checked::Quiet) => {}
                Ok(Checked::Aborted(code)) => report.aborted.push((id, code.to_string())),
                Ok(Checked::AlreadyFinished) => report.already_finished += 1,
                Ok(Checked::NoLongerDue) => report.no_longer_due += 1,
                Ok(Checked::LeasedElsewhere) => report.leased_elsewhere += 1,
                Ok(Checked::TooSlow) => {
                    tracing::error!(run_id = %id, limit_s = CHECK_TIMEOUT.as_secs(), "check of active run took too long; given up");
                    report.errors += 1;
                }
                Err(error) => {
                    tracing::error!(run_id = %id, %error, "failed to check active run");
                    report.errors += 1;
                }
            }
        }
        if let Err(error) = leases.finish().await {
            tracing::warn!(%error, "could not give back the watchdog's run leases");
        }
        Ok(report)
    }

    async fn check_under_lease(
        &self,
        leases: &dyn crate::state::RunLeases,
        id: &str,
    ) -> Result<Checked> {
        if !leases.try_acquire(id).await? {
            return Ok(Checked::LeasedElsewhere);
        }
        let outcome = tokio::time::timeout(CHECK_TIMEOUT, self.check(id))
            .await
            .unwrap_or(Ok(Checked::TooSlow));
        if let Err(error) = leases.release(id).await {
            tracing::warn!(run_id = %id, %error, "could not give back the run's lease");
        }
        outcome
    }

    /// Checks run `id` as it is now (the pass's picture may be stale by the time the lease
    /// is held): ping, keep-alive or abort.
    async fn check(&self, id: &str) -> Result<Checked> {
        let state = &*self.state;
        let Some(run) = crate::registry::get_run(state, id).await? else {
            return Ok(Checked::NoLongerDue);
        };
        let now = state.clock.now();
        let last_heard = state.store.last_keepalive(id).await?;
        let mut silent_for = now - last_heard.unwrap_or(run.start_time);
        if !needs_check(&run, silent_for, self.run_timeout_minutes()) {
            return Ok(Checked::NoLongerDue);
        }
        let mut outcome = Checked::Quiet;
        let mut ended_build = None;
        match state.backchannels.ping(&run.backchannel, &run.log_id).await {
            Ok(Pong::Alive) => {
                state.store.keepalive(id, state.clock.now()).await?;
                self.set_failing(id, false);
                return Ok(Checked::Alive);
            }
            Ok(Pong::BuildEnded(result)) => {
                self.set_failing(id, false);
                silent_for = now - run.start_time;
                ended_build = Some(result);
            }
            Err(BackchannelError::NotImplemented(_)) => {
                if silent_for > TimeDelta::days(1) {
                    let description = "no support for ping, and haven't heard back in > 1 day";
                    return self.abort(&run, "run-disappeared", description).await;
                }
            }
            Err(BackchannelError::Fatal(reason)) => {
                self.set_failing(id, false);
                return self.abort(&run, "run-disappeared", &reason).await;
            }
            Err(error) => {
                tracing::warn!(run_id = %id, worker = ?run.worker_name, %error, "failed to ping worker");
                self.set_failing(id, true);
                outcome = Checked::Unreachable;
            }
        }
        if silent_for > TimeDelta::minutes(self.run_timeout_minutes()) {
            tracing::warn!(
                run_id = %id,
                worker = ?run.worker_name,
                silent_for = %timedelta_str(&silent_for),
                "no keep-alives received; aborting"
            );
            let description = match ended_build {
                Some(result) => format!(
                    "Jenkins build ended ({result}) without a result in {}.",
                    timedelta_str(&silent_for)
                ),
                None => format!("No keepalives received in {}.", timedelta_str(&silent_for)),
            };
            self.set_failing(id, false);
            return self.abort(&run, "worker-timeout", &description).await;
        }
        Ok(outcome)
    }

    async fn abort(
        &self,
        run: &ActiveRun,
        code: &'static str,
        description: &str,
    ) -> Result<Checked> {
        let state = &*self.state;
        let now = state.clock.now();
        match crate::registry::abort_run(state, run, code, description, Some(true), now).await {
            Ok(_) => {
                tracing::info!(run_id = %run.log_id, code, description, "aborted run");
                state
                    .metrics
                    .watchdog_aborts
                    .with_label_values(&[code])
                    .inc();
                Ok(Checked::Aborted(code))
            }
            Err(Error::RunExists(_)) => {
                tracing::info!(run_id = %run.log_id, code, "run was stored before the abort; nothing to do");
                state.metrics.watchdog_abort_conflicts.inc();
                Ok(Checked::AlreadyFinished)
            }
            Err(other) => Err(other),
        }
    }

    fn set_failing(&self, id: &str, failing: bool) {
        let mut set = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failing {
            set.insert(id.to_string());
        } else {
            set.remove(id);
        }
        self.state
            .metrics
            .active_runs_ping_failed
            .set(i64::try_from(set.len()).unwrap_or(i64::MAX));
    }

    fn forget_failures_except<'a>(&self, active: impl Iterator<Item = &'a str>) {
        let active: BTreeSet<&str> = active.collect();
        let mut set = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        set.retain(|id| active.contains(id.as_str()));
        self.state
            .metrics
            .active_runs_ping_failed
            .set(i64::try_from(set.len()).unwrap_or(i64::MAX));
    }

    /// Runs a pass every `interval` (the first at once) until the handle stops it.
    pub fn spawn(self: Arc<Self>, interval: Duration) -> WatchdogHandle {
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let pass = self.run_pass();
                tokio::pin!(pass);
                let mut stopping = stopped.clone();
                tokio::select! {
                    outcome = &mut pass => match outcome {
                        Ok(report) if report != PassReport::default() => {
                            tracing::debug!(?report, "watchdog pass");
                        }
                        Ok(_) => {}
                        Err(error) => tracing::error!(%error, "watchdog pass failed"),
                    },
                    () = async move {
                        let _ = stopping.wait_for(|stop| *stop).await;
                        tokio::time::sleep(STOP_GRACE).await;
                    } => break,
                }
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        });
        WatchdogHandle {
            stop,
            task: Mutex::new(Some(task)),
        }
    }
}

/// A running watchdog; `stop` ends it after the pass under way (at most a few seconds).
#[derive(Debug)]
pub struct WatchdogHandle {
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl WatchdogHandle {
    /// Stops the watchdog and waits until it has stopped.
    pub async fn stop(&self) {
        self.request_stop();
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Asks it to stop without waiting.
    pub fn request_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Whether the watchdog task has ended (or was stopped and awaited).
    pub fn is_finished(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_none_or(JoinHandle::is_finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{QueueItem, VcsInfo};

    fn run(backchannel: BackchannelInfo) -> ActiveRun {
        let item = QueueItem {
            id: 1,
            context: None,
            command: "true".into(),
            estimated_duration: None,
            campaign: "c".into(),
            refresh: false,
            requester: None,
            change_set: None,
            codebase: "a".into(),
        };
        let start = crate::time::parse_timestamp("2026-01-01T00:00:00").unwrap();
        ActiveRun::from_queue_item(
            &item,
            "r".into(),
            start,
            VcsInfo::default(),
            backchannel,
            None,
            None,
        )
    }

    #[test]
    fn due_after_a_third_of_the_timeout_in_whole_minutes() {
        let polled = run(BackchannelInfo::Polling {
            my_url: "http://w/".into(),
        });
        let minutes = TimeDelta::minutes;
        // 61 // 3 = 20 whole minutes, not 20:20.
        assert!(!needs_check(
            &polled,
            minutes(20) - TimeDelta::seconds(1),
            61
        ));
        assert!(needs_check(&polled, minutes(20), 61));
        // Below 3 minutes every run is checked on every pass.
        assert!(needs_check(&polled, TimeDelta::zero(), 2));
        let silent = run(BackchannelInfo::None);
        assert!(!needs_check(&silent, minutes(59), 60));
        assert!(!needs_check(&silent, minutes(60), 60));
        assert!(needs_check(
            &silent,
            minutes(60) + TimeDelta::microseconds(1),
            60
        ));
        // With a timeout over a day, the day rule reaps it first.
        assert!(needs_check(
            &silent,
            TimeDelta::days(1) + minutes(1),
            3 * 1440
        ));
    }
}
