//! The command line of the Python runner (same flags, same defaults), plus `--database-url`
//! and `--redis-url`, and the start-up sequence shared by the binary and Python's `serve()`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::app::{AppState, Settings, StartupError, StoreLocation};
use crate::config::{Config, ConfigError};
use crate::web::Listeners;

/// The `janitor-runner` command line: serve unless a subcommand is given.
#[derive(Debug, Parser)]
#[command(
    name = "janitor-runner",
    version,
    about = "The Janitor runner: queue, assignment and results"
)]
pub struct Cli {
    /// What to do instead of serving, if anything.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The flags of the server, the default command.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations (adopting an existing Janitor database) and exit.
    Migrate(DatabaseArgs),
    /// Schedule every candidate (the Python `janitor.schedule` command).
    Schedule(ScheduleArgs),
}

/// The flags of the Python `janitor.schedule` command.
#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// The configuration and database to schedule from.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Compute everything, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write nothing; compare the rows it would write with the queue's (the Python
    /// scheduler's), print the differences field by field, exit 1 when there are any.
    #[arg(long)]
    pub shadow: bool,
    /// With --shadow: start from this snapshot of the queue (taken with --save-queue just
    /// before the Python scheduler ran), so that priorities compare exactly.
    #[arg(long, value_name = "FILE", requires = "shadow")]
    pub queue_before: Option<PathBuf>,
    /// Save the queue as a bulk run finds it to FILE (JSON) and stop: the starting point of a
    /// later `--shadow --queue-before FILE`.
    #[arg(long, value_name = "FILE", conflicts_with = "shadow")]
    pub save_queue: Option<PathBuf>,
    /// Prometheus push gateway to send `job_last_success_unixtime` to.
    #[arg(long)]
    pub prometheus: Option<String>,
    /// Restrict to a specific campaign.
    #[arg(long)]
    pub campaign: Option<String>,
    /// Logging and tracing.
    #[command(flatten)]
    pub log: LogArgs,
    /// Codebases to process (all when none are given).
    pub codebases: Vec<String>,
}

/// How the process logs and where its spans go (docs/observability.md).
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log one JSON object per line in Google Cloud Logging's structured format.
    #[arg(long)]
    pub gcp_logging: bool,
    /// Show debug output (the runner's own; `RUST_LOG` chooses anything else).
    #[arg(long)]
    pub debug: bool,
    /// Zipkin collector to send spans to (its `/api/v2/spans` URL); overrides
    /// `zipkin_address` of the configuration.
    #[arg(long, value_name = "URL")]
    pub zipkin_address: Option<String>,
    /// Share of new traces recorded, 0 to 1 (a caller's sampling decision is followed).
    #[arg(long, default_value_t = crate::telemetry::DEFAULT_SAMPLE_RATE)]
    pub trace_sample_rate: f64,
}

impl LogArgs {
    /// The telemetry these flags and `config` ask for.
    pub fn telemetry(&self, config: Option<&Config>) -> crate::telemetry::TelemetryOptions {
        crate::telemetry::TelemetryOptions {
            debug: self.debug,
            gcp_logging: self.gcp_logging,
            zipkin_address: self
                .zipkin_address
                .clone()
                .filter(|a| !a.is_empty())
                .or_else(|| config.and_then(Config::zipkin_address).map(str::to_string)),
            otlp: crate::telemetry::TelemetryOptions::otlp_from_env(),
            sample_rate: self.trace_sample_rate,
            user_agent: config.map_or_else(crate::config::default_user_agent, Config::user_agent),
        }
    }
}

/// Where the configuration is, and which database it names.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Path to the configuration (protobuf text format).
    #[arg(long, default_value = "janitor.conf")]
    pub config: PathBuf,
    /// PostgreSQL URL; overrides `database_location` of the configuration.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
}

