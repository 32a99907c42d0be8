//! `query token FINGERPRINT_OR_JTI`: one token's issuance and every exchange of it.
//!
//! The clouds never log the token itself (AWS logs only `sub` and `aud`), so an exchange is
//! tied to the token the way HCP Terraform uses it: same workspace, phase, provider and
//! audience, within the token's validity (five minutes of clock skew either side), and the same
//! run where the log names one (AWS session names and Vault claims do). Where the log names no
//! run (GCP, failed Vault logins), the exchange belongs to the latest such token issued before
//! it: the window ends at the next issuance for the same workspace, phase, provider and
//! audience. Entra sign-ins name neither workspace nor phase, only the application: they are
//! matched by the client id the inventory configures for the token's workspace, alias and
//! phase, up to the next issuance of either phase. Renewals with the same token count as
//! exchanges of it.

use crate::QueryError;
use crate::events::{self, BY_FINGERPRINT_SQL, BY_JTI_SQL, EventView};
use crate::lookup::{KeyKind, Lookup};
use crate::render::{Format, render};
use crate::span::Span;
use credtrail_ingest::store::Store;
use serde::Serialize;

/// The exchanges of one issued token: organization, workspace (`?`, `?`), the validity bounds
/// (`?`, `?`, Unix), run id (`?`), the end for exchanges naming no run (`?`), phase (`?`),
/// provider (`?`), audience (`?`), `LIMIT ?, ?`. The workspace and time bounds are the table's
/// primary key.
pub const TOKEN_EXCHANGES_SQL: &str = with_event_columns!(concat!(
    " WHERE org_name = ? AND workspace_name = ? \
     AND event_time >= toDateTime(?) AND event_time <= toDateTime(?) \
     AND (run_id = ? OR (run_id = '' AND event_time < toDateTime(?))) \
     AND run_phase = ? AND provider = ? \
     AND (audience = ? OR audience = '') AND event_kind != 'issuance' \
     ORDER BY event_time, event_ms, source_event_id LIMIT ?, ?"
));

const SKEW_SECONDS: i64 = 300;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenReport {
    pub token: String,
    /// The token's issuance (more than one only if the issuance was captured twice with
    /// different ids, e.g. by two hooks).
    pub issued: Vec<EventView>,
    pub exchanges: Vec<EventView>,
}

pub async fn report(store: &Store, token: &str, span: &Span) -> Result<TokenReport, QueryError> {
    // A raw token is looked up by its fingerprint: it never reaches ClickHouse (or its query
    // log) or the answer.
    let fingerprinted;
    let token = if credtrail_ingest::fingerprint::contains_secret(token.as_bytes()) {
        fingerprinted = credtrail_ingest::fingerprint::token_fingerprint(token);
        fingerprinted.as_str()
    } else {
        token
    };
    let kind = KeyKind::of_token(token);
    let sql = match kind {
        KeyKind::Fingerprint => BY_FINGERPRINT_SQL,
        _ => BY_JTI_SQL,
    };
    let lookup = Lookup { kind, key: token };
    let named = events::list(store, sql, lookup, &Span::all(span.limit)).await?;
    let (issued, mut exchanges): (Vec<_>, Vec<_>) =
        named.into_iter().partition(|e| e.kind == "issuance");
    for i in &issued {
        let Some((from, to)) = validity(store, i).await? else {
            continue;
        };
        let next = next_issuance(store, i, to, false).await?;
        let rows: Vec<EventView> = events::fetch(
            store
                .client()
                .query(TOKEN_EXCHANGES_SQL)
                .bind(&i.organization)
                .bind(&i.workspace)
                .bind(from.max(span.since_unix()))
                .bind(to.min(span.until_unix()))
                .bind(&i.run_id)
                .bind(next)
                .bind(&i.phase)
                .bind(&i.provider)
                .bind(&i.audience)
                .bind(span.offset)
                .bind(span.limit),
        )
        .await?;
        exchanges.extend(rows);
        if let Some(principal) = configured_principal(store, i).await? {
            let next = next_issuance(store, i, to, true).await?;
            let rows = events::fetch(
                store
                    .client()
                    .query(UNNAMED_EXCHANGES_SQL)
                    .bind(&i.provider)
                    .bind(principal)
                    .bind(from.max(span.since_unix()))
                    .bind(next.min(span.until_unix()))
                    .bind(span.offset)
                    .bind(span.limit),
            )
            .await?;
            exchanges.extend(rows);
        }
    }
    exchanges.sort_by(|a, b| (&a.time, &a.source_event_id).cmp(&(&b.time, &b.source_event_id)));
    exchanges.dedup_by(|a, b| a.source_event_id == b.source_event_id && a.source == b.source);
    exchanges.truncate(usize::try_from(span.limit).unwrap_or(usize::MAX));
    Ok(TokenReport {
        token: token.to_owned(),
        issued,
        exchanges,
    })
}

