//! The post-run reschedule (queue-and-scheduling.md §3.1): every finished or aborted run puts its
//! candidate back on the queue in `default`, in the background, at most two at a time.

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::Semaphore;

use super::engine::{RegularRequest, ScheduleError, do_schedule_regular};
use crate::clock::Clock;

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
            match this.reschedule(&after).await {
                Ok(()) => {}
                Err(ScheduleError::CandidateUnavailable { .. }) => {
                    tracing::debug!(codebase = %after.codebase, campaign = %after.campaign, "no candidate to reschedule");
                }
                Err(error) => {
                    tracing::warn!(%error, codebase = %after.codebase, campaign = %after.campaign, "post-run reschedule failed");
                }
            }
        })
    }

    async fn reschedule(&self, after: &AfterRun) -> Result<(), ScheduleError> {
        let mut conn = self.pool.acquire().await?;
        do_schedule_regular(
            &mut conn,
            self.clock.now(),
            RegularRequest {
                codebase: &after.codebase,
                campaign: &after.campaign,
                change_set: after.change_set.as_deref(),
                context: after.context.clone(),
                requester: Some("after run schedule"),
                bucket: Some("default"),
                ..RegularRequest::default()
            },
        )
        .await
        .map(|_| ())
    }
}
