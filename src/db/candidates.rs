//! Tables `candidate` and `followup`.

use serde::Serialize;
use sqlx::{FromRow, PgConnection, PgPool};

/// A row of table `candidate`: a campaign that could be run on a codebase.
#[derive(Debug, Clone, PartialEq, Serialize, FromRow)]
pub struct Candidate {
    /// Row id.
    pub id: i32,
    /// The codebase the campaign would change.
    pub codebase: String,
    /// The campaign (column `suite`).
    #[sqlx(rename = "suite")]
    pub campaign: String,
    /// The command the worker runs.
    pub command: String,
    /// The named publish policy for the resulting changes.
    pub publish_policy: Option<String>,
    /// The change set it belongs to; `None` for the base one.
    pub change_set: Option<String>,
    /// Opaque context of the candidate; past runs that share it lower its estimated success.
    pub context: Option<String>,
    /// The candidate value: what the change is worth; the higher, the sooner it is run.
    pub value: Option<i32>,
    /// The uploader's estimate of the chance that a run succeeds.
    pub success_chance: Option<f64>,
}

/// What an upload writes for one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct NewCandidate {
    /// The codebase the campaign would change.
    pub codebase: String,
    /// The campaign (column `suite`).
    pub campaign: String,
    /// The command the worker runs.
    pub command: String,
    /// The change set it belongs to; `None` for the base one.
    pub change_set: Option<String>,
    /// Opaque context of the candidate.
    pub context: Option<String>,
    /// The candidate value.
    pub value: Option<i32>,
    /// The uploader's estimate of the chance that a run succeeds.
    pub success_chance: Option<f64>,
    /// The named publish policy; an unknown one fails the insert.
    pub publish_policy: Option<String>,
}

/// Every candidate, in id order.
pub async fn list_all(pool: &PgPool) -> Result<Vec<Candidate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, codebase, suite, command, publish_policy, change_set, context, value,
                success_chance
         FROM candidate ORDER BY id",
    )
    .fetch_all(pool)
    .await
}

/// Inserts or updates the candidate for (codebase, campaign, change set); returns its id.
pub async fn upsert(conn: &mut PgConnection, candidate: &NewCandidate) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO candidate
             (suite, command, change_set, context, value, success_chance, publish_policy, codebase)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (codebase, suite, coalesce(change_set, ''::text)) DO UPDATE SET
             context = EXCLUDED.context, value = EXCLUDED.value,
             success_chance = EXCLUDED.success_chance, command = EXCLUDED.command,
             publish_policy = EXCLUDED.publish_policy, codebase = EXCLUDED.codebase
         RETURNING id",
    )
    .bind(&candidate.campaign)
    .bind(&candidate.command)
    .bind(&candidate.change_set)
    .bind(&candidate.context)
    .bind(candidate.value)
    .bind(candidate.success_chance)
    .bind(&candidate.publish_policy)
    .bind(&candidate.codebase)
    .fetch_one(conn)
    .await
}

/// The command of the last effective run of (codebase, campaign) when that run's revision
/// is proposed in an open merge proposal and its command differs from `command`.
pub async fn superseded_proposal_command(
    conn: &mut PgConnection,
    codebase: &str,
    campaign: &str,
    command: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT ler.command
         FROM last_effective_runs ler
         JOIN merge_proposal mp ON ler.revision = mp.revision
         WHERE mp.status = 'open' AND ler.codebase = $1 AND ler.suite = $2
           AND ler.command != $3
         LIMIT 1",
    )
    .bind(codebase)
    .bind(campaign)
    .bind(command)
    .fetch_optional(conn)
    .await
    .map(Option::flatten)
}

