//! Scheduling against PostgreSQL at production scale: the bulk scheduler over 100,000
//! candidates on 20,000 codebases with 1,000,000 historical runs, one `do_schedule_regular`,
//! and a `/queue/position` lookup on a 400,000-row queue.
//!
//! Needs `DATABASE_URL` (a server where it may create the database `jr_bench_scheduling`;
//! seeding it the first time takes a minute). Under `cargo test` the benchmarks are skipped:
//! only `cargo bench --bench scheduling` seeds and measures.

// criterion_group! defines the bench functions without doc comments.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use janitor_runner::schedule::bulk::{BulkOptions, bulk_schedule};
use janitor_runner::schedule::engine::{RegularRequest, do_schedule_regular};
use sqlx::PgPool;

const DATABASE: &str = "jr_bench_scheduling";
const CODEBASES: i32 = 20_000;
const CAMPAIGNS: [&str; 5] = ["c1", "c2", "c3", "c4", "c5"];
const RUNS: i32 = 1_000_000;
const QUEUE: i32 = 400_000;

fn benchmarking() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

async fn pool() -> Option<PgPool> {
    let admin = std::env::var("DATABASE_URL").ok()?;
    let admin_pool = janitor_runner::db::connect(&admin, 1).await.ok()?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&admin_pool)
            .await
            .ok()?;
    if !exists {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
            .execute(&admin_pool)
            .await
            .ok()?;
    }
    let mut url = url::Url::parse(&admin).ok()?;
    url.set_path(&format!("/{DATABASE}"));
    let pool = janitor_runner::db::connect(url.as_str(), 4).await.ok()?;
    janitor_runner::db::migrate(&pool).await.ok()?;
    seed(&pool).await;
    Some(pool)
}

async fn seed(pool: &PgPool) {
    let seeded: i64 = sqlx::query_scalar("SELECT count(*) FROM run")
        .fetch_one(pool)
        .await
        .expect("count runs");
    if seeded >= i64::from(RUNS) {
        return;
    }
    eprintln!("seeding {DATABASE}: {CODEBASES} codebases, 100,000 candidates, {RUNS} runs");
    let campaigns: Vec<String> = CAMPAIGNS
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
    let statements = [
        "TRUNCATE run, candidate, queue, codebase, change_set, named_publish_policy CASCADE",
        "INSERT INTO named_publish_policy (name, per_branch_policy) VALUES
           ('propose', ARRAY[ROW('main', 'propose', NULL)::branch_publish_policy])",
        "INSERT INTO codebase (name, value) SELECT 'cb' || i, 1 + i % 1000 FROM generate_series(1, $1) i",
        "INSERT INTO change_set (id, campaign) SELECT 'cs-' || c, c FROM unnest($2::text[]) c",
        "INSERT INTO candidate (codebase, suite, command, value, context, publish_policy, success_chance)
         SELECT 'cb' || i, c, 'true', 1 + i % 50, 'ctx' || (i % 7), 'propose', 0.5
         FROM generate_series(1, $1) i, unnest($2::text[]) c",
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(CODEBASES)
            .bind(&campaigns)
            .execute(pool)
            .await
            .expect("seed");
    }
    // Ten runs per candidate, mixed outcomes and durations.
    sqlx::query(
        "INSERT INTO run (id, codebase, suite, command, start_time, finish_time, result_code,
                          context, instigated_context, failure_transient, logfilenames, change_set)
         SELECT 'r' || n, 'cb' || (1 + n % $1), c.c, 'true',
                timestamp '2026-01-01' + n * interval '1 second',
                timestamp '2026-01-01' + n * interval '1 second' + (30 + n % 600) * interval '1 second',
                (ARRAY['success', 'build-failed', 'worker-failure', 'nothing-to-do'])[1 + n % 4],
                'ctx' || (n % 7), 'ctx' || (n % 5), CASE WHEN n % 13 = 0 THEN true END, '{}',
                'cs-' || c.c
         FROM generate_series(0, $2 - 1) n
         JOIN LATERAL (SELECT ($3::text[])[1 + (n / $1) % 5] AS c) c ON true",
    )
    .bind(CODEBASES)
    .bind(RUNS)
    .bind(&campaigns)
    .execute(pool)
    .await
    .expect("seed runs");
    sqlx::query(
        "INSERT INTO change_set (id, campaign)
         SELECT 'q' || i, ($2::text[])[1 + i % 5] FROM generate_series(1, $1) i",
    )
    .bind(QUEUE)
    .bind(&campaigns)
    .execute(pool)
    .await
    .expect("seed change sets");
    sqlx::query(
        "INSERT INTO queue (codebase, suite, command, priority, change_set, estimated_duration)
         SELECT 'cb' || (1 + i % $1), ($3::text[])[1 + i % 5], 'true', (i::bigint * 7919) % 100000,
                'q' || i, interval '1 second' * (30 + i % 600)
         FROM generate_series(1, $2) i",
    )
    .bind(CODEBASES)
    .bind(QUEUE)
    .bind(&campaigns)
    .execute(pool)
    .await
    .expect("seed queue");
    sqlx::query("ANALYZE").execute(pool).await.expect("analyze");
}

