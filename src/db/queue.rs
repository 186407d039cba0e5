//! Table `queue` and view `queue_positions`.

use sqlx::{FromRow, PgPool};

/// A queue row as `GET /queue` lists it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct QueueEntry {
    pub id: i32,
    pub codebase: String,
    pub campaign: String,
    pub context: Option<String>,
    pub command: Option<String>,
}

/// The queue in run order (bucket, priority, id); `limit` caps the number of rows.
pub async fn list(pool: &PgPool, limit: Option<i64>) -> Result<Vec<QueueEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, codebase, suite::text AS campaign, context, command
         FROM queue ORDER BY bucket ASC, priority ASC, id ASC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// 1-based position of the first queue row for (codebase, campaign), and the summed
/// estimated duration, in seconds, of the rows ahead of it.
pub async fn position(
    pool: &PgPool,
    codebase: &str,
    campaign: &str,
) -> Result<Option<(i64, Option<f64>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT position, extract(epoch FROM wait_time)::float8
         FROM queue_positions WHERE codebase = $1 AND suite = $2 LIMIT 1",
    )
    .bind(codebase)
    .bind(campaign)
    .fetch_optional(pool)
    .await
}
