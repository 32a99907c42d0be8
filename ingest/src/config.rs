//! The one configuration file (TOML), with `CREDTRAIL_*` environment overrides.
//!
//! Every key is listed in [`KEYS`] with its documentation; the README's table is checked against
//! it by a test, and each key's override is `CREDTRAIL_` + the key path upper-cased with `.` as
//! `_` (`clickhouse.url` -> `CREDTRAIL_CLICKHOUSE_URL`). Secrets are never TOML values nor CLI
//! arguments: the ClickHouse password comes from `CREDTRAIL_CLICKHOUSE_PASSWORD` or
//! `clickhouse.password_file`, collector bearer tokens from `CREDTRAIL_HTTP_AUTH_TOKENS` or
//! `http.auth_tokens_file`.
//!
//! Loading reports *every* error with its key path, not just the first.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration; every section and key has a default.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub clickhouse: ClickHouseConfig,
    pub sink: SinkConfig,
    pub limits: LimitsConfig,
    pub http: HttpConfig,
    pub kafka: KafkaConfig,
    pub alias: AliasConfig,
    pub cloudtrail: CloudTrailConfig,
    pub detect: DetectConfig,
    pub metrics: MetricsConfig,
    pub telemetry: TelemetryConfig,
}

/// credtrail's own traces and metrics over OTLP/HTTP (off unless an endpoint is set).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
    pub metrics_interval_secs: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "credtrail".into(),
            metrics_interval_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    pub suppressions_file: Option<PathBuf>,
    pub enabled: bool,
    pub interval_secs: u64,
    pub fast_window_secs: u64,
    pub full_interval_secs: u64,
    pub window_secs: u64,
    pub max_lateness_secs: u64,
    pub future_skew_secs: u64,
    pub max_settle_secs: Option<u64>,
    pub parallel_rules: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            suppressions_file: None,
            enabled: true,
            interval_secs: 10,
            fast_window_secs: 900,
            full_interval_secs: 300,
            window_secs: 6 * 3600,
            max_lateness_secs: 7 * 86400,
            future_skew_secs: 300,
            max_settle_secs: None,
            parallel_rules: 4,
        }
    }
}

