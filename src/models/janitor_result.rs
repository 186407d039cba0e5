use chrono::{NaiveDateTime, TimeDelta};
use serde_json::{Map, Value, json};

use super::json::type_error;
use super::{ActiveRun, BuilderResult, ModelError, WorkerResult};
use crate::time::{isoformat, seconds};

/// A result branch: `[role, remote_name, base_revision, revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// The branch's role in the result, such as `main` or `upstream`.
    pub role: String,
    /// The branch's name at the remote, if any.
    pub remote_name: Option<String>,
    /// The revision the branch was at before the run, if any.
    pub base_revision: Option<String>,
    /// The revision the run left it at, if any.
    pub revision: Option<String>,
}

impl Branch {
    pub(crate) fn from_json(index: usize, entry: &Value) -> Result<Self, ModelError> {
        let key = format!("branches[{index}]");
        let Some([role, remote_name, base, revision]) = entry.as_array().map(Vec::as_slice) else {
            return Err(ModelError::new(format!(
                "{key} must be a list of 4: [role, remote_name, base_revision, revision]"
            )));
        };
        let text = |value: &Value, what: &str| match value {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s.clone())),
            other => Err(type_error(
                &format!("{key} {what}"),
                "a string or null",
                other,
            )),
        };
        let role = match role {
            Value::String(s) => s.clone(),
            other => return Err(type_error(&format!("{key} role"), "a string", other)),
        };
        let remote_name = match remote_name {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => {
                return Err(type_error(
                    &format!("{key} remote_name"),
                    "a string or null",
                    other,
                ));
            }
        };
        Ok(Self {
            role,
            remote_name,
            base_revision: text(base, "base_revision")?,
            revision: text(revision, "revision")?,
        })
    }

    /// `[role, remote_name, base_revision, revision]`, as in `result.json`.
    pub fn to_json(&self) -> Value {
        json!([
            self.role,
            self.remote_name,
            self.base_revision,
            self.revision
        ])
    }
}

/// A tag the run created: `[name, revision]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag's name.
    pub name: String,
    /// The revision it points at.
    pub revision: String,
}

impl Tag {
    pub(crate) fn from_json(index: usize, entry: &Value) -> Result<Self, ModelError> {
        match entry.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(revision)]) => Ok(Self {
                name: name.clone(),
                revision: revision.clone(),
            }),
            _ => Err(ModelError::new(format!(
                "tags[{index}] must be a list of 2 strings: [name, revision]"
            ))),
        }
    }

    /// `[name, revision]`, as in `result.json`.
    pub fn to_json(&self) -> Value {
        json!([self.name, self.revision])
    }
}

/// The outcome of a run as the runner stores and announces it.
#[derive(Debug, Clone, PartialEq)]
pub struct JanitorResult {
    /// The run id, also the id of its logs.
    pub log_id: String,
    /// The codebase the run changed.
    pub codebase: String,
    /// The campaign run.
    pub campaign: String,
    /// The change set the run belongs to, if any.
    pub change_set: Option<String>,
    /// The result code: `success`, or the code of what happened instead.
    pub code: String,
    /// What happened, for people.
    pub description: Option<String>,
    /// The context the worker ran in, stored as the run's `context`.
    pub context: Option<String>,
    /// The main branch's tip the run started from.
    pub main_branch_revision: Option<String>,
    /// The revision the run produced.
    pub revision: Option<String>,
    /// The codemod's result, stored as the run's `result`.
    pub codemod_result: Value,
    /// The value of the changes, as the worker rated them.
    pub value: Option<i64>,
    /// What the build produced, if the worker sent a `target`.
    pub builder_result: Option<BuilderResult>,
    /// The result branches.
    pub branches: Option<Vec<Branch>>,
    /// The tags the run created.
    pub tags: Option<Vec<Tag>>,
    /// The worker's `remotes`, passed on unread.
    pub remotes: Option<Value>,
    /// Details of the failure, if any.
    pub failure_details: Value,
    /// The stage the run failed in, if it failed.
    pub failure_stage: Option<String>,
    /// When the run started.
    pub start_time: NaiveDateTime,
    /// When the run finished.
    pub finish_time: NaiveDateTime,
    /// The names of the run's stored log files.
    pub logfilenames: Vec<String>,
    /// The worker that ran it; `None` when unknown or not registered.
    pub worker_name: Option<String>,
    /// The main branch's URL, as the worker opened it.
    pub branch_url: Option<String>,
    /// The main branch's VCS (`git`, `bzr`, ...).
    pub vcs_type: Option<String>,
    /// Path within the branch where the codebase lives.
    pub subpath: Option<String>,
    /// The branch the changes are meant to be merged into.
    pub target_branch_url: Option<String>,
    /// The run this one resumed from; `None` when it started afresh.
    pub resume_from: Option<String>,
    /// Whether the failure is transient, so that trying again may succeed.
    pub transient: Option<bool>,
}

