//! Table `queue` and view `queue_positions`.

use sqlx::{FromRow, PgConnection, PgPool};

/// A queue row as `GET /queue` lists it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct QueueEntry {
    /// Queue row id.
    pub id: i32,
    /// The codebase to run on.
    pub codebase: String,
    /// The campaign to run.
    pub campaign: String,
    /// Opaque context of the candidate it was queued for.
    pub context: Option<String>,
    /// The command the worker runs; `None` on rows written without one.
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

/// Which queue items the next-item query steps over.
#[derive(Debug, Clone, Copy)]
pub enum Claimed<'a> {
    /// These ids (claims kept in Redis, rows held by other assigners, rows passed over).
    Ids(&'a [i64]),
    /// The rows of `runner_active_run` (the PostgreSQL store), and these ids besides.
    ActiveRunTableAnd(&'a [i64]),
}

/// The hosts whose codebases are not handed out.
#[derive(Debug, Clone, Copy)]
pub struct ExcludedHosts<'a> {
    /// These hosts (the avoided ones, and the rate-limited ones of a store outside the
    /// database).
    pub listed: &'a [String],
    /// Also the hosts `runner_rate_limited_host` blocks past this time (the PostgreSQL
    /// store's), read by the same statement.
    pub rate_limited_at: Option<chrono::NaiveDateTime>,
}

/// Up to this many claimed ids are a parameter of a prepared statement; more are inlined as
/// a constant array, which PostgreSQL (15+) checks with a hash rather than a scan per row.
const CLAIMED_IDS_AS_PARAMETER: usize = 64;

