//! The backup directory (`--backup-directory`): where a write goes when the primary store
//! fails, and the mover that later takes what it holds to the primary.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

use super::local::io_error;
use super::{Backend, Source, Storage, StorageError, Stored};

/// How long moving one backed-up run to the primary may take.
const MOVE_TIMEOUT: Duration = Duration::from_secs(900);
/// Backed-up runs moved at the same time.
const MOVE_CONCURRENCY: usize = 3;

/// Runs `write` against the primary store, then against the backup if the primary failed.
pub(super) async fn with_backup<'a, F, Fut>(
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

/// What one pass of [`Storage::move_backups`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MoveReport {
    /// Logs moved to the primary log store.
    pub logs_moved: usize,
    /// Runs whose artifacts were moved to the primary artifact store.
    pub artifact_runs_moved: usize,
    /// Logs and artifact runs that could not be moved, left for the next pass.
    pub failures: usize,
}

impl Storage {
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
        let files: Vec<(String, Source)> = list_files(run_dir)
            .await
            .into_iter()
            .map(|path| (file_name(&path), Source::File(path)))
            .collect();
        self.artifacts.store_artifacts(&run_id, &files).await?;
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
