//! `query workspace NAME_OR_ID`: a workspace over time. Per day, provider and alias: runs,
//! tokens issued, exchanges, failures and their error codes, the principals used; and the
//! findings about the workspace.

use crate::QueryError;
use crate::detect::findings::{self, FindingView};
use crate::events::alias_label;
use crate::lookup::{KeyKind, Lookup};
use crate::render::{Format, Tabular, render, rfc3339};
use crate::span::Span;
use clickhouse::Row;
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};

/// Daily activity of the workspaces the lookup names, `LIMIT ?, ?`.
pub const WORKSPACE_DAYS_SQL: &str = located!(
    "SELECT toUnixTimestamp(toStartOfDay(event_time)) AS day_unix, org_name, workspace_name, \
     provider, alias_tag, \
     toUInt64(uniqExactIf(run_id, run_id != '')) AS runs, \
     toUInt64(countIf(event_kind = 'issuance')) AS issued, \
     toUInt64(countIf(event_kind = 'exchange')) AS exchanges, \
     toUInt64(countIf(event_kind = 'exchange' AND outcome = 'failure')) AS failures, \
     arraySort(groupUniqArrayIf(error_code, error_code != '')) AS error_codes, \
     arraySort(groupUniqArrayIf(target_principal, event_kind = 'exchange' \
         AND target_principal != '')) AS principals \
     FROM events FINAL",
    "AND event_kind IN ('issuance', 'exchange', 'session_renewal') \
     GROUP BY day_unix, org_name, workspace_name, provider, alias_tag \
     ORDER BY day_unix, org_name, workspace_name, provider, alias_tag LIMIT ?, ?"
);

#[derive(Debug, Row, Deserialize)]
struct Stored {
    day_unix: u32,
    org_name: String,
    workspace_name: String,
    provider: String,
    alias_tag: String,
    runs: u64,
    issued: u64,
    exchanges: u64,
    failures: u64,
    error_codes: Vec<String>,
    principals: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkspaceDay {
    /// The day's start, RFC 3339 UTC.
    pub day: String,
    pub organization: String,
    pub workspace: String,
    pub provider: String,
    pub alias: String,
    pub runs: u64,
    pub issued: u64,
    pub exchanges: u64,
    pub failures: u64,
    pub error_codes: Vec<String>,
    pub principals: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkspaceReport {
    pub workspace: String,
    pub days: Vec<WorkspaceDay>,
    pub findings: Vec<FindingView>,
}

pub async fn report(
    store: &Store,
    workspace: &str,
    span: &Span,
) -> Result<WorkspaceReport, QueryError> {
    let lookup = Lookup {
        kind: KeyKind::of_workspace(workspace),
        key: workspace,
    };
    let rows: Vec<Stored> = lookup
        .bind(store.client().query(WORKSPACE_DAYS_SQL), span)
        .bind(span.offset)
        .bind(span.limit)
        .fetch_all()
        .await?;
    let days = rows
        .into_iter()
        .map(|r| WorkspaceDay {
            day: rfc3339(r.day_unix),
            organization: r.org_name,
            workspace: r.workspace_name,
            provider: r.provider,
            alias: r.alias_tag,
            runs: r.runs,
            issued: r.issued,
            exchanges: r.exchanges,
            failures: r.failures,
            error_codes: r.error_codes,
            principals: r.principals,
        })
        .collect();
    let findings = findings::of_workspace(store, lookup, span).await?;
    Ok(WorkspaceReport {
        workspace: workspace.to_owned(),
        days,
        findings,
    })
}

impl Tabular for WorkspaceDay {
    fn headers() -> &'static [&'static str] {
        &[
            "day",
            "workspace",
            "provider",
            "alias",
            "runs",
            "issued",
            "exchanges",
            "failures",
            "errors",
            "principals",
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.day.get(..10).unwrap_or(&self.day).to_owned(),
            format!("{}/{}", self.organization, self.workspace),
            self.provider.clone(),
            alias_label(&self.alias),
            self.runs.to_string(),
            self.issued.to_string(),
            self.exchanges.to_string(),
            self.failures.to_string(),
            self.error_codes.join(" "),
            self.principals.join(" "),
        ]
    }
}

pub fn print(report: &WorkspaceReport, format: Format) -> Result<String, QueryError> {
    match format {
        Format::Json => crate::render::json(report),
        Format::Csv => render(&report.days, format),
        Format::Table => {
            if report.days.is_empty() && report.findings.is_empty() {
                return Ok(format!(
                    "no events for workspace {} in this time span\n",
                    report.workspace
                ));
            }
            let mut out = render(&report.days, format)?;
            if report.findings.is_empty() {
                out.push_str("no findings\n");
            } else {
                out.push_str(&format!("{} findings\n", report.findings.len()));
                out.push_str(&render(&report.findings, format)?);
            }
            Ok(out)
        }
    }
}
