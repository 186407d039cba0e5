//! A `janitor-runner` process started from the built binary, on loopback ports; killed on
//! drop.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct Runner {
    child: Child,
    /// The internal app's base URL.
    pub url: String,
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a runner on `database_url` with `config`, the PostgreSQL store unless `redis` gives
/// a URL and key prefix, and `env` added to its environment; returns once it listens.
pub fn start_runner(
    database_url: &str,
    config: &std::path::Path,
    redis: Option<(&str, &str)>,
    env: &[(&str, &str)],
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
        .stderr(Stdio::inherit());
    if let Some((url, prefix)) = redis {
        command.args(["--redis-url", url, "--redis-prefix", prefix]);
    }
    let mut child = command.spawn().expect("start janitor-runner");
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
    Runner { child, url }
}