/// Records that `candidate` follows up on run `origin`.
pub async fn insert_followup(
    conn: &mut PgConnection,
    origin: &str,
    candidate: i32,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO followup (origin, candidate) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(origin)
        .bind(candidate)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes a candidate, its follow-ups and the queue items of its codebase and campaign.
/// Returns the (campaign, codebase) it had, or `None` if there is no such candidate.
pub async fn delete(
    conn: &mut PgConnection,
    id: i32,
) -> Result<Option<(String, String)>, sqlx::Error> {
    sqlx::query("DELETE FROM followup WHERE candidate = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let deleted: Option<(String, String)> =
        sqlx::query_as("DELETE FROM candidate WHERE id = $1 RETURNING suite::text, codebase")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((campaign, codebase)) = &deleted {
        sqlx::query("DELETE FROM queue WHERE suite = $1 AND codebase = $2")
            .bind(campaign)
            .bind(codebase)
            .execute(&mut *conn)
            .await?;
    }
    Ok(deleted)
}

/// What `do_schedule_regular` reads from a candidate.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct ScheduleFacts {
    /// The candidate value, used when the request gives none.
    pub value: Option<i32>,
    /// The candidate's chance of success, used when the request gives none.
    pub success_chance: Option<f64>,
    /// The candidate's command, used when the request gives none.
    pub command: String,
    /// The candidate's context, used when the request gives none.
    pub context: Option<String>,
}

/// Which candidate a post-run reschedule reads: (codebase, campaign, change set), no change
/// set meaning the base one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateKey<'a> {
    /// The candidate's codebase.
    pub codebase: &'a str,
    /// The candidate's campaign (`suite`).
    pub campaign: &'a str,
    /// The candidate's change set; `None` for the base one.
    pub change_set: Option<&'a str>,
}

/// The candidate for (codebase, campaign, change set); no change set means the base one.
pub async fn schedule_facts(
    conn: &mut PgConnection,
    codebase: &str,
    campaign: &str,
    change_set: Option<&str>,
) -> Result<Option<ScheduleFacts>, sqlx::Error> {
    sqlx::query_as(
        "SELECT value, success_chance, command, context FROM candidate
         WHERE codebase = $1 AND suite = $2 AND coalesce(change_set, '') = $3",
    )
    .bind(codebase)
    .bind(campaign)
    .bind(change_set.unwrap_or(""))
    .fetch_optional(conn)
    .await
}

/// A candidate command for (codebase, campaign), of any change set (Python picks whichever
/// row comes first; this takes the lowest id, so the choice is stable).
pub async fn any_command(
    conn: &mut PgConnection,
    codebase: &str,
    campaign: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT command FROM candidate WHERE codebase = $1 AND suite = $2 ORDER BY id LIMIT 1",
    )
    .bind(codebase)
    .bind(campaign)
    .fetch_optional(conn)
    .await
}

/// A candidate as the bulk scheduler reads it.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct BulkCandidate {
    /// Row id: the order in which the bulk run visits candidates.
    pub id: i32,
    /// The codebase the campaign would change.
    pub codebase: String,
    /// The campaign.
    pub campaign: String,
    /// Opaque context of the candidate.
    pub context: Option<String>,
    /// The candidate value, before the publish modes' values are added.
    pub value: Option<i32>,
    /// The uploader's estimate of the chance that a run succeeds.
    pub success_chance: Option<f64>,
    /// The command the worker runs.
    pub command: String,
    /// The named publish policy; candidates without a known one are not scheduled.
    pub publish_policy: Option<String>,
}

/// The candidates of known codebases, in `candidate.id` order, optionally only of these
/// codebases and this campaign.
pub async fn for_bulk(
    pool: &PgPool,
    codebases: Option<&[String]>,
    campaign: Option<&str>,
) -> Result<Vec<BulkCandidate>, sqlx::Error> {
    sqlx::query_as(
        "SELECT candidate.id, codebase.name AS codebase, candidate.suite::text AS campaign,
                candidate.context, candidate.value, candidate.success_chance,
                candidate.command, candidate.publish_policy
         FROM candidate
         JOIN codebase ON codebase.name = candidate.codebase
         WHERE ($1::text[] IS NULL OR codebase.name = ANY($1))
           AND ($2::text IS NULL OR candidate.suite = $2)
         ORDER BY candidate.id",
    )
    .bind(codebases)
    .bind(campaign)
    .fetch_all(pool)
    .await
}

/// The base candidates (no change set): (codebase, campaign, value, context).
pub async fn base_for_bulk(
    pool: &PgPool,
    codebases: Option<&[String]>,
    campaign: Option<&str>,
) -> Result<Vec<(String, String, Option<i32>, Option<String>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT codebase, suite::text, value, context FROM candidate
         WHERE coalesce(change_set, '') = ''
           AND ($1::text[] IS NULL OR codebase = ANY($1))
           AND ($2::text IS NULL OR suite = $2)",
    )
    .bind(codebases)
    .bind(campaign)
    .fetch_all(pool)
    .await
}
