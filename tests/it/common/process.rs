//! A `janitor-runner` process started from the built binary, on loopback ports; killed on
//! drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Runner {
    child: Child,
    /// The internal app's base URL.
    pub url: String,
    /// What the process wrote to stderr so far, line by line, when it was captured.
    pub stderr: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Runner {
    /// Sends SIGTERM, as a service manager stops the runner.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it still runs.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `host:port` of the internal app.
    pub fn address(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }
}

/// Starts a runner on `database_url` with `config`, the PostgreSQL store unless `redis` gives
/// a URL and key prefix (then claims live in Redis alone, `--claims-in-redis`), and `env`
/// added to its environment; returns once it listens.
pub fn start_runner(
    database_url: &str,
    config: &std::path::Path,
    redis: Option<(&str, &str)>,
    env: &[(&str, &str)],
) -> Runner {
    start_runner_with_args(database_url, config, redis, env, &[])
}

/// `start_runner` with more command-line arguments.
pub fn start_runner_with_args(
    database_url: &str,
    config: &std::path::Path,
    redis: Option<(&str, &str)>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Runner {
    start(database_url, config, redis, env, args, false)
}

/// `start_runner_with_args` with its stderr kept in `Runner::stderr`.
pub fn start_runner_capturing_stderr(
    database_url: &str,
    config: &std::path::Path,
    env: &[(&str, &str)],
    args: &[&str],
) -> Runner {
    start(database_url, config, None, env, args, true)
}

fn start(
    database_url: &str,
    config: &std::path::Path,
    redis: Option<(&str, &str)>,
    env: &[(&str, &str)],
    args: &[&str],
    capture_stderr: bool,
) -> Runner {
    let mut command = Command::new(env!("CARGO_BIN_EXE_janitor-runner"));
    command
        .args(["--config", config.to_str().unwrap()])
        .args(["--database-url", database_url])
        .args([
            "--listen-address",
            "127.0.0.1",
            "--port",
            "0",
            "--public-port",
            "0",
        ])
        .args(["--public-vcs-location", "http://127.0.0.1:1/vcs/"])
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(if capture_stderr {
            Stdio::piped()
        } else {
            Stdio::inherit()
        });
    if let Some((url, prefix)) = redis {
        command.args([
            "--redis-url",
            url,
            "--redis-prefix",
            prefix,
            "--claims-in-redis",
        ]);
    }
    command.args(args);
    let mut child = command.spawn().expect("start janitor-runner");
    let stderr = child.stderr.take().map(|pipe| {
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line);
            }
        });
        lines
    });
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("runner exited before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("janitor-runner listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Runner { child, url, stderr }
}

/// A janitor.conf in `dir` with one campaign, `generic`, and logs and artifacts below `dir`.
pub fn generic_config(dir: &std::path::Path) -> std::path::PathBuf {
    let config = dir.join("janitor.conf");
    std::fs::write(
        &config,
        format!(
            "logs_location: \"{0}/logs\"\nartifact_location: \"{0}/artifacts\"\n\
             campaign {{ name: \"generic\" command: \"true\" generic_build {{}} }}\n",
            dir.display()
        ),
    )
    .expect("write janitor.conf");
    config
}
