//! Evaluating rules over an event-time window and storing what they find.
//!
//! A finding's id is a hash of its rule and its key, so evaluating a window again, or a later
//! window that sees late evidence of the same thing, produces the same finding: a new version
//! (later `updated_at`) that replaces the old in `findings FINAL`. A status someone set
//! (`resolved`) and the first detection time survive re-evaluation, and a version merges what was
//! known (earliest first seen, latest last seen, every evidence id up to [`MAX_EVIDENCE`]), so a
//! sliding window that no longer sees a finding's early events never narrows it. A version that
//! would change nothing is not written.

use super::rule::{Rule, Window};
use super::suppress::Suppressions;
use crate::QueryError;
use chrono::{DateTime, Utc};
use clickhouse::Row;
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// One row of a rule's SQL (the column contract in `rule`).
#[derive(Debug, Clone, PartialEq, Row, Deserialize)]
pub struct Hit {
    pub finding_key: String,
    pub provider: String,
    pub org_name: String,
    pub workspace_name: String,
    pub alias_tag: String,
    pub run_id: String,
    pub principal: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub first_seen: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub last_seen: DateTime<Utc>,
    pub evidence: Vec<String>,
    pub summary: String,
}

/// A stored finding; field order is the `findings` column order.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct Finding {
    pub finding_id: String,
    pub rule_id: String,
    pub severity: String,
    pub provider: String,
    pub org_name: String,
    pub workspace_name: String,
    pub alias_tag: String,
    pub run_id: String,
    pub principal: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub first_seen: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub last_seen: DateTime<Utc>,
    pub evidence: Vec<String>,
    pub summary: String,
    pub status: String,
    pub status_reason: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub detected_at: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub updated_at: DateTime<Utc>,
}

/// The id of a rule's finding with this key.
pub fn finding_id(rule_id: &str, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(rule_id.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    hex::encode(&digest[..16])
}

/// Runs one rule over `[start, end)`.
pub async fn hits(store: &Store, rule: &Rule, window: &Window) -> Result<Vec<Hit>, QueryError> {
    let sql = rule.render(window).map_err(QueryError::Output)?;
    // The client reads `?` as a bind placeholder; a rule's (regex) question marks are literal.
    let sql = sql.replace('?', "??");
    Ok(store.client().query(&sql).fetch_all::<Hit>().await?)
}

/// The reason a resolved finding shows when later evidence reopens it.
pub const REOPENED: &str = "reopened: evidence later than its resolution";

/// Evidence ids kept per finding; a storm's first ones are enough to start from.
pub const MAX_EVIDENCE: usize = 1000;

/// What an evaluation did, per rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub rule_id: String,
    /// Findings the window shows.
    pub findings: usize,
    /// Of which never stored before.
    pub new: usize,
    pub suppressed: usize,
}

/// Whether rules about absent evidence wait for it (see `rule::Window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Every stored event is judged: the data is complete (a replay, a past window).
    Off,
    /// Events are judged once `settle_seconds` (capped at this many, if set) have passed since
    /// they arrived.
    On { cap_seconds: Option<u64> },
}

/// Evaluates rules over `window` (`settled` is set per rule from `settle`) and stores their
/// findings.
pub async fn evaluate(
    store: &Store,
    rules: &[Rule],
    window: Window,
    settle: Settle,
    suppressions: &Suppressions,
) -> Result<Vec<Evaluation>, QueryError> {
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
    let mut out = Vec::new();
    for rule in rules {
        let mut window = window;
        if let Settle::On { cap_seconds } = settle {
            let wait = cap_seconds.map_or(rule.settle_seconds, |c| c.min(rule.settle_seconds));
            window.settled = now - chrono::Duration::seconds(i64::try_from(wait).unwrap_or(0));
        }
        let found: Vec<Finding> = hits(store, rule, &window)
            .await?
            .into_iter()
            .map(|h| finding(rule, h, now))
            .collect();
        let ids: Vec<String> = found.iter().map(|f| f.finding_id.clone()).collect();
        let known = known_findings(store, &ids).await?;
        let mut insert = store.client().insert::<Finding>("findings").await?;
        let mut new = 0;
        let mut suppressed = 0;
        for mut f in found.iter().cloned() {
            let known = known.get(&f.finding_id);
            match known {
                Some(k) => merge_known(&mut f, k),
                None => new += 1,
            }
            // A suppression in force wins; a resolution someone recorded stays; else open (an
            // expired suppression reopens its finding).
            if let Some(s) = suppressions.matching(&f, now) {
                f.status = "suppressed".into();
                f.status_reason = match s.expires {
                    Some(until) => format!("{} (until {})", s.reason, until.to_rfc3339()),
                    None => s.reason.clone(),
                };
                suppressed += 1;
            } else if let Some(k) = known.filter(|k| k.status == "resolved") {
                // Resolved stays resolved until evidence later than what was resolved appears.
                if f.last_seen <= k.last_seen {
                    f.status = k.status.clone();
                    f.status_reason = k.status_reason.clone();
                } else {
                    f.status_reason = REOPENED.into();
                }
            }
            if known.is_some_and(|k| same_but_version(k, &f)) {
                continue;
            }
            insert.write(&f).await?;
        }
        insert.end().await?;
        out.push(Evaluation {
            rule_id: rule.id.clone(),
            findings: found.len(),
            new,
            suppressed,
        });
    }
    Ok(out)
}