/// Label bounds of the exchange series: values past a cap are counted as `other`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    pub max_aliases: usize,
    pub max_error_codes: usize,
    pub workspace_labels: bool,
    pub max_workspaces: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_aliases: 50,
            max_error_codes: 50,
            workspace_labels: false,
            max_workspaces: 100,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CloudTrailConfig {
    pub session_activity: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AliasConfig {
    pub refresh_secs: u64,
}

impl Default for AliasConfig {
    fn default() -> Self {
        AliasConfig { refresh_secs: 60 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClickHouseConfig {
    pub url: String,
    pub database: String,
    pub user: String,
    pub password_file: Option<PathBuf>,
    pub retention_days: u32,
    pub request_timeout_secs: u64,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "credtrail".into(),
            user: "default".into(),
            password_file: None,
            retention_days: 400,
            request_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SinkConfig {
    pub batch_max_rows: usize,
    pub flush_interval_ms: u64,
    pub queue_capacity: usize,
    pub retry_max_attempts: u32,
    pub retry_initial_backoff_ms: u64,
    pub retry_max_backoff_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            batch_max_rows: 20_000,
            flush_interval_ms: 500,
            queue_capacity: 64,
            retry_max_attempts: 12,
            retry_initial_backoff_ms: 100,
            retry_max_backoff_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_record_bytes: usize,
    pub max_dead_letter_bytes: usize,
    pub max_unpacked_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_record_bytes: 1 << 20,
            max_dead_letter_bytes: 64 << 10,
            max_unpacked_bytes: 1 << 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    pub max_body_bytes: usize,
    pub auth_tokens_file: Option<PathBuf>,
    pub api_tokens_file: Option<PathBuf>,
    pub allow_unauthenticated: bool,
    pub ack_timeout_secs: u64,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub max_records_per_request: u64,
    pub max_dead_letters_per_request: u64,
    pub header_read_timeout_secs: u64,
    pub body_read_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    pub max_connections: usize,
    pub api_allow_unauthenticated: bool,
    pub allowed_hosts: String,
    pub metrics_require_token: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:8686".into(),
            max_body_bytes: 32 << 20,
            auth_tokens_file: None,
            api_tokens_file: None,
            allow_unauthenticated: false,
            ack_timeout_secs: 60,
            tls_cert_file: None,
            tls_key_file: None,
            max_records_per_request: 200_000,
            max_dead_letters_per_request: 1_000,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 60,
            idle_timeout_secs: 90,
            max_connections: 512,
            api_allow_unauthenticated: false,
            allowed_hosts: String::new(),
            metrics_require_token: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    pub group_id: String,
    pub topics: KeyValues,
    pub auto_offset_reset: String,
    pub batch_max_rows: usize,
    pub linger_ms: u64,
    pub max_in_flight_rows: usize,
    pub commit_interval_ms: u64,
    pub session_timeout_ms: u64,
    pub drain_timeout_secs: u64,
    pub dead_letter_topic: String,
    pub properties: KeyValues,
    pub sasl_password_file: Option<PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            group_id: "credtrail".into(),
            topics: KeyValues::default(),
            auto_offset_reset: "earliest".into(),
            batch_max_rows: 5_000,
            linger_ms: 200,
            max_in_flight_rows: 50_000,
            commit_interval_ms: 1_000,
            session_timeout_ms: 10_000,
            drain_timeout_secs: 20,
            dead_letter_topic: String::new(),
            properties: KeyValues::default(),
            sasl_password_file: None,
        }
    }
}

impl KafkaConfig {
    /// The Kafka source runs when brokers and at least one topic are set.
    pub fn enabled(&self) -> bool {
        !self.brokers.is_empty() && !self.topics.0.is_empty()
    }
}

/// A string-to-string map written as a TOML table, or (from the environment) as
/// `key=value,key=value`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct KeyValues(pub std::collections::BTreeMap<String, String>);

impl<'de> Deserialize<'de> for KeyValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Text(String),
            Integer(i64),
            Bool(bool),
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Table(std::collections::BTreeMap<String, Scalar>),
            Text(String),
        }
        let map = match Form::deserialize(d)? {
            Form::Table(t) => t
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        Scalar::Text(s) => s,
                        Scalar::Integer(i) => i.to_string(),
                        Scalar::Bool(b) => b.to_string(),
                    };
                    (k, v)
                })
                .collect(),
            Form::Text(text) => {
                let mut map = std::collections::BTreeMap::new();
                for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').ok_or_else(|| {
                        serde::de::Error::custom(format!("expected key=value, got {pair:?}"))
                    })?;
                    map.insert(k.trim().to_owned(), v.trim().to_owned());
                }
                map
            }
        };
        Ok(KeyValues(map))
    }
}

