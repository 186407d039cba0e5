//! `janitor-runner`: the drop-in replacement for the Python runner.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use janitor_runner::cli::{Cli, Command, ServeError, run_server_with};
use janitor_runner::telemetry::{Telemetry, TelemetryOptions};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("janitor-runner: {error:#}");
            if matches!(
                error.downcast_ref::<ServeError>(),
                Some(ServeError::NoPublicVcsLocation)
            ) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// Reads the configuration (tracing is set up from it), then does what was asked; the spans
/// still buffered are sent before returning.
async fn run(cli: &Cli) -> anyhow::Result<()> {
    match &cli.command {
        Some(Command::Migrate(args)) => {
            let telemetry = Telemetry::init(&TelemetryOptions::logs_only())?;
            let outcome = migrate(args).await;
            telemetry.shutdown().await;
            outcome
        }
        Some(Command::Schedule(args)) => {
            let (config, url) = args.database.load().await?;
            let telemetry = Telemetry::init(&args.log.telemetry(Some(&config)))?;
            let outcome = schedule(args, &url).await;
            telemetry.shutdown().await;
            outcome
        }
        None => {
            // Required on the command line, as in the Python runner; the in-process server of
            // the Python face starts without it (and assigns nothing).
            if cli
                .serve
                .public_vcs_location
                .as_deref()
                .is_none_or(str::is_empty)
            {
                return Err(ServeError::NoPublicVcsLocation.into());
            }
            let (config, url) = cli.serve.database.load().await?;
            let telemetry = Telemetry::init(&cli.serve.log.telemetry(Some(&config)))?;
            let outcome = serve(cli, config, &url).await;
            telemetry.shutdown().await;
            outcome
        }
    }
}

async fn migrate(args: &janitor_runner::cli::DatabaseArgs) -> anyhow::Result<()> {
    let (_, url) = args.load().await?;
    let pool = janitor_runner::db::connect(&url, 2)
        .await
        .context("cannot connect to PostgreSQL")?;
    let report = janitor_runner::db::migrate(&pool)
        .await
        .context("migration failed")?;
    if report.adopted.is_empty() {
        println!("database is up to date");
    } else {
        println!(
            "adopted existing Janitor schema ({:?}); database is up to date",
            report.adopted
        );
    }
    Ok(())
}

async fn schedule(args: &janitor_runner::cli::ScheduleArgs, url: &str) -> anyhow::Result<()> {
    use janitor_runner::schedule::bulk::{BulkOptions, bulk_schedule};
    // The bulk scheduler reads histories, contexts and averages side by side.
    let pool = janitor_runner::db::connect(url, 4)
        .await
        .context("cannot connect to PostgreSQL")?;
    janitor_runner::db::migrate(&pool)
        .await
        .context("migration failed")?;
    if let Some(path) = &args.save_queue {
        return save_queue(&pool, path).await;
    }
    let before = match &args.queue_before {
        Some(path) => Some(load_queue(path).await?),
        None => None,
    };
    let options = BulkOptions {
        campaign: args.campaign.clone(),
        codebases: args.codebases.clone(),
        dry_run: args.dry_run,
        shadow: args.shadow,
        before,
    };
    let terminal = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let now = janitor_runner::clock::Clock::now(&janitor_runner::clock::SystemClock);
    let summary = bulk_schedule(&pool, now, &options, |done, total| {
        if terminal {
            draw_progress(done, total);
        }
    })
    .await?;
    if terminal {
        eprintln!();
    }
    if let Some(report) = &summary.shadow {
        return report_shadow(report, summary.candidates, started.elapsed());
    }
    print_summary(&summary, started.elapsed(), args.dry_run);
    if let Some(gateway) = &args.prometheus {
        push_last_success(gateway).await?;
    }
    Ok(())
}

/// `schedule --save-queue FILE`: the queue as a bulk run finds it, for a later `--shadow`.
async fn save_queue(pool: &sqlx::PgPool, path: &std::path::Path) -> anyhow::Result<()> {
    let snapshot = janitor_runner::schedule::bulk::snapshot_queue(pool)
        .await
        .context("cannot read the queue")?;
    let text = serde_json::to_vec(&snapshot)?;
    tokio::fs::write(path, text)
        .await
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("queue saved to {}", path.display());
    Ok(())
}

