//! Where finished runs' logs and artifacts are kept.
//!
//! Logs are gzip-compressed, with the gzip header's MTIME set to the run's finish time:
//! locally at `<location>/<codebase>/<run_id>/<name>.gz`; in S3-compatible storage (an
//! `http(s)://` location, bucket `debian-janitor`) at `logs/<codebase>/<run_id>/<name>.gz`; in
//! Google Cloud Storage (`gs://bucket`) at `<codebase>/<run_id>/<name>.gz`. Artifacts are plain
//! copies at `<location>/<run_id>/<name>` (local directory or `gs://bucket`). With
//! `--backup-directory`, a failed primary write goes to `<backup>/logs` or
//! `<backup>/artifacts` instead, and [`Storage::move_backups`] later moves it to the primary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDateTime;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt;

/// The bucket the Python runner's S3 log store writes to.
pub const S3_LOG_BUCKET: &str = "debian-janitor";
/// How long one object upload may take (the Python stores' five minutes).
const OBJECT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long moving one backed-up run to the primary may take.
const MOVE_TIMEOUT: Duration = Duration::from_secs(900);
/// Backed-up runs moved at the same time.
const MOVE_CONCURRENCY: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{location}: {reason}")]
    Unsupported { location: String, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: {source}")]
    Object {
        location: String,
        source: object_store::Error,
    },
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{primary}; backup also failed: {backup}")]
    BothFailed {
        primary: Box<StorageError>,
        backup: Box<StorageError>,
    },
}

impl StorageError {
    /// The object already exists and may not be replaced (an immutable bucket): the Python
    /// stores' "permission denied", retried under a time-suffixed name.
    fn is_refused_overwrite(&self) -> bool {
        matches!(
            self,
            Self::Object {
                source: object_store::Error::PermissionDenied { .. }
                    | object_store::Error::AlreadyExists { .. }
                    | object_store::Error::Precondition { .. },
                ..
            }
        )
    }
}

/// Where a write landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Primary,
    /// The primary failed; the backup directory holds it.
    Backup,
}

/// Runs `write` against the primary store, then against the backup if the primary failed.
async fn with_backup<'a, F, Fut>(
    primary: &'a Backend,
    backup: Option<&'a Backend>,
    write: F,
) -> Result<Stored, StorageError>
where
    F: Fn(&'a Backend) -> Fut,
    Fut: std::future::Future<Output = Result<(), StorageError>>,
{
    let primary_error = match write(primary).await {
        Ok(()) => return Ok(Stored::Primary),
        Err(error) => error,
    };
    let Some(backup) = backup else {
        return Err(primary_error);
    };
    tracing::warn!(error = %primary_error, "primary storage failed; writing to the backup directory");
    match write(backup).await {
        Ok(()) => Ok(Stored::Backup),
        Err(backup_error) => Err(StorageError::BothFailed {
            primary: Box::new(primary_error),
            backup: Box::new(backup_error),
        }),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A local directory tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStore {
    pub root: PathBuf,
}

/// An object store bucket, with the key prefix every object goes under.
#[derive(Debug, Clone)]
pub struct ObjectBackend {
    pub store: Arc<dyn ObjectStore>,
    /// Path segments before `<codebase>/<run_id>/...` (S3 logs: `logs`).
    pub prefix: Vec<String>,
    /// The configured location, for messages.
    pub location: String,
    /// S3 only: makes each uploaded object public-read, as the Python runner's uploads are.
    pub public_read: Option<S3PublicRead>,
}

/// Sets the `public-read` canned ACL on S3 objects (`PUT <key>?acl`), signed with the store's
/// own credentials: the Python site reads logs anonymously. `object_store` writes objects but
/// has no ACL call.
#[derive(Debug, Clone)]
pub struct S3PublicRead {
    client: reqwest::Client,
    bucket_url: String,
    region: String,
    credentials: object_store::aws::AwsCredentialProvider,
}

/// What S3 leaves unescaped in a key path: unreserved characters and `/`.
const S3_KEY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl S3PublicRead {
    async fn apply(&self, key: &ObjectPath) -> Result<(), StorageError> {
        let location = format!("{}/{key}", self.bucket_url);
        let failed = |reason: String| StorageError::Unsupported {
            location: location.clone(),
            reason,
        };
        let credential =
            self.credentials
                .get_credential()
                .await
                .map_err(|source| StorageError::Object {
                    location: location.clone(),
                    source,
                })?;
        let url = format!(
            "{}/{}?acl",
            self.bucket_url,
            percent_encoding::utf8_percent_encode(key.as_ref(), S3_KEY_ESCAPE)
        );
        let mut request = http::Request::builder()
            .method(http::Method::PUT)
            .uri(&url)
            .header("x-amz-acl", "public-read")
            .body(object_store::client::HttpRequestBody::empty())
            .map_err(|e| failed(format!("cannot build the ACL request: {e}")))?;
        object_store::aws::AwsAuthorizer::new(&credential, "s3", &self.region)
            .authorize(&mut request, None);
        let mut signed = self.client.put(&url);
        for (name, value) in request.headers() {
            signed = signed.header(name, value);
        }
        let response = signed
            .send()
            .await
            .map_err(|e| failed(format!("setting the public-read ACL: {e}")))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "setting the public-read ACL: HTTP {}",
                response.status()
            )));
        }
        Ok(())
    }
}

