//! The post-run reschedule (queue-and-scheduling.md §3.1): every finished or aborted run puts its
//! candidate back on the queue in `default`.
//!
//! Two ways, one result. A worker's finish reschedules inside the transaction that stores the
//! run ([`reschedule_in`]), from what the statement that stores the run read (the candidate,
//! the pair's history, the codebase's value): a cycle costs one commit less, and the queue
//! never shows the run stored without its follow-up. Runs the runner ends itself (aborts
//! while assigning, the watchdog) reschedule in the background after the commit
//! ([`Rescheduler`]), as the Python runner does for every run: an assignment that turns items
//! down and moves on must not meet the item it just requeued again in the same request.
//! Either way a failing reschedule is logged, never the run's failure.

use std::sync::Arc;

use chrono::NaiveDateTime;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Semaphore;

use super::engine::{
    RegularRequest, ScheduleError, do_schedule_regular, schedule_complete, with_read,
};
use crate::clock::Clock;
use crate::db::candidates::CandidateKey;
use crate::db::runs::RequeueRead;

/// How many post-run reschedules run at once (Python's job pool).
const CONCURRENT_RESCHEDULES: usize = 2;

/// Runs post-run reschedules in the background, at most two at a time.
#[derive(Debug, Clone)]
pub struct Rescheduler {
    pool: PgPool,
    clock: Arc<dyn Clock>,
    permits: Arc<Semaphore>,
}

/// What a finished run asks to be rescheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AfterRun {
    /// The run's codebase.
    pub codebase: String,
    /// The run's campaign.
    pub campaign: String,
    /// The queue item's change set (not the one a run without one was given).
    pub change_set: Option<String>,
    /// The result's context; `None` falls back to the candidate's.
    pub context: Option<String>,
}

impl AfterRun {
    /// The candidate to reschedule.
    pub fn candidate_key(&self) -> CandidateKey<'_> {
        CandidateKey {
            codebase: &self.codebase,
            campaign: &self.campaign,
            change_set: self.change_set.as_deref(),
        }
    }
}

impl Rescheduler {
    /// A rescheduler writing to the queue in `pool`, scheduling at the times `clock` gives.
    pub fn new(pool: PgPool, clock: Arc<dyn Clock>) -> Self {
        Self {
            pool,
            clock,
            permits: Arc::new(Semaphore::new(CONCURRENT_RESCHEDULES)),
        }
    }

    /// Starts the reschedule and returns at once.
    pub fn spawn(&self, after: AfterRun) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = this.permits.acquire().await else {
                return;
            };
            log_outcome(&after, this.reschedule(&after).await);
        })
    }

    async fn reschedule(&self, after: &AfterRun) -> Result<(), ScheduleError> {
        let mut conn = self.pool.acquire().await?;
        do_schedule_regular(&mut conn, self.clock.now(), request(after))
            .await
            .map(|_| ())
    }
}

/// Reschedules `after` on `conn` (inside the caller's transaction), given what the
/// statement that stored the run read for it (`None`: the candidate is gone). A candidate
/// that is gone is not an error; any other failure is logged, never returned as the
/// reschedule's error. `RescheduleFailed` says a statement failed, which aborts the caller's
/// transaction: the caller rolls back and stores the run without its reschedule. (No
/// savepoint around the writes: two round trips on every finish, for a failure that is rare.)
pub async fn reschedule_in(
    conn: &mut PgConnection,
    now: NaiveDateTime,
    after: &AfterRun,
    read: Option<RequeueRead>,
) -> Result<(), RescheduleFailed> {
    let outcome = async {
        let read = read.ok_or_else(|| ScheduleError::CandidateUnavailable {
            campaign: after.campaign.clone(),
            codebase: after.codebase.clone(),
        })?;
        let complete = with_read(request(after), read)?;
        schedule_complete(conn, now, complete).await.map(|_| ())
    }
    .await;
    let aborted = matches!(outcome, Err(ScheduleError::Database(_)));
    log_outcome(after, outcome);
    if aborted {
        Err(RescheduleFailed)
    } else {
        Ok(())
    }
}

/// A statement of the reschedule failed, leaving the transaction it ran in aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RescheduleFailed;

/// A candidate that is gone is not worth more than a debug line; any other failure is.
fn log_outcome(after: &AfterRun, outcome: Result<(), ScheduleError>) {
    match outcome {
        Ok(()) => {}
        Err(ScheduleError::CandidateUnavailable { .. }) => {
            tracing::debug!(codebase = %after.codebase, campaign = %after.campaign, "no candidate to reschedule");
        }
        Err(error) => {
            tracing::warn!(%error, codebase = %after.codebase, campaign = %after.campaign, "post-run reschedule failed");
        }
    }
}

fn request(after: &AfterRun) -> RegularRequest<'_> {
    RegularRequest {
        codebase: &after.codebase,
        campaign: &after.campaign,
        change_set: after.change_set.as_deref(),
        context: after.context.clone(),
        requester: Some("after run schedule"),
        bucket: Some("default"),
        ..RegularRequest::default()
    }
}
