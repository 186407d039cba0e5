//! Pub/sub announcements on the Python runner's Redis channels (`queue`, `result`,
//! `publish-status`). Without Redis there is nobody subscribed, so nothing is sent.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use serde_json::Value;

/// Where the queue status is announced after changes.
pub const QUEUE_CHANNEL: &str = "queue";
/// Where each finished run's result is announced.
pub const RESULT_CHANNEL: &str = "result";
/// Where changes of a run's publish status are announced.
pub const PUBLISH_STATUS_CHANNEL: &str = "publish-status";

/// The publisher of announcements: to Redis, or disabled (nothing sent).
#[derive(Clone, Default)]
pub struct Events {
    redis: Option<ConnectionManager>,
    prefix: String,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("redis", &self.redis.is_some())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Events {
    /// Publishes to Redis; `prefix` is put before each channel name (empty in production).
    pub fn redis(conn: ConnectionManager, prefix: &str) -> Self {
        Self {
            redis: Some(conn),
            prefix: prefix.to_string(),
        }
    }

    /// Sends nothing (no Redis, so nobody is subscribed).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Whether announcements go anywhere.
    pub fn is_enabled(&self) -> bool {
        self.redis.is_some()
    }

    /// Sends one JSON message. A failed publish is logged, not raised: the state it announces
    /// is already committed, and subscribers resynchronise from `/status`.
    pub async fn publish(&self, channel: &str, message: &Value) {
        let Some(conn) = &self.redis else {
            return;
        };
        let mut conn = conn.clone();
        let channel = format!("{}{channel}", self.prefix);
        let sent: Result<i64, _> = conn.publish(&channel, message.to_string()).await;
        if let Err(error) = sent {
            tracing::warn!(%channel, %error, "could not publish message");
        }
    }
}
