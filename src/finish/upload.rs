//! A received finish upload, and the memory its small files may be kept in.
//!
//! Files are kept in memory while the upload stays under [`PER_UPLOAD_MEMORY`] and all
//! uploads in flight under the runner's [`UploadMemory`] limit; past either, the part goes to a
//! temporary directory. So a run's few kilobytes of logs never touch the disk before they are
//! stored, and a flood of large uploads cannot take the runner's memory.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::storage::Source;

/// How much of one upload is kept in memory at most.
pub const PER_UPLOAD_MEMORY: usize = 4 * 1024 * 1024;

/// How much all uploads in flight keep in memory at most, by default.
pub const DEFAULT_UPLOAD_MEMORY: usize = 64 * 1024 * 1024;

/// A received finish upload.
#[derive(Debug)]
pub struct Upload {
    /// The uploaded files' names, in upload order.
    pub filenames: Vec<String>,
    /// Each file's content by name (of parts with the same name, the last).
    pub files: BTreeMap<String, Source>,
    /// Where the parts not kept in memory were written; removed on drop.
    pub spill: Option<tempfile::TempDir>,
    /// The worker's `result.json`.
    pub result: Value,
    /// The memory the files in `files` hold, given back on drop.
    pub reservation: Reservation,
}

/// The memory all uploads in flight may keep their files in. Cheap to clone; clones share it.
#[derive(Debug, Clone)]
pub struct UploadMemory {
    used: Arc<AtomicUsize>,
    limit: usize,
}

impl UploadMemory {
    /// Room for `limit` bytes across all uploads.
    pub fn new(limit: usize) -> Self {
        Self {
            used: Arc::new(AtomicUsize::new(0)),
            limit,
        }
    }

    /// The bytes held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation, for one upload.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            memory: self.clone(),
            bytes: 0,
        }
    }

    fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }
}

impl Default for UploadMemory {
    fn default() -> Self {
        Self::new(DEFAULT_UPLOAD_MEMORY)
    }
}

/// The memory one upload holds.
#[derive(Debug)]
pub struct Reservation {
    memory: UploadMemory,
    bytes: usize,
}

impl Reservation {
    /// Takes `bytes` more, if this upload and all of them stay within their limits.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let within_upload = self
            .bytes
            .checked_add(bytes)
            .is_some_and(|total| total <= PER_UPLOAD_MEMORY);
        if within_upload && self.memory.try_take(bytes) {
            self.bytes += bytes;
            return true;
        }
        false
    }

    /// Gives `bytes` back (a part that went to disk after all).
    pub fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.bytes);
        self.memory.used.fetch_sub(bytes, Ordering::AcqRel);
        self.bytes -= bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.memory.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stay_within_both_limits_and_give_back_on_drop() {
        let memory = UploadMemory::new(PER_UPLOAD_MEMORY + 10);
        let mut first = memory.reservation();
        assert!(first.grow(PER_UPLOAD_MEMORY));
        assert!(!first.grow(1), "past the per-upload limit");
        let mut second = memory.reservation();
        assert!(second.grow(10));
        assert!(!second.grow(1), "past the shared limit");
        second.shrink(4);
        assert_eq!(memory.used(), PER_UPLOAD_MEMORY + 6);
        drop(first);
        assert_eq!(memory.used(), 6);
        drop(second);
        assert_eq!(memory.used(), 0);
    }
}
