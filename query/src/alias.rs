//! `query alias WORKSPACE TAG`: what an alias is configured to use against what it used.
//!
//! Configured: the inventory snapshot in force at the alias' last use in the span (or the span's
//! end). Used: the exchanges attributed to the alias, per provider, phase, principal and
//! audience, each marked with whether the configuration expects that principal for that phase.
//! The empty tag (`""` or `default`) is the default configuration.

use crate::QueryError;
use crate::events::alias_label;
use crate::inventory::{self, Configured};
use crate::lookup::{KeyKind, Lookup};
use crate::render::{Format, Tabular, render, rfc3339};
use crate::span::Span;
use chrono::{DateTime, Utc};
use clickhouse::Row;
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};

/// The exchanges attributed to alias `?` in the workspaces the lookup names, per provider,
/// phase, principal and audience, `LIMIT ?, ?`.
pub const ALIAS_USE_SQL: &str = located!(
    "SELECT org_name, workspace_name, provider, run_phase, target_principal, audience, \
     toUInt64(count()) AS exchanges, toUInt64(countIf(outcome = 'failure')) AS failures, \
     toUInt64(uniqExactIf(run_id, run_id != '')) AS runs, \
     toUnixTimestamp(min(event_time)) AS first_unix, toUnixTimestamp(max(event_time)) AS last_unix \
     FROM events FINAL",
    "AND event_kind = 'exchange' AND alias_tag = ? \
     GROUP BY org_name, workspace_name, provider, run_phase, target_principal, audience \
     ORDER BY org_name, workspace_name, provider, run_phase, target_principal, audience \
     LIMIT ?, ?"
);

#[derive(Debug, Row, Deserialize)]
struct Stored {
    org_name: String,
    workspace_name: String,
    provider: String,
    run_phase: String,
    target_principal: String,
    audience: String,
    exchanges: u64,
    failures: u64,
    runs: u64,
    first_unix: u32,
    last_unix: u32,
}

/// One principal the alias used in one phase.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AliasUse {
    pub organization: String,
    pub workspace: String,
    pub provider: String,
    pub phase: String,
    pub principal: String,
    pub audience: String,
    pub runs: u64,
    pub exchanges: u64,
    pub failures: u64,
    pub first_seen: String,
    pub last_seen: String,
    /// What the configuration in force names for this provider and phase (empty: none).
    pub configured_principal: String,
    /// `used`'s principal is the configured one.
    pub as_configured: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AliasReport {
    pub workspace: String,
    pub alias: String,
    /// The alias' configurations (one per provider) in force at `configured_at`.
    pub configured_at: String,
    pub configured: Vec<Configured>,
    pub used: Vec<AliasUse>,
}

/// `default` and the empty tag name the default configuration.
pub fn normalize_tag(tag: &str) -> &str {
    if tag.eq_ignore_ascii_case("default") {
        ""
    } else {
        tag
    }
}

pub async fn report(
    store: &Store,
    workspace: &str,
    tag: &str,
    span: &Span,
) -> Result<AliasReport, QueryError> {
    let tag = normalize_tag(tag);
    let lookup = Lookup {
        kind: KeyKind::of_workspace(workspace),
        key: workspace,
    };
    let rows: Vec<Stored> = lookup
        .bind(store.client().query(ALIAS_USE_SQL), span)
        .bind(tag)
        .bind(span.offset)
        .bind(span.limit)
        .fetch_all()
        .await?;
    let last_use = rows.iter().map(|r| r.last_unix).max();
    let at = last_use.map_or(span.until_unix().min(now_unix()), |t| {
        t.min(span.until_unix())
    });
    let at_time = DateTime::<Utc>::from_timestamp(i64::from(at), 0).unwrap_or_default();
    // The inventory is keyed by workspace name; an id is resolved through what was used, or
    // through the inventory rows that carry it.
    let mut configured: Vec<Configured> = Vec::new();
    let names: Vec<&str> = if rows.is_empty() {
        vec![workspace]
    } else {
        let mut n: Vec<&str> = rows.iter().map(|r| r.workspace_name.as_str()).collect();
        n.sort_unstable();
        n.dedup();
        n
    };
    for name in names {
        let filter = if name.starts_with("ws-") { "" } else { name };
        configured.extend(
            inventory::at(store, at_time, filter)
                .await?
                .into_iter()
                .filter(|c| c.alias == tag)
                .filter(|c| c.workspace == name || c.workspace_id == name),
        );
    }
    let used = rows
        .into_iter()
        .map(|r| {
            let expected = configured
                .iter()
                .find(|c| {
                    c.organization == r.org_name
                        && c.workspace == r.workspace_name
                        && c.provider == r.provider
                })
                .map(|c| c.principal_for(&r.run_phase).to_owned())
                .unwrap_or_default();
            AliasUse {
                as_configured: !expected.is_empty() && expected == r.target_principal,
                configured_principal: expected,
                organization: r.org_name,
                workspace: r.workspace_name,
                provider: r.provider,
                phase: r.run_phase,
                principal: r.target_principal,
                audience: r.audience,
                runs: r.runs,
                exchanges: r.exchanges,
                failures: r.failures,
                first_seen: rfc3339(r.first_unix),
                last_seen: rfc3339(r.last_unix),
            }
        })
        .collect();
    Ok(AliasReport {
        workspace: workspace.to_owned(),
        alias: tag.to_owned(),
        configured_at: rfc3339(at),
        configured,
        used,
    })
}

fn now_unix() -> u32 {
    u32::try_from(Utc::now().timestamp()).unwrap_or(u32::MAX)
}

impl Tabular for AliasUse {
    fn headers() -> &'static [&'static str] {
        &[
            "provider",
            "phase",
            "used principal",
            "configured principal",
            "as configured",
            "runs",
            "exchanges",
            "failures",
            "last seen",
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.provider.clone(),
            self.phase.clone(),
            self.principal.clone(),
            if self.configured_principal.is_empty() {
                "(not configured)".into()
            } else {
                self.configured_principal.clone()
            },
            if self.as_configured { "yes" } else { "NO" }.into(),
            self.runs.to_string(),
            self.exchanges.to_string(),
            self.failures.to_string(),
            self.last_seen.clone(),
        ]
    }
}

pub fn print(report: &AliasReport, format: Format) -> Result<String, QueryError> {
    match format {
        Format::Json => crate::render::json(report),
        Format::Csv => render(&report.used, format),
        Format::Table => {
            let mut out = format!(
                "alias {} of {}: configured at {}\n",
                alias_label(&report.alias),
                report.workspace,
                report.configured_at
            );
            if report.configured.is_empty() {
                out.push_str("not in the inventory at that time\n");
            } else {
                out.push_str(&render(&report.configured, format)?);
            }
            if report.used.is_empty() {
                out.push_str("no exchanges attributed to this alias in this time span\n");
            } else {
                out.push_str(&render(&report.used, format)?);
            }
            Ok(out)
        }
    }
}
