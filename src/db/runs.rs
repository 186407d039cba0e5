//! Table `run`.

use sqlx::PgPool;

/// The identity and publish status of a stored run.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunSummary {
    /// The codebase the run worked on.
    pub codebase: String,
    /// The campaign the run belongs to (the table's `suite`).
    pub campaign: String,
    /// Where the run is in review and publishing (`unknown`, `approved`, `rejected`, ...).
    pub publish_status: String,
}

/// The run `id`'s summary, `None` if there is no such run.
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

/// The highest Debian version built for this codebase and build distribution.
pub async fn last_build_version(
    conn: &mut sqlx::PgConnection,
    codebase: &str,
    distribution: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(debian_build.version)::text FROM run
         JOIN debian_build ON debian_build.run_id = run.id
         WHERE run.codebase = $1 AND debian_build.distribution = $2",
    )
    .bind(codebase)
    .bind(distribution)
    .fetch_one(conn)
    .await
}

/// Creates the change set if it does not exist.
pub async fn ensure_change_set(
    conn: &mut sqlx::PgConnection,
    id: &str,
    campaign: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO change_set (id, campaign) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(id)
        .bind(campaign)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every column of a `run` row the runner writes.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    /// The run id, also its log id.
    pub id: &'a str,
    /// The queue command the worker ran.
    pub command: &'a str,
    /// What happened, for people.
    pub description: Option<&'a str>,
    /// `success`, or the code of what went wrong.
    pub result_code: &'a str,
    /// When the work started.
    pub start_time: chrono::NaiveDateTime,
    /// When the work ended.
    pub finish_time: chrono::NaiveDateTime,
    /// The queue item's context, which the run was scheduled with.
    pub instigated_context: Option<String>,
    /// The context the worker reported, which a later run is compared against.
    pub context: Option<&'a str>,
    /// The main branch's tip the run started from.
    pub main_branch_revision: Option<&'a str>,
    /// The revision the run produced.
    pub revision: Option<&'a str>,
    /// The codemod's result, when it reported anything.
    pub result: Option<&'a serde_json::Value>,
    /// The campaign, written to the `suite` column.
    pub campaign: &'a str,
    /// The main branch's VCS (`git`, `bzr`).
    pub vcs_type: Option<&'a str>,
    /// The main branch's URL.
    pub branch_url: Option<&'a str>,
    /// The names of the run's stored logs.
    pub logfilenames: &'a [String],
    /// The value of the changes, as the worker reported it.
    pub value: Option<i64>,
    /// The worker that ran it; see `worker_must_be_registered`.
    pub worker: Option<&'a str>,
    /// Whether a worker name missing from the `worker` table fails the foreign key (as the
    /// Python `store_run` does) rather than being stored as NULL (the runner's own finishes:
    /// internal-app workers name themselves).
    pub worker_must_be_registered: bool,
    /// A link to the worker's own page for the run.
    pub worker_link: Option<&'a str>,
    /// The tags the run created: their names and, in the same order, their revisions.
    pub tags: Option<(Vec<String>, Vec<String>)>,
    /// The directory within the branch that the codebase lives in.
    pub subpath: Option<&'a str>,
    /// The stage the run failed in, as the worker reported it.
    pub failure_stage: Option<&'a str>,
    /// Details of the failure, as the worker reported them.
    pub failure_details: Option<&'a serde_json::Value>,
    /// The branch the changes are meant to be merged into.
    pub target_branch_url: Option<&'a str>,
    /// Whether the failure is transient, so that trying again may succeed.
    pub failure_transient: Option<bool>,
    /// The earlier run whose result branches this run built on.
    pub resume_from: Option<&'a str>,
    /// The change set the run belongs to.
    pub change_set: &'a str,
    /// Whether the same statement creates `change_set` (for `campaign`) when it does not
    /// exist yet: a run of no change set gets one of its own, named after the run.
    pub create_change_set: bool,
    /// The codebase the run worked on.
    pub codebase: &'a str,
    /// The queue item the run was for, removed by the statement that stores the run.
    pub queue_id: Option<i64>,
    /// The PostgreSQL store's claim (`runner_active_run` row) to delete in the same
    /// statement, so that storing the run and releasing it cost one round trip.
    pub release_claim: Option<&'a str>,
    /// The candidate whose scheduling facts the same statement reads (a worker's finish,
    /// which reschedules it in the same transaction), so that the read costs no round trip.
    pub read_candidate: Option<super::candidates::CandidateKey<'a>>,
}

