//! Success probability and duration from a codebase's run history in one campaign
//! (queue-and-scheduling.md §2.4).

use chrono::{NaiveDateTime, TimeDelta};
use serde_json::Value;

use super::Micros;

/// The duration assumed when there is no history at all (Python: 15 s).
pub const DEFAULT_ESTIMATED_DURATION: Micros = Micros::from_seconds(15);

/// One non-transient run of the codebase in the campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct PastRun {
    /// The run's result code.
    pub result_code: String,
    /// The context the run was started for.
    pub instigated_context: Option<String>,
    /// The context the run reported.
    pub context: Option<String>,
    /// The run's failure details, read for unsatisfied dependencies.
    pub failure_details: Option<Value>,
    /// `finish_time - start_time`.
    pub duration: Micros,
    /// When the run started: worker failures older than a day are ignored.
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
        if self.result_code != UNSATISFIED_DEPENDENCIES {
            return None;
        }
        let relations = self.failure_details.as_ref()?.get("relations")?;
        crate::models::is_truthy(relations).then_some(relations)
    }
}

/// What the history says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The estimated chance that a new run succeeds.
    pub probability_of_success: f64,
    /// The mean duration of the counted runs; `None` when none counted (the caller falls
    /// back to averages over the codebase, then the campaign, then 15 s).
    pub duration: Option<Micros>,
    /// How many past runs were counted.
    pub total_previous_runs: u32,
}

/// An `install-deps-unsatisfied-dependencies` run among the counted ones.
#[derive(Debug, Clone, PartialEq)]
pub struct DependencyRun {
    /// Its recorded relations, when truthy (otherwise it is an ordinary failure).
    pub relations: Option<Value>,
    /// Whether it shares the candidate's context.
    pub same_context: bool,
}

/// What the estimator needs from a history, however it was read: one run at a time
/// ([`estimate_from_history`]) or aggregated in SQL (the bulk scheduler).
#[derive(Debug, Clone, Copy)]
pub struct HistoryFacts<'a> {
    /// The counted runs' durations in seconds, newest first.
    pub seconds: &'a [f64],
    /// Counted runs with result `success`.
    pub successes: u32,
    /// Some counted run, other than a dependency run, shares the candidate's context.
    pub same_context: bool,
    /// The counted `install-deps-unsatisfied-dependencies` runs.
    pub dependency_runs: &'a [DependencyRun],
}

/// Whether a run shares the (non-empty) candidate context.
pub fn shares_context(
    context: Option<&str>,
    run_context: Option<&str>,
    run_instigated: Option<&str>,
) -> bool {
    context.is_some_and(|x| !x.is_empty() && (run_instigated == Some(x) || run_context == Some(x)))
}

/// `estimate_success_probability_and_duration` over `history` (newest first). `deps_satisfied`
/// says whether a run's recorded unsatisfied relations are satisfiable now.
pub fn estimate_from_history(
    history: &[PastRun],
    context: Option<&str>,
    now: NaiveDateTime,
    deps_satisfied: impl FnMut(&Value) -> bool,
) -> Estimate {
    let mut seconds = Vec::new();
    let mut successes = 0;
    let mut same_context = false;
    let mut dependency_runs = Vec::new();
    for run in history.iter().filter(|run| !run.ignored_at(now)) {
        seconds.push(run.duration.total_seconds());
        if run.result_code == "success" {
            successes += 1;
        }
        let shared = shares_context(
            context,
            run.context.as_deref(),
            run.instigated_context.as_deref(),
        );
        if run.result_code == UNSATISFIED_DEPENDENCIES {
            dependency_runs.push(DependencyRun {
                relations: run.unsatisfied_relations().cloned(),
                same_context: shared,
            });
        } else {
            same_context |= shared;
        }
    }
    estimate_from_facts(
        HistoryFacts {
            seconds: &seconds,
            successes,
            same_context,
            dependency_runs: &dependency_runs,
        },
        context,
        deps_satisfied,
    )
}

/// The result code whose runs may count as successes once their dependencies are available.
pub const UNSATISFIED_DEPENDENCIES: &str = "install-deps-unsatisfied-dependencies";

