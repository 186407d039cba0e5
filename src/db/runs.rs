//! Table `run`.

use sqlx::PgPool;

/// The identity and publish status of a stored run.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunSummary {
    pub codebase: String,
    pub campaign: String,
    pub publish_status: String,
}

pub async fn summary(pool: &PgPool, id: &str) -> Result<Option<RunSummary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT codebase, suite::text AS campaign, publish_status::text AS publish_status
         FROM run WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Sets the publish status; returns (codebase, campaign) of the run, `None` if it does not exist.
pub async fn set_publish_status(
    pool: &PgPool,
    id: &str,
    status: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE run SET publish_status = $2::publish_status WHERE id = $1
         RETURNING codebase, suite::text",
    )
    .bind(id)
    .bind(status)
    .fetch_optional(pool)
    .await
}
