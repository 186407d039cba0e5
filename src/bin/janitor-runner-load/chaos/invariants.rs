//! The promises checked after the load, from the database, the log store and what each
//! worker was told: exclusive hold of queue items, none run twice, no lost assignment or queue
//! item, no run without its logs, faults answered 503, and each accepted finish stored exactly
//! once.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::time::Instant;

use super::report::Report;
use super::worker::{Assignment, Ledger};
use janitor_runner::db::load_fixture::{self as db, RunRow};

pub(super) async fn check_invariants(
    pool: &sqlx::PgPool,
    ledger: &Ledger,
    active: &HashMap<String, i64>,
    logs: &Path,
    report: &mut Report,
) -> anyhow::Result<()> {
    let violations = &mut report.violations;

    // 1. No queue item held by two workers at once.
    items_held_once(ledger, violations);

    let runs = db::runs(pool).await?;
    report.runs_stored = runs.len() as i64;
    let stored: HashMap<&str, &RunRow> = runs.iter().map(|r| (r.id.as_str(), r)).collect();

    // ... nor by two runs, as the database records them; and none run twice, since the
    // stored run deletes its item.
    runs_apart(&runs, violations);
    items_stored_once(ledger, &stored, violations);

    // 2. Every assignment that reached a worker is stored or still out (for the watchdog).
    assignments_kept(ledger, &stored, active, violations);
    // ... and every queue item is queued, held, or done.
    queue_items_kept(pool, &stored, active, violations).await?;

    // 3. No run without its logs.
    logs_kept(&runs, logs, violations);

    // Faults are answered 503 (retry later), never with a server error of another kind.
    server_errors_are_503(ledger, violations);

    // 4. Every finish answered 2xx is stored, as sent; 5. at most one 2xx per run, and
    // never a 404 for a run a worker was given.
    finishes_stored_once(ledger, &stored, violations);
    Ok(())
}

fn items_held_once(ledger: &Ledger, violations: &mut Vec<String>) {
    let mut by_item: HashMap<i64, Vec<&Assignment>> = HashMap::new();
    for assignment in &ledger.assignments {
        by_item
            .entry(assignment.queue_id)
            .or_default()
            .push(assignment);
    }
    for (queue_id, held) in &mut by_item {
        held.sort_by_key(|a| a.received);
        for pair in held.windows(2) {
            let first_end = pair[0].released.unwrap_or_else(Instant::now);
            if pair[1].received < first_end {
                violations.push(format!(
                    "queue item {queue_id} was handed to run {} while run {} still held it",
                    pair[1].run_id, pair[0].run_id
                ));
            }
        }
    }
}

fn runs_apart(runs: &[RunRow], violations: &mut Vec<String>) {
    let mut by_change_set: HashMap<&str, Vec<&RunRow>> = HashMap::new();
    for run in runs {
        by_change_set.entry(&run.change_set).or_default().push(run);
    }
    for (change_set, rows) in &mut by_change_set {
        rows.sort_by_key(|r| r.start_time);
        for pair in rows.windows(2) {
            if let (Some(end), Some(start)) = (pair[0].finish_time, pair[1].start_time)
                && start < end
            {
                violations.push(format!(
                    "change set {change_set}: runs {} and {} overlap",
                    pair[0].id, pair[1].id
                ));
            }
        }
    }
}

/// Storing a run deletes its queue item: two stored runs handed out for one item mean it was
/// claimed again after its run was stored.
fn items_stored_once(
    ledger: &Ledger,
    stored: &HashMap<&str, &RunRow>,
    violations: &mut Vec<String>,
) {
    let mut by_item: HashMap<i64, Vec<&str>> = HashMap::new();
    for assignment in &ledger.assignments {
        if stored.contains_key(assignment.run_id.as_str()) {
            by_item
                .entry(assignment.queue_id)
                .or_default()
                .push(&assignment.run_id);
        }
    }
    for (queue_id, runs) in by_item {
        if runs.len() > 1 {
            violations.push(format!(
                "queue item {queue_id} was run and stored {} times: runs {}",
                runs.len(),
                runs.join(", ")
            ));
        }
    }
}

fn assignments_kept(
    ledger: &Ledger,
    stored: &HashMap<&str, &RunRow>,
    active: &HashMap<String, i64>,
    violations: &mut Vec<String>,
) {
    let active_ids: HashSet<&str> = active.keys().map(String::as_str).collect();
    for assignment in &ledger.assignments {
        let id = assignment.run_id.as_str();
        if !stored.contains_key(id) && !active_ids.contains(id) {
            violations.push(format!(
                "run {id} reached a worker and is neither stored nor active"
            ));
        }
    }
}

