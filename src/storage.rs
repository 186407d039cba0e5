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
