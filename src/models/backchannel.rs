use serde_json::{Map, Value, json};

use super::ModelError;

/// How the runner reaches a worker while it runs, as persisted inside the ActiveRun JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum BackchannelInfo {
    /// No way to reach the worker.
    #[default]
    None,
    /// The worker serves `/log-id`, `/logs` and `/kill` under `my_url`.
    Polling { my_url: String },
    /// A Jenkins build at `my_url`.
    Jenkins { my_url: String, metadata: Value },
}

impl BackchannelInfo {
    pub fn to_json(&self) -> Value {
        match self {
            Self::None => json!({}),
            Self::Polling { my_url } => json!({ "my_url": my_url }),
            Self::Jenkins { my_url, metadata } => json!({ "my_url": my_url, "jenkins": metadata }),
        }
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
