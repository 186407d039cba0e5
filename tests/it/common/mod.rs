//! Shared test harness: real PostgreSQL databases (one per test, cloned from a migrated
//! template), real Redis (one key prefix per test), and a real server on a loopback port.
#![allow(dead_code)]

pub mod forge;
pub mod frozen_server;
pub mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::NaiveDateTime;
use janitor_runner::app::{AppState, Settings, StoreLocation};
use janitor_runner::clock::FixedClock;
use janitor_runner::config::Config;
use sqlx::{Connection, PgConnection, PgPool};

/// The admin URL of the test server: `DATABASE_URL`, as `scripts/test` sets it.
pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "DATABASE_URL is not set: the tests need a PostgreSQL server where they may create \
             databases. Run ./scripts/test, which starts a private one."
        )
    })
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| {
        panic!("REDIS_URL is not set: run ./scripts/test, which starts a private redis-server.")
    })
}

/// `admin_url` with its database replaced by `name`.
pub fn url_for(name: &str) -> String {
    let admin = admin_url();
    let mut url = url::Url::parse(&admin).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

async fn admin() -> PgConnection {
    PgConnection::connect(&admin_url())
        .await
        .expect("connect to DATABASE_URL")
}

/// An empty database, dropped by `TestDb::drop_now` (or left for the next `scripts/test`
/// run to clean up if a test panics).
pub async fn empty_database() -> TestDb {
    let name = unique("jrtest");
    let mut conn = admin().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    TestDb::open(name).await
}

/// A migrated database, cloned from a template migrated once per schema version.
pub async fn migrated_database() -> TestDb {
    let template = template_name();
    let mut conn = admin().await;
    // One creator at a time across test threads and binaries.
    sqlx::query("SELECT pg_advisory_lock(74617261)")
        .execute(&mut conn)
        .await
        .expect("lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut conn)
            .await
            .expect("query pg_database");
    if !exists {
        let building = format!("{template}_building");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {building}"
        )))
        .execute(&mut conn)
        .await
        .expect("drop stale template");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {building}")))
            .execute(&mut conn)
            .await
            .expect("create template");
        let pool = janitor_runner::db::connect(&url_for(&building), 2)
            .await
            .expect("connect template");
        janitor_runner::db::migrate(&pool)
            .await
            .expect("migrate template");
        pool.close().await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {building} RENAME TO {template}"
        )))
        .execute(&mut conn)
        .await
        .expect("publish template");
    }
    let name = unique("jrtest");
    let created = sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE {template}"
    )))
    .execute(&mut conn)
    .await;
    sqlx::query("SELECT pg_advisory_unlock(74617261)")
        .execute(&mut conn)
        .await
        .expect("unlock");
    created.expect("clone template");
    TestDb::open(name).await
}

/// Template names carry a digest of the migrations, so a changed migration gets a new one.
fn template_name() -> String {
    let migrator = janitor_runner::db::migrate::migrator();
    let mut digest: u64 = 1469598103934665603;
    for migration in migrator.iter() {
        for byte in migration.checksum.iter() {
            digest = (digest ^ u64::from(*byte)).wrapping_mul(1099511628211);
        }
    }
    format!("jrtemplate_{digest:016x}")
}

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDb {
    async fn open(name: String) -> Self {
        let url = url_for(&name);
        let pool = janitor_runner::db::connect(&url, 8)
            .await
            .expect("connect test database");
        Self { name, url, pool }
    }

    pub async fn drop_now(self) {
        self.pool.close().await;
        let mut conn = admin().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await;
    }
}

/// A fresh Redis key prefix; `clear_prefix` removes everything under it.
pub fn redis_prefix() -> String {
    format!("{}:", unique("jrtest"))
}

/// The Redis hash `<prefix><key>`, as a sorted map.
pub async fn redis_hash(prefix: &str, key: &str) -> std::collections::BTreeMap<String, String> {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connect");
    redis::cmd("HGETALL")
        .arg(format!("{prefix}{key}"))
        .query_async(&mut conn)
        .await
        .expect("redis hgetall")
}

pub async fn clear_prefix(prefix: &str) {
    let client = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .expect("redis keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("redis del");
    }
}

pub fn fixed_now() -> NaiveDateTime {
    janitor_runner::time::parse_timestamp("2026-11-23T12:00:00").unwrap()
}

/// The configuration the HTTP tests run with; logs and artifacts go below `storage`.
pub fn test_config(storage: &std::path::Path) -> Config {
    let text = format!(
        "logs_location: \"{}/logs\"\nartifact_location: \"{}/artifacts\"\n{}",
        storage.display(),
        storage.display(),
        CONFIG_BODY
    );
    Config::parse(&text, std::path::Path::new("test.conf")).expect("test config parses")
}

const CONFIG_BODY: &str = r#"
        committer: "Janitor Bot <janitor@example.org>"
        distribution { name: "unstable" archive_mirror_uri: "http://deb.example.org/debian" component: "main" }
        campaign {
          name: "lintian-fixes" command: "lintian-brush" branch_name: "lintian-fixes"
          debian_build { base_distribution: "unstable" build_suffix: "jan+lint" }
        }
        campaign { name: "nocommand" branch_name: "x" generic_build {} }
        campaign { name: "generic" command: "true" branch_name: "main" generic_build {} }
        campaign { name: "empty-ok" command: "debianize" default_empty: true generic_build { chroot: "sid" } }
        campaign { name: "broken" command: "x" debian_build { base_distribution: "no-such-dist" } }
        "#;

