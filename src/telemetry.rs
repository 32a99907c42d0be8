//! credtrail observing itself: logs to stderr always, and with `telemetry.otlp_endpoint` set,
//! OpenTelemetry over OTLP/HTTP (protobuf). Traces come from the `tracing` spans the code
//! already has (sink batches and inserts, dedup lookups, rule evaluations, API requests);
//! metrics are the ones `/metrics` shows, mirrored into OTLP so a user of an OpenTelemetry
//! collector needs no Prometheus. Off by default: nothing is exported unless configured.

use credtrail_ingest::config::TelemetryConfig;
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus::proto::MetricType;
use std::sync::Mutex;
use std::time::Duration;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What must be flushed and shut down before the process exits.
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Mutex<Option<Mirror>>,
    config: Option<TelemetryConfig>,
}

/// The OTLP meter mirroring a Prometheus registry, and the families it mirrors so far (a
/// labelled family appears in the registry's output only once it has a series).
struct Mirror {
    provider: SdkMeterProvider,
    registry: prometheus::Registry,
    mirrored: std::collections::HashSet<String>,
}

/// Installs the global subscriber: the log filter to stderr, and OTLP traces when configured.
pub fn init(log_filter: &str, config: Option<TelemetryConfig>) -> Telemetry {
    let filter = tracing_subscriber::EnvFilter::try_new(log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let config = config.filter(|c| c.otlp_endpoint.is_some());
    let tracer = config.as_ref().and_then(|c| match tracer_provider(c) {
        Ok(p) => Some(p),
        Err(e) => {
            eprintln!("credtrail: OTLP traces disabled: {e}");
            None
        }
    });
    let otel = tracer.as_ref().map(|p| {
        // Spans of credtrail's own crates only: the HTTP client's and hyper's are noise.
        let spans = tracing_subscriber::filter::Targets::new()
            .with_target("credtrail", tracing::Level::INFO)
            .with_target("credtrail_ingest", tracing::Level::INFO)
            .with_target("credtrail_query", tracing::Level::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("credtrail"))
            .with_filter(spans)
    });
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .init();
    Telemetry {
        tracer,
        meter: Mutex::new(None),
        config,
    }
}

/// How often new metric families are looked for.
pub const MIRROR_EVERY: Duration = Duration::from_secs(5);

fn resource(c: &TelemetryConfig) -> Resource {
    Resource::builder()
        .with_service_name(c.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

fn endpoint(c: &TelemetryConfig, signal: &str) -> String {
    let base = c.otlp_endpoint.as_deref().unwrap_or_default();
    format!("{}/v1/{signal}", base.trim_end_matches('/'))
}

fn tracer_provider(c: &TelemetryConfig) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint(c, "traces"))
        .with_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource(c))
        .build())
}

impl Telemetry {
    /// Mirrors `registry` (the `/metrics` registry) into OTLP metrics, when configured: each
    /// counter and gauge family becomes an observable instrument read at every export, a
    /// histogram its sum. Call [`Telemetry::mirror_new_families`] now and then to add the
    /// families that got their first series since. Says whether metrics are exported.
    pub fn export_metrics(&self, registry: &prometheus::Registry) -> bool {
        let Some(c) = &self.config else { return false };
        let exporter = match opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(endpoint(c, "metrics"))
            .with_timeout(Duration::from_secs(10))
            .build()
        {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("OTLP metrics disabled: {e}");
                return false;
            }
        };
        let reader = PeriodicReader::builder(exporter)
            .with_interval(Duration::from_secs(c.metrics_interval_secs))
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource(c))
            .build();
        *self.meter.lock().unwrap_or_else(|p| p.into_inner()) = Some(Mirror {
            provider,
            registry: registry.clone(),
            mirrored: Default::default(),
        });
        self.mirror_new_families();
        true
    }

    /// Adds an instrument for every registry family not mirrored yet.
    pub fn mirror_new_families(&self) {
        let mut guard = self.meter.lock().unwrap_or_else(|p| p.into_inner());
        let Some(m) = guard.as_mut() else { return };
        let meter = m.provider.meter("credtrail");
        for family in m.registry.gather() {
            let name = family.name().to_owned();
            if !m.mirrored.insert(name.clone()) {
                continue;
            }
            let help = family.help().to_owned();
            let reg = m.registry.clone();
            let n = name.clone();
            let kind = family.get_field_type();
            let read = move || -> Vec<(f64, Vec<KeyValue>)> {
                reg.gather()
                    .into_iter()
                    .filter(|f| f.name() == n)
                    .flat_map(|f| f.get_metric().to_vec())
                    .map(|m| {
                        let attrs = m
                            .get_label()
                            .iter()
                            .map(|l| KeyValue::new(l.name().to_owned(), l.value().to_owned()))
                            .collect();
                        let v = match kind {
                            MetricType::COUNTER => m.get_counter().get_value(),
                            MetricType::GAUGE => m.get_gauge().get_value(),
                            _ => m.get_histogram().get_sample_sum(),
                        };
                        (v, attrs)
                    })
                    .collect()
            };
            let observe = move |o: &dyn opentelemetry::metrics::AsyncInstrument<f64>| {
                for (v, a) in read() {
                    o.observe(v, &a);
                }
            };
            match family.get_field_type() {
                MetricType::COUNTER => {
                    meter
                        .f64_observable_counter(name)
                        .with_description(help)
                        .with_callback(observe)
                        .build();
                }
                MetricType::GAUGE => {
                    meter
                        .f64_observable_gauge(name)
                        .with_description(help)
                        .with_callback(observe)
                        .build();
                }
                MetricType::HISTOGRAM => {
                    meter
                        .f64_observable_counter(format!("{name}_sum"))
                        .with_description(help)
                        .with_callback(observe)
                        .build();
                }
                _ => {}
            }
        }
    }

    /// Flushes what is buffered and stops the exporters.
    pub fn shutdown(&self) {
        if let Some(p) = &self.tracer
            && let Err(e) = p.shutdown()
        {
            eprintln!("credtrail: OTLP trace shutdown: {e}");
        }
        if let Some(m) = self.meter.lock().unwrap_or_else(|p| p.into_inner()).take()
            && let Err(e) = m.provider.shutdown()
        {
            eprintln!("credtrail: OTLP metrics shutdown: {e}");
        }
    }
}