/// The flags of the server (the Python runner's command line).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The configuration and database to serve from.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Listen port of the internal app.
    #[arg(long, default_value_t = 9911)]
    pub port: u16,
    /// Public listen port for a reverse proxy (the worker app); 0 disables it.
    #[arg(long, default_value_t = 9919)]
    pub public_port: u16,
    /// Listen address of both apps.
    #[arg(long, default_value = "localhost")]
    pub listen_address: String,
    /// Accepted for compatibility; unused (as in the Python runner).
    #[arg(long)]
    pub pre_check: Option<String>,
    /// Accepted for compatibility; unused (as in the Python runner).
    #[arg(long)]
    pub post_check: Option<String>,
    /// Accepted for compatibility; unused (as in the Python runner).
    #[arg(long)]
    pub use_cached_only: bool,
    /// Local directory used as fallback storage for logs and artifacts.
    #[arg(long)]
    pub backup_directory: Option<PathBuf>,
    /// Base location of our own APT archive (inserted into Debian build configs).
    #[arg(long)]
    pub public_apt_archive_location: Option<String>,
    /// Dependency server URL handed to workers in build configs.
    #[arg(long)]
    pub public_dep_server_url: Option<String>,
    /// Public location of the VCS store: a base URL or `git=URL,bzr=URL` (required to serve).
    #[arg(long)]
    pub public_vcs_location: Option<String>,
    /// Minutes without a keep-alive before a run is considered timed out.
    #[arg(long, default_value_t = 60)]
    pub run_timeout: i64,
    /// Never hand out runs whose branch lives on this host (repeatable).
    #[arg(long = "avoid-host")]
    pub avoid_host: Vec<String>,
    /// Logging and tracing.
    #[command(flatten)]
    pub log: LogArgs,
    /// Redis URL for pub/sub and the copy of the active runs under the Python runner's keys;
    /// overrides `redis_location`. The claims themselves stay in PostgreSQL (see
    /// `--claims-in-redis`). Without either, Redis is not used.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Keep the active runs and claims in Redis alone, as the Python runner does: needed when
    /// a Python runner shares the Redis and must see this runner's claims. A Redis restart
    /// then forgets the runs out with workers.
    #[arg(long)]
    pub claims_in_redis: bool,
    /// Put before every Redis key and channel, to keep several instances apart on one server.
    /// Empty (the default) gives the Python runner's key names.
    #[arg(long, default_value = "")]
    pub redis_prefix: String,
    /// Largest JSON request body, in bytes.
    #[arg(long, default_value_t = 32 * 1024 * 1024)]
    pub max_json_body: usize,
    /// Largest finish upload (logs, packages), in bytes; larger ones get 413.
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub max_upload_size: usize,
    /// Seconds between two watchdog passes over the active runs; 0 runs no watchdog in this
    /// process (another process's must then reap dead runs).
    #[arg(long, default_value_t = 10)]
    pub watchdog_interval: u64,
    /// Seconds that requests in flight (finish uploads above all) get to complete after
    /// SIGTERM or SIGINT; new connections are refused at once. Past it the process exits
    /// anyway: an interrupted finish stores nothing, and the worker's retry is accepted.
    #[arg(long, default_value_t = 60)]
    pub shutdown_grace: u64,
    /// Vacuum the queue table after this many of its rows were deleted by stored runs, so
    /// that finding the next item does not read the dead index entries they leave at the
    /// head of the queue; 0 leaves it to autovacuum. Needs the table's owner (PostgreSQL
    /// warns and skips it otherwise).
    #[arg(long, default_value_t = crate::app::DEFAULT_QUEUE_VACUUM_EVERY)]
    pub queue_vacuum_every: u64,
}

/// Why the runner could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration could not be read or parsed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No database URL in the flag, the environment or the configuration (at this path).
    #[error(
        "no database configured: pass --database-url, set DATABASE_URL, or set database_location in {0}"
    )]
    NoDatabase(PathBuf),
    /// `--public-vcs-location` is missing on the binary's command line (exit code 2).
    #[error("--public-vcs-location is required")]
    NoPublicVcsLocation,
    /// The listen address did not resolve.
    #[error("cannot resolve listen address {0:?}")]
    ListenAddress(String),
    /// A listening socket could not be bound.
    #[error("cannot listen: {0}")]
    Bind(#[source] std::io::Error),
    /// Start-up failed: the database, Redis, storage or another part could not be set up.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The server stopped with an I/O error (or preparing the database panicked).
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl DatabaseArgs {
    /// The configuration, and the database URL chosen from flag, environment and file.
    pub async fn load(&self) -> Result<(Config, String), ServeError> {
        let config = Config::load(&self.config).await?;
        let url = self
            .database_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| config.database_location().map(str::to_string))
            .ok_or_else(|| ServeError::NoDatabase(self.config.clone()))?;
        Ok((config, url))
    }
}

impl ServeArgs {
    /// The runner settings these flags give.
    pub fn settings(&self) -> Settings {
        Settings {
            avoid_hosts: self.avoid_host.iter().cloned().collect(),
            run_timeout_minutes: self.run_timeout,
            public_vcs_location: self.public_vcs_location.clone(),
            public_apt_archive_location: self.public_apt_archive_location.clone(),
            public_dep_server_url: self.public_dep_server_url.clone(),
            backup_directory: self.backup_directory.clone(),
            max_json_body: self.max_json_body,
            max_upload_size: self.max_upload_size,
            queue_vacuum_every: self.queue_vacuum_every,
            ..Settings::default()
        }
    }