/// One place logs or artifacts go.
#[derive(Debug, Clone)]
pub enum Backend {
    Local(LocalStore),
    Object(ObjectBackend),
}

/// What a location holds: the key layouts differ between logs and artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    Logs,
    Artifacts,
}

fn object_client_options() -> object_store::ClientOptions {
    object_store::ClientOptions::new()
        .with_timeout(OBJECT_TIMEOUT)
        .with_connect_timeout(Duration::from_secs(10))
}

impl Backend {
    /// A location from the config. Logs: `gs://bucket[/prefix]` (GCS), `http(s)://endpoint`
    /// (S3-compatible, bucket `debian-janitor`, credentials from the usual `AWS_*`
    /// variables), otherwise a directory (absent means `/tmp`, as in Python). Artifacts:
    /// `gs://bucket[/prefix]` or a directory.
    pub fn from_location(location: Option<&str>, contents: Contents) -> Result<Self, StorageError> {
        let location = location.unwrap_or("/tmp");
        let unsupported = |reason: String| StorageError::Unsupported {
            location: location.to_string(),
            reason,
        };
        let object_error = |source| StorageError::Object {
            location: location.to_string(),
            source,
        };
        if let Some(rest) = location.strip_prefix("gs://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(unsupported("a gs:// location needs a bucket name".into()));
            }
            let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_client_options(object_client_options())
                .build()
                .map_err(object_error)?;
            return Ok(Self::Object(ObjectBackend {
                store: Arc::new(store),
                prefix: prefix
                    .split('/')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect(),
                location: location.to_string(),
                public_read: None,
            }));
        }
        if location.starts_with("http:") || location.starts_with("https:") {
            if contents == Contents::Artifacts {
                return Err(unsupported(
                    "artifacts can go to a directory or a gs:// bucket".into(),
                ));
            }
            let url = url::Url::parse(location)
                .map_err(|e| unsupported(format!("not a valid S3 endpoint URL: {e}")))?;
            // Client options first: they replace the whole set, `allow_http` included.
            let builder = object_store::aws::AmazonS3Builder::from_env()
                .with_client_options(object_client_options())
                .with_endpoint(location.trim_end_matches('/'))
                .with_bucket_name(S3_LOG_BUCKET)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(url.scheme() == "http");
            let region = builder
                .get_config_value(&object_store::aws::AmazonS3ConfigKey::Region)
                .unwrap_or_else(|| "us-east-1".to_string());
            let store = builder.build().map_err(object_error)?;
            let public_read = S3PublicRead {
                client: reqwest::Client::builder()
                    .timeout(OBJECT_TIMEOUT)
                    .connect_timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| unsupported(format!("cannot set up the HTTP client: {e}")))?,
                bucket_url: format!("{}/{S3_LOG_BUCKET}", location.trim_end_matches('/')),
                region,
                credentials: store.credentials().clone(),
            };
            return Ok(Self::Object(ObjectBackend {
                store: Arc::new(store),
                prefix: vec!["logs".to_string()],
                location: location.to_string(),
                public_read: Some(public_read),
            }));
        }
        Ok(Self::Local(LocalStore {
            root: PathBuf::from(location.strip_prefix("file://").unwrap_or(location)),
        }))
    }

    /// Compresses `source` into the log `<codebase>/<run_id>/<name>.gz`. An object store that
    /// refuses to replace an existing log gets it under `<name>.<UTC time>` instead, as the
    /// Python runner does.
    pub async fn import_log(
        &self,
        codebase: &str,
        run_id: &str,
        source: &Path,
        name: &str,
        finish_time: NaiveDateTime,
    ) -> Result<(), StorageError> {
        let mtime = u32::try_from(finish_time.and_utc().timestamp()).unwrap_or(0);
        match self {
            Self::Local(local) => {
                let target = local
                    .root
                    .join(codebase)
                    .join(run_id)
                    .join(format!("{name}.gz"));
                compress(source.to_path_buf(), target, mtime).await
            }
            Self::Object(backend) => {
                let compressed = tempfile::NamedTempFile::new()
                    .map_err(io_error(&std::env::temp_dir()))?
                    .into_temp_path();
                compress(source.to_path_buf(), compressed.to_path_buf(), mtime).await?;
                let key = backend.key(&[codebase, run_id, &format!("{name}.gz")]);
                match backend.upload(&key, &compressed).await {
                    Err(error) if error.is_refused_overwrite() => {
                        let suffix = crate::clock::Clock::now(&crate::clock::SystemClock)
                            .format("%Y-%m-%dT%H:%M:%S");
                        tracing::warn!(%error, "log exists; storing it under a new name");
                        let key = backend.key(&[codebase, run_id, &format!("{name}.{suffix}.gz")]);
                        backend.upload(&key, &compressed).await
                    }
                    other => other,
                }
            }
        }
    }

    /// Copies the named files from `dir` into `<run_id>/`.
    pub async fn store_artifacts(
        &self,
        run_id: &str,
        dir: &Path,
        names: &[String],
    ) -> Result<(), StorageError> {
        match self {
            Self::Local(local) => {
                let target = local.root.join(run_id);
                tokio::fs::create_dir_all(&target)
                    .await
                    .map_err(io_error(&target))?;
                for name in names {
                    let from = dir.join(name);
                    tokio::fs::copy(&from, target.join(name))
                        .await
                        .map_err(io_error(&from))?;
                }
                Ok(())
            }
            Self::Object(backend) => {
                let mut uploads = Vec::with_capacity(names.len());
                for name in names {
                    let key = backend.key(&[run_id, name]);
                    let from = dir.join(name);
                    uploads.push(async move { backend.upload(&key, &from).await });
                }
                futures::future::try_join_all(uploads).await.map(|_| ())
            }
        }
    }

    /// Stores an already-compressed log file as it is (moving a backed-up log).
    async fn put_compressed_log(
        &self,
        codebase: &str,
        run_id: &str,
        file_name: &str,
        source: &Path,
    ) -> Result<(), StorageError> {
        match self {
            Self::Local(local) => {
                let dir = local.root.join(codebase).join(run_id);
                tokio::fs::create_dir_all(&dir)
                    .await
                    .map_err(io_error(&dir))?;
                tokio::fs::copy(source, dir.join(file_name))
                    .await
                    .map_err(io_error(source))?;
                Ok(())
            }
            Self::Object(backend) => {
                backend
                    .upload(&backend.key(&[codebase, run_id, file_name]), source)
                    .await
            }
        }
    }
}

