//! `chaos`: two runner processes on one database, simulated workers spread over both, and
//! faults injected while they work (runner kills, a PostgreSQL restart, a Redis restart, the
//! log store made unwritable); then the promises the runner makes are checked from the
//! database, the log store and what each worker was told.
//!
//! The harness brings its own PostgreSQL cluster and redis-server (in a temporary directory,
//! on Unix sockets), so restarting them disturbs nothing else.
//!
//! The simulated workers answer errors as `janitor-worker` does (worker/src/client.rs of the
//! upstream project): an assignment is retried on connection errors and 5xx with exponential
//! back-off (0.5 s, times 1.5, randomised by half) and given up on other 4xx, and a 503 "queue
//! empty" waits; a finish upload is retried on 502/503 and on other statuses, given up on 404,
//! and given up at once on a connection error or a timeout. Its back-off is capped at 60 s and
//! stops after 15 minutes; here at 2 s and 20 s, so that a run of a few minutes sees both ends.
//! Half of the workers instead retry a finish after a connection error too, so that uploads
//! retried across a runner crash are exercised; those stop at a 409 (the run is stored).

mod faults;
mod invariants;
mod load;
mod report;
mod servers;
mod worker;

use std::path::PathBuf;

use anyhow::bail;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreMode {
    /// Active runs in PostgreSQL only.
    Postgres,
    /// PostgreSQL holds the claims, Redis a copy (the default with `--redis-url`).
    Mirrored,
    /// Redis alone holds the claims (`--claims-in-redis`): expected to break on a Redis
    /// restart; there for comparison.
    Redis,
}

impl StoreMode {
    fn uses_redis(self) -> bool {
        self != Self::Postgres
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Seconds of load with faults, per store.
    #[arg(long, default_value_t = 180)]
    pub seconds: u64,
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Runner kills (`kill -9`, restarted a second later), spread over the run.
    #[arg(long, default_value_t = 12)]
    pub kills: usize,
    /// Stores to run against, one after the other.
    #[arg(long, value_delimiter = ',', default_value = "postgres,mirrored")]
    pub stores: Vec<StoreMode>,
    /// Queue items to seed.
    #[arg(long, default_value_t = 20_000)]
    pub items: u32,
    /// The `janitor-runner` binary; by default the one next to this program.
    #[arg(long)]
    pub runner: Option<PathBuf>,
    /// After the load, wait until the watchdogs have reaped every run that its worker gave
    /// up (about a minute: the run timeout is one minute).
    #[arg(long)]
    pub await_reaping: bool,
    /// Seed of the fault schedule and the workers' choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Keep the temporary directory (databases, logs, runner logs) for inspection.
    #[arg(long)]
    pub keep: bool,
}

pub async fn chaos(args: ChaosArgs) -> anyhow::Result<()> {
    let runner = match &args.runner {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("janitor-runner"),
    };
    if !runner.exists() {
        bail!("no janitor-runner at {}; pass --runner", runner.display());
    }
    let mut failed = Vec::new();
    for store in &args.stores {
        println!("== chaos with the {store:?} store");
        let report = load::run_one(&args, &runner, *store).await?;
        report.print();
        if !report.violations.is_empty() {
            failed.push(format!("{store:?}"));
        }
    }
    if !failed.is_empty() {
        bail!(
            "invariants violated with the {} store(s)",
            failed.join(", ")
        );
    }
    Ok(())
}

/// A small deterministic generator (xorshift64*), so a seed reproduces a schedule.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
