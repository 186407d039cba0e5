//! Where finished runs' logs and artifacts are kept.
//!
//! Logs are gzip-compressed, with the gzip header's MTIME set to the run's finish time:
//! locally at `<location>/<codebase>/<run_id>/<name>.gz`; in S3-compatible storage (an
//! `http(s)://` location, bucket `debian-janitor`) at `logs/<codebase>/<run_id>/<name>.gz`; in
//! Google Cloud Storage (`gs://bucket`) at `<codebase>/<run_id>/<name>.gz`. Artifacts are plain
//! copies at `<location>/<run_id>/<name>` (local directory or `gs://bucket`). With
//! `--backup-directory`, a failed primary write goes to `<backup>/logs` or
//! `<backup>/artifacts` instead, and [`Storage::move_backups`] later moves it to the primary.
//!
//! Entry points: [`Storage::new`] from the config, [`Storage::import_log`],
//! [`Storage::store_artifacts`], [`spawn_backup_mover`]. Backends: `local` (directories),
//! `object` (GCS, S3), `s3_acl` (the public-read call S3 uploads need), `backup`.

mod backup;
#[doc(hidden)]
pub mod gzip;
mod local;
mod object;
mod s3_acl;
mod source;

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

pub use self::backup::{MoveReport, spawn_backup_mover};
pub use self::local::LocalStore;
pub use self::object::ObjectBackend;
pub use self::s3_acl::S3PublicRead;
pub use self::source::Source;

/// The bucket the Python runner's S3 log store writes to.
pub const S3_LOG_BUCKET: &str = "debian-janitor";

/// Why logs or artifacts could not be stored, or a store not set up.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The location cannot be used, or a write there failed for another reason.
    #[error("{location}: {reason}")]
    Unsupported {
        /// The location or object.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A local file or directory could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The object store failed.
    #[error("{location}: {source}")]
    Object {
        /// The store's location, or the object's.
        location: String,
        /// What the object store said.
        source: object_store::Error,
    },
    /// The task doing the blocking work panicked or was cancelled.
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The primary store failed, and so did the backup directory.
    #[error("{primary}; backup also failed: {backup}")]
    BothFailed {
        /// Why the primary failed.
        primary: Box<StorageError>,
        /// Why the backup failed.
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
    /// The primary store holds it.
    Primary,
    /// The primary failed; the backup directory holds it.
    Backup,
}

/// One place logs or artifacts go.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A local directory.
    Local(LocalStore),
    /// An object store bucket (GCS or S3).
    Object(ObjectBackend),
}

/// What a location holds: the key layouts differ between logs and artifacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    /// Run logs, kept gzip-compressed under `<codebase>/<run_id>/`.
    Logs,
    /// Run artifacts, kept as plain copies under `<run_id>/`.
    Artifacts,
}

impl Backend {
    /// A location from the config. Logs: `gs://bucket[/prefix]` (GCS), `http(s)://endpoint`
    /// (S3-compatible, bucket `debian-janitor`, credentials from the usual `AWS_*`
    /// variables), otherwise a directory (absent means `/tmp`, as in Python). Artifacts:
    /// `gs://bucket[/prefix]` or a directory.
    pub fn from_location(location: Option<&str>, contents: Contents) -> Result<Self, StorageError> {
        let location = location.unwrap_or("/tmp");
        if let Some(rest) = location.strip_prefix("gs://") {
            return ObjectBackend::gcs(location, rest).map(Self::Object);
        }
        if location.starts_with("http:") || location.starts_with("https:") {
            if contents == Contents::Artifacts {
                return Err(StorageError::Unsupported {
                    location: location.to_string(),
                    reason: "artifacts can go to a directory or a gs:// bucket".into(),
                });
            }
            return ObjectBackend::s3(location).map(Self::Object);
        }
        Ok(Self::Local(LocalStore {
            root: PathBuf::from(location.strip_prefix("file://").unwrap_or(location)),
        }))
    }

