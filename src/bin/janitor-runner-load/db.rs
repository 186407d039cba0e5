//! The load tool's own SQL: the queries `seed` fills a database with.

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

// Items spread over the codebases with one change set each, so (codebase, campaign,
// change set) stays unique.
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

/// `Q` queue items spread over the codebases, each in its own change set.
pub async fn seed_queue(
    pool: &PgPool,
    items: u32,
    codebases: u32,
    campaign: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO queue (codebase, suite, command, priority, change_set, estimated_duration)
         SELECT 'load' || (1 + i % $2), $3, 'true', (i::bigint * 7919) % 100000, 'load-' || i,
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

/// Statistics for the freshly filled tables, so that the planner does not go by empty ones.
pub async fn analyze_seeded(pool: &PgPool) -> sqlx::Result<()> {
    sqlx::query("ANALYZE codebase, change_set, queue")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn queue_len(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM queue")
        .fetch_one(pool)
        .await
}