impl ObjectBackend {
    fn key(&self, parts: &[&str]) -> ObjectPath {
        ObjectPath::from_iter(
            self.prefix
                .iter()
                .map(String::as_str)
                .chain(parts.iter().copied()),
        )
    }

    /// Streams a file into an object (one request when small, a multipart upload otherwise).
    async fn upload(&self, key: &ObjectPath, source: &Path) -> Result<(), StorageError> {
        let object_error = |error: std::io::Error| {
            // BufWriter wraps the store's error in an io::Error; unwrap it so callers can
            // tell a refused overwrite from an outage.
            match error
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<object_store::Error>())
            {
                Some(_) => match error
                    .into_inner()
                    .map(|inner| inner.downcast::<object_store::Error>())
                {
                    Some(Ok(source)) => StorageError::Object {
                        location: format!("{}/{key}", self.location.trim_end_matches('/')),
                        source: *source,
                    },
                    _ => StorageError::Unsupported {
                        location: key.to_string(),
                        reason: "upload failed".into(),
                    },
                },
                None => StorageError::Io {
                    path: source.to_path_buf(),
                    source: error,
                },
            }
        };
        let mut file = tokio::fs::File::open(source)
            .await
            .map_err(io_error(source))?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), key.clone());
        if let Err(error) = tokio::io::copy(&mut file, &mut writer).await {
            writer.abort().await.ok();
            return Err(object_error(error));
        }
        writer.shutdown().await.map_err(object_error)?;
        match &self.public_read {
            Some(public_read) => public_read.apply(key).await,
            None => Ok(()),
        }
    }
}

