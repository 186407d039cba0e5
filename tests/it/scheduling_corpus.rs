//! The scheduling exactness corpus: every file in `tests/scheduling_corpus/` is a scenario
//! (codebases, publish policies, candidates, runs, the queue before, a fixed "now") with a
//! list of scheduling calls and the results and queue rows the Python reference gave for
//! them (see `tests/scheduling_corpus/README.md`). Each scenario runs on its own real
//! database through the functions the HTTP routes and the bulk command call.

use crate::common;

use std::path::{Path, PathBuf};

use janitor_runner::error::Error;
use janitor_runner::schedule::bulk::{BulkOptions, bulk_schedule, snapshot_queue};
use janitor_runner::schedule::engine::{
    ControlRequest, RegularRequest, ScheduleError, ScheduleRequest, do_schedule,
    do_schedule_control, do_schedule_regular,
};
use janitor_runner::schedule::{Micros, timedelta_from_seconds};
use serde_json::{Value, json};
use sqlx::PgConnection;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scheduling_corpus")
}

fn scenarios() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_string)
}

fn int(value: &Value, key: &str) -> Option<i64> {
    value.get(key).and_then(Value::as_i64)
}

async fn execute(conn: &mut PgConnection, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Loads a scenario's `setup` as the reference harness did.
async fn set_up(conn: &mut PgConnection, setup: &Value) {
    let empty = Vec::new();
    let list = |key: &str| setup.get(key).and_then(Value::as_array).unwrap_or(&empty);
    for codebase in list("codebases") {
        sqlx::query("INSERT INTO codebase (name, value) VALUES ($1, $2)")
            .bind(codebase[0].as_str())
            .bind(codebase[1].as_i64().map(|v| v as i32))
            .execute(&mut *conn)
            .await
            .expect("codebase");
    }
    if let Some(policies) = setup.get("policies").and_then(Value::as_object) {
        for (name, modes) in policies {
            let modes: Option<Vec<String>> = modes.as_array().map(|modes| {
                modes
                    .iter()
                    .map(|m| m.as_str().expect("mode").to_string())
                    .collect()
            });
            sqlx::query(
                "INSERT INTO named_publish_policy (name, per_branch_policy)
                 SELECT $1, CASE WHEN $2::text[] IS NOT NULL THEN coalesce(
                   (SELECT array_agg(ROW('role' || n, m::publish_mode, NULL)::branch_publish_policy
                                     ORDER BY n)
                    FROM unnest($2::text[]) WITH ORDINALITY AS t(m, n)), '{}') END",
            )
            .bind(name)
            .bind(modes)
            .execute(&mut *conn)
            .await
            .expect("policy");
        }
    }
    // Change sets named anywhere, runs defaulting to one per campaign.
    let mut change_sets: Vec<(String, String)> = Vec::new();
    for kind in ["candidates", "runs", "queue"] {
        for row in list(kind) {
            let campaign = text(row, "campaign").expect("campaign");
            let change_set = text(row, "change_set")
                .or_else(|| (kind == "runs").then(|| format!("cs-{campaign}")));
            if let Some(id) = change_set
                && !change_sets.iter().any(|(known, _)| *known == id)
            {
                change_sets.push((id, campaign));
            }
        }
    }
    for (id, campaign) in &change_sets {
        sqlx::query("INSERT INTO change_set (id, campaign) VALUES ($1, $2)")
            .bind(id)
            .bind(campaign)
            .execute(&mut *conn)
            .await
            .expect("change set");
    }
    for candidate in list("candidates") {
        sqlx::query(
            "INSERT INTO candidate (codebase, suite, command, value, context, success_chance,
                                    change_set, publish_policy)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(text(candidate, "codebase"))
        .bind(text(candidate, "campaign"))
        .bind(text(candidate, "command").unwrap_or_else(|| "lintian-brush".into()))
        .bind(int(candidate, "value").map(|v| v as i32))
        .bind(text(candidate, "context"))
        .bind(candidate.get("success_chance").and_then(Value::as_f64))
        .bind(text(candidate, "change_set"))
        .bind(text(candidate, "policy"))
        .execute(&mut *conn)
        .await
        .expect("candidate");
    }
    for run in list("runs") {
        let campaign = text(run, "campaign").expect("campaign");
        sqlx::query(
            "INSERT INTO run (id, codebase, suite, command, start_time, finish_time, result_code,
                              context, instigated_context, failure_transient, failure_stage,
                              failure_details, logfilenames, change_set)
             VALUES ($1, $2, $3, 'x', $4::timestamp, $4::timestamp + ($5 || ' seconds')::interval,
                     $6, $7, $8, $9, $10, $11::json, '{}', $12)",
        )
        .bind(text(run, "id"))
        .bind(text(run, "codebase"))
        .bind(&campaign)
        .bind(text(run, "start"))
        .bind(text(run, "seconds"))
        .bind(text(run, "result_code"))
        .bind(text(run, "context"))
        .bind(text(run, "instigated_context"))
        .bind(run.get("transient").and_then(Value::as_bool))
        .bind(text(run, "failure_stage"))
        .bind(run.get("failure_details").filter(|d| !d.is_null()))
        .bind(text(run, "change_set").unwrap_or_else(|| format!("cs-{campaign}")))
        .execute(&mut *conn)
        .await
        .expect("run");
    }
    if let Some(next) = int(setup, "next_queue_id") {
        sqlx::query("SELECT setval('queue_id_seq', $1, false)")
            .bind(next)
            .execute(&mut *conn)
            .await
            .expect("sequence");
    }
    for row in list("queue") {
        sqlx::query(
            "INSERT INTO queue (codebase, suite, command, bucket, priority, estimated_duration,
                                change_set, context, requester)
             VALUES ($1, $2, $3, $4::queue_bucket, $5, ($6 || ' seconds')::interval, $7, $8, $9)",
        )
        .bind(text(row, "codebase"))
        .bind(text(row, "campaign"))
        .bind(text(row, "command").unwrap_or_else(|| "lintian-brush".into()))
        .bind(text(row, "bucket").unwrap_or_else(|| "default".into()))
        .bind(int(row, "priority"))
        .bind(text(row, "seconds").unwrap_or_else(|| "15".into()))
        .bind(text(row, "change_set"))
        .bind(text(row, "context"))
        .bind(text(row, "requester"))
        .execute(&mut *conn)
        .await
        .expect("queue row");
    }
    if let Some(statement) = setup.get("sql").and_then(Value::as_str) {
        execute(conn, statement).await;
    }
}

