//! Table `named_publish_policy`.

use sqlx::PgPool;

/// A named policy: its name, whether it has no per-branch policy, and the publish mode of
/// each of its entries.
pub type PolicyModes = (String, bool, Vec<Option<String>>);

/// Every named policy with its publish modes.
pub async fn modes(pool: &PgPool) -> Result<Vec<PolicyModes>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, per_branch_policy IS NULL,
                ARRAY(SELECT (entry).mode::text FROM unnest(per_branch_policy) AS entry)
         FROM named_publish_policy",
    )
    .fetch_all(pool)
    .await
}
