//! The forensic HTTP API that `credtrail serve` mounts beside the collector: the `credtrail
//! query` reports and the findings as JSON, behind bearer tokens (`http.api_tokens_file`),
//! paginated by `offset`/`limit`, documented in `openapi.json` (served at
//! `/api/v1/openapi.json`; `tests/api.rs` checks every response against it). The web console
//! (`/`, [`crate::console`]) is a client of this API.

use crate::detect::Severity;
use crate::detect::findings::{self, Filter};
use crate::span::Span;
use crate::{QueryError, alias, principal, run, session, token, workspace};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use credtrail_ingest::sources::bearer::Bearer;
use credtrail_ingest::sources::hosts::AllowedHosts;
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Rows per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: u64 = 100;
const MAX_LIMIT: u64 = 10_000;

struct Api {
    store: Store,
    bearer: Bearer,
}

pub fn router(store: Store, bearer: Bearer, hosts: AllowedHosts) -> Router {
    let api = Arc::new(Api { store, bearer });
    let hosts = Arc::new(hosts);
    Router::new()
        .route("/api/v1/runs/{run_id}", get(run))
        .route("/api/v1/workspaces/{workspace}", get(workspace))
        .route("/api/v1/workspaces/{workspace}/aliases/{tag}", get(alias))
        .route("/api/v1/principals/{principal}", get(principal))
        .route("/api/v1/sessions/{session_id}", get(session))
        .route("/api/v1/tokens/{token}", get(token))
        .route("/api/v1/findings", get(findings))
        .route(
            "/api/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .with_state(api)
        .merge(crate::console::router())
        .layer(axum::middleware::from_fn(move |req, next| {
            guard(Arc::clone(&hosts), req, next)
        }))
}

/// Every API and console answer: refused for a `Host` not allowed (DNS rebinding), never
/// sniffed as another type, never cached (answers hold forensic data).
async fn guard(
    hosts: Arc<AllowedHosts>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !hosts.admits(req.headers()) {
        return ApiError(
            StatusCode::MISDIRECTED_REQUEST,
            "this Host is not one credtrail answers (http.allowed_hosts)".into(),
        )
        .into_response();
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The span and page every report endpoint takes.
#[derive(Debug, Deserialize)]
struct PageParams {
    since: Option<String>,
    until: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
}

impl PageParams {
    fn span(&self) -> Result<Span, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::bad(format!("limit must be 1..={MAX_LIMIT}")));
        }
        let (since, until) = (self.since.as_deref(), self.until.as_deref());
        Span::parse(since, until, self.offset.unwrap_or(0), limit, Utc::now())
            .map_err(ApiError::bad)
    }
}

/// Every answer: the report (or list) and where the next page starts (`null`: no more).
#[derive(Debug, Serialize)]
struct Page<T> {
    data: T,
    offset: u64,
    limit: u64,
    next_offset: Option<u64>,
}

fn page<T>(data: T, rows: usize, span: &Span) -> Json<Page<T>> {
    let full = u64::try_from(rows).unwrap_or(u64::MAX) >= span.limit;
    Json(Page {
        data,
        offset: span.offset,
        limit: span.limit,
        next_offset: full.then_some(span.offset + span.limit),
    })
}

struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(message: String) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, message)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        // The detail goes to the log; the client learns only that the store failed.
        tracing::error!(error = %e, "API query failed");
        ApiError(StatusCode::BAD_GATEWAY, "the store did not answer".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

fn admit(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    if api.bearer.admits(headers) {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "missing or unknown bearer token".into(),
        ))
    }
}

type Answer<T> = Result<Json<Page<T>>, ApiError>;

