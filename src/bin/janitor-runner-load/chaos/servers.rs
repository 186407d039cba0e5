//! The processes the harness owns and disturbs: a private PostgreSQL cluster, a
//! redis-server, and the runner processes under test, each restartable.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(super) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A private PostgreSQL cluster on a Unix socket in `dir`.
pub(super) struct Postgres {
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

    pub(super) async fn create(dir: &Path) -> anyhow::Result<Self> {
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

    pub(super) fn url(&self) -> String {
        format!(
            "postgresql://postgres@localhost/postgres?host={}&port={}",
            self.data.display(),
            self.port
        )
    }

    /// `pg_ctl restart -m fast`: every session is cut, the server is back when it returns.
    pub(super) async fn restart(&self) -> anyhow::Result<()> {
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

    pub(super) async fn stop(&self) {
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
pub(super) struct Redis {
    socket: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub(super) async fn start(dir: &Path) -> anyhow::Result<Self> {
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

    pub(super) fn url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    /// Stops the server (SIGTERM: nothing is saved) and starts an empty one.
    pub(super) async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.take() {
            terminate(child, Duration::from_secs(10)).await;
        }
        self.spawn().await
    }
}

/// One runner process on a fixed port, restartable.
pub(super) struct RunnerProcess {
    name: &'static str,
    port: u16,
    args: Vec<String>,
    binary: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl RunnerProcess {
    /// Not started yet: see `start`.
    pub(super) fn new(
        name: &'static str,
        port: u16,
        args: Vec<String>,
        binary: &Path,
        log: PathBuf,
    ) -> Self {
        Self {
            name,
            port,
            args,
            binary: binary.to_path_buf(),
            log,
            child: None,
        }
    }

    pub(super) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until it listens; a start that fails (the database may
    /// be restarting) is tried again.
    pub(super) async fn start(&mut self) -> anyhow::Result<Duration> {
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
    pub(super) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM, then wait for the exit.
    pub(super) async fn stop(&mut self) {
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
