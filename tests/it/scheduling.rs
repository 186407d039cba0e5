//! The scheduling paths against a real database, on the worked example of queue-and-scheduling.md
//! §6: the single path (`do_schedule_regular`), `do_schedule`, `do_schedule_control`, the post-run
//! reschedule, and the HTTP routes that call them.

use crate::common;

use common::{Store, TestServer, post, sql};
use janitor_runner::schedule::Micros;
use janitor_runner::schedule::engine::{
    ControlRequest, RegularRequest, ScheduleRequest, do_schedule, do_schedule_control,
    do_schedule_regular,
};
use serde_json::{Value, json};

/// queue-and-scheduling.md §6: codebases, candidates, runs, and the queue holding one row (id 41).
const WORKED_EXAMPLE: &str = include_str!("../fixtures/worked_example.sql");

/// (bucket, codebase, campaign, priority, estimated duration in µs, context, requester),
/// in queue order.
async fn queue_rows(
    server: &TestServer,
) -> Vec<(
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
)> {
    sqlx::query_as(
        "SELECT bucket::text, codebase, suite::text, priority,
                (extract(epoch FROM estimated_duration) * 1000000)::bigint, context, requester
         FROM queue ORDER BY queue.bucket, priority, id",
    )
    .fetch_all(&server.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn worked_example_single_path_and_follow_ups() {
    let server = TestServer::start(Store::Postgres).await;
    sql(&server, WORKED_EXAMPLE).await;
    let now = server.clock_now();
    let mut conn = server.db.pool.acquire().await.unwrap();
    let regular = |codebase: &'static str| RegularRequest {
        codebase,
        campaign: "lintian-fixes",
        ..RegularRequest::default()
    };

    // The single path: raw candidate values, SQL normalisation.
    let alpha = do_schedule_regular(&mut conn, now, regular("alpha"))
        .await
        .unwrap();
    assert_eq!(alpha.offset, 118587.30257142859);
    assert_eq!(alpha.estimated_duration, Micros(60_166_667));
    assert_eq!((alpha.queue_id, alpha.bucket.as_str()), (41 + 1, "default"));
    let beta = do_schedule_regular(&mut conn, now, regular("beta"))
        .await
        .unwrap();
    assert_eq!(beta.offset, 5666.666666666667);
    assert_eq!(beta.estimated_duration, Micros::from_seconds(150));
    let gamma = do_schedule_regular(&mut conn, now, regular("gamma"))
        .await
        .unwrap();
    assert_eq!(
        gamma.offset, 38181.818181818184,
        "NULL value normalises to 1.0"
    );
    assert_eq!(gamma.estimated_duration, Micros::from_seconds(30));
    let rows = queue_rows(&server).await;
    let priorities: Vec<(&str, i64)> = rows.iter().map(|r| (r.1.as_str(), r.3)).collect();
    assert_eq!(
        priorities,
        [
            ("delta", -5),
            ("beta", 5661),
            ("gamma", 38176),
            ("alpha", 118582)
        ],
        "priority = lowest priority (-5) + the offset truncated"
    );
    assert_eq!(
        rows[3].5.as_deref(),
        Some("ctx-a"),
        "context from the candidate"
    );
    assert_eq!(rows[3].6.as_deref(), Some("scheduler"));

    // Follow-up 1: do_schedule moves gamma to the head of `manual` and clears its context.
    let manual = do_schedule(
        &mut conn,
        ScheduleRequest {
            campaign: "lintian-fixes",
            codebase: "gamma",
            bucket: Some("manual"),
            requester: Some("admin"),
            ..ScheduleRequest::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (
            manual.offset,
            manual.estimated_duration,
            manual.queue_id,
            manual.bucket.as_str()
        ),
        (-1.0, Micros::from_seconds(30), gamma.queue_id, "manual")
    );
    // Follow-up 2: the regular path does not move it back to `default`.
    let again = do_schedule_regular(&mut conn, now, regular("gamma"))
        .await
        .unwrap();
    assert_eq!(
        (again.offset, again.queue_id, again.bucket.as_str()),
        (38181.818181818184, gamma.queue_id, "manual")
    );
    // Follow-up 3: a control run, at the head of `control`.
    let control = do_schedule_control(
        &mut conn,
        ControlRequest {
            codebase: "beta",
            main_branch_revision: Some("git-v1:abc123"),
            estimated_duration: Some(Micros::from_seconds(1)),
            ..ControlRequest::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(control.bucket, "control");
    assert_eq!(
        control.estimated_duration,
        Micros::from_seconds(150),
        "the given duration is ignored; beta's average is used"
    );
    let rows = queue_rows(&server).await;
    let order: Vec<(&str, &str, &str, i64)> = rows
        .iter()
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str(), r.3))
        .collect();
    assert_eq!(
        order,
        [
            ("manual", "gamma", "lintian-fixes", -6),
            ("manual", "delta", "lintian-fixes", -5),
            ("control", "beta", "control", -7),
            ("default", "beta", "lintian-fixes", 5661),
            ("default", "alpha", "lintian-fixes", 118582),
        ]
    );
    assert_eq!(rows[0].5, None, "do_schedule clears the context");
    let command: String = sqlx::query_scalar("SELECT command FROM queue WHERE suite = 'control'")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(command, "brz up --revision=git-v1:abc123");

    // Follow-up 4: alpha's run a6 finishes; the reschedule counts it (context ctx-a2).
    sql(
        &server,
        "DELETE FROM queue WHERE codebase = 'alpha';
         INSERT INTO run (id, codebase, suite, command, start_time, finish_time, result_code,
                          context, instigated_context, logfilenames, change_set)
         VALUES ('a6', 'alpha', 'lintian-fixes', 'x', '2026-02-01 10:00', '2026-02-01 10:00:45',
                 'success', 'ctx-a2', 'ctx-a', '{}', 'cs');",
    )
    .await;
    let after = do_schedule_regular(
        &mut conn,
        now,
        RegularRequest {
            context: Some("ctx-a2".into()),
            requester: Some("after run schedule"),
            ..regular("alpha")
        },
    )
    .await
    .unwrap();
    assert_eq!(after.offset, 101508.06451612902);
    assert_eq!(after.estimated_duration, Micros(56_375_000));
    let priority: i64 = sqlx::query_scalar("SELECT priority FROM queue WHERE codebase = 'alpha'")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(priority, -7 + 101508);
    drop(conn);
    server.stop().await;
}

#[tokio::test]
async fn schedule_routes() {
    let server = TestServer::start(Store::Postgres).await;
    sql(&server, WORKED_EXAMPLE).await;
    let (status, body) = post(
        &server,
        "/schedule",
        json!({"campaign": "lintian-fixes", "codebase": "gamma", "bucket": "manual", "requester": "admin"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"campaign": "lintian-fixes", "offset": -1.0, "bucket": "manual", "codebase": "gamma",
               "queue_id": 41 + 1, "estimated_duration_seconds": 30.0})
    );
    let (status, body) = post(
        &server,
        "/schedule",
        json!({"run_id": "a5", "offset": "10", "estimated_duration": 12.5}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["codebase"], "alpha");
    assert_eq!(body["offset"], 10.0);
    assert_eq!(body["estimated_duration_seconds"], 12.5);

    let (status, body) = post(
        &server,
        "/schedule-control",
        json!({"codebase": "beta", "main_branch_revision": "r1", "requester": null}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["campaign"], "control");
    assert_eq!(body["bucket"], "control");

    for (path, bad, expected) in [
        ("/schedule", json!({"run_id": "nope"}), 404),
        ("/schedule", json!({"codebase": "alpha"}), 400),
        (
            "/schedule",
            json!({"campaign": "no-such", "codebase": "alpha"}),
            400,
        ),
        (
            "/schedule",
            json!({"campaign": "lintian-fixes", "codebase": "zeta"}),
            404,
        ),
        (
            "/schedule",
            json!({"campaign": "lintian-fixes", "codebase": "alpha", "bucket": "soon"}),
            400,
        ),
        (
            "/schedule",
            json!({"campaign": "lintian-fixes", "codebase": "alpha", "offset": "x"}),
            400,
        ),
        (
            "/schedule-control",
            json!({"codebase": "beta", "main_branch_revision": "r1"}),
            400,
        ),
        (
            "/schedule-control",
            json!({"run_id": "a1", "requester": null}),
            400,
        ),
        (
            "/schedule-control",
            json!({"run_id": "nope", "requester": null}),
            404,
        ),
    ] {
        let (status, body) = post(&server, path, bad.clone()).await;
        assert_eq!(status.as_u16(), expected, "{path} {bad}: {body}");
        assert!(body["reason"].is_string(), "{body}");
    }
    server.stop().await;
}

/// A server whose database has the codebase `foo` (no URL) and, uploaded through
/// `/candidates`, a candidate of it for `campaign` (command `true`); with the upload's answer.
async fn server_with_candidate_of_foo(campaign: &str) -> (TestServer, Value) {
    let server = TestServer::start(Store::Postgres).await;
    sql(
        &server,
        "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath)
         VALUES ('foo', NULL, NULL, NULL, NULL);",
    )
    .await;
    let (status, body) = post(
        &server,
        "/candidates",
        json!([{"codebase": "foo", "campaign": campaign, "command": "true"}]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    (server, body)
}

#[tokio::test]
async fn candidate_upload_schedules_and_a_finished_run_is_requeued() {
    // The upstream test: no value, no runs: offset 35000, 15 s, queue id 1.
    let (server, body) = server_with_candidate_of_foo("empty-ok").await;
    assert_eq!(
        body["success"],
        json!([{"campaign": "empty-ok", "codebase": "foo", "bucket": "default", "change_set": null,
                "offset": 35000.0, "estimated_duration": 15.0, "queue-id": 1, "refresh": false}])
    );
    // Assigned, then finished by the worker: the candidate comes back in `default`.
    let (status, assignment) = post(&server, "/active-runs", json!({})).await;
    assert_eq!(status, 201, "{assignment}");
    let run_id = assignment["id"].as_str().unwrap();
    assert_eq!(
        finish_with(&server, run_id, &json!({"context": "next"})).await,
        201
    );
    let mut requeued = None;
    for _ in 0..100 {
        requeued = sqlx::query_as::<_, (i32, String, Option<String>, Option<String>)>(
            "SELECT id, bucket::text, context, requester FROM queue WHERE codebase = 'foo'",
        )
        .fetch_optional(&server.db.pool)
        .await
        .unwrap();
        if requeued.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (id, bucket, context, requester) = requeued.expect("re-queued after the run");
    assert_ne!(id, 1, "a new row");
    assert_eq!(bucket, "default");
    assert_eq!(context.as_deref(), Some("next"), "the result's context");
    assert_eq!(requester.as_deref(), Some("after run schedule"));
    server.stop().await;
}

/// Finishes run `run_id` through the worker's multipart upload with `result` as its
/// `result.json`; the HTTP status.
async fn finish_with(server: &TestServer, run_id: &str, result: &Value) -> u16 {
    let boundary = "b0undary";
    let multipart = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"result\"; filename=\"result.json\"\r\n\r\n\
         {result}\r\n--{boundary}--\r\n"
    );
    reqwest::Client::new()
        .post(server.url(&format!("/active-runs/{run_id}/finish")))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(multipart)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The statement that stores a worker's run reads the candidate to reschedule: the one of the
/// run's change set, with its command and (the result giving none) its context, not the
/// campaign's base candidate.
#[tokio::test]
async fn a_finished_run_is_requeued_from_its_change_sets_candidate() {
    let (server, _) = server_with_candidate_of_foo("empty-ok").await;
    sql(
        &server,
        "DELETE FROM queue;
         INSERT INTO change_set (id, campaign) VALUES ('cs1', 'empty-ok');
         INSERT INTO candidate (codebase, suite, command, context, value, change_set)
         VALUES ('foo', 'empty-ok', 'echo cs1', 'cs-context', 7, 'cs1');
         INSERT INTO queue (codebase, suite, command, change_set)
         VALUES ('foo', 'empty-ok', 'echo cs1', 'cs1');",
    )
    .await;
    let (status, assignment) = post(&server, "/active-runs", json!({})).await;
    assert_eq!(status, 201, "{assignment}");
    let run_id = assignment["id"].as_str().unwrap();
    assert_eq!(finish_with(&server, run_id, &json!({})).await, 201);
    // Rescheduled before the finish answers.
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT command, change_set, context, requester FROM queue WHERE codebase = 'foo'",
    )
    .fetch_all(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![(
            "echo cs1".to_string(),
            Some("cs1".to_string()),
            Some("cs-context".to_string()),
            Some("after run schedule".to_string())
        )]
    );
    server.stop().await;
}

/// A run whose candidate is gone by its finish is stored, and nothing is queued for it.
#[tokio::test]
async fn a_finished_run_without_a_candidate_is_stored_and_not_requeued() {
    let (server, _) = server_with_candidate_of_foo("empty-ok").await;
    let (status, assignment) = post(&server, "/active-runs", json!({})).await;
    assert_eq!(status, 201, "{assignment}");
    let run_id = assignment["id"].as_str().unwrap();
    sql(&server, "DELETE FROM candidate").await;
    assert_eq!(
        finish_with(&server, run_id, &json!({"context": "x"})).await,
        201
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM run WHERE id = $1")
        .bind(run_id)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM queue")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(queued, 0);
    server.stop().await;
}

/// A finish whose reschedule fails stores the run all the same, with the change set of its
/// own it had none of and its result branches, and queues nothing: whether the reschedule
/// fails before writing (every codebase value 0: nothing can be normalised) or its upsert
/// fails in the database (which aborts the finish's transaction, so the run is stored again
/// without it).
#[tokio::test]
async fn a_failing_reschedule_leaves_the_finished_run_stored() {
    let refuse_queue_inserts = "CREATE FUNCTION refuse_queue_insert() RETURNS trigger
             LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'no queue inserts'; END $$;
         CREATE TRIGGER refuse_queue_insert BEFORE INSERT ON queue
             FOR EACH ROW EXECUTE FUNCTION refuse_queue_insert();";
    let failures = ["UPDATE codebase SET value = 0", refuse_queue_inserts];
    for failure in failures {
        for branches in [json!(null), json!([["main", null, "m1", "r1"]])] {
            let (server, _) = server_with_candidate_of_foo("empty-ok").await;
            sql(&server, failure).await;
            let (status, assignment) = post(&server, "/active-runs", json!({})).await;
            assert_eq!(status, 201, "{assignment}");
            let run_id = assignment["id"].as_str().unwrap();
            let result = json!({"context": "x", "branches": branches});
            assert_eq!(finish_with(&server, run_id, &result).await, 201, "{result}");
            let stored: (String, String, i64) = sqlx::query_as(
                "SELECT run.change_set, change_set.campaign,
                        (SELECT count(*) FROM new_result_branch WHERE run_id = run.id)
                 FROM run JOIN change_set ON change_set.id = run.change_set
                 WHERE run.id = $1",
            )
            .bind(run_id)
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
            let expected_branches = i64::from(!branches.is_null());
            assert_eq!(
                stored,
                (
                    run_id.to_string(),
                    "empty-ok".to_string(),
                    expected_branches
                ),
                "{failure}: {result}"
            );
            let (queued, claims): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM queue), (SELECT count(*) FROM runner_active_run)",
            )
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
            assert_eq!((queued, claims), (0, 0), "{failure}: {result}");
            server.stop().await;
        }
    }
}

/// An item the runner cannot hand out (here: no VCS URL) is finished as `not-in-vcs` while
/// assigning, and its candidate is put back on the queue after that run, as every run's is.
#[tokio::test]
async fn an_unassignable_item_is_requeued_after_its_run() {
    let (server, _) = server_with_candidate_of_foo("generic").await;
    let (status, body) = post(&server, "/active-runs", json!({})).await;
    assert_ne!(status, 201, "nothing assignable: {body}");
    let mut requeued = None;
    for _ in 0..100 {
        requeued = sqlx::query_scalar::<_, Option<String>>(
            "SELECT requester FROM queue WHERE codebase = 'foo'",
        )
        .fetch_optional(&server.db.pool)
        .await
        .unwrap();
        if requeued == Some(Some("after run schedule".to_string())) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(requeued, Some(Some("after run schedule".to_string())));
    let code: String =
        sqlx::query_scalar("SELECT result_code FROM run WHERE codebase = 'foo' LIMIT 1")
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
    assert_eq!(code, "not-in-vcs");
    server.stop().await;
}

/// `db::queue::position` (what `GET /queue/position` answers) gives the `queue_positions`
/// view's numbers for every queued (codebase, campaign).
async fn assert_position_matches_view(server: &TestServer) {
    let view: Vec<(String, String, i64, Option<f64>)> = sqlx::query_as(
        "SELECT DISTINCT ON (codebase, suite) codebase, suite::text, position,
                extract(epoch FROM wait_time)::float8
         FROM queue_positions ORDER BY codebase, suite, position",
    )
    .fetch_all(&server.db.pool)
    .await
    .unwrap();
    assert!(!view.is_empty());
    // The in-memory positions: exact once built, and still exact (from SQL) right after a
    // change, before they are rebuilt.
    let cached = janitor_runner::queue::positions::QueuePositions::new();
    assert!(
        cached.rebuild(&server.db.pool).await.unwrap(),
        "no writer is mid-transaction"
    );
    for (codebase, campaign, position, wait) in view {
        let found = janitor_runner::db::queue::position(&server.db.pool, &codebase, &campaign)
            .await
            .unwrap();
        assert_eq!(found, Some((position, wait)), "{codebase}/{campaign}");
        let from_memory = cached
            .lookup(&server.db.pool, &codebase, &campaign)
            .await
            .unwrap();
        assert_eq!(from_memory, found, "cached {codebase}/{campaign}");
    }
    assert_eq!(
        cached
            .lookup(&server.db.pool, "nowhere", "none")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn cached_positions_follow_queue_changes() {
    use janitor_runner::queue::positions::QueuePositions;
    let server = TestServer::start(Store::Postgres).await;
    sql(&server, WORKED_EXAMPLE).await;
    let pool = &server.db.pool;
    let cached = QueuePositions::new();
    assert!(cached.rebuild(pool).await.unwrap());
    assert_eq!(
        cached.lookup(pool, "delta", "lintian-fixes").await.unwrap(),
        Some((1, Some(0.0)))
    );
    // A writer mid-transaction: no snapshot can be built, and lookups see committed rows.
    let mut writer = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO queue (codebase, suite, command, bucket, priority, estimated_duration)
         VALUES ('alpha', 'lintian-fixes', 'x', 'update-existing-mp', 0, interval '10 seconds')",
    )
    .execute(&mut *writer)
    .await
    .unwrap();
    assert!(
        !cached.rebuild(pool).await.unwrap(),
        "a writer holds the lock"
    );
    assert_eq!(
        cached.lookup(pool, "delta", "lintian-fixes").await.unwrap(),
        Some((1, Some(0.0))),
        "the uncommitted row is not counted"
    );
    writer.commit().await.unwrap();
    // Committed: the old snapshot is stale, so the answer comes from SQL at once.
    assert_eq!(
        cached.lookup(pool, "delta", "lintian-fixes").await.unwrap(),
        Some((2, Some(10.0)))
    );
    assert!(cached.rebuild(pool).await.unwrap());
    assert_eq!(
        cached.lookup(pool, "alpha", "lintian-fixes").await.unwrap(),
        Some((1, Some(0.0)))
    );
    assert_eq!(
        cached.lookup(pool, "delta", "lintian-fixes").await.unwrap(),
        Some((2, Some(10.0)))
    );
    server.stop().await;
}

/// The worked example's publish policies, attached to its candidates.
const POLICIES: &str = "
INSERT INTO named_publish_policy (name, per_branch_policy) VALUES
  ('propose-main', ARRAY[ROW('main', 'propose', NULL)::branch_publish_policy]),
  ('attempt-push-main', ARRAY[ROW('main', 'attempt-push', NULL)::branch_publish_policy]),
  ('build-only', ARRAY[ROW('main', 'build-only', NULL)::branch_publish_policy]);
UPDATE candidate SET publish_policy = CASE codebase
  WHEN 'alpha' THEN 'propose-main' WHEN 'beta' THEN 'attempt-push-main' ELSE 'build-only' END;
";

#[tokio::test]
async fn worked_example_bulk_path() {
    use janitor_runner::schedule::bulk::{BulkOptions, bulk_schedule};
    let server = TestServer::start(Store::Postgres).await;
    sql(&server, WORKED_EXAMPLE).await;
    sql(&server, POLICIES).await;
    let options = BulkOptions {
        campaign: Some("lintian-fixes".into()),
        codebases: vec!["alpha".into(), "beta".into(), "gamma".into()],
        dry_run: false,
        ..BulkOptions::default()
    };
    let summary = bulk_schedule(&server.db.pool, server.clock_now(), &options, |_, _| {})
        .await
        .unwrap();
    assert!(summary.skipped.is_empty(), "{:?}", summary.skipped);
    let offsets: Vec<(f64, i64)> = summary.scheduled.iter().map(|s| (s.1, s.2)).collect();
    assert_eq!(
        offsets,
        [
            (2892.373233449478, 42),
            (1192.982456140351, 43),
            (381818.1818181817, 44)
        ]
    );
    let rows = queue_rows(&server).await;
    type Row<'a> = (&'a str, &'a str, i64, i64, Option<&'a str>, Option<&'a str>);
    let table: Vec<Row<'_>> = rows
        .iter()
        .map(|r| {
            (
                r.0.as_str(),
                r.1.as_str(),
                r.3,
                r.4,
                r.5.as_deref(),
                r.6.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        table,
        [
            ("manual", "delta", -5, 45_000_000, None, None),
            (
                "default",
                "beta",
                1187,
                150_000_000,
                None,
                Some("scheduler")
            ),
            (
                "default",
                "alpha",
                2887,
                60_166_667,
                Some("ctx-a"),
                Some("scheduler")
            ),
            (
                "default",
                "gamma",
                381813,
                30_000_000,
                None,
                Some("scheduler")
            ),
        ]
    );
    let positions: Vec<(i64, Option<f64>)> = sqlx::query_as(
        "SELECT position, extract(epoch FROM wait_time)::float8 FROM queue_positions ORDER BY position",
    )
    .fetch_all(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(
        positions,
        [
            (1, Some(0.0)),
            (2, Some(45.0)),
            (3, Some(195.0)),
            (4, Some(255.166667))
        ]
    );
    assert_position_matches_view(&server).await;
    sql(
        &server,
        "INSERT INTO codebase (name) VALUES ('head');
         INSERT INTO queue (codebase, suite, command, bucket) VALUES ('head', 'generic', 'x', 'hook');",
    )
    .await;
    assert_position_matches_view(&server).await;
    sql(&server, "DELETE FROM queue WHERE codebase = 'head'").await;
    assert_eq!(summary.buckets["default"].added, 3);
    // The next id is 46: one sequence value per upsert (42-44), and 45 for the row above.
    let next: i64 = sqlx::query_scalar("SELECT nextval('queue_id_seq')")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(next, 46);

    // Bulk again: every row updated in place (same bucket), none added.
    let again = bulk_schedule(&server.db.pool, server.clock_now(), &options, |_, _| {})
        .await
        .unwrap();
    assert_eq!(again.buckets["default"].updated, 3);
    assert_eq!(again.buckets["default"].added, 0);
    server.stop().await;
}

#[tokio::test]
async fn bulk_skips_what_the_python_crashes_on() {
    use janitor_runner::schedule::bulk::{BulkOptions, bulk_schedule};
    let server = TestServer::start(Store::Postgres).await;
    sql(&server, WORKED_EXAMPLE).await;
    sql(&server, POLICIES).await;
    sql(
        &server,
        "INSERT INTO named_publish_policy (name, per_branch_policy) VALUES
           ('derived', ARRAY[ROW('main', 'push-derived', NULL)::branch_publish_policy]),
           ('none', NULL);
         INSERT INTO codebase (name, value) VALUES ('eps', 10), ('zeta', 10), ('eta', 10);
         INSERT INTO candidate (codebase, suite, command, value, publish_policy) VALUES
           ('eps', 'lintian-fixes', 'x', 5, 'derived'),
           ('zeta', 'lintian-fixes', 'x', NULL, 'propose-main'),
           ('eta', 'lintian-fixes', 'x', 5, 'none');",
    )
    .await;
    let options = BulkOptions {
        campaign: Some("lintian-fixes".into()),
        ..BulkOptions::default()
    };
    let summary = bulk_schedule(&server.db.pool, server.clock_now(), &options, |_, _| {})
        .await
        .unwrap();
    let skipped: Vec<&str> = summary
        .skipped
        .iter()
        .map(|s| s.codebase.as_str())
        .collect();
    assert_eq!(skipped, ["eps", "zeta", "eta"]);
    // The others are scheduled exactly as without them.
    let offsets: Vec<f64> = summary.scheduled.iter().map(|s| s.1).collect();
    assert_eq!(
        offsets,
        [2892.373233449478, 1192.982456140351, 381818.1818181817]
    );

    // Every codebase value zero: nothing can be normalised, everything is skipped.
    sql(&server, "UPDATE codebase SET value = NULL").await;
    let dry = BulkOptions {
        dry_run: true,
        ..options
    };
    let summary = bulk_schedule(&server.db.pool, server.clock_now(), &dry, |_, _| {})
        .await
        .unwrap();
    assert_eq!(summary.skipped.len(), 6);
    assert!(summary.scheduled.is_empty());
    server.stop().await;
}

/// A run of `codebase` in `lintian-fixes` (change set `cs`) for [`insert_reading`].
fn new_run<'a>(
    id: &'a str,
    codebase: &'a str,
    start: &str,
    finish: &str,
    transient: Option<bool>,
    failure_details: Option<&'a Value>,
) -> janitor_runner::db::runs::NewRun<'a> {
    let at = |t: &str| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    janitor_runner::db::runs::NewRun {
        id,
        command: "x",
        description: None,
        result_code: "build-failed",
        start_time: at(start),
        finish_time: at(finish),
        instigated_context: Some("ctx-new".into()),
        context: Some("ctx-new2"),
        main_branch_revision: None,
        revision: None,
        result: None,
        campaign: "lintian-fixes",
        vcs_type: None,
        branch_url: None,
        logfilenames: &[],
        value: None,
        worker: None,
        worker_must_be_registered: false,
        worker_link: None,
        tags: None,
        subpath: None,
        failure_stage: None,
        failure_details,
        target_branch_url: None,
        failure_transient: transient,
        resume_from: None,
        change_set: "cs",
        create_change_set: false,
        codebase,
        queue_id: None,
        release_claim: None,
        read_candidate: Some(janitor_runner::db::candidates::CandidateKey {
            codebase,
            campaign: "lintian-fixes",
            change_set: None,
        }),
    }
}

/// Inserts `run` in a transaction and checks that what its statement read for the reschedule
/// is what reads after it see (the history, the candidate, the normalised value); rolls back.
async fn assert_insert_reads_as_after(
    server: &TestServer,
    run: &janitor_runner::db::runs::NewRun<'_>,
) {
    use janitor_runner::db::runs::NormalizedValue;
    let mut tx = server.db.pool.begin().await.unwrap();
    let inserted = janitor_runner::db::runs::insert(&mut tx, run)
        .await
        .unwrap();
    let read = inserted.requeue.expect("the candidate exists");
    let history = janitor_runner::db::runs::history(&mut tx, run.codebase, run.campaign)
        .await
        .unwrap();
    assert_eq!(read.history, history, "run {}", run.id);
    let facts =
        janitor_runner::db::candidates::schedule_facts(&mut tx, run.codebase, run.campaign, None)
            .await
            .unwrap();
    assert_eq!(Some(read.candidate), facts);
    let value = janitor_runner::db::codebases::normalized_value(&mut tx, run.codebase).await;
    match (read.normalized_value, value) {
        (NormalizedValue::Value(read), Ok(Some(after))) => assert_eq!(read, after),
        (NormalizedValue::NoCodebase, Ok(None)) => {}
        (NormalizedValue::ZeroMaximum, Err(sqlx::Error::Database(error))) => {
            assert_eq!(error.code().as_deref(), Some("22012"));
        }
        (read, after) => panic!("read {read:?}, after {after:?}"),
    }
    tx.rollback().await.unwrap();
}

/// The statement that stores a worker's run reads the pair's history and the codebase's
/// normalised value for the reschedule; what it reads is what a read after it gives: the
/// stored run in its place by start time (unless transient), the rest as stored.
#[tokio::test]
async fn the_run_insert_reads_the_reschedule_as_a_read_after_it() {
    let server = TestServer::start(Store::Postgres).await;
    sql(&server, WORKED_EXAMPLE).await;
    let relations = json!({"relations": [[{"name": "foo", "version": [">=", "1.0"]}]], "n": 1e300});
    for run in [
        // Between a3 and a4 (a4 is transient, not in the history).
        new_run(
            "n1",
            "alpha",
            "2026-01-06 10:00:00",
            "2026-01-06 10:00:42.25",
            None,
            Some(&relations),
        ),
        // The newest, over a day long.
        new_run(
            "n2",
            "alpha",
            "2026-03-01 00:00:00",
            "2026-03-02 01:00:00.000001",
            Some(false),
            None,
        ),
        // Transient: not in the history.
        new_run(
            "n3",
            "alpha",
            "2026-03-01 00:00:00",
            "2026-03-01 00:01:00",
            Some(true),
            None,
        ),
        // The oldest, and the first of gamma (value NULL: normalised 1.0).
        new_run(
            "n4",
            "gamma",
            "2025-01-01 00:00:00",
            "2025-01-01 00:00:01",
            None,
            None,
        ),
        // beta has no run in lintian-fixes yet.
        new_run(
            "n5",
            "beta",
            "2026-01-01 00:00:00",
            "2026-01-01 00:00:01",
            None,
            None,
        ),
    ] {
        assert_insert_reads_as_after(&server, &run).await;
    }
    // A past run's failure details with a number beyond f64 (PostgreSQL's json takes it):
    // read as none by both, not a failed reschedule.
    sql(
        &server,
        r#"INSERT INTO run (id, codebase, suite, command, start_time, finish_time, result_code,
                            failure_details, logfilenames, change_set)
           VALUES ('a7', 'alpha', 'lintian-fixes', 'x', '2026-01-10 10:00', '2026-01-10 10:01',
                   'build-failed', '{"relations": [], "n": 1e400}', '{}', 'cs');"#,
    )
    .await;
    assert_insert_reads_as_after(
        &server,
        &new_run(
            "n8",
            "alpha",
            "2026-03-01 00:00:00",
            "2026-03-01 00:01:00",
            None,
            None,
        ),
    )
    .await;
    // No codebase value above 0: the values cannot be normalised, and the run is stored.
    sql(
        &server,
        "UPDATE codebase SET value = 0 WHERE value IS NOT NULL",
    )
    .await;
    assert_insert_reads_as_after(
        &server,
        &new_run(
            "n6",
            "alpha",
            "2026-03-01 00:00:00",
            "2026-03-01 00:01:00",
            None,
            None,
        ),
    )
    .await;
    // With no candidate, nothing is read.
    sql(&server, "DELETE FROM candidate WHERE codebase = 'beta'").await;
    let mut tx = server.db.pool.begin().await.unwrap();
    let run = new_run(
        "n7",
        "beta",
        "2026-01-01 00:00:00",
        "2026-01-01 00:00:01",
        None,
        None,
    );
    let inserted = janitor_runner::db::runs::insert(&mut tx, &run)
        .await
        .unwrap();
    assert_eq!(inserted.requeue, None);
    tx.rollback().await.unwrap();
    server.stop().await;
}
