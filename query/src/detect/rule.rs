//! A detection rule: one TOML data file (`query/rules/<id>/rule.toml`) with its metadata, its
//! portable SQL and its own test cases, whose events sit beside it.
//!
//! The SQL reads `events FINAL` (and `inventory` where it needs configuration) for one event-time
//! window and returns one row per finding with these columns, in any order:
//! `finding_key` (what makes two hits the same finding), `provider`, `org_name`,
//! `workspace_name`, `alias_tag`, `run_id`, `principal` (what the finding is about: a role, a
//! service account, a variable), `first_seen`, `last_seen` (DateTime), `evidence`
//! (Array(String) of source event ids) and `summary`, in this order. Placeholders: `{start}` and
//! `{end}` (the window, as `toDateTime(...)`), `{settled}` (see `settle_seconds`),
//! `{new_arrivals}` (see `fast`), `{in_force}` (a condition on `inventory` rows: those of the
//! snapshot each workspace had at the window's end, so a removed alias or a changed principal is
//! no longer expected), and `{name}` for each of the rule's `[params]`.
//!
//! Time windows and event kinds go in `PREWHERE`: with `FINAL`, a `PREWHERE` on columns every
//! version of an event shares (all but `alias_tag`, `alias_match` and `ingest_time`, which
//! re-attribution changes) keeps or drops every version alike, so the latest still wins, and
//! the server reads the other columns only of the rows that pass.
//!
//! A rule that one event is enough to judge is marked `fast`: `credtrail serve` evaluates it
//! every few seconds over the events that arrived since its previous pass. Its main scan adds
//! `{new_arrivals}` to its `PREWHERE`: a condition on `dedup_key` selecting those events (every
//! version of each), or `1` outside fast passes.
//!
//! A rule that finds something *missing* (an issuance, an exchange log, an alias' exchange) sets
//! `settle_seconds`: how long after an event arrives its counterpart may still be in flight. Its
//! SQL then judges only events with `ingest_time < {settled}`, which scheduled evaluation sets to
//! `now - settle_seconds`, so a log that is merely late is not reported as absent.
//! The SQL must run on ClickHouse 18.16 and on modern servers (no CTEs, window functions or
//! `JSONExtract`; tuples for `IN`).

use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Severity, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(name: &str) -> Option<Severity> {
        [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// What one evaluation judges: events of `[start, end)`; for rules about absent evidence, only
/// those that arrived before `settled`; for fast rules, only those that arrived since `arrived`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub settled: DateTime<Utc>,
    /// Only events ingested since then (fast passes; `None` elsewhere).
    pub arrived: Option<DateTime<Utc>>,
}

impl Window {
    /// Every stored event is settled (the data is complete, e.g. after a replay).
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Window {
        Window {
            start,
            end,
            settled: DateTime::from_timestamp(i64::from(u32::MAX), 0).unwrap_or(end),
            arrived: None,
        }
    }
}

/// One rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub id: String,
    pub title: String,
    /// The domain catalogue entry it implements (`D1`, ...).
    pub catalogue: String,
    pub severity: Severity,
    /// For alert grouping: `token`, `privilege`, `trust`, `configuration`, `coverage`, ...
    pub family: String,
    /// Judged on each event (or document) alone, so `credtrail serve`'s fast pass evaluates it
    /// over new arrivals (`{new_arrivals}`); the others (aggregates, baselines, absences) need
    /// the full pass's context.
    #[serde(default)]
    pub fast: bool,
    pub description: String,
    /// What the evidence ids point at.
    pub evidence: String,
    pub remediation: String,
    #[serde(default)]
    pub params: BTreeMap<String, i64>,
    /// For rules about absent evidence: how long its counterpart may take to arrive.
    #[serde(default)]
    pub settle_seconds: u64,
    pub sql: String,
    #[serde(default, rename = "test")]
    pub tests: Vec<Case>,
}