/// What storing a run returned.
#[derive(Debug)]
pub struct Inserted {
    /// The worker name as stored: `None` when the run named none, or a worker that is not
    /// registered and need not be.
    pub worker: Option<String>,
    /// The released claim's JSON, when `release_claim` named a registered one.
    pub released_claim: Option<String>,
    /// What the reschedule of the candidate `read_candidate` named needs, when it exists.
    pub requeue: Option<RequeueRead>,
}

/// What a post-run reschedule reads, as a read after the statement that stored the run
/// would see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequeueRead {
    /// The candidate's scheduling facts.
    pub candidate: super::candidates::ScheduleFacts,
    /// The pair's non-transient runs, newest first, the stored one among them.
    pub history: Vec<HistoryRow>,
    /// The codebase's normalised value ([`super::codebases::normalized_value`]).
    pub normalized_value: NormalizedValue,
}

/// A codebase's value relative to the largest, as read with a stored run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NormalizedValue {
    /// The value, in `(.., 1]`.
    Value(f64),
    /// No such codebase.
    NoCodebase,
    /// The largest value is 0: values cannot be normalised (a division by zero).
    ZeroMaximum,
}

/// What the run insert returns. The candidate's columns and the history's arrays are NULL
/// when no candidate was read (or it is gone).
#[derive(sqlx::FromRow)]
struct InsertedRow {
    worker: Option<String>,
    released_claim: Option<String>,
    candidate_value: Option<i32>,
    candidate_success_chance: Option<f64>,
    candidate_command: Option<String>,
    candidate_context: Option<String>,
    history_result_codes: Option<Vec<String>>,
    history_instigated_contexts: Option<Vec<Option<String>>>,
    history_contexts: Option<Vec<Option<String>>>,
    history_failure_details: Option<Vec<Option<String>>>,
    history_durations: Option<Vec<Option<sqlx::postgres::types::PgInterval>>>,
    history_start_times: Option<Vec<Option<chrono::NaiveDateTime>>>,
    codebase_normalized_value: Option<f64>,
    codebase_zero_maximum: Option<bool>,
}

/// The candidate's read: its facts, and the pair's history and codebase value the
/// reschedule needs (only read when the candidate exists). The statement's snapshot predates
/// the row it inserted; a read after it would see that row in the history.
fn read_candidate_ctes() -> String {
    let normalized = super::codebases::NORMALIZED_VALUE;
    format!(
        ", requeue AS (
         SELECT value, success_chance, command, context FROM candidate
         WHERE codebase = $32 AND suite = $33 AND coalesce(change_set, '') = $34
         LIMIT 1),
     pair_history AS (
         SELECT array_agg(result_code) AS result_codes,
                array_agg(instigated_context) AS instigated_contexts,
                array_agg(context) AS contexts,
                array_agg(failure_details::text) AS failure_details,
                array_agg(finish_time - start_time) AS durations,
                array_agg(start_time) AS start_times
         FROM (SELECT result_code, instigated_context, context, failure_details, finish_time,
                      start_time
               FROM run
               WHERE codebase = $32 AND suite = $33 AND failure_transient IS NOT TRUE
                 AND EXISTS (SELECT FROM requeue)
               ORDER BY start_time DESC) AS pair_runs),
     codebase_value AS (
         SELECT value IS NOT NULL AND top = 0 AS zero_maximum,
                CASE WHEN value IS NOT NULL AND top = 0 THEN NULL ELSE {normalized} END
                    AS normalized
         FROM codebase, (SELECT max(value) AS top FROM codebase) AS largest
         WHERE name = $32 AND EXISTS (SELECT FROM requeue))"
    )
}

/// The columns [`read_candidate_ctes`] adds to the statement's result.
const CANDIDATE_COLUMNS: &str = "(SELECT value FROM requeue) AS candidate_value,
         (SELECT success_chance FROM requeue) AS candidate_success_chance,
         (SELECT command FROM requeue) AS candidate_command,
         (SELECT context FROM requeue) AS candidate_context,
         (SELECT result_codes FROM pair_history) AS history_result_codes,
         (SELECT instigated_contexts FROM pair_history) AS history_instigated_contexts,
         (SELECT contexts FROM pair_history) AS history_contexts,
         (SELECT failure_details FROM pair_history) AS history_failure_details,
         (SELECT durations FROM pair_history) AS history_durations,
         (SELECT start_times FROM pair_history) AS history_start_times,
         (SELECT normalized FROM codebase_value) AS codebase_normalized_value,
         (SELECT zero_maximum FROM codebase_value) AS codebase_zero_maximum";

