use chrono::NaiveDateTime;
use serde_json::Value;

use super::json::{as_object, opt_bool, opt_string, opt_timestamp, python_int, truthy, type_error};
use super::{Branch, BuilderResult, ModelError, Tag, is_vcs_type};

/// The worker's `result.json`, validated. Keys the runner does not use are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerResult {
    /// `success` when the worker sent no code, `null` or `""` (the Rust worker omits it).
    pub code: String,
    /// What happened, for people.
    pub description: Option<String>,
    /// The context the worker ran in, stored as the run's `context`.
    pub context: Option<String>,
    /// The codemod's result, stored as the run's `result`.
    pub codemod: Value,
    /// The main branch's tip the run started from.
    pub main_branch_revision: Option<String>,
    /// The revision the run produced.
    pub revision: Option<String>,
    /// The value of the changes, as the worker rated them.
    pub value: Option<i64>,
    /// The result branches, each role at most once.
    pub branches: Option<Vec<Branch>>,
    /// The tags the run created.
    pub tags: Option<Vec<Tag>>,
    /// The worker's `remotes`, passed on unread.
    pub remotes: Option<Value>,
    /// Details of the failure, stored as the run's `failure_details`.
    pub details: Value,
    /// The stage the run failed in, stored as the run's `failure_stage`.
    pub stage: Option<String>,
    /// What the build produced (`target`).
    pub builder_result: Option<BuilderResult>,
    /// When the worker started; the run's start time when absent.
    pub start_time: Option<NaiveDateTime>,
    /// When the worker finished; the time the result arrives when absent.
    pub finish_time: Option<NaiveDateTime>,
    /// The queue item the worker says it ran.
    pub queue_id: Option<i64>,
    /// The worker's own name for itself; the name the run was assigned to wins.
    pub worker_name: Option<String>,
    /// The worker started afresh instead of resuming the earlier run.
    pub refreshed: bool,
    /// The branch the changes are meant to be merged into.
    pub target_branch_url: Option<String>,
    /// The main branch's URL, as the worker opened it.
    pub branch_url: Option<String>,
    /// The directory within the branch that the codebase lives in.
    pub subpath: Option<String>,
    /// The main branch's VCS (`git`, `bzr`).
    pub vcs_type: Option<String>,
    /// Whether the failure is transient, so that trying again may succeed.
    pub transient: Option<bool>,
    /// The codebase, replacing the run's when given.
    pub codebase: Option<String>,
}

impl WorkerResult {
    /// Reads and validates `result.json`.
    pub fn from_json(value: &Value) -> Result<Self, ModelError> {
        let obj = as_object(value, "result.json")?;
        let code = opt_string(obj, "code")?
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "success".to_string());
        let value_field = match obj.get("value") {
            Some(v) if truthy(v) => Some(python_int("value", v)?),
            _ => None,
        };
        let branches = parse_branches(obj)?;
        let tags = parse_tags(obj)?;
        let builder_result = parse_target(obj)?;
        let vcs_type = opt_string(obj, "vcs_type")?;
        if let Some(vcs) = &vcs_type
            && !is_vcs_type(vcs)
        {
            return Err(ModelError::new(format!(
                "vcs_type {vcs:?} is not a known VCS"
            )));
        }
        let queue_id = match obj.get("queue_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(python_int("queue_id", v)?),
        };
        if matches!(obj.get("start_time"), Some(Value::Null)) {
            return Err(ModelError::new("start_time must be a timestamp, not null"));
        }
        if matches!(obj.get("finish_time"), Some(Value::Null)) {
            return Err(ModelError::new("finish_time must be a timestamp, not null"));
        }
        Ok(Self {
            code,
            description: opt_string(obj, "description")?,
            context: opt_string(obj, "context")?,
            codemod: obj.get("codemod").cloned().unwrap_or_default(),
            main_branch_revision: opt_string(obj, "main_branch_revision")?,
            revision: opt_string(obj, "revision")?,
            value: value_field,
            branches,
            tags,
            remotes: obj.get("remotes").cloned(),
            details: obj.get("details").cloned().unwrap_or_default(),
            stage: opt_string(obj, "stage")?,
            builder_result,
            start_time: opt_timestamp(obj, "start_time")?,
            finish_time: opt_timestamp(obj, "finish_time")?,
            queue_id,
            worker_name: opt_string(obj, "worker_name")?,
            refreshed: obj.get("refreshed").is_some_and(truthy),
            target_branch_url: opt_string(obj, "target_branch_url")?,
            branch_url: opt_string(obj, "branch_url")?,
            subpath: opt_string(obj, "subpath")?,
            vcs_type,
            transient: opt_bool(obj, "transient")?,
            codebase: opt_string(obj, "codebase")?,
        })
    }
}

type Object = serde_json::Map<String, Value>;

/// `branches`: a list of branches, each role at most once.
fn parse_branches(obj: &Object) -> Result<Option<Vec<Branch>>, ModelError> {
    Ok(match obj.get("branches") {
        None | Some(Value::Null) => None,
        Some(Value::Array(entries)) => {
            let branches = entries
                .iter()
                .enumerate()
                .map(|(i, entry)| Branch::from_json(i, entry))
                .collect::<Result<Vec<_>, _>>()?;
            let mut roles: Vec<&str> = branches.iter().map(|b| b.role.as_str()).collect();
            roles.sort_unstable();
            if let Some(pair) = roles.windows(2).find(|pair| pair[0] == pair[1]) {
                return Err(ModelError::new(format!(
                    "branches: role {:?} appears more than once",
                    pair[0]
                )));
            }
            Some(branches)
        }
        Some(other) => return Err(type_error("branches", "a list", other)),
    })
}

