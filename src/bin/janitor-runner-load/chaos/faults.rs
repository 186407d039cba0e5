//! The faults: when each strikes (a schedule fixed by the seed), and what each does to the
//! processes and the log store of a run.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::load::wait_for_queue;
use super::report::Report;
use super::servers::{Postgres, Redis, RunnerProcess};
use super::worker::Shared;
use super::{ChaosArgs, Rng, StoreMode};

#[derive(Debug, Clone, Copy)]
pub(super) enum Fault {
    Kill(usize),
    RestartPostgres,
    RestartRedis,
    StorageOutage(Duration),
}

/// Kills spread evenly with jitter over the first 90 % of the run, alternating runners; the
/// PostgreSQL restart at a third, the log-store outage at a half, the Redis restart at two
/// thirds.
pub(super) fn fault_schedule(
    args: &ChaosArgs,
    store: StoreMode,
    rng: &mut Rng,
) -> Vec<(Duration, Fault)> {
    let total = args.seconds as f64;
    let mut faults = Vec::new();
    let slot = total * 0.9 / (args.kills.max(1) as f64);
    for kill in 0..args.kills {
        let at = slot * (kill as f64 + 0.2 + 0.6 * rng.unit());
        faults.push((Duration::from_secs_f64(at), Fault::Kill(kill % 2)));
    }
    faults.push((Duration::from_secs_f64(total / 3.0), Fault::RestartPostgres));
    faults.push((
        Duration::from_secs_f64(total / 2.0),
        Fault::StorageOutage(Duration::from_secs_f64((total / 20.0).clamp(1.0, 5.0))),
    ));
    if store.uses_redis() {
        faults.push((
            Duration::from_secs_f64(total * 2.0 / 3.0),
            Fault::RestartRedis,
        ));
    }
    faults.sort_by_key(|(at, _)| *at);
    faults
}

/// The processes and the log store of one run, which the faults strike.
pub(super) struct Lab<'a> {
    pub(super) pg: &'a Postgres,
    pub(super) runners: Vec<RunnerProcess>,
    pub(super) redis: Option<Redis>,
    pub(super) root: &'a Path,
    pub(super) logs: PathBuf,
}

impl Lab<'_> {
    /// Strikes, and returns once the fault is over: a killed runner listens again, the
    /// restarted PostgreSQL serves both runners, the log store is writable again.
    pub(super) async fn inject(
        &mut self,
        fault: Fault,
        shared: &Shared,
        client: &reqwest::Client,
        report: &mut Report,
    ) -> anyhow::Result<()> {
        match fault {
            Fault::Kill(which) => {
                let assigning = shared.in_flight.assign[which].load(Ordering::SeqCst);
                let finishing = shared.in_flight.finish[which].load(Ordering::SeqCst);
                self.runners[which].kill().await;
                report.kills += 1;
                report.kills_during_assign += usize::from(assigning > 0);
                report.kills_during_finish += usize::from(finishing > 0);
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.runners[which].start().await?;
            }
            Fault::RestartPostgres => {
                let began = Instant::now();
                self.pg.restart().await?;
                let took = began.elapsed();
                let back = Instant::now();
                for runner in &self.runners {
                    wait_for_queue(client, &runner.url()).await?;
                }
                report.pg_restarts.push((took, back.elapsed()));
            }
            Fault::RestartRedis => {
                if let Some(redis) = self.redis.as_mut() {
                    redis.restart().await?;
                    report.redis_restarts += 1;
                }
            }
            Fault::StorageOutage(length) => {
                // A file where the log directory was: every write fails, even for root.
                let moved = self.root.join("logs.away");
                std::fs::rename(&self.logs, &moved)?;
                std::fs::write(&self.logs, b"not a directory")?;
                tokio::time::sleep(length).await;
                std::fs::remove_file(&self.logs)?;
                std::fs::rename(&moved, &self.logs)?;
                report.storage_outages += 1;
            }
        }
        Ok(())
    }
}
