//! The offset formula (queue-and-scheduling.md §2.5): expected cost in milliseconds per unit of
//! expected value. The arithmetic follows the Python runner operation for operation, so the float
//! results are bit-identical.

use super::Micros;

/// Overhead of any run, in milliseconds.
pub const MINIMUM_COST: f64 = 20000.0;
/// The least normalised codebase value the formula uses; smaller ones are raised to it.
pub const MINIMUM_NORMALIZED_CODEBASE_VALUE: f64 = 0.1;
/// The normalised codebase value assumed when it is unknown.
pub const DEFAULT_NORMALIZED_CODEBASE_VALUE: f64 = 0.5;
/// Value added to a candidate that has never run.
pub const FIRST_RUN_BONUS: f64 = 100.0;
/// The offset `do_schedule` uses when none is given: the head of the queue.
pub const DEFAULT_SCHEDULE_OFFSET: f64 = -1.0;

/// Where the Python asserts: the inputs cannot give a positive offset.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OffsetError {
    /// The candidate value (plus any first-run bonus) is not positive.
    #[error("candidate value is {0}, not positive")]
    CandidateValue(f64),
    /// The estimated probability of success is not within `[0, 1]`.
    #[error("probability of success {0} is outside [0, 1]")]
    Probability(f64),
    /// The expected cost (overhead plus estimated duration, in milliseconds) is not positive.
    #[error("estimated cost {0} is not positive")]
    Cost(f64),
    /// The expected value (normalised codebase value × probability × candidate value) is not
    /// positive.
    #[error("estimated value {0} is not positive")]
    Value(f64),
}

/// What the offset depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffsetInputs {
    /// How long a run is expected to take.
    pub estimated_duration: Micros,
    /// `None` means unknown (the default 0.5 is used).
    pub normalized_codebase_value: Option<f64>,
    /// The estimated chance that the run succeeds, in `[0, 1]`.
    pub probability_of_success: f64,
    /// `None` means unknown: value 1.0 and no first-run bonus.
    pub candidate_value: Option<i64>,
    /// How many past runs the estimate counted; with none, a known candidate value gets the
    /// first-run bonus.
    pub total_previous_runs: u32,
}

/// `x > 0`, false for NaN, as the Python assertions test it.
fn is_positive(x: f64) -> bool {
    x > 0.0
}

/// `calculate_offset`: > 0 for valid inputs.
pub fn calculate_offset(inputs: &OffsetInputs) -> Result<f64, OffsetError> {
    let ncv = inputs
        .normalized_codebase_value
        .unwrap_or(DEFAULT_NORMALIZED_CODEBASE_VALUE)
        .max(MINIMUM_NORMALIZED_CODEBASE_VALUE);
    let candidate_value = match inputs.candidate_value {
        None => 1.0,
        Some(value) if inputs.total_previous_runs == 0 => value as f64 + FIRST_RUN_BONUS,
        Some(value) => value as f64,
    };
    if !is_positive(candidate_value) {
        return Err(OffsetError::CandidateValue(candidate_value));
    }
    let p = inputs.probability_of_success;
    if !(0.0..=1.0).contains(&p) {
        return Err(OffsetError::Probability(p));
    }
    let duration = inputs.estimated_duration;
    // timedelta.total_seconds() plus the sub-second microseconds again (queue-and-scheduling.md
    // §9.3).
    let cost = MINIMUM_COST
        + (1000.0 * duration.total_seconds() + duration.subsecond_micros() as f64 / 1000.0);
    if !is_positive(cost) {
        return Err(OffsetError::Cost(cost));
    }
    let value = ncv * p * candidate_value;
    if !is_positive(value) {
        return Err(OffsetError::Value(value));
    }
    Ok(cost / value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(micros: i64, ncv: Option<f64>, p: f64, value: Option<i64>, t: u32) -> f64 {
        calculate_offset(&OffsetInputs {
            estimated_duration: Micros(micros),
            normalized_codebase_value: ncv,
            probability_of_success: p,
            candidate_value: value,
            total_previous_runs: t,
        })
        .expect("valid inputs")
    }

    #[test]
    fn worked_example_of_the_spec() {
        // queue-and-scheduling.md § section 6, bulk path.
        let p_alpha = 21.0 / 31.0 * 0.1;
        assert_eq!(
            offset(60_166_667, Some(1.0), p_alpha, Some(410), 3),
            2892.373233449478
        );
        assert_eq!(
            offset(150_000_000, Some(0.25), 1.0, Some(20 + 450), 0),
            1192.982456140351
        );
        let p_gamma = 11.0 / 21.0 * 0.5;
        assert_eq!(
            offset(30_000_000, Some(0.0), p_gamma, Some(5), 2),
            381818.1818181817
        );
        // Single path: raw values, SQL normalisation.
        assert_eq!(
            offset(60_166_667, Some(1.0), p_alpha, Some(10), 3),
            118587.30257142859
        );
        assert_eq!(
            offset(150_000_000, Some(0.25), 1.0, Some(20), 0),
            5666.666666666667
        );
        assert_eq!(
            offset(30_000_000, Some(1.0), p_gamma, Some(5), 2),
            38181.818181818184
        );
        // The post-run reschedule of alpha.
        assert_eq!(
            offset(56_375_000, Some(1.0), 31.0 / 41.0 * 0.1, Some(10), 4),
            101508.06451612902
        );
        // Upstream test: no value, no runs, 15 s.
        assert_eq!(offset(15_000_000, Some(1.0), 1.0, None, 0), 35000.0);
    }

    #[test]
    fn rejects_what_the_python_asserts() {
        let base = OffsetInputs {
            estimated_duration: Micros(1_000_000),
            normalized_codebase_value: None,
            probability_of_success: 0.5,
            candidate_value: Some(0),
            total_previous_runs: 1,
        };
        assert_eq!(
            calculate_offset(&base),
            Err(OffsetError::CandidateValue(0.0))
        );
        let bad_p = OffsetInputs {
            candidate_value: Some(1),
            probability_of_success: 1.5,
            ..base
        };
        assert!(matches!(
            calculate_offset(&bad_p),
            Err(OffsetError::Probability(_))
        ));
        let zero_p = OffsetInputs {
            candidate_value: Some(1),
            probability_of_success: 0.0,
            ..base
        };
        assert!(matches!(
            calculate_offset(&zero_p),
            Err(OffsetError::Value(_))
        ));
        // A first run with value -50 still gets the bonus and is valid.
        let first = OffsetInputs {
            candidate_value: Some(-50),
            total_previous_runs: 0,
            ..base
        };
        assert!(calculate_offset(&first).is_ok());
    }
}