fn finding(rule: &Rule, mut hit: Hit, now: DateTime<Utc>) -> Finding {
    hit.evidence.sort();
    hit.evidence.dedup();
    Finding {
        finding_id: finding_id(&rule.id, &hit.finding_key),
        rule_id: rule.id.clone(),
        severity: rule.severity.as_str().into(),
        provider: hit.provider,
        org_name: hit.org_name,
        workspace_name: hit.workspace_name,
        alias_tag: hit.alias_tag,
        run_id: hit.run_id,
        principal: hit.principal,
        first_seen: hit.first_seen,
        last_seen: hit.last_seen,
        evidence: hit.evidence,
        summary: hit.summary,
        status: "open".into(),
        status_reason: String::new(),
        detected_at: now,
        updated_at: now,
    }
}

/// Widens `f` (what this window shows) by what the stored version `k` already knew.
fn merge_known(f: &mut Finding, k: &Finding) {
    f.detected_at = k.detected_at;
    // A new version must win over the stored one, even within its second.
    f.updated_at = f
        .updated_at
        .max(k.updated_at + chrono::Duration::seconds(1));
    f.first_seen = f.first_seen.min(k.first_seen);
    f.last_seen = f.last_seen.max(k.last_seen);
    if f.evidence != k.evidence {
        let mut all: Vec<String> = k.evidence.iter().chain(&f.evidence).cloned().collect();
        all.sort();
        all.dedup();
        all.truncate(MAX_EVIDENCE);
        f.evidence = all;
    }
}

/// Whether writing `f` would store nothing `k` does not already say.
fn same_but_version(k: &Finding, f: &Finding) -> bool {
    let mut f = f.clone();
    f.updated_at = k.updated_at;
    &f == k
}

/// Finding ids per lookup: 1,000 ids of 35 bytes stay well inside `max_query_size` (256 KiB).
const IDS_PER_LOOKUP: usize = 1000;

/// Stored findings by id (the columns in `Finding` order).
pub const KNOWN_FINDINGS_SQL: &str = "SELECT finding_id, rule_id, severity, provider, org_name, \
     workspace_name, alias_tag, run_id, principal, first_seen, last_seen, evidence, summary, \
     status, status_reason, detected_at, updated_at \
     FROM findings FINAL WHERE has(?, finding_id)";

pub async fn known_findings(
    store: &Store,
    ids: &[String],
) -> Result<HashMap<String, Finding>, QueryError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut known = HashMap::new();
    // In chunks: a rule can find thousands at once, and the ids travel in the query text.
    for chunk in ids.chunks(IDS_PER_LOOKUP) {
        let rows = store
            .client()
            .query(KNOWN_FINDINGS_SQL)
            .bind(chunk)
            .fetch_all::<Finding>()
            .await?;
        known.extend(rows.into_iter().map(|k| (k.finding_id.clone(), k)));
    }
    Ok(known)
}

/// Sets the status of stored findings (`open` or `resolved`; `suppressed` comes from
/// configuration) with a reason; returns the ids that were not found.
pub async fn set_status(
    store: &Store,
    ids: &[String],
    status: &str,
    reason: &str,
) -> Result<Vec<String>, QueryError> {
    let known = known_findings(store, ids).await?;
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
    let mut insert = store.client().insert::<Finding>("findings").await?;
    for k in known.values() {
        let mut f = k.clone();
        f.status = status.into();
        f.status_reason = reason.into();
        // Strictly later than the version it replaces, even within the same second.
        f.updated_at = now.max(k.updated_at + chrono::Duration::seconds(1));
        insert.write(&f).await?;
    }
    insert.end().await?;
    Ok(ids
        .iter()
        .filter(|id| !known.contains_key(*id))
        .cloned()
        .collect())
}