/// A runner serving both apps on loopback ports, on its own database.
pub struct TestServer {
    pub internal: SocketAddr,
    pub public: SocketAddr,
    pub state: Arc<AppState>,
    pub clock: Arc<FixedClock>,
    pub db: TestDb,
    pub redis_prefix: Option<String>,
    /// Holds `logs/` and `artifacts/` of this server.
    pub storage: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Postgres,
    /// PostgreSQL holds the claims, Redis a copy (the binary's default with `--redis-url`).
    Mirrored,
    /// Redis alone (`--claims-in-redis`).
    Redis,
}

impl TestServer {
    pub async fn start(store: Store) -> Self {
        Self::start_with(store, |_| {}).await
    }

    /// A server whose settings `adjust` changes first.
    pub async fn start_with(store: Store, adjust: impl FnOnce(&mut Settings)) -> Self {
        let db = migrated_database().await;
        let clock = Arc::new(FixedClock::new(fixed_now()));
        let (location, redis_prefix) = match store {
            Store::Postgres => (StoreLocation::Postgres, None),
            Store::Redis => {
                let prefix = redis_prefix();
                (
                    StoreLocation::Redis {
                        url: redis_url(),
                        prefix: prefix.clone(),
                    },
                    Some(prefix),
                )
            }
            Store::Mirrored => {
                let prefix = redis_prefix();
                (
                    StoreLocation::Mirrored {
                        url: redis_url(),
                        prefix: prefix.clone(),
                    },
                    Some(prefix),
                )
            }
        };
        let mut settings = Settings {
            avoid_hosts: ["avoided.example.org".to_string()].into_iter().collect(),
            max_json_body: 1024 * 1024,
            max_upload_size: 4 * 1024 * 1024,
            public_vcs_location: Some("http://127.0.0.1:1/vcs/".to_string()),
            public_apt_archive_location: Some("https://apt.example.org/".to_string()),
            ..Settings::default()
        };
        adjust(&mut settings);
        let storage = tempfile::tempdir().expect("storage directory");
        let state = Arc::new(
            AppState::assemble(
                db.pool.clone(),
                location,
                test_config(storage.path()),
                settings,
                clock.clone(),
            )
            .await
            .expect("assemble state"),
        );
        let listeners = janitor_runner::web::Listeners::bind(
            "127.0.0.1:0".parse().unwrap(),
            Some("127.0.0.1:0".parse().unwrap()),
        )
        .await
        .expect("bind");
        let internal = listeners.internal_addr().unwrap();
        let public = listeners.public_addr().unwrap().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(janitor_runner::web::serve(
            state.clone(),
            listeners,
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            internal,
            public,
            state,
            clock,
            db,
            redis_prefix,
            storage,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn clock_now(&self) -> NaiveDateTime {
        use janitor_runner::clock::Clock;
        self.clock.now()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.internal, path)
    }

    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{}", self.public, path)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.await;
        }
        if let Some(prefix) = &self.redis_prefix {
            clear_prefix(prefix).await;
        }
        self.db.drop_now().await;
    }
}

pub fn reference_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("JANITOR_REFERENCE_SCHEMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/reference"));
    dir.join("state.sql").is_file().then_some(dir)
}

/// Says a test was skipped, on the real stderr (libtest captures `eprintln!` of passing tests).
pub fn skip(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {message}");
}

/// A subscription to one of `server`'s pub/sub channels (its Redis prefix put before
/// `channel`); the server must use Redis.
pub async fn subscribe(server: &TestServer, channel: &str) -> redis::aio::PubSub {
    let prefix = server.redis_prefix.as_deref().expect("a server with Redis");
    let client = redis::Client::open(redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{prefix}{channel}"))
        .await
        .unwrap();
    pubsub
}

/// The next message of `pubsub` as JSON, waiting at most 5 s.
pub async fn next_message(pubsub: &mut redis::aio::PubSub, what: &str) -> serde_json::Value {
    use futures::StreamExt;
    let message = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        pubsub.on_message().next(),
    )
    .await
    .unwrap_or_else(|_| panic!("no {what} message within 5 s"))
    .unwrap();
    serde_json::from_str(&message.get_payload::<String>().unwrap()).unwrap()
}

/// Runs SQL statements on the server's database.
pub async fn sql(server: &TestServer, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&server.db.pool)
        .await
        .unwrap();
}

/// POSTs JSON to the internal app; the status and the JSON answer.
pub async fn post(
    server: &TestServer,
    path: &str,
    body: serde_json::Value,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

/// One `#[tokio::test]` per store for a test written as `async fn name(store: Store)`, named
/// `name::<store>`, so a failure names the store it failed on.
macro_rules! per_store {
    ($test:ident, $($name:ident => $store:expr),+ $(,)?) => {
        mod $test {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    super::$test($store).await;
                }
            )+
        }
    };
}
