//! Scheduling: how urgent a candidate is (success probability, duration, offset) and where
//! it goes in the queue. The formulas take the clock and the history as parameters, so the
//! same inputs give the Python runner's numbers bit for bit (queue-and-scheduling.md
//! §2.4-2.5, DECISIONS.md Scheduling).

pub mod after_run;
pub mod bulk;
pub mod engine;
pub mod estimate;
pub mod manual;
pub mod offset;
pub mod shadow;

pub use estimate::{
    DEFAULT_ESTIMATED_DURATION, Estimate, PastRun, checked_timedelta_from_seconds,
    estimate_from_history, timedelta_from_seconds,
};
pub use offset::{OffsetError, OffsetInputs, calculate_offset};

/// A duration in whole microseconds, as Python's `timedelta` and PostgreSQL's `interval`
/// hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Micros(pub i64);

impl Micros {
    /// A whole number of seconds.
    pub const fn from_seconds(seconds: i64) -> Self {
        Self(seconds * 1_000_000)
    }

    /// `timedelta.total_seconds()`: the exact microsecond count divided by 10^6, rounded once.
    pub fn total_seconds(self) -> f64 {
        self.0 as f64 / 1e6
    }

    /// `timedelta.microseconds`: the sub-second part, 0..999999 (days and seconds carry the
    /// sign, so this is never negative).
    pub fn subsecond_micros(self) -> i64 {
        self.0.rem_euclid(1_000_000)
    }

    /// PostgreSQL `interval` as asyncpg decodes it: months as 30 days.
    pub fn from_interval(interval: &sqlx::postgres::types::PgInterval) -> Self {
        let days = i64::from(interval.months) * 30 + i64::from(interval.days);
        Self(days * 86_400_000_000 + interval.microseconds)
    }

    /// As asyncpg encodes a `timedelta`: whole days, and the rest in microseconds.
    pub fn to_interval(self) -> sqlx::postgres::types::PgInterval {
        const DAY: i64 = 86_400_000_000;
        sqlx::postgres::types::PgInterval {
            months: 0,
            days: i32::try_from(self.0.div_euclid(DAY)).unwrap_or(i32::MAX),
            microseconds: self.0.rem_euclid(DAY),
        }
    }

    /// The same duration as a chrono `TimeDelta`.
    pub fn to_time_delta(self) -> chrono::TimeDelta {
        chrono::TimeDelta::microseconds(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedelta_parts() {
        let d = Micros(60_166_667);
        assert_eq!(d.total_seconds(), 60.166667);
        assert_eq!(d.subsecond_micros(), 166_667);
        assert_eq!(Micros(-1).subsecond_micros(), 999_999);
        let day = sqlx::postgres::types::PgInterval {
            months: 0,
            days: 1,
            microseconds: 3_600_000_000,
        };
        assert_eq!(Micros::from_interval(&day), Micros::from_seconds(90_000));
    }
}
