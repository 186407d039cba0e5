//! The report of one store's run: the load carried, the faults injected, the answers the
//! workers got and the invariants violated.

use std::collections::BTreeMap;
use std::time::Duration;

use super::worker::Ledger;

/// What one run under faults saw, and which invariants it broke.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub(super) store: String,
    pub(super) seconds: f64,
    pub(super) cycles: u64,
    pub(super) kills: usize,
    pub(super) kills_during_assign: usize,
    pub(super) kills_during_finish: usize,
    pub(super) pg_restarts: Vec<(Duration, Duration)>,
    pub(super) redis_restarts: usize,
    pub(super) storage_outages: usize,
    pub(super) assign_statuses: BTreeMap<String, usize>,
    pub(super) finish_statuses: BTreeMap<String, usize>,
    pub(super) given_up: BTreeMap<String, usize>,
    pub(super) assignments: usize,
    pub(super) runs_stored: i64,
    pub(super) active_left: usize,
    /// How long the watchdogs took to reap the abandoned runs (`--await-reaping`).
    pub(super) reaping: Option<Duration>,
    pub(super) violations: Vec<String>,
}

impl Report {
    /// The workers' side of the report, from their ledger.
    pub(super) fn tally(&mut self, ledger: &Ledger, cycles: u64, active_left: usize) {
        self.cycles = cycles;
        self.assign_statuses = ledger.assign_statuses.clone();
        self.finish_statuses = ledger.finish_statuses.clone();
        for (_, reason) in &ledger.given_up {
            *self.given_up.entry(reason.clone()).or_default() += 1;
        }
        self.assignments = ledger.assignments.len();
        self.active_left = active_left;
    }

    pub(super) fn print(&self) {
        println!("store: {}", self.store);
        println!(
            "load: {:.0} s, cycles completed (finish 2xx): {}, assignments: {}, runs stored: {}",
            self.seconds, self.cycles, self.assignments, self.runs_stored
        );
        println!(
            "faults: {} runner kills ({} with an assignment in flight, {} with a finish in flight), {} PostgreSQL restarts, {} Redis restarts, {} log-store outages",
            self.kills,
            self.kills_during_assign,
            self.kills_during_finish,
            self.pg_restarts.len(),
            self.redis_restarts,
            self.storage_outages
        );
        for (took, recovered) in &self.pg_restarts {
            println!(
                "PostgreSQL restart: took {:.2} s; both runners answered /queue with 200 {:.2} s after it was back",
                took.as_secs_f64(),
                recovered.as_secs_f64()
            );
        }
        println!("assign answers: {:?}", self.assign_statuses);
        println!("finish answers: {:?}", self.finish_statuses);
        println!("finishes given up by their worker: {:?}", self.given_up);
        println!("active runs left for the watchdog: {}", self.active_left);
        if let Some(reaping) = self.reaping {
            println!(
                "the watchdogs reaped the abandoned runs in {:.0} s after the load",
                reaping.as_secs_f64()
            );
        }
        if self.violations.is_empty() {
            println!("invariants: all hold");
        } else {
            println!("invariants violated ({}):", self.violations.len());
            for violation in self.violations.iter().take(30) {
                println!("  - {violation}");
            }
        }
    }
}
