use chrono::{NaiveDateTime, TimeDelta};
use serde_json::{Map, Value};

use super::json::{as_object, opt_string, python_int, required, truthy, type_error};
use super::{BackchannelInfo, ModelError, QueueItem, VcsInfo};
use crate::time::{delta_from_seconds, isoformat, parse_timestamp, seconds};

/// A run handed to a worker and not yet finished. Its id is also the log id.
#[derive(Debug, Clone)]
pub struct ActiveRun {
    /// The run id, under which its logs are stored too.
    pub log_id: String,
    /// The queue item this run was handed out from.
    pub queue_id: i64,
    /// Absent only in entries written by very old runners.
    pub codebase: Option<String>,
    /// The campaign being run.
    pub campaign: String,
    /// The change set the run belongs to, if any.
    pub change_set: Option<String>,
    /// The queue command as stored, including any leading `VAR=value` words.
    pub command: String,
    /// The queue item's context; kept as JSON because old entries hold other shapes.
    pub instigated_context: Value,
    /// How long the run was expected to take; `None` when unknown.
    pub estimated_duration: Option<TimeDelta>,
    /// When the run was handed out.
    pub start_time: NaiveDateTime,
    /// Where the codebase's branch is.
    pub vcs_info: VcsInfo,
    /// How to reach the worker while the run is out.
    pub backchannel: BackchannelInfo,
    /// The worker's name, if it gave one.
    pub worker_name: Option<String>,
    /// A link to the worker's own page for this run.
    pub worker_link: Option<String>,
    /// The earlier run whose result this run resumes from; `None` when it starts afresh.
    pub resume_from: Option<String>,
}

impl ActiveRun {
    /// A run of `item`, just handed out to a worker; nothing to resume from yet.
    pub fn from_queue_item(
        item: &QueueItem,
        log_id: String,
        start_time: NaiveDateTime,
        vcs_info: VcsInfo,
        backchannel: BackchannelInfo,
        worker_name: Option<String>,
        worker_link: Option<String>,
    ) -> Self {
        Self {
            log_id,
            queue_id: item.id,
            codebase: Some(item.codebase.clone()),
            campaign: item.campaign.clone(),
            change_set: item.change_set.clone(),
            command: item.command.clone(),
            instigated_context: item.context.clone().map_or(Value::Null, Value::String),
            estimated_duration: item.estimated_duration,
            start_time,
            vcs_info,
            backchannel,
            worker_name,
            worker_link,
            resume_from: None,
        }
    }

    /// The codebase, or `""` for an entry without one.
    pub fn codebase(&self) -> &str {
        self.codebase.as_deref().unwrap_or_default()
    }

    /// The URL of the codebase's main branch, if known.
    pub fn main_branch_url(&self) -> Option<&str> {
        self.vcs_info.branch_url.as_deref()
    }

    /// The codebase's VCS type, if known.
    pub fn vcs_type(&self) -> Option<&str> {
        self.vcs_info.vcs_type.as_deref()
    }

    /// Path within the branch where the codebase lives, if any.
    pub fn subpath(&self) -> Option<&str> {
        self.vcs_info.subpath.as_deref()
    }

    /// How long the run has been out at `now`.
    pub fn current_duration(&self, now: NaiveDateTime) -> TimeDelta {
        now - self.start_time
    }

    /// The JSON the Python runner stores and serves; `current_duration` is taken at `now`.
    pub fn to_json(&self, now: NaiveDateTime) -> Value {
        let mut obj = Map::new();
        obj.insert("queue_id".into(), self.queue_id.into());
        obj.insert("id".into(), self.log_id.clone().into());
        obj.insert("codebase".into(), self.codebase.clone().into());
        obj.insert("change_set".into(), self.change_set.clone().into());
        obj.insert("campaign".into(), self.campaign.clone().into());
        obj.insert("command".into(), self.command.clone().into());
        let estimate = self
            .estimated_duration
            .filter(|d| !d.is_zero())
            .map(|d| seconds(&d));
        obj.insert("estimated_duration".into(), estimate.into());
        obj.insert(
            "current_duration".into(),
            seconds(&self.current_duration(now)).into(),
        );
        obj.insert("start_time".into(), isoformat(&self.start_time).into());
        obj.insert("worker".into(), self.worker_name.clone().into());
        obj.insert("worker_link".into(), self.worker_link.clone().into());
        obj.insert(
            "vcs".into(),
            serde_json::to_value(&self.vcs_info).unwrap_or_default(),
        );
        obj.insert("backchannel".into(), self.backchannel.to_json());
        obj.insert("instigated_context".into(), self.instigated_context.clone());
        obj.insert("resume_from".into(), self.resume_from.clone().into());
        Value::Object(obj)
    }