/// The Python exception a scheduling error stands for.
fn python_exception(error: &ScheduleError) -> &'static str {
    match error {
        ScheduleError::CandidateUnavailable { .. } => "CandidateUnavailable",
        ScheduleError::ZeroMaximumValue => "DivisionByZeroError",
        ScheduleError::Offset { .. } => "AssertionError",
        ScheduleError::Database(_) => "database error",
    }
}

fn single_result(
    result: Result<janitor_runner::schedule::engine::Scheduled, ScheduleError>,
) -> Value {
    match result {
        Ok(scheduled) => json!({
            "offset": scheduled.offset,
            "estimated_duration_us": scheduled.estimated_duration.0,
            "queue_id": scheduled.queue_id,
            "bucket": scheduled.bucket,
        }),
        Err(error) => {
            let name = python_exception(&error);
            // What the HTTP routes answer for it: a 4xx with a reason, never a 500.
            let answer = Error::from(error);
            assert!(
                matches!(answer, Error::BadRequest(_) | Error::NotFound(_)),
                "{answer:?}"
            );
            json!({"error": name})
        }
    }
}

fn duration(args: &Value) -> Option<Micros> {
    args.get("estimated_duration_seconds")
        .and_then(Value::as_f64)
        .map(timedelta_from_seconds)
}

/// A `bulk` action's options.
fn bulk_options(args: &Value) -> BulkOptions {
    BulkOptions {
        campaign: text(args, "campaign"),
        codebases: args
            .get("codebases")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        dry_run: args
            .get("dry_run")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ..BulkOptions::default()
    }
}