/// `tags`: a list of (name, revision) pairs.
fn parse_tags(obj: &Object) -> Result<Option<Vec<Tag>>, ModelError> {
    Ok(match obj.get("tags") {
        None | Some(Value::Null) => None,
        Some(Value::Array(entries)) => Some(
            entries
                .iter()
                .enumerate()
                .map(|(i, entry)| Tag::from_json(i, entry))
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(other) => return Err(type_error("tags", "a list", other)),
    })
}

/// `target`: the builder's name and its result details.
fn parse_target(obj: &Object) -> Result<Option<BuilderResult>, ModelError> {
    Ok(match obj.get("target") {
        None | Some(Value::Null) => None,
        Some(Value::Object(target)) => match target.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(kind)) => {
                BuilderResult::check_kind(kind)?;
                match target.get("details") {
                    Some(Value::Null) => None,
                    Some(details) => Some(BuilderResult::from_details(kind, details)?),
                    None => return Err(ModelError::new("target.details is missing")),
                }
            }
            Some(other) => return Err(type_error("target.name", "a string", other)),
        },
        Some(other) => return Err(type_error("target", "an object", other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn absent_or_null_code_is_success() {
        for js in [json!({}), json!({"code": null}), json!({"code": ""})] {
            assert_eq!(WorkerResult::from_json(&js).unwrap().code, "success");
        }
        let r = WorkerResult::from_json(&json!({"code": "build-failed"})).unwrap();
        assert_eq!(r.code, "build-failed");
    }

    #[test]
    fn reads_the_rust_worker_result() {
        let js = json!({
            "code": null, "description": "Fixed 2 issues", "codemod": {"fixed": ["a", "b"]},
            "main_branch_revision": "rev-main", "revision": "rev-new", "value": 40,
            "branches": [["main", null, "rev-main", "rev-new"]],
            "tags": [["v1.0", "rev-tag"]], "remotes": {"origin": {"url": "https://x/y"}},
            "details": null, "stage": null,
            "target": {"name": "debian", "details": {"lintian": {"version": "2.1"}}},
            "start_time": "2024-05-01T10:00:00Z", "finish_time": "2024-05-01T10:05:00.5Z",
            "queue_id": 7, "worker_name": "w1", "refreshed": false,
            "target_branch_url": "https://x/y", "branch_url": "https://x/y", "subpath": "",
            "vcs_type": "git", "transient": null, "codebase": "alpha",
            "campaign": "lintian-fixes", "command": "lintian-brush"
        });
        let r = WorkerResult::from_json(&js).unwrap();
        assert_eq!(r.code, "success");
        assert_eq!(r.value, Some(40));
        assert_eq!(
            r.branches.as_ref().unwrap()[0].base_revision.as_deref(),
            Some("rev-main")
        );
        assert_eq!(r.tags.as_ref().unwrap()[0].revision, "rev-tag");
        assert_eq!(
            crate::time::isoformat(&r.finish_time.unwrap()),
            "2024-05-01T10:05:00.500000"
        );
        match r.builder_result.unwrap() {
            BuilderResult::Debian(d) => assert_eq!(d.lintian_result, json!({"version": "2.1"})),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn python_value_rules() {
        let r = WorkerResult::from_json(&json!({"value": 0})).unwrap();
        assert_eq!(r.value, None);
        let r = WorkerResult::from_json(&json!({"value": 12.9})).unwrap();
        assert_eq!(r.value, Some(12));
        assert!(WorkerResult::from_json(&json!({"value": "lots"})).is_err());
    }

    #[test]
    fn rejects_malformed_results() {
        for (js, needle) in [
            (json!([]), "object"),
            (json!({"branches": [["main", null, null]]}), "branches[0]"),
            (
                json!({"branches": [["a", null, null, null], ["a", null, null, null]]}),
                "more than once",
            ),
            (json!({"tags": [["v1", null]]}), "tags[0]"),
            (
                json!({"target": {"name": "rpm", "details": {}}}),
                "unsupported",
            ),
            (json!({"target": {"name": "debian"}}), "details"),
            (
                json!({"target": {"name": "debian", "details": []}}),
                "object",
            ),
            (json!({"vcs_type": "fossil"}), "vcs_type"),
            (json!({"start_time": null}), "start_time"),
            (json!({"finish_time": "soon"}), "finish_time"),
            (json!({"context": 3}), "context"),
            (json!({"queue_id": "seven"}), "queue_id"),
            (json!({"transient": "yes"}), "transient"),
        ] {
            let err = WorkerResult::from_json(&js).unwrap_err();
            assert!(err.0.contains(needle), "{js}: {err}");
        }
    }

    #[test]
    fn target_without_details_is_no_result() {
        let r = WorkerResult::from_json(&json!({"target": {"name": "generic", "details": null}}))
            .unwrap();
        assert_eq!(r.builder_result, None);
        let r = WorkerResult::from_json(&json!({"target": {"name": "generic", "details": {}}}))
            .unwrap();
        assert_eq!(r.builder_result, Some(BuilderResult::Generic));
    }
}
