//! Table `run`, aggregated for the bulk scheduler: per (codebase, campaign) the facts the
//! estimator needs, read in a few set queries instead of one query per candidate.

use chrono::NaiveDateTime;
use sqlx::PgPool;
use sqlx::postgres::types::PgInterval;

use crate::schedule::estimate::UNSATISFIED_DEPENDENCIES;

/// The runs the estimator counts: non-transient, with both times, and not a worker failure
/// that started a day or more before `now` ($3).
const COUNTED_RUN: &str = "failure_transient IS NOT TRUE
     AND start_time IS NOT NULL AND finish_time IS NOT NULL
     AND NOT (result_code = 'worker-failure' AND start_time <= $3 - interval '1 day')";

/// Which runs a query reads: optionally only these codebases and this campaign.
#[derive(Debug, Clone, Copy)]
pub struct RunFilter<'a> {
    /// Only runs of these codebases; every codebase when `None`.
    pub codebases: Option<&'a [String]>,
    /// Only runs of this campaign; every campaign when `None`.
    pub campaign: Option<&'a str>,
    /// The estimator's "now" (worker failures older than a day before it are not counted).
    pub now: NaiveDateTime,
}

/// One (codebase, campaign): the counted runs' durations in seconds newest first, the
/// counted successes, and the codebase's average duration over all campaigns.
pub type PairHistoryRow = (String, String, Option<Vec<f64>>, i64, Option<PgInterval>);

/// An unsatisfied-dependencies run that counts: (codebase, campaign, context, instigated
/// context, failure details).
pub type DependencyRunRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<serde_json::Value>,
);

/// The histories of the codebases below `pivot` (`below`) or from it on; every codebase when
/// `pivot` is `None` and `below` is true, none when it is false. Durations are float seconds,
/// which PostgreSQL rounds exactly as Python's `total_seconds()`; the codebase average is
/// `sum / count`, as `AVG(interval)` computes it.
pub async fn pair_histories(
    pool: &PgPool,
    filter: RunFilter<'_>,
    pivot: Option<&str>,
    below: bool,
) -> Result<Vec<PairHistoryRow>, sqlx::Error> {
    let statement = format!(
        "SELECT run.codebase, run.suite::text,
                array_agg(extract(epoch FROM finish_time - start_time)::float8
                          ORDER BY start_time DESC) FILTER (WHERE counted),
                count(*) FILTER (WHERE counted AND result_code = 'success'),
                sum(sum(finish_time - start_time)) OVER codebase
                  / nullif(sum(count(finish_time - start_time)) OVER codebase, 0)::float8
         FROM (SELECT *, ({COUNTED_RUN}) AS counted FROM run
               WHERE failure_transient IS NOT TRUE
                 AND ($1::text[] IS NULL OR codebase = ANY($1))
                 AND ($2::text IS NULL OR suite = $2)
                 AND CASE WHEN $4::text IS NULL THEN $5 ELSE (codebase < $4) = $5 END) AS run
         GROUP BY run.codebase, run.suite
         WINDOW codebase AS (PARTITION BY run.codebase)"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(filter.codebases)
        .bind(filter.campaign)
        .bind(filter.now)
        .bind(pivot)
        .bind(below)
        .fetch_all(pool)
        .await
}

/// The counted unsatisfied-dependencies runs.
pub async fn dependency_runs(
    pool: &PgPool,
    filter: RunFilter<'_>,
) -> Result<Vec<DependencyRunRow>, sqlx::Error> {
    let statement = format!(
        "SELECT codebase, suite::text, context, instigated_context, failure_details::jsonb
         FROM run
         WHERE result_code = '{UNSATISFIED_DEPENDENCIES}' AND {COUNTED_RUN}
           AND ($1::text[] IS NULL OR codebase = ANY($1))
           AND ($2::text IS NULL OR suite = $2)"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(filter.codebases)
        .bind(filter.campaign)
        .bind(filter.now)
        .fetch_all(pool)
        .await
}

/// Of the (codebase, campaign, context) triples given as three parallel lists, those some
/// counted run other than an unsatisfied-dependencies one shares (by context or instigated
/// context).
pub async fn shared_contexts(
    pool: &PgPool,
    now: NaiveDateTime,
    codebases: &[&str],
    campaigns: &[&str],
    contexts: &[&str],
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let statement = format!(
        "SELECT w.codebase, w.campaign, w.context
         FROM unnest($1::text[], $2::text[], $4::text[]) AS w(codebase, campaign, context)
         WHERE EXISTS (
           SELECT 1 FROM run
           WHERE run.codebase = w.codebase AND run.suite = w.campaign
             AND (run.context = w.context OR run.instigated_context = w.context)
             AND result_code <> '{UNSATISFIED_DEPENDENCIES}' AND {COUNTED_RUN})"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(codebases)
        .bind(campaigns)
        .bind(now)
        .bind(contexts)
        .fetch_all(pool)
        .await
}

/// What a duration average is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AverageBy {
    /// Per codebase, over all campaigns.
    Codebase,
    /// Per campaign (the run table's `suite`), over all codebases.
    Campaign,
}

/// Non-transient `AVG(finish_time - start_time)` per codebase or campaign among `keys`.
pub async fn average_durations(
    pool: &PgPool,
    by: AverageBy,
    keys: &[&str],
) -> Result<Vec<(String, Option<PgInterval>)>, sqlx::Error> {
    let column = match by {
        AverageBy::Codebase => "codebase",
        AverageBy::Campaign => "suite",
    };
    let statement = format!(
        "SELECT {column}::text, AVG(finish_time - start_time) FROM run
         WHERE failure_transient IS NOT TRUE AND {column} = ANY($1::text[])
         GROUP BY {column}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(statement))
        .bind(keys)
        .fetch_all(pool)
        .await
}