/// Where a run without worker output worked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Worked {
    /// The branch it worked on.
    pub branch_url: Option<String>,
    /// That branch's VCS.
    pub vcs_type: Option<String>,
    /// The subpath within it.
    pub subpath: Option<String>,
}

/// What a result knows of its run besides the worker's report.
#[derive(Debug, Clone)]
pub struct ResultOf {
    /// The run id.
    pub log_id: String,
    /// The codebase the run was handed out for.
    pub codebase: String,
    /// The campaign run.
    pub campaign: String,
    /// The change set the run belongs to, if any.
    pub change_set: Option<String>,
    /// A description that wins over the worker's.
    pub description: Option<String>,
    /// The worker the run was assigned to.
    pub worker_name: Option<String>,
    /// The run it resumed from, if any.
    pub resume_from: Option<String>,
    /// The names of the run's stored log files.
    pub logfilenames: Vec<String>,
}

impl JanitorResult {
    /// A run the worker reported on. Times are the worker's, falling back to the run's start
    /// and `now` when the worker sent none.
    pub fn from_worker_result(
        run: &ActiveRun,
        worker: WorkerResult,
        logfilenames: Vec<String>,
        now: NaiveDateTime,
    ) -> Self {
        let start_time = worker.start_time.unwrap_or(run.start_time);
        let finish_time = worker.finish_time.unwrap_or(now);
        let worker_name = run.worker_name.clone().or(worker.worker_name.clone());
        Self::reported(
            ResultOf {
                log_id: run.log_id.clone(),
                codebase: run.codebase().to_string(),
                campaign: run.campaign.clone(),
                change_set: run.change_set.clone(),
                description: None,
                worker_name,
                resume_from: run.resume_from.clone(),
                logfilenames,
            },
            worker,
            start_time,
            finish_time,
        )
    }

    /// The result `worker` reported for the run `of`, with its times resolved. The worker's
    /// fields win over `of` as in the Python's `JanitorResult` (codebase when it sent one,
    /// description only when `of` has none); a refreshed run does not resume.
    pub fn reported(
        of: ResultOf,
        worker: WorkerResult,
        start_time: NaiveDateTime,
        finish_time: NaiveDateTime,
    ) -> Self {
        Self {
            log_id: of.log_id,
            codebase: worker
                .codebase
                .filter(|c| !c.is_empty())
                .unwrap_or(of.codebase),
            campaign: of.campaign,
            change_set: of.change_set,
            code: worker.code,
            description: of.description.or(worker.description),
            context: worker.context,
            main_branch_revision: worker.main_branch_revision,
            revision: worker.revision,
            codemod_result: worker.codemod,
            value: worker.value,
            builder_result: worker.builder_result,
            branches: worker.branches,
            tags: worker.tags,
            remotes: worker.remotes,
            failure_details: worker.details,
            failure_stage: worker.stage,
            start_time,
            finish_time,
            logfilenames: of.logfilenames,
            worker_name: of.worker_name,
            branch_url: worker.branch_url,
            vcs_type: worker.vcs_type,
            subpath: worker.subpath,
            target_branch_url: worker.target_branch_url,
            resume_from: if worker.refreshed {
                None
            } else {
                of.resume_from
            },
            transient: worker.transient,
        }
    }

