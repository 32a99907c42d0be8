//! `credtrail ingest`: the collectors and the sink, until SIGINT or SIGTERM.

use super::{load_config, open_store};
use anyhow::Context;
use credtrail_ingest::metrics::Metrics;
use credtrail_ingest::{sink, sources};
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(config: Option<&Path>, _args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let tokens = config.http_auth_tokens()?;
    let store = open_store(&config)?;
    let metrics = Metrics::new();
    let (sink, sink_task) = sink::spawn(store.clone(), config.sink.clone(), metrics.clone());
    let router = sources::http::router(&config, tokens, sink, store, metrics);
    sources::http::serve(&config, router, shutdown_signal())
        .await
        .context("HTTP collector")?;
    // The router (and with it the last sink handle) is gone: the sink drains and stops.
    sink_task.await.context("sink task")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: draining the sink");
}
