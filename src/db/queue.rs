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

/// Which queue items are already held by active runs.
#[derive(Debug, Clone, Copy)]
pub enum Claimed<'a> {
    /// These ids (from Redis).
    Ids(&'a [i64]),
    /// The rows of `runner_active_run` (the PostgreSQL store).
    ActiveRunTable,
}

/// The next queue item to hand out, with its codebase's VCS facts, locked (`FOR UPDATE SKIP
/// LOCKED`) for the caller's transaction so concurrent assigners pick different items.
/// Skips claimed items and items whose branch host is in `exclude_hosts`; `codebase` and
/// `campaign` filter when given. Order: bucket, priority, id.
pub async fn next_item(
    conn: &mut sqlx::PgConnection,
    exclude_hosts: &[String],
    claimed: Claimed<'_>,
    codebase: Option<&str>,
    campaign: Option<&str>,
) -> Result<Option<NextItem>, sqlx::Error> {
    // Skipping claimed rows must stay cheap with thousands of active runs: the PostgreSQL
    // store is an index anti-join; Redis ids are inlined as a constant array, which
    // PostgreSQL (15+) checks with a hash instead of a scan per row. The ids are integers
    // formatted here, so nothing from outside reaches the SQL text.
    let claimed_filter = match claimed {
        Claimed::Ids(ids) => {
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            format!(
                "WHERE queue.id::int8 <> ALL ('{{{}}}'::int8[])",
                list.join(",")
            )
        }
        Claimed::ActiveRunTable => {
            "WHERE NOT EXISTS (SELECT FROM runner_active_run r WHERE r.queue_id = queue.id)"
                .to_string()
        }
    };
    let sql = format!(
        "SELECT queue.id::int8 AS id, queue.context, queue.command,
                (extract(epoch FROM queue.estimated_duration) * 1000000)::int8 AS estimated_micros,
                queue.suite::text AS campaign, coalesce(queue.refresh, false) AS refresh,
                queue.requester, queue.change_set, queue.codebase,
                codebase.branch_url, codebase.subpath, codebase.vcs_type::text AS vcs_type
         FROM queue
         LEFT JOIN codebase ON codebase.name = queue.codebase
         {claimed_filter}
           AND ($2::text IS NULL OR queue.codebase = $2)
           AND ($3::text IS NULL OR queue.suite = $3)
           AND (codebase.branch_url IS NULL
                OR cardinality($1::text[]) = 0
                OR substring(codebase.branch_url, '.*://(?:[^/@]*@)?([^/]*)') IS NULL
                OR NOT (substring(codebase.branch_url, '.*://(?:[^/@]*@)?([^/]*)') = ANY($1)))
         ORDER BY queue.bucket ASC, queue.priority ASC, queue.id ASC
         LIMIT 1
         FOR UPDATE OF queue SKIP LOCKED"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .persistent(matches!(claimed, Claimed::ActiveRunTable))
        .bind(exclude_hosts)
        .bind(codebase)
        .bind(campaign)
        .fetch_optional(conn)
        .await
}

/// A queue row joined with its codebase, as `next_item` returns it.
#[derive(Debug, Clone, FromRow)]
pub struct NextItem {
    pub id: i64,
    pub context: Option<String>,
    pub command: Option<String>,
    pub estimated_micros: Option<i64>,
    pub campaign: String,
    pub refresh: bool,
    pub requester: Option<String>,
    pub change_set: Option<String>,
    pub codebase: String,
    pub branch_url: Option<String>,
    pub subpath: Option<String>,
    pub vcs_type: Option<String>,
}

pub async fn delete(conn: &mut sqlx::PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM queue WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
