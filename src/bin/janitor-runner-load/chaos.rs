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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::NaiveDateTime;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

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
        let report = run_one(&args, &runner, *store).await?;
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

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

// --- the servers the harness owns ---------------------------------------------------------

/// A private PostgreSQL cluster on a Unix socket in `dir`.
struct Postgres {
    bindir: PathBuf,
    data: PathBuf,
    port: u16,
    /// initdb refuses root: the cluster then runs as `postgres`.
    as_postgres: bool,
}

impl Postgres {
    fn bindir() -> anyhow::Result<PathBuf> {
        if let Some(dir) = std::env::var_os("JR_PG_BINDIR") {
            return Ok(dir.into());
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .context("no /usr/lib/postgresql: install postgresql or set JR_PG_BINDIR")?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let version = entry.file_name().to_str()?.parse().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((version, bin))
            })
            .collect();
        versions.sort();
        versions
            .pop()
            .map(|(_, bin)| bin)
            .context("no PostgreSQL server binaries (initdb) found")
    }

    async fn command(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let program = self.bindir.join(tool);
        let mut command = if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command.args(args).stdin(Stdio::null()).output().await?;
        if !output.status.success() {
            bail!(
                "{tool} {args:?} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    async fn create(dir: &Path) -> anyhow::Result<Self> {
        let data = dir.join("pg");
        std::fs::create_dir_all(&data)?;
        let as_postgres = nix_is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir)
                .status()
                .await?;
            if !status.success() {
                bail!("cannot give {} to the postgres user", dir.display());
            }
        }
        let pg = Self {
            bindir: Self::bindir()?,
            data,
            port: free_port()?,
            as_postgres,
        };
        let data = pg.data_str();
        pg.command(
            "initdb",
            &["-D", &data, "-U", "postgres", "-A", "trust", "--no-sync"],
        )
        .await?;
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{data}' -p {} -c max_connections=200",
            pg.port
        );
        let log = format!("{data}/server.log");
        pg.command(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
            ],
        )
        .await?;
        Ok(pg)
    }

    fn data_str(&self) -> String {
        self.data.display().to_string()
    }

    fn url(&self) -> String {
        format!(
            "postgresql://postgres@localhost/postgres?host={}&port={}",
            self.data.display(),
            self.port
        )
    }

    /// `pg_ctl restart -m fast`: every session is cut, the server is back when it returns.
    async fn restart(&self) -> anyhow::Result<()> {
        let data = self.data_str();
        // With a log file, so that the new server does not hold pg_ctl's output open.
        let log = format!("{data}/server.log");
        self.command(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-w", "-t", "60", "-m", "fast", "restart",
            ],
        )
        .await
    }

    async fn stop(&self) {
        let data = self.data_str();
        let _ = self
            .command("pg_ctl", &["-D", &data, "-m", "immediate", "stop"])
            .await;
    }
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A redis-server keeping nothing on disk, as the deployments this mimics run it.
struct Redis {
    socket: PathBuf,
    child: Option<Child>,
}

impl Redis {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let mut redis = Self {
            socket: dir.join("redis.sock"),
            child: None,
        };
        redis.spawn().await?;
        Ok(redis)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start redis-server (install redis-server)")?;
        self.child = Some(child);
        for _ in 0..100 {
            if self.socket.exists() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("redis-server did not create {}", self.socket.display())
    }

    fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// Stops the server (SIGTERM: nothing is saved) and starts an empty one.
    async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(10)).await;
        }
        self.spawn().await
    }
}

