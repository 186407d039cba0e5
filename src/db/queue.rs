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

/// `Queue.get_buckets`: the number of rows per bucket, in bucket order.
pub async fn bucket_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    // Ordered by the enum (the bucket order), not by the text of its name.
    sqlx::query_as(
        "SELECT bucket::text, count(*) FROM queue GROUP BY queue.bucket ORDER BY queue.bucket ASC",
    )
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
    // The same numbers as the `queue_positions` view, without computing its window over the
    // whole queue: count and sum the rows ahead by the (bucket, priority, id) index.
    sqlx::query_as(
        "WITH target AS (
           SELECT bucket, priority, id, estimated_duration FROM queue
           WHERE codebase = $1 AND suite = $2
           ORDER BY bucket, priority, id LIMIT 1)
         SELECT ahead.n + 1,
                extract(epoch FROM coalesce(
                  ahead.wait,
                  CASE WHEN target.estimated_duration IS NULL THEN NULL
                       ELSE interval '0' END))::float8
         FROM target, LATERAL (
           SELECT count(*) AS n, sum(q.estimated_duration) AS wait FROM queue q
           WHERE (q.bucket, q.priority, q.id) < (target.bucket, target.priority, target.id)
         ) AS ahead",
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
        "SELECT {ITEM_COLUMNS}
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

/// The columns of [`NextItem`], from `queue` joined with `codebase`.
const ITEM_COLUMNS: &str = "queue.id::int8 AS id, queue.context, queue.command,
    (extract(epoch FROM queue.estimated_duration) * 1000000)::int8 AS estimated_micros,
    queue.suite::text AS campaign, coalesce(queue.refresh, false) AS refresh,
    queue.requester, queue.change_set, queue.codebase,
    codebase.branch_url, codebase.subpath, codebase.vcs_type::text AS vcs_type";

/// `Queue.get_item`: the queue row with this id.
pub async fn get_item(pool: &PgPool, id: i64) -> Result<Option<NextItem>, sqlx::Error> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM queue LEFT JOIN codebase ON codebase.name = queue.codebase
         WHERE queue.id = $1"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// `Queue.iter_queue`: the rows in run order (bucket, priority, id), of one campaign when
/// given, at most `limit` of them when given.
pub async fn items(
    pool: &PgPool,
    campaign: Option<&str>,
    limit: Option<i64>,
) -> Result<Vec<NextItem>, sqlx::Error> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS} FROM queue LEFT JOIN codebase ON codebase.name = queue.codebase
         WHERE ($1::text IS NULL OR queue.suite = $1)
         ORDER BY queue.bucket ASC, queue.priority ASC, queue.id ASC
         LIMIT $2"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(campaign)
        .bind(limit)
        .fetch_all(pool)
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

impl NextItem {
    /// The queue item and its codebase's VCS facts.
    pub fn into_parts(self) -> (crate::models::QueueItem, crate::models::VcsInfo) {
        let vcs =
            crate::models::VcsInfo::from_codebase(self.branch_url, self.subpath, self.vcs_type);
        let item = crate::models::QueueItem {
            id: self.id,
            context: self.context,
            command: self.command.unwrap_or_default(),
            estimated_duration: self.estimated_micros.map(chrono::TimeDelta::microseconds),
            campaign: self.campaign,
            refresh: self.refresh,
            requester: self.requester,
            change_set: self.change_set,
            codebase: self.codebase,
        };
        (item, vcs)
    }
}

pub async fn delete(conn: &mut sqlx::PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM queue WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// What `Queue.add` upserts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewQueueItem<'a> {
    pub codebase: &'a str,
    pub campaign: &'a str,
    pub change_set: Option<&'a str>,
    pub command: &'a str,
    /// Truncated toward zero and added to the queue's lowest priority (queue spec 1.3).
    pub offset: f64,
    pub bucket: &'a str,
    pub context: Option<&'a str>,
    pub estimated_duration: Option<sqlx::postgres::types::PgInterval>,
    pub refresh: bool,
    pub requester: Option<&'a str>,
}

/// `Queue.add`: inserts the item, or overwrites the row for the same (codebase, campaign,
/// change set) when the new bucket is as urgent or more; returns the row's id and the bucket
/// it ends up in. Every call uses up a sequence value, as in Python.
pub async fn add(
    conn: &mut sqlx::PgConnection,
    item: &NewQueueItem<'_>,
) -> Result<(i32, String), sqlx::Error> {
    // asyncpg encodes the float offset for an int8 parameter with int(): truncation.
    let offset = item.offset.trunc() as i64;
    let row: Option<(i32, String)> = sqlx::query_as(
        "INSERT INTO queue (command, priority, bucket, context, estimated_duration, suite,
                            refresh, requester, change_set, codebase)
         VALUES ($1, (SELECT COALESCE(MIN(priority), 0) FROM queue) + $2::bigint,
                 $3::queue_bucket, $4, $5, $6, $7, $8, $9, $10)
         ON CONFLICT (codebase, suite, coalesce(change_set, ''::text)) DO UPDATE SET
           context = EXCLUDED.context, priority = EXCLUDED.priority, bucket = EXCLUDED.bucket,
           estimated_duration = EXCLUDED.estimated_duration, refresh = EXCLUDED.refresh,
           requester = EXCLUDED.requester, command = EXCLUDED.command,
           codebase = EXCLUDED.codebase
         WHERE queue.bucket >= EXCLUDED.bucket
            OR (queue.bucket = EXCLUDED.bucket AND queue.priority >= EXCLUDED.priority)
         RETURNING id, bucket::text",
    )
    .bind(item.command)
    .bind(offset)
    .bind(item.bucket)
    .bind(item.context)
    .bind(item.estimated_duration)
    .bind(item.campaign)
    .bind(item.refresh)
    .bind(item.requester)
    .bind(item.change_set)
    .bind(item.codebase)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        return Ok(row);
    }
    // The existing row is more urgent and stays as it is.
    sqlx::query_as(
        "SELECT id, bucket::text FROM queue
         WHERE codebase = $1 AND suite = $2 AND coalesce(change_set, '') = $3",
    )
    .bind(item.codebase)
    .bind(item.campaign)
    .bind(item.change_set.unwrap_or(""))
    .fetch_one(&mut *conn)
    .await
}
