//! The short chaos run: `janitor-runner-load chaos` with two runners, 16 workers, runner kills,
//! a PostgreSQL restart, a Redis restart and a log-store outage, on the PostgreSQL and the
//! mirrored store; it exits non-zero when an invariant is violated. The harness brings its
//! own PostgreSQL cluster and redis-server, so this test needs their binaries, not
//! DATABASE_URL.
//!
//! `JR_CHAOS_SECONDS` (default 12 per store) lengthens it; the full run is documented in
//! docs/failure-modes.md.

use std::process::Command;

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|out| out.status.success())
}

fn have_postgres_server() -> bool {
    std::env::var_os("JR_PG_BINDIR").is_some()
        || std::fs::read_dir("/usr/lib/postgresql")
            .map(|dir| dir.flatten().any(|v| v.path().join("bin/initdb").exists()))
            .unwrap_or(false)
}

#[test]
fn short_chaos_run_keeps_every_promise() {
    if !have("redis-server") || !have_postgres_server() {
        eprintln!("SKIPPED: the chaos run needs redis-server and PostgreSQL's initdb");
        return;
    }
    let seconds = std::env::var("JR_CHAOS_SECONDS").unwrap_or_else(|_| "12".to_string());
    let output = Command::new(env!("CARGO_BIN_EXE_janitor-runner-load"))
        .args(["chaos", "--seconds", &seconds])
        .args(["--workers", "16", "--kills", "4", "--items", "3000"])
        .args(["--stores", "postgres,mirrored"])
        .args(["--runner", env!("CARGO_BIN_EXE_janitor-runner")])
        .output()
        .expect("run janitor-runner-load chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "chaos run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Each store's run injected every kind of fault and completed work under them.
    for store in ["Postgres", "Mirrored"] {
        let section = stdout
            .split("== chaos with the ")
            .find(|s| s.starts_with(store))
            .unwrap_or_else(|| panic!("no report for the {store} store"));
        assert!(section.contains("4 runner kills"), "{section}");
        assert!(section.contains("1 PostgreSQL restarts"), "{section}");
        assert!(section.contains("1 log-store outages"), "{section}");
        assert!(section.contains("invariants: all hold"), "{section}");
        let cycles: u64 = section
            .split("cycles completed (finish 2xx): ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .and_then(|n| n.parse().ok())
            .expect("cycles in the report");
        assert!(cycles > 100, "only {cycles} cycles under faults");
    }
    let mirrored = stdout.split("== chaos with the Mirrored").nth(1).unwrap();
    assert!(mirrored.contains("1 Redis restarts"), "{mirrored}");
}
