//! Opening branches over HTTP before an assignment: the codebase's upstream branch (to learn
//! its canonical URL, its VCS, its colocated branches and its tip) and the janitor's own
//! store branches (to find a run to resume from).
//!
//! Git is read through the smart-HTTP ref advertisement (`info/refs?service=git-upload-pack`),
//! Bazaar through the branch's control files (`.bzr/branch-format`, `.bzr/branch/last-revision`).
//! Nothing is cloned: the runner only needs names and revisions. Every request has a timeout,
//! and an HTTP 429 comes back as [`OpenError::RateLimited`] with the server's `Retry-After`.

use std::time::Duration;

use chrono::{NaiveDateTime, TimeDelta};

use crate::assign::branch_url::split_segment_parameters;

/// How long opening an upstream branch may take (Python `REMOTE_BRANCH_OPEN_TIMEOUT`).
pub const REMOTE_BRANCH_OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long opening a branch in the janitor's VCS store may take
/// (Python `VCS_STORE_BRANCH_OPEN_TIMEOUT`).
pub const VCS_STORE_BRANCH_OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a host stays blocked when its 429 names no time (Python `DEFAULT_RETRY_AFTER`).
pub const DEFAULT_RETRY_AFTER: TimeDelta = TimeDelta::seconds(120);
/// The longest block a `Retry-After` can ask for: a wrong header must not shut a forge out
/// for good.
pub const MAXIMUM_RETRY_AFTER: TimeDelta = TimeDelta::days(1);

const GIT_ADVERTISEMENT: &str = "application/x-git-upload-pack-advertisement";

/// A branch that could be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedBranch {
    /// The URL after redirects, with the original segment parameters and no trailing `/`.
    pub url: String,
    /// `git` or `bzr`.
    pub vcs_type: &'static str,
    /// The branch's name in its repository (git: the head's name); `None` for Bazaar.
    pub name: Option<String>,
    /// The tip revision (git: hex object id; Bazaar: revision id); `None` for an empty branch.
    pub tip: Option<String>,
    /// Every branch of the same repository (git heads); empty for Bazaar.
    pub branch_names: Vec<String>,
}

/// When a rate-limited host may be asked again, as its `Retry-After` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// This many seconds after the 429.
    Seconds(u64),
    /// At this time (UTC).
    At(NaiveDateTime),
}

impl RetryAfter {
    /// Seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        if let Ok(seconds) = header.parse::<u64>() {
            return Some(Self::Seconds(seconds));
        }
        let at = httpdate::parse_http_date(header).ok()?;
        let at: chrono::DateTime<chrono::Utc> = at.into();
        Some(Self::At(at.naive_utc()))
    }

    /// The end of the block, for a 429 seen at `now`.
    pub fn until(self, now: NaiveDateTime) -> NaiveDateTime {
        match self {
            Self::Seconds(seconds) => {
                let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
                now.checked_add_signed(TimeDelta::try_seconds(seconds).unwrap_or(TimeDelta::MAX))
                    .unwrap_or(NaiveDateTime::MAX)
            }
            Self::At(at) => at,
        }
    }
}

/// A server told us to slow down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimited {
    /// The host that answered 429 (with its port, if the URL had one).
    pub host: String,
    /// The URL that answered 429 (after redirects).
    pub url: String,
    /// The server's `Retry-After`, if it sent one that could be read.
    pub retry_after: Option<RetryAfter>,
}

impl RateLimited {
    /// The end of the block: the server's time (at most [`MAXIMUM_RETRY_AFTER`] away), or
    /// [`DEFAULT_RETRY_AFTER`] from `now`.
    pub fn until(&self, now: NaiveDateTime) -> NaiveDateTime {
        match self.retry_after {
            Some(retry_after) => retry_after.until(now).min(now + MAXIMUM_RETRY_AFTER),
            None => now + DEFAULT_RETRY_AFTER,
        }
    }
}

impl std::fmt::Display for RateLimited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} answered 429 Too Many Requests for {}",
            self.host, self.url
        )?;
        match self.retry_after {
            Some(RetryAfter::Seconds(seconds)) => write!(f, " (retry after {seconds} s)"),
            Some(RetryAfter::At(at)) => write!(f, " (retry after {at})"),
            None => Ok(()),
        }
    }
}