/// The same columns when no candidate is read.
const NO_CANDIDATE_COLUMNS: &str = "NULL::int4 AS candidate_value,
         NULL::float8 AS candidate_success_chance, NULL::text AS candidate_command,
         NULL::text AS candidate_context, NULL::text[] AS history_result_codes,
         NULL::text[] AS history_instigated_contexts, NULL::text[] AS history_contexts,
         NULL::text[] AS history_failure_details, NULL::interval[] AS history_durations,
         NULL::timestamp[] AS history_start_times, NULL::float8 AS codebase_normalized_value,
         NULL::bool AS codebase_zero_maximum";

/// The run insert's text, with or without the claim's release and the candidate's read.
fn insert_statement(release_claim: bool, read_candidate: bool) -> String {
    // The claim's table is the runner's own: a statement that does not release one does not
    // name it, so storing a run (the Python face's `store_run`) works on the shared schema
    // alone.
    // The claim goes only after the queue row: its condition reads the deleted row, which
    // makes the queue row's deletion (and any wait for its lock) come first. The other way
    // round deadlocks with an assigner whose snapshot predates the claim: it holds the queue
    // row (locked after the claiming transaction let go of it) and its own claim of the
    // item waits on this transaction's deletion of the claim, while this one waits for the
    // row. In this order the assigner meets the claim still in place, gives up the row, and
    // this statement goes on.
    let (release_ctes, released_claim) = if release_claim {
        (
            ", released_claim AS (
                 DELETE FROM runner_active_run
                 WHERE id = $31 AND queue_id = coalesce((SELECT id FROM released), queue_id)
                 RETURNING data::text)",
            "(SELECT data FROM released_claim)",
        )
    } else {
        ("", "NULL::text")
    };
    let (read_ctes, candidate) = if read_candidate {
        (read_candidate_ctes(), CANDIDATE_COLUMNS)
    } else {
        (String::new(), NO_CANDIDATE_COLUMNS)
    };
    // The change set created here satisfies the run's foreign key: the key is checked at the
    // end of the statement, when every part of it has been applied.
    format!(
        "WITH released AS (DELETE FROM queue WHERE id = $29 RETURNING id),
              own_change_set AS (
                  INSERT INTO change_set (id, campaign) SELECT $27, $12 WHERE $35::bool
                  ON CONFLICT DO NOTHING){release_ctes}{read_ctes}
         INSERT INTO run (
             id, command, description, result_code, start_time, finish_time, instigated_context,
             context, main_branch_revision, revision, result, suite, vcs_type, branch_url,
             logfilenames, value, worker, worker_link, result_tags, subpath, failure_stage,
             failure_details, target_branch_url, failure_transient, resume_from, change_set,
             codebase)
         VALUES (
             $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::json, $12, $13::vcs_type, $14, $15,
             $16,
             CASE WHEN $30 THEN $17 ELSE (SELECT name FROM worker WHERE name = $17) END, $18,
             CASE WHEN $19::text[] IS NULL THEN NULL ELSE
                 ARRAY(SELECT ROW(n, r)::result_tag FROM unnest($19::text[], $20::text[]) AS t(n, r))
             END,
             $21, $22, $23::json, $24, $25, $26, $27, $28)
         RETURNING worker, {released_claim} AS released_claim, {candidate}"
    )
}

/// [`insert_statement`]'s four texts, built once: `[release_claim][read_candidate]`.
static INSERT_STATEMENTS: std::sync::LazyLock<[[String; 2]; 2]> = std::sync::LazyLock::new(|| {
    [false, true].map(|release| [false, true].map(|read| insert_statement(release, read)))
});

