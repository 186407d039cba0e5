//! A local directory tree as a store (also what the backup directory is): logs at
//! `<root>/<codebase>/<run_id>/<name>.gz`, artifacts at `<root>/<run_id>/<name>`.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::StorageError;

/// A local directory tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalStore {
    /// The directory the logs and artifacts are kept under.
    pub root: PathBuf,
}

impl LocalStore {
    /// Compresses `source` into the log `<codebase>/<run_id>/<name>.gz`.
    pub(super) async fn import_log(
        &self,
        codebase: &str,
        run_id: &str,
        source: &Path,
        name: &str,
        mtime: u32,
    ) -> Result<(), StorageError> {
        let target = self
            .root
            .join(codebase)
            .join(run_id)
            .join(format!("{name}.gz"));
        compress(source.to_path_buf(), target, mtime).await
    }

    /// Copies the named files from `dir` into `<run_id>/`.
    pub(super) async fn store_artifacts(
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

    /// Stores an already-compressed log file as it is.
    pub(super) async fn put_compressed_log(
        &self,
        codebase: &str,
        run_id: &str,
        file_name: &str,
        source: &Path,
    ) -> Result<(), StorageError> {
        let dir = self.root.join(codebase).join(run_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(io_error(&dir))?;
        tokio::fs::copy(source, dir.join(file_name))
            .await
            .map_err(io_error(source))?;
        Ok(())
    }
}

/// Gzip `source` into `target` (creating its directory) with the given header MTIME.
pub(super) async fn compress(
    source: PathBuf,
    target: PathBuf,
    mtime: u32,
) -> Result<(), StorageError> {
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

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}
