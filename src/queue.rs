//! The queue as clients see it: listing and positions.

use crate::queue_positions::QueuePositions;
use serde::Serialize;
use sqlx::PgPool;

use crate::db::queue;
use crate::error::{Error, Result};
use crate::models::{QueueItem, VcsInfo};
use crate::state::ActiveRunStore;

/// `GET /queue` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueListing {
    pub queue_id: i32,
    pub codebase: String,
    pub campaign: String,
    pub context: Option<String>,
    pub command: Option<String>,
}

/// Where an item stands: 1-based position, the work queued ahead of it (seconds), and that
/// work spread over the runs currently active (`None` when nothing runs or nothing is known).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    pub position: Option<i64>,
    pub wait_time: Option<f64>,
    pub cumulative_wait_time: Option<f64>,
}

/// The queue in run order. `limit` of `None` or 0 means all of it.
pub async fn list(pool: &PgPool, limit: Option<i64>) -> Result<Vec<QueueListing>> {
    let limit = match limit {
        Some(n) if n < 0 => return Err(Error::bad_request("limit must not be negative")),
        Some(0) | None => None,
        Some(n) => Some(n),
    };
    Ok(queue::list(pool, limit)
        .await?
        .into_iter()
        .map(|e| QueueListing {
            queue_id: e.id,
            codebase: e.codebase,
            campaign: e.campaign,
            context: e.context,
            command: e.command,
        })
        .collect())
}

pub async fn position(
    pool: &PgPool,
    positions: &QueuePositions,
    store: &dyn ActiveRunStore,
    codebase: &str,
    campaign: &str,
) -> Result<Position> {
    let Some((position, cumulative)) = positions.lookup(pool, codebase, campaign).await? else {
        return Ok(Position {
            position: None,
            wait_time: None,
            cumulative_wait_time: None,
        });
    };
    let active = store.active_run_count().await?;
    let wait_time = match (cumulative, active) {
        (Some(total), n) if n > 0 => Some(total / n as f64),
        _ => None,
    };
    Ok(Position {
        position: Some(position),
        wait_time,
        cumulative_wait_time: cumulative,
    })
}

/// `Queue.next_item`: the first item in run order that no run holds (`assigned`), whose
/// codebase's branch host is not in `exclude_hosts`, of `codebase` and `campaign` when given.
/// It only looks; claiming is the assignment's business.
pub async fn next_item(
    pool: &PgPool,
    codebase: Option<&str>,
    campaign: Option<&str>,
    exclude_hosts: &[String],
    assigned: &[i64],
) -> Result<Option<(QueueItem, VcsInfo)>> {
    let mut tx = pool.begin().await?;
    let row = queue::next_item(
        &mut tx,
        exclude_hosts,
        queue::Claimed::Ids(assigned),
        codebase,
        campaign,
    )
    .await?;
    tx.rollback().await?;
    Ok(row.map(queue::NextItem::into_parts))
}

/// `Queue.get_item`.
pub async fn get_item(pool: &PgPool, id: i64) -> Result<Option<QueueItem>> {
    Ok(queue::get_item(pool, id)
        .await?
        .map(|row| row.into_parts().0))
}

/// `Queue.iter_queue`: the items in run order; `limit` of `None` or 0 means all of them.
pub async fn items(
    pool: &PgPool,
    campaign: Option<&str>,
    limit: Option<i64>,
) -> Result<Vec<QueueItem>> {
    let limit = match limit {
        Some(n) if n < 0 => return Err(Error::bad_request("limit must not be negative")),
        Some(0) | None => None,
        Some(n) => Some(n),
    };
    Ok(queue::items(pool, campaign, limit)
        .await?
        .into_iter()
        .map(|row| row.into_parts().0)
        .collect())
}
