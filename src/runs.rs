//! Stored runs: lookup and publish-status review.

use serde_json::{Value, json};
use sqlx::PgPool;

use crate::db::ConstraintExt;
use crate::db::runs::{self, RunSummary};
use crate::error::{Error, Result};
use crate::events::{Events, PUBLISH_STATUS_CHANNEL};
use crate::names::PUBLISH_STATUSES;

/// The stored run with this id; `NotFound` when there is none.
pub async fn get(pool: &PgPool, id: &str) -> Result<RunSummary> {
    runs::summary(pool, id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no such run: {id}")))
}

/// Sets a run's publish status and announces it on `publish-status` (the publisher acts on
/// `approved`). Returns the announcement.
pub async fn set_publish_status(
    pool: &PgPool,
    events: &Events,
    id: &str,
    status: &str,
) -> Result<Value> {
    if !PUBLISH_STATUSES.contains(&status) {
        return Err(Error::BadRequest(format!(
            "unknown publish_status {status:?}; expected one of {}",
            PUBLISH_STATUSES.join(", ")
        )));
    }
    let (codebase, campaign) = runs::set_publish_status(pool, id, status)
        .await
        .on_constraint(|name| {
            (name == "run_check2").then(|| {
                Error::Conflict(format!(
                    "run {id} has no revision, so it cannot be approved"
                ))
            })
        })?
        .ok_or_else(|| Error::NotFound(format!("no such run: {id}")))?;
    let message = json!({
        "run_id": id,
        "publish_status": status,
        "codebase": codebase,
        "campaign": campaign,
    });
    events.publish(PUBLISH_STATUS_CHANNEL, &message).await;
    Ok(message)
}