/// Gzip `source` into `target` (creating its directory) with the given header MTIME.
async fn compress(source: PathBuf, target: PathBuf, mtime: u32) -> Result<(), StorageError> {
    tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let mut input = std::fs::File::open(&source).map_err(io_error(&source))?;
        let file = std::fs::File::create(&target).map_err(io_error(&target))?;
        let mut encoder = flate2::GzBuilder::new()
            .mtime(mtime)
            .write(file, flate2::Compression::default());
        std::io::copy(&mut input, &mut encoder).map_err(io_error(&source))?;
        encoder
            .finish()
            .map_err(io_error(&target))?
            .flush()
            .map_err(io_error(&target))?;
        Ok(())
    })
    .await?
}

/// Primary stores and their optional backups.
#[derive(Debug, Clone)]
pub struct Storage {
    pub logs: Backend,
    pub artifacts: Backend,
    pub backup_logs: Option<LocalStore>,
    pub backup_artifacts: Option<LocalStore>,
}

/// What one pass of [`Storage::move_backups`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveReport {
    pub logs_moved: usize,
    pub artifact_runs_moved: usize,
    pub failures: usize,
}

impl Storage {
    pub fn new(
        logs_location: Option<&str>,
        artifact_location: Option<&str>,
        backup_directory: Option<&Path>,
    ) -> Result<Self, StorageError> {
        let backup = |sub: &str| {
            backup_directory.map(|dir| LocalStore {
                root: dir.join(sub),
            })
        };
        Ok(Self {
            logs: Backend::from_location(logs_location, Contents::Logs)?,
            artifacts: Backend::from_location(
                artifact_location.or(Some("/tmp/artifacts")),
                Contents::Artifacts,
            )?,
            backup_logs: backup("logs"),
            backup_artifacts: backup("artifacts"),
        })
    }

    /// Stores one log, falling back to the backup directory.
    pub async fn import_log(
        &self,
        codebase: &str,
        run_id: &str,
        source: &Path,
        name: &str,
        finish_time: NaiveDateTime,
    ) -> Result<Stored, StorageError> {
        let backup = self.backup_logs.clone().map(Backend::Local);
        with_backup(&self.logs, backup.as_ref(), |store| {
            store.import_log(codebase, run_id, source, name, finish_time)
        })
        .await
    }

    /// Stores a run's artifacts, falling back to the backup directory; a backup write counts
    /// as stored (DECISIONS 6).
    pub async fn store_artifacts(
        &self,
        run_id: &str,
        dir: &Path,
        names: &[String],
    ) -> Result<Stored, StorageError> {
        let backup = self.backup_artifacts.clone().map(Backend::Local);
        with_backup(&self.artifacts, backup.as_ref(), |store| {
            store.store_artifacts(run_id, dir, names)
        })
        .await
    }

