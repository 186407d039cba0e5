//! Shadow scheduling: the rows the bulk scheduler would write, compared with the rows already
//! in the queue (written by the Python scheduler), to run this scheduler alongside the Python
//! one before replacing it. Nothing is written.
//!
//! The comparison starts from the queue as it is, minus the rows it compares (each
//! candidate's row in the `default` bucket), as if the Python run had written them fresh: the
//! evolving `MIN(priority)` is then the one the Python saw, unless a row the Python run
//! replaced held the queue's lowest priority before it (on a live Janitor the lowest rows are
//! manual and control requests, which the scheduler leaves alone).

use serde::Serialize;

use super::bulk::ScheduledRow;

/// Differences shown in full; the counts cover all of them.
pub const DIFFERENCES_KEPT: usize = 50;

/// One row that is not the same on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowDifference {
    /// The candidate's codebase.
    pub codebase: String,
    /// The candidate's campaign.
    pub campaign: String,
    /// The fields that differ (all of them when one side has no row).
    pub fields: Vec<&'static str>,
    /// The row this scheduler would write, if any.
    pub ours: Option<ScheduledRow>,
    /// The row in the queue, if any.
    pub theirs: Option<ScheduledRow>,
}

/// How the rows this scheduler would write compare with the queue's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ShadowReport {
    /// Rows the same on both sides (including those this scheduler would leave alone).
    pub same: usize,
    /// Rows on both sides that differ in some field.
    pub differ: usize,
    /// Rows this scheduler would write where the queue has none.
    pub only_ours: usize,
    /// Candidates' rows in the queue that this scheduler would not write.
    pub only_theirs: usize,
    /// The first [`DIFFERENCES_KEPT`] differences, in candidate order.
    pub differences: Vec<ShadowDifference>,
}

impl ShadowReport {
    /// Whether both sides agree on every row.
    pub fn is_clean(&self) -> bool {
        self.differ == 0 && self.only_ours == 0 && self.only_theirs == 0
    }

    fn record(&mut self, difference: ShadowDifference) {
        if self.differences.len() < DIFFERENCES_KEPT {
            self.differences.push(difference);
        }
    }
}

/// The names of the fields in which two rows differ.
fn differing_fields(ours: &ScheduledRow, theirs: &ScheduledRow) -> Vec<&'static str> {
    let mut fields = Vec::new();
    let mut check = |name, same: bool| {
        if !same {
            fields.push(name);
        }
    };
    check("bucket", ours.bucket == theirs.bucket);
    check("priority", ours.priority == theirs.priority);
    check("command", ours.command == theirs.command);
    check("context", ours.context == theirs.context);
    check(
        "estimated_duration",
        ours.estimated_duration_us == theirs.estimated_duration_us,
    );
    check("requester", ours.requester == theirs.requester);
    fields
}

/// Compares `ours` (in candidate order) with `theirs`, the queue's rows for the same
/// candidates; `unchanged` rows (left alone on both sides) count as the same.
pub fn compare(
    ours: &[ScheduledRow],
    mut theirs: std::collections::HashMap<(String, String), ScheduledRow>,
    unchanged: usize,
) -> ShadowReport {
    let mut report = ShadowReport {
        same: unchanged,
        ..ShadowReport::default()
    };
    for row in ours {
        let key = (row.codebase.clone(), row.campaign.clone());
        if let Some(their_row) = theirs.remove(&key) {
            let fields = differing_fields(row, &their_row);
            if fields.is_empty() {
                report.same += 1;
            } else {
                report.differ += 1;
                report.record(ShadowDifference {
                    codebase: key.0,
                    campaign: key.1,
                    fields,
                    ours: Some(row.clone()),
                    theirs: Some(their_row),
                });
            }
        } else {
            report.only_ours += 1;
            report.record(ShadowDifference {
                codebase: key.0,
                campaign: key.1,
                fields: ALL_FIELDS.to_vec(),
                ours: Some(row.clone()),
                theirs: None,
            });
        }
    }
    let mut left: Vec<_> = theirs.into_iter().collect();
    left.sort_by(|a, b| a.0.cmp(&b.0));
    for ((codebase, campaign), row) in left {
        report.only_theirs += 1;
        report.record(ShadowDifference {
            codebase,
            campaign,
            fields: ALL_FIELDS.to_vec(),
            ours: None,
            theirs: Some(row),
        });
    }
    report
}

const ALL_FIELDS: [&str; 6] = [
    "bucket",
    "priority",
    "command",
    "context",
    "estimated_duration",
    "requester",
];

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn row(codebase: &str, priority: i64) -> ScheduledRow {
        ScheduledRow {
            codebase: codebase.to_string(),
            campaign: "c".to_string(),
            bucket: "default".to_string(),
            priority,
            command: "x".to_string(),
            context: None,
            estimated_duration_us: 1,
            requester: "scheduler".to_string(),
        }
    }

    #[test]
    fn names_each_kind_of_difference() {
        let ours = vec![row("a", 1), row("b", 2), row("c", 3)];
        let theirs: HashMap<_, _> = [row("a", 1), row("b", 5), row("d", 4)]
            .into_iter()
            .map(|r| ((r.codebase.clone(), r.campaign.clone()), r))
            .collect();
        let report = compare(&ours, theirs, 2);
        assert_eq!(
            (
                report.same,
                report.differ,
                report.only_ours,
                report.only_theirs
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(report.differences[0].fields, vec!["priority"]);
        assert_eq!(report.differences[1].codebase, "c");
        assert_eq!(report.differences[2].codebase, "d");
        assert!(!report.is_clean());
    }
}