/// Why a branch could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The server answered 429 Too Many Requests.
    #[error("{0}")]
    RateLimited(RateLimited),
    /// Not there, or not a branch: the assignment goes on without it.
    #[error("{0}")]
    Unavailable(String),
    /// The host did not answer: the connection was refused or timed out, or a request on it
    /// did (or on the host a redirect led to: reqwest does not say which). The assignment
    /// goes on without the branch, and the other VCS is not tried on that URL.
    #[error("{0}")]
    Unreachable(String),
}

fn unavailable(message: impl Into<String>) -> OpenError {
    OpenError::Unavailable(message.into())
}

/// The `host[:port]` of a URL, as the queue's host exclusion matches it.
pub fn url_host(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let host = parsed.host_str()?;
    Some(match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    })
}

/// The kind of forge a host is, as the metrics label it: `github`, `gitlab` (gitlab.com,
/// salsa.debian.org, any `gitlab.` host), `launchpad`, or `other`.
pub fn forge_kind(host: &str) -> &'static str {
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if under("github.com") {
        "github"
    } else if under("gitlab.com") || under("salsa.debian.org") || host.starts_with("gitlab.") {
        "gitlab"
    } else if under("launchpad.net") {
        "launchpad"
    } else {
        "other"
    }
}

/// Opens branches over HTTP with one connection pool and a fixed timeout per request.
#[derive(Debug, Clone)]
pub struct BranchOpener {
    client: reqwest::Client,
}