    /// A run the runner ended itself (unknown campaign, timeout, ...): no worker output, the
    /// run's start time and `now` as finish, its subpath and resume kept.
    pub fn aborted(
        run: &ActiveRun,
        code: &str,
        description: &str,
        transient: Option<bool>,
        now: NaiveDateTime,
    ) -> Self {
        let of = ResultOf {
            log_id: run.log_id.clone(),
            codebase: run.codebase().to_string(),
            campaign: run.campaign.clone(),
            change_set: run.change_set.clone(),
            description: Some(description.to_string()),
            worker_name: run.worker_name.clone(),
            // Python drops both the resume and the subpath; DECISIONS.md 10 keeps them, so an
            // aborted run still says where it worked and what it resumed from.
            resume_from: run.resume_from.clone(),
            logfilenames: Vec::new(),
        };
        let worked = Worked {
            branch_url: run.main_branch_url().map(str::to_string),
            vcs_type: run.vcs_type().map(str::to_string),
            subpath: run.subpath().map(str::to_string),
        };
        Self::without_worker(
            of,
            code.to_string(),
            (run.start_time, now),
            worked,
            transient,
        )
    }

    /// A result without worker output: the run's identity, a result code, its start and
    /// finish times, and where it worked.
    pub fn without_worker(
        of: ResultOf,
        code: String,
        (start_time, finish_time): (NaiveDateTime, NaiveDateTime),
        worked: Worked,
        transient: Option<bool>,
    ) -> Self {
        Self {
            log_id: of.log_id,
            codebase: of.codebase,
            campaign: of.campaign,
            change_set: of.change_set,
            code,
            description: of.description,
            context: None,
            main_branch_revision: None,
            revision: None,
            codemod_result: Value::Null,
            value: None,
            builder_result: None,
            branches: None,
            tags: None,
            remotes: Some(json!({})),
            failure_details: Value::Null,
            failure_stage: None,
            start_time,
            finish_time,
            logfilenames: of.logfilenames,
            worker_name: of.worker_name,
            branch_url: worked.branch_url,
            vcs_type: worked.vcs_type,
            subpath: worked.subpath,
            target_branch_url: None,
            resume_from: of.resume_from,
            transient,
        }
    }

    /// How long the run took: `finish_time - start_time`.
    pub fn duration(&self) -> TimeDelta {
        self.finish_time - self.start_time
    }