/// The next queue item to hand out, with its codebase's VCS facts, as the statement's
/// snapshot shows it. Nothing is locked: the claim that follows (a statement of its own)
/// re-reads the row and is what keeps two assigners from taking the same item.
/// Skips claimed items and items whose branch host is excluded; `codebase` and `campaign`
/// filter when given. Order: bucket, priority, id.
pub async fn next_item(
    conn: &mut sqlx::PgConnection,
    excluded: ExcludedHosts<'_>,
    claimed: Claimed<'_>,
    codebase: Option<&str>,
    campaign: Option<&str>,
) -> Result<Option<NextItem>, sqlx::Error> {
    // Skipping claimed rows must stay cheap with thousands of active runs: the PostgreSQL
    // store is an index anti-join; a few ids are a parameter (one plan, reused), many are
    // inlined. The ids are integers formatted here, so nothing from outside reaches the SQL
    // text.
    let (claims_table, ids) = match claimed {
        Claimed::Ids(ids) => (false, ids),
        Claimed::ActiveRunTableAnd(ids) => (true, ids),
    };
    let mut conditions = Vec::with_capacity(5);
    if claims_table {
        conditions.push(
            "NOT EXISTS (SELECT FROM runner_active_run r WHERE r.queue_id = queue.id)".to_string(),
        );
    }
    // One decision: the ids' filter, the ids bound as `$4`, and whether the statement is
    // worth preparing (an inlined list makes every text new).
    let (parameter_ids, persistent): (&[i64], bool) = match ids {
        [] => (&[], true),
        ids if ids.len() > CLAIMED_IDS_AS_PARAMETER => {
            let list: Vec<String> = ids.iter().map(i64::to_string).collect();
            conditions.push(format!(
                "queue.id::int8 <> ALL ('{{{}}}'::int8[])",
                list.join(",")
            ));
            (&[], false)
        }
        ids => {
            conditions.push("queue.id::int8 <> ALL ($4::int8[])".to_string());
            (ids, true)
        }
    };
    // Only the tests that can exclude a row are in the text. A test whose parameter says
    // "no filter" (`$2 IS NULL OR ...`) would be folded away by a plan made for those
    // values, so PostgreSQL would plan the statement afresh at every call (0.2 ms, a sixth
    // of the database's work per cycle) rather than keep the one generic plan.
    if codebase.is_some() {
        conditions.push("queue.codebase = $2".to_string());
    }
    if campaign.is_some() {
        conditions.push("queue.suite = $3".to_string());
    }
    // Hosts are excluded by the list, or by the PostgreSQL store's table (an uncorrelated
    // subquery: read once per statement, possibly empty, hence the short-circuit). Only then
    // does the scan read a row's host (the schema's `hostname`, generated from the branch
    // URL). The hosts never hold NULL (a primary key, and lists built in Rust), so a NULL
    // comparison means "no excluded host", as a missing host does.
    let hosts = if excluded.rate_limited_at.is_some() {
        Some("($1::text[] || ARRAY(SELECT host FROM runner_rate_limited_host WHERE until > $5))")
    } else if excluded.listed.is_empty() {
        None
    } else {
        Some("$1::text[]")
    };
    if let Some(hosts) = hosts {
        conditions.push(format!(
            "(cardinality({hosts}) = 0
              OR NOT coalesce(
                   (SELECT hostname FROM codebase WHERE codebase.name = queue.codebase)
                     = ANY({hosts}),
                   false))"
        ));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    // The row is chosen on `queue` alone, its codebase joined afterwards: the claimed rows at
    // the head of the queue (one per active run) are stepped over without reading their
    // codebases.
    let sql = format!(
        "SELECT {ITEM_COLUMNS}
         FROM (SELECT * FROM queue
               {filter}
               ORDER BY queue.bucket ASC, queue.priority ASC, queue.id ASC
               LIMIT 1) AS queue
         LEFT JOIN codebase ON codebase.name = queue.codebase"
    );
    // Parameters the text leaves out still get a type, so every variant binds the same five.
    let query = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .persistent(persistent)
        .bind(excluded.listed)
        .bind(codebase)
        .bind(campaign)
        .bind(parameter_ids)
        .bind(excluded.rate_limited_at);
    query.fetch_optional(conn).await
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
    /// Queue row id.
    pub id: i64,
    /// Opaque context of the candidate it was queued for.
    pub context: Option<String>,
    /// The command the worker runs; `None` on rows written without one.
    pub command: Option<String>,
    /// The estimated duration in microseconds, if known.
    pub estimated_micros: Option<i64>,
    /// The campaign to run.
    pub campaign: String,
    /// Start afresh instead of resuming from an earlier run's branch.
    pub refresh: bool,
    /// Who or what asked for the run.
    pub requester: Option<String>,
    /// The change set the run belongs to, if any.
    pub change_set: Option<String>,
    /// The codebase to run on.
    pub codebase: String,
    /// The codebase's upstream branch URL, if recorded.
    pub branch_url: Option<String>,
    /// Path within the branch where the codebase lives.
    pub subpath: Option<String>,
    /// The codebase's VCS type (`git`, `bzr`, ...), if recorded.
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

/// What `Queue.add` upserts.
#[derive(Debug, Clone, PartialEq)]
pub struct NewQueueItem<'a> {
    /// The codebase to run on.
    pub codebase: &'a str,
    /// The campaign to run.
    pub campaign: &'a str,
    /// The change set the run belongs to, if any; one row per (codebase, campaign, change set).
    pub change_set: Option<&'a str>,
    /// The command the worker runs.
    pub command: &'a str,
    /// Truncated toward zero and added to the queue's lowest priority (queue-and-scheduling.md
    /// §1.3).
    pub offset: f64,
    /// The bucket (`queue_bucket`) to queue in; earlier buckets run first.
    pub bucket: &'a str,
    /// Opaque context of the candidate.
    pub context: Option<&'a str>,
    /// How long the run is expected to take.
    pub estimated_duration: Option<sqlx::postgres::types::PgInterval>,
    /// Start afresh instead of resuming from an earlier run's branch.
    pub refresh: bool,
    /// Who or what asked for the run.
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

/// A queue row without a change set, as the bulk scheduler reads it before its upserts.
#[derive(Debug, Clone, PartialEq, Eq, FromRow, serde::Serialize, serde::Deserialize)]
pub struct BulkRow {
    /// Queue row id.
    pub id: i32,
    /// The codebase to run on.
    pub codebase: String,
    /// The campaign to run.
    pub campaign: String,
    /// The bucket the row is in.
    pub bucket: String,
    /// Priority within the bucket; lower runs first.
    pub priority: i64,
    /// The command the worker runs.
    pub command: Option<String>,
    /// Opaque context of the candidate.
    pub context: Option<String>,
    /// The estimated duration in microseconds.
    pub duration: Option<i64>,
    /// Who or what asked for the run.
    pub requester: Option<String>,
    /// Start afresh instead of resuming (`NULL` counts as false).
    pub refresh: Option<bool>,
}

/// The rows a bulk upsert can hit (those without a change set), and the lowest priority of
/// the others, which stands for all of them in `MIN(priority)`.
pub async fn bulk_rows(
    conn: &mut PgConnection,
) -> Result<(Option<i64>, Vec<BulkRow>), sqlx::Error> {
    let others_min: Option<i64> =
        sqlx::query_scalar("SELECT min(priority) FROM queue WHERE coalesce(change_set, '') <> ''")
            .fetch_one(&mut *conn)
            .await?;
    let rows = sqlx::query_as(
        "SELECT id, codebase, suite::text AS campaign, bucket::text AS bucket, priority,
                command, context,
                (extract(epoch FROM estimated_duration) * 1000000)::bigint AS duration,
                requester, refresh
         FROM queue WHERE coalesce(change_set, '') = ''",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok((others_min, rows))
}

/// Keeps other writers out of the queue until the transaction ends; readers go on.
pub async fn lock_for_bulk(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("LOCK TABLE queue IN SHARE ROW EXCLUSIVE MODE")
        .execute(conn)
        .await
        .map(|_| ())
}

/// Uses up `count` values of the queue's id sequence, returned in ascending order.
pub async fn take_ids(conn: &mut PgConnection, count: usize) -> Result<Vec<i64>, sqlx::Error> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT coalesce(array_agg(nextval('queue_id_seq')::bigint), '{}')
         FROM generate_series(1, $1::int)",
    )
    .bind(i32::try_from(count).unwrap_or(i32::MAX))
    .fetch_one(conn)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// Queue rows as column arrays, for `unnest`.
#[derive(Debug, Default)]
pub struct QueueColumns {
    /// Queue row ids (new rows take theirs from [`take_ids`]).
    pub id: Vec<i32>,
    /// The codebases to run on.
    pub codebase: Vec<String>,
    /// The campaigns to run.
    pub campaign: Vec<String>,
    /// The commands the worker runs.
    pub command: Vec<String>,
    /// Priorities within the buckets.
    pub priority: Vec<i64>,
    /// Buckets, as `queue_bucket` names.
    pub bucket: Vec<String>,
    /// Opaque candidate contexts.
    pub context: Vec<Option<String>>,
    /// The duration as asyncpg encodes a timedelta: whole days and the rest in microseconds.
    pub days: Vec<i32>,
    /// The rest of the duration below a day, in microseconds.
    pub micros: Vec<i64>,
    /// Who or what asked for each run.
    pub requester: Vec<String>,
}

/// Inserts these rows (not refreshing).
pub async fn insert_rows(conn: &mut PgConnection, rows: &QueueColumns) -> Result<(), sqlx::Error> {
    let statement = format!(
        "INSERT INTO queue (id, codebase, suite, command, priority, bucket, context,
                            estimated_duration, refresh, requester)
         SELECT id, codebase, suite, command, priority, bucket::queue_bucket, context,
                make_interval(days => days) + micros * interval '1 microsecond', false,
                requester
         FROM {UNNEST_COLUMNS}"
    );
    bind_columns(sqlx::query(sqlx::AssertSqlSafe(statement)), rows)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Overwrites the rows with these ids (their codebase and campaign stay as they are).
pub async fn update_rows(conn: &mut PgConnection, rows: &QueueColumns) -> Result<(), sqlx::Error> {
    let statement = format!(
        "UPDATE queue SET command = t.command, priority = t.priority,
                bucket = t.bucket::queue_bucket, context = t.context,
                estimated_duration = make_interval(days => t.days)
                                     + t.micros * interval '1 microsecond',
                refresh = false, requester = t.requester
         FROM {UNNEST_COLUMNS}
         WHERE queue.id = t.id"
    );
    bind_columns(sqlx::query(sqlx::AssertSqlSafe(statement)), rows)
        .execute(conn)
        .await
        .map(|_| ())
}

/// [`QueueColumns`] as a table `t`, bound by [`bind_columns`].
const UNNEST_COLUMNS: &str = "unnest($1::int[], $2::text[], $3::text[], $4::text[], $5::bigint[],
                 $6::text[], $7::text[], $8::int[], $9::bigint[], $10::text[])
          AS t(id, codebase, suite, command, priority, bucket, context, days, micros, requester)";

