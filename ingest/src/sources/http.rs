//! The HTTP collector: `POST /v1/ingest/{source}` with NDJSON, a JSON array, or an envelope
//! document (`{"Records": [...]}` and the like), optionally gzip-encoded; and `POST /v1/logs`,
//! an OTLP/HTTP logs receiver (protobuf or JSON) whose log records carry source records.
//!
//! A request is answered only after its rows are durable in ClickHouse (200, with per-record
//! reasons for rejects), or with 503 when the sink could not make them durable in time, so a
//! sender can always retry safely (dedup makes the retry harmless). Bearer tokens are compared
//! by SHA-256 digest in constant time. `/healthz` is liveness, `/readyz` checks ClickHouse and
//! the schema, `/metrics` is the Prometheus exposition.

use super::bearer::Bearer;
use super::connections::{Capped, Deadlines};
use super::{Caps, Intake, RecordError, Tally};
use crate::config::Config;
use crate::formats::otlp;
use crate::metrics::Metrics;
use crate::normalize::SourceChoice;
use crate::sink::{Batch, SinkHandle};
use crate::store::Store;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_server::accept::DefaultAcceptor;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How many per-record errors a response lists before it only counts them.
const MAX_REPORTED_ERRORS: usize = 1000;

/// Rows handed to the sink at a time: a large body is stored in bounded batches, never held
/// whole.
const BATCH_ROWS: usize = 10_000;

struct AppState {
    sink: SinkHandle,
    store: Store,
    metrics: Metrics,
    intake: Intake,
    bearer: Bearer,
    ack_timeout: Duration,
    caps: Caps,
    max_body_bytes: usize,
    body_timeout: Duration,
    metrics_require_token: bool,
}

/// What a POST answers.
#[derive(Debug, serde::Serialize)]
pub struct IngestResponse {
    /// Records read from the body.
    pub records: u64,
    /// Records accepted as events (stored now or already stored).
    pub accepted: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Valid records of no interest (CloudTrail calls other than web-identity exchanges).
    pub ignored: u64,
    /// Records stored as dead letters; `errors` says why.
    pub rejected: u64,
    /// API calls of runs' sessions aggregated (`cloudtrail.session_activity`).
    pub session_calls: u64,
    pub errors: Vec<RecordError>,
    pub errors_truncated: bool,
    /// The body held more than `http.max_records_per_request` records: the first ones were
    /// stored (as counted above), the rest were not read. Answered with 413.
    pub cut_short: bool,
}

/// Builds the collector's router.
pub fn router(
    config: &Config,
    tokens: Vec<String>,
    sink: SinkHandle,
    store: Store,
    intake: Intake,
) -> Router {
    let state = Arc::new(AppState {
        sink,
        store,
        metrics: intake.metrics.clone(),
        intake,
        bearer: Bearer::new(&tokens, config.http.allow_unauthenticated),
        ack_timeout: Duration::from_secs(config.http.ack_timeout_secs),
        caps: Caps {
            max_records: config.http.max_records_per_request,
            max_dead_letters: config.http.max_dead_letters_per_request,
        },
        max_body_bytes: config.http.max_body_bytes,
        body_timeout: Duration::from_secs(config.http.body_read_timeout_secs),
        metrics_require_token: config.http.metrics_require_token,
    });
    Router::new()
        .route("/v1/ingest/{source}", post(ingest))
        .route("/v1/logs", post(otlp_logs))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .layer(tower_http::decompression::RequestDecompressionLayer::new())
        .with_state(state)
}

/// Serves the router on `http.listen`, over TLS when configured, until `shutdown` resolves.
pub async fn serve(
    config: &Config,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr: SocketAddr = config.http.listen.parse().map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("http.listen: {e}"),
        )
    })?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let app = router.into_make_service();
    let header_timeout = Duration::from_secs(config.http.header_read_timeout_secs);
    let deadlines = Deadlines {
        first_byte: header_timeout,
        idle: Duration::from_secs(config.http.idle_timeout_secs),
    };
    let capped = Capped::new(
        DefaultAcceptor::new(),
        config.http.max_connections,
        deadlines,
    );
    match (&config.http.tls_cert_file, &config.http.tls_key_file) {
        (Some(cert), Some(key)) => {
            // rustls is built with only the ring provider, which it then picks by itself.
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            tracing::info!(%addr, "HTTPS collector listening");
            let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(capped);
            let mut server = axum_server::bind(addr).acceptor(acceptor).handle(handle);
            server
                .http_builder()
                .http1()
                .header_read_timeout(header_timeout);
            server.serve(app).await
        }
        _ => {
            tracing::info!(%addr, "HTTP collector listening");
            let mut server = axum_server::bind(addr).acceptor(capped).handle(handle);
            server
                .http_builder()
                .http1()
                .header_read_timeout(header_timeout);
            server.serve(app).await
        }
    }
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            // ClickHouse's own words (user names, "Wrong password") go to the log, not to
            // whoever asks.
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: ClickHouse or the schema is not available (see the log)\n",
            )
                .into_response()
        }
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if state.metrics_require_token && !state.bearer.admits(&headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

async fn ingest(
    State(state): State<Arc<AppState>>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = ingest_inner(&state, &source, &headers, body).await;
    let class = format!("{}xx", response.status().as_u16() / 100);
    state
        .metrics
        .http_requests
        .with_label_values(&["ingest", &class])
        .inc();
    response
}

/// Reads a whole body within `http.body_read_timeout_secs` and `http.max_body_bytes`, so a
/// slow or endless sender holds a connection for a bounded time.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, Response> {
    match tokio::time::timeout(
        state.body_timeout,
        axum::body::to_bytes(body, state.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) if is_length_limit(&e) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body over http.max_body_bytes ({} bytes)",
                state.max_body_bytes
            ),
        )),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("body unreadable: {e}"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "body not received within http.body_read_timeout_secs",
        )),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

