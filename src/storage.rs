//! Where finished runs' logs and artifacts are kept.
//!
//! Logs are gzip-compressed, with the gzip header's MTIME set to the run's finish time, at
//! `<location>/<codebase>/<run_id>/<name>.gz`; artifacts are plain copies at
//! `<location>/<run_id>/<name>`. With `--backup-directory`, a failed primary write goes to
//! `<backup>/logs` or `<backup>/artifacts` instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error(
        "{location} is not a local directory; remote log and artifact storage is not available in this build"
    )]
    Unsupported { location: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{primary}; backup also failed: {backup}")]
    BothFailed {
        primary: Box<StorageError>,
        backup: Box<StorageError>,
    },
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
    primary: &'a LocalStore,
    backup: Option<&'a LocalStore>,
    write: F,
) -> Result<Stored, StorageError>
where
    F: Fn(&'a LocalStore) -> Fut,
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

impl LocalStore {
    /// A location from the config: a filesystem path (absent means `/tmp`, as in Python).
    pub fn from_location(location: Option<&str>) -> Result<Self, StorageError> {
        let location = location.unwrap_or("/tmp");
        if location.starts_with("gs://")
            || location.starts_with("http:")
            || location.starts_with("https:")
        {
            return Err(StorageError::Unsupported {
                location: location.to_string(),
            });
        }
        Ok(Self {
            root: PathBuf::from(location.strip_prefix("file://").unwrap_or(location)),
        })
    }

    /// Compresses `source` into `<root>/<codebase>/<run_id>/<name>.gz`.
    pub async fn import_log(
        &self,
        codebase: &str,
        run_id: &str,
        source: &Path,
        name: &str,
        finish_time: NaiveDateTime,
    ) -> Result<PathBuf, StorageError> {
        let dir = self.root.join(codebase).join(run_id);
        let target = dir.join(format!("{name}.gz"));
        let source = source.to_path_buf();
        let mtime = u32::try_from(finish_time.and_utc().timestamp()).unwrap_or(0);
        let written = target.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            let data = std::fs::read(&source).map_err(io_error(&source))?;
            let file = std::fs::File::create(&target).map_err(io_error(&target))?;
            let mut encoder = flate2::GzBuilder::new()
                .mtime(mtime)
                .write(file, flate2::Compression::default());
            encoder.write_all(&data).map_err(io_error(&target))?;
            encoder.finish().map_err(io_error(&target))?;
            Ok(())
        })
        .await??;
        Ok(written)
    }

    /// Copies the named files from `dir` to `<root>/<run_id>/`.
    pub async fn store_artifacts(
        &self,
        run_id: &str,
        dir: &Path,
        names: &[String],
    ) -> Result<(), StorageError> {
        let target = self.root.join(run_id);
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
}

/// Primary stores and their optional backups.
#[derive(Debug, Clone)]
pub struct Storage {
    pub logs: LocalStore,
    pub artifacts: LocalStore,
    pub backup_logs: Option<LocalStore>,
    pub backup_artifacts: Option<LocalStore>,
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
            logs: LocalStore::from_location(logs_location)?,
            artifacts: LocalStore::from_location(artifact_location.or(Some("/tmp/artifacts")))?,
            backup_logs: backup("logs"),
            backup_artifacts: backup("artifacts"),
        })
    }
}

impl Storage {
    /// Stores one log, falling back to the backup directory.
    pub async fn import_log(
        &self,
        codebase: &str,
        run_id: &str,
        source: &Path,
        name: &str,
        finish_time: NaiveDateTime,
    ) -> Result<Stored, StorageError> {
        with_backup(&self.logs, self.backup_logs.as_ref(), |store| async move {
            store
                .import_log(codebase, run_id, source, name, finish_time)
                .await
                .map(|_| ())
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
        with_backup(&self.artifacts, self.backup_artifacts.as_ref(), |store| {
            store.store_artifacts(run_id, dir, names)
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
            logs: LocalStore {
                root: blocked.clone(),
            },
            artifacts: LocalStore {
                root: blocked.clone(),
            },
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
}
