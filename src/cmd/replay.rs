//! `credtrail replay FILE...`: backfill with a progress bar and a closing summary.

use super::{load_config, open_store};
use anyhow::Context;
use credtrail_ingest::metrics::Metrics;
use credtrail_ingest::normalize::SourceChoice;
use credtrail_ingest::sink;
use credtrail_ingest::sources::Intake;
use credtrail_ingest::sources::replay::{Replay, ReplayStats, expand_paths};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files or directories (walked in name order). gzip is detected by content.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Format of the records: auto (detect per record), cloudtrail, gcp, entra, vault,
    /// audit_trail or issuance.
    #[arg(long, default_value = "auto")]
    source: String,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let choice = SourceChoice::parse(&args.source).with_context(|| {
        format!(
            "unknown --source {:?} (one of {})",
            args.source,
            SourceChoice::NAMES
        )
    })?;
    let files = expand_paths(&args.paths)?;
    let store = open_store(&config)?;
    let metrics = Metrics::with_config(&config.metrics);
    let intake = Intake::from_config(&config, metrics.clone());
    super::load_inventory(&intake, &store).await;
    let (sink, sink_task) = sink::spawn(store, config.sink.clone(), metrics);
    let replay = Replay {
        choice,
        intake,
        batch_rows: config.sink.batch_max_rows.min(5000),
    };
    let started = Instant::now();
    let rt = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let bar = progress_bar();
        let result = replay.run(&files, &sink, &rt, |s| update(&bar, s, started));
        bar.finish_and_clear();
        drop(sink);
        result
    })
    .await?;
    sink_task.await?;
    let stats = result?;
    let secs = started.elapsed().as_secs_f64();
    if args.json {
        println!("{}", serde_json::to_string(&stats)?);
    } else {
        println!(
            "replayed {} files, {} records in {secs:.1}s ({:.0} records/s): {} stored, {} duplicates skipped, {} ignored, {} dead-lettered, {} session calls aggregated",
            stats.files,
            stats.records,
            stats.records as f64 / secs.max(1e-9),
            stats.stored,
            stats.duplicates,
            stats.ignored,
            stats.dead_lettered,
            stats.session_calls
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}) {msg}",
        )
        .expect("static template"),
    );
    bar
}

fn update(bar: &ProgressBar, s: &ReplayStats, started: Instant) {
    bar.set_length(s.bytes_total);
    bar.set_position(s.bytes);
    let rate = s.records as f64 / started.elapsed().as_secs_f64().max(1e-9);
    bar.set_message(format!(
        "files {}/{} · {} records ({rate:.0}/s) · {} stored · {} dup · {} dead",
        s.files, s.files_total, s.records, s.stored, s.duplicates, s.dead_lettered
    ));
}