/// Every configuration key and what it does. The README's reference table mirrors this list.
pub const KEYS: &[(&str, &str)] = &[
    ("clickhouse.url", "HTTP(S) URL of the ClickHouse server."),
    (
        "clickhouse.database",
        "Database holding credtrail's tables; created by `migrate`.",
    ),
    ("clickhouse.user", "ClickHouse user."),
    (
        "clickhouse.password_file",
        "File whose first line is the ClickHouse password (or set CREDTRAIL_CLICKHOUSE_PASSWORD).",
    ),
    (
        "clickhouse.retention_days",
        "Days events and dead letters are kept (TTL; modern servers only, 0 = forever).",
    ),
    (
        "clickhouse.request_timeout_secs",
        "Timeout of one ClickHouse request.",
    ),
    ("sink.batch_max_rows", "Rows per INSERT at most."),
    (
        "sink.flush_interval_ms",
        "A partial batch is written after this long, or when the previous write ends if that is later.",
    ),
    (
        "sink.queue_capacity",
        "Batches waiting for the sink before sources are slowed down.",
    ),
    (
        "sink.retry_max_attempts",
        "Attempts per batch before the senders are told it failed.",
    ),
    (
        "sink.retry_initial_backoff_ms",
        "First retry delay; doubles per attempt.",
    ),
    ("sink.retry_max_backoff_ms", "Longest retry delay."),
    (
        "limits.max_record_bytes",
        "Larger records are dead letters (`too_large`).",
    ),
    (
        "limits.max_dead_letter_bytes",
        "Raw bytes a dead letter keeps of its record.",
    ),
    (
        "limits.max_unpacked_bytes",
        "What one gzip input (a body, a message, a file) may unpack to; the rest is refused with a dead letter.",
    ),
    ("http.listen", "Address of the HTTP collector."),
    (
        "http.max_body_bytes",
        "Largest request body, after Content-Encoding gzip is decoded; a gzip body sent without that header unpacks up to limits.max_unpacked_bytes.",
    ),
    (
        "http.max_records_per_request",
        "Records one request may hold; past them nothing more is read and the answer is 413.",
    ),
    (
        "http.max_dead_letters_per_request",
        "Rejected records kept as dead letters per request; the rest are counted in one summary.",
    ),
    (
        "http.header_read_timeout_secs",
        "How long a connection may take to send its first byte, and a request its headers.",
    ),
    (
        "http.idle_timeout_secs",
        "A connection with nothing read or written this long is closed (idle keep-alive, stalled peers); above http.ack_timeout_secs.",
    ),
    (
        "http.body_read_timeout_secs",
        "How long a request may take to send its whole body.",
    ),
    (
        "http.api_allow_unauthenticated",
        "Serve the forensic API and console without a reader token (demos only; http.allow_unauthenticated never opens them).",
    ),
    (
        "http.allowed_hosts",
        "Comma-separated host names the API and console answer (against DNS rebinding); empty: loopback names when listening on loopback, else any.",
    ),
    (
        "http.metrics_require_token",
        "Serve /metrics only with an ingest token (Prometheus: `authorization` in the scrape config); finding counters say what was detected.",
    ),
    (
        "http.max_connections",
        "Open connections at most; more are closed at once (descriptors stay free for ClickHouse).",
    ),
    (
        "http.auth_tokens_file",
        "File of accepted bearer tokens, one per line (or CREDTRAIL_HTTP_AUTH_TOKENS, comma-separated).",
    ),
    (
        "http.api_tokens_file",
        "File of bearer tokens that may read the forensic API and console, one per line (or CREDTRAIL_HTTP_API_TOKENS). Ingest tokens cannot read.",
    ),
    (
        "http.allow_unauthenticated",
        "Accept requests without a bearer token (tests, demos).",
    ),
    (
        "http.ack_timeout_secs",
        "How long a request waits for ClickHouse before answering 503.",
    ),
    (
        "http.tls_cert_file",
        "PEM certificate chain; with tls_key_file, serves HTTPS.",
    ),
    ("http.tls_key_file", "PEM private key for tls_cert_file."),
    (
        "kafka.brokers",
        "Bootstrap servers (`host:port,...`); empty turns the Kafka source off.",
    ),
    (
        "kafka.group_id",
        "Consumer group; processes in one group share partitions.",
    ),
    (
        "kafka.topics",
        "Topic to format: a table `{ topic = \"cloudtrail\" }` (formats: cloudtrail, issuance, auto), or `topic=format,...`.",
    ),
    (
        "kafka.auto_offset_reset",
        "Where a group without committed offsets starts: earliest or latest.",
    ),
    (
        "kafka.batch_max_rows",
        "Rows per batch handed to the sink at most.",
    ),
    (
        "kafka.linger_ms",
        "A partial batch goes to the sink after this long.",
    ),
    (
        "kafka.max_in_flight_rows",
        "Rows consumed but not yet durable before partitions are paused (resumed at half).",
    ),
    (
        "kafka.commit_interval_ms",
        "How often durable offsets are committed.",
    ),
    (
        "kafka.session_timeout_ms",
        "Group session timeout; a dead process loses its partitions after this long.",
    ),
    (
        "kafka.drain_timeout_secs",
        "On revocation or shutdown, how long to wait for in-flight rows before committing what is durable.",
    ),
    (
        "kafka.dead_letter_topic",
        "Also produce every dead-lettered record to this topic (empty: ClickHouse only).",
    ),
    (
        "kafka.properties",
        "librdkafka properties passed through (TLS, SASL: `security.protocol`, `ssl.ca.location`, `sasl.mechanism`, `sasl.username`, ...).",
    ),
    (
        "kafka.sasl_password_file",
        "File whose first line is the SASL password (or set CREDTRAIL_KAFKA_SASL_PASSWORD).",
    ),
    (
        "cloudtrail.session_activity",
        "Aggregate the API calls made with runs' AWS sessions (`terraform-run-*`) per session into `session_activity` (else they are ignored).",
    ),
    (
        "detect.suppressions_file",
        "TOML file of suppressions (rule, workspace/alias/principal globs, reason, optional expiry) applied when findings are evaluated.",
    ),
    (
        "detect.enabled",
        "Whether `credtrail serve` evaluates the rules on a schedule (run it on one instance of a group).",
    ),
    (
        "detect.interval_secs",
        "How often `credtrail serve` runs the fast pass (the last `detect.fast_window_secs`), in seconds: about the time from an event to its finding.",
    ),
    (
        "detect.fast_window_secs",
        "The event-time span each fast pass judges.",
    ),
    (
        "detect.full_interval_secs",
        "How often the full pass runs (the last `detect.window_secs` plus late arrivals), in seconds.",
    ),
    (
        "detect.window_secs",
        "Each full pass judges the events of the last this many seconds (event time), and late arrivals.",
    ),
    (
        "detect.max_lateness_secs",
        "Events that arrive late are judged again if their event time is at most this old; older arrivals are counted in `credtrail_detect_late_events_skipped_total`.",
    ),
    (
        "detect.future_skew_secs",
        "Event times up to this far in the future (clock skew) are inside the current window.",
    ),
    (
        "detect.max_settle_secs",
        "Caps how long rules about absent evidence wait after an event arrives for its counterpart (each rule's `settle_seconds`); unset: the rules' own.",
    ),
    (
        "detect.parallel_rules",
        "How many rules a fast pass evaluates at once (the full pass goes one at a time).",
    ),
    (
        "metrics.max_aliases",
        "Distinct `alias` label values on the exchange series; later ones are counted as `other`.",
    ),
    (
        "metrics.max_error_codes",
        "Distinct `error_code` label values on the exchange series; later ones are counted as `other`.",
    ),
    (
        "metrics.workspace_labels",
        "Add a `workspace` label to the exchange series (off: workspaces live in ClickHouse).",
    ),
    (
        "metrics.max_workspaces",
        "With `metrics.workspace_labels`, distinct workspace values before `other`.",
    ),
    (
        "alias.refresh_secs",
        "How often `credtrail ingest` reloads the alias inventory that attribution uses, in seconds.",
    ),
    (
        "telemetry.otlp_endpoint",
        "OTLP/HTTP base URL (e.g. http://collector:4318) for credtrail's own traces (/v1/traces) and metrics (/v1/metrics); unset: off.",
    ),
    (
        "telemetry.service_name",
        "The `service.name` resource attribute of what credtrail exports over OTLP.",
    ),
    (
        "telemetry.metrics_interval_secs",
        "How often the metrics (those of /metrics) are exported over OTLP, in seconds.",
    ),
];

