//! One store's run: a fresh cluster, two runners on it, the workers and the fault schedule;
//! then the runs are left to settle and the invariants are checked.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::faults::{Lab, fault_schedule};
use super::invariants::check_invariants;
use super::report::Report;
use super::servers::{Postgres, Redis, RunnerProcess, free_port};
use super::worker::{Shared, Worker, serve_backchannels};
use super::{ChaosArgs, Rng, StoreMode};

pub(super) async fn run_one(
    args: &ChaosArgs,
    binary: &Path,
    store: StoreMode,
) -> anyhow::Result<Report> {
    let dir = tempfile::Builder::new()
        .prefix("janitor-runner-chaos-")
        .tempdir()?;
    let root = dir.path().to_path_buf();
    let outcome = run_in(args, binary, store, &root).await;
    if args.keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    outcome
}

async fn run_in(
    args: &ChaosArgs,
    binary: &Path,
    store: StoreMode,
    root: &Path,
) -> anyhow::Result<Report> {
    let pg = Postgres::create(root).await?;
    let result = load_with_faults(args, binary, store, root, &pg).await;
    pg.stop().await;
    result
}

async fn load_with_faults(
    args: &ChaosArgs,
    binary: &Path,
    store: StoreMode,
    root: &Path,
    pg: &Postgres,
) -> anyhow::Result<Report> {
    let mut rng = Rng::new(args.seed);
    let database_url = pg.url();
    let mut lab = prepare(args, binary, store, root, pg).await?;

    let shared = Shared::new(args.workers);
    let backchannel_port = serve_backchannels(shared.current.clone()).await?;
    let started = Instant::now();
    let workers = spawn_workers(
        args.workers,
        &lab.runners,
        backchannel_port,
        &shared,
        &mut rng,
    );

    let mut report = Report {
        store: format!("{store:?}"),
        ..Report::default()
    };
    let duration = Duration::from_secs(args.seconds);
    let schedule = fault_schedule(args, store, &mut rng);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    for (at, fault) in schedule {
        let wait = (started + at).saturating_duration_since(Instant::now());
        tokio::time::sleep(wait).await;
        lab.inject(fault, &shared, &client, &mut report).await?;
    }
    tokio::time::sleep((started + duration).saturating_duration_since(Instant::now())).await;
    shared.stop.store(true, Ordering::Relaxed);
    for task in workers {
        let _ = task.await;
    }
    report.seconds = started.elapsed().as_secs_f64();

    let pool = janitor_runner::db::connect(&database_url, 2).await?;
    if args.await_reaping {
        await_reaping(&shared, &client, &lab.runners[0].url(), &mut report).await?;
    }
    let active = active_runs(&client, &lab.runners[0].url()).await?;
    if let (StoreMode::Mirrored, Some(redis)) = (store, &lab.redis) {
        check_redis_copy(&client, &lab.runners[0].url(), &redis.url(), &mut report).await;
    }
    for runner in &mut lab.runners {
        runner.stop().await;
    }
    let ledger = std::mem::take(
        &mut *shared
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    report.tally(&ledger, shared.cycles.load(Ordering::Relaxed), active.len());
    check_invariants(&pool, &ledger, &active, &lab.logs, &mut report).await?;
    pool.close().await;
    Ok(report)
}

/// The seeded database, Redis if the store uses it, and both runners listening.
async fn prepare<'a>(
    args: &ChaosArgs,
    binary: &Path,
    store: StoreMode,
    root: &'a Path,
    pg: &'a Postgres,
) -> anyhow::Result<Lab<'a>> {
    let database_url = pg.url();
    let fixture = crate::Fixture {
        codebases: (args.items / 10).max(1),
        items: args.items,
        campaign: "generic".into(),
        branch_base: "http://127.0.0.1:9/".into(),
        candidates: false,
        past_runs: 0,
    };
    crate::seed(&database_url, &fixture).await?;
    let redis = if store.uses_redis() {
        Some(Redis::start(root).await?)
    } else {
        None
    };
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs)?;
    let config = write_config(root)?;
    let runners =
        start_runners(binary, root, &config, &database_url, store, redis.as_ref()).await?;
    Ok(Lab {
        pg,
        runners,
        redis,
        root,
        logs,
    })
}

/// The runners' configuration: logs and artifacts under `root`, one campaign.
fn write_config(root: &Path) -> anyhow::Result<PathBuf> {
    let config = root.join("janitor.conf");
    std::fs::write(
        &config,
        format!(
            "logs_location: \"{0}/logs\"\nartifact_location: \"{0}/artifacts\"\n\
             campaign {{ name: \"generic\" command: \"true\" generic_build {{}} }}\n",
            root.display()
        ),
    )?;
    Ok(config)
}