impl BranchOpener {
    /// An opener whose requests (and connections) give up after `timeout`, sending
    /// `user_agent`.
    pub fn new(timeout: Duration, user_agent: &str) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(user_agent)
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()?;
        Ok(Self { client })
    }

    /// Opens the branch at `url` (breezy form: `,branch=<name>` selects a git branch), trying
    /// the VCS the database names first, then the other one.
    pub async fn open(&self, url: &str, vcs_hint: Option<&str>) -> Result<OpenedBranch, OpenError> {
        let (base, parameters) =
            split_segment_parameters(url).map_err(|e| unavailable(e.to_string()))?;
        let scheme = url::Url::parse(&base)
            .map_err(|e| unavailable(format!("invalid URL {url:?}: {e}")))?
            .scheme()
            .to_string();
        if scheme != "http" && scheme != "https" {
            return Err(unavailable(format!(
                "cannot probe {scheme}: URLs over HTTP"
            )));
        }
        let suffix = &url.trim_end_matches('/')[base.trim_end_matches('/').len()..];
        let branch = match parameters.get("branch") {
            Some(name) => Some(
                percent_encoding::percent_decode_str(name)
                    .decode_utf8()
                    .map_err(|_| unavailable(format!("branch name in {url:?} is not UTF-8")))?
                    .into_owned(),
            ),
            None => None,
        };
        let order: [&str; 2] = match vcs_hint.map(str::to_ascii_lowercase).as_deref() {
            Some("bzr") => ["bzr", "git"],
            _ => ["git", "bzr"],
        };
        let mut failures = Vec::new();
        for vcs in order {
            let opened = match vcs {
                "git" => self.open_git(&base, branch.as_deref()).await,
                _ => self.open_bzr(&base).await,
            };
            match opened {
                Ok(mut opened) => {
                    opened.url = format!("{}{suffix}", opened.url)
                        .trim_end_matches('/')
                        .to_string();
                    return Ok(opened);
                }
                Err(OpenError::RateLimited(limited)) => {
                    return Err(OpenError::RateLimited(limited));
                }
                Err(OpenError::Unavailable(message)) => failures.push(format!("{vcs}: {message}")),
                // The other VCS's probe would go to the same host: with a host that is down
                // it would only double the wait (two timeouts before the assignment).
                Err(OpenError::Unreachable(message)) => {
                    return Err(OpenError::Unreachable(format!(
                        "no branch at {url}: {vcs}: {message}"
                    )));
                }
            }
        }
        Err(unavailable(format!(
            "no branch at {url}: {}",
            failures.join("; ")
        )))
    }

    async fn open_git(&self, base: &str, branch: Option<&str>) -> Result<OpenedBranch, OpenError> {
        let (final_url, refs) = self.git_refs(base).await?;
        let repository = final_url.ok_or_else(|| unavailable("not a git repository"))?;
        let (name, tip) = match branch {
            Some(name) => match refs.head(name) {
                Some(tip) => (Some(name.to_string()), Some(tip.to_string())),
                None => {
                    return Err(unavailable(format!(
                        "git repository has no branch {name:?}"
                    )));
                }
            },
            None => (
                refs.head_target().map(str::to_string),
                refs.get("HEAD").map(str::to_string),
            ),
        };
        Ok(OpenedBranch {
            url: repository,
            vcs_type: "git",
            name,
            tip,
            branch_names: refs.head_names(),
        })
    }

    /// The ref advertisement of the git repository at `base`, and the repository URL after
    /// redirects (`None` when the server is not a git smart-HTTP server).
    async fn git_refs(&self, base: &str) -> Result<(Option<String>, GitRefs), OpenError> {
        let base = base.trim_end_matches('/');
        let url = format!("{base}/info/refs?service=git-upload-pack");
        let response = self.get(&url).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok((None, GitRefs::default()));
        }
        let is_git = response.status().is_success()
            && response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(GIT_ADVERTISEMENT));
        if !is_git {
            return Ok((None, GitRefs::default()));
        }
        let mut repository = response.url().clone();
        repository.set_query(None);
        let repository = repository
            .as_str()
            .trim_end_matches("/info/refs")
            .to_string();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("reading {url}: {e}")))?;
        let refs = GitRefs::parse(&body).map_err(|e| unavailable(format!("{url}: {e}")))?;
        Ok((Some(repository), refs))
    }

    async fn open_bzr(&self, base: &str) -> Result<OpenedBranch, OpenError> {
        let base = base.trim_end_matches('/');
        let format_url = format!("{base}/.bzr/branch-format");
        let response = self.get(&format_url).await?;
        if !response.status().is_success() {
            return Err(unavailable(format!(
                "{format_url} answered {}",
                response.status()
            )));
        }
        let branch = response
            .url()
            .as_str()
            .trim_end_matches("/.bzr/branch-format")
            .to_string();
        let format = response
            .bytes()
            .await
            .map_err(|e| unavailable(format!("reading {format_url}: {e}")))?;
        if !format.starts_with(b"Bazaar") {
            return Err(unavailable(format!(
                "{format_url} is not a Bazaar format marker"
            )));
        }
        let tip = self.bzr_tip(&branch).await?;
        Ok(OpenedBranch {
            url: branch,
            vcs_type: "bzr",
            name: None,
            tip,
            branch_names: Vec::new(),
        })
    }

    /// The last revision of the Bazaar branch at `branch`, `None` when it has none (or is not
    /// there).
    async fn bzr_tip(&self, branch: &str) -> Result<Option<String>, OpenError> {
        let url = format!("{}/.bzr/branch/last-revision", branch.trim_end_matches('/'));
        let response = self.get(&url).await?;
        if !response.status().is_success() {
            return Ok(None);
        }
        let text = response
            .text()
            .await
            .map_err(|e| unavailable(format!("reading {url}: {e}")))?;
        Ok(parse_bzr_last_revision(&text))
    }

    /// The tip of branch `branch` in the git repository at `repository`; `None` when there is
    /// no such repository or branch.
    pub async fn git_branch_tip(
        &self,
        repository: &str,
        branch: &str,
    ) -> Result<Option<String>, OpenError> {
        let (_, refs) = self.git_refs(repository).await?;
        Ok(refs.head(branch).map(str::to_string))
    }

    /// The tip of the Bazaar branch at `url`.
    pub async fn bzr_branch_tip(&self, url: &str) -> Result<Option<String>, OpenError> {
        self.bzr_tip(url).await
    }

    async fn get(&self, url: &str) -> Result<reqwest::Response, OpenError> {
        let response = crate::telemetry::propagation::traced(self.client.get(url))
            .send()
            .await
            .map_err(|e| {
                let reason = format!("{url}: {}", describe_request_error(&e));
                if e.is_connect() || e.is_timeout() {
                    OpenError::Unreachable(reason)
                } else {
                    OpenError::Unavailable(reason)
                }
            })?;
        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(RetryAfter::parse);
            let answered = response.url().as_str();
            return Err(OpenError::RateLimited(RateLimited {
                host: url_host(answered).unwrap_or_default(),
                url: answered.to_string(),
                retry_after,
            }));
        }
        Ok(response)
    }
}

fn describe_request_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_string()
    } else if error.is_connect() {
        "could not connect".to_string()
    } else {
        error.to_string()
    }
}

/// `<revno> <revision id>` → the revision id; `null:` (an empty branch) → `None`.
pub(crate) fn parse_bzr_last_revision(text: &str) -> Option<String> {
    let revision = text.trim().split_once(' ')?.1.trim();
    (revision != "null:" && !revision.is_empty()).then(|| revision.to_string())
}