/// Inserts the `run` row, deletes its queue item, releases its claim and reads what the
/// candidate's reschedule needs when asked, in one statement (one round trip in the finish's
/// transaction).
pub async fn insert(
    conn: &mut sqlx::PgConnection,
    run: &NewRun<'_>,
) -> Result<Inserted, sqlx::Error> {
    let (tag_names, tag_revisions) = match &run.tags {
        Some((names, revisions)) => (Some(names.clone()), Some(revisions.clone())),
        None => (None, None),
    };
    let sql = INSERT_STATEMENTS[usize::from(run.release_claim.is_some())]
        [usize::from(run.read_candidate.is_some())]
    .as_str();
    let key = run.read_candidate;
    let row: InsertedRow = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(run.id)
        .bind(run.command)
        .bind(run.description)
        .bind(run.result_code)
        .bind(run.start_time)
        .bind(run.finish_time)
        .bind(&run.instigated_context)
        .bind(run.context)
        .bind(run.main_branch_revision)
        .bind(run.revision)
        .bind(run.result.map(std::string::ToString::to_string))
        .bind(run.campaign)
        .bind(run.vcs_type)
        .bind(run.branch_url)
        .bind(run.logfilenames)
        .bind(run.value.and_then(|v| i32::try_from(v).ok()))
        .bind(run.worker)
        .bind(run.worker_link)
        .bind(tag_names)
        .bind(tag_revisions)
        .bind(run.subpath)
        .bind(run.failure_stage)
        .bind(run.failure_details.map(std::string::ToString::to_string))
        .bind(run.target_branch_url)
        .bind(run.failure_transient)
        .bind(run.resume_from)
        .bind(run.change_set)
        .bind(run.codebase)
        .bind(run.queue_id)
        .bind(run.worker_must_be_registered)
        .bind(run.release_claim)
        .bind(key.map(|k| k.codebase))
        .bind(key.map(|k| k.campaign))
        .bind(key.map(|k| k.change_set.unwrap_or("")))
        .bind(run.create_change_set)
        .fetch_one(conn)
        .await?;
    let requeue = key.and_then(|key| requeue_read(&row, run, key));
    Ok(Inserted {
        worker: row.worker,
        released_claim: row.released_claim,
        requeue,
    })
}

/// The reschedule's read out of the statement's row, the stored run merged into the history
/// where the pair is the run's own; `None` when the candidate is gone.
fn requeue_read(
    row: &InsertedRow,
    run: &NewRun<'_>,
    key: super::candidates::CandidateKey<'_>,
) -> Option<RequeueRead> {
    // `candidate.command` is NOT NULL: a NULL command says there is no such candidate.
    let command = row.candidate_command.clone()?;
    let mut history = history_rows(row);
    if run.failure_transient != Some(true)
        && run.codebase == key.codebase
        && run.campaign == key.campaign
    {
        let stored = HistoryRow {
            result_code: run.result_code.to_string(),
            instigated_context: run.instigated_context.clone(),
            context: run.context.map(str::to_string),
            failure_details: run.failure_details.cloned(),
            duration: stored_duration(run.start_time, run.finish_time),
            start_time: Some(run.start_time),
        };
        // Newest first, as `ORDER BY start_time DESC` (NULLs first) gives them.
        let at = history
            .iter()
            .position(|past| past.start_time.is_some_and(|t| t <= run.start_time))
            .unwrap_or(history.len());
        history.insert(at, stored);
    }
    let normalized_value = match (row.codebase_zero_maximum, row.codebase_normalized_value) {
        (Some(true), _) => NormalizedValue::ZeroMaximum,
        (Some(false), Some(value)) => NormalizedValue::Value(value),
        _ => NormalizedValue::NoCodebase,
    };
    Some(RequeueRead {
        candidate: super::candidates::ScheduleFacts {
            value: row.candidate_value,
            success_chance: row.candidate_success_chance,
            command,
            context: row.candidate_context.clone(),
        },
        history,
        normalized_value,
    })
}

/// `finish_time - start_time` as PostgreSQL computes it from the stored values: both
/// timestamps as sqlx sends them (whole microseconds since 2000), the difference in days and
/// the rest.
fn stored_duration(
    start: chrono::NaiveDateTime,
    finish: chrono::NaiveDateTime,
) -> Option<sqlx::postgres::types::PgInterval> {
    const DAY: i64 = 86_400_000_000;
    let epoch = chrono::NaiveDate::from_ymd_opt(2000, 1, 1)?.and_hms_opt(0, 0, 0)?;
    let micros = |t: chrono::NaiveDateTime| (t - epoch).num_microseconds();
    let difference = micros(finish)? - micros(start)?;
    Some(sqlx::postgres::types::PgInterval {
        months: 0,
        days: i32::try_from(difference / DAY).ok()?,
        microseconds: difference % DAY,
    })
}

