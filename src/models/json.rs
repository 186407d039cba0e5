//! Typed reads from loosely shaped JSON objects, with errors that name the key.

use chrono::NaiveDateTime;
use serde_json::{Map, Value};

use super::ModelError;
use crate::time::parse_timestamp;

pub(crate) fn as_object<'a>(
    value: &'a Value,
    what: &str,
) -> Result<&'a Map<String, Value>, ModelError> {
    value
        .as_object()
        .ok_or_else(|| ModelError::new(format!("{what} must be a JSON object")))
}

/// A key that must be present (its value may still be null).
pub(crate) fn required<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a Value, ModelError> {
    obj.get(key)
        .ok_or_else(|| ModelError::new(format!("missing key {key:?}")))
}

/// A string or null; absent counts as null.
pub(crate) fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
) -> Result<Option<String>, ModelError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(type_error(key, "a string or null", other)),
    }
}

pub(crate) fn opt_bool(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ModelError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(type_error(key, "a boolean or null", other)),
    }
}

pub(crate) fn opt_timestamp(
    obj: &Map<String, Value>,
    key: &str,
) -> Result<Option<NaiveDateTime>, ModelError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => parse_timestamp(s)
            .map(Some)
            .map_err(|e| ModelError::new(format!("{key}: {e}"))),
        Some(other) => Err(type_error(key, "an ISO 8601 timestamp", other)),
    }
}

/// Python's `int(x)` for JSON: integers, floats (truncated), booleans and integer strings.
pub(crate) fn python_int(key: &str, value: &Value) -> Result<i64, ModelError> {
    let out_of_range = || ModelError::new(format!("{key} is out of range"));
    match value {
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if let Some(f) = n.as_f64() {
                if f.is_finite() && f.abs() < 9.2e18 {
                    Ok(f.trunc() as i64)
                } else {
                    Err(out_of_range())
                }
            } else {
                Err(out_of_range())
            }
        }
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| type_error(key, "an integer", value)),
        other => Err(type_error(key, "an integer", other)),
    }
}

/// Python truthiness of a JSON value.
pub(crate) fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

pub(crate) fn type_error(key: &str, expected: &str, got: &Value) -> ModelError {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    };
    ModelError::new(format!("{key} must be {expected}, not {kind}"))
}