/// The refs a git server advertises.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitRefs {
    refs: Vec<(String, String)>,
    /// Where `HEAD` points (`symref=HEAD:refs/heads/main`).
    head_symref: Option<String>,
}

/// A git ref advertisement that cannot be parsed, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed ref advertisement: {0}")]
pub struct AdvertisementError(&'static str);

impl GitRefs {
    /// Parses a smart-HTTP v0 advertisement: the `# service=` announcement, a flush, then one
    /// `<id> <ref>` line per ref, the first carrying the capabilities after a NUL.
    pub fn parse(body: &[u8]) -> Result<Self, AdvertisementError> {
        let mut rest = body;
        let mut refs = Vec::new();
        let mut head_symref = None;
        let mut first_ref = true;
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(AdvertisementError("truncated packet length"));
            }
            let length = std::str::from_utf8(&rest[..4])
                .ok()
                .and_then(|hex| usize::from_str_radix(hex, 16).ok())
                .ok_or(AdvertisementError("packet length is not hex"))?;
            if length == 0 {
                rest = &rest[4..];
                continue;
            }
            if length < 4 || length > rest.len() {
                return Err(AdvertisementError("packet length out of range"));
            }
            let line = &rest[4..length];
            rest = &rest[length..];
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            if line.starts_with(b"# service=") {
                continue;
            }
            let (reference, capabilities) = match line.iter().position(|&b| b == 0) {
                Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
                None => (line, None),
            };
            if first_ref {
                first_ref = false;
                if let Some(capabilities) = capabilities {
                    head_symref = String::from_utf8_lossy(capabilities)
                        .split(' ')
                        .find_map(|c| c.strip_prefix("symref=HEAD:").map(str::to_string));
                }
            }
            let reference = std::str::from_utf8(reference)
                .map_err(|_| AdvertisementError("ref line is not UTF-8"))?;
            let (id, name) = reference
                .split_once(' ')
                .ok_or(AdvertisementError("ref line without a name"))?;
            if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(AdvertisementError("object id is not hex"));
            }
            // An empty repository advertises a zero id named `capabilities^{}`; peeled tags end
            // in `^{}`. Neither is a ref.
            if name.ends_with("^{}") {
                continue;
            }
            refs.push((name.to_string(), id.to_string()));
        }
        Ok(Self { refs, head_symref })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.refs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id.as_str())
    }

    /// The tip of branch `name` (`refs/heads/<name>`).
    pub fn head(&self, name: &str) -> Option<&str> {
        self.get(&format!("refs/heads/{name}"))
    }

    /// The branch `HEAD` points at.
    pub fn head_target(&self) -> Option<&str> {
        self.head_symref
            .as_deref()
            .and_then(|target| target.strip_prefix("refs/heads/"))
    }

    /// The names of all advertised branches (`refs/heads/*`).
    pub fn head_names(&self) -> Vec<String> {
        self.refs
            .iter()
            .filter_map(|(name, _)| name.strip_prefix("refs/heads/").map(str::to_string))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that takes connections and never answers: the git probe times out, and the
    /// Bazaar probe is not sent to it as well.
    #[tokio::test]
    async fn a_host_that_does_not_answer_is_asked_once() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let silent = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        let opener = BranchOpener::new(Duration::from_millis(300), "test").unwrap();
        let url = format!("http://{address}/repo");
        let opened = opener.open(&url, None).await;
        assert!(
            matches!(&opened, Err(OpenError::Unreachable(reason)) if reason.contains("git: ") && reason.contains("timed out")),
            "{opened:?}"
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Asked for Bazaar first, the git probe is the one left out.
        let opened = opener.open(&url, Some("bzr")).await;
        assert!(
            matches!(&opened, Err(OpenError::Unreachable(reason)) if reason.contains("bzr: ")),
            "{opened:?}"
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        silent.abort();
    }

    /// A refused connection is unreachable too; a server that answers 404 to both probes is
    /// merely unavailable, after both were asked.
    #[tokio::test]
    async fn refused_and_missing_branches_differ() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let opener = BranchOpener::new(Duration::from_secs(5), "test").unwrap();
        let opened = opener
            .open(&format!("http://127.0.0.1:{port}/repo"), None)
            .await;
        assert!(
            matches!(&opened, Err(OpenError::Unreachable(reason)) if reason.contains("could not connect")),
            "{opened:?}"
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let requests = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = requests.clone();
        let server = tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    while let Ok(n) = socket.read(&mut buffer).await {
                        if n == 0 {
                            break;
                        }
                        let head = String::from_utf8_lossy(&buffer[..n]).to_string();
                        let line = head.lines().next().unwrap_or_default().to_string();
                        seen.lock().unwrap().push(line);
                        let answer = "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let opened = opener.open(&format!("http://{address}/repo"), None).await;
        assert!(
            matches!(&opened, Err(OpenError::Unavailable(_))),
            "{opened:?}"
        );
        let asked = requests.lock().unwrap().clone();
        assert_eq!(
            asked,
            [
                "GET /repo/info/refs?service=git-upload-pack HTTP/1.1",
                "GET /repo/.bzr/branch-format HTTP/1.1"
            ]
        );
        server.abort();
    }

    fn pkt(line: &str) -> String {
        format!("{:04x}{line}", line.len() + 4)
    }

    #[test]
    fn parses_an_advertisement() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let body = format!(
            "{}0000{}{}{}0000",
            pkt("# service=git-upload-pack\n"),
            pkt(&format!(
                "{a} HEAD\0multi_ack symref=HEAD:refs/heads/main agent=git/2\n"
            )),
            pkt(&format!("{a} refs/heads/main\n")),
            pkt(&format!("{b} refs/heads/pristine-tar\n")),
        );
        let refs = GitRefs::parse(body.as_bytes()).expect("parses");
        assert_eq!(refs.head_target(), Some("main"));
        assert_eq!(refs.get("HEAD"), Some(a.as_str()));
        assert_eq!(refs.head("pristine-tar"), Some(b.as_str()));
        assert_eq!(refs.head_names(), vec!["main", "pristine-tar"]);
    }

    #[test]
    fn an_empty_repository_has_no_refs() {
        let zero = "0".repeat(40);
        let body = format!(
            "{}0000{}0000",
            pkt("# service=git-upload-pack\n"),
            pkt(&format!("{zero} capabilities^{{}}\0agent=git/2\n")),
        );
        let refs = GitRefs::parse(body.as_bytes()).expect("parses");
        assert!(refs.head_names().is_empty());
        assert_eq!(refs.get("HEAD"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(GitRefs::parse(b"<html>").is_err());
        assert!(GitRefs::parse(b"00ff short").is_err());
        assert!(GitRefs::parse(b"0003").is_err());
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(RetryAfter::parse("60"), Some(RetryAfter::Seconds(60)));
        let date = RetryAfter::parse("Wed, 21 Oct 2015 07:28:00 GMT").expect("date");
        assert_eq!(
            date,
            RetryAfter::At(
                chrono::NaiveDate::from_ymd_opt(2015, 10, 21)
                    .and_then(|d| d.and_hms_opt(7, 28, 0))
                    .expect("valid")
            )
        );
        assert_eq!(RetryAfter::parse("soon"), None);
        assert_eq!(RetryAfter::parse("-5"), None);
        let now = chrono::DateTime::from_timestamp(0, 0)
            .expect("epoch")
            .naive_utc();
        assert_eq!(
            RetryAfter::Seconds(u64::MAX).until(now),
            NaiveDateTime::MAX,
            "huge values saturate instead of overflowing"
        );
        let limited = RateLimited {
            host: "h".into(),
            url: "u".into(),
            retry_after: None,
        };
        assert_eq!(limited.until(now), now + DEFAULT_RETRY_AFTER);
        let far = RateLimited {
            retry_after: Some(RetryAfter::Seconds(10_000_000)),
            ..limited
        };
        assert_eq!(far.until(now), now + MAXIMUM_RETRY_AFTER);
    }

    #[test]
    fn bzr_last_revision() {
        assert_eq!(
            parse_bzr_last_revision("12 jelmer@example.org-2020-abc\n").as_deref(),
            Some("jelmer@example.org-2020-abc")
        );
        assert_eq!(parse_bzr_last_revision("0 null:\n"), None);
        assert_eq!(parse_bzr_last_revision(""), None);
    }

    #[test]
    fn hosts_keep_ports() {
        assert_eq!(
            url_host("https://git.example.org/x").as_deref(),
            Some("git.example.org")
        );
        assert_eq!(url_host("http://user@h:8080/x").as_deref(), Some("h:8080"));
        assert_eq!(url_host("not a url"), None);
    }
}