    /// Where this backend writes, for spans: `local`, `gcs` or `s3`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local(_) => "local",
            Self::Object(backend) if backend.location.starts_with("gs://") => "gcs",
            Self::Object(_) => "s3",
        }
    }

    /// Compresses `source` into the log `<codebase>/<run_id>/<name>.gz`.
    #[tracing::instrument(
        name = "storage.import_log",
        skip_all,
        fields(backend = self.kind(), run_id = run_id, name = name, bytes = tracing::field::Empty)
    )]
    pub async fn import_log(
        &self,
        codebase: &str,
        run_id: &str,
        source: &Source,
        name: &str,
        finish_time: NaiveDateTime,
    ) -> Result<(), StorageError> {
        if let Some(len) = source.known_len() {
            tracing::Span::current().record("bytes", len);
        }
        let mtime = u32::try_from(finish_time.and_utc().timestamp()).unwrap_or(0);
        match self {
            Self::Local(local) => {
                local
                    .import_log(codebase, run_id, source, name, mtime)
                    .await
            }
            Self::Object(backend) => {
                backend
                    .import_log(codebase, run_id, source, name, mtime)
                    .await
            }
        }
    }

    /// Stores the named files under `<run_id>/`.
    #[tracing::instrument(
        name = "storage.store_artifacts",
        skip_all,
        fields(backend = self.kind(), run_id = run_id, files = files.len())
    )]
    pub async fn store_artifacts(
        &self,
        run_id: &str,
        files: &[(String, Source)],
    ) -> Result<(), StorageError> {
        match self {
            Self::Local(local) => local.store_artifacts(run_id, files).await,
            Self::Object(backend) => backend.store_artifacts(run_id, files).await,
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
                local
                    .put_compressed_log(codebase, run_id, file_name, source)
                    .await
            }
            Self::Object(backend) => {
                backend
                    .put_compressed_log(codebase, run_id, file_name, source)
                    .await
            }
        }
    }
}

/// Primary stores and their optional backups.
#[derive(Debug, Clone)]
pub struct Storage {
    /// Where logs go.
    pub logs: Backend,
    /// Where artifacts go.
    pub artifacts: Backend,
    /// Where logs go when the log store fails: `<backup-directory>/logs`.
    pub backup_logs: Option<LocalStore>,
    /// Where artifacts go when the artifact store fails: `<backup-directory>/artifacts`.
    pub backup_artifacts: Option<LocalStore>,
}

impl Storage {
    /// The stores of the configured locations (artifacts default to `/tmp/artifacts`), with
    /// backups under `backup_directory` when given.
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
        source: &Source,
        name: &str,
        finish_time: NaiveDateTime,
    ) -> Result<Stored, StorageError> {
        let backup = self.backup_logs.clone().map(Backend::Local);
        backup::with_backup(&self.logs, backup.as_ref(), |store| {
            store.import_log(codebase, run_id, source, name, finish_time)
        })
        .await
    }

    /// Stores a run's artifacts, falling back to the backup directory; a backup write counts
    /// as stored (DECISIONS.md 6).
    pub async fn store_artifacts(
        &self,
        run_id: &str,
        files: &[(String, Source)],
    ) -> Result<Stored, StorageError> {
        let backup = self.backup_artifacts.clone().map(Backend::Local);
        backup::with_backup(&self.artifacts, backup.as_ref(), |store| {
            store.store_artifacts(run_id, files)
        })
        .await
    }
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
        let files = vec![("a.deb".to_string(), Source::Memory("deb".into()))];
        assert_eq!(
            storage.store_artifacts("run-1", &files).await.unwrap(),
            Stored::Backup
        );
        assert!(dir.path().join("backup/artifacts/run-1/a.deb").is_file());
        let now = chrono::NaiveDateTime::default();
        let log = Source::Memory("log text".into());
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
        assert!(no_backup.store_artifacts("run-2", &files).await.is_err());
        let both = Storage {
            backup_artifacts: Some(LocalStore { root: blocked }),
            ..storage
        };
        let error = both.store_artifacts("run-3", &files).await.unwrap_err();
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
        let files = vec![("a.deb".to_string(), Source::File(dir.path().join("a.deb")))];
        let now = chrono::NaiveDateTime::default();
        let log = Source::File(dir.path().join("build.log"));
        assert_eq!(
            storage.store_artifacts("run-1", &files).await.unwrap(),
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
