//! What the pipeline counts about itself, in the Prometheus text format.
//!
//! Labels are bounded by construction: `source` and `error_kind` are closed enums, `outcome` too;
//! the exchange series (`exchanges`) caps the labels that come from logs. Run ids and token ids
//! never become labels; they live in ClickHouse.

pub mod exchanges;

use crate::config::MetricsConfig;
pub use exchanges::ExchangeMetrics;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

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
    /// Kafka: per topic (topics are configuration, so the label is bounded).
    pub kafka: KafkaMetrics,
    /// Exchanges by provider, outcome, error code and alias, counted as first stored.
    pub exchanges: ExchangeMetrics,
}

/// What the Kafka source counts; `topic` is one of the configured topics.
#[derive(Clone)]
pub struct KafkaMetrics {
    /// Messages consumed, by topic.
    pub messages: IntCounterVec,
    /// Rows made durable, by topic and kind (event, dead_letter); duplicates are counted by the
    /// sink, per source.
    pub durable_rows: IntCounterVec,
    /// Offset commits by result (ok, error).
    pub commits: IntCounterVec,
    pub commit_seconds: Histogram,
    /// Partitions paused for backpressure right now.
    pub paused_partitions: IntGauge,
    /// Rows consumed and not yet durable.
    pub in_flight_rows: IntGauge,
    /// Rebalance callbacks by kind (assign, revoke, error).
    pub rebalances: IntCounterVec,
    /// Batches the sink gave back after its retries, submitted again.
    pub resubmits: IntCounter,
    /// Consumer errors reported by librdkafka.
    pub errors: IntCounter,
    /// From the record's Kafka timestamp to its rows being durable, by topic.
    pub storage_lag_seconds: HistogramVec,
    /// Messages between the group's committed offsets and the partitions' ends, by topic (from
    /// librdkafka's statistics).
    pub consumer_lag: IntGaugeVec,
}

/// Registers a metric and hands it back; names are static, so failure is a programming error.
fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("unique, valid metric");
    metric
}

/// One topic's Kafka metrics, resolved once: the consumer touches them per message, where a
/// label lookup each time would cost a hash and a lock.
#[derive(Clone)]
pub struct TopicMetrics {
    pub messages: IntCounter,
    pub durable_events: IntCounter,
    pub durable_dead_letters: IntCounter,
    pub storage_lag_seconds: Histogram,
}

impl KafkaMetrics {
    pub fn topic(&self, topic: &str) -> TopicMetrics {
        TopicMetrics {
            messages: self.messages.with_label_values(&[topic]),
            durable_events: self.durable_rows.with_label_values(&[topic, "event"]),
            durable_dead_letters: self.durable_rows.with_label_values(&[topic, "dead_letter"]),
            storage_lag_seconds: self.storage_lag_seconds.with_label_values(&[topic]),
        }
    }
}

impl Metrics {
    /// With the default label caps.
    pub fn new() -> Metrics {
        Metrics::with_config(&MetricsConfig::default())
    }

    pub fn with_config(config: &MetricsConfig) -> Metrics {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
            )
        };
        let counter = |name: &str, help: &str| {
            register(
                &registry,
                IntCounter::new(name, help).expect("valid metric"),
            )
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
        let insert_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "credtrail_clickhouse_insert_duration_seconds",
                    "Time to write one batch to ClickHouse, retries included.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )
            .expect("valid metric"),
        );
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
        let kafka = KafkaMetrics {
            messages: counter_vec(
                "credtrail_kafka_messages_total",
                "Kafka messages consumed, by topic.",
                &["topic"],
            ),
            durable_rows: counter_vec(
                "credtrail_kafka_durable_rows_total",
                "Rows from Kafka made durable, by topic and kind (event, dead_letter).",
                &["topic", "kind"],
            ),
            commits: counter_vec(
                "credtrail_kafka_commits_total",
                "Offset commits by result (ok, error).",
                &["result"],
            ),
            commit_seconds: register(
                &registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "credtrail_kafka_commit_duration_seconds",
                        "Time from issuing an offset commit to the broker's answer.",
                    )
                    .buckets(vec![
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                    ]),
                )
                .expect("valid metric"),
            ),
            paused_partitions: register(
                &registry,
                IntGauge::new(
                    "credtrail_kafka_paused_partitions",
                    "Partitions paused because the sink is behind.",
                )
                .expect("valid metric"),
            ),
            in_flight_rows: register(
                &registry,
                IntGauge::new(
                    "credtrail_kafka_in_flight_rows",
                    "Rows consumed from Kafka and not yet durable.",
                )
                .expect("valid metric"),
            ),
            rebalances: counter_vec(
                "credtrail_kafka_rebalances_total",
                "Rebalance callbacks by kind (assign, revoke, error).",
                &["kind"],
            ),
            resubmits: counter(
                "credtrail_kafka_resubmits_total",
                "Batches the sink gave up on after its retries and that were submitted again.",
            ),
            errors: counter(
                "credtrail_kafka_errors_total",
                "Consumer errors reported by librdkafka.",
            ),
            consumer_lag: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "credtrail_kafka_consumer_lag_messages",
                        "Messages not yet committed by the group on this member's partitions, by topic.",
                    ),
                    &["topic"],
                )
                .expect("valid metric"),
            ),
            storage_lag_seconds: register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "credtrail_kafka_storage_lag_seconds",
                        "From a message's Kafka timestamp to its rows being durable.",
                    )
                    .buckets(vec![
                        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
                    ]),
                    &["topic"],
                )
                .expect("valid metric"),
            ),
        };
        Metrics {
            exchanges: ExchangeMetrics::new(&registry, config),
            kafka,
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