async fn run_action(
    conn: &mut PgConnection,
    pool: &sqlx::PgPool,
    now: chrono::NaiveDateTime,
    action: &Value,
) -> Value {
    let (kind, args) = action
        .as_object()
        .and_then(|o| o.iter().next())
        .expect("action");
    let codebase = text(args, "codebase").unwrap_or_default();
    let campaign = text(args, "campaign").unwrap_or_default();
    let change_set = text(args, "change_set");
    let bucket = text(args, "bucket");
    let requester = text(args, "requester");
    let refresh = args
        .get("refresh")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    match kind.as_str() {
        "sql" => {
            execute(conn, args.as_str().expect("statement")).await;
            json!({})
        }
        "regular" => single_result(
            do_schedule_regular(
                conn,
                now,
                RegularRequest {
                    codebase: &codebase,
                    campaign: &campaign,
                    command: text(args, "command"),
                    candidate_value: int(args, "candidate_value"),
                    success_chance: args.get("success_chance").and_then(Value::as_f64),
                    normalized_codebase_value: args
                        .get("normalized_codebase_value")
                        .and_then(Value::as_f64),
                    requester: requester.as_deref(),
                    default_offset: 0.0,
                    context: text(args, "context"),
                    change_set: change_set.as_deref(),
                    dry_run: args
                        .get("dry_run")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    refresh,
                    bucket: bucket.as_deref(),
                },
            )
            .await,
        ),
        "schedule" => single_result(
            do_schedule(
                conn,
                ScheduleRequest {
                    campaign: &campaign,
                    codebase: &codebase,
                    bucket: bucket.as_deref(),
                    change_set: change_set.as_deref(),
                    offset: args.get("offset").and_then(Value::as_f64),
                    refresh,
                    requester: requester.as_deref(),
                    estimated_duration: duration(args),
                    command: text(args, "command"),
                },
            )
            .await,
        ),
        "control" => single_result(
            do_schedule_control(
                conn,
                ControlRequest {
                    codebase: &codebase,
                    change_set: change_set.as_deref(),
                    main_branch_revision: text(args, "main_branch_revision").as_deref(),
                    offset: args.get("offset").and_then(Value::as_f64),
                    refresh,
                    bucket: bucket.as_deref(),
                    requester: requester.as_deref(),
                    estimated_duration: duration(args),
                },
            )
            .await,
        ),
        "bulk" => {
            let options = bulk_options(args);
            let summary = bulk_schedule(pool, now, &options, |_, _| {})
                .await
                .expect("bulk scheduling never fails on these inputs");
            let mut scheduled = Vec::new();
            for (candidate, offset, queue_id, bucket) in &summary.scheduled {
                let codebase: String =
                    sqlx::query_scalar("SELECT codebase FROM candidate WHERE id = $1")
                        .bind(candidate)
                        .fetch_one(&mut *conn)
                        .await
                        .expect("candidate");
                scheduled.push(json!([codebase, offset, queue_id, bucket]));
            }
            let mut skipped: Vec<String> =
                summary.skipped.iter().map(|s| s.codebase.clone()).collect();
            skipped.sort();
            json!({"scheduled": scheduled, "skipped": skipped})
        }
        other => panic!("unknown action {other}"),
    }
}

/// A queue row as the reference harness reported it.
type QueueRow = (
    i32,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<bool>,
);