async fn queue_items_kept(
    pool: &sqlx::PgPool,
    stored: &HashMap<&str, &RunRow>,
    active: &HashMap<String, i64>,
    violations: &mut Vec<String>,
) -> anyhow::Result<()> {
    let queued = db::queued_ids(pool).await?;
    for (run_id, queue_id) in active {
        // The active runs were listed while the runners still ran; a run their watchdog (or a
        // late finish) stored since then took its queue item with it, in the same transaction.
        if !queued.contains(queue_id) && !stored.contains_key(run_id.as_str()) {
            violations.push(format!(
                "active run {run_id} holds queue item {queue_id}, which is gone"
            ));
        }
    }
    let seeded = db::change_set_count(pool).await?;
    let done = db::change_sets_without_queue_or_run(pool).await?;
    if done > 0 {
        violations.push(format!(
            "{done} of {seeded} items left the queue without a run"
        ));
    }
    Ok(())
}

fn logs_kept(runs: &[RunRow], logs: &Path, violations: &mut Vec<String>) {
    for run in runs {
        for name in &run.logfilenames {
            let path = logs
                .join(&run.codebase)
                .join(&run.id)
                .join(format!("{name}.gz"));
            match read_gzip(&path) {
                Ok(text) if text.contains(&run.id) => {}
                Ok(_) => violations.push(format!("log {} is another run's", path.display())),
                Err(error) => violations.push(format!(
                    "run {} lists log {name}, which is unreadable: {error}",
                    run.id
                )),
            }
        }
    }
}

fn server_errors_are_503(ledger: &Ledger, violations: &mut Vec<String>) {
    for (call, statuses) in [
        ("assignment", &ledger.assign_statuses),
        ("finish", &ledger.finish_statuses),
    ] {
        for (status, count) in statuses {
            if status.starts_with('5') && status != "503" && status != "502" {
                violations.push(format!("{count} {call} requests answered {status}"));
            }
        }
    }
}

fn finishes_stored_once(
    ledger: &Ledger,
    stored: &HashMap<&str, &RunRow>,
    violations: &mut Vec<String>,
) {
    for (run_id, answers) in &ledger.finish_answers {
        let accepted = answers.iter().filter(|s| matches!(s, 200 | 201)).count();
        if accepted > 1 {
            violations.push(format!("run {run_id}: finish accepted {accepted} times"));
        }
        if accepted >= 1 {
            match stored.get(run_id.as_str()) {
                Some(run) if run.result_code == "success" && !run.logfilenames.is_empty() => {}
                Some(run) => violations.push(format!(
                    "run {run_id}: finish accepted but stored as {} with logs {:?}",
                    run.result_code, run.logfilenames
                )),
                None => violations.push(format!("run {run_id}: finish accepted, not stored")),
            }
        }
        if answers.contains(&409) && !stored.contains_key(run_id.as_str()) {
            violations.push(format!("run {run_id}: 409 but no run stored"));
        }
        if answers.contains(&404) {
            violations.push(format!("run {run_id}: finish answered 404"));
        }
    }
}

fn read_gzip(path: &Path) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(run_id: &str, queue_id: i64) -> Assignment {
        Assignment {
            run_id: run_id.into(),
            queue_id,
            received: Instant::now(),
            released: Some(Instant::now()),
        }
    }

    fn stored_run(id: &str) -> RunRow {
        RunRow {
            id: id.into(),
            codebase: "alpha".into(),
            change_set: id.into(),
            result_code: "success".into(),
            start_time: None,
            finish_time: None,
            logfilenames: Vec::new(),
        }
    }

    #[test]
    fn an_item_stored_twice_is_a_violation() {
        let ledger = Ledger {
            assignments: vec![
                assignment("first", 7),
                // Released without being stored, then handed out again: allowed.
                assignment("turned-down", 8),
                assignment("again", 8),
                assignment("late", 7),
            ],
            ..Ledger::default()
        };
        let runs = [stored_run("first"), stored_run("again"), stored_run("late")];
        let stored: HashMap<&str, &RunRow> = runs.iter().map(|r| (r.id.as_str(), r)).collect();
        let mut violations = Vec::new();
        items_stored_once(&ledger, &stored, &mut violations);
        assert_eq!(
            violations,
            vec!["queue item 7 was run and stored 2 times: runs first, late".to_string()]
        );
    }
}