/// `runner-a` and `runner-b`, both listening.
async fn start_runners(
    binary: &Path,
    root: &Path,
    config: &Path,
    database_url: &str,
    store: StoreMode,
    redis: Option<&Redis>,
) -> anyhow::Result<Vec<RunnerProcess>> {
    let mut runners = Vec::new();
    for name in ["runner-a", "runner-b"] {
        let port = free_port()?;
        let args = runner_args(config, database_url, port, store, redis);
        let mut runner =
            RunnerProcess::new(name, port, args, binary, root.join(format!("{name}.log")));
        runner.start().await?;
        runners.push(runner);
    }
    Ok(runners)
}

/// A one-minute run timeout, so that the runs the workers gave up are reaped within a load
/// of a few minutes (`--await-reaping`).
fn runner_args(
    config: &Path,
    database_url: &str,
    port: u16,
    store: StoreMode,
    redis: Option<&Redis>,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--database-url",
        database_url,
        "--listen-address",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--public-port",
        "0",
        "--public-vcs-location",
        "http://127.0.0.1:9/vcs/",
        "--run-timeout",
        "1",
        "--watchdog-interval",
        "2",
        "--shutdown-grace",
        "5",
    ]
    .iter()
    .map(std::string::ToString::to_string)
    .collect();
    if let Some(redis) = redis {
        args.extend(["--redis-url".to_string(), redis.url()]);
        if store == StoreMode::Redis {
            args.push("--claims-in-redis".to_string());
        }
    }
    args
}

/// Workers alternate between the two runners; half of each runner's workers retry a finish
/// after a connection error.
fn spawn_workers(
    count: usize,
    runners: &[RunnerProcess],
    backchannel_port: u16,
    shared: &Shared,
    rng: &mut Rng,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..count)
        .map(|index| {
            let runner_index = index % 2;
            let worker = Worker {
                index,
                runner_index,
                base: runners[runner_index].url(),
                backchannel: format!("http://127.0.0.1:{backchannel_port}/w/{index}/"),
                retries_connection_errors: index % 4 >= 2,
                shared: shared.clone(),
            };
            tokio::spawn(worker.run(Rng::new(rng.next())))
        })
        .collect()
}

async fn await_reaping(
    shared: &Shared,
    client: &reqwest::Client,
    runner: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    // Workers now report their last run or none: the watchdogs find each abandoned run.
    shared
        .current
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter_mut()
        .for_each(|current| *current = None);
    let waiting = Instant::now();
    let deadline = waiting + Duration::from_secs(150);
    while !active_runs(client, runner).await?.is_empty() {
        if Instant::now() > deadline {
            report
                .violations
                .push("the watchdogs did not reap every abandoned run in 150 s".into());
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    report.reaping = Some(waiting.elapsed());
    Ok(())
}

async fn check_redis_copy(
    client: &reqwest::Client,
    runner: &str,
    redis_url: &str,
    report: &mut Report,
) {
    // The copy the site reads was rebuilt after the Redis restart and follows PostgreSQL:
    // a run left in it by a killed process goes at the second reconciliation (10 s apart).
    // PostgreSQL's side is read again each time: the runners' watchdogs still reap runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let expected: HashSet<String> = match active_runs(client, runner).await {
            Ok(active) => active.into_keys().collect(),
            Err(error) => {
                report
                    .violations
                    .push(format!("cannot list the active runs: {error}"));
                break;
            }
        };
        let copied = redis_active_runs(redis_url).await;
        if copied.as_ref().is_ok_and(|copied| *copied == expected) {
            break;
        }
        if Instant::now() > deadline {
            report.violations.push(format!(
                "the Redis copy shows {copied:?}, PostgreSQL {expected:?}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(super) async fn wait_for_queue(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = client.get(format!("{base}/queue?limit=1")).send().await;
        if answer.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{base} did not recover within 60 s of the database's return");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `GET /active-runs`: run id → queue id.
async fn active_runs(client: &reqwest::Client, base: &str) -> anyhow::Result<HashMap<String, i64>> {
    let runs: Vec<serde_json::Value> = client
        .get(format!("{base}/active-runs"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(runs
        .iter()
        .filter_map(|run| Some((run["id"].as_str()?.to_string(), run["queue_id"].as_i64()?)))
        .collect())
}

/// The run ids in Redis's `active-runs`, once the mirror marks the copy complete.
async fn redis_active_runs(url: &str) -> anyhow::Result<HashSet<String>> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let complete: bool = redis::cmd("EXISTS")
        .arg("janitor-runner-mirror")
        .query_async(&mut conn)
        .await?;
    if !complete {
        bail!("the copy is not marked complete");
    }
    let ids: Vec<String> = redis::cmd("HKEYS")
        .arg("active-runs")
        .query_async(&mut conn)
        .await?;
    Ok(ids.into_iter().collect())
}
