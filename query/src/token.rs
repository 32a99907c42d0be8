//! `query token FINGERPRINT_OR_JTI`: one token's issuance and every exchange of it.
//!
//! The clouds never log the token itself (AWS logs only `sub` and `aud`), so an exchange is
//! tied to the token the way HCP Terraform uses it: same workspace, phase, provider and
//! audience, the same run where the log names one (AWS session names and Vault claims do; GCP
//! and Entra do not), within the token's validity (five minutes of clock skew either side).
//! Renewals with the same token count as exchanges of it.

use crate::QueryError;
use crate::events::{self, BY_FINGERPRINT_SQL, BY_JTI_SQL, EventView};
use crate::lookup::{KeyKind, Lookup};
use crate::render::{Format, render};
use crate::span::Span;
use credtrail_ingest::store::Store;
use serde::Serialize;

/// The exchanges of one issued token: organization, workspace (`?`, `?`), the validity bounds
/// (`?`, `?`, Unix), run id (`?`), phase (`?`), provider (`?`), audience (`?`),
/// `LIMIT ?, ?`. The workspace and time bounds are the table's primary key.
pub const TOKEN_EXCHANGES_SQL: &str = "SELECT event_time, event_ms, run_id, run_phase, \
     alias_tag, provider, event_kind, outcome, error_code, org_name, workspace_name, audience, \
     target_principal, session_id, IPv6NumToString(source_ip) AS source_ip, user_agent, \
     token_fingerprint, jti, source, source_event_id FROM events FINAL \
     WHERE org_name = ? AND workspace_name = ? \
     AND event_time >= toDateTime(?) AND event_time <= toDateTime(?) \
     AND (run_id = ? OR run_id = '') AND run_phase = ? AND provider = ? \
     AND (audience = ? OR audience = '') AND event_kind != 'issuance' \
     ORDER BY event_time, event_ms, source_event_id LIMIT ?, ?";

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
        let rows: Vec<EventView> = events::fetch(
            store
                .client()
                .query(TOKEN_EXCHANGES_SQL)
                .bind(&i.organization)
                .bind(&i.workspace)
                .bind(from.max(span.since_unix()))
                .bind(to.min(span.until_unix()))
                .bind(&i.run_id)
                .bind(&i.phase)
                .bind(&i.provider)
                .bind(&i.audience)
                .bind(span.offset)
                .bind(span.limit),
        )
        .await?;
        exchanges.extend(rows);
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

/// An issuance's `iat` and `exp` (Unix; `exp` defaults to an hour after `iat`, HCP Terraform's
/// token lifetime) by organization, workspace and source event id.
pub const VALIDITY_SQL: &str = "SELECT \
     toUnixTimestamp(ifNull(token_issued_at, event_time)) AS iat, \
     toUnixTimestamp(ifNull(token_expires_at, event_time + 3600)) AS exp \
     FROM events FINAL \
     WHERE org_name = ? AND workspace_name = ? AND event_kind = 'issuance' \
     AND source_event_id = ? LIMIT 1";

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
