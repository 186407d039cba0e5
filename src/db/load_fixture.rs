//! The load tool's fixture: the queries its `seed` fills a database with, and the ones its
//! `chaos` mode checks the runner's promises with afterwards. The runner itself never calls
//! these; they live here so that every query of the crate is in `db`.

use std::collections::HashSet;

use chrono::NaiveDateTime;
use sqlx::PgPool;

/// `K` codebases named `load<i>`, their branches under `branch_base`.
pub async fn seed_codebases(pool: &PgPool, codebases: u32, branch_base: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO codebase (name, url, branch_url, vcs_type, value)
         SELECT 'load' || i, $2 || 'load' || i, $2 || 'load' || i, 'git', 1 + i % 100
         FROM generate_series(1, $1) AS i
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(codebases as i32)
    .bind(branch_base)
    .execute(pool)
    .await?;
    Ok(())
}

/// `items` change sets named `load-<i>`, one per seeded item, so (codebase, campaign,
/// change set) stays unique.
pub async fn seed_change_sets(pool: &PgPool, items: u32, campaign: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO change_set (id, campaign)
         SELECT 'load-' || i, $2 FROM generate_series(1, $1) AS i ON CONFLICT DO NOTHING",
    )
    .bind(items as i32)
    .bind(campaign)
    .execute(pool)
    .await?;
    Ok(())
}

/// `Q` queue items spread over the codebases, each in its own change set. Priorities repeat
/// every 100,000 items; the items sharing one go to different codebases, so that neighbours in
/// the queue's order are different codebases as in a real queue (with the same codebase, the
/// concurrent finishes of neighbours queue on its `last_run` row).
pub async fn seed_queue(
    pool: &PgPool,
    items: u32,
    codebases: u32,
    campaign: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO queue (codebase, suite, command, priority, change_set, estimated_duration)
         SELECT 'load' || (1 + (i + i / 100000) % $2), $3, 'true', (i::bigint * 7919) % 100000, 'load-' || i,
                interval '1 second' * (30 + i % 600)
         FROM generate_series(1, $1) AS i
         ON CONFLICT DO NOTHING",
    )
    .bind(items as i32)
    .bind(codebases as i32)
    .bind(campaign)
    .execute(pool)
    .await?;
    Ok(())
}

/// One candidate per seeded item (same codebase, campaign and change set as its queue row),
/// so that a finish reschedules its item as a production runner's does.
pub async fn seed_candidates(
    pool: &PgPool,
    items: u32,
    codebases: u32,
    campaign: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO candidate (codebase, suite, command, change_set, value, success_chance)
         SELECT 'load' || (1 + (i + i / 100000) % $2), $3, 'true', 'load-' || i, 1 + i % 50, 0.5
         FROM generate_series(1, $1) AS i
         ON CONFLICT DO NOTHING",
    )
    .bind(items as i32)
    .bind(codebases as i32)
    .bind(campaign)
    .execute(pool)
    .await?;
    Ok(())
}

/// `per_item` finished runs for each seeded item, a day apart and a minute or two long, a
/// fifth of them failures: the history a reschedule reads. The schema's row triggers on `run`
/// are off for this insert (`session_replication_role = replica`, which needs a superuser:
/// the load tool's throwaway cluster): with them, each row's checks scan the still
/// unanalyzed table and the seed grows quadratically. What the triggers keep is then derived
/// by the schema's own functions, pair by pair and change set by change set, as a production
/// database would hold it: every pair's `last_run` row and every change set's state (without
/// them the first finishes met an empty, unanalyzed `last_run`, and the change set checks
/// scanned it whole).
pub async fn seed_past_runs(
    pool: &PgPool,
    items: u32,
    codebases: u32,
    campaign: &str,
    per_item: u32,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO run (id, command, result_code, start_time, finish_time, suite, codebase,
                          change_set, logfilenames, vcs_type)
         SELECT 'load-past-' || i || '-' || k, 'true',
                CASE WHEN (i + k) % 5 = 0 THEN 'build-failed' ELSE 'success' END,
                timestamp '2026-01-01' + interval '1 day' * k,
                timestamp '2026-01-01' + interval '1 day' * k + interval '1 second' * (60 + (i + k) % 60),
                $3, 'load' || (1 + (i + i / 100000) % $2), 'load-' || i, ARRAY['worker.log'], 'git'
         FROM generate_series(1, $1) AS i, generate_series(1, $4) AS k
         ON CONFLICT DO NOTHING",
    )
    .bind(items as i32)
    .bind(codebases as i32)
    .bind(campaign)
    .bind(per_item as i32)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    sqlx::query("ANALYZE run").execute(pool).await?;
    sqlx::query(
        "SELECT count(*) FROM (
             SELECT refresh_last_run(codebase, suite::text)
             FROM (SELECT DISTINCT codebase, suite FROM run) AS pairs) AS refreshed",
    )
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE last_run").execute(pool).await?;
    sqlx::query(
        "SELECT count(refresh_change_set_state(id)) FROM change_set
         WHERE EXISTS (SELECT FROM run WHERE run.change_set = change_set.id)",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Statistics for the freshly filled tables, so that the planner does not go by empty ones.
pub async fn analyze_seeded(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("ANALYZE codebase, change_set, queue, candidate, run, last_run")
        .execute(pool)
        .await?;
    Ok(())
}

/// How many items are queued.
pub async fn queue_len(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM queue")
        .fetch_one(pool)
        .await
}

/// The columns of a stored run the chaos checks look at.
#[derive(sqlx::FromRow)]
#[allow(missing_docs)] // the `run` table's own columns
pub struct RunRow {
    pub id: String,
    pub codebase: String,
    pub change_set: String,
    pub result_code: String,
    pub start_time: Option<NaiveDateTime>,
    pub finish_time: Option<NaiveDateTime>,
    pub logfilenames: Vec<String>,
}

/// Every stored run.
pub async fn runs(pool: &PgPool) -> sqlx::Result<Vec<RunRow>> {
    sqlx::query_as(
        "SELECT id, codebase, change_set, result_code, start_time, finish_time, logfilenames
         FROM run",
    )
    .fetch_all(pool)
    .await
}

/// The ids of the items still queued.
pub async fn queued_ids(pool: &PgPool) -> sqlx::Result<HashSet<i64>> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT id::bigint FROM queue")
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect())
}

/// How many change sets there are.
pub async fn change_set_count(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM change_set")
        .fetch_one(pool)
        .await
}

/// Change sets whose item left the queue without leaving a run behind.
pub async fn change_sets_without_queue_or_run(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM change_set c
         WHERE NOT EXISTS (SELECT 1 FROM queue q WHERE q.change_set = c.id)
           AND NOT EXISTS (SELECT 1 FROM run r WHERE r.change_set = c.id)",
    )
    .fetch_one(pool)
    .await
}

/// The database's own ceiling for one queue cycle: claim the next item as the runner orders
/// the queue and delete it, nothing else. Whether there was an item.
pub async fn claim_and_delete(pool: &PgPool) -> sqlx::Result<bool> {
    Ok(sqlx::query_scalar::<_, i64>(
        "DELETE FROM queue WHERE id = (
             SELECT id FROM queue ORDER BY bucket ASC, priority ASC, id ASC
             LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id::bigint",
    )
    .fetch_optional(pool)
    .await?
    .is_some())
}