/// One runner process on a fixed port, restartable.
struct RunnerProcess {
    name: &'static str,
    port: u16,
    args: Vec<String>,
    binary: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl RunnerProcess {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until it listens; a start that fails (the database may
    /// be restarting) is tried again.
    async fn start(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(90);
        loop {
            match self.try_start().await {
                Ok(()) => return Ok(started.elapsed()),
                Err(error) if Instant::now() < deadline => {
                    note(&format!("{} did not start ({error}); again", self.name));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn try_start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut child = Command::new(&self.binary)
            .args(&self.args)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("runner stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("janitor-runner listening on ") {
                    return Ok::<bool, std::io::Error>(true);
                }
            }
            Ok(false)
        })
        .await;
        if let Ok(Ok(true)) = listening {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            self.child = Some(child);
            Ok(())
        } else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            bail!(
                "exited or stalled before listening; see {}",
                self.log.display()
            )
        }
    }

    /// `kill -9`.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, then wait for the exit.
    async fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(15)).await;
        }
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within `grace`.
async fn terminate(mut child: Child, grace: Duration) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

fn note(message: &str) {
    eprintln!("chaos: {message}");
}

// --- what the workers saw ------------------------------------------------------------------

#[derive(Debug, Default)]
struct Ledger {
    /// Every assignment a worker received.
    assignments: Vec<Assignment>,
    /// Every finish answer, by run id, in order.
    finish_answers: HashMap<String, Vec<u16>>,
    assign_statuses: BTreeMap<String, usize>,
    finish_statuses: BTreeMap<String, usize>,
    /// Runs whose worker gave up its finish, and why.
    given_up: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Assignment {
    run_id: String,
    queue_id: i64,
    received: Instant,
    released: Option<Instant>,
}

/// Requests in flight per runner, to say what each kill interrupted.
#[derive(Debug, Default)]
struct InFlight {
    assign: [AtomicUsize; 2],
    finish: [AtomicUsize; 2],
}

#[derive(Clone)]
struct Shared {
    ledger: Arc<Mutex<Ledger>>,
    in_flight: Arc<InFlight>,
    stop: Arc<AtomicBool>,
    /// The run each worker reports on its backchannel (`/log-id`), as `janitor-worker` keeps
    /// reporting its last run until the next assignment.
    current: Arc<Mutex<Vec<Option<String>>>>,
    cycles: Arc<AtomicU64>,
}

impl Shared {
    fn count(&self, finish: bool, outcome: String) {
        let mut ledger = self
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = if finish {
            &mut ledger.finish_statuses
        } else {
            &mut ledger.assign_statuses
        };
        *map.entry(outcome).or_default() += 1;
    }
}

struct Backoff {
    next: f64,
    rng: Rng,
}

impl Backoff {
    const CAP: f64 = 2.0;

    fn new(rng: Rng) -> Self {
        Self { next: 0.5, rng }
    }

    fn wait(&mut self) -> Duration {
        let randomised = self.next * (0.5 + self.rng.unit());
        self.next = (self.next * 1.5).min(Self::CAP);
        Duration::from_secs_f64(randomised)
    }
}

const FINISH_GIVE_UP: Duration = Duration::from_secs(20);
const BOUNDARY: &str = "janitor-runner-chaos-boundary";

fn finish_body(run_id: &str, started: NaiveDateTime) -> Vec<u8> {
    let fmt = |t: NaiveDateTime| t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
    let now = chrono::Utc::now().naive_utc();
    let result = serde_json::json!({
        "description": "chaos", "codemod": {}, "start_time": fmt(started),
        "finish_time": fmt(now), "target": {"name": "generic", "details": {}},
    });
    let log: String = (0..40)
        .map(|i| format!("run {run_id} line {i}\n"))
        .collect();
    let mut body = Vec::new();
    body.extend(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"metadata\"; filename=\"result.json\"\r\n\
             Content-Type: application/json\r\n\r\n{result}\r\n\
             --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"worker.log\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{log}\r\n--{BOUNDARY}--\r\n"
        )
        .as_bytes(),
    );
    body
}

