//! What a stored file is read from: the bytes of a small upload kept in memory, or a file on
//! disk (a large upload spilled to a temporary directory, a backed-up file being moved).
//!
//! Small uploads stay in memory because writing them to a temporary file first cost more than
//! everything else in a finish: a directory and a file created, written and removed per run,
//! each on the blocking pool (docs/performance.md).

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::StorageError;
use super::local::io_error;

/// A file's content, where it is. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The content itself.
    Memory(Bytes),
    /// A file holding it.
    File(PathBuf),
}

impl Source {
    /// The size when it is known without a system call (in memory).
    pub fn known_len(&self) -> Option<u64> {
        match self {
            Self::Memory(bytes) => u64::try_from(bytes.len()).ok(),
            Self::File(_) => None,
        }
    }

    /// The path errors name: the file, or `name` for content in memory.
    pub fn describe(&self, name: &str) -> PathBuf {
        match self {
            Self::Memory(_) => PathBuf::from(name),
            Self::File(path) => path.clone(),
        }
    }

    /// A blocking reader over the content; only for use on the blocking pool.
    pub(super) fn open_blocking(&self) -> Result<Box<dyn Read + Send>, StorageError> {
        match self {
            Self::Memory(bytes) => Ok(Box::new(std::io::Cursor::new(bytes.clone()))),
            Self::File(path) => Ok(Box::new(std::fs::File::open(path).map_err(io_error(path))?)),
        }
    }

    /// The whole content.
    pub async fn read(&self) -> Result<Bytes, std::io::Error> {
        match self {
            Self::Memory(bytes) => Ok(bytes.clone()),
            Self::File(path) => tokio::fs::read(path).await.map(Bytes::from),
        }
    }

    /// Writes the content to `target` (a copy for a file).
    pub(super) async fn write_to(&self, target: &Path) -> Result<(), StorageError> {
        match self {
            Self::Memory(bytes) => tokio::fs::write(target, bytes)
                .await
                .map_err(io_error(target)),
            Self::File(path) => tokio::fs::copy(path, target)
                .await
                .map(|_| ())
                .map_err(io_error(path)),
        }
    }
}
