//! Event lists: the stored events one identifier names, oldest first, in the one shape every
//! forensic command and API endpoint prints them (`EventView`).

use crate::QueryError;
use crate::lookup::Lookup;
use crate::render::Tabular;
use crate::span::Span;
use chrono::{DateTime, SecondsFormat, Utc};
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv6Addr};

/// Passes the event-list select (`SELECT <the columns of `Row`> FROM events FINAL`) as the first
/// argument of macro `$m`: `with_event_columns!(concat!(" WHERE …"))` or
/// `with_event_columns!(located!("AND …"))`. One column list for every query that reads events
/// into an `EventView`; the result is still one string literal.
macro_rules! with_event_columns {
    ($m:ident!($($args:tt)*)) => {
        $m!(
            "SELECT event_time, event_ms, run_id, run_phase, alias_tag, provider, event_kind, \
             outcome, error_code, org_name, workspace_name, audience, target_principal, \
             session_id, IPv6NumToString(source_ip) AS source_ip, user_agent, \
             token_fingerprint, jti, source, source_event_id FROM events FINAL",
            $($args)*
        )
    };
}

/// The events where `$column = ?`, located by the lookup, oldest first, issuance before the
/// exchanges of the same second, `LIMIT offset, count`.
macro_rules! events_where {
    ($column:literal) => {
        with_event_columns!(located!(
            "AND ",
            $column,
            " = ? ORDER BY event_time, event_ms, event_kind DESC, source_event_id LIMIT ?, ?"
        ))
    };
}

pub const BY_RUN_SQL: &str = events_where!("run_id");
pub const BY_SESSION_SQL: &str = events_where!("session_id");
pub const BY_JTI_SQL: &str = events_where!("jti");
pub const BY_FINGERPRINT_SQL: &str = events_where!("token_fingerprint");

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Row {
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    event_time: DateTime<Utc>,
    event_ms: u16,
    run_id: String,
    run_phase: String,
    alias_tag: String,
    provider: String,
    event_kind: String,
    outcome: String,
    error_code: String,
    org_name: String,
    workspace_name: String,
    audience: String,
    target_principal: String,
    session_id: String,
    source_ip: String,
    user_agent: String,
    token_fingerprint: String,
    jti: String,
    source: String,
    source_event_id: String,
}

/// One event, as printed (JSON field names are part of the stable output).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventView {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    pub run_id: String,
    pub phase: String,
    /// Empty for the default configuration.
    pub alias: String,
    pub provider: String,
    pub kind: String,
    pub outcome: String,
    pub error_code: String,
    pub organization: String,
    pub workspace: String,
    pub audience: String,
    pub principal: String,
    pub session_id: String,
    pub source_ip: String,
    pub user_agent: String,
    pub token_fingerprint: String,
    pub jti: String,
    pub source: String,
    pub source_event_id: String,
}

/// Runs one of the `BY_*_SQL` lists for `lookup` (whose kind matches the list's column).
pub async fn list(
    store: &Store,
    sql: &str,
    lookup: Lookup<'_>,
    span: &Span,
) -> Result<Vec<EventView>, QueryError> {
    fetch(
        lookup
            .bind(store.client().query(sql), span)
            .bind(lookup.key)
            .bind(span.offset)
            .bind(span.limit),
    )
    .await
}

/// Runs a bound query that selects the event-list columns.
pub async fn fetch(query: clickhouse::query::Query) -> Result<Vec<EventView>, QueryError> {
    let rows: Vec<Row> = query.fetch_all().await?;
    Ok(rows.into_iter().map(view).collect())
}

fn view(r: Row) -> EventView {
    let time = r.event_time + chrono::Duration::milliseconds(i64::from(r.event_ms));
    EventView {
        time: time.to_rfc3339_opts(SecondsFormat::Millis, true),
        run_id: r.run_id,
        phase: r.run_phase,
        alias: r.alias_tag,
        provider: r.provider,
        kind: r.event_kind,
        outcome: r.outcome,
        error_code: r.error_code,
        organization: r.org_name,
        workspace: r.workspace_name,
        audience: r.audience,
        principal: r.target_principal,
        session_id: r.session_id,
        source_ip: display_ip(&r.source_ip),
        user_agent: r.user_agent,
        token_fingerprint: r.token_fingerprint,
        jti: r.jti,
        source: r.source,
        source_event_id: r.source_event_id,
    }
}

/// `::ffff:1.2.3.4` -> `1.2.3.4`; `::` (no IP) -> empty.
pub fn display_ip(text: &str) -> String {
    match text.parse::<Ipv6Addr>() {
        Ok(v6) if v6.is_unspecified() => String::new(),
        Ok(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4).to_string(),
            None => v6.to_string(),
        },
        Err(_) => text.to_owned(),
    }
}

/// The empty alias is the default configuration.
pub fn alias_label(alias: &str) -> String {
    if alias.is_empty() {
        "(default)".into()
    } else {
        alias.to_owned()
    }
}

impl Tabular for EventView {
    fn headers() -> &'static [&'static str] {
        &[
            "time",
            "run",
            "phase",
            "alias",
            "provider",
            "kind",
            "outcome",
            "error",
            "principal",
            "session",
            "source ip",
            "token",
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.time.clone(),
            self.run_id.clone(),
            self.phase.clone(),
            alias_label(&self.alias),
            self.provider.clone(),
            self.kind.clone(),
            self.outcome.clone(),
            self.error_code.clone(),
            self.principal.clone(),
            self.session_id.clone(),
            self.source_ip.clone(),
            short_fingerprint(&self.token_fingerprint),
        ]
    }
}

fn short_fingerprint(f: &str) -> String {
    f.get(..19).map(|s| format!("{s}…")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips_display_without_mapping() {
        assert_eq!(display_ip("::ffff:203.0.113.9"), "203.0.113.9");
        assert_eq!(display_ip("::"), "");
        assert_eq!(display_ip("2001:db8::1"), "2001:db8::1");
    }

    #[test]
    fn every_list_binds_the_lookup_then_key_and_page() {
        for sql in [BY_RUN_SQL, BY_SESSION_SQL, BY_JTI_SQL, BY_FINGERPRINT_SQL] {
            assert_eq!(sql.matches('?').count(), crate::lookup::LOOKUP_BINDS + 3);
            assert!(sql.contains("FROM events FINAL WHERE (org_name, workspace_name) IN"));
        }
    }
}
