//! Table `worker`: the credentials of workers that use the public app.

use sqlx::PgPool;

/// Whether `login` names a worker whose stored (pgcrypto `crypt`) password is `password`.
pub async fn password_matches(
    pool: &PgPool,
    login: &str,
    password: &str,
) -> Result<bool, sqlx::Error> {
    let known: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM worker WHERE name = $1 AND password = crypt($2, password)",
    )
    .bind(login)
    .bind(password)
    .fetch_optional(pool)
    .await?;
    Ok(known.is_some())
}
