//! Logs in S3-compatible storage, end to end: a runner process whose `logs_location` is an
//! `http://` endpoint finishes a run, and the log is read back from the S3 server (moto,
//! installed into `.venv` by `scripts/test`; `JR_MOTO_SERVER` names another binary).

use crate::common;
use crate::common::process;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

struct S3Server {
    child: Child,
    url: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_server() -> Option<PathBuf> {
    let path = std::env::var_os("JR_MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server"));
    path.is_file().then_some(path)
}

async fn start_s3(binary: &std::path::Path) -> S3Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let server = S3Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..200 {
        if client.get(&server.url).send().await.is_ok() {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start on port {port}");
}

const BOUNDARY: &str = "jr-object-storage-boundary";

fn finish_body(log: &str) -> Vec<u8> {
    let mut body = String::new();
    for (name, filename, content) in [
        ("result", "result.json", r#"{"description": "done"}"#),
        ("file", "worker.log", log),
    ] {
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\n\r\n{content}\r\n"
        ));
    }
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    body.into_bytes()
}

#[tokio::test]
async fn logs_go_to_s3() {
    let Some(binary) = moto_server() else {
        common::skip("moto_server not found (scripts/test installs it into .venv)");
        return;
    };
    let s3 = start_s3(&binary).await;
    let client = reqwest::Client::new();
    let created = client
        .put(format!("{}/debian-janitor", s3.url))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    let db = common::migrated_database().await;
    sqlx::raw_sql(
        "INSERT INTO codebase (name, url, branch_url, vcs_type, subpath)
         VALUES ('alpha', 'x', 'http://127.0.0.1:1/alpha.git', 'git', '');
         INSERT INTO queue (codebase, suite, command) VALUES ('alpha', 'generic', 'true');",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("janitor.conf");
    std::fs::write(
        &config,
        format!(
            "logs_location: \"{}\"\nartifact_location: \"{}\"\n\
             campaign {{ name: \"generic\" command: \"true\" branch_name: \"main\" generic_build {{}} }}\n",
            s3.url,
            dir.path().join("artifacts").display()
        ),
    )
    .unwrap();
    let runner = process::start_runner(
        &db.url,
        &config,
        None,
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ],
    );

    let assignment: Value = client
        .post(format!("{}/active-runs", runner.url))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = assignment["id"]
        .as_str()
        .expect("an assignment")
        .to_string();
    let log = "line one\nline two\n".repeat(1000);
    let finished = client
        .post(format!("{}/active-runs/{run_id}/finish", runner.url))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(finish_body(&log))
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), reqwest::StatusCode::CREATED);
    let finished: Value = finished.json().await.unwrap();
    assert_eq!(finished["logs"], serde_json::json!(["worker.log"]));

    // Python's S3 layout: bucket debian-janitor, key logs/<codebase>/<run_id>/<name>.gz.
    let object = client
        .get(format!(
            "{}/debian-janitor/logs/alpha/{run_id}/worker.log.gz",
            s3.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(object.status(), reqwest::StatusCode::OK);
    let compressed = object.bytes().await.unwrap();
    let mut decoder = flate2::read::GzDecoder::new(&compressed[..]);
    let mut text = String::new();
    decoder.read_to_string(&mut text).unwrap();
    assert_eq!(text, log);
    let finish_time: chrono::NaiveDateTime =
        sqlx::query_scalar("SELECT finish_time FROM run WHERE id = $1")
            .bind(&run_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let mtime = decoder.header().expect("gzip header").mtime();
    assert_eq!(i64::from(mtime), finish_time.and_utc().timestamp());
    drop(runner);
    db.drop_now().await;
}
