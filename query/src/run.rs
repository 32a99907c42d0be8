//! `query run RUN_ID`: the run's timeline, per phase and alias.

use crate::QueryError;
use crate::render::{Format, Tabular, render};
use chrono::{DateTime, SecondsFormat, Utc};
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv6Addr};

pub const RUN_TIMELINE_SQL: &str = include_str!("../sql/run_timeline.sql");

#[derive(Debug, clickhouse::Row, Deserialize)]
struct Row {
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    event_time: DateTime<Utc>,
    event_ms: u16,
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

/// One timeline entry, as printed (JSON field names are part of the stable output).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TimelineEntry {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
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

/// Reads a run's timeline, at most `limit` entries.
pub async fn timeline(
    store: &Store,
    run_id: &str,
    limit: u64,
) -> Result<Vec<TimelineEntry>, QueryError> {
    let rows: Vec<Row> = store
        .client()
        .query(RUN_TIMELINE_SQL)
        .bind(run_id)
        .bind(limit)
        .fetch_all()
        .await?;
    Ok(rows.into_iter().map(entry).collect())
}

fn entry(r: Row) -> TimelineEntry {
    let time = r.event_time + chrono::Duration::milliseconds(i64::from(r.event_ms));
    TimelineEntry {
        time: time.to_rfc3339_opts(SecondsFormat::Millis, true),
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
fn display_ip(text: &str) -> String {
    match text.parse::<Ipv6Addr>() {
        Ok(v6) if v6.is_unspecified() => String::new(),
        Ok(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4).to_string(),
            None => v6.to_string(),
        },
        Err(_) => text.to_owned(),
    }
}

impl Tabular for TimelineEntry {
    fn headers() -> &'static [&'static str] {
        &[
            "time",
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
            self.phase.clone(),
            if self.alias.is_empty() {
                "(default)".into()
            } else {
                self.alias.clone()
            },
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

/// Prints a timeline in `format`; the table form ends with a per-phase-and-alias summary.
pub fn print(
    run_id: &str,
    entries: &[TimelineEntry],
    format: Format,
) -> Result<String, QueryError> {
    let mut out = render(entries, format)?;
    if format == Format::Table {
        if entries.is_empty() {
            return Ok(format!("no events for run {run_id}\n"));
        }
        out = format!("run {run_id}\n{out}");
        let mut groups: Vec<(String, String)> = entries
            .iter()
            .map(|e| (e.phase.clone(), e.alias.clone()))
            .collect();
        groups.sort();
        groups.dedup();
        for (phase, alias) in groups {
            let of = |e: &&TimelineEntry| e.phase == phase && e.alias == alias;
            let issued = entries
                .iter()
                .filter(of)
                .filter(|e| e.kind == "issuance")
                .count();
            let exchanges: Vec<_> = entries
                .iter()
                .filter(of)
                .filter(|e| e.kind == "exchange")
                .collect();
            let failed = exchanges.iter().filter(|e| e.outcome == "failure").count();
            let alias = if alias.is_empty() {
                "(default)".to_owned()
            } else {
                alias
            };
            out.push_str(&format!(
                "{phase:<6} {alias:<12} {issued} issued, {} exchanges, {failed} failed\n",
                exchanges.len()
            ));
        }
    }
    Ok(out)
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
}
