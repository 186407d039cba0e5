//! A local directory tree as a store (also what the backup directory is): logs at
//! `<root>/<codebase>/<run_id>/<name>.gz`, artifacts at `<root>/<run_id>/<name>`.

use std::path::{Path, PathBuf};

use super::StorageError;
use super::source::Source;

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
        source: &Source,
        name: &str,
        mtime: u32,
    ) -> Result<(), StorageError> {
        let target = self
            .root
            .join(codebase)
            .join(run_id)
            .join(format!("{name}.gz"));
        compress(source.clone(), target, mtime).await
    }

    /// Writes the named files into `<run_id>/`.
    pub(super) async fn store_artifacts(
        &self,
        run_id: &str,
        files: &[(String, Source)],
    ) -> Result<(), StorageError> {
        let target = self.root.join(run_id);
        tokio::fs::create_dir_all(&target)
            .await
            .map_err(io_error(&target))?;
        for (name, source) in files {
            source.write_to(&target.join(name)).await?;
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

/// Gzip `source` into `target` (creating its directory) with the given header MTIME: one trip
/// to the blocking pool.
pub(super) async fn compress(
    source: Source,
    target: PathBuf,
    mtime: u32,
) -> Result<(), StorageError> {
    tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        let mut input = source.open_blocking()?;
        // Unbuffered: the compressor gathers its output and writes it in large pieces.
        let mut output = std::fs::File::create(&target).map_err(io_error(&target))?;
        super::gzip::gzip(&mut input, &mut output, mtime).map_err(io_error(&target))
    })
    .await?
}

/// Gzip `source` into memory with the given header MTIME, on the blocking pool.
pub(super) async fn compress_to_memory(
    source: Source,
    mtime: u32,
) -> Result<Vec<u8>, StorageError> {
    tokio::task::spawn_blocking(move || -> Result<Vec<u8>, StorageError> {
        let mut input = source.open_blocking()?;
        let capacity = source
            .known_len()
            .map_or(0, |len| usize::try_from(len / 4).unwrap_or(0));
        let mut compressed = Vec::with_capacity(capacity);
        super::gzip::gzip(&mut input, &mut compressed, mtime)
            .map_err(io_error(&source.describe("log")))?;
        Ok(compressed)
    })
    .await?
}

pub(super) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_path_buf(),
        source,
    }
}