    /// Moves what the backup directory holds to the primary stores: each backed-up run's
    /// artifacts (a directory `<run_id>/`, stored again as a whole) and each log (kept
    /// compressed as it is). What moved is deleted from the backup; what failed stays for
    /// the next pass.
    pub async fn move_backups(&self) -> MoveReport {
        let mut report = MoveReport::default();
        if let Some(backup) = &self.backup_artifacts {
            let mut moves = Vec::new();
            for run_dir in list_dirs(&backup.root).await {
                moves.push(async move {
                    let moved =
                        tokio::time::timeout(MOVE_TIMEOUT, self.move_artifact_run(&run_dir)).await;
                    match moved {
                        Ok(Ok(())) => true,
                        Ok(Err(error)) => {
                            tracing::warn!(%error, dir = %run_dir.display(), "cannot move backed-up artifacts yet");
                            false
                        }
                        Err(_) => {
                            tracing::warn!(dir = %run_dir.display(), "moving backed-up artifacts timed out");
                            false
                        }
                    }
                });
            }
            let results: Vec<bool> = futures::stream::iter(moves)
                .buffer_unordered(MOVE_CONCURRENCY)
                .collect()
                .await;
            report.artifact_runs_moved = results.iter().filter(|ok| **ok).count();
            report.failures += results.iter().filter(|ok| !**ok).count();
        }
        if let Some(backup) = &self.backup_logs {
            for codebase_dir in list_dirs(&backup.root).await {
                for run_dir in list_dirs(&codebase_dir).await {
                    for file in list_files(&run_dir).await {
                        match self.move_log(&codebase_dir, &run_dir, &file).await {
                            Ok(()) => report.logs_moved += 1,
                            Err(error) => {
                                tracing::warn!(%error, file = %file.display(), "cannot move backed-up log yet");
                                report.failures += 1;
                            }
                        }
                    }
                    tokio::fs::remove_dir(&run_dir).await.ok();
                }
                tokio::fs::remove_dir(&codebase_dir).await.ok();
            }
        }
        report
    }

    async fn move_artifact_run(&self, run_dir: &Path) -> Result<(), StorageError> {
        let run_id = file_name(run_dir);
        let names: Vec<String> = list_files(run_dir)
            .await
            .iter()
            .map(|f| file_name(f))
            .collect();
        self.artifacts
            .store_artifacts(&run_id, run_dir, &names)
            .await?;
        tokio::fs::remove_dir_all(run_dir)
            .await
            .map_err(io_error(run_dir))
    }

    async fn move_log(
        &self,
        codebase_dir: &Path,
        run_dir: &Path,
        file: &Path,
    ) -> Result<(), StorageError> {
        let codebase = file_name(codebase_dir);
        let run_id = file_name(run_dir);
        let name = file_name(file);
        tokio::time::timeout(
            MOVE_TIMEOUT,
            self.logs
                .put_compressed_log(&codebase, &run_id, &name, file),
        )
        .await
        .map_err(|_| StorageError::Io {
            path: file.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "moving the log timed out"),
        })??;
        tokio::fs::remove_file(file).await.map_err(io_error(file))
    }
}

/// Moves backed-up logs and artifacts to the primary stores now and then, for as long as
/// the runner runs.
pub fn spawn_backup_mover(
    storage: Storage,
    every: Duration,
) -> Option<tokio::task::JoinHandle<()>> {
    if storage.backup_logs.is_none() && storage.backup_artifacts.is_none() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let report = storage.move_backups().await;
            if report != MoveReport::default() {
                tracing::info!(?report, "moved backed-up logs and artifacts");
            }
        }
    }))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

async fn list_entries(dir: &Path, want_dirs: bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return found;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if let Ok(kind) = entry.file_type().await
            && kind.is_dir() == want_dirs
            && (want_dirs || kind.is_file())
        {
            found.push(entry.path());
        }
    }
    found.sort();
    found
}

async fn list_dirs(dir: &Path) -> Vec<PathBuf> {
    list_entries(dir, true).await
}