    /// Where the active-run state lives: PostgreSQL, unless a Redis URL is given (flag or
    /// configuration), which `--claims-in-redis` makes the only store.
    pub fn store_location(&self, config: &Config) -> StoreLocation {
        match self
            .redis_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| config.redis_location().map(str::to_string))
        {
            Some(url) if self.claims_in_redis => StoreLocation::Redis {
                url,
                prefix: self.redis_prefix.clone(),
            },
            Some(url) => StoreLocation::Mirrored {
                url,
                prefix: self.redis_prefix.clone(),
            },
            None => StoreLocation::Postgres,
        }
    }

    async fn addresses(&self) -> Result<(SocketAddr, Option<SocketAddr>), ServeError> {
        let resolved: Vec<SocketAddr> =
            tokio::net::lookup_host((self.listen_address.as_str(), self.port))
                .await
                .map_err(|_| ServeError::ListenAddress(self.listen_address.clone()))?
                .collect();
        let internal = resolved
            .iter()
            .find(|a| a.is_ipv4())
            .or(resolved.first())
            .copied()
            .ok_or_else(|| ServeError::ListenAddress(self.listen_address.clone()))?;
        let public =
            (self.public_port != 0).then(|| SocketAddr::new(internal.ip(), self.public_port));
        Ok((internal, public))
    }
}

/// Loads the configuration, connects, migrates, binds both apps and serves until `shutdown`.
/// `on_listening` is told the bound addresses once the sockets are open.
pub async fn run_server(
    args: &ServeArgs,
    on_listening: impl FnOnce(SocketAddr, Option<SocketAddr>),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (config, database_url) = args.database.load().await?;
    run_server_with(args, config, &database_url, on_listening, shutdown).await
}

/// [`run_server`] with the configuration already loaded (the binary reads it first, to set up
/// tracing from it).
pub async fn run_server_with(
    args: &ServeArgs,
    config: Config,
    database_url: &str,
    on_listening: impl FnOnce(SocketAddr, Option<SocketAddr>),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if args
        .public_vcs_location
        .as_deref()
        .is_none_or(str::is_empty)
    {
        tracing::warn!(
            "no --public-vcs-location: nothing will be assigned until the runner is restarted with one"
        );
    }
    warn_unread_fields(&config);
    let store = args.store_location(&config);
    let (state, preparing) =
        AppState::start_before_database(database_url, store, config, args.settings()).await?;
    let (internal, public) = args.addresses().await?;
    let listeners = Listeners::bind(internal, public)
        .await
        .map_err(ServeError::Bind)?;
    let internal_addr = listeners.internal_addr().map_err(ServeError::Bind)?;
    let public_addr = listeners
        .public_addr()
        .transpose()
        .map_err(ServeError::Bind)?;
    on_listening(internal_addr, public_addr);
    let mover = crate::storage::spawn_backup_mover(state.storage.clone(), BACKUP_MOVE_INTERVAL);
    let state = std::sync::Arc::new(state);
    let watchdog = (args.watchdog_interval > 0).then(|| {
        std::sync::Arc::new(crate::backchannel::watchdog::Watchdog::new(state.clone()))
            .spawn(std::time::Duration::from_secs(args.watchdog_interval))
    });
    let (stopping, stopped) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        shutdown.await;
        tracing::info!("shutting down: refusing new connections, finishing requests in flight");
        let _ = stopping.send(());
    };
    // A database that cannot be adopted ends the server; one that is only unreachable is
    // waited for while the probes answer.
    let unrecoverable = async {
        match preparing.await {
            Ok(Ok(())) => std::future::pending().await,
            Ok(Err(error)) => ServeError::Startup(error),
            Err(panicked) => ServeError::Serve(std::io::Error::other(panicked)),
        }
    };
    let serving = with_grace(
        crate::web::serve(state, listeners, shutdown),
        stopped,
        std::time::Duration::from_secs(args.shutdown_grace),
    );
    let served = tokio::select! {
        served = serving => served,
        error = unrecoverable => {
            tracing::error!(%error, "cannot prepare the database; stopping");
            if let Some(watchdog) = watchdog {
                watchdog.stop().await;
            }
            if let Some(mover) = mover {
                mover.abort();
            }
            return Err(error);
        }
    };
    if let Some(watchdog) = watchdog {
        watchdog.stop().await;
    }
    if let Some(mover) = mover {
        mover.abort();
    }
    served.map_err(ServeError::Serve)
}

/// Names, once, the fields of the configuration the runner does not read.
fn warn_unread_fields(config: &Config) {
    let unread = config.unread_fields();
    if !unread.is_empty() {
        tracing::warn!(
            fields = %unread.join(", "),
            "the configuration sets fields the runner does not read (they configure other Janitor services)"
        );
    }
}

/// `serving` until it ends, or until `grace` has passed since `stopping` fired.
async fn with_grace(
    serving: impl Future<Output = std::io::Result<()>>,
    stopping: tokio::sync::oneshot::Receiver<()>,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let expired = async {
        match stopping.await {
            Ok(()) => tokio::time::sleep(grace).await,
            // The shutdown future is gone without firing: only the server ending drops it.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serving => served,
        () = expired => {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "requests still in flight after the shutdown grace period; exiting anyway"
            );
            Ok(())
        }
    }
}

/// How often logs and artifacts written to `--backup-directory` are moved to the primary.
const BACKUP_MOVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