    /// Reads the stored JSON back. The keys the Python reader requires are required here too.
    pub fn from_json(value: &Value) -> Result<Self, ModelError> {
        let obj = as_object(value, "active run")?;
        for key in [
            "backchannel",
            "campaign",
            "start_time",
            "change_set",
            "command",
            "instigated_context",
            "queue_id",
            "id",
            "vcs",
            "worker",
            "worker_link",
        ] {
            required(obj, key)?;
        }
        let string = |key: &str| match obj.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(type_error(key, "a string", other)),
            None => Err(ModelError::new(format!("missing key {key:?}"))),
        };
        let start_text = string("start_time")?;
        let start_time =
            parse_timestamp(&start_text).map_err(|e| ModelError::new(e.to_string()))?;
        let estimated_duration = match obj.get("estimated_duration") {
            Some(v) if truthy(v) => {
                let secs = v
                    .as_f64()
                    .ok_or_else(|| type_error("estimated_duration", "a number", v))?;
                Some(
                    delta_from_seconds(secs)
                        .ok_or_else(|| ModelError::new("estimated_duration is out of range"))?,
                )
            }
            _ => None,
        };
        let vcs_info = match obj.get("vcs") {
            Some(Value::Null) | None => VcsInfo::default(),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| ModelError::new(format!("vcs: {e}")))?,
        };
        Ok(Self {
            log_id: string("id")?,
            queue_id: python_int("queue_id", required(obj, "queue_id")?)?,
            codebase: opt_string(obj, "codebase")?,
            campaign: string("campaign")?,
            change_set: opt_string(obj, "change_set")?,
            command: string("command")?,
            instigated_context: obj.get("instigated_context").cloned().unwrap_or_default(),
            estimated_duration,
            start_time,
            vcs_info,
            backchannel: BackchannelInfo::from_json(required(obj, "backchannel")?)?,
            worker_name: opt_string(obj, "worker")?,
            worker_link: opt_string(obj, "worker_link")?,
            resume_from: opt_string(obj, "resume_from")?,
        })
    }
}

impl PartialEq for ActiveRun {
    /// Equal when their JSON is, apart from the ever-changing `current_duration`.
    fn eq(&self, other: &Self) -> bool {
        let strip = |run: &ActiveRun| {
            let mut js = run.to_json(run.start_time);
            if let Some(obj) = js.as_object_mut() {
                obj.remove("current_duration");
            }
            js
        };
        strip(self) == strip(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> ActiveRun {
        let item = QueueItem {
            id: 42,
            context: Some("ctx".into()),
            command: "FOO=1 lintian-brush".into(),
            estimated_duration: Some(TimeDelta::seconds(15)),
            campaign: "lintian-fixes".into(),
            refresh: false,
            requester: None,
            change_set: None,
            codebase: "alpha".into(),
        };
        ActiveRun::from_queue_item(
            &item,
            "5a4c6a3e-3b0b-4f7e-9b8e-111111111111".into(),
            parse_timestamp("2024-05-01T10:11:12.345678").unwrap(),
            VcsInfo {
                branch_url: Some("https://example.com/alpha".into()),
                subpath: Some(String::new()),
                vcs_type: Some("git".into()),
            },
            BackchannelInfo::Polling {
                my_url: "http://worker:8080/".into(),
            },
            Some("w1".into()),
            None,
        )
    }

    #[test]
    fn json_form() {
        let run = sample();
        let now = run.start_time + TimeDelta::milliseconds(2500);
        let js = run.to_json(now);
        assert_eq!(
            js,
            json!({
                "queue_id": 42, "id": "5a4c6a3e-3b0b-4f7e-9b8e-111111111111",
                "codebase": "alpha", "change_set": null, "campaign": "lintian-fixes",
                "command": "FOO=1 lintian-brush", "estimated_duration": 15.0,
                "current_duration": 2.5, "start_time": "2024-05-01T10:11:12.345678",
                "worker": "w1", "worker_link": null,
                "vcs": {"branch_url": "https://example.com/alpha", "subpath": "", "vcs_type": "git"},
                "backchannel": {"my_url": "http://worker:8080/"},
                "instigated_context": "ctx", "resume_from": null
            })
        );
        let keys: Vec<&String> = js.as_object().unwrap().keys().collect();
        assert_eq!(keys[0], "queue_id");
        assert_eq!(keys[14], "resume_from");
    }

    #[test]
    fn round_trip_and_equality() {
        let run = sample();
        let back = ActiveRun::from_json(&run.to_json(run.start_time)).unwrap();
        assert_eq!(back, run);
        let mut jenkins = sample();
        jenkins.backchannel = BackchannelInfo::Jenkins {
            my_url: "https://jenkins/job/1".into(),
            metadata: Value::Null,
        };
        let back = ActiveRun::from_json(&jenkins.to_json(jenkins.start_time)).unwrap();
        assert_eq!(back.backchannel, jenkins.backchannel);
    }

    #[test]
    fn zero_estimate_round_trips_to_null() {
        let mut run = sample();
        run.estimated_duration = Some(TimeDelta::zero());
        assert_eq!(
            run.to_json(run.start_time)["estimated_duration"],
            Value::Null
        );
    }

    #[test]
    fn missing_required_keys_are_errors() {
        let mut js = sample().to_json(sample().start_time);
        js.as_object_mut().unwrap().remove("worker_link");
        let err = ActiveRun::from_json(&js).unwrap_err();
        assert!(err.0.contains("worker_link"), "{err}");
        let mut js = sample().to_json(sample().start_time);
        let obj = js.as_object_mut().unwrap();
        obj.remove("codebase");
        obj.remove("resume_from");
        obj.insert("vcs".into(), Value::Null);
        let run = ActiveRun::from_json(&js).unwrap();
        assert_eq!(run.codebase, None);
        assert_eq!(run.vcs_info, VcsInfo::default());
    }
}