/// One configuration problem, with the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::error::Error for ConfigError {}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

fn err(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// The environment variable that overrides `key`.
pub fn env_name(key: &str) -> String {
    format!("CREDTRAIL_{}", key.replace('.', "_").to_uppercase())
}

impl Config {
    /// Loads `path` (or only defaults and the environment when `None`).
    pub fn load(path: Option<&Path>) -> Result<Config, Vec<ConfigError>> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| vec![err("(file)", format!("cannot read {}: {e}", p.display()))])?,
            None => String::new(),
        };
        Config::from_toml(&text, |k| std::env::var(k).ok())
    }

    /// Parses TOML text, applies overrides from `env`, and validates.
    pub fn from_toml(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| vec![err("(syntax)", e.to_string())])?;
        for (key, _) in KEYS {
            if let Some(value) = env(&env_name(key)) {
                set_path(&mut table, key, env_value(&value));
            }
        }
        let mut errors = Vec::new();
        let config = deserialize_collecting(table, &mut errors);
        errors.extend(config.semantic_errors());
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(errors)
        }
    }

    fn semantic_errors(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        let ch = &self.clickhouse;
        if !(ch.url.starts_with("http://") || ch.url.starts_with("https://")) {
            e.push(err(
                "clickhouse.url",
                format!("must be an http:// or https:// URL, got {:?}", ch.url),
            ));
        }
        // `http://user:pass@host` would be silently ignored by the client, and the password
        // would sit in a config file and in process listings.
        let authority = ch.url.split_once("://").map_or("", |(_, rest)| {
            rest.split(['/', '?', '#']).next().unwrap_or("")
        });
        if authority.contains('@') {
            e.push(err(
                "clickhouse.url",
                "must not hold credentials: set clickhouse.user and clickhouse.password_file (or CREDTRAIL_CLICKHOUSE_PASSWORD)",
            ));
        }
        if !is_identifier(&ch.database) {
            e.push(err(
                "clickhouse.database",
                "must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*)",
            ));
        }
        if ch.user.is_empty() {
            e.push(err("clickhouse.user", "must not be empty"));
        }
        if let Some(f) = &ch.password_file
            && !f.is_file()
        {
            e.push(err(
                "clickhouse.password_file",
                format!("{} is not a readable file", f.display()),
            ));
        }
        if ch.request_timeout_secs == 0 {
            e.push(err("clickhouse.request_timeout_secs", "must be at least 1"));
        }
        let s = &self.sink;
        if !(1..=1_000_000).contains(&s.batch_max_rows) {
            e.push(err("sink.batch_max_rows", "must be between 1 and 1000000"));
        }
        if s.flush_interval_ms == 0 {
            e.push(err("sink.flush_interval_ms", "must be at least 1"));
        }
        if s.queue_capacity == 0 {
            e.push(err("sink.queue_capacity", "must be at least 1"));
        }
        if s.retry_max_attempts == 0 {
            e.push(err("sink.retry_max_attempts", "must be at least 1"));
        }
        if s.retry_initial_backoff_ms > s.retry_max_backoff_ms {
            e.push(err(
                "sink.retry_initial_backoff_ms",
                "must not exceed sink.retry_max_backoff_ms",
            ));
        }
        let l = &self.limits;
        if l.max_record_bytes < 1024 {
            e.push(err("limits.max_record_bytes", "must be at least 1024"));
        }
        if l.max_dead_letter_bytes < 256 {
            e.push(err("limits.max_dead_letter_bytes", "must be at least 256"));
        }
        let h = &self.http;
        if h.listen.parse::<std::net::SocketAddr>().is_err() {
            e.push(err(
                "http.listen",
                format!("must be IP:PORT, got {:?}", h.listen),
            ));
        }
        if h.max_body_bytes < l.max_record_bytes {
            e.push(err(
                "http.max_body_bytes",
                "must be at least limits.max_record_bytes",
            ));
        }
        if h.ack_timeout_secs == 0 {
            e.push(err("http.ack_timeout_secs", "must be at least 1"));
        }
        for (key, value) in [
            ("http.max_records_per_request", h.max_records_per_request),
            (
                "http.max_dead_letters_per_request",
                h.max_dead_letters_per_request,
            ),
            ("http.header_read_timeout_secs", h.header_read_timeout_secs),
            ("http.body_read_timeout_secs", h.body_read_timeout_secs),
            ("http.idle_timeout_secs", h.idle_timeout_secs),
            ("http.max_connections", h.max_connections as u64),
        ] {
            if value == 0 {
                e.push(err(key, "must be at least 1"));
            }
        }
        if h.idle_timeout_secs <= h.ack_timeout_secs {
            e.push(err(
                "http.idle_timeout_secs",
                "must exceed http.ack_timeout_secs (a request waiting for ClickHouse is silent)",
            ));
        }
        if l.max_unpacked_bytes < l.max_record_bytes as u64 {
            e.push(err(
                "limits.max_unpacked_bytes",
                "must be at least limits.max_record_bytes",
            ));
        }
        match (&h.tls_cert_file, &h.tls_key_file) {
            (Some(_), None) => e.push(err("http.tls_key_file", "required with http.tls_cert_file")),
            (None, Some(_)) => e.push(err("http.tls_cert_file", "required with http.tls_key_file")),
            _ => {}
        }
        for (key, file) in [
            ("http.tls_cert_file", &h.tls_cert_file),
            ("http.tls_key_file", &h.tls_key_file),
            ("http.auth_tokens_file", &h.auth_tokens_file),
            ("http.api_tokens_file", &h.api_tokens_file),
        ] {
            if let Some(f) = file
                && !f.is_file()
            {
                e.push(err(key, format!("{} is not a readable file", f.display())));
            }
        }
        e.extend(self.kafka.semantic_errors());
        let d = &self.detect;
        if d.interval_secs == 0 {
            e.push(err("detect.interval_secs", "must be at least 1"));
        }
        if d.window_secs < 60 {
            e.push(err("detect.window_secs", "must be at least 60"));
        }
        if d.fast_window_secs == 0 || d.fast_window_secs > d.window_secs {
            e.push(err(
                "detect.fast_window_secs",
                "must be at least 1 and at most detect.window_secs",
            ));
        }
        if !(1..=64).contains(&d.parallel_rules) {
            e.push(err("detect.parallel_rules", "must be between 1 and 64"));
        }
        if d.full_interval_secs == 0 {
            e.push(err("detect.full_interval_secs", "must be at least 1"));
        }
        if d.max_lateness_secs < d.window_secs {
            e.push(err(
                "detect.max_lateness_secs",
                "must be at least detect.window_secs",
            ));
        }
        if let Some(url) = &self.telemetry.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            e.push(err(
                "telemetry.otlp_endpoint",
                "must be an http:// or https:// URL (OTLP over HTTP)",
            ));
        }
        if self.telemetry.metrics_interval_secs == 0 {
            e.push(err("telemetry.metrics_interval_secs", "must be at least 1"));
        }
        for (key, cap) in [
            ("metrics.max_aliases", self.metrics.max_aliases),
            ("metrics.max_error_codes", self.metrics.max_error_codes),
            ("metrics.max_workspaces", self.metrics.max_workspaces),
        ] {
            if !(1..=10_000).contains(&cap) {
                e.push(err(key, "must be between 1 and 10000"));
            }
        }
        if let Some(f) = &self.detect.suppressions_file
            && !f.is_file()
        {
            e.push(err(
                "detect.suppressions_file",
                format!("{} is not a readable file", f.display()),
            ));
        }
        if self.alias.refresh_secs == 0 {
            e.push(err("alias.refresh_secs", "must be at least 1"));
        }
        e
    }

    /// The ClickHouse password from the environment or `password_file` (empty when neither).
    pub fn clickhouse_password(&self) -> Result<String, ConfigError> {
        if let Ok(p) = std::env::var("CREDTRAIL_CLICKHOUSE_PASSWORD") {
            return Ok(p);
        }
        match &self.clickhouse.password_file {
            None => Ok(String::new()),
            Some(f) => std::fs::read_to_string(f)
                .map(|s| s.lines().next().unwrap_or("").to_owned())
                .map_err(|e| err("clickhouse.password_file", e.to_string())),
        }
    }

    /// The collector's accepted bearer tokens. An empty list is an error unless
    /// `http.allow_unauthenticated` says otherwise.
    pub fn http_auth_tokens(&self) -> Result<Vec<String>, ConfigError> {
        let tokens = tokens(
            "CREDTRAIL_HTTP_AUTH_TOKENS",
            "http.auth_tokens_file",
            self.http.auth_tokens_file.as_deref(),
        )?;
        if tokens.is_empty() && !self.http.allow_unauthenticated {
            return Err(err(
                "http.auth_tokens_file",
                "no bearer tokens: set CREDTRAIL_HTTP_AUTH_TOKENS or http.auth_tokens_file, or http.allow_unauthenticated = true",
            ));
        }
        Ok(tokens)
    }
}

