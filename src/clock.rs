//! The one place the runner reads the wall clock, so that tests can fix "now".

use std::sync::Mutex;

use chrono::{NaiveDateTime, TimeDelta, Utc};

/// Naive UTC "now", like Python's `datetime.utcnow()`.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, as naive UTC.
    fn now(&self) -> NaiveDateTime;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> NaiveDateTime {
        Utc::now().naive_utc()
    }
}

/// A clock that stands still until told to move.
#[derive(Debug)]
pub struct FixedClock {
    now: Mutex<NaiveDateTime>,
}

impl FixedClock {
    /// A clock standing at `now`.
    pub fn new(now: NaiveDateTime) -> Self {
        Self {
            now: Mutex::new(now),
        }
    }

    /// Moves the clock to `now` (backwards too).
    pub fn set(&self, now: NaiveDateTime) {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> NaiveDateTime {
        *self
            .now
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