fn outcome_of(result: &Result<reqwest::Response, reqwest::Error>) -> String {
    match result {
        Ok(response) => response.status().as_u16().to_string(),
        Err(error) if error.is_timeout() => "timeout".to_string(),
        Err(_) => "connection error".to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
async fn worker(
    index: usize,
    runner_index: usize,
    base: String,
    backchannel: String,
    retries_connection_errors: bool,
    shared: Shared,
    mut rng: Rng,
) {
    let client = match reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(_) => return,
    };
    let request = serde_json::json!({
        "node": format!("chaos-{index}"), "archs": ["amd64"],
        "backchannel": {"kind": "http", "url": backchannel},
    });
    while !shared.stop.load(Ordering::Relaxed) {
        // Ask until given an assignment.
        let mut backoff = Backoff::new(Rng::new(rng.next()));
        let assignment = loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            shared.in_flight.assign[runner_index].fetch_add(1, Ordering::SeqCst);
            let answer = client
                .post(format!("{base}/active-runs"))
                .json(&request)
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            shared.in_flight.assign[runner_index].fetch_sub(1, Ordering::SeqCst);
            shared.count(false, outcome_of(&answer));
            match answer {
                Ok(response) if response.status().as_u16() == 201 => {
                    match response.json::<serde_json::Value>().await {
                        Ok(body) => break body,
                        Err(_) => tokio::time::sleep(backoff.wait()).await,
                    }
                }
                Ok(response) if response.status().as_u16() == 503 => {
                    let empty = response
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .is_some_and(|body| body["reason"] == "queue empty");
                    let pause = if empty {
                        Duration::from_secs(1)
                    } else {
                        backoff.wait()
                    };
                    tokio::time::sleep(pause).await;
                }
                Ok(response) if response.status().is_server_error() => {
                    tokio::time::sleep(backoff.wait()).await;
                }
                // Other 4xx: janitor-worker gives up and, looping, asks again.
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(_) => tokio::time::sleep(backoff.wait()).await,
            }
        };
        let (Some(run_id), Some(queue_id)) = (
            assignment["id"].as_str().map(str::to_string),
            assignment["queue_id"].as_i64(),
        ) else {
            shared.count(false, "assignment without id".into());
            continue;
        };
        let received = Instant::now();
        let started = chrono::Utc::now().naive_utc();
        let slot = {
            let mut ledger = shared
                .ledger
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            ledger.assignments.push(Assignment {
                run_id: run_id.clone(),
                queue_id,
                received,
                released: None,
            });
            ledger.assignments.len() - 1
        };
        shared
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)[index] = Some(run_id.clone());
        tokio::time::sleep(Duration::from_millis(20 + rng.next() % 180)).await;

        let body = finish_body(&run_id, started);
        let mut backoff = Backoff::new(Rng::new(rng.next()));
        let give_up_at = Instant::now() + FINISH_GIVE_UP;
        let end = loop {
            shared.in_flight.finish[runner_index].fetch_add(1, Ordering::SeqCst);
            let answer = client
                .post(format!("{base}/active-runs/{run_id}/finish"))
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(body.clone())
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            shared.in_flight.finish[runner_index].fetch_sub(1, Ordering::SeqCst);
            let outcome = outcome_of(&answer);
            shared.count(true, outcome.clone());
            if let Ok(response) = &answer {
                let mut ledger = shared
                    .ledger
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                ledger
                    .finish_answers
                    .entry(run_id.clone())
                    .or_default()
                    .push(response.status().as_u16());
            }
            let status = answer.as_ref().ok().map(|r| r.status().as_u16());
            match status {
                Some(200 | 201) => {
                    shared.cycles.fetch_add(1, Ordering::Relaxed);
                    break None;
                }
                Some(404) => break Some("404".to_string()),
                Some(409) if retries_connection_errors => break None,
                None if !retries_connection_errors => break Some(outcome),
                _ if Instant::now() >= give_up_at => {
                    break Some(format!("gave up after {outcome}"));
                }
                _ => tokio::time::sleep(backoff.wait()).await,
            }
        };
        let mut ledger = shared
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        ledger.assignments[slot].released = Some(Instant::now());
        if let Some(reason) = end {
            ledger.given_up.push((run_id, reason));
        }
    }
}