fn bind_columns<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    rows: &'q QueueColumns,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(&rows.id)
        .bind(&rows.codebase)
        .bind(&rows.campaign)
        .bind(&rows.command)
        .bind(&rows.priority)
        .bind(&rows.bucket)
        .bind(&rows.context)
        .bind(&rows.days)
        .bind(&rows.micros)
        .bind(&rows.requester)
}

/// The advisory lock key queue writers hold (shared) until they commit; see migration 4.
const QUEUE_WRITERS_LOCK: i64 = 7_598_263_571_042_161_923;

/// The queue's version: `runner_queue_version`, bumped by every statement that changes the
/// queue (0 before the first).
pub async fn version<'c>(executor: impl sqlx::PgExecutor<'c>) -> Result<i64, sqlx::Error> {
    // `last_value` moves with every bump, committed or not; `is_called` is false only before
    // the first one.
    let (value, called): (i64, bool) =
        sqlx::query_as("SELECT last_value, is_called FROM runner_queue_version")
            .fetch_one(executor)
            .await?;
    Ok(if called { value } else { 0 })
}

/// Takes the queue writers' lock exclusively if no writer holds it; whether it did.
pub async fn try_lock_writers(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(QUEUE_WRITERS_LOCK)
        .fetch_one(conn)
        .await
}

/// Releases the lock [`try_lock_writers`] took (a no-op if this session does not hold it).
pub async fn unlock_writers(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(QUEUE_WRITERS_LOCK)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Makes the current transaction a read-only snapshot (its first read fixes it).
pub async fn snapshot_isolation(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(conn)
        .await
        .map(|_| ())
}

/// (codebase, campaign, estimated duration in µs) of every row, in run order (bucket,
/// priority, id), sorted by the database so the bucket order is the enum's.
pub async fn run_order(
    conn: &mut PgConnection,
) -> Result<Vec<(String, String, Option<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT codebase, suite::text,
                (extract(epoch FROM estimated_duration) * 1000000)::bigint
         FROM queue ORDER BY bucket, priority, id",
    )
    .fetch_all(conn)
    .await
}
