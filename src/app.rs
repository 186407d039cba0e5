//! The one shared state value: pool, active-run store, events, config, settings, metrics and
//! clock. The web routers and the Python module both hold an `Arc<AppState>`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use sqlx::PgPool;

use crate::assign::upstream::{BranchOpener, REMOTE_BRANCH_OPEN_TIMEOUT};
use crate::assign::vcs_store::{VcsLocationError, VcsStores};
use crate::backchannel::BackchannelClient;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::events::Events;
use crate::metrics::Metrics;
use crate::schedule::after_run::Rescheduler;
use crate::state::{ActiveRunStore, MirroredStore, PostgresStore, RedisKeys, RedisStore};
use crate::status::{AnnouncerParts, StatusAnnouncer};
use crate::storage::{Storage, StorageError};

/// Runner settings that come from the command line rather than the config file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Hosts never handed out (`--avoid-host`).
    pub avoid_hosts: BTreeSet<String>,
    /// Minutes without keep-alive before a run counts as gone (`--run-timeout`).
    pub run_timeout_minutes: i64,
    /// Public location of the VCS store, told to workers: a base URL or `git=URL,bzr=URL`
    /// (`--public-vcs-location`).
    pub public_vcs_location: Option<String>,
    /// Base location of our own APT archive, put into Debian build configs
    /// (`--public-apt-archive-location`).
    pub public_apt_archive_location: Option<String>,
    /// Dependency server URL handed to workers in build configs (`--public-dep-server-url`).
    pub public_dep_server_url: Option<String>,
    /// Local fallback storage for logs and artifacts, in its `logs` and `artifacts`
    /// subdirectories (`--backup-directory`).
    pub backup_directory: Option<PathBuf>,
    /// Where logs go, in place of the configuration's `logs_location` (the Python face's
    /// `logfile_manager`).
    pub logs_location: Option<String>,
    /// Where artifacts go, in place of the configuration's `artifact_location`.
    pub artifact_location: Option<String>,
    /// The committer of runs, in place of the configuration's `committer`.
    pub committer: Option<String>,
    /// Largest JSON request body accepted, in bytes.
    pub max_json_body: usize,
    /// Largest finish upload accepted, in bytes.
    pub max_upload_size: usize,
    /// Longest a ping of a worker may take, and the timeout of the other backchannel calls.
    pub backchannel_timeout: Duration,
    /// Vacuum the queue after this many of its rows were deleted by stored runs; 0 never
    /// (`--queue-vacuum-every`, see `queue::upkeep`).
    pub queue_vacuum_every: u64,
}

/// Queue rows deleted between two vacuums of the queue by the runner (`queue::upkeep`):
/// about 50 index pages of dead entries at the head of the queue, and a vacuum of a
/// 400,000-row queue costs some 70 ms of the database's CPU.
pub const DEFAULT_QUEUE_VACUUM_EVERY: u64 = 10_000;

impl Default for Settings {
    fn default() -> Self {
        Self {
            avoid_hosts: BTreeSet::new(),
            run_timeout_minutes: 60,
            public_vcs_location: None,
            public_apt_archive_location: None,
            public_dep_server_url: None,
            backup_directory: None,
            logs_location: None,
            artifact_location: None,
            committer: None,
            max_json_body: 32 * 1024 * 1024,
            max_upload_size: 1024 * 1024 * 1024,
            backchannel_timeout: crate::backchannel::KEEPALIVE_TIMEOUT,
            queue_vacuum_every: DEFAULT_QUEUE_VACUUM_EVERY,
        }
    }
}

/// Whether the database has been reached and migrated. A server starts before it has (the
/// database may be down at boot); until then only `/health`, `/ready` and `/metrics` answer,
/// and the rest say 503 with the reason.
#[derive(Debug, Clone, Default)]
pub struct DatabaseReadiness {
    waiting_for: Arc<std::sync::Mutex<Option<String>>>,
    /// Created without a database (a Python-face app or processor on Redis alone): nothing
    /// is awaited, so the runner is ready, and what needs the database says why it cannot.
    absent: bool,
}