/// A test case: events to replay (files beside the rule), a window, and the findings expected.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub events: Vec<String>,
    /// Declarative inventory files beside the rule, imported as valid since 2000-01-01.
    #[serde(default)]
    pub inventory: Vec<String>,
    /// Trust policy documents beside the rule (`credtrail inventory trust`), valid since
    /// 2000-01-01.
    #[serde(default)]
    pub trust: Vec<String>,
    pub window: [DateTime<Utc>; 2],
    pub expect: Vec<Expected>,
}

/// What a finding must say; empty strings must match empty fields.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub workspace: String,
    #[serde(default)]
    pub alias: String,
    #[serde(default)]
    pub run: String,
}

impl Rule {
    /// Parses and checks a rule file.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let rule: Rule = toml::from_str(text).map_err(|e| e.to_string())?;
        let valid_id = !rule.id.is_empty()
            && rule
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_id {
            return Err(format!(
                "rule id {:?}: lowercase letters, digits and dashes",
                rule.id
            ));
        }
        // Rendering checks the placeholders.
        rule.render(&Window::new(DateTime::UNIX_EPOCH, DateTime::UNIX_EPOCH))
            .map_err(|e| format!("{}: {e}", rule.id))?;
        // A re-attributed event has versions that differ in these: a PREWHERE on them could keep
        // an old version and drop the latest before FINAL chooses.
        for line in rule
            .sql
            .lines()
            .filter(|l| l.trim_start().starts_with("PREWHERE"))
        {
            if ["alias_tag", "alias_match", "ingest_time"]
                .iter()
                .any(|c| line.contains(c))
            {
                return Err(format!(
                    "{}: PREWHERE on a column that differs between versions: {}",
                    rule.id,
                    line.trim()
                ));
            }
        }
        if rule.fast && rule.sql.contains("FROM events") && !rule.sql.contains("{new_arrivals}") {
            return Err(format!(
                "{}: a fast rule over events selects them with `{{new_arrivals}}`",
                rule.id
            ));
        }
        if (rule.settle_seconds > 0) != rule.sql.contains("{settled}") {
            return Err(format!(
                "{}: `settle_seconds` and `{{settled}}` in the SQL go together",
                rule.id
            ));
        }
        for column in [
            "finding_key",
            "provider",
            "org_name",
            "workspace_name",
            "alias_tag",
            "run_id",
            "principal",
            "first_seen",
            "last_seen",
            "evidence",
            "summary",
        ] {
            if !rule.sql.contains(column) {
                return Err(format!("{}: the SQL returns no `{column}`", rule.id));
            }
        }
        Ok(rule)
    }

    /// The SQL for one window, placeholders replaced by literals (numbers only, so nothing from
    /// outside the rule file reaches the text).
    pub fn render(&self, w: &Window) -> Result<String, String> {
        let mut sql = self.sql.clone();
        let at =
            |t: DateTime<Utc>| format!("toDateTime({})", t.timestamp().clamp(0, u32::MAX.into()));
        let mut values: Vec<(String, String)> = vec![
            ("start".into(), at(w.start)),
            ("end".into(), at(w.end)),
            ("settled".into(), at(w.settled)),
            (
                "in_force".into(),
                format!(
                    "(org_name, workspace_name, valid_from) IN (SELECT org_name, workspace_name, \
                     max(valid_from) FROM inventory WHERE valid_from <= {} \
                     GROUP BY org_name, workspace_name)",
                    at(w.end)
                ),
            ),
            (
                "new_arrivals".into(),
                match w.arrived {
                    None => "1".into(),
                    Some(t) => format!(
                        "dedup_key IN (SELECT dedup_key FROM events PREWHERE event_time >= {} \
                         AND event_time < {} AND ingest_time >= {})",
                        at(w.start),
                        at(w.end),
                        at(t)
                    ),
                },
            ),
        ];
        values.extend(self.params.iter().map(|(k, v)| (k.clone(), v.to_string())));
        for (name, value) in values {
            sql = sql.replace(&format!("{{{name}}}"), &value);
        }
        if let Some(i) = sql.find('{') {
            let rest: String = sql[i..].chars().take(30).collect();
            return Err(format!("unknown placeholder at {rest:?}"));
        }
        Ok(sql)
    }
}
