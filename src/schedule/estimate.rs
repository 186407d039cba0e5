//! Success probability and duration from a codebase's run history in one campaign (queue
//! spec 2.4).

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::Value;

use super::Micros;

/// The duration assumed when there is no history at all (Python: 15 s).
pub const DEFAULT_ESTIMATED_DURATION: Micros = Micros::from_seconds(15);

/// One non-transient run of the codebase in the campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    pub result_code: String,
    pub instigated_context: Option<String>,
    pub context: Option<String>,
    pub failure_details: Option<Value>,
    /// `finish_time - start_time`.
    pub duration: Micros,
    pub start_time: NaiveDateTime,
}

impl PastRun {
    /// Worker failures older than a day say nothing about the candidate.
    pub fn ignored_at(&self, now: NaiveDateTime) -> bool {
        self.result_code == "worker-failure" && now - self.start_time >= TimeDelta::days(1)
    }

    /// The unsatisfied dependencies an `install-deps-unsatisfied-dependencies` run recorded,
    /// if any (a truthy `failure_details.relations`).
    pub fn unsatisfied_relations(&self) -> Option<&Value> {
        if self.result_code != "install-deps-unsatisfied-dependencies" {
            return None;
        }
        let relations = self.failure_details.as_ref()?.get("relations")?;
        crate::models::is_truthy(relations).then_some(relations)
    }
}

/// What the history says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub probability_of_success: f64,
    /// The mean duration of the counted runs; `None` when none counted (the caller falls
    /// back to averages over the codebase, then the campaign, then 15 s).
    pub duration: Option<Micros>,
    pub total_previous_runs: u32,
}

/// `estimate_success_probability_and_duration` over `history` (newest first). `deps_satisfied`
/// says whether a run's recorded unsatisfied relations are satisfiable now.
pub fn estimate_from_history(
    history: &[PastRun],
    context: Option<&str>,
    now: NaiveDateTime,
    mut deps_satisfied: impl FnMut(&Value) -> bool,
) -> Estimate {
    let mut total: u32 = 0;
    let mut success: u32 = 0;
    let mut multiplier = if context.is_none() { 0.5 } else { 1.0 };
    let mut seconds_sum = 0.0_f64;
    for run in history.iter().filter(|run| !run.ignored_at(now)) {
        seconds_sum += run.duration.total_seconds();
        total += 1;
        if run.result_code == "success" {
            success += 1;
        }
        let mut same_context = context.is_some_and(|x| {
            !x.is_empty()
                && (run.instigated_context.as_deref() == Some(x)
                    || run.context.as_deref() == Some(x))
        });
        if let Some(relations) = run.unsatisfied_relations()
            && deps_satisfied(relations)
        {
            success += 1;
            same_context = false;
        }
        if same_context {
            multiplier = 0.1;
        }
    }
    if total == 0 {
        multiplier = 1.0;
    }
    let probability = f64::from(success * 10 + 1) / f64::from(total * 10 + 1) * multiplier;
    Estimate {
        probability_of_success: probability,
        duration: (total > 0).then(|| timedelta_from_seconds(seconds_sum / f64::from(total))),
        total_previous_runs: total,
    }
}

/// `timedelta(seconds=x)`: whole seconds exactly, the fraction rounded to the microsecond,
/// ties to even.
pub fn timedelta_from_seconds(seconds: f64) -> Micros {
    let whole = seconds.trunc();
    let fraction = seconds - whole;
    Micros(whole as i64 * 1_000_000 + (fraction * 1e6).round_ties_even() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> NaiveDateTime {
        crate::time::parse_timestamp(text).expect("timestamp")
    }

    fn run(code: &str, context: Option<&str>, seconds: f64, start: &str) -> PastRun {
        PastRun {
            result_code: code.to_string(),
            instigated_context: context.map(str::to_string),
            context: context.map(str::to_string),
            failure_details: None,
            duration: timedelta_from_seconds(seconds),
            start_time: at(start),
        }
    }

    #[test]
    fn worked_example_alpha() {
        // a5, a3 (old worker failure, ignored), a2, a1; a4 is transient and never fetched.
        let history = [
            run("success", Some("ctx-a"), 30.5, "2026-01-09T10:00:00"),
            run("worker-failure", None, 10.0, "2026-01-05T10:00:00"),
            run("build-failed", None, 90.0, "2026-01-03T10:00:00"),
            run("success", Some("ctx-old"), 60.0, "2026-01-01T10:00:00"),
        ];
        let estimate =
            estimate_from_history(&history, Some("ctx-a"), at("2026-11-23T00:00:00"), |_| {
                false
            });
        assert_eq!(estimate.total_previous_runs, 3);
        assert_eq!(estimate.probability_of_success, 0.06774193548387096);
        assert_eq!(estimate.duration, Some(Micros(60_166_667)));
    }

    #[test]
    fn multipliers_and_recent_worker_failures() {
        let now = at("2026-11-23T12:00:00");
        let recent = [run("worker-failure", None, 5.0, "2026-11-23T00:00:00")];
        let estimate = estimate_from_history(&recent, None, now, |_| false);
        assert_eq!(
            estimate.total_previous_runs, 1,
            "a failure younger than a day counts"
        );
        assert_eq!(estimate.probability_of_success, 1.0 / 11.0 * 0.5);
        let empty_context = estimate_from_history(&recent, Some(""), now, |_| false);
        assert_eq!(empty_context.probability_of_success, 1.0 / 11.0);
        let none = estimate_from_history(&[], None, now, |_| false);
        assert_eq!((none.probability_of_success, none.duration), (1.0, None));
    }

    #[test]
    fn satisfied_dependencies_count_as_success_and_clear_the_context() {
        let now = at("2026-11-23T12:00:00");
        let mut deps = run(
            "install-deps-unsatisfied-dependencies",
            Some("x"),
            1.0,
            "2026-11-01T00:00:00",
        );
        deps.failure_details = Some(serde_json::json!({"relations": [[{"name": "foo"}]]}));
        let satisfied =
            estimate_from_history(std::slice::from_ref(&deps), Some("x"), now, |_| true);
        assert_eq!(satisfied.probability_of_success, 11.0 / 11.0);
        let unsatisfied = estimate_from_history(&[deps], Some("x"), now, |_| false);
        assert_eq!(unsatisfied.probability_of_success, 1.0 / 11.0 * 0.1);
    }

    #[test]
    fn python_timedelta_rounding() {
        assert_eq!(
            timedelta_from_seconds(60.166_666_666_666_664),
            Micros(60_166_667)
        );
        assert_eq!(
            timedelta_from_seconds(0.000_000_5),
            Micros(0),
            "ties to even"
        );
        assert_eq!(timedelta_from_seconds(0.000_001_5), Micros(2));
        assert_eq!(
            timedelta_from_seconds(0.000_002_5),
            Micros(2),
            "ties to even"
        );
        assert_eq!(
            timedelta_from_seconds(1_234.000_000_5),
            Micros(1_234_000_000)
        );
        // Values and results printed by CPython's `timedelta(seconds=x)`.
        let text = include_str!("../../tests/fixtures/python_timedelta_seconds.json");
        let cases: Vec<(f64, i64)> = serde_json::from_str(text).expect("fixture");
        for (seconds, micros) in cases {
            assert_eq!(
                timedelta_from_seconds(seconds),
                Micros(micros),
                "{seconds:?}"
            );
        }
        assert_eq!(timedelta_from_seconds(56.375), Micros(56_375_000));
    }
}