impl DatabaseReadiness {
    /// Not ready yet, for `reason`.
    pub fn pending(reason: impl Into<String>) -> Self {
        let readiness = Self::default();
        readiness.wait_for(reason);
        readiness
    }

    /// No database at all, and none coming: `waiting_for` gives `reason` for ever.
    pub fn absent(reason: impl Into<String>) -> Self {
        Self {
            absent: true,
            ..Self::pending(reason)
        }
    }

    /// Whether there is no database at all (see [`DatabaseReadiness::absent`]).
    pub fn is_absent(&self) -> bool {
        self.absent
    }

    /// Marks the database not ready (again), for `reason`.
    pub fn wait_for(&self, reason: impl Into<String>) {
        *self.lock() = Some(reason.into());
    }

    /// Marks the database reached and migrated.
    pub fn set_ready(&self) {
        *self.lock() = None;
    }

    /// `None` once ready; else why not.
    pub fn waiting_for(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.waiting_for
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Everything a request handler, background task or the Python face needs.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The runner's PostgreSQL database (queue, runs, candidates, codebases).
    pub pool: PgPool,
    /// Ready from the start for a state assembled around a migrated pool.
    pub database: DatabaseReadiness,
    /// Where the active runs (those handed out to workers) are kept.
    pub store: Arc<dyn ActiveRunStore>,
    /// Pub/sub announcements on the Python runner's Redis channels.
    pub events: Events,
    /// The Janitor configuration (campaigns, storage locations, committer).
    pub config: Arc<Config>,
    /// What the command line set.
    pub settings: Settings,
    /// The Prometheus metrics served on `/metrics`.
    pub metrics: Metrics,
    /// The time source: the system clock, or a fixed one in tests.
    pub clock: Arc<dyn Clock>,
    /// The public VCS store, from `--public-vcs-location`.
    pub vcs_stores: VcsStores,
    /// `dpkg-vendor --query vendor` of this host.
    pub host_vendor: String,
    /// Where logs and artifacts of finished runs go.
    pub storage: Storage,
    /// Publishes the status on the `queue` channel after changes, coalesced.
    pub status_announcer: StatusAnnouncer,
    /// Opens upstream and VCS-store branches while assigning.
    pub branch_opener: BranchOpener,
    /// The memory finish uploads in flight may keep their small files in.
    pub upload_memory: crate::finish::UploadMemory,
    /// Puts candidates back on the queue after their runs.
    pub rescheduler: Rescheduler,
    /// Queue positions kept in memory while they are exact.
    pub queue_positions: crate::queue::positions::QueuePositions,
    /// Vacuums the queue every so many stored runs.
    pub queue_upkeep: crate::queue::upkeep::QueueUpkeep,
    /// Reaches workers while their runs are out (pings, logs, kill).
    pub backchannels: BackchannelClient,
    /// The runs this process handed out, as it stored them (claims in the database only).
    pub own_runs: crate::own_runs::OwnRuns,
    /// The queue rows this process's assigners have read and not yet claimed.
    pub items_in_hand: Arc<crate::assign::ItemsInHand>,
    /// The pool's connections the assignment and the finish hand on to each other.
    pub warm_connections: Arc<crate::db::warm::WarmConnections>,
}

/// The state as the web routers and background tasks share it.
pub type SharedState = Arc<AppState>;

/// Where the active-run state lives.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// The PostgreSQL tables `runner_*` in the runner's database.
    Postgres,
    /// A Redis server as the only store, as the Python runner keeps it; the prefix goes
    /// before every key and channel (empty in production).
    Redis {
        /// The Redis server's URL.
        url: String,
        /// Put before every key and channel name.
        prefix: String,
    },
    /// The PostgreSQL tables hold the claims, and a Redis server a copy under the Python
    /// runner's keys (rebuilt when Redis restarts empty), plus the pub/sub channels.
    Mirrored {
        /// The Redis server's URL.
        url: String,
        /// Put before every key and channel name.
        prefix: String,
    },
}

