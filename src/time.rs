//! Timestamps and durations in the forms the Python runner reads and writes.
//!
//! The runner keeps naive UTC everywhere (the `timestamp` columns have no zone) and prints
//! them like Python's `datetime.isoformat()`: the fraction is left out when it is zero.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike};

/// A timestamp that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp {value:?}: expected ISO 8601, e.g. 2024-05-01T10:11:12.345678Z")]
pub struct TimestampError {
    /// The text as given.
    pub value: String,
}

/// `datetime.isoformat()` of a naive datetime, truncated to microseconds.
pub fn isoformat(ts: &NaiveDateTime) -> String {
    let micros = ts.nanosecond() / 1_000;
    if micros == 0 {
        ts.format("%Y-%m-%dT%H:%M:%S").to_string()
    } else {
        format!("{}.{:06}", ts.format("%Y-%m-%dT%H:%M:%S"), micros)
    }
}

/// `datetime.isoformat(timespec="seconds")`: whole seconds, no fraction ever.
pub fn isoformat_seconds(ts: &NaiveDateTime) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Reads a timestamp the way Python's `fromisoformat` does (3.11+), then converts it to naive
/// UTC: an offset or `Z` is applied, a naive value is taken as UTC already. Fractions beyond
/// microseconds are truncated.
pub fn parse_timestamp(value: &str) -> Result<NaiveDateTime, TimestampError> {
    let err = || TimestampError {
        value: value.to_string(),
    };
    let text = value.trim();
    if text.len() != value.len() || text.is_empty() {
        return Err(err());
    }
    if let Ok(aware) = DateTime::parse_from_rfc3339(text) {
        return Ok(truncate_to_micros(aware.naive_utc()));
    }
    // Offsets without the rest of RFC 3339's strictness (space separator, no seconds).
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(aware) = DateTime::parse_from_str(text, format) {
            return Ok(truncate_to_micros(aware.naive_utc()));
        }
    }
    let naive_text = text.strip_suffix('Z').unwrap_or(text);
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(naive_text, format) {
            return Ok(truncate_to_micros(naive));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(naive_text, "%Y-%m-%d") {
        return Ok(date.and_time(NaiveTime::MIN));
    }
    Err(err())
}

fn truncate_to_micros(ts: NaiveDateTime) -> NaiveDateTime {
    let nanos = ts.nanosecond();
    ts.with_nanosecond(nanos - nanos % 1_000).unwrap_or(ts)
}

/// `timedelta.total_seconds()`: microsecond precision, as a float.
pub fn seconds(delta: &TimeDelta) -> f64 {
    match delta.num_microseconds() {
        Some(micros) => micros as f64 / 1e6,
        None => delta.num_milliseconds() as f64 / 1e3,
    }
}

/// A duration in float seconds (as sent in JSON) back to a delta, at microsecond precision.
pub fn delta_from_seconds(seconds: f64) -> Option<TimeDelta> {
    if !seconds.is_finite() {
        return None;
    }
    let micros = (seconds * 1e6).trunc();
    if micros.abs() > i64::MAX as f64 {
        return None;
    }
    Some(TimeDelta::microseconds(micros as i64))
}

/// Python's `str(timedelta)`: `1:00:10.000005`, `1 day, 2:03:04`, `-1 day, 23:59:59`.
pub fn timedelta_str(delta: &TimeDelta) -> String {
    let total_micros = delta.num_microseconds().unwrap_or(i64::MAX);
    let day_micros: i64 = 86_400 * 1_000_000;
    let days = total_micros.div_euclid(day_micros);
    let rest = total_micros.rem_euclid(day_micros);
    let secs = rest / 1_000_000;
    let micros = rest % 1_000_000;
    let clock = format!("{}:{:02}:{:02}", secs / 3600, (secs / 60) % 60, secs % 60);
    let clock = if micros != 0 {
        format!("{clock}.{micros:06}")
    } else {
        clock
    };
    match days {
        0 => clock,
        1 | -1 => format!("{days} day, {clock}"),
        _ => format!("{days} days, {clock}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").unwrap()
    }

    #[test]
    fn isoformat_omits_zero_fraction() {
        assert_eq!(
            isoformat(&ts("2024-05-01T10:11:12.0")),
            "2024-05-01T10:11:12"
        );
        assert_eq!(
            isoformat(&ts("2024-05-01T10:11:12.345678")),
            "2024-05-01T10:11:12.345678"
        );
        assert_eq!(
            isoformat(&ts("2024-05-01T10:11:12.000005")),
            "2024-05-01T10:11:12.000005"
        );
        assert_eq!(
            isoformat_seconds(&ts("2024-05-01T10:11:12.9")),
            "2024-05-01T10:11:12"
        );
    }

    #[test]
    fn parses_worker_forms_to_naive_utc() {
        let expected = ts("2024-05-01T10:11:12.345678");
        for text in [
            "2024-05-01T10:11:12.345678",
            "2024-05-01T10:11:12.345678Z",
            "2024-05-01T10:11:12.345678+00:00",
            "2024-05-01T12:11:12.345678+02:00",
            "2024-05-01T10:11:12.345678912Z",
            "2024-05-01 10:11:12.345678",
        ] {
            assert_eq!(parse_timestamp(text).unwrap(), expected, "{text}");
        }
        assert_eq!(
            parse_timestamp("2024-05-01").unwrap(),
            ts("2024-05-01T00:00:00.0")
        );
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00",
            " 2024-05-01T10:11:12",
        ] {
            assert!(parse_timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn python_timedelta_text() {
        assert_eq!(
            timedelta_str(&TimeDelta::microseconds(3_610_000_005)),
            "1:00:10.000005"
        );
        assert_eq!(
            timedelta_str(&TimeDelta::seconds(86_400 + 2 * 3600 + 3 * 60 + 4)),
            "1 day, 2:03:04"
        );
        assert_eq!(
            timedelta_str(&TimeDelta::seconds(3 * 86_400)),
            "3 days, 0:00:00"
        );
        assert_eq!(timedelta_str(&TimeDelta::seconds(-1)), "-1 day, 23:59:59");
    }

    #[test]
    fn seconds_round_trip() {
        let delta = delta_from_seconds(15.5).unwrap();
        assert_eq!(seconds(&delta), 15.5);
        assert!(delta_from_seconds(f64::NAN).is_none());
    }
}