impl Config {
    /// The bearer tokens that may read the API and console (none: only with
    /// `http.allow_unauthenticated`).
    pub fn http_api_tokens(&self) -> Result<Vec<String>, ConfigError> {
        tokens(
            "CREDTRAIL_HTTP_API_TOKENS",
            "http.api_tokens_file",
            self.http.api_tokens_file.as_deref(),
        )
    }
}

/// Tokens from a comma-separated environment variable and a file of one per line (`#` starts a
/// comment line).
fn tokens(
    var: &str,
    key: &str,
    file: Option<&std::path::Path>,
) -> Result<Vec<String>, ConfigError> {
    let mut tokens: Vec<String> = std::env::var(var)
        .map(|v| v.split(',').map(|t| t.trim().to_owned()).collect())
        .unwrap_or_default();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f).map_err(|e| err(key, e.to_string()))?;
        tokens.extend(text.lines().map(|l| l.trim().to_owned()));
    }
    tokens.retain(|t| !t.is_empty() && !t.starts_with('#'));
    Ok(tokens)
}

impl KafkaConfig {
    fn semantic_errors(&self) -> Vec<ConfigError> {
        let mut e = Vec::new();
        if !self.brokers.is_empty() && self.topics.0.is_empty() {
            e.push(err("kafka.topics", "required with kafka.brokers"));
        }
        if self.brokers.is_empty() && !self.topics.0.is_empty() {
            e.push(err("kafka.brokers", "required with kafka.topics"));
        }
        for (topic, format) in &self.topics.0 {
            if crate::normalize::SourceChoice::parse(format).is_none() {
                e.push(err(
                    &format!("kafka.topics.{topic}"),
                    format!(
                        "unknown format {format:?} (one of {})",
                        crate::normalize::SourceChoice::NAMES
                    ),
                ));
            }
        }
        if self.group_id.is_empty() {
            e.push(err("kafka.group_id", "must not be empty"));
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            e.push(err("kafka.auto_offset_reset", "must be earliest or latest"));
        }
        for (key, value) in [
            ("kafka.batch_max_rows", self.batch_max_rows as u64),
            ("kafka.linger_ms", self.linger_ms),
            ("kafka.commit_interval_ms", self.commit_interval_ms),
            ("kafka.session_timeout_ms", self.session_timeout_ms),
            ("kafka.drain_timeout_secs", self.drain_timeout_secs),
        ] {
            if value == 0 {
                e.push(err(key, "must be at least 1"));
            }
        }
        if self.max_in_flight_rows < self.batch_max_rows {
            e.push(err(
                "kafka.max_in_flight_rows",
                "must be at least kafka.batch_max_rows",
            ));
        }
        for key in self.properties.0.keys() {
            if key.contains("password") || key.contains("secret") {
                e.push(err(
                    &format!("kafka.properties.{key}"),
                    "secrets are not configuration values: use kafka.sasl_password_file or CREDTRAIL_KAFKA_SASL_PASSWORD",
                ));
            }
            if matches!(
                key.as_str(),
                "bootstrap.servers"
                    | "group.id"
                    | "enable.auto.commit"
                    | "enable.auto.offset.store"
            ) {
                e.push(err(
                    &format!("kafka.properties.{key}"),
                    "set by credtrail itself (commits follow durability)",
                ));
            }
        }
        if let Some(f) = &self.sasl_password_file
            && !f.is_file()
        {
            e.push(err(
                "kafka.sasl_password_file",
                format!("{} is not a readable file", f.display()),
            ));
        }
        e
    }