/// The estimate from a history's facts: `p = (10 s + 1) / (10 t + 1) * m` and the mean
/// duration (queue-and-scheduling.md §2.4).
pub fn estimate_from_facts(
    facts: HistoryFacts<'_>,
    context: Option<&str>,
    mut deps_satisfied: impl FnMut(&Value) -> bool,
) -> Estimate {
    let total = u32::try_from(facts.seconds.len()).unwrap_or(u32::MAX);
    let mut success = facts.successes;
    let mut multiplier = if context.is_none() { 0.5 } else { 1.0 };
    if facts.same_context {
        multiplier = 0.1;
    }
    for run in facts.dependency_runs {
        if run.relations.as_ref().is_some_and(&mut deps_satisfied) {
            success += 1;
        } else if run.same_context {
            multiplier = 0.1;
        }
    }
    if total == 0 {
        multiplier = 1.0;
    }
    let mut seconds = PythonFloatSum::default();
    for &x in facts.seconds {
        seconds.add(x);
    }
    let probability = f64::from(success * 10 + 1) / f64::from(total * 10 + 1) * multiplier;
    Estimate {
        probability_of_success: probability,
        duration: (total > 0).then(|| timedelta_from_seconds(seconds.total() / f64::from(total))),
        total_previous_runs: total,
    }
}

/// Python's `sum()` over floats as CPython 3.12 and later compute it (the runner's
/// deployment image runs 3.13): a running sum with Neumaier's compensation, the compensation
/// added once at the end. Older Pythons added naively; the two can differ in the last bit,
/// which can move a mean duration by a microsecond.
#[derive(Debug, Clone, Copy, Default)]
pub struct PythonFloatSum {
    sum: f64,
    compensation: f64,
}

impl PythonFloatSum {
    /// Adds `x` to the sum.
    pub fn add(&mut self, x: f64) {
        let t = self.sum + x;
        // The low-order bits lost by the addition, from whichever operand was smaller.
        self.compensation += if self.sum.abs() >= x.abs() {
            (self.sum - t) + x
        } else {
            (x - t) + self.sum
        };
        self.sum = t;
    }

    /// The sum so far, as Python's `sum()` returns it.
    pub fn total(&self) -> f64 {
        // CPython skips a zero or non-finite compensation (keeps -0.0 and infinities).
        if self.compensation != 0.0 && self.compensation.is_finite() {
            self.sum + self.compensation
        } else {
            self.sum
        }
    }
}

/// `timedelta(seconds=x)`: whole seconds exactly, the fraction rounded to the microsecond,
/// ties to even. Beyond what microseconds in an `i64` hold (about 292,000 years) it saturates.
pub fn timedelta_from_seconds(seconds: f64) -> Micros {
    let whole = seconds.trunc();
    let fraction = seconds - whole;
    // `as` saturates from f64 (NaN gives 0).
    Micros(
        (whole as i64)
            .saturating_mul(1_000_000)
            .saturating_add((fraction * 1e6).round_ties_even() as i64),
    )
}

/// [`timedelta_from_seconds`], or `None` when the duration does not fit.
pub fn checked_timedelta_from_seconds(seconds: f64) -> Option<Micros> {
    const LIMIT: f64 = i64::MAX as f64 / 1e6;
    (seconds.is_finite() && seconds.abs() < LIMIT).then(|| timedelta_from_seconds(seconds))
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
    fn float_sum_is_compensated_like_cpython_3_12() {
        let mut sum = PythonFloatSum::default();
        for _ in 0..10 {
            sum.add(0.1);
        }
        assert_eq!(sum.total(), 1.0, "a naive sum gives 0.9999999999999999");
        // Durations whose mean rounds differently under a naive sum (.083334).
        let mut sum = PythonFloatSum::default();
        for seconds in [2348.5, 1146.5, 3740.333333, 3341.000001] {
            sum.add(seconds);
        }
        assert_eq!(
            timedelta_from_seconds(sum.total() / 4.0),
            Micros(2_644_083_333)
        );
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
