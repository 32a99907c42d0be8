//! `query principal ARN_OR_EMAIL_OR_CLIENT_ID`: who assumed a role (AWS role ARN, GCP service
//! account email or workload identity provider, Entra application id, Vault role): per
//! workspace, run, phase and alias, how often, with what outcome, from where.

use crate::QueryError;
use crate::events::{alias_label, display_ip};
use crate::lookup::{KeyKind, Lookup};
use crate::render::{Format, Tabular, render, rfc3339};
use crate::span::Span;
use clickhouse::Row;
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};

/// The exchanges naming principal `?` (after the lookup prefix), grouped per workspace, run,
/// phase, alias and provider, first use first, `LIMIT ?, ?`.
pub const PRINCIPAL_USE_SQL: &str = located!(
    "SELECT org_name, workspace_name, run_id, run_phase, alias_tag, provider, \
     toUInt64(count()) AS exchanges, toUInt64(countIf(outcome = 'failure')) AS failures, \
     toUnixTimestamp(min(event_time)) AS first_unix, toUnixTimestamp(max(event_time)) AS last_unix, \
     arraySort(groupUniqArray(IPv6NumToString(source_ip))) AS source_ips, \
     arraySort(groupUniqArray(user_agent)) AS user_agents FROM events FINAL",
    "AND target_principal = ? AND event_kind = 'exchange' \
     GROUP BY org_name, workspace_name, run_id, run_phase, alias_tag, provider \
     ORDER BY first_unix, org_name, workspace_name, run_id, run_phase, alias_tag, provider \
     LIMIT ?, ?"
);

#[derive(Debug, Row, Deserialize)]
struct Stored {
    org_name: String,
    workspace_name: String,
    run_id: String,
    run_phase: String,
    alias_tag: String,
    provider: String,
    exchanges: u64,
    failures: u64,
    first_unix: u32,
    last_unix: u32,
    source_ips: Vec<String>,
    user_agents: Vec<String>,
}

/// One workspace, run, phase and alias that used the principal.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PrincipalUse {
    pub organization: String,
    pub workspace: String,
    pub run_id: String,
    pub phase: String,
    pub alias: String,
    pub provider: String,
    pub exchanges: u64,
    pub failures: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub source_ips: Vec<String>,
    pub user_agents: Vec<String>,
}

pub async fn uses(
    store: &Store,
    principal: &str,
    span: &Span,
) -> Result<Vec<PrincipalUse>, QueryError> {
    let lookup = Lookup {
        kind: KeyKind::Principal,
        key: principal,
    };
    let rows: Vec<Stored> = lookup
        .bind(store.client().query(PRINCIPAL_USE_SQL), span)
        .bind(principal)
        .bind(span.offset)
        .bind(span.limit)
        .fetch_all()
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| PrincipalUse {
            organization: r.org_name,
            workspace: r.workspace_name,
            run_id: r.run_id,
            phase: r.run_phase,
            alias: r.alias_tag,
            provider: r.provider,
            exchanges: r.exchanges,
            failures: r.failures,
            first_seen: rfc3339(r.first_unix),
            last_seen: rfc3339(r.last_unix),
            source_ips: r
                .source_ips
                .iter()
                .map(|ip| display_ip(ip))
                .filter(|ip| !ip.is_empty())
                .collect(),
            user_agents: r
                .user_agents
                .into_iter()
                .filter(|u| !u.is_empty())
                .collect(),
        })
        .collect())
}

impl Tabular for PrincipalUse {
    fn headers() -> &'static [&'static str] {
        &[
            "first seen",
            "last seen",
            "workspace",
            "run",
            "phase",
            "alias",
            "provider",
            "exchanges",
            "failures",
            "source ips",
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.first_seen.clone(),
            self.last_seen.clone(),
            if self.workspace.is_empty() {
                "-".into()
            } else {
                format!("{}/{}", self.organization, self.workspace)
            },
            self.run_id.clone(),
            self.phase.clone(),
            alias_label(&self.alias),
            self.provider.clone(),
            self.exchanges.to_string(),
            self.failures.to_string(),
            self.source_ips.join(" "),
        ]
    }
}

pub fn print(principal: &str, uses: &[PrincipalUse], format: Format) -> Result<String, QueryError> {
    if format == Format::Table && uses.is_empty() {
        return Ok(format!("no exchanges for {principal} in this time span\n"));
    }
    render(uses, format)
}