async fn list_files(dir: &Path) -> Vec<PathBuf> {
    list_entries(dir, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn falls_back_to_the_backup_directory() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the primary directory should be: every write there fails.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, "not a directory").unwrap();
        std::fs::write(dir.path().join("a.deb"), "deb").unwrap();
        let storage = Storage {
            logs: Backend::Local(LocalStore {
                root: blocked.clone(),
            }),
            artifacts: Backend::Local(LocalStore {
                root: blocked.clone(),
            }),
            backup_logs: Some(LocalStore {
                root: dir.path().join("backup/logs"),
            }),
            backup_artifacts: Some(LocalStore {
                root: dir.path().join("backup/artifacts"),
            }),
        };
        let names = vec!["a.deb".to_string()];
        assert_eq!(
            storage
                .store_artifacts("run-1", dir.path(), &names)
                .await
                .unwrap(),
            Stored::Backup
        );
        assert!(dir.path().join("backup/artifacts/run-1/a.deb").is_file());
        let now = chrono::NaiveDateTime::default();
        let log = dir.path().join("a.deb");
        assert_eq!(
            storage
                .import_log("alpha", "run-1", &log, "build.log", now)
                .await
                .unwrap(),
            Stored::Backup
        );
        assert!(
            dir.path()
                .join("backup/logs/alpha/run-1/build.log.gz")
                .is_file()
        );

        let no_backup = Storage {
            backup_artifacts: None,
            ..storage.clone()
        };
        assert!(
            no_backup
                .store_artifacts("run-2", dir.path(), &names)
                .await
                .is_err()
        );
        let both = Storage {
            backup_artifacts: Some(LocalStore { root: blocked }),
            ..storage
        };
        let error = both
            .store_artifacts("run-3", dir.path(), &names)
            .await
            .unwrap_err();
        assert!(error.to_string().contains("backup also failed"), "{error}");
    }

    #[tokio::test]
    async fn moves_backups_to_the_primary_once_it_works() {
        let dir = tempfile::tempdir().unwrap();
        let primary = dir.path().join("primary");
        // The primary is a file at first, so writes fail and land in the backup.
        std::fs::write(&primary, "not yet").unwrap();
        std::fs::write(dir.path().join("a.deb"), "deb").unwrap();
        std::fs::write(dir.path().join("build.log"), "log text").unwrap();
        let storage = Storage {
            logs: Backend::Local(LocalStore {
                root: primary.join("logs"),
            }),
            artifacts: Backend::Local(LocalStore {
                root: primary.join("artifacts"),
            }),
            backup_logs: Some(LocalStore {
                root: dir.path().join("backup/logs"),
            }),
            backup_artifacts: Some(LocalStore {
                root: dir.path().join("backup/artifacts"),
            }),
        };
        let names = vec!["a.deb".to_string()];
        let now = chrono::NaiveDateTime::default();
        let log = dir.path().join("build.log");
        assert_eq!(
            storage
                .store_artifacts("run-1", dir.path(), &names)
                .await
                .unwrap(),
            Stored::Backup
        );
        assert_eq!(
            storage
                .import_log("alpha", "run-1", &log, "build.log", now)
                .await
                .unwrap(),
            Stored::Backup
        );
        // Still broken: nothing moves, nothing is lost.
        let report = storage.move_backups().await;
        assert_eq!((report.logs_moved, report.artifact_runs_moved), (0, 0));
        assert_eq!(report.failures, 2);
        assert!(dir.path().join("backup/artifacts/run-1/a.deb").is_file());
        assert!(
            dir.path()
                .join("backup/logs/alpha/run-1/build.log.gz")
                .is_file()
        );

        std::fs::remove_file(&primary).unwrap();
        let report = storage.move_backups().await;
        assert_eq!(
            report,
            MoveReport {
                logs_moved: 1,
                artifact_runs_moved: 1,
                failures: 0
            }
        );
        assert_eq!(
            std::fs::read(primary.join("artifacts/run-1/a.deb")).unwrap(),
            b"deb"
        );
        let gz = std::fs::File::open(primary.join("logs/alpha/run-1/build.log.gz")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text).unwrap();
        assert_eq!(text, "log text");
        assert!(!dir.path().join("backup/artifacts/run-1").exists());
        assert!(!dir.path().join("backup/logs/alpha").exists());
    }

    #[test]
    fn locations() {
        assert!(matches!(
            Backend::from_location(None, Contents::Logs).unwrap(),
            Backend::Local(LocalStore { root }) if root == Path::new("/tmp")
        ));
        match Backend::from_location(Some("http://127.0.0.1:9000/"), Contents::Logs).unwrap() {
            Backend::Object(backend) => assert_eq!(backend.prefix, vec!["logs"]),
            other => panic!("expected an object store, got {other:?}"),
        }
        assert!(
            Backend::from_location(Some("https://s3.example.org"), Contents::Artifacts).is_err()
        );
        assert!(Backend::from_location(Some("gs://"), Contents::Artifacts).is_err());
    }
}