/// How long start-up waits for the database before listening anyway.
const READY_WAIT: Duration = Duration::from_secs(2);

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// PostgreSQL could not be reached.
    #[error("cannot connect to PostgreSQL: {0}")]
    Database(#[from] sqlx::Error),
    /// The database schema could not be migrated or adopted.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The Redis server could not be reached.
    #[error("cannot connect to Redis at {url}: {source}")]
    Redis {
        /// The Redis server's URL.
        url: String,
        /// What Redis said.
        source: redis::RedisError,
    },
    /// The Prometheus metrics could not be registered.
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The public VCS location could not be parsed.
    #[error(transparent)]
    VcsLocation(#[from] VcsLocationError),
    /// The log or artifact storage could not be set up.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The HTTP client (for upstream branches and backchannels) could not be built.
    #[error("cannot set up the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

impl AppState {
    /// Connects the store (Redis or PostgreSQL) and assembles the state around an open pool.
    pub async fn assemble(
        pool: PgPool,
        store: StoreLocation,
        config: Config,
        settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let (store, events): (Arc<dyn ActiveRunStore>, Events) = match store {
            StoreLocation::Postgres => (
                Arc::new(PostgresStore::new(pool.clone())),
                Events::disabled(),
            ),
            StoreLocation::Redis { url, prefix } => {
                let conn = connect_redis(&url).await?;
                (
                    Arc::new(RedisStore::new(
                        conn.clone(),
                        RedisKeys::with_prefix(&prefix),
                    )),
                    Events::redis(conn, &prefix),
                )
            }
            StoreLocation::Mirrored { url, prefix } => {
                let conn = connect_redis(&url).await?;
                (
                    Arc::new(MirroredStore::spawn(
                        PostgresStore::new(pool.clone()),
                        conn.clone(),
                        RedisKeys::with_prefix(&prefix),
                        clock.clone(),
                    )),
                    Events::redis(conn, &prefix),
                )
            }
        };
        let vcs_stores = match settings.public_vcs_location.as_deref() {
            Some(location) => VcsStores::parse(location)?,
            None => VcsStores::default(),
        };
        let storage = storage_for(&config, &settings)?;
        let status_announcer = StatusAnnouncer::spawn(
            AnnouncerParts {
                store: store.clone(),
                events: events.clone(),
                avoid_hosts: settings.avoid_hosts.clone(),
                run_timeout_minutes: settings.run_timeout_minutes,
                clock: clock.clone(),
            },
            Duration::from_millis(250),
        );
        let rescheduler = Rescheduler::new(pool.clone(), clock.clone());
        let queue_upkeep =
            crate::queue::upkeep::QueueUpkeep::new(pool.clone(), settings.queue_vacuum_every);
        let backchannels = BackchannelClient::with_timeouts(
            crate::backchannel::CONNECT_TIMEOUT.min(settings.backchannel_timeout),
            settings.backchannel_timeout,
            settings.backchannel_timeout,
            &config.user_agent(),
        )?;
        let user_agent = config.user_agent();
        Ok(Self {
            warm_connections: crate::db::warm::WarmConnections::new(pool.clone()),
            pool,
            database: DatabaseReadiness::default(),
            store,
            events,
            config: Arc::new(config),
            settings,
            metrics: Metrics::new()?,
            clock,
            vcs_stores,
            host_vendor: crate::assign::builder::host_vendor().await,
            storage,
            status_announcer,
            branch_opener: BranchOpener::new(REMOTE_BRANCH_OPEN_TIMEOUT, &user_agent)?,
            upload_memory: crate::finish::UploadMemory::default(),
            rescheduler,
            queue_positions: crate::queue::positions::QueuePositions::new(),
            queue_upkeep,
            backchannels,
            own_runs: crate::own_runs::OwnRuns::default(),
            items_in_hand: Arc::default(),
        })
    }

    /// The same state (store, pool, background tasks) serving another configuration.
    pub fn with_config(&self, config: Config) -> Result<Self, StartupError> {
        Ok(Self {
            storage: storage_for(&config, &self.settings)?,
            config: Arc::new(config),
            ..self.clone()
        })
    }

    /// The same state over another database pool, reachable and migrated. What was kept in
    /// memory of the other database's queue is not carried over.
    pub fn with_pool(&self, pool: PgPool) -> Self {
        Self {
            rescheduler: Rescheduler::new(pool.clone(), self.clock.clone()),
            queue_positions: crate::queue::positions::QueuePositions::new(),
            queue_upkeep: crate::queue::upkeep::QueueUpkeep::new(
                pool.clone(),
                self.settings.queue_vacuum_every,
            ),
            own_runs: crate::own_runs::OwnRuns::default(),
            items_in_hand: Arc::default(),
            warm_connections: crate::db::warm::WarmConnections::new(pool.clone()),
            pool,
            database: DatabaseReadiness::default(),
            ..self.clone()
        }
    }

    /// Assembles the state around a pool that connects on first use, and a task that migrates the
    /// database as soon as it can be reached (waited for up to `READY_WAIT` here, so a healthy
    /// database is ready before the first request). Until it has, `database` says why not. The task
    /// ends with an error only for a failure that waiting cannot cure (a schema it cannot adopt).
    pub async fn start_before_database(
        database_url: &str,
        store: StoreLocation,
        config: Config,
        settings: Settings,
    ) -> Result<(Self, tokio::task::JoinHandle<Result<(), StartupError>>), StartupError> {
        let pool = crate::db::connect_lazy(database_url, 16)?;
        let mut state =
            Self::assemble(pool.clone(), store, config, settings, Arc::new(SystemClock)).await?;
        state.database = DatabaseReadiness::pending("connecting to the database");
        let readiness = state.database.clone();
        let preparing = tokio::spawn(async move {
            let mut pause = Duration::from_millis(250);
            loop {
                match crate::db::migrate(&pool).await {
                    Ok(_) => {
                        readiness.set_ready();
                        tracing::info!("database reachable and migrated");
                        return Ok(());
                    }
                    Err(sqlx::migrate::MigrateError::Execute(error))
                        if crate::db::is_unavailable(&error) =>
                    {
                        tracing::warn!(%error, "database not reachable yet; trying again");
                        readiness.wait_for(format!("database not reachable yet: {error}"));
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                    }
                    Err(error) => {
                        readiness.wait_for(format!("cannot migrate the database: {error}"));
                        return Err(StartupError::Migrate(error));
                    }
                }
            }
        });
        // A database that answers is usually migrated within moments: wait that long, so a
        // runner (re)started next to a healthy database serves ready from its first request.
        // The task is not cancelled when the wait ends; an adoption that takes longer goes on.
        let mut preparing = preparing;
        tokio::select! {
            finished = &mut preparing => {
                match finished {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Err(error),
                    Err(panicked) => {
                        return Err(StartupError::Migrate(sqlx::migrate::MigrateError::Execute(
                            sqlx::Error::Io(std::io::Error::other(panicked)),
                        )));
                    }
                }
                Ok((state, tokio::spawn(async { Ok(()) })))
            }
            () = tokio::time::sleep(READY_WAIT) => Ok((state, preparing)),
        }
    }

    /// Opens the pool, migrates, and assembles the state with the system clock.
    pub async fn start(
        database_url: &str,
        store: StoreLocation,
        config: Config,
        settings: Settings,
    ) -> Result<Self, StartupError> {
        let pool = crate::db::connect(database_url, 16).await?;
        crate::db::migrate(&pool).await?;
        Self::assemble(pool, store, config, settings, Arc::new(SystemClock)).await
    }
}

/// Where logs and artifacts go: the settings' locations, else the configuration's.
fn storage_for(config: &Config, settings: &Settings) -> Result<Storage, StorageError> {
    Storage::new(
        settings.logs_location.as_deref().or(config.logs_location()),
        settings
            .artifact_location
            .as_deref()
            .or(config.artifact_location()),
        settings.backup_directory.as_deref(),
    )
}

/// A Redis connection that reconnects by itself and never waits more than a few seconds.
pub async fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager, StartupError> {
    let error = |source| StartupError::Redis {
        url: url.to_string(),
        source,
    };
    let client = redis::Client::open(url).map_err(error)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_number_of_retries(3);
    client
        .get_connection_manager_with_config(config)
        .await
        .map_err(error)
}
