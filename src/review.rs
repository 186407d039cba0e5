//! Reviewers' verdicts on runs (what the site's review pages call): the verdict is stored per
//! run and reviewer; `reschedule` is stored as `rejected` and puts the candidate back at the
//! head of the `default` bucket for a fresh run; a QA reviewer's verdict (other than
//! `abstained`) becomes the run's publish status, set through the runner's own API so that the
//! publisher hears of it.

use std::time::Duration;

use sqlx::PgPool;

use crate::db::ConstraintExt;
use crate::schedule::engine::{ScheduleError, ScheduleRequest, do_schedule};

/// How long the runner may take to accept a publish status.
pub const RUNNER_TIMEOUT: Duration = Duration::from_secs(30);

/// What a reviewer may say; `reschedule` is stored as `rejected`.
pub const VERDICTS: [&str; 4] = ["approved", "rejected", "abstained", "reschedule"];

/// Why a review could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The verdict is not one of [`VERDICTS`].
    #[error("unknown verdict {0:?}; expected approved, rejected, abstained or reschedule")]
    UnknownVerdict(String),
    /// There is no run with this id.
    #[error("no such run: {0}")]
    UnknownRun(String),
    /// A `reschedule` verdict could not put the candidate back on the queue.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The runner did not take the publish status (bad URL, unreachable, or refused).
    #[error("the runner at {url} did not take the publish status: {reason}")]
    Runner {
        /// The runner's base URL.
        url: String,
        /// Why it did not take it.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// One reviewer's verdict on one run.
#[derive(Debug, Clone, Copy)]
pub struct Review<'a> {
    /// The run reviewed.
    pub run_id: &'a str,
    /// One of [`VERDICTS`].
    pub verdict: &'a str,
    /// What the reviewer wrote.
    pub comment: Option<&'a str>,
    /// Who reviewed it.
    pub reviewer: Option<&'a str>,
    /// A QA reviewer's verdict (other than `abstained`) becomes the run's publish status.
    pub is_qa_reviewer: bool,
}

/// Stores `review` in one transaction; the publish status is sent to `runner_url` before it
/// commits, so a runner that refuses it leaves nothing stored.
pub async fn store_review(
    pool: &PgPool,
    http: &reqwest::Client,
    runner_url: &str,
    review: Review<'_>,
) -> Result<(), ReviewError> {
    if !VERDICTS.contains(&review.verdict) {
        return Err(ReviewError::UnknownVerdict(review.verdict.to_string()));
    }
    let mut tx = pool.begin().await?;
    let verdict = if review.verdict == "reschedule" {
        let (codebase, campaign) = crate::db::reviews::run_identity(&mut tx, review.run_id)
            .await?
            .ok_or_else(|| ReviewError::UnknownRun(review.run_id.to_string()))?;
        let requester = format!("reviewer ({})", review.reviewer.unwrap_or("None"));
        do_schedule(
            &mut tx,
            ScheduleRequest {
                campaign: &campaign,
                codebase: &codebase,
                bucket: Some("default"),
                change_set: None,
                offset: None,
                refresh: true,
                requester: Some(&requester),
                estimated_duration: None,
                command: None,
            },
        )
        .await?;
        "rejected"
    } else {
        review.verdict
    };
    if verdict != "abstained" && review.is_qa_reviewer {
        send_publish_status(http, runner_url, review.run_id, verdict).await?;
    }
    crate::db::reviews::upsert(
        &mut tx,
        review.run_id,
        review.comment,
        review.reviewer,
        verdict,
    )
    .await
    .on_constraint(|name| {
        (name == "review_run_id_fkey").then(|| ReviewError::UnknownRun(review.run_id.to_string()))
    })?;
    tx.commit().await?;
    Ok(())
}

/// `POST <runner_url>/runs/<run_id>` with the publish status.
async fn send_publish_status(
    http: &reqwest::Client,
    runner_url: &str,
    run_id: &str,
    status: &str,
) -> Result<(), ReviewError> {
    let refused = |reason: String| ReviewError::Runner {
        url: runner_url.to_string(),
        reason,
    };
    let mut url = reqwest::Url::parse(runner_url).map_err(|e| refused(e.to_string()))?;
    url.path_segments_mut()
        .map_err(|()| refused("not a base URL".to_string()))?
        .pop_if_empty()
        .extend(["runs", run_id]);
    let response = crate::telemetry::propagation::traced(http.post(url))
        .timeout(RUNNER_TIMEOUT)
        .json(&serde_json::json!({ "publish_status": status }))
        .send()
        .await
        .map_err(|e| refused(e.to_string()))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(refused(format!("{status}: {body}")));
    }
    Ok(())
}