async fn queue_rows(conn: &mut PgConnection) -> Value {
    let rows: Vec<QueueRow> = sqlx::query_as(
        "SELECT id, bucket::text, codebase, suite::text, command, priority,
                (extract(epoch FROM estimated_duration) * 1000000)::bigint, context, change_set,
                requester, refresh
         FROM queue ORDER BY bucket, priority, id",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("queue");
    Value::Array(
        rows.into_iter()
            .map(|r| {
                json!({"id": r.0, "bucket": r.1, "codebase": r.2, "campaign": r.3, "command": r.4,
                       "priority": r.5, "estimated_duration_us": r.6, "context": r.7,
                       "change_set": r.8, "requester": r.9, "refresh": r.10})
            })
            .collect(),
    )
}

async fn check(path: &Path) -> Result<(), String> {
    let scenario: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON");
    let db = common::migrated_database().await;
    let mut conn = db.pool.acquire().await.expect("connection");
    set_up(&mut conn, &scenario["setup"]).await;
    let now =
        janitor_runner::time::parse_timestamp(scenario["now"].as_str().expect("now")).expect("now");
    let mut results = Vec::new();
    for action in scenario["actions"].as_array().expect("actions") {
        results.push(run_action(&mut conn, &db.pool, now, action).await);
    }
    let queue = queue_rows(&mut conn).await;
    drop(conn);
    db.drop_now().await;
    let expected = &scenario["expected"];
    let mut problems = Vec::new();
    let want_results = expected["results"].as_array().map_or(0, Vec::len);
    if want_results != results.len() {
        problems.push(format!(
            "{} results for {} actions",
            want_results,
            results.len()
        ));
    }
    for (i, (got, want)) in results
        .iter()
        .zip(expected["results"].as_array().expect("results"))
        .enumerate()
    {
        if got != want {
            problems.push(format!(
                "action {i} {}:\n  got      {got}\n  expected {want}",
                scenario["actions"][i]
            ));
        }
    }
    if queue != expected["queue"] {
        problems.push(format!(
            "queue rows:\n  got      {queue}\n  expected {}",
            expected["queue"]
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}:\n{}", path.display(), problems.join("\n")))
    }
}

#[tokio::test]
async fn every_scenario_gives_the_reference_rows() {
    let files = scenarios();
    assert!(
        files.len() >= 26,
        "the corpus holds {} scenarios",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        if let Err(problem) = check(path).await {
            failures.push(problem);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios differ:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// The scenarios that end in a bulk run: the actions before it, and its options.
fn ending_in_bulk(scenario: &Value) -> Option<(&[Value], BulkOptions)> {
    let (last, before) = scenario["actions"].as_array()?.split_last()?;
    let args = last.get("bulk")?;
    if args.get("dry_run").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    let options = BulkOptions {
        shadow: true,
        ..bulk_options(args)
    };
    Some((before, options))
}

/// Replaces the queue with the rows the Python scheduler left.
async fn load_queue(conn: &mut PgConnection, rows: &Value) {
    execute(conn, "DELETE FROM queue").await;
    for row in rows.as_array().expect("queue rows") {
        sqlx::query(
            "INSERT INTO queue (id, bucket, codebase, suite, command, priority, estimated_duration,
                                context, change_set, requester, refresh)
             VALUES ($1, $2::queue_bucket, $3, $4, $5, $6, $7 * interval '1 microsecond', $8, $9,
                     $10, $11)",
        )
        .bind(int(row, "id").map(|id| id as i32))
        .bind(text(row, "bucket"))
        .bind(text(row, "codebase"))
        .bind(text(row, "campaign"))
        .bind(text(row, "command"))
        .bind(int(row, "priority"))
        .bind(int(row, "estimated_duration_us"))
        .bind(text(row, "context"))
        .bind(text(row, "change_set"))
        .bind(text(row, "requester"))
        .bind(row.get("refresh").and_then(Value::as_bool))
        .execute(&mut *conn)
        .await
        .expect("queue row");
    }
}

/// `janitor-runner schedule --shadow` on a database holding the Python's rows: every bulk
/// scenario compares clean, and one row changed afterwards is the one difference reported.
#[tokio::test]
async fn shadow_of_the_python_rows_is_clean_and_names_a_changed_row() {
    let mut compared = 0;
    let mut failures = Vec::new();
    for path in scenarios() {
        let scenario: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
        let Some((before, options)) = ending_in_bulk(&scenario) else {
            continue;
        };
        let now = janitor_runner::time::parse_timestamp(scenario["now"].as_str().expect("now"))
            .expect("now");
        let db = common::migrated_database().await;
        let mut conn = db.pool.acquire().await.expect("connection");
        set_up(&mut conn, &scenario["setup"]).await;
        // The earlier calls as the corpus test makes them, the snapshot an operator takes
        // before the Python scheduler runs, then the rows the Python left.
        for action in before {
            run_action(&mut conn, &db.pool, now, action).await;
        }
        let options = BulkOptions {
            before: Some(snapshot_queue(&db.pool).await.expect("snapshot")),
            ..options
        };
        load_queue(&mut conn, &scenario["expected"]["queue"]).await;
        let summary = bulk_schedule(&db.pool, now, &options, |_, _| {})
            .await
            .expect("shadow");
        let clean = summary.shadow.expect("a shadow report");
        compared += 1;
        if !clean.is_clean() || clean.same != summary.rows.len() {
            failures.push(format!("{}: {clean:?}", path.display()));
        }
        // One compared row changed by a second: exactly that row is named.
        if let Some(first) = summary.rows.first() {
            let (codebase, campaign) = (first.codebase.clone(), first.campaign.clone());
            sqlx::query(
                "UPDATE queue SET estimated_duration = estimated_duration + interval '1 second'
                 WHERE codebase = $1 AND suite = $2 AND coalesce(change_set, '') = ''",
            )
            .bind(&codebase)
            .bind(&campaign)
            .execute(&mut *conn)
            .await
            .expect("change one row");
            let report = bulk_schedule(&db.pool, now, &options, |_, _| {})
                .await
                .expect("shadow")
                .shadow
                .expect("a shadow report");
            let named: Vec<_> = report
                .differences
                .iter()
                .map(|d| (d.codebase.clone(), d.campaign.clone(), d.fields.clone()))
                .collect();
            if (report.differ, report.only_ours, report.only_theirs) != (1, 0, 0)
                || named != vec![(codebase, campaign, vec!["estimated_duration"])]
            {
                failures.push(format!("{} after a change: {report:?}", path.display()));
            }
        }
        drop(conn);
        db.drop_now().await;
    }
    assert!(compared >= 10, "only {compared} bulk scenarios");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Candidates on which the two paths must agree (a zero-valued publish mode, a codebase
/// value that normalises exactly, no change set) and candidates on which the Python's paths
/// differ (queue-and-scheduling.md §9.5, 9.6, 9.8).
const PATHS: &str = r#"{
  "codebases": [["same1", 100], ["same2", 50], ["same3", 25], ["bonus", 100], ["nullval", null],
                ["withcs", 100]],
  "policies": {"skip": ["skip"], "build-only": ["build-only"], "propose": ["propose"]},
  "candidates": [
    {"codebase": "same1", "campaign": "cmp", "value": 10, "context": "x", "success_chance": 0.5, "policy": "skip"},
    {"codebase": "same2", "campaign": "cmp", "value": 7, "success_chance": 0.5, "policy": "build-only"},
    {"codebase": "same3", "campaign": "cmp", "value": 3, "context": "y", "success_chance": 0.5, "policy": "skip"},
    {"codebase": "bonus", "campaign": "cmp", "value": 10, "context": "x", "success_chance": 0.5, "policy": "propose"},
    {"codebase": "nullval", "campaign": "cmp", "value": 10, "context": "x", "success_chance": 0.5, "policy": "skip"},
    {"codebase": "withcs", "campaign": "cmp", "value": 10, "success_chance": 0.5, "change_set": "cs-1", "policy": "skip"}
  ],
  "runs": [
    {"id": "r1", "codebase": "same1", "campaign": "cmp", "start": "2026-05-01T00:00:00", "seconds": "40", "result_code": "success", "context": "x"},
    {"id": "r2", "codebase": "same2", "campaign": "cmp", "start": "2026-05-01T00:00:00", "seconds": "41.5", "result_code": "build-failed"},
    {"id": "r3", "codebase": "bonus", "campaign": "cmp", "start": "2026-05-01T00:00:00", "seconds": "12", "result_code": "success"},
    {"id": "r4", "codebase": "nullval", "campaign": "cmp", "start": "2026-05-01T00:00:00", "seconds": "12", "result_code": "build-failed"}
  ]
}"#;

type PathRow = (String, Option<String>, i64, i64, Option<String>, String);

async fn rows_by_codebase(conn: &mut PgConnection) -> Vec<PathRow> {
    sqlx::query_as(
        "SELECT codebase, change_set, priority,
                (extract(epoch FROM estimated_duration) * 1000000)::bigint, context, bucket::text
         FROM queue ORDER BY codebase",
    )
    .fetch_all(&mut *conn)
    .await
    .expect("queue")
}

#[tokio::test]
async fn bulk_and_single_paths_differ_only_where_the_python_paths_do() {
    let setup: Value = serde_json::from_str(PATHS).expect("setup");
    let now = common::fixed_now();
    // The single path for every candidate, on one database.
    let single_db = common::migrated_database().await;
    let mut single = single_db.pool.acquire().await.expect("connection");
    set_up(&mut single, &setup).await;
    let mut single_offsets = std::collections::HashMap::new();
    for candidate in setup["candidates"].as_array().expect("candidates") {
        let codebase = text(candidate, "codebase").expect("codebase");
        let change_set = text(candidate, "change_set");
        let scheduled = do_schedule_regular(
            &mut single,
            now,
            RegularRequest {
                codebase: &codebase,
                campaign: "cmp",
                change_set: change_set.as_deref(),
                ..RegularRequest::default()
            },
        )
        .await
        .expect("single path");
        single_offsets.insert(codebase, scheduled.offset);
    }
    let single_rows = rows_by_codebase(&mut single).await;
    // The bulk path, on an identical database.
    let bulk_db = common::migrated_database().await;
    let mut bulk = bulk_db.pool.acquire().await.expect("connection");
    set_up(&mut bulk, &setup).await;
    let summary = bulk_schedule(&bulk_db.pool, now, &BulkOptions::default(), |_, _| {})
        .await
        .expect("bulk");
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    let bulk_rows = rows_by_codebase(&mut bulk).await;
    let mut bulk_offsets = std::collections::HashMap::new();
    for (candidate, offset, _, _) in &summary.scheduled {
        let codebase: String = sqlx::query_scalar("SELECT codebase FROM candidate WHERE id = $1")
            .bind(candidate)
            .fetch_one(&mut *bulk)
            .await
            .expect("candidate");
        bulk_offsets.insert(codebase, *offset);
    }
    drop((single, bulk));
    single_db.drop_now().await;
    bulk_db.drop_now().await;

    let row = |rows: &[PathRow], codebase: &str| {
        rows.iter()
            .find(|r| r.0 == codebase)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {codebase}"))
    };
    for codebase in ["same1", "same2", "same3"] {
        assert_eq!(
            row(&bulk_rows, codebase),
            row(&single_rows, codebase),
            "{codebase}: zero-valued modes, exact normalisation, no change set"
        );
        assert_eq!(bulk_offsets[codebase], single_offsets[codebase]);
    }
    // 9.5: the bulk value adds the publish mode's (propose: +400).
    let ratio = single_offsets["bonus"] / bulk_offsets["bonus"];
    assert!((ratio - 410.0 / 10.0).abs() < 1e-9, "bonus ratio {ratio}");
    // 9.6: a NULL codebase value is 0.1 in bulk and 1.0 on the single path.
    let ratio = bulk_offsets["nullval"] / single_offsets["nullval"];
    assert!((ratio - 10.0).abs() < 1e-9, "NULL value ratio {ratio}");
    // 9.8: bulk drops the change set (and, with no base candidate, cannot re-read one: the
    // change-set candidate here has a success chance, so none is needed).
    assert_eq!(row(&single_rows, "withcs").1.as_deref(), Some("cs-1"));
    assert_eq!(row(&bulk_rows, "withcs").1, None);
    assert_eq!(
        bulk_offsets["withcs"], single_offsets["withcs"],
        "same numbers, different row"
    );
}

/// The command as an operator runs it around the Python scheduler: `--save-queue` before,
/// `--shadow --queue-before` after; exit 0 when the rows agree, 1 naming the row that differs.
#[tokio::test]
async fn shadow_command_around_a_scheduler_run() {
    let scenario: Value = serde_json::from_str(
        &std::fs::read_to_string(corpus_dir().join("01-worked-example-bulk.json")).expect("read"),
    )
    .expect("JSON");
    let db = common::migrated_database().await;
    let mut conn = db.pool.acquire().await.expect("connection");
    set_up(&mut conn, &scenario["setup"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("janitor.conf");
    std::fs::write(&config, "").expect("config");
    let saved = dir.path().join("queue.json");
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_janitor-runner"))
            .arg("schedule")
            .arg("--config")
            .arg(&config)
            .arg("--database-url")
            .arg(&db.url)
            .args(args)
            .output()
            .expect("janitor-runner schedule");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let saved_arg = saved.to_str().expect("path");
    assert_eq!(run(&["--save-queue", saved_arg]).0, Some(0));
    // The Python scheduler's run, as the corpus recorded it.
    load_queue(&mut conn, &scenario["expected"]["queue"]).await;
    let (status, out) = run(&[
        "--shadow",
        "--queue-before",
        saved_arg,
        "--campaign",
        "lintian-fixes",
    ]);
    assert_eq!(status, Some(0), "{out}");
    assert!(
        out.contains("3 same, 0 differ, 0 only ours, 0 only theirs"),
        "{out}"
    );
    execute(
        &mut conn,
        "UPDATE queue SET priority = priority + 7 WHERE codebase = 'beta'",
    )
    .await;
    let (status, out) = run(&[
        "--shadow",
        "--queue-before",
        saved_arg,
        "--campaign",
        "lintian-fixes",
    ]);
    assert_eq!(status, Some(1), "{out}");
    assert!(out.contains("2 same, 1 differ"), "{out}");
    assert!(
        out.contains("lintian-fixes/beta:\n    priority: ours 1187, theirs 1194"),
        "{out}"
    );
    drop(conn);
    db.drop_now().await;
}
