//! The queue as clients see it: listing and positions.
//!
//! Entry points: `list`, `position` (through `positions::QueuePositions`, an in-memory
//! picture used only while it is exact) and `bucket_counts`.

pub mod positions;
pub mod upkeep;

use crate::queue::positions::QueuePositions;
use serde::Serialize;
use sqlx::PgPool;

use crate::db::queue;
use crate::error::{Error, Result};
use crate::models::{QueueItem, VcsInfo};
use crate::state::ActiveRunStore;

/// `GET /queue` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueListing {
    /// The queue item's id.
    pub queue_id: i32,
    /// The codebase to work on.
    pub codebase: String,
    /// The campaign to run.
    pub campaign: String,
    /// The context the item was scheduled with.
    pub context: Option<String>,
    /// The command the worker is to run.
    pub command: Option<String>,
}

/// Where an item stands: 1-based position, the work queued ahead of it (seconds), and that
/// work spread over the runs currently active (`None` when nothing runs or nothing is known).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    /// The 1-based place in the queue; `None` when the pair is not queued.
    pub position: Option<i64>,
    /// `cumulative_wait_time` divided among the active runs.
    pub wait_time: Option<f64>,
    /// The estimated seconds of work queued ahead.
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

/// Where the first queue item for (`codebase`, `campaign`) stands.
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
        (Some(total), n) if n > 0 => Some(spread_over_runs(total, n)),
        _ => None,
    };
    Ok(Position {
        position: Some(position),
        wait_time,
        cumulative_wait_time: cumulative,
    })
}

/// `total` seconds divided among `runs` as Python divides a `timedelta` by an int: in whole
/// microseconds, the quotient rounded half to even (341.028665, not 341.0286651).
fn spread_over_runs(total: f64, runs: usize) -> f64 {
    let micros = (total * 1e6).round() as i128;
    let runs = runs as i128;
    let (quotient, remainder) = (micros.div_euclid(runs), micros.rem_euclid(runs));
    let rounded = match (2 * remainder).cmp(&runs) {
        std::cmp::Ordering::Less => quotient,
        std::cmp::Ordering::Greater => quotient + 1,
        std::cmp::Ordering::Equal => quotient + (quotient & 1),
    };
    rounded as f64 / 1e6
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
    let mut conn = pool.acquire().await?;
    let excluded = queue::ExcludedHosts {
        listed: exclude_hosts,
        rate_limited_at: None,
    };
    let row = queue::next_item(
        &mut conn,
        excluded,
        queue::Claimed::Ids(assigned),
        codebase,
        campaign,
    )
    .await?;
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

#[cfg(test)]
mod tests {
    use super::spread_over_runs;

    #[test]
    fn waits_are_divided_in_whole_microseconds() {
        // timedelta(seconds=1023.085995) / 3 == timedelta(seconds=341, microseconds=28665)
        assert_eq!(spread_over_runs(1023.085995, 3), 341.028665);
        assert_eq!(spread_over_runs(10.0, 4), 2.5);
        // Halves go to the even neighbour: 5 us / 2 -> 2 us, 7 us / 2 -> 4 us.
        assert_eq!(spread_over_runs(0.000005, 2), 0.000002);
        assert_eq!(spread_over_runs(0.000007, 2), 0.000004);
        // 1 us / 3 rounds down, 2 us / 3 up.
        assert_eq!(spread_over_runs(0.000001, 3), 0.0);
        assert_eq!(spread_over_runs(0.000002, 3), 0.000001);
    }
}