/// `GET /w/<n>/log-id` for every simulated worker.
async fn serve_backchannels(current: Arc<Mutex<Vec<Option<String>>>>) -> anyhow::Result<u16> {
    use axum::extract::{Path as UrlPath, State};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = axum::Router::new()
        .route(
            "/w/{n}/log-id",
            axum::routing::get(
                |State(current): State<Arc<Mutex<Vec<Option<String>>>>>,
                 UrlPath(n): UrlPath<usize>| async move {
                    let current = current
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    axum::Json(current.get(n).cloned().flatten())
                },
            ),
        )
        .with_state(current);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(port)
}

// --- one run ----------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Report {
    store: String,
    seconds: f64,
    cycles: u64,
    kills: usize,
    kills_during_assign: usize,
    kills_during_finish: usize,
    pg_restarts: Vec<(Duration, Duration)>,
    redis_restarts: usize,
    storage_outages: usize,
    assign_statuses: BTreeMap<String, usize>,
    finish_statuses: BTreeMap<String, usize>,
    given_up: BTreeMap<String, usize>,
    assignments: usize,
    runs_stored: i64,
    active_left: usize,
    /// How long the watchdogs took to reap the abandoned runs (`--await-reaping`).
    reaping: Option<Duration>,
    violations: Vec<String>,
}

impl Report {
    fn print(&self) {
        println!("store: {}", self.store);
        println!(
            "load: {:.0} s, cycles completed (finish 2xx): {}, assignments: {}, runs stored: {}",
            self.seconds, self.cycles, self.assignments, self.runs_stored
        );
        println!(
            "faults: {} runner kills ({} with an assignment in flight, {} with a finish in flight), {} PostgreSQL restarts, {} Redis restarts, {} log-store outages",
            self.kills,
            self.kills_during_assign,
            self.kills_during_finish,
            self.pg_restarts.len(),
            self.redis_restarts,
            self.storage_outages
        );
        for (took, recovered) in &self.pg_restarts {
            println!(
                "PostgreSQL restart: took {:.2} s; both runners answered /queue with 200 {:.2} s after it was back",
                took.as_secs_f64(),
                recovered.as_secs_f64()
            );
        }
        println!("assign answers: {:?}", self.assign_statuses);
        println!("finish answers: {:?}", self.finish_statuses);
        println!("finishes given up by their worker: {:?}", self.given_up);
        println!("active runs left for the watchdog: {}", self.active_left);
        if let Some(reaping) = self.reaping {
            println!(
                "the watchdogs reaped the abandoned runs in {:.0} s after the load",
                reaping.as_secs_f64()
            );
        }
        if self.violations.is_empty() {
            println!("invariants: all hold");
        } else {
            println!("invariants violated ({}):", self.violations.len());
            for violation in self.violations.iter().take(30) {
                println!("  - {violation}");
            }
        }
    }
}