/// A queue saved by `--save-queue`.
async fn load_queue(
    path: &std::path::Path,
) -> anyhow::Result<janitor_runner::schedule::bulk::QueueSnapshot> {
    let text = tokio::fs::read(path)
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a saved queue", path.display()))
}

/// A progress bar on the terminal, redrawn in place.
fn draw_progress(done: usize, total: usize) {
    let width = 40;
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    eprint!(
        "\r[{}{}] {done}/{total} candidates",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
}

/// What a bulk run did, per bucket, and what it skipped.
fn print_summary(
    summary: &janitor_runner::schedule::bulk::BulkSummary,
    elapsed: std::time::Duration,
    dry_run: bool,
) {
    println!(
        "{} candidates in {:.2} s{}",
        summary.candidates,
        elapsed.as_secs_f64(),
        if dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        }
    );
    for (bucket, counts) in &summary.buckets {
        println!(
            "  {bucket}: {} added, {} updated, {} unchanged",
            counts.added, counts.updated, counts.unchanged
        );
    }
    if !summary.skipped.is_empty() {
        println!(
            "  skipped {} (the Python scheduler would have stopped here):",
            summary.skipped.len()
        );
        for skipped in &summary.skipped {
            println!(
                "    {}/{}: {}",
                skipped.campaign, skipped.codebase, skipped.reason
            );
        }
    }
}

/// Prints the shadow comparison; an error (exit status 1) when the rows differ.
fn report_shadow(
    report: &janitor_runner::schedule::shadow::ShadowReport,
    candidates: usize,
    elapsed: std::time::Duration,
) -> anyhow::Result<()> {
    println!(
        "shadow of {candidates} candidates in {:.2} s (nothing written): {} same, {} differ, \
         {} only ours, {} only theirs",
        elapsed.as_secs_f64(),
        report.same,
        report.differ,
        report.only_ours,
        report.only_theirs
    );
    let show = |row: &Option<janitor_runner::schedule::bulk::ScheduledRow>, field: &str| {
        let Some(row) = row else {
            return "(no row)".to_string();
        };
        match field {
            "bucket" => row.bucket.clone(),
            "priority" => row.priority.to_string(),
            "command" => format!("{:?}", row.command),
            "context" => format!("{:?}", row.context),
            "estimated_duration" => format!("{} us", row.estimated_duration_us),
            _ => format!("{:?}", row.requester),
        }
    };
    for difference in &report.differences {
        println!("  {}/{}:", difference.campaign, difference.codebase);
        for field in &difference.fields {
            println!(
                "    {field}: ours {}, theirs {}",
                show(&difference.ours, field),
                show(&difference.theirs, field)
            );
        }
    }
    if report.is_clean() {
        Ok(())
    } else {
        anyhow::bail!(
            "the queue differs from what this scheduler would write ({} rows)",
            report.differ + report.only_ours + report.only_theirs
        )
    }
}

/// Sets `job_last_success_unixtime` for job `janitor.schedule` on a push gateway.
async fn push_last_success(gateway: &str) -> anyhow::Result<()> {
    let body = format!(
        "# TYPE job_last_success_unixtime gauge\njob_last_success_unixtime {}\n",
        janitor_runner::clock::Clock::now(&janitor_runner::clock::SystemClock)
            .and_utc()
            .timestamp()
    );
    let url = format!(
        "{}/metrics/job/janitor.schedule",
        gateway.trim_end_matches('/')
    );
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?
        .put(&url)
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot push to {url}"))?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    Ok(())
}

async fn serve(
    cli: &Cli,
    config: janitor_runner::config::Config,
    database_url: &str,
) -> anyhow::Result<()> {
    run_server_with(
        &cli.serve,
        config,
        database_url,
        |internal, public| {
            tracing::info!(%internal, ?public, "listening");
            println!("janitor-runner listening on http://{internal} (internal app)");
            if let Some(public) = public {
                println!("public worker app on http://{public}");
            }
            println!("try: curl http://{internal}/health");
        },
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = interrupt.await;
            return;
        };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
