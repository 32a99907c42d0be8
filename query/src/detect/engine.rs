//! Evaluating rules over an event-time window and storing what they find.
//!
//! A finding's id is a hash of its rule and its key, so evaluating a window again, or a later
//! window that sees late evidence of the same thing, produces the same finding: a new version
//! (later `updated_at`) that replaces the old in `findings FINAL`. A status someone set
//! (`suppressed`, `resolved`) and the first detection time survive re-evaluation.

use super::rule::Rule;
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
pub async fn hits(
    store: &Store,
    rule: &Rule,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Hit>, QueryError> {
    let sql = rule.render(start, end).map_err(QueryError::Output)?;
    // The client reads `?` as a bind placeholder; a rule's (regex) question marks are literal.
    let sql = sql.replace('?', "??");
    Ok(store.client().query(&sql).fetch_all::<Hit>().await?)
}

/// What an evaluation did, per rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evaluation {
    pub rule_id: String,
    pub findings: usize,
    pub new: usize,
    pub suppressed: usize,
}

/// Evaluates rules over `[start, end)` and stores their findings.
pub async fn evaluate(
    store: &Store,
    rules: &[Rule],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    suppressions: &Suppressions,
) -> Result<Vec<Evaluation>, QueryError> {
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
    let mut out = Vec::new();
    for rule in rules {
        let found: Vec<Finding> = hits(store, rule, start, end)
            .await?
            .into_iter()
            .map(|h| finding(rule, h, now))
            .collect();
        let ids: Vec<String> = found.iter().map(|f| f.finding_id.clone()).collect();
        let known = known_states(store, &ids).await?;
        let mut insert = store.client().insert::<Finding>("findings").await?;
        let mut new = 0;
        let mut suppressed = 0;
        for mut f in found.iter().cloned() {
            let known = known.get(&f.finding_id);
            match known {
                Some(k) => f.detected_at = k.detected_at,
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
                f.status = k.status.clone();
                f.status_reason = k.status_reason.clone();
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

#[derive(Debug, Row, Deserialize)]
struct Known {
    finding_id: String,
    status: String,
    status_reason: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    detected_at: DateTime<Utc>,
}

/// Status and first detection of already stored findings.
pub const KNOWN_FINDINGS_SQL: &str = "SELECT finding_id, status, status_reason, detected_at \
     FROM findings FINAL WHERE has(?, finding_id)";

async fn known_states(store: &Store, ids: &[String]) -> Result<HashMap<String, Known>, QueryError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = store
        .client()
        .query(KNOWN_FINDINGS_SQL)
        .bind(ids)
        .fetch_all::<Known>()
        .await?;
    Ok(rows
        .into_iter()
        .map(|k| (k.finding_id.clone(), k))
        .collect())
}
