//! `query run RUN_ID`: the run's timeline, per phase and alias, and the findings that cite it.

use crate::QueryError;
use crate::detect::findings::{self, FindingView};
use crate::events::{self, BY_RUN_SQL, EventView, alias_label};
use crate::lookup::{KeyKind, Lookup};
use crate::render::{Format, render};
use crate::span::Span;
use credtrail_ingest::store::Store;
use serde::Serialize;

/// What `query run` and `GET /api/v1/runs/{id}` answer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunReport {
    pub run_id: String,
    /// Issuance, exchanges, renewals: oldest first.
    pub events: Vec<EventView>,
    /// Per phase and alias: how many tokens were issued and exchanged.
    pub summary: Vec<PhaseSummary>,
    /// Findings whose run or evidence is this run's.
    pub findings: Vec<FindingView>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PhaseSummary {
    pub phase: String,
    pub alias: String,
    pub provider: String,
    pub issued: u64,
    pub exchanges: u64,
    pub failures: u64,
    pub principals: Vec<String>,
}

/// Reads a run's timeline within `span` and the findings citing it.
pub async fn report(store: &Store, run_id: &str, span: &Span) -> Result<RunReport, QueryError> {
    let lookup = Lookup {
        kind: KeyKind::Run,
        key: run_id,
    };
    let events = events::list(store, BY_RUN_SQL, lookup, span).await?;
    let ids: Vec<String> = events.iter().map(|e| e.source_event_id.clone()).collect();
    let findings = if events.is_empty() {
        Vec::new()
    } else {
        findings::citing_run(store, run_id, &ids, span.limit).await?
    };
    Ok(RunReport {
        run_id: run_id.to_owned(),
        summary: summarize(&events),
        events,
        findings,
    })
}

fn summarize(events: &[EventView]) -> Vec<PhaseSummary> {
    let mut out: Vec<PhaseSummary> = Vec::new();
    for e in events {
        let at = out
            .iter()
            .position(|s| s.phase == e.phase && s.alias == e.alias && s.provider == e.provider);
        let s = match at {
            Some(i) => &mut out[i],
            None => {
                out.push(PhaseSummary {
                    phase: e.phase.clone(),
                    alias: e.alias.clone(),
                    provider: e.provider.clone(),
                    issued: 0,
                    exchanges: 0,
                    failures: 0,
                    principals: Vec::new(),
                });
                out.last_mut().expect("just pushed")
            }
        };
        match e.kind.as_str() {
            "issuance" => s.issued += 1,
            "exchange" => {
                s.exchanges += 1;
                if e.outcome == "failure" {
                    s.failures += 1;
                }
                if !e.principal.is_empty() && !s.principals.contains(&e.principal) {
                    s.principals.push(e.principal.clone());
                }
            }
            _ => {}
        }
    }
    out.sort_by(|a, b| (&a.phase, &a.alias, &a.provider).cmp(&(&b.phase, &b.alias, &b.provider)));
    out
}

/// Prints a run report: JSON as one object; the table form is the timeline, a per-phase-and-alias
/// summary and the findings; CSV is the timeline alone.
pub fn print(report: &RunReport, format: Format) -> Result<String, QueryError> {
    match format {
        Format::Json => crate::render::json(report),
        Format::Csv => render(&report.events, format),
        Format::Table => {
            if report.events.is_empty() {
                return Ok(format!(
                    "no events for run {} in this time span\n",
                    report.run_id
                ));
            }
            let mut out = format!("run {}\n", report.run_id);
            out.push_str(&render(&report.events, format)?);
            for s in &report.summary {
                out.push_str(&format!(
                    "{:<6} {:<12} {:<6} {} issued, {} exchanges, {} failed{}\n",
                    s.phase,
                    alias_label(&s.alias),
                    s.provider,
                    s.issued,
                    s.exchanges,
                    s.failures,
                    if s.principals.is_empty() {
                        String::new()
                    } else {
                        format!(" as {}", s.principals.join(", "))
                    }
                ));
            }
            if report.findings.is_empty() {
                out.push_str("no findings cite this run\n");
            } else {
                out.push_str(&format!(
                    "{} findings cite this run\n",
                    report.findings.len()
                ));
                out.push_str(&render(&report.findings, format)?);
            }
            Ok(out)
        }
    }
}