/// The issued token's validity as Unix seconds, widened by the clock skew.
async fn validity(store: &Store, issued: &EventView) -> Result<Option<(u32, u32)>, QueryError> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Validity {
        iat: u32,
        exp: u32,
    }
    let v = store
        .client()
        .query(VALIDITY_SQL)
        .bind(&issued.organization)
        .bind(&issued.workspace)
        .bind(unix(&issued.time))
        .bind(&issued.source_event_id)
        .fetch_optional::<Validity>()
        .await?;
    Ok(v.map(|v| {
        let from = i64::from(v.iat) - SKEW_SECONDS;
        let to = i64::from(v.exp) + SKEW_SECONDS;
        (
            u32::try_from(from.max(0)).unwrap_or(0),
            u32::try_from(to).unwrap_or(u32::MAX),
        )
    }))
}

/// When the next token for the same workspace, phase, provider and audience was issued (by
/// `until` at the latest): where a run-less exchange stops belonging to `issued`. With
/// `any_phase`, the next token of either phase counts (for logs that name no phase either).
async fn next_issuance(
    store: &Store,
    issued: &EventView,
    until: u32,
    any_phase: bool,
) -> Result<u32, QueryError> {
    let phase = if any_phase { "" } else { issued.phase.as_str() };
    let at = unix(&issued.time);
    let next: u32 = store
        .client()
        .query(NEXT_ISSUANCE_SQL)
        .bind(&issued.organization)
        .bind(&issued.workspace)
        .bind(at)
        .bind(until)
        .bind(phase)
        .bind(phase)
        .bind(&issued.provider)
        .bind(&issued.audience)
        .fetch_one()
        .await?;
    Ok(if next == 0 { until } else { next.min(until) })
}

/// The first issuance after `?` and by `?` (Unix) in organization and workspace `?`, `?` for the
/// same phase (`?`, `?`; empty for any), provider and audience (`?`, `?`); 0 when none.
pub const NEXT_ISSUANCE_SQL: &str = "SELECT toUInt32(min(toUnixTimestamp(event_time))) \
     FROM events FINAL \
     WHERE org_name = ? AND workspace_name = ? \
     AND event_time > toDateTime(?) AND event_time <= toDateTime(?) \
     AND event_kind = 'issuance' AND (? = '' OR run_phase = ?) AND provider = ? \
     AND audience = ?";

/// Exchanges whose log names neither workspace nor phase (Entra sign-ins name the application
/// only), by provider (`?`) and principal (`?`) in `[?, ?)` (Unix), `LIMIT ?, ?`.
pub const UNNAMED_EXCHANGES_SQL: &str = with_event_columns!(concat!(
    " WHERE org_name = '' AND workspace_name = '' AND provider = ? AND target_principal = ? \
     AND event_time >= toDateTime(?) AND event_time < toDateTime(?) \
     AND event_kind = 'exchange' \
     ORDER BY event_time, event_ms, source_event_id LIMIT ?, ?"
));

/// An event's RFC 3339 time as Unix seconds.
fn unix(time: &str) -> u32 {
    chrono::DateTime::parse_from_rfc3339(time)
        .map(|t| u32::try_from(t.timestamp()).unwrap_or(0))
        .unwrap_or(0)
}

/// For providers whose log names only the principal (Azure): the one the configuration in force
/// at issuance names for the token's workspace, alias and phase.
async fn configured_principal(
    store: &Store,
    issued: &EventView,
) -> Result<Option<String>, QueryError> {
    if issued.provider != "azure" {
        return Ok(None);
    }
    let at = chrono::DateTime::parse_from_rfc3339(&issued.time)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_default();
    let configured = crate::inventory::at(store, at, &issued.workspace).await?;
    Ok(configured
        .into_iter()
        .find(|c| {
            c.organization == issued.organization
                && c.provider == issued.provider
                && c.alias == issued.alias
        })
        .map(|c| c.principal_for(&issued.phase).to_owned())
        .filter(|p| !p.is_empty()))
}

/// An issuance's `iat` and `exp` (Unix; `exp` defaults to an hour after `iat`, HCP Terraform's
/// token lifetime) by organization, workspace, event time (the primary key) and source event id.
pub const VALIDITY_SQL: &str = "SELECT \
     toUnixTimestamp(ifNull(token_issued_at, event_time)) AS iat, \
     toUnixTimestamp(ifNull(token_expires_at, event_time + 3600)) AS exp \
     FROM events FINAL \
     WHERE org_name = ? AND workspace_name = ? AND event_time = toDateTime(?) \
     AND event_kind = 'issuance' AND source_event_id = ? LIMIT 1";

pub fn print(report: &TokenReport, format: Format) -> Result<String, QueryError> {
    match format {
        Format::Json => crate::render::json(report),
        Format::Csv => {
            let all: Vec<EventView> = report
                .issued
                .iter()
                .chain(&report.exchanges)
                .cloned()
                .collect();
            render(&all, format)
        }
        Format::Table => {
            if report.issued.is_empty() && report.exchanges.is_empty() {
                return Ok(format!("no token {} in this time span\n", report.token));
            }
            let mut out = format!("token {}\n", report.token);
            if report.issued.is_empty() {
                out.push_str("issuance not captured\n");
            } else {
                out.push_str(&render(&report.issued, format)?);
            }
            out.push_str(&format!("{} exchanges\n", report.exchanges.len()));
            if !report.exchanges.is_empty() {
                out.push_str(&render(&report.exchanges, format)?);
            }
            Ok(out)
        }
    }
}
