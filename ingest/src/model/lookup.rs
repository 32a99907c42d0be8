//! The identifiers an analyst starts from, as `event_lookup` indexes them, and the rows the sink
//! writes to feed it (migration 0008).
//!
//! `event_lookup` maps each identifier to the workspaces and the time span it appears in. The
//! sink folds a flush's events into one [`LookupRow`] per (kind, key, workspace) with the flush's
//! first and last time, and inserts them into the `event_lookup_input` Null table, whose view
//! turns them into `event_lookup`'s min/max states. min and max are idempotent, so a redelivered
//! flush, or a key spread over several flushes, changes nothing a query reads.

use super::{EventRow, Text};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use hashbrown::HashMap;
use serde::Serialize;

/// What an identifier is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    Run,
    Session,
    Jti,
    Fingerprint,
    Principal,
    Workspace,
    WorkspaceId,
}

impl KeyKind {
    /// The `key_kind` value in `event_lookup`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Run => "run",
            KeyKind::Session => "session",
            KeyKind::Jti => "jti",
            KeyKind::Fingerprint => "fingerprint",
            KeyKind::Principal => "principal",
            KeyKind::Workspace => "workspace",
            KeyKind::WorkspaceId => "workspace_id",
        }
    }

    /// A token is named by its fingerprint (`sha256:…`) or its jti.
    pub fn of_token(key: &str) -> KeyKind {
        if key.starts_with("sha256:") {
            KeyKind::Fingerprint
        } else {
            KeyKind::Jti
        }
    }

    /// A workspace is named by its id (`ws-…`) or its name.
    pub fn of_workspace(key: &str) -> KeyKind {
        if key.starts_with("ws-") {
            KeyKind::WorkspaceId
        } else {
            KeyKind::Workspace
        }
    }
}

impl EventRow {
    /// Every identifier of this event `event_lookup` indexes, empty ones included (they are
    /// skipped). Migration 0007's backfill lists the same columns.
    pub fn lookup_keys(&self) -> [(KeyKind, &str); 7] {
        [
            (KeyKind::Run, &self.run_id),
            (KeyKind::Session, &self.session_id),
            (KeyKind::Jti, &self.jti),
            (KeyKind::Fingerprint, &self.token_fingerprint),
            (KeyKind::Principal, &self.target_principal),
            (KeyKind::Workspace, &self.workspace_name),
            (KeyKind::WorkspaceId, &self.workspace_id),
        ]
    }
}

/// One identifier's span within a flush, in one workspace: a row of `event_lookup_input`.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize)]
pub struct LookupRow {
    pub key_kind: Text,
    pub key: Text,
    pub org_name: Text,
    pub workspace_name: Text,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub first_time: DateTime<Utc>,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub last_time: DateTime<Utc>,
}

/// Folds events into one row per (kind, key, organization, workspace), spanning the first to the
/// last `event_time` among them.
///
/// Events in storage order (`sort_for_storage`) arrive grouped by workspace, so each group is
/// folded in one map keyed by (kind, key) and reused from group to group. Any other order gives
/// the same index, only in more rows: a workspace met twice yields its keys twice, and
/// `event_lookup` merges them.
pub fn lookup_rows(events: &[&EventRow]) -> Vec<LookupRow> {
    let mut rows = Vec::with_capacity(events.len());
    let mut spans: Spans<'_> = HashMap::new();
    let mut group: Option<(&str, &str)> = None;
    for e in events {
        let workspace = (e.org_name.as_str(), e.workspace_name.as_str());
        if group != Some(workspace) {
            if let Some(done) = group {
                drain_group(done, &mut spans, &mut rows);
            }
            group = Some(workspace);
        }
        let t = e.event_time;
        for (kind, key) in e.lookup_keys() {
            if key.is_empty() {
                continue;
            }
            spans
                .entry((kind, key))
                .and_modify(|(first, last)| {
                    *first = (*first).min(t);
                    *last = (*last).max(t);
                })
                .or_insert((t, t));
        }
    }
    if let Some(done) = group {
        drain_group(done, &mut spans, &mut rows);
    }
    rows
}

/// One workspace's keys, each with its first and last time.
type Spans<'a> = HashMap<(KeyKind, &'a str), (DateTime<Utc>, DateTime<Utc>)>;

/// Moves one workspace's spans into rows, keeping the map's room for the next workspace.
fn drain_group((org, workspace): (&str, &str), spans: &mut Spans<'_>, rows: &mut Vec<LookupRow>) {
    let org = Text::from(org);
    let workspace = Text::from(workspace);
    rows.extend(spans.drain().map(|((kind, key), (first, last))| LookupRow {
        key_kind: Text::const_new(kind.as_str()),
        key: key.into(),
        org_name: org.clone(),
        workspace_name: workspace.clone(),
        first_time: first,
        last_time: last,
    }));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_exchange;

    const T0: i64 = 1_720_000_000;

    fn event(id: &str, ws: &str, run: &str, secs: i64) -> EventRow {
        let t = DateTime::from_timestamp(T0 + secs, 0).unwrap();
        let mut e = test_exchange(id, "acme", ws, t);
        e.run_id = run.into();
        e.session_id = format!("ASIA{id}").into();
        e
    }

    /// A row's workspace and span, in seconds after `T0`.
    fn span(r: &LookupRow) -> (&str, i64, i64) {
        (
            r.workspace_name.as_str(),
            r.first_time.timestamp() - T0,
            r.last_time.timestamp() - T0,
        )
    }

    #[test]
    fn a_key_spans_its_first_to_last_time_per_workspace_and_empty_keys_are_skipped() {
        let events = [
            event("1", "net", "run-a", 30),
            event("2", "net", "run-a", 10),
            event("3", "net", "run-a", 20),
            event("4", "app", "run-a", 5),
        ];
        let rows = lookup_rows(&events.iter().collect::<Vec<_>>());
        let mut summary: Vec<(&str, &str, (&str, i64, i64))> = rows
            .iter()
            .map(|r| (r.key_kind.as_str(), r.key.as_str(), span(r)))
            .collect();
        summary.sort();
        assert_eq!(
            summary,
            vec![
                ("run", "run-a", ("app", 5, 5)),
                ("run", "run-a", ("net", 10, 30)),
                ("session", "ASIA1", ("net", 30, 30)),
                ("session", "ASIA2", ("net", 10, 10)),
                ("session", "ASIA3", ("net", 20, 20)),
                ("session", "ASIA4", ("app", 5, 5)),
                ("workspace", "app", ("app", 5, 5)),
                ("workspace", "net", ("net", 10, 30)),
            ],
            "no jti, fingerprint, principal or workspace id rows: those are empty"
        );
    }

    #[test]
    fn events_out_of_storage_order_give_the_same_spans_in_more_rows() {
        let events = [
            event("1", "net", "run-a", 30),
            event("2", "app", "run-a", 5),
            event("3", "net", "run-a", 10),
        ];
        let rows = lookup_rows(&events.iter().collect::<Vec<_>>());
        let runs: Vec<(&str, i64, i64)> = rows
            .iter()
            .filter(|r| r.key_kind == "run")
            .map(span)
            .collect();
        // `net` is met twice: two rows, whose min and max are the span.
        assert_eq!(runs, vec![("net", 30, 30), ("app", 5, 5), ("net", 10, 10)]);
    }
}