    /// The SASL password from the environment or `sasl_password_file`, if any.
    pub fn sasl_password(&self) -> Result<Option<String>, ConfigError> {
        if let Ok(p) = std::env::var("CREDTRAIL_KAFKA_SASL_PASSWORD") {
            return Ok(Some(p));
        }
        match &self.sasl_password_file {
            None => Ok(None),
            Some(f) => std::fs::read_to_string(f)
                .map(|s| Some(s.lines().next().unwrap_or("").to_owned()))
                .map_err(|e| err("kafka.sasl_password_file", e.to_string())),
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An environment value as TOML: integers and booleans typed, everything else a string.
fn env_value(v: &str) -> toml::Value {
    if let Ok(i) = v.parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(b) = v.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(v.to_owned())
    }
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) {
    let (section, leaf) = key.split_once('.').expect("keys are section.leaf");
    let entry = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(Default::default()));
    if let toml::Value::Table(t) = entry {
        t.insert(leaf.to_owned(), value);
    }
}

fn remove_path(table: &mut toml::Table, path: &str) -> bool {
    match path.split_once('.') {
        None => table.remove(path).is_some(),
        Some((head, rest)) => match table.get_mut(head) {
            Some(toml::Value::Table(t)) => remove_path(t, rest),
            _ => table.remove(head).is_some(),
        },
    }
}

/// Deserializes, and on each error records it with its path, removes the offending key and tries
/// again, so that one run reports every bad key.
fn deserialize_collecting(mut table: toml::Table, errors: &mut Vec<ConfigError>) -> Config {
    for _ in 0..64 {
        let value = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, Config>(value) {
            Ok(c) => return c,
            Err(e) => {
                let mut path = e.path().to_string();
                // toml appends "in `path`" lines; the path is reported on its own.
                let message = e.inner().to_string();
                let message = message.lines().next().unwrap_or("").trim().to_owned();
                // For an unknown key the path is its parent; name the key itself.
                if let Some(name) = message
                    .strip_prefix("unknown field `")
                    .and_then(|r| r.split('`').next())
                {
                    if path == "." {
                        path = name.to_owned();
                    } else if !path.ends_with(&format!(".{name}")) {
                        path = format!("{path}.{name}");
                    }
                }
                let message = message
                    .split(", expected one of")
                    .next()
                    .unwrap_or(&message)
                    .to_owned();
                errors.push(err(&path, message));
                if !remove_path(&mut table, &path) {
                    return Config::default();
                }
            }
        }
    }
    Config::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(Config::from_toml("", no_env).unwrap(), Config::default());
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let text = r#"
            [clickhouse]
            url = "ftp://x"
            database = 7
            [sink]
            batch_max_rows = "many"
            colour = "blue"
            [http]
            listen = "nowhere"
        "#;
        let errors = Config::from_toml(text, no_env).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        for want in [
            "clickhouse.database",
            "sink.batch_max_rows",
            "sink.colour",
            "clickhouse.url",
            "http.listen",
        ] {
            assert!(paths.contains(&want), "{want} missing from {errors:?}");
        }
    }