/// The history's arrays as rows.
fn history_rows(row: &InsertedRow) -> Vec<HistoryRow> {
    let Some(codes) = &row.history_result_codes else {
        return Vec::new();
    };
    let nth = |column: &Option<Vec<Option<String>>>, i: usize| {
        column.as_ref().and_then(|c| c.get(i).cloned().flatten())
    };
    codes
        .iter()
        .enumerate()
        .map(|(i, code)| HistoryRow {
            result_code: code.clone(),
            instigated_context: nth(&row.history_instigated_contexts, i),
            context: nth(&row.history_contexts, i),
            failure_details: nth(&row.history_failure_details, i)
                .as_deref()
                .and_then(failure_details),
            duration: row
                .history_durations
                .as_ref()
                .and_then(|c| c.get(i).copied().flatten()),
            start_time: row
                .history_start_times
                .as_ref()
                .and_then(|c| c.get(i).copied().flatten()),
        })
        .collect()
}

/// One `new_result_branch` row per result branch.
pub async fn insert_result_branches(
    conn: &mut sqlx::PgConnection,
    run_id: &str,
    branches: &[crate::models::Branch],
) -> Result<(), sqlx::Error> {
    if branches.is_empty() {
        return Ok(());
    }
    let column = |get: fn(&crate::models::Branch) -> Option<String>| -> Vec<Option<String>> {
        branches.iter().map(get).collect()
    };
    sqlx::query(
        "INSERT INTO new_result_branch (run_id, role, remote_name, base_revision, revision)
         SELECT $1, role, remote_name, base_revision, revision
         FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
              AS b(role, remote_name, base_revision, revision)",
    )
    .bind(run_id)
    .bind(column(|b| Some(b.role.clone())))
    .bind(column(|b| b.remote_name.clone()))
    .bind(column(|b| b.base_revision.clone()))
    .bind(column(|b| b.revision.clone()))
    .execute(conn)
    .await?;
    Ok(())
}

/// The `debian_build` row of a Debian build with a version.
pub async fn insert_debian_build(
    conn: &mut sqlx::PgConnection,
    run_id: &str,
    result: &crate::models::DebianResult,
) -> Result<(), sqlx::Error> {
    let Some(version) = result.build_version.as_deref().filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    sqlx::query(
        "INSERT INTO debian_build (run_id, source, version, distribution, lintian_result, binary_packages)
         VALUES ($1, $2, $3::debversion, $4, $5::json, $6)",
    )
    .bind(run_id)
    .bind(result.source.as_deref().unwrap_or_default())
    .bind(version)
    .bind(result.build_distribution.as_deref().unwrap_or_default())
    .bind((!result.lintian_result.is_null()).then(|| result.lintian_result.to_string()))
    .bind(&result.binary_packages)
    .execute(conn)
    .await?;
    Ok(())
}

/// The run a resume branch's tip came from, as `check_resume_result` reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeCandidate {
    /// The run id.
    pub id: String,
    /// The codemod's result.
    pub result: Option<serde_json::Value>,
    /// Where the run is in review and publishing.
    pub publish_status: String,
    /// Its result branches, ordered by role.
    pub branches: Vec<ResultBranchRow>,
}

/// A `new_result_branch` row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ResultBranchRow {
    /// The branch's role in the result (e.g. `main`).
    pub role: String,
    /// The branch's name, as the worker reported it.
    pub remote_name: Option<String>,
    /// The revision the run started the branch from.
    pub base_revision: Option<String>,
    /// The revision the run left the branch at.
    pub revision: Option<String>,
}

