//! Reading findings back: `credtrail findings` and its stable JSON form.
//!
//! One object per finding: `finding_id`, `rule`, `severity`, `provider`, `organization`,
//! `workspace`, `alias`, `run_id`, `first_seen`, `last_seen` (RFC 3339), `evidence` (source event
//! ids), `summary`, `status` (`open`, `suppressed`, `resolved`). Fields are only ever added.

use super::Severity;
use crate::QueryError;
use crate::render::{Format, Tabular, render, rfc3339};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};

/// `SELECT <the columns of `Stored`> FROM findings FINAL WHERE $condition…`: one column list
/// for every listing of findings, still one string literal.
macro_rules! findings_where {
    ($($condition:literal),+) => {
        concat!(
            "SELECT finding_id, rule_id AS rule, severity, provider, \
             org_name AS organization, workspace_name AS workspace, alias_tag AS alias, run_id, \
             toUnixTimestamp(first_seen) AS first_seen_unix, \
             toUnixTimestamp(last_seen) AS last_seen_unix, evidence, summary, status \
             FROM findings FINAL WHERE ",
            $($condition),+
        )
    };
}

/// Findings last seen at or after `?`, optionally of one rule (`?`, empty for all), at or above
/// a severity rank (`?`: 0 info … 4 critical), optionally of one status (`?`, empty for all),
/// newest first, `LIMIT ?, ?` (offset, count).
pub const FINDINGS_SQL: &str = findings_where!(
    "last_seen >= toDateTime(?) AND (? = '' OR rule_id = ?) \
     AND indexOf(['info', 'low', 'medium', 'high', 'critical'], severity) - 1 >= ? \
     AND (? = '' OR status = ?) \
     ORDER BY last_seen DESC, rule, finding_id LIMIT ?, ?"
);

/// The findings that cite a run: its id (`?`) or one of its events' ids (`?`, an array), newest
/// first, `LIMIT ?`.
pub const CITING_RUN_SQL: &str = findings_where!(
    "run_id = ? OR hasAny(evidence, ?) \
     ORDER BY last_seen DESC, rule, finding_id LIMIT ?"
);

/// The findings about the workspaces the lookup (`key_kind = ?`, `key = ?`) names, seen in
/// `[?, ?)`, newest first, `LIMIT ?`.
pub const OF_WORKSPACE_SQL: &str = findings_where!(
    "(org_name, workspace_name) IN (SELECT org_name, workspace_name FROM event_lookup \
         WHERE key_kind = ? AND key = ?) \
     AND last_seen >= toDateTime(?) AND first_seen < toDateTime(?) \
     ORDER BY last_seen DESC, rule, finding_id LIMIT ?"
);

/// Open findings per rule.
pub const OPEN_BY_RULE_SQL: &str = "SELECT rule_id, toUInt64(count()) AS open \
     FROM findings FINAL WHERE status = 'open' GROUP BY rule_id";

/// How many findings of each rule are open.
pub async fn open_by_rule(
    store: &Store,
) -> Result<std::collections::HashMap<String, u64>, QueryError> {
    #[derive(Row, Deserialize)]
    struct Open {
        rule_id: String,
        open: u64,
    }
    let rows = store
        .client()
        .query(OPEN_BY_RULE_SQL)
        .fetch_all::<Open>()
        .await?;
    Ok(rows.into_iter().map(|r| (r.rule_id, r.open)).collect())
}

#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
struct Stored {
    finding_id: String,
    rule: String,
    severity: String,
    provider: String,
    organization: String,
    workspace: String,
    alias: String,
    run_id: String,
    first_seen_unix: u32,
    last_seen_unix: u32,
    evidence: Vec<String>,
    summary: String,
    status: String,
}

/// A finding as the CLI and the API show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingView {
    pub finding_id: String,
    pub rule: String,
    pub severity: String,
    pub provider: String,
    pub organization: String,
    pub workspace: String,
    pub alias: String,
    pub run_id: String,
    pub first_seen: String,
    pub last_seen: String,
    pub evidence: Vec<String>,
    pub summary: String,
    pub status: String,
}

impl Tabular for FindingView {
    fn headers() -> &'static [&'static str] {
        &[
            "last seen",
            "severity",
            "rule",
            "workspace",
            "alias",
            "run",
            "status",
            "summary",
        ]
    }

    fn cells(&self) -> Vec<String> {
        vec![
            self.last_seen.clone(),
            self.severity.clone(),
            self.rule.clone(),
            if self.workspace.is_empty() {
                "-".into()
            } else {
                format!("{}/{}", self.organization, self.workspace)
            },
            self.alias.clone(),
            self.run_id.clone(),
            self.status.clone(),
            self.summary.clone(),
        ]
    }
}

/// Which findings to list.
#[derive(Debug, Clone)]
pub struct Filter {
    pub since: DateTime<Utc>,
    /// A rule id; empty for all.
    pub rule: String,
    pub min_severity: Severity,
    /// `open`, `suppressed` or `resolved`; empty for all.
    pub status: String,
    pub offset: u64,
    pub limit: u64,
}

/// Findings per the filter.
pub async fn list(store: &Store, f: &Filter) -> Result<Vec<FindingView>, QueryError> {
    let query = store
        .client()
        .query(FINDINGS_SQL)
        .bind(f.since.timestamp().max(0))
        .bind(&f.rule)
        .bind(&f.rule)
        .bind(f.min_severity as i64)
        .bind(&f.status)
        .bind(&f.status)
        .bind(f.offset)
        .bind(f.limit);
    fetch(query).await
}

/// Findings citing run `run_id` or any of `event_ids` (its events' source ids).
pub async fn citing_run(
    store: &Store,
    run_id: &str,
    event_ids: &[String],
    limit: u64,
) -> Result<Vec<FindingView>, QueryError> {
    let query = store
        .client()
        .query(CITING_RUN_SQL)
        .bind(run_id)
        .bind(event_ids)
        .bind(limit);
    fetch(query).await
}

/// Findings about the workspaces `lookup` names, within `span`.
pub async fn of_workspace(
    store: &Store,
    lookup: crate::lookup::Lookup<'_>,
    span: &crate::span::Span,
) -> Result<Vec<FindingView>, QueryError> {
    let query = store
        .client()
        .query(OF_WORKSPACE_SQL)
        .bind(lookup.kind.as_str())
        .bind(lookup.key)
        .bind(span.since_unix())
        .bind(span.until_unix())
        .bind(span.limit);
    fetch(query).await
}

/// Runs a query that selects the `Stored` columns.
async fn fetch(query: clickhouse::query::Query) -> Result<Vec<FindingView>, QueryError> {
    let rows = query.fetch_all::<Stored>().await?;
    Ok(rows
        .into_iter()
        .map(|s| FindingView {
            finding_id: s.finding_id,
            rule: s.rule,
            severity: s.severity,
            provider: s.provider,
            organization: s.organization,
            workspace: s.workspace,
            alias: s.alias,
            run_id: s.run_id,
            first_seen: rfc3339(s.first_seen_unix),
            last_seen: rfc3339(s.last_seen_unix),
            evidence: s.evidence,
            summary: s.summary,
            status: s.status,
        })
        .collect())
}

pub fn print(rows: &[FindingView], format: Format) -> Result<String, QueryError> {
    if format == Format::Table && rows.is_empty() {
        return Ok("no findings\n".into());
    }
    render(rows, format)
}