    #[test]
    fn environment_overrides_file() {
        let env = |k: &str| match k {
            "CREDTRAIL_CLICKHOUSE_URL" => Some("http://10.0.0.1:8123".to_owned()),
            "CREDTRAIL_SINK_BATCH_MAX_ROWS" => Some("5".to_owned()),
            _ => None,
        };
        let c = Config::from_toml("[clickhouse]\nurl = \"http://a:1\"\n", env).unwrap();
        assert_eq!(c.clickhouse.url, "http://10.0.0.1:8123");
        assert_eq!(c.sink.batch_max_rows, 5);
    }

    #[test]
    fn kafka_topics_from_table_or_environment() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n[kafka.topics]\nct = \"cloudtrail\"\n";
        let c = Config::from_toml(text, no_env).unwrap();
        assert_eq!(c.kafka.topics.0["ct"], "cloudtrail");
        assert!(c.kafka.enabled());
        let env =
            |k: &str| (k == "CREDTRAIL_KAFKA_TOPICS").then(|| "a=auto, b=issuance".to_owned());
        let c = Config::from_toml(text, env).unwrap();
        assert_eq!(c.kafka.topics.0.len(), 2);
        assert_eq!(c.kafka.topics.0["b"], "issuance");
        let bad = "[kafka]\nbrokers = \"b\"\ntopics = { t = \"syslog\" }\nproperties = { \"sasl.password\" = \"x\" }\n";
        let errors = Config::from_toml(bad, no_env).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert!(paths.contains(&"kafka.topics.t"), "{errors:?}");
        assert!(
            paths.contains(&"kafka.properties.sasl.password"),
            "{errors:?}"
        );
    }

    #[test]
    fn keys_cover_every_field() {
        let value = toml::Value::try_from(Config {
            clickhouse: ClickHouseConfig {
                password_file: Some("p".into()),
                ..Default::default()
            },
            http: HttpConfig {
                auth_tokens_file: Some("a".into()),
                api_tokens_file: Some("r".into()),
                tls_cert_file: Some("c".into()),
                tls_key_file: Some("k".into()),
                ..Default::default()
            },
            kafka: KafkaConfig {
                sasl_password_file: Some("s".into()),
                ..Default::default()
            },
            detect: DetectConfig {
                suppressions_file: Some("f".into()),
                max_settle_secs: Some(1),
                ..Default::default()
            },
            telemetry: TelemetryConfig {
                otlp_endpoint: Some("http://127.0.0.1:4318".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .unwrap();
        let mut fields = Vec::new();
        for (section, t) in value.as_table().unwrap() {
            for key in t.as_table().unwrap().keys() {
                fields.push(format!("{section}.{key}"));
            }
        }
        fields.sort();
        let mut keys: Vec<String> = KEYS.iter().map(|(k, _)| k.to_string()).collect();
        keys.sort();
        assert_eq!(fields, keys);
    }
}
