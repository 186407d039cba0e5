//! Assignment against real branches: the upstream is opened over HTTP (canonical URL, VCS,
//! colocated branches), a 429 blocks its host and answers 429, and a run is resumed from the
//! janitor's VCS store when the store's branch tip matches an earlier successful run.

use crate::common;
use crate::common::forge;

use common::{Store, TestServer, sql};
use forge::{Forge, have_git};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn assert_worker_accepts(assignment: &Value) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/worker_assignment.schema.json"
    ))
    .unwrap();
    let validator = jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(assignment)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}\n{assignment:#}");
}

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

async fn assign(server: &TestServer) -> Answer {
    let response = reqwest::Client::new()
        .post(server.url("/active-runs"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    Answer {
        status: response.status(),
        retry_after: response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string()),
        body: response.json().await.unwrap(),
    }
}

async fn peek(server: &TestServer) -> Value {
    reqwest::get(server.url("/active-runs/+peek"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn stored_run(server: &TestServer, codebase: &str) -> (String, Option<String>, Option<bool>) {
    sqlx::query_as(
        "SELECT result_code, description, failure_transient FROM run WHERE codebase = $1",
    )
    .bind(codebase)
    .fetch_one(&server.db.pool)
    .await
    .unwrap()
}

async fn queue_len(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM queue")
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

/// A server whose VCS store is below the forge (`/store/git`, `/store/bzr`).
async fn server_with_store(store: Store, forge: &Forge) -> TestServer {
    let location = format!(
        "git={},bzr={}",
        forge.url("store/git"),
        forge.url("store/bzr")
    );
    TestServer::start_with(store, |settings| {
        settings.public_vcs_location = Some(location);
    })
    .await
}

#[tokio::test]
async fn opened_upstream_gives_canonical_url_vcs_and_colocated_branches() {
    if !have_git() {
        common::skip("git is not installed");
        return;
    }
    let forge = Forge::start().await;
    forge.git_repository(
        "pkg.git",
        &[
            "master",
            "pristine-tar",
            "upstream",
            "patch-queue/master",
            "unrelated",
        ],
    );
    forge.git_repository("tool.git", &["main", "pristine-tar"]);
    forge.bzr_branch("bzr/trunk", 3, "someone@example.org-20200101-abc");
    let server = TestServer::start(Store::Postgres).await;
    // The database knows no VCS for the first two; the probe finds it.
    sql(
        &server,
        &format!(
            "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
                 ('pkg', 'x', '{}', NULL, NULL),
                 ('tool', 'x', '{}', NULL, ''),
                 ('trunk', 'x', '{}', 'bzr', ''),
                 ('gone', 'x', '{}', 'git', ''),
                 ('lost', 'x', '{}', NULL, '');
             INSERT INTO queue (codebase, suite, command, bucket) VALUES
                 ('pkg', 'lintian-fixes', 'lintian-brush', 'update-existing-mp'),
                 ('tool', 'generic', 'true', 'manual'),
                 ('trunk', 'generic', 'true', 'control'),
                 ('gone', 'generic', 'true', 'hook'),
                 ('lost', 'generic', 'true', 'reschedule');",
            forge.url("moved/pkg.git/"),
            forge.url("tool.git,branch=pristine-tar"),
            forge.url("bzr/trunk"),
            forge.url("gone.git"),
            forge.url("lost.git"),
        ),
    )
    .await;

    let debian = assign(&server).await;
    assert_eq!(debian.status, StatusCode::CREATED, "{}", debian.body);
    assert_worker_accepts(&debian.body);
    assert_eq!(debian.body["codebase"], "pkg");
    assert_eq!(
        debian.body["branch"]["url"],
        forge.url("pkg.git"),
        "redirect followed, no trailing /"
    );
    assert_eq!(debian.body["branch"]["vcs_type"], "git");
    assert_eq!(debian.body["branch"]["subpath"], "");
    assert_eq!(
        debian.body["branch"]["additional_colocated_branches"],
        json!(["pristine-tar", "upstream", "patch-queue/master"])
    );
    let stored = server
        .state
        .store
        .get_run(debian.body["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored["vcs"]["branch_url"], forge.url("pkg.git"));

    let generic = assign(&server).await;
    assert_eq!(generic.status, StatusCode::CREATED, "{}", generic.body);
    assert_worker_accepts(&generic.body);
    assert_eq!(generic.body["codebase"], "tool");
    assert_eq!(
        generic.body["branch"]["url"],
        forge.url("tool.git,branch=pristine-tar"),
        "the selected branch stays selected"
    );
    assert_eq!(
        generic.body["branch"]["additional_colocated_branches"],
        json!([])
    );

    let bzr = assign(&server).await;
    assert_eq!(bzr.status, StatusCode::CREATED, "{}", bzr.body);
    assert_worker_accepts(&bzr.body);
    assert_eq!(bzr.body["codebase"], "trunk");
    assert_eq!(bzr.body["branch"]["vcs_type"], "bzr");
    assert_eq!(bzr.body["target_repository"]["vcs_type"], "bzr");

    // Not there: the database's VCS type is used and nothing is colocated.
    let gone = assign(&server).await;
    assert_eq!(gone.status, StatusCode::CREATED, "{}", gone.body);
    assert_worker_accepts(&gone.body);
    assert_eq!(gone.body["codebase"], "gone");
    assert_eq!(gone.body["branch"]["vcs_type"], "git");
    assert_eq!(gone.body["branch"]["url"], forge.url("gone.git"));
    assert_eq!(
        gone.body["branch"]["additional_colocated_branches"],
        Value::Null
    );

    // Not there and no VCS known: finished as unsupported-vcs, never handed out.
    let last = assign(&server).await;
    assert_eq!(
        last.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        last.body
    );
    let (code, description, _) = stored_run(&server, "lost").await;
    assert_eq!(code, "unsupported-vcs");
    assert!(description.unwrap().contains("cannot be opened"));
    server.stop().await;
}

async fn rate_limited_upstream(store: Store) {
    let forge = Forge::start().await;
    let server = TestServer::start(store).await;
    let now = server.clock_now().and_utc().timestamp();
    sql(
        &server,
        &format!(
            "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
                 ('slow', 'x', '{}', 'git', ''),
                 ('slow2', 'x', '{}', 'git', ''),
                 ('nourl', NULL, NULL, NULL, NULL);
             INSERT INTO queue (codebase, suite, command, bucket) VALUES
                 ('slow', 'generic', 'true', 'update-existing-mp'),
                 ('slow2', 'generic', 'true', 'manual'),
                 ('nourl', 'empty-ok', 'debianize', 'default');",
            forge.url("limited/30/slow.git"),
            forge.url(&format!("limited-until/{}/slow2.git", now + 90)),
        ),
    )
    .await;
    let answer = assign(&server).await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_eq!(answer.retry_after.as_deref(), Some("30"));
    assert_eq!(answer.body["host"], forge.host());
    assert!(answer.body["reason"].as_str().unwrap().contains("429"));
    let (code, _, transient) = stored_run(&server, "slow").await;
    assert_eq!(
        (code.as_str(), transient),
        ("pull-rate-limited", Some(true))
    );
    assert_eq!(queue_len(&server).await, 2, "the item was finished");
    assert_eq!(server.state.store.active_run_count().await.unwrap(), 0);

    let status: Value = reqwest::get(server.url("/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        status["rate_limit_hosts"].get(forge.host()).is_some(),
        "{status}"
    );
    // The forge's other codebase is skipped while the host is blocked.
    let next = assign(&server).await;
    assert_eq!(next.status, StatusCode::CREATED, "{}", next.body);
    assert_eq!(next.body["codebase"], "nourl");
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!(
            "rate_limited_host_total{{host=\"{}\"}} 1",
            forge.host()
        )),
        "{metrics}"
    );

    // Once the block is over, the HTTP-date form is honoured too.
    server.clock.advance(chrono::TimeDelta::seconds(31));
    let dated = assign(&server).await;
    assert_eq!(
        dated.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        dated.body
    );
    assert_eq!(dated.retry_after.as_deref(), Some("59"));
    let (code, _, _) = stored_run(&server, "slow2").await;
    assert_eq!(code, "pull-rate-limited");
    server.stop().await;
}

#[tokio::test]
async fn rate_limited_upstream_postgres() {
    rate_limited_upstream(Store::Postgres).await;
}

#[tokio::test]
async fn rate_limited_upstream_redis() {
    rate_limited_upstream(Store::Redis).await;
}

#[tokio::test]
async fn peek_does_not_record_a_rate_limit() {
    let forge = Forge::start().await;
    let server = TestServer::start(Store::Postgres).await;
    sql(
        &server,
        &format!(
            "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
                 ('slow', 'x', '{}', 'git', '');
             INSERT INTO queue (codebase, suite, command) VALUES ('slow', 'generic', 'true');",
            forge.url("limited-bare/slow.git"),
        ),
    )
    .await;
    let response = reqwest::get(server.url("/active-runs/+peek"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers()["retry-after"].to_str().unwrap(),
        "120",
        "no Retry-After from the forge: the default block"
    );
    assert_eq!(queue_len(&server).await, 1);
    assert!(
        server
            .state
            .store
            .rate_limited_hosts(server.clock_now())
            .await
            .unwrap()
            .is_empty()
    );
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM run")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(runs, 0);
    server.stop().await;
}

/// An earlier successful run of `alpha` at `revision`, with one result branch.
async fn earlier_run(server: &TestServer, id: &str, revision: &str, publish_status: &str) {
    sql(
        server,
        &format!(
            "INSERT INTO change_set (id, campaign) VALUES ('cs-{id}', 'lintian-fixes');
             INSERT INTO run (id, command, start_time, finish_time, result_code, suite, logfilenames,
                              change_set, codebase, revision, result, publish_status)
             VALUES ('{id}', 'lintian-brush', now(), now(), 'success', 'lintian-fixes', '{{}}',
                     'cs-{id}', 'alpha', '{revision}', '{{\"fixed\": 2}}', '{publish_status}');
             INSERT INTO new_result_branch (run_id, role, remote_name, base_revision, revision)
             VALUES ('{id}', 'main', 'master', 'base-{id}', '{revision}');"
        ),
    )
    .await;
}

/// The tip breezy finds at `url` (`Branch.open(url).last_revision()`), with the Python named
/// by `JR_BREEZY_PYTHON` (scripts/test installs breezy there); `None` without one.
async fn breezy_tip(url: &str) -> Option<String> {
    let python = std::env::var_os("JR_BREEZY_PYTHON")?;
    let output = tokio::process::Command::new(python)
        .args([
            "-c",
            "import sys\n\
             import breezy.bzr, breezy.git\n\
             from breezy.branch import Branch\n\
             print(Branch.open(sys.argv[1]).last_revision().decode())",
            url,
        ])
        .output()
        .await
        .expect("run JR_BREEZY_PYTHON");
    assert!(
        output.status.success(),
        "breezy cannot open {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8(output.stdout).unwrap().trim().to_string())
}

async fn resumes_from_the_store(store: Store) {
    if !have_git() {
        common::skip("git is not installed");
        return;
    }
    let forge = Forge::start().await;
    let tips = forge.git_repository(
        "store/git/alpha",
        &["master", "lintian-fixes/main", "debian/latest"],
    );
    let server = server_with_store(store, &forge).await;
    sql(
        &server,
        "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
             ('alpha', 'x', 'http://127.0.0.1:1/alpha.git', 'git', '');",
    )
    .await;
    // Runs record the worker's revision ids (`git-v1:<sha>`), which the store's tip must match.
    let tip = format!("git-v1:{}", tips[1]);
    earlier_run(
        &server,
        "older",
        "git-v1:0000000000000000000000000000000000000000",
        "unknown",
    )
    .await;
    earlier_run(&server, "earlier", &tip, "unknown").await;
    sql(
        &server,
        "INSERT INTO queue (codebase, suite, command) VALUES ('alpha', 'lintian-fixes', 'lintian-brush');",
    )
    .await;
    let answer = assign(&server).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    assert_worker_accepts(&answer.body);
    assert_eq!(
        answer.body["resume"],
        json!({
            "run_id": "earlier",
            "result": {"fixed": 2},
            "branch_url": forge.url(
                "store/git/alpha,branch=lintian-fixes%2Fmain,name=lintian-fixes%2Fmain"
            ),
            "branches": [["main", "master", "base-earlier", tip]],
        })
    );
    // Breezy (the site, the publisher) opens the URLs the worker is given at the branch named,
    // not at the repository's default branch.
    let resume_url = answer.body["resume"]["branch_url"].as_str().unwrap();
    let cached_url = answer.body["branch"]["cached_url"].as_str().unwrap();
    match breezy_tip(resume_url).await {
        Some(found) => {
            assert_eq!(found, tip, "{resume_url}");
            assert_eq!(
                breezy_tip(cached_url).await.as_deref(),
                Some(format!("git-v1:{}", tips[2]).as_str()),
                "{cached_url}"
            );
        }
        None => common::skip("JR_BREEZY_PYTHON is not set: store URLs not opened with breezy"),
    }
    let stored = server
        .state
        .store
        .get_run(answer.body["id"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored["resume_from"], "earlier");
    server.stop().await;
}

#[tokio::test]
async fn resumes_from_the_store_postgres() {
    resumes_from_the_store(Store::Postgres).await;
}

#[tokio::test]
async fn resumes_from_the_store_redis() {
    resumes_from_the_store(Store::Redis).await;
}

#[tokio::test]
async fn no_resume_when_rejected_refreshed_or_unknown() {
    if !have_git() {
        common::skip("git is not installed");
        return;
    }
    let forge = Forge::start().await;
    let tips = forge.git_repository("store/git/alpha", &["master", "lintian-fixes/main"]);
    let server = server_with_store(Store::Postgres, &forge).await;
    sql(
        &server,
        "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
             ('alpha', 'x', 'http://127.0.0.1:1/alpha.git', 'git', '');
         INSERT INTO queue (codebase, suite, command) VALUES ('alpha', 'lintian-fixes', 'lintian-brush');",
    )
    .await;
    // No run at the tip.
    let peeked = peek(&server).await;
    assert_eq!(peeked["resume"], Value::Null, "{peeked}");

    // A run recording the bare sha is not the worker's revision id for the tip.
    earlier_run(&server, "bare-sha", &tips[1], "unknown").await;
    let peeked = peek(&server).await;
    assert_eq!(peeked["resume"], Value::Null, "{peeked}");

    // The run at the tip was rejected.
    earlier_run(
        &server,
        "rejected",
        &format!("git-v1:{}", tips[1]),
        "rejected",
    )
    .await;
    let peeked = peek(&server).await;
    assert_eq!(peeked["resume"], Value::Null, "{peeked}");

    // Approved now, but the item asks for a refresh.
    sql(
        &server,
        "UPDATE run SET publish_status = 'approved'; UPDATE queue SET refresh = true;",
    )
    .await;
    let peeked = peek(&server).await;
    assert_eq!(peeked["resume"], Value::Null, "{peeked}");
    sql(&server, "UPDATE queue SET refresh = false;").await;
    let peeked = peek(&server).await;
    assert_eq!(peeked["resume"]["run_id"], "rejected", "{peeked}");

    // A worker was given that resume and could not open the branch: not offered again.
    sql(
        &server,
        "INSERT INTO change_set (id, campaign) VALUES ('cs-missing', 'lintian-fixes');
         INSERT INTO run (id, command, start_time, finish_time, result_code, suite,
                          logfilenames, change_set, codebase, resume_from)
         VALUES ('missing', 'lintian-brush', now(), now(), 'worker-resume-branch-missing',
                 'lintian-fixes', '{}', 'cs-missing', 'alpha', 'rejected');",
    )
    .await;
    let peeked = peek(&server).await;
    assert_eq!(peeked["resume"], Value::Null, "{peeked}");
    server.stop().await;
}

#[tokio::test]
async fn rate_limited_store_gives_resume_rate_limited() {
    let forge = Forge::start().await;
    let location = format!(
        "git={},bzr={}",
        forge.url("limited/45/git"),
        forge.url("bzr")
    );
    let server = TestServer::start_with(Store::Postgres, |settings| {
        settings.public_vcs_location = Some(location);
    })
    .await;
    sql(
        &server,
        "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath) VALUES
             ('alpha', 'x', 'http://127.0.0.1:1/alpha.git', 'git', '');
         INSERT INTO queue (codebase, suite, command) VALUES ('alpha', 'generic', 'true');",
    )
    .await;
    let answer = assign(&server).await;
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_eq!(answer.retry_after.as_deref(), Some("45"));
    let (code, _, transient) = stored_run(&server, "alpha").await;
    assert_eq!(
        (code.as_str(), transient),
        ("resume-rate-limited", Some(true))
    );
    server.stop().await;
}
