//! Table `codebase`.

use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};

/// A codebase as `GET /codebases` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct Codebase {
    /// The codebase's name, the key that candidates, queue items and runs refer to.
    pub name: Option<String>,
    /// The branch's URL, in breezy form (it may carry a `,branch=` segment parameter).
    pub branch_url: Option<String>,
    /// The repository's URL.
    pub url: Option<String>,
    /// The branch's name within the repository.
    pub branch: Option<String>,
    /// The directory within the branch that the codebase lives in.
    pub subpath: Option<String>,
    /// `git` or `bzr`.
    pub vcs_type: Option<String>,
    /// Where people browse the branch.
    pub web_url: Option<String>,
    /// The branch's tip revision when it was last looked at.
    pub vcs_last_revision: Option<String>,
    /// How much the codebase is worth working on; scheduling normalises it against the largest.
    pub value: Option<i32>,
}

/// Every codebase, by name.
pub async fn list_all(pool: &PgPool) -> Result<Vec<Codebase>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, branch_url, url, branch, subpath, vcs_type::text AS vcs_type,
                web_url, vcs_last_revision, value
         FROM codebase ORDER BY name",
    )
    .fetch_all(pool)
    .await
}

/// Inserts the codebases, or overwrites every column but the name of those whose name
/// exists, in one statement. Names must be unique within `codebases`.
pub async fn upsert_many(
    conn: &mut PgConnection,
    codebases: &[Codebase],
) -> Result<u64, sqlx::Error> {
    fn column<T: Clone>(codebases: &[Codebase], get: impl Fn(&Codebase) -> T) -> Vec<T> {
        codebases.iter().map(get).collect()
    }
    let result = sqlx::query(
        "INSERT INTO codebase
             (name, branch_url, url, branch, subpath, vcs_type, vcs_last_revision, value, web_url)
         SELECT name, branch_url, url, branch, subpath, vcs_type::vcs_type, vcs_last_revision,
                value, web_url
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::int4[], $9::text[])
              AS u(name, branch_url, url, branch, subpath, vcs_type, vcs_last_revision, value,
                   web_url)
         ON CONFLICT (name) DO UPDATE SET
             branch_url = EXCLUDED.branch_url, subpath = EXCLUDED.subpath,
             vcs_type = EXCLUDED.vcs_type, vcs_last_revision = EXCLUDED.vcs_last_revision,
             value = EXCLUDED.value, url = EXCLUDED.url, branch = EXCLUDED.branch,
             web_url = EXCLUDED.web_url",
    )
    .bind(column(codebases, |c| c.name.clone()))
    .bind(column(codebases, |c| c.branch_url.clone()))
    .bind(column(codebases, |c| c.url.clone()))
    .bind(column(codebases, |c| c.branch.clone()))
    .bind(column(codebases, |c| c.subpath.clone()))
    .bind(column(codebases, |c| c.vcs_type.clone()))
    .bind(column(codebases, |c| c.vcs_last_revision.clone()))
    .bind(column(codebases, |c| c.value))
    .bind(column(codebases, |c| c.web_url.clone()))
    .execute(conn)
    .await?;
    Ok(result.rows_affected())
}

/// The single path's normalisation of a codebase row's `value` by the largest, `top`:
/// `least(value / top, 1)`, with NULL value or NULL maximum meaning 1.0, computed in SQL
/// `numeric` as Python does (so the float is the same to the last bit). A zero `top` is a
/// division by zero.
pub(crate) const NORMALIZED_VALUE: &str = "coalesce(least(1.0 * value / top, 1.0), 1.0)::float8";

/// The single-path normalised value ([`NORMALIZED_VALUE`]). `Ok(None)`: no such codebase. A
/// zero maximum is reported as `Err` by PostgreSQL (division by zero).
pub async fn normalized_value(
    conn: &mut PgConnection,
    codebase: &str,
) -> Result<Option<f64>, sqlx::Error> {
    let sql = format!(
        "SELECT {NORMALIZED_VALUE}
         FROM codebase, (SELECT max(value) AS top FROM codebase) AS largest WHERE name = $1"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(codebase)
        .fetch_optional(conn)
        .await
}

/// Every named codebase's value (NULL where it has none).
pub async fn values(pool: &PgPool) -> Result<Vec<(String, Option<i32>)>, sqlx::Error> {
    sqlx::query_as("SELECT name, value FROM codebase WHERE name IS NOT NULL")
        .fetch_all(pool)
        .await
}
