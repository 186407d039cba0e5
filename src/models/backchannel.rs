use serde_json::{Map, Value, json};

use super::ModelError;

/// How the runner reaches a worker while it runs, as persisted inside the ActiveRun JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum BackchannelInfo {
    /// No way to reach the worker.
    #[default]
    None,
    /// The worker serves `/log-id`, `/logs` and `/kill` under `my_url`.
    Polling {
        /// The worker's base URL.
        my_url: String,
    },
    /// A Jenkins build at `my_url`.
    Jenkins {
        /// The Jenkins build's URL.
        my_url: String,
        /// The stored `jenkins` value, kept as is (null for runs assigned here).
        metadata: Value,
    },
}

impl BackchannelInfo {
    /// The JSON stored in the active run: `my_url`, plus `jenkins` for Jenkins; `{}` for none.
    pub fn to_json(&self) -> Value {
        match self {
            Self::None => json!({}),
            Self::Polling { my_url } => json!({ "my_url": my_url }),
            Self::Jenkins { my_url, metadata } => json!({ "my_url": my_url, "jenkins": metadata }),
        }
    }

    /// From the assign request's `backchannel`: `{"kind": "http"|"jenkins", "url": ...}`
    /// (another kind: none), or null. The URL must be absolute.
    pub fn from_request(spec: &Value) -> Result<Self, ModelError> {
        let spec = match spec {
            Value::Null => return Ok(Self::None),
            Value::Object(spec) => spec,
            _ => return Err(ModelError::new("backchannel must be an object or null")),
        };
        let kind = match spec.get("kind") {
            Some(Value::String(kind)) => kind.as_str(),
            _ => return Err(ModelError::new("backchannel.kind must be a string")),
        };
        let url = || match spec.get("url") {
            Some(Value::String(url)) if url::Url::parse(url).is_ok() => Ok(url.clone()),
            _ => Err(ModelError::new(format!(
                "backchannel.url must be an absolute URL for kind {kind:?}"
            ))),
        };
        Ok(match kind {
            "http" => Self::Polling { my_url: url()? },
            "jenkins" => Self::Jenkins {
                my_url: url()?,
                metadata: Value::Null,
            },
            _ => Self::None,
        })
    }

    /// A `jenkins` key means Jenkins, else a `my_url` key means polling, else none.
    pub fn from_json(value: &Value) -> Result<Self, ModelError> {
        let empty = Map::new();
        let obj = match value {
            Value::Null => &empty,
            Value::Object(obj) => obj,
            _ => return Err(ModelError::new("backchannel must be a JSON object")),
        };
        let url = || match obj.get("my_url") {
            Some(Value::String(url)) => Ok(url.clone()),
            _ => Err(ModelError::new("backchannel.my_url must be a string")),
        };
        if let Some(metadata) = obj.get("jenkins") {
            Ok(Self::Jenkins {
                my_url: url()?,
                metadata: metadata.clone(),
            })
        } else if obj.contains_key("my_url") {
            Ok(Self::Polling { my_url: url()? })
        } else {
            Ok(Self::None)
        }
    }
}
