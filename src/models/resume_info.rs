use serde_json::{Value, json};

use super::json::{as_object, required};
use super::{Branch, ModelError};

/// An earlier successful run that a new run continues from (`assignment.resume`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeInfo {
    /// The earlier run's id.
    pub run_id: String,
    /// The earlier run's codemod result (`run.result`).
    pub result: Value,
    /// Full URL of the branch holding the earlier run's changes.
    pub branch_url: String,
    /// The earlier run's result branches.
    pub branches: Vec<Branch>,
}

impl ResumeInfo {
    /// The `resume` object of the assignment JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "run_id": self.run_id,
            "result": self.result,
            "branch_url": self.branch_url,
            "branches": self.branches.iter().map(Branch::to_json).collect::<Vec<_>>(),
        })
    }

    /// Reads a `resume` object, as [`ResumeInfo::to_json`] writes it.
    pub fn from_json(value: &Value) -> Result<Self, ModelError> {
        let obj = as_object(value, "resume")?;
        let text = |key: &str| match required(obj, key)? {
            Value::String(s) => Ok(s.clone()),
            other => Err(super::json::type_error(key, "a string", other)),
        };
        let branches = match required(obj, "branches")? {
            Value::Array(entries) => entries
                .iter()
                .enumerate()
                .map(|(i, e)| Branch::from_json(i, e))
                .collect::<Result<Vec<_>, _>>()?,
            other => return Err(super::json::type_error("branches", "a list", other)),
        };
        Ok(Self {
            run_id: text("run_id")?,
            result: required(obj, "result")?.clone(),
            branch_url: text("branch_url")?,
            branches,
        })
    }
}
