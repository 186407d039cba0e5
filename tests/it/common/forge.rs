//! A small HTTP forge for assignment tests: real git repositories (made with the `git`
//! command) served over git's smart-HTTP ref advertisement, plain files (Bazaar branches),
//! redirects, and hosts that answer 429.
//!
//! Paths:
//! - `/moved/<rest>` redirects (301) to `/<rest>`;
//! - `/limited/<seconds>/<rest>` answers 429 with `Retry-After: <seconds>`;
//! - `/limited-until/<unix time>/<rest>` answers 429 with `Retry-After` as an HTTP date;
//! - `/limited-bare/<rest>` answers 429 without `Retry-After`;
//! - `<repo>/info/refs?service=git-upload-pack` advertises the refs of the git repository
//!   `<root>/<repo>` as `git upload-pack --advertise-refs` prints them;
//! - anything else is a file below the root, or 404.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

pub struct Forge {
    pub addr: SocketAddr,
    pub root: tempfile::TempDir,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for Forge {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl Forge {
    pub async fn start() -> Self {
        let root = tempfile::tempdir().expect("forge root");
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(root.path().to_path_buf());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind forge");
        let addr = listener.local_addr().expect("forge address");
        let handle = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("forge serves");
        });
        Self { addr, root, handle }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// `host:port` of the forge, as rate limiting records it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// A bare git repository at `<root>/<name>`: the first branch (`HEAD`) has one commit,
    /// each other branch one more commit of its own on top of it, so every branch has its own
    /// tip; returns the tip of each branch.
    pub fn git_repository(&self, name: &str, branches: &[&str]) -> Vec<String> {
        let bare = self.root.path().join(name);
        let work = tempfile::tempdir().expect("work tree");
        git(work.path(), &["init", "-q", "-b", branches[0]]);
        std::fs::write(work.path().join("README"), name).unwrap();
        git(work.path(), &["add", "README"]);
        git(work.path(), &["commit", "-q", "-m", "initial"]);
        for branch in &branches[1..] {
            git(work.path(), &["checkout", "-q", "-b", branch, branches[0]]);
            git(
                work.path(),
                &["commit", "-q", "--allow-empty", "-m", branch],
            );
        }
        // The clone's HEAD follows the work tree's.
        git(work.path(), &["checkout", "-q", branches[0]]);
        std::fs::create_dir_all(bare.parent().unwrap()).unwrap();
        git(
            self.root.path(),
            &[
                "clone",
                "-q",
                "--bare",
                work.path().to_str().unwrap(),
                bare.to_str().unwrap(),
            ],
        );
        branches
            .iter()
            .map(|branch| rev_parse(&bare, &format!("refs/heads/{branch}")))
            .collect()
    }

    /// A Bazaar branch's control files at `<root>/<name>`, with the given last revision.
    pub fn bzr_branch(&self, name: &str, revno: u32, revision: &str) {
        let control = self.root.path().join(name).join(".bzr");
        std::fs::create_dir_all(control.join("branch")).unwrap();
        std::fs::write(
            control.join("branch-format"),
            "Bazaar-NG meta directory, format 1\n",
        )
        .unwrap();
        std::fs::write(
            control.join("branch/last-revision"),
            format!("{revno} {revision}\n"),
        )
        .unwrap();
    }
}

/// Whether the `git` command is available (the probing tests need it to make repositories).
pub fn have_git() -> bool {
    Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn git(dir: &Path, args: &[&str]) {
    let output = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.org"])
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn rev_parse(repository: &Path, reference: &str) -> String {
    let output = Command::new("git")
        .arg("--git-dir")
        .arg(repository)
        .args(["rev-parse", reference])
        .output()
        .expect("git rev-parse");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn pkt_line(text: &str) -> String {
    format!("{:04x}{text}", text.len() + 4)
}

async fn serve(State(root): State<PathBuf>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let rest = path.trim_start_matches('/');
    if let Some(target) = rest.strip_prefix("moved/") {
        let location = match query.is_empty() {
            true => format!("/{target}"),
            false => format!("/{target}?{query}"),
        };
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    if let Some(limited) = rest.strip_prefix("limited/") {
        let seconds = limited.split('/').next().unwrap_or("60").to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds)],
        )
            .into_response();
    }
    if let Some(limited) = rest.strip_prefix("limited-until/") {
        let unix: u64 = limited.split('/').next().unwrap().parse().unwrap();
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, httpdate::fmt_http_date(at))],
        )
            .into_response();
    }
    if rest.starts_with("limited-bare/") {
        return StatusCode::TOO_MANY_REQUESTS.into_response();
    }
    if let Some(repo) = rest.strip_suffix("/info/refs") {
        let dir = root.join(repo);
        if query != "service=git-upload-pack" || !dir.join("HEAD").is_file() {
            return StatusCode::NOT_FOUND.into_response();
        }
        let output = tokio::process::Command::new("git")
            .args(["upload-pack", "--stateless-rpc", "--advertise-refs"])
            .arg(&dir)
            .output()
            .await
            .expect("git upload-pack");
        let mut body = format!("{}0000", pkt_line("# service=git-upload-pack\n")).into_bytes();
        body.extend_from_slice(&output.stdout);
        return (
            [(
                header::CONTENT_TYPE,
                "application/x-git-upload-pack-advertisement",
            )],
            Body::from(body),
        )
            .into_response();
    }
    let file = root.join(rest);
    if rest.split('/').any(|part| part == "..") || !file.is_file() {
        return StatusCode::NOT_FOUND.into_response();
    }
    std::fs::read(file).unwrap().into_response()
}
