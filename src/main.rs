//! `credtrail`: the one command users run. Each subcommand lives in `cmd/` and wires the
//! `credtrail-ingest` (write path) and `credtrail-query` (read path) libraries together.

mod cmd;
mod telemetry;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Audit and observability pipeline for cloud credential exchanges (HCP Terraform dynamic
/// provider credentials): collect issuance and exchange events, normalize them into ClickHouse,
/// and answer forensic questions.
#[derive(Debug, Parser)]
#[command(name = "credtrail", version, propagate_version = true)]
struct Cli {
    /// Configuration file (TOML). Every key can be overridden by CREDTRAIL_<SECTION>_<KEY>.
    #[arg(long, short, global = true, env = "CREDTRAIL_CONFIG")]
    config: Option<PathBuf>,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `credtrail_ingest=debug`.
    #[arg(long, global = true, env = "CREDTRAIL_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the database and apply schema migrations (idempotent).
    Migrate(cmd::migrate::Args),
    /// Run the collectors (HTTP, Kafka when configured) and the ClickHouse sink until interrupted.
    Ingest(cmd::ingest::Args),
    /// `ingest` plus the detection rules evaluated on a schedule, findings in `/metrics`.
    Serve(cmd::ingest::Args),
    /// Replay files (CloudTrail S3 files, NDJSON, issuance spools; gzip or not) into ClickHouse.
    Replay(cmd::replay::Args),
    /// Forensic queries.
    #[command(subcommand)]
    Query(cmd::query::Query),
    /// Evaluate the detection rules over an event-time window and store their findings.
    Detect(cmd::detect::DetectArgs),
    /// List findings (`--format json` is the stable, documented form), or resolve and reopen them.
    Findings(cmd::detect::FindingsArgs),
    /// The alias inventory: which configurations each workspace has.
    #[command(subcommand)]
    Inventory(cmd::inventory::Inventory),
    /// Check a configuration file and report every error with its key path.
    Validate(cmd::validate::Args),
    /// Write a seeded scenario: traffic in the real source formats, its inventory, and the
    /// findings its planted misconfigurations and attacks must produce.
    Generate(cmd::generate::Args),
    /// Capture issuance in an HCP Terraform agent hook: send the run's token claims and
    /// fingerprints (never the tokens) to the collector.
    Emit(cmd::emit::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();
    // The telemetry section is read before the command runs (the command reports a broken
    // configuration itself); only long-running commands export.
    let otlp = matches!(cli.command, Command::Serve(_) | Command::Ingest(_))
        .then(|| credtrail_ingest::config::Config::load(config).ok())
        .flatten()
        .map(|c| c.telemetry);
    let telemetry = std::sync::Arc::new(telemetry::init(&cli.log, otlp));
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(args),
        Command::Emit(args) => cmd::emit::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        command => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async {
                match command {
                    Command::Migrate(args) => cmd::migrate::run(config, args).await,
                    Command::Ingest(args) => cmd::ingest::run(config, args, &telemetry).await,
                    Command::Serve(_) => cmd::ingest::collect(config, true, &telemetry).await,
                    Command::Replay(args) => cmd::replay::run(config, args).await,
                    Command::Query(q) => cmd::query::run(config, q).await,
                    Command::Inventory(i) => cmd::inventory::run(config, i).await,
                    Command::Detect(a) => cmd::detect::detect(config, a).await,
                    Command::Findings(a) => cmd::detect::findings(config, a).await,
                    Command::Validate(_) | Command::Emit(_) | Command::Generate(_) => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    };
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("credtrail: {e:#}");
            ExitCode::FAILURE
        }
    }
}