async fn ingest_inner(
    state: &Arc<AppState>,
    source: &str,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if !state.bearer.admits(headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    }
    let Some(choice) = SourceChoice::parse(source) else {
        return error(
            StatusCode::NOT_FOUND,
            format!(
                "unknown source {source:?}; use one of {}",
                SourceChoice::NAMES
            ),
        );
    };
    let body = match read_body(state, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // Framing runs on a blocking thread and hands bounded batches over a channel of one: the
    // next batch is read only while the previous one is being made durable.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let st = Arc::clone(state);
    let framing = tokio::task::spawn_blocking(move || {
        st.intake.frame_capped(
            std::io::Cursor::new(body),
            choice,
            "http",
            BATCH_ROWS,
            st.caps,
            |batch, tally, errors, _| tx.blocking_send((batch, tally, errors)).is_ok(),
        )
    });
    let mut tally = Tally::default();
    let mut errors = Vec::new();
    let mut ack = crate::sink::Ack::default();
    while let Some((batch, t, e)) = rx.recv().await {
        tally += t;
        if errors.len() <= MAX_REPORTED_ERRORS {
            errors.extend(e);
        }
        match durable(state, batch).await {
            Ok(a) => ack += a,
            Err(response) => return response,
        }
    }
    let framed = match framing.await {
        Ok(Ok(framed)) => framed,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("unreadable body: {e}")),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("framing failed: {e}"),
            );
        }
    };
    let truncated = errors.len() > MAX_REPORTED_ERRORS;
    errors.truncate(MAX_REPORTED_ERRORS);
    let answer = Json(IngestResponse {
        records: tally.records,
        accepted: tally.events,
        stored: ack.stored as u64,
        duplicates: ack.duplicates as u64,
        ignored: tally.ignored,
        rejected: tally.dead_letters,
        session_calls: ack.session_calls as u64,
        errors,
        errors_truncated: truncated,
        cut_short: framed.cut_short,
    });
    if framed.cut_short {
        // What was read is stored (and a resend is harmless); the rest was never read.
        return (StatusCode::PAYLOAD_TOO_LARGE, answer).into_response();
    }
    answer.into_response()
}

/// Hands a batch to the sink and waits for it to be durable, or answers 503 so the sender retries.
async fn durable(state: &AppState, batch: Batch) -> Result<crate::sink::Ack, Response> {
    match tokio::time::timeout(state.ack_timeout, state.sink.write(batch)).await {
        Ok(Ok(ack)) => Ok(ack),
        Ok(Err(e)) => Err(retry_later(format!("not stored, retry: {e}"))),
        Err(_) => Err(retry_later(
            "not stored within http.ack_timeout_secs, retry".into(),
        )),
    }
}

async fn otlp_logs(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let response = otlp_logs_inner(&state, &headers, body).await;
    let class = format!("{}xx", response.status().as_u16() / 100);
    state
        .metrics
        .http_requests
        .with_label_values(&["otlp_logs", &class])
        .inc();
    response
}

/// OTLP/HTTP logs: answered like any OTLP receiver, with the rejected records counted in
/// `partial_success`; they are dead letters with their reasons, as on `/v1/ingest`.
async fn otlp_logs_inner(state: &Arc<AppState>, headers: &HeaderMap, body: Body) -> Response {
    if !state.bearer.admits(headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    let encoding = otlp::Encoding::from_content_type(content_type);
    let body = match read_body(state, body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    // Counted before decoding: decoding allocates per record, however empty.
    match otlp::count_log_records(&body, encoding) {
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
        Ok(n) if n > state.caps.max_records => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request holds more than http.max_records_per_request ({}) log records; nothing was stored",
                    state.caps.max_records
                ),
            );
        }
        Ok(_) => {}
    }
    let st = Arc::clone(state);
    let decoded = tokio::task::spawn_blocking(move || {
        otlp::decode(&body, encoding).map(|request| st.intake.otlp(&request, "otlp"))
    })
    .await;
    let (batch, tally, errors) = match decoded {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, e),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("decoding failed: {e}"),
            );
        }
    };
    if let Err(response) = durable(state, batch).await {
        return response;
    }
    let partial_success = (tally.dead_letters > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: tally.dead_letters as i64,
        error_message: errors
            .iter()
            .take(10)
            .map(|e| format!("log record {}: {}: {}", e.record, e.error_kind, e.reason))
            .collect::<Vec<_>>()
            .join("; "),
    });
    let answer = ExportLogsServiceResponse { partial_success };
    match encoding {
        otlp::Encoding::Json => Json(answer).into_response(),
        otlp::Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            prost::Message::encode_to_vec(&answer),
        )
            .into_response(),
    }
}

fn retry_later(message: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
    r
}