/// What every report endpoint does: admit the reader, read the span, run the report, page it
/// by the length of its main list (`rows`).
async fn answer<T, Fut>(
    api: &Api,
    headers: &HeaderMap,
    p: &PageParams,
    report: impl FnOnce(Store, Span) -> Fut,
    rows: impl Fn(&T) -> usize,
) -> Answer<T>
where
    Fut: Future<Output = Result<T, ApiError>>,
{
    admit(api, headers)?;
    let span = p.span()?;
    let r = report(api.store.clone(), span).await?;
    let n = rows(&r);
    Ok(page(r, n, &span))
}

#[tracing::instrument(name = "api.run", skip_all)]
async fn run(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<PageParams>,
) -> Answer<run::RunReport> {
    let report =
        |store: Store, span: Span| async move { Ok(run::report(&store, &id, &span).await?) };
    answer(&api, &headers, &p, report, |r| r.events.len()).await
}

#[tracing::instrument(name = "api.workspace", skip_all)]
async fn workspace(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(ws): Path<String>,
    Query(p): Query<PageParams>,
) -> Answer<workspace::WorkspaceReport> {
    let report =
        |store: Store, span: Span| async move { Ok(workspace::report(&store, &ws, &span).await?) };
    answer(&api, &headers, &p, report, |r| r.days.len()).await
}

#[tracing::instrument(name = "api.alias", skip_all)]
async fn alias(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((ws, tag)): Path<(String, String)>,
    Query(p): Query<PageParams>,
) -> Answer<alias::AliasReport> {
    let report = |store: Store, span: Span| async move {
        Ok(alias::report(&store, &ws, &tag, &span).await?)
    };
    answer(&api, &headers, &p, report, |r| r.used.len()).await
}

#[tracing::instrument(name = "api.principal", skip_all)]
async fn principal(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(who): Path<String>,
    Query(p): Query<PageParams>,
) -> Answer<Vec<principal::PrincipalUse>> {
    let report =
        |store: Store, span: Span| async move { Ok(principal::uses(&store, &who, &span).await?) };
    answer(&api, &headers, &p, report, Vec::len).await
}

#[tracing::instrument(name = "api.session", skip_all)]
async fn session(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(p): Query<PageParams>,
) -> Answer<session::SessionReport> {
    let report =
        |store: Store, span: Span| async move { Ok(session::report(&store, &id, &span).await?) };
    answer(&api, &headers, &p, report, |r| r.events.len()).await
}

#[tracing::instrument(name = "api.token", skip_all)]
async fn token(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(t): Path<String>,
    Query(p): Query<PageParams>,
) -> Answer<token::TokenReport> {
    let report =
        |store: Store, span: Span| async move { Ok(token::report(&store, &t, &span).await?) };
    answer(&api, &headers, &p, report, |r| r.exchanges.len()).await
}

#[derive(Debug, Deserialize)]
struct FindingParams {
    since: Option<String>,
    rule: Option<String>,
    severity: Option<String>,
    status: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
}

#[tracing::instrument(name = "api.findings", skip_all)]
async fn findings(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Query(p): Query<FindingParams>,
) -> Answer<Vec<findings::FindingView>> {
    let page_params = PageParams {
        // Findings default to the last 7 days.
        since: Some(p.since.clone().unwrap_or_else(|| "7d".into())),
        until: None,
        offset: p.offset,
        limit: p.limit,
    };
    let report = |store: Store, span: Span| async move {
        let min_severity = match p.severity.as_deref() {
            None | Some("") => Severity::Info,
            Some(s) => Severity::parse(s)
                .ok_or_else(|| ApiError::bad(format!("unknown severity {s:?}")))?,
        };
        let status = p.status.unwrap_or_default();
        if !["", "open", "suppressed", "resolved"].contains(&status.as_str()) {
            return Err(ApiError::bad(format!("unknown status {status:?}")));
        }
        let filter = Filter {
            since: span.since,
            rule: p.rule.unwrap_or_default(),
            min_severity,
            status,
            offset: span.offset,
            limit: span.limit,
        };
        Ok(findings::list(&store, &filter).await?)
    };
    answer(&api, &headers, &page_params, report, Vec::len).await
}
