//! The active runs this process handed out, as it stored them in the active-run store.
//!
//! A worker's finish needs its run's stored JSON before it takes the upload (the log paths
//! name the codebase). Read from the store, that is a round trip and a pooled connection per
//! finish; most finishes come back to the process that handed the run out, which wrote that
//! JSON itself. A run's JSON has one writer, the process that registered it (the registration,
//! then the rewrite after probing the branches), so the copy here is what the store holds for
//! as long as the run is registered. Whether it is still registered is for the finish to
//! check: it releases the claim in the statement that stores the run, and a claim gone
//! meanwhile (released by another process) sends it back to what reading the store would have
//! answered. Only stores whose claims live in the database are used this way.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::Value;

/// Runs kept at most: a run whose finish never comes back to this process (its worker died
/// and another process reaped it, or it finished through another process) stays until this
/// many newer runs push it out.
const CAPACITY: usize = 4096;

/// The stored JSON of the runs this process registered and has not seen end.
#[derive(Debug, Clone, Default)]
pub struct OwnRuns {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<String, (u64, Arc<Value>)>,
    /// Registration order, oldest first: what leaves when the map is full.
    order: BTreeMap<u64, String>,
    next: u64,
}

impl OwnRuns {
    /// Records a run this process just registered, with the JSON it stored.
    pub fn remember(&self, id: &str, data: Value) {
        let mut inner = self.lock();
        let sequence = inner.next;
        inner.next += 1;
        if let Some((old, _)) = inner
            .runs
            .insert(id.to_string(), (sequence, Arc::new(data)))
        {
            inner.order.remove(&old);
        }
        inner.order.insert(sequence, id.to_string());
        while inner.runs.len() > CAPACITY {
            let Some((_, oldest)) = inner.order.pop_first() else {
                break;
            };
            inner.runs.remove(&oldest);
        }
    }

    /// Replaces the JSON of a remembered run (this process rewrote it in the store); runs not
    /// remembered stay unknown.
    pub fn replace(&self, id: &str, data: Value) {
        if let Some((_, stored)) = self.lock().runs.get_mut(id) {
            *stored = Arc::new(data);
        }
    }

    /// The stored JSON of a remembered run.
    pub fn get(&self, id: &str) -> Option<Arc<Value>> {
        self.lock().runs.get(id).map(|(_, data)| data.clone())
    }

    /// Forgets a run that ended or was released.
    pub fn forget(&self, id: &str) {
        let mut inner = self.lock();
        if let Some((sequence, _)) = inner.runs.remove(id) {
            inner.order.remove(&sequence);
        }
    }

    /// How many runs are remembered.
    pub fn len(&self) -> usize {
        self.lock().runs.len()
    }

    /// Whether no run is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every update leaves the maps consistent before anything can panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_replaces_and_forgets() {
        let runs = OwnRuns::default();
        runs.remember("a", serde_json::json!({"v": 1}));
        runs.replace("a", serde_json::json!({"v": 2}));
        runs.replace("unknown", serde_json::json!({"v": 3}));
        assert_eq!(runs.get("a").as_deref(), Some(&serde_json::json!({"v": 2})));
        assert!(runs.get("unknown").is_none());
        runs.forget("a");
        assert!(runs.get("a").is_none());
        assert!(runs.is_empty());
    }

    #[test]
    fn the_oldest_runs_leave_when_full() {
        let runs = OwnRuns::default();
        for i in 0..CAPACITY + 10 {
            runs.remember(&format!("run-{i}"), Value::Null);
        }
        // Remembering a run again makes it the newest.
        runs.remember("run-10", Value::Null);
        runs.remember("extra", Value::Null);
        assert_eq!(runs.len(), CAPACITY);
        assert!(runs.get("run-9").is_none());
        assert!(runs.get("run-11").is_none());
        assert!(runs.get("run-10").is_some());
        assert!(runs.get(&format!("run-{}", CAPACITY + 9)).is_some());
    }
}
