//! What the pipeline counts about itself, in the Prometheus text format.
//!
//! Labels are bounded by construction: `source` and `error_kind` are closed enums, `outcome` too.
//! Run ids, token ids and workspaces never become labels; they live in ClickHouse.

use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

/// The pipeline's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Records read by a source, by source and what became of them (event, ignored, dead).
    pub records: IntCounterVec,
    /// Events written to ClickHouse for the first time, by source.
    pub stored: IntCounterVec,
    /// Events skipped because that source event was already stored, by source.
    pub duplicates: IntCounterVec,
    /// Dead letters written, by error kind.
    pub dead_letters: IntCounterVec,
    pub insert_seconds: Histogram,
    pub insert_retries: IntCounter,
    pub insert_failures: IntCounter,
    /// HTTP requests by route and status class.
    pub http_requests: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let records = counter_vec(
            "credtrail_ingest_records_total",
            "Records read by sources, by source and result (event, ignored, dead_letter).",
            &["source", "result"],
        );
        let stored = counter_vec(
            "credtrail_events_stored_total",
            "Events stored in ClickHouse for the first time.",
            &["source"],
        );
        let duplicates = counter_vec(
            "credtrail_events_duplicate_total",
            "Events skipped because the same source event was already stored.",
            &["source"],
        );
        let dead_letters = counter_vec(
            "credtrail_dead_letters_total",
            "Records stored as dead letters, by error kind.",
            &["error_kind"],
        );
        let insert_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "credtrail_clickhouse_insert_duration_seconds",
                "Time to write one batch to ClickHouse, retries included.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(insert_seconds.clone()))
            .expect("unique metric");
        let insert_retries = counter(
            "credtrail_clickhouse_insert_retries_total",
            "Failed ClickHouse write attempts that were retried.",
        );
        let insert_failures = counter(
            "credtrail_clickhouse_insert_failures_total",
            "Batches given up after the last retry.",
        );
        let http_requests = counter_vec(
            "credtrail_http_requests_total",
            "HTTP collector requests by route and status class.",
            &["route", "status"],
        );
        Metrics {
            registry,
            records,
            stored,
            duplicates,
            dead_letters,
            insert_seconds,
            insert_retries,
            insert_failures,
            http_requests,
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