    /// The JSON of the finish response and of the `result` channel.
    pub fn to_json(&self) -> Value {
        let target = match &self.builder_result {
            Some(builder) if builder.is_present() => {
                json!({"name": builder.kind(), "details": builder.details_json()})
            }
            _ => json!({}),
        };
        let mut obj = Map::new();
        let mut put = |key: &str, value: Value| {
            obj.insert(key.to_string(), value);
        };
        put("codebase", self.codebase.clone().into());
        put("campaign", self.campaign.clone().into());
        put("change_set", self.change_set.clone().into());
        put("log_id", self.log_id.clone().into());
        put("description", self.description.clone().into());
        put("code", self.code.clone().into());
        put("failure_details", self.failure_details.clone());
        put("failure_stage", self.failure_stage.clone().into());
        put("duration", seconds(&self.duration()).into());
        put("finish_time", isoformat(&self.finish_time).into());
        put("start_time", isoformat(&self.start_time).into());
        put("transient", self.transient.into());
        put("target", target);
        put("logfilenames", self.logfilenames.clone().into());
        put("codemod", self.codemod_result.clone());
        put("value", self.value.into());
        put("remotes", self.remotes.clone().unwrap_or_default());
        put("branch_url", self.branch_url.clone().into());
        put(
            "resume",
            self.resume_from
                .as_ref()
                .map_or(Value::Null, |id| json!({"run_id": id})),
        );
        put(
            "branches",
            self.branches.as_ref().map_or(Value::Null, |branches| {
                branches.iter().map(Branch::to_json).collect()
            }),
        );
        put(
            "tags",
            self.tags
                .as_ref()
                .map_or(Value::Null, |tags| tags.iter().map(Tag::to_json).collect()),
        );
        put("revision", self.revision.clone().into());
        put(
            "main_branch_revision",
            self.main_branch_revision.clone().into(),
        );
        Value::Object(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{BackchannelInfo, DebianResult, QueueItem, VcsInfo};
    use crate::time::parse_timestamp;

    fn run() -> ActiveRun {
        let item = QueueItem {
            id: 1,
            context: None,
            command: "true".into(),
            estimated_duration: None,
            campaign: "unchanged".into(),
            refresh: false,
            requester: None,
            change_set: None,
            codebase: "alpha".into(),
        };
        let mut run = ActiveRun::from_queue_item(
            &item,
            "run-1".into(),
            parse_timestamp("2024-05-01T10:00:00").unwrap(),
            VcsInfo {
                branch_url: Some("https://x/alpha".into()),
                subpath: Some("sub".into()),
                vcs_type: Some("git".into()),
            },
            BackchannelInfo::None,
            None,
            None,
        );
        run.resume_from = Some("run-0".into());
        run
    }

    #[test]
    fn worker_that_sent_only_times() {
        let worker = WorkerResult::from_json(&json!({
            "start_time": "2024-05-01T10:00:00", "finish_time": "2024-05-01T10:00:00"
        }))
        .unwrap();
        let now = parse_timestamp("2024-05-01T11:00:00").unwrap();
        let result = JanitorResult::from_worker_result(&run(), worker, vec![], now);
        let js = result.to_json();
        assert_eq!(js["code"], "success");
        assert_eq!(js["remotes"], Value::Null);
        assert_eq!(js["branches"], Value::Null);
        assert_eq!(js["tags"], Value::Null);
        assert_eq!(js["target"], json!({}));
        assert_eq!(js["resume"], json!({"run_id": "run-0"}));
        assert_eq!(js["duration"], json!(0.0));
        let keys: Vec<&String> = js.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 23);
    }

    #[test]
    fn refreshed_run_drops_resume() {
        let worker = WorkerResult::from_json(&json!({"refreshed": true})).unwrap();
        let now = parse_timestamp("2024-05-01T11:00:00").unwrap();
        let result = JanitorResult::from_worker_result(&run(), worker, vec![], now);
        assert_eq!(result.to_json()["resume"], Value::Null);
        assert_eq!(result.to_json()["duration"], json!(3600.0));
    }

    #[test]
    fn aborted_run() {
        let now = parse_timestamp("2024-05-01T10:00:01.5").unwrap();
        let result = JanitorResult::aborted(&run(), "worker-timeout", "gone", Some(true), now);
        let js = result.to_json();
        assert_eq!(js["remotes"], json!({}));
        // DECISIONS.md 10: subpath and resume_from are kept (Python drops both).
        assert_eq!(js["resume"], json!({"run_id": "run-0"}));
        assert_eq!(js["branch_url"], "https://x/alpha");
        assert_eq!(js["transient"], true);
        assert_eq!(js["duration"], json!(1.5));
        assert_eq!(result.subpath.as_deref(), Some("sub"));
    }

    #[test]
    fn debian_target_only_with_changes() {
        let now = parse_timestamp("2024-05-01T11:00:00").unwrap();
        let mut result = JanitorResult::aborted(&run(), "x", "y", None, now);
        result.builder_result = Some(BuilderResult::Debian(Box::default()));
        assert_eq!(result.to_json()["target"], json!({}));
        result.builder_result = Some(BuilderResult::Debian(Box::new(DebianResult {
            build_version: Some("1.0-1".into()),
            build_distribution: Some("unstable".into()),
            changes_filenames: Some(vec!["a_1.0-1_amd64.changes".into()]),
            binary_packages: Some(vec!["a".into()]),
            ..DebianResult::default()
        })));
        assert_eq!(
            result.to_json()["target"],
            json!({"name": "debian", "details": {
                "build_distribution": "unstable", "build_version": "1.0-1",
                "changes_filenames": ["a_1.0-1_amd64.changes"], "lintian": null,
                "binary_packages": ["a"]}})
        );
        result.builder_result = Some(BuilderResult::Generic);
        assert_eq!(
            result.to_json()["target"],
            json!({"name": "generic", "details": {}})
        );
    }
}