/// The newest successful run of `campaign` whose revision is `revision` (any codebase, as the
/// Python query), with its result branches ordered by role.
pub async fn resume_candidate(
    conn: &mut sqlx::PgConnection,
    campaign: &str,
    revision: &str,
) -> Result<Option<ResumeCandidate>, sqlx::Error> {
    let row: Option<(String, Option<serde_json::Value>, String)> = sqlx::query_as(
        "SELECT id, result, publish_status::text FROM run
         WHERE suite = $1 AND revision = $2 AND result_code = 'success'
         ORDER BY finish_time DESC LIMIT 1",
    )
    .bind(campaign)
    .bind(revision)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((id, result, publish_status)) = row else {
        return Ok(None);
    };
    let branches = sqlx::query_as(
        "SELECT role, remote_name, base_revision, revision FROM new_result_branch
         WHERE run_id = $1 ORDER BY role",
    )
    .bind(&id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Some(ResumeCandidate {
        id,
        result,
        publish_status,
        branches,
    }))
}

/// Whether a run of `codebase` in `campaign` that was to resume `run_id` ended with the worker
/// unable to open the resume branch.
pub async fn resume_reported_missing(
    conn: &mut sqlx::PgConnection,
    codebase: &str,
    campaign: &str,
    run_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM run
                        WHERE codebase = $1 AND suite = $2 AND resume_from = $3
                          AND result_code = 'worker-resume-branch-missing')",
    )
    .bind(codebase)
    .bind(campaign)
    .bind(run_id)
    .fetch_one(conn)
    .await
}

/// A non-transient run of a codebase in a campaign, for the estimator.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// `success`, or the code of what went wrong.
    pub result_code: String,
    /// The queue item's context, which the run was scheduled with.
    pub instigated_context: Option<String>,
    /// The context the worker reported.
    pub context: Option<String>,
    /// Details of the failure, as the worker reported them.
    pub failure_details: Option<serde_json::Value>,
    /// `finish_time - start_time`.
    pub duration: Option<sqlx::postgres::types::PgInterval>,
    /// When the run started.
    pub start_time: Option<chrono::NaiveDateTime>,
}

/// The runs the estimator counts from, newest first.
pub async fn history(
    conn: &mut sqlx::PgConnection,
    codebase: &str,
    campaign: &str,
) -> Result<Vec<HistoryRow>, sqlx::Error> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<sqlx::postgres::types::PgInterval>,
        Option<chrono::NaiveDateTime>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT result_code, instigated_context, context, failure_details::text,
                finish_time - start_time AS duration, start_time
         FROM run
         WHERE codebase = $1 AND suite = $2 AND failure_transient IS NOT TRUE
         ORDER BY start_time DESC",
    )
    .bind(codebase)
    .bind(campaign)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(result_code, instigated_context, context, details, duration, start_time)| {
                HistoryRow {
                    result_code,
                    instigated_context,
                    context,
                    failure_details: details.as_deref().and_then(failure_details),
                    duration,
                    start_time,
                }
            },
        )
        .collect())
}

/// A history row's `failure_details`. What serde cannot read (a number beyond `f64`, which
/// PostgreSQL's `json` accepts and Python reads as infinity) is taken as none: the estimator
/// only looks in it for dependency relations, and one such run must not stop a reschedule.
fn failure_details(text: &str) -> Option<serde_json::Value> {
    serde_json::from_str(text)
        .inspect_err(
            |error| tracing::warn!(%error, "unreadable failure_details in a run's history"),
        )
        .ok()
}

/// `AVG(finish_time - start_time)` over non-transient runs, of a codebase, a campaign, or
/// both (whichever are given).
pub async fn average_duration(
    conn: &mut sqlx::PgConnection,
    codebase: Option<&str>,
    campaign: Option<&str>,
) -> Result<Option<sqlx::postgres::types::PgInterval>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT AVG(finish_time - start_time) FROM run
         WHERE failure_transient IS NOT TRUE
           AND ($1::text IS NULL OR codebase = $1)
           AND ($2::text IS NULL OR suite = $2)",
    )
    .bind(codebase)
    .bind(campaign)
    .fetch_one(conn)
    .await
}

/// The campaign, codebase and command of a stored run (`POST /schedule` by run id).
pub async fn schedule_identity(
    conn: &mut sqlx::PgConnection,
    id: &str,
) -> Result<Option<(String, String, Option<String>)>, sqlx::Error> {
    sqlx::query_as("SELECT suite::text, codebase, command FROM run WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The main branch revision and codebase of a stored run (`POST /schedule-control`).
pub async fn control_identity(
    conn: &mut sqlx::PgConnection,
    id: &str,
) -> Result<Option<(Option<String>, String)>, sqlx::Error> {
    sqlx::query_as("SELECT main_branch_revision, codebase FROM run WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}
