//! `janitor-runner`: the drop-in replacement for the Python runner.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use janitor_runner::cli::{Cli, Command, ServeError, run_server};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.serve.debug, cli.serve.gcp_logging);
    let outcome = match &cli.command {
        Some(Command::Migrate(args)) => migrate(args).await,
        None => serve(&cli).await,
    };
    match outcome {
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

fn init_logging(debug: bool, json: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if json {
        builder.json().init();
    } else {
        builder.init();
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

async fn serve(cli: &Cli) -> anyhow::Result<()> {
    run_server(
        &cli.serve,
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
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
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
