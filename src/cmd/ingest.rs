//! `credtrail ingest`: the collectors (HTTP always, Kafka when configured) and the sink, until
//! SIGINT or SIGTERM, or until the Kafka source fails. `credtrail serve` is the same process with
//! the scheduled detection loop beside it.

use super::{load_config, open_store};
use crate::telemetry::Telemetry;
use anyhow::Context;
use credtrail_ingest::metrics::Metrics;
use credtrail_ingest::sources::Intake;
use credtrail_ingest::sources::bearer::Bearer;
use credtrail_ingest::sources::hosts::AllowedHosts;
use credtrail_ingest::sources::kafka::KafkaSource;
use credtrail_ingest::{sink, sources};
use credtrail_query::detect::metrics::DetectMetrics;
use credtrail_query::detect::runner::Detector;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(
    config: Option<&Path>,
    _args: Args,
    telemetry: &Arc<Telemetry>,
) -> anyhow::Result<ExitCode> {
    collect(config, false, telemetry).await
}

/// The collectors and the sink, and with `detect` (and `detect.enabled`) the detection loop.
pub async fn collect(
    config: Option<&Path>,
    detect: bool,
    telemetry: &Arc<Telemetry>,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let tokens = config.http_auth_tokens()?;
    let store = open_store(&config)?;
    let metrics = Metrics::with_config(&config.metrics);
    let (detect_stop, detect_stopped) = watch::channel(false);
    let detector = if detect && config.detect.enabled {
        let rules = credtrail_query::detect::rules().map_err(anyhow::Error::msg)?;
        let detect_metrics = DetectMetrics::new(&metrics.registry, &rules);
        let detector = Detector::new(store.clone(), rules, &config.detect, detect_metrics);
        let every = std::time::Duration::from_secs(config.detect.interval_secs);
        let mut stopped = detect_stopped;
        Some(tokio::spawn(detector.run(every, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })))
    } else {
        None
    };
    let mirror = telemetry.export_metrics(&metrics.registry).then(|| {
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(crate::telemetry::MIRROR_EVERY);
            loop {
                every.tick().await;
                telemetry.mirror_new_families();
            }
        })
    });
    let (sink, sink_task) = sink::spawn(store.clone(), config.sink.clone(), metrics.clone());
    let intake = Intake::from_config(&config, metrics.clone());
    super::load_inventory(&intake, &store).await;
    let refresh = tokio::spawn(refresh_inventory(
        intake.clone(),
        store.clone(),
        config.alias.refresh_secs,
    ));

    // The Kafka source runs on its own thread; `stop` ends it, `kafka_done` says it ended.
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, mut kafka_done) = watch::channel(false);
    let kafka = config.kafka.enabled().then(|| {
        let source = KafkaSource::new(
            config.kafka.clone(),
            intake.clone(),
            sink.clone(),
            tokio::runtime::Handle::current(),
        );
        let stop = stop.clone();
        let done = Done(done_tx.clone());
        tokio::task::spawn_blocking(move || {
            // Says "ended" however the thread ends, panics included.
            let _done = done;
            source.run(stop)
        })
    });

    let mut router = sources::http::router(&config, tokens, sink, store.clone(), intake);
    if detect {
        // `serve` also answers forensic queries: the API and the console.
        let readers = config
            .http_api_tokens()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // The API has its own switch: an open collector (demos, tests) is no open forensic API.
        let bearer = Bearer::new(&readers, config.http.api_allow_unauthenticated);
        let hosts = AllowedHosts::new(&config.http.allowed_hosts, &config.http.listen);
        router = router.merge(credtrail_query::api::router(store, bearer, hosts));
    }
    let stopping = stop.clone();
    let shutdown = async move {
        tokio::select! {
            _ = shutdown_signal() => {}
            _ = kafka_done.wait_for(|done| *done) => {}
        }
        stopping.store(true, Ordering::Relaxed);
    };
    sources::http::serve(&config, router, shutdown)
        .await
        .context("HTTP collector")?;
    stop.store(true, Ordering::Relaxed);
    refresh.abort();
    if let Some(m) = mirror {
        m.abort();
    }
    let _ = detect_stop.send(true);
    if let Some(task) = detector {
        task.await.context("detection loop")?;
    }
    let kafka_result = match kafka {
        Some(task) => task.await.context("Kafka source thread")?,
        None => Ok(()),
    };
    // The router and the Kafka source (and with them the last sink handles) are gone: the sink
    // drains and stops.
    sink_task.await.context("sink task")?;
    // Held until here so that `kafka_done` only resolves when the Kafka thread ends.
    drop(done_tx);
    kafka_result.context("Kafka source")?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Reloads the alias inventory every `secs` seconds, so an import reaches running collectors.
async fn refresh_inventory(intake: Intake, store: credtrail_ingest::store::Store, secs: u64) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(secs.max(1)));
    every.tick().await;
    loop {
        every.tick().await;
        if let Err(e) = intake.attribution.reload(&store).await {
            tracing::warn!("alias inventory not reloaded: {e}");
        }
    }
}

/// Sends `true` when dropped.
struct Done(watch::Sender<bool>);

impl Drop for Done {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: draining the sources and the sink");
}
