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
use super::{Intake, RecordError, Tally};
use crate::config::Config;
use crate::formats::otlp;
use crate::metrics::Metrics;
use crate::normalize::SourceChoice;
use crate::sink::{Batch, SinkHandle};
use crate::store::Store;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How many per-record errors a response lists before it only counts them.
const MAX_REPORTED_ERRORS: usize = 1000;

struct AppState {
    sink: SinkHandle,
    store: Store,
    metrics: Metrics,
    intake: Intake,
    bearer: Bearer,
    ack_timeout: Duration,
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
    });
    Router::new()
        .route("/v1/ingest/{source}", post(ingest))
        .route("/v1/logs", post(otlp_logs))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics_text))
        .layer(DefaultBodyLimit::max(config.http.max_body_bytes))
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
    match (&config.http.tls_cert_file, &config.http.tls_key_file) {
        (Some(cert), Some(key)) => {
            // rustls is built with only the ring provider, which it then picks by itself.
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
            tracing::info!(%addr, "HTTPS collector listening");
            axum_server::bind_rustls(addr, tls)
                .handle(handle)
                .serve(app)
                .await
        }
        _ => {
            tracing::info!(%addr, "HTTP collector listening");
            axum_server::bind(addr).handle(handle).serve(app).await
        }
    }
}

async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match state.store.ready().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response(),
    }
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
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
    body: Bytes,
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

async fn ingest_inner(
    state: &Arc<AppState>,
    source: &str,
    headers: &HeaderMap,
    body: Bytes,
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
    let st = Arc::clone(state);
    let framed = tokio::task::spawn_blocking(move || {
        let mut out = (Batch::default(), Tally::default(), Vec::new());
        let result = st.intake.frame(
            std::io::Cursor::new(body),
            choice,
            "http",
            usize::MAX,
            |batch, tally, errors, _| out = (batch, tally, errors),
        );
        result.map(|()| out)
    })
    .await;
    let (batch, tally, mut errors) = match framed {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("unreadable body: {e}")),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("framing failed: {e}"),
            );
        }
    };
    let ack = match durable(state, batch).await {
        Ok(ack) => ack,
        Err(response) => return response,
    };
    let truncated = errors.len() > MAX_REPORTED_ERRORS;
    errors.truncate(MAX_REPORTED_ERRORS);
    Json(IngestResponse {
        records: tally.records,
        accepted: tally.events,
        stored: ack.stored as u64,
        duplicates: ack.duplicates as u64,
        ignored: tally.ignored,
        rejected: tally.dead_letters,
        session_calls: ack.session_calls as u64,
        errors,
        errors_truncated: truncated,
    })
    .into_response()
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

async fn otlp_logs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
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
async fn otlp_logs_inner(state: &Arc<AppState>, headers: &HeaderMap, body: Bytes) -> Response {
    if !state.bearer.admits(headers) {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-protobuf");
    let encoding = otlp::Encoding::from_content_type(content_type);
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