fn scheduling(c: &mut Criterion) {
    if !benchmarking() {
        eprintln!("scheduling benchmarks: skipped (run them with cargo bench --bench scheduling)");
        return;
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(pool) = runtime.block_on(pool()) else {
        eprintln!("scheduling benchmarks: skipped (DATABASE_URL not set or not reachable)");
        return;
    };
    let now = janitor_runner::time::parse_timestamp("2026-11-23T12:00:00").expect("now");
    let mut group = c.benchmark_group("scheduling");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(60));
    // Three states of the queue the bulk scheduler can meet: its rows already as it would
    // write them (a re-run with no new history), every row to be rewritten (each has a
    // different priority), and no rows yet (all 100,000 inserted). Only the scheduler is
    // timed; the untimed preparation vacuums the queue so that dead rows of earlier
    // iterations do not pile up in the measurement.
    for (name, prepare) in [
        (
            "bulk 100k candidates, 20k codebases, 1M runs, rows unchanged",
            &["VACUUM queue"][..],
        ),
        (
            "bulk 100k candidates, 20k codebases, 1M runs, every row updated",
            &[
                "UPDATE queue SET priority = priority + 1 WHERE change_set IS NULL",
                "VACUUM queue",
            ][..],
        ),
        (
            "bulk 100k candidates, 20k codebases, 1M runs, every row inserted",
            &["DELETE FROM queue WHERE change_set IS NULL", "VACUUM queue"][..],
        ),
    ] {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter_custom(|iterations| {
                let pool = pool.clone();
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iterations {
                        for statement in prepare {
                            sqlx::raw_sql(sqlx::AssertSqlSafe(*statement))
                                .execute(&pool)
                                .await
                                .expect("prepare");
                        }
                        let started = std::time::Instant::now();
                        bulk_schedule(&pool, now, &BulkOptions::default(), |_, _| {})
                            .await
                            .expect("bulk");
                        timed += started.elapsed();
                    }
                    timed
                }
            });
        });
    }
    group.finish();
    let mut group = c.benchmark_group("scheduling-single");
    group.bench_function("do_schedule_regular", |b| {
        b.to_async(&runtime).iter(|| async {
            let mut conn = pool.acquire().await.expect("connection");
            do_schedule_regular(
                &mut conn,
                now,
                RegularRequest {
                    codebase: "cb4242",
                    campaign: "c3",
                    ..RegularRequest::default()
                },
            )
            .await
            .expect("schedule")
        });
    });
    // What `GET /queue/position` does: the in-memory positions, checked against the queue
    // version (one tiny query), while the queue is not changing. The queue holds the 400k
    // seeded change-set rows plus the 100k rows the bulk benchmarks wrote.
    let positions = janitor_runner::queue::positions::QueuePositions::new();
    let built = runtime
        .block_on(positions.rebuild(&pool))
        .expect("position snapshot");
    assert!(built, "no queue writer should be running");
    group.bench_function("queue position, 500k rows", |b| {
        b.to_async(&runtime).iter(|| async {
            positions
                .lookup(&pool, "cb17777", "c2")
                .await
                .expect("position")
        });
    });
    // The fallback while the queue changes: counting the rows ahead in SQL.
    group.bench_function("queue position, 500k rows, SQL count", |b| {
        b.to_async(&runtime).iter(|| async {
            janitor_runner::db::queue::position(&pool, "cb17777", "c2")
                .await
                .expect("position")
        });
    });
    group.finish();
    let mut group = c.benchmark_group("scheduling-rebuild");
    group.sample_size(10);
    group.bench_function("queue position snapshot rebuild, 500k rows", |b| {
        b.to_async(&runtime)
            .iter(|| async { positions.rebuild(&pool).await.expect("rebuild") });
    });
    group.finish();
}

criterion_group!(benches, scheduling);
criterion_main!(benches);