async fn run_one(args: &ChaosArgs, binary: &Path, store: StoreMode) -> anyhow::Result<Report> {
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
    crate::seed(
        &database_url,
        (args.items / 10).max(1),
        args.items,
        "generic",
        "http://127.0.0.1:9/",
    )
    .await?;
    let mut redis = if store.uses_redis() {
        Some(Redis::start(root).await?)
    } else {
        None
    };
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs)?;
    let config = root.join("janitor.conf");
    std::fs::write(
        &config,
        format!(
            "logs_location: \"{0}/logs\"\nartifact_location: \"{0}/artifacts\"\n\
             campaign {{ name: \"generic\" command: \"true\" generic_build {{}} }}\n",
            root.display()
        ),
    )?;
    let mut runners = Vec::new();
    for name in ["runner-a", "runner-b"] {
        let port = free_port()?;
        let mut runner_args: Vec<String> = [
            "--config",
            &config.display().to_string(),
            "--database-url",
            &database_url,
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
        if let Some(redis) = &redis {
            runner_args.extend(["--redis-url".to_string(), redis.url()]);
            if store == StoreMode::Redis {
                runner_args.push("--claims-in-redis".to_string());
            }
        }
        let mut runner = RunnerProcess {
            name,
            port,
            args: runner_args,
            binary: binary.to_path_buf(),
            log: root.join(format!("{name}.log")),
            child: None,
        };
        runner.start().await?;
        runners.push(runner);
    }

    let shared = Shared {
        ledger: Arc::default(),
        in_flight: Arc::default(),
        stop: Arc::default(),
        current: Arc::new(Mutex::new(vec![None; args.workers])),
        cycles: Arc::default(),
    };
    let backchannel_port = serve_backchannels(shared.current.clone()).await?;
    let started = Instant::now();
    let workers: Vec<_> = (0..args.workers)
        .map(|index| {
            let runner_index = index % 2;
            tokio::spawn(worker(
                index,
                runner_index,
                runners[runner_index].url(),
                format!("http://127.0.0.1:{backchannel_port}/w/{index}/"),
                index % 4 >= 2,
                shared.clone(),
                Rng::new(rng.next()),
            ))
        })
        .collect();

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
        match fault {
            Fault::Kill(which) => {
                let assigning = shared.in_flight.assign[which].load(Ordering::SeqCst);
                let finishing = shared.in_flight.finish[which].load(Ordering::SeqCst);
                runners[which].kill().await;
                report.kills += 1;
                report.kills_during_assign += usize::from(assigning > 0);
                report.kills_during_finish += usize::from(finishing > 0);
                tokio::time::sleep(Duration::from_secs(1)).await;
                runners[which].start().await?;
            }
            Fault::RestartPostgres => {
                let began = Instant::now();
                pg.restart().await?;
                let took = began.elapsed();
                let back = Instant::now();
                for runner in &runners {
                    wait_for_queue(&client, &runner.url()).await?;
                }
                report.pg_restarts.push((took, back.elapsed()));
            }
            Fault::RestartRedis => {
                if let Some(redis) = redis.as_mut() {
                    redis.restart().await?;
                    report.redis_restarts += 1;
                }
            }
            Fault::StorageOutage(length) => {
                // A file where the log directory was: every write fails, even for root.
                let moved = root.join("logs.away");
                std::fs::rename(&logs, &moved)?;
                std::fs::write(&logs, b"not a directory")?;
                tokio::time::sleep(length).await;
                std::fs::remove_file(&logs)?;
                std::fs::rename(&moved, &logs)?;
                report.storage_outages += 1;
            }
        }
    }
    tokio::time::sleep((started + duration).saturating_duration_since(Instant::now())).await;
    shared.stop.store(true, Ordering::Relaxed);
    for task in workers {
        let _ = task.await;
    }
    report.seconds = started.elapsed().as_secs_f64();

    let pool = janitor_runner::db::connect(&database_url, 2).await?;
    if args.await_reaping {
        // Workers now report their last run or none: the watchdogs find each abandoned run.
        shared
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter_mut()
            .for_each(|current| *current = None);
        let waiting = Instant::now();
        let deadline = waiting + Duration::from_secs(150);
        while !active_runs(&client, &runners[0].url()).await?.is_empty() {
            if Instant::now() > deadline {
                report
                    .violations
                    .push("the watchdogs did not reap every abandoned run in 150 s".into());
                break;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        report.reaping = Some(waiting.elapsed());
    }
    let active = active_runs(&client, &runners[0].url()).await?;
    if let (StoreMode::Mirrored, Some(redis)) = (store, &redis) {
        // The copy the site reads was rebuilt after the Redis restart and follows PostgreSQL:
        // a run left in it by a killed process goes at the second reconciliation (10 s apart).
        let expected: HashSet<String> = active.keys().cloned().collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let copied = redis_active_runs(&redis.url()).await;
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
    for runner in &mut runners {
        runner.stop().await;
    }
    let ledger = std::mem::take(
        &mut *shared
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    report.cycles = shared.cycles.load(Ordering::Relaxed);
    report.assign_statuses = ledger.assign_statuses.clone();
    report.finish_statuses = ledger.finish_statuses.clone();
    for (_, reason) in &ledger.given_up {
        *report.given_up.entry(reason.clone()).or_default() += 1;
    }
    report.assignments = ledger.assignments.len();
    report.active_left = active.len();
    check_invariants(&pool, &ledger, &active, &logs, &mut report).await?;
    pool.close().await;
    Ok(report)
}

async fn wait_for_queue(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
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

#[derive(Debug, Clone, Copy)]
enum Fault {
    Kill(usize),
    RestartPostgres,
    RestartRedis,
    StorageOutage(Duration),
}

/// Kills spread evenly with jitter over the first 90 % of the run, alternating runners; the
/// PostgreSQL restart at a third, the log-store outage at a half, the Redis restart at two
/// thirds.
fn fault_schedule(args: &ChaosArgs, store: StoreMode, rng: &mut Rng) -> Vec<(Duration, Fault)> {
    let total = args.seconds as f64;
    let mut faults = Vec::new();
    let slot = total * 0.9 / (args.kills.max(1) as f64);
    for kill in 0..args.kills {
        let at = slot * (kill as f64 + 0.2 + 0.6 * rng.unit());
        faults.push((Duration::from_secs_f64(at), Fault::Kill(kill % 2)));
    }
    faults.push((Duration::from_secs_f64(total / 3.0), Fault::RestartPostgres));
    faults.push((
        Duration::from_secs_f64(total / 2.0),
        Fault::StorageOutage(Duration::from_secs_f64((total / 20.0).clamp(1.0, 5.0))),
    ));
    if store.uses_redis() {
        faults.push((
            Duration::from_secs_f64(total * 2.0 / 3.0),
            Fault::RestartRedis,
        ));
    }
    faults.sort_by_key(|(at, _)| *at);
    faults
}

// --- the invariants ----------------------------------------------------------------------------

#[derive(sqlx::FromRow)]
struct RunRow {
    id: String,
    codebase: String,
    change_set: String,
    result_code: String,
    start_time: Option<NaiveDateTime>,
    finish_time: Option<NaiveDateTime>,
    logfilenames: Vec<String>,
}

async fn check_invariants(
    pool: &sqlx::PgPool,
    ledger: &Ledger,
    active: &HashMap<String, i64>,
    logs: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let violations = &mut report.violations;

    // 1. No queue item held by two workers at once.
    let mut by_item: HashMap<i64, Vec<&Assignment>> = HashMap::new();
    for assignment in &ledger.assignments {
        by_item
            .entry(assignment.queue_id)
            .or_default()
            .push(assignment);
    }
    for (queue_id, held) in &mut by_item {
        held.sort_by_key(|a| a.received);
        for pair in held.windows(2) {
            let first_end = pair[0].released.unwrap_or_else(Instant::now);
            if pair[1].received < first_end {
                violations.push(format!(
                    "queue item {queue_id} was handed to run {} while run {} still held it",
                    pair[1].run_id, pair[0].run_id
                ));
            }
        }
    }

    let runs: Vec<RunRow> = sqlx::query_as(
        "SELECT id, codebase, change_set, result_code, start_time, finish_time, logfilenames
         FROM run",
    )
    .fetch_all(pool)
    .await?;
    report.runs_stored = runs.len() as i64;
    let stored: HashMap<&str, &RunRow> = runs.iter().map(|r| (r.id.as_str(), r)).collect();

    // ... nor by two runs, as the database records them.
    let mut by_change_set: HashMap<&str, Vec<&RunRow>> = HashMap::new();
    for run in &runs {
        by_change_set.entry(&run.change_set).or_default().push(run);
    }
    for (change_set, rows) in &mut by_change_set {
        rows.sort_by_key(|r| r.start_time);
        for pair in rows.windows(2) {
            if let (Some(end), Some(start)) = (pair[0].finish_time, pair[1].start_time)
                && start < end
            {
                violations.push(format!(
                    "change set {change_set}: runs {} and {} overlap",
                    pair[0].id, pair[1].id
                ));
            }
        }
    }

    // 2. Every assignment that reached a worker is stored or still out (for the watchdog).
    let active_ids: HashSet<&str> = active.keys().map(String::as_str).collect();
    for assignment in &ledger.assignments {
        let id = assignment.run_id.as_str();
        if !stored.contains_key(id) && !active_ids.contains(id) {
            violations.push(format!(
                "run {id} reached a worker and is neither stored nor active"
            ));
        }
    }
    // ... and every queue item is queued, held, or done.
    let queued: HashSet<i64> = sqlx::query_scalar::<_, i64>("SELECT id::bigint FROM queue")
        .fetch_all(pool)
        .await?
        .into_iter()
        .collect();
    for (run_id, queue_id) in active {
        if !queued.contains(queue_id) {
            violations.push(format!(
                "active run {run_id} holds queue item {queue_id}, which is gone"
            ));
        }
    }
    let seeded: i64 = sqlx::query_scalar("SELECT count(*) FROM change_set")
        .fetch_one(pool)
        .await?;
    let done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM change_set c
         WHERE NOT EXISTS (SELECT 1 FROM queue q WHERE q.change_set = c.id)
           AND NOT EXISTS (SELECT 1 FROM run r WHERE r.change_set = c.id)",
    )
    .fetch_one(pool)
    .await?;
    if done > 0 {
        violations.push(format!(
            "{done} of {seeded} items left the queue without a run"
        ));
    }

    // 3. No run without its logs.
    for run in &runs {
        for name in &run.logfilenames {
            let path = logs
                .join(&run.codebase)
                .join(&run.id)
                .join(format!("{name}.gz"));
            match read_gzip(&path) {
                Ok(text) if text.contains(&run.id) => {}
                Ok(_) => violations.push(format!("log {} is another run's", path.display())),
                Err(error) => violations.push(format!(
                    "run {} lists log {name}, which is unreadable: {error}",
                    run.id
                )),
            }
        }
    }

    // Faults are answered 503 (retry later), never with a server error of another kind.
    for (call, statuses) in [
        ("assignment", &ledger.assign_statuses),
        ("finish", &ledger.finish_statuses),
    ] {
        for (status, count) in statuses {
            if status.starts_with('5') && status != "503" && status != "502" {
                violations.push(format!("{count} {call} requests answered {status}"));
            }
        }
    }

    // 4. Every finish answered 2xx is stored, as sent; 5. at most one 2xx per run, and
    // never a 404 for a run a worker was given.
    for (run_id, answers) in &ledger.finish_answers {
        let accepted = answers.iter().filter(|s| matches!(s, 200 | 201)).count();
        if accepted > 1 {
            violations.push(format!("run {run_id}: finish accepted {accepted} times"));
        }
        if accepted >= 1 {
            match stored.get(run_id.as_str()) {
                Some(run) if run.result_code == "success" && !run.logfilenames.is_empty() => {}
                Some(run) => violations.push(format!(
                    "run {run_id}: finish accepted but stored as {} with logs {:?}",
                    run.result_code, run.logfilenames
                )),
                None => violations.push(format!("run {run_id}: finish accepted, not stored")),
            }
        }
        if answers.contains(&409) && !stored.contains_key(run_id.as_str()) {
            violations.push(format!("run {run_id}: 409 but no run stored"));
        }
        if answers.contains(&404) {
            violations.push(format!("run {run_id}: finish answered 404"));
        }
    }
    Ok(())
}

fn read_gzip(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut text)?;
    Ok(text)
}
