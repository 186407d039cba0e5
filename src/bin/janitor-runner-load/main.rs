//! Load tool for a running runner: `seed` fills a database with codebases and queue items;
//! `run` drives N simulated workers through assign → finish (with a small log) and reports
//! cycles per second and p50/p95/p99 latency of each call. Bounded in time and count.
//! `chaos` runs two runners under load while injecting faults, and checks what they promise.

mod chaos;
mod cpu;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use janitor_runner::db::load_fixture as db;

#[derive(Debug, Parser)]
#[command(
    name = "janitor-runner-load",
    about = "Seed a runner database and measure assign/finish cycles"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Insert K codebases and Q queue items (campaign `--campaign`, command `true`).
    Seed {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[command(flatten)]
        fixture: Fixture,
    },
    /// Simulate workers against a runner's internal app.
    Run {
        #[arg(long, default_value = "http://127.0.0.1:9911")]
        runner_url: String,
        #[arg(long, default_value_t = 8)]
        workers: usize,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// Stop after this many cycles in all.
        #[arg(long, default_value_t = 1_000_000)]
        max_cycles: usize,
        /// Size of the log file each finish uploads, in bytes.
        #[arg(long, default_value_t = 4096)]
        log_size: usize,
        /// Measure the database's claim+delete ceiling first, on this database (the
        /// runner's), for `--ceiling-seconds` at the same concurrency; the cycles are then
        /// also reported as a share of it. It deletes the items it claims.
        #[arg(long, value_name = "DATABASE_URL")]
        ceiling: Option<String>,
        /// How long the ceiling is measured.
        #[arg(long, default_value_t = 10)]
        ceiling_seconds: u64,
        /// The runner's process id: report its CPU per cycle.
        #[arg(long)]
        runner_pid: Option<u32>,
        /// PostgreSQL's postmaster process id: report its CPU and its children's per cycle.
        #[arg(long)]
        postgres_pid: Option<u32>,
    },
    /// The database's bare ceiling: N connections, each claiming the queue's next item
    /// (`FOR UPDATE SKIP LOCKED`) and deleting it, nothing else; prints `ceiling: N/s`. It
    /// deletes the items it claims.
    Ceiling {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        #[arg(long, default_value_t = 8)]
        workers: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Two runners, simulated workers and injected faults (runner kills, PostgreSQL and
    /// Redis restarts, a log-store outage) on private servers; then the invariants. Exits
    /// non-zero when one is violated.
    Chaos(chaos::ChaosArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Seed {
            database_url,
            fixture,
        } => seed(&database_url, &fixture).await,
        Command::Run {
            runner_url,
            workers,
            seconds,
            max_cycles,
            log_size,
            ceiling,
            ceiling_seconds,
            runner_pid,
            postgres_pid,
        } => {
            let ceiling = match ceiling {
                Some(url) => Some(
                    measure_ceiling(&url, workers, Duration::from_secs(ceiling_seconds)).await?,
                ),
                None => None,
            };
            let watched = Watched {
                runner: runner_pid.map(|pid| cpu::Watched::new(pid, false)),
                postgres: postgres_pid.map(|pid| cpu::Watched::new(pid, true)),
            };
            run(
                &runner_url,
                workers,
                Duration::from_secs(seconds),
                max_cycles,
                log_size,
                ceiling,
                watched,
            )
            .await
        }
        Command::Ceiling {
            database_url,
            workers,
            seconds,
        } => measure_ceiling(&database_url, workers, Duration::from_secs(seconds))
            .await
            .map(|_| ()),
        Command::Chaos(args) => chaos::chaos(args).await,
    }
}

/// What `seed` fills the database with.
#[derive(Debug, clap::Args)]
struct Fixture {
    #[arg(long, default_value_t = 20_000)]
    codebases: u32,
    #[arg(long, default_value_t = 400_000)]
    items: u32,
    #[arg(long, default_value = "generic")]
    campaign: String,
    /// Base of the codebases' branch URLs (`<base>load<i>`). The runner opens each
    /// upstream branch before assigning it; the default names a port nothing listens on,
    /// so that probe fails at once and the figures measure the runner alone. Point it at a
    /// git server to include probing.
    #[arg(long, default_value = "http://127.0.0.1:9/")]
    branch_base: String,
    /// Also a candidate per item, so that each finish reschedules its item (the
    /// production path: history, codebase value, queue upsert).
    #[arg(long)]
    candidates: bool,
    /// Finished runs per item already in the history (with `--candidates`, what each
    /// reschedule reads).
    #[arg(long, default_value_t = 0)]
    past_runs: u32,
}

async fn seed(database_url: &str, fixture: &Fixture) -> anyhow::Result<()> {
    let Fixture {
        codebases,
        items,
        ref campaign,
        ref branch_base,
        candidates,
        past_runs,
    } = *fixture;
    if codebases == 0 {
        bail!("--codebases must be at least 1");
    }
    let pool = janitor_runner::db::connect(database_url, 2)
        .await
        .context("connect")?;
    janitor_runner::db::migrate(&pool)
        .await
        .context("migrate")?;
    let started = Instant::now();
    db::seed_codebases(&pool, codebases, branch_base).await?;
    db::seed_change_sets(&pool, items, campaign).await?;
    db::seed_queue(&pool, items, codebases, campaign).await?;
    if candidates {
        db::seed_candidates(&pool, items, codebases, campaign).await?;
    }
    if past_runs > 0 {
        db::seed_past_runs(&pool, items, codebases, campaign, past_runs).await?;
    }
    db::analyze_seeded(&pool).await?;
    let queued = db::queue_len(&pool).await?;
    println!(
        "seeded {codebases} codebases and {items} items in {:.1} s; queue holds {queued}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

const BOUNDARY: &str = "janitor-runner-load-boundary";

fn finish_body(log: &[u8]) -> Vec<u8> {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    let result = format!(
        r#"{{"description": "load test", "codemod": {{}}, "start_time": "{now}", "finish_time": "{now}", "target": {{"name": "generic", "details": {{}}}}}}"#
    );
    let mut body = Vec::with_capacity(log.len() + 1024);
    body.extend(format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"result.json\"\r\n\
         Content-Type: application/json\r\n\r\n{result}\r\n"
    ).as_bytes());
    body.extend(format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"worker.log\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    ).as_bytes());
    body.extend(log);
    body.extend(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

#[derive(Default)]
struct Samples {
    assign: Vec<Duration>,
    finish: Vec<Duration>,
    empty: usize,
}

async fn worker(
    client: reqwest::Client,
    base: String,
    deadline: Instant,
    budget: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    log: Vec<u8>,
) -> anyhow::Result<Samples> {
    let mut samples = Samples::default();
    while Instant::now() < deadline {
        if budget
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| n.checked_sub(1),
            )
            .is_err()
        {
            break;
        }
        let started = Instant::now();
        let response = client
            .post(format!("{base}/active-runs"))
            .json(&serde_json::json!({"node": "load", "archs": ["amd64"]}))
            .send()
            .await?;
        let status = response.status();
        if status.as_u16() == 503 {
            samples.empty += 1;
            break;
        }
        if status.as_u16() != 201 {
            bail!(
                "assign answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        let assignment: serde_json::Value = response.json().await?;
        samples.assign.push(started.elapsed());
        let id = assignment["id"].as_str().context("assignment without id")?;
        let started = Instant::now();
        let response = client
            .post(format!("{base}/active-runs/{id}/finish"))
            .header(
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .body(finish_body(&log))
            .send()
            .await?;
        if response.status().as_u16() != 201 {
            bail!(
                "finish answered {}: {}",
                response.status(),
                response.text().await.unwrap_or_default()
            );
        }
        samples.finish.push(started.elapsed());
    }
    Ok(samples)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Processes whose CPU a run reports per cycle.
#[derive(Debug, Clone, Copy)]
struct Watched {
    runner: Option<cpu::Watched>,
    postgres: Option<cpu::Watched>,
}

/// Claims and deletes queue items on `workers` connections for `duration`; prints and
/// returns the rate.
async fn measure_ceiling(
    database_url: &str,
    workers: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let pool = janitor_runner::db::connect(database_url, u32::try_from(workers)?)
        .await
        .context("cannot connect to PostgreSQL")?;
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let mut done = 0_u64;
                while Instant::now() < deadline && db::claim_and_delete(&pool).await? {
                    done += 1;
                }
                Ok::<_, sqlx::Error>(done)
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!("ceiling: {rate:.0}/s ({total} claims and deletes, {workers} connections)");
    Ok(rate)
}

async fn run(
    runner_url: &str,
    workers: usize,
    duration: Duration,
    max_cycles: usize,
    log_size: usize,
    ceiling: Option<f64>,
    watched: Watched,
) -> anyhow::Result<()> {
    if workers == 0 {
        bail!("--workers must be at least 1");
    }
    let myself = cpu::Watched::new(std::process::id(), false);
    let cpu_before = (
        watched.runner.map(cpu::Watched::used).transpose()?,
        watched.postgres.map(cpu::Watched::used).transpose()?,
        Some(myself.used()?),
        Some(cpu::machine_idle()?),
    );
    let resident_before = watched
        .runner
        .map(|runner| cpu::resident(runner.pid()))
        .transpose()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = runner_url.trim_end_matches('/').to_string();
    let log: Vec<u8> = (0..log_size)
        .map(|i| b"janitor load test log line\n"[i % 27])
        .collect();
    let budget = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(max_cycles));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            tokio::spawn(worker(
                client.clone(),
                base.clone(),
                deadline,
                budget.clone(),
                log.clone(),
            ))
        })
        .collect();
    let mut all = Samples::default();
    for task in tasks {
        let samples = task.await??;
        all.assign.extend(samples.assign);
        all.finish.extend(samples.finish);
        all.empty += samples.empty;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = (
        watched.runner.map(cpu::Watched::used).transpose()?,
        watched.postgres.map(cpu::Watched::used).transpose()?,
        Some(myself.used()?),
        Some(cpu::machine_idle()?),
    );
    all.assign.sort();
    all.finish.sort();
    println!(
        "workers: {workers}, elapsed: {elapsed:.1} s, cycles: {}",
        all.finish.len()
    );
    let rate = all.finish.len() as f64 / elapsed;
    println!("cycles/s: {rate:.1}");
    if let Some(ceiling) = ceiling {
        println!("share of the ceiling: {:.1} %", 100.0 * rate / ceiling);
    }
    let cycles = all.finish.len().max(1) as f64;
    // The load tool's own CPU and the machine's idle time say how much of the machine the
    // runner and PostgreSQL had, and whether it was saturated.
    for (name, before, after) in [
        ("runner CPU", cpu_before.0, cpu_after.0),
        ("PostgreSQL CPU", cpu_before.1, cpu_after.1),
        ("load tool CPU", cpu_before.2, cpu_after.2),
        ("machine idle", cpu_before.3, cpu_after.3),
    ] {
        if let (Some(before), Some(after)) = (before, after) {
            let micros = (after.saturating_sub(before)).as_secs_f64() * 1e6 / cycles;
            println!("{name} per cycle: {micros:.0} us");
        }
    }
    if let (Some((before, _)), Some(runner)) = (resident_before, watched.runner) {
        let (now, peak) = cpu::resident(runner.pid())?;
        let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
        println!(
            "runner resident memory: {:.1} MiB before, {:.1} MiB after, peak {:.1} MiB",
            mib(before),
            mib(now),
            mib(peak)
        );
    }
    for (name, samples) in [("assign", &all.assign), ("finish", &all.finish)] {
        println!(
            "{name}: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms ({} calls)",
            percentile(samples, 50.0),
            percentile(samples, 95.0),
            percentile(samples, 99.0),
            samples.len()
        );
    }
    if all.empty > 0 {
        println!("queue ran empty for {} workers", all.empty);
    }
    Ok(())
}
