//! Table `review`: reviewers' verdicts on runs, one per run and reviewer.

use sqlx::PgConnection;

/// The codebase and campaign of a stored run, read inside a review's transaction.
pub async fn run_identity(
    conn: &mut PgConnection,
    run_id: &str,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT codebase, suite::text FROM run WHERE id = $1")
        .bind(run_id)
        .fetch_optional(conn)
        .await
}

/// Records `verdict`, replacing the reviewer's earlier one (and its time) for this run.
pub async fn upsert(
    conn: &mut PgConnection,
    run_id: &str,
    comment: Option<&str>,
    reviewer: Option<&str>,
    verdict: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO review (run_id, comment, reviewer, verdict)
         VALUES ($1, $2, $3, $4::verdict)
         ON CONFLICT (run_id, reviewer) DO UPDATE
         SET verdict = EXCLUDED.verdict, comment = EXCLUDED.comment, reviewed_at = NOW()",
    )
    .bind(run_id)
    .bind(comment)
    .bind(reviewer)
    .bind(verdict)
    .execute(conn)
    .await
    .map(|_| ())
}
