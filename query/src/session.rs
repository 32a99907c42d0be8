//! `query session ACCESS_KEY_ID`: the exchange that created a session (an AWS access key id, a
//! GCP access token's principal, a Vault accessor), back to run, workspace and alias, and for
//! AWS what the session did: its aggregated API activity (`session_activity`).

use crate::QueryError;
use crate::events::{self, BY_SESSION_SQL, EventView};
use crate::lookup::{KeyKind, Lookup};
use crate::render::{Format, render, rfc3339};
use crate::span::Span;
use clickhouse::Row;
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};

/// One session's activity by access key id (`?`), with the run, workspace, phase and alias of
/// the exchange that issued the key (empty when no exchange was seen: a coverage gap or a key
/// from elsewhere). Arrays are sorted so that both ClickHouse generations agree.
pub const SESSION_ACTIVITY_SQL: &str = "SELECT a.session_id AS session_id, \
     toUnixTimestamp(a.first_seen) AS first_seen, toUnixTimestamp(a.last_seen) AS last_seen, \
     a.calls AS calls, a.failed_calls AS failed_calls, a.source_ips AS source_ips, \
     a.regions AS regions, a.accounts AS accounts, a.services AS services, \
     a.role_arn AS role_arn, a.session_name AS session_name, \
     x.x_run_id AS run_id, x.x_workspace_name AS workspace_name, x.x_run_phase AS run_phase, \
     x.x_alias_tag AS alias_tag \
     FROM ( \
         SELECT session_id, minMerge(first_seen) AS first_seen, maxMerge(last_seen) AS last_seen, \
             uniqExactMerge(calls) AS calls, uniqExactIfMerge(failed_calls) AS failed_calls, \
             arraySort(groupUniqArrayMerge(source_ips)) AS source_ips, \
             arraySort(groupUniqArrayMerge(regions)) AS regions, \
             arraySort(groupUniqArrayMerge(accounts)) AS accounts, \
             arraySort(groupUniqArrayMerge(services)) AS services, \
             anyMerge(role_arn) AS role_arn, anyMerge(session_name) AS session_name \
         FROM session_activity WHERE session_id = ? GROUP BY session_id \
     ) AS a \
     LEFT JOIN ( \
         SELECT session_id, any(run_id) AS x_run_id, any(workspace_name) AS x_workspace_name, \
             any(run_phase) AS x_run_phase, any(alias_tag) AS x_alias_tag \
         FROM events FINAL \
         WHERE (org_name, workspace_name) IN (SELECT org_name, workspace_name FROM event_lookup \
             WHERE key_kind = 'session' AND key = ?) \
         AND event_time >= (SELECT minMerge(first_seen) FROM event_lookup \
             WHERE key_kind = 'session' AND key = ?) \
         AND event_time <= (SELECT maxMerge(last_seen) FROM event_lookup \
             WHERE key_kind = 'session' AND key = ?) \
         AND event_kind = 'exchange' AND provider = 'aws' AND session_id = ? \
         GROUP BY session_id \
     ) AS x USING (session_id)";

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SessionActivity {
    pub session_id: String,
    pub first_seen: u32,
    pub last_seen: u32,
    pub calls: u64,
    pub failed_calls: u64,
    pub source_ips: Vec<String>,
    pub regions: Vec<String>,
    pub accounts: Vec<String>,
    pub services: Vec<String>,
    pub role_arn: String,
    pub session_name: String,
    pub run_id: String,
    pub workspace_name: String,
    pub run_phase: String,
    pub alias_tag: String,
}

pub async fn activity(
    store: &Store,
    access_key_id: &str,
) -> Result<Option<SessionActivity>, QueryError> {
    Ok(store
        .client()
        .query(SESSION_ACTIVITY_SQL)
        .bind(access_key_id)
        .bind(access_key_id)
        .bind(access_key_id)
        .bind(access_key_id)
        .bind(access_key_id)
        .fetch_optional::<SessionActivity>()
        .await?)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionReport {
    pub session_id: String,
    /// The exchange that created the session, then its renewals and end, oldest first.
    pub events: Vec<EventView>,
    /// What the session did (AWS, with `cloudtrail.session_activity` on).
    pub activity: Option<SessionActivity>,
}

pub async fn report(
    store: &Store,
    session_id: &str,
    span: &Span,
) -> Result<SessionReport, QueryError> {
    let lookup = Lookup {
        kind: KeyKind::Session,
        key: session_id,
    };
    Ok(SessionReport {
        session_id: session_id.to_owned(),
        events: events::list(store, BY_SESSION_SQL, lookup, span).await?,
        activity: activity(store, session_id).await?,
    })
}

pub fn print(report: &SessionReport, format: Format) -> Result<String, QueryError> {
    match format {
        Format::Json => crate::render::json(report),
        Format::Csv => render(&report.events, format),
        Format::Table => {
            if report.events.is_empty() && report.activity.is_none() {
                return Ok(format!(
                    "no session {} in this time span\n",
                    report.session_id
                ));
            }
            let mut out = format!("session {}\n", report.session_id);
            match report.events.iter().find(|e| e.kind == "exchange") {
                Some(e) => out.push_str(&format!(
                    "created by {} exchange {} at {}: {}/{} run {} phase {} alias {}\n",
                    e.provider,
                    e.source_event_id,
                    e.time,
                    e.organization,
                    e.workspace,
                    e.run_id,
                    e.phase,
                    crate::events::alias_label(&e.alias)
                )),
                None => out.push_str("no exchange creating this session was seen\n"),
            }
            if !report.events.is_empty() {
                out.push_str(&render(&report.events, format)?);
            }
            if let Some(a) = &report.activity {
                out.push_str(&format!(
                    "activity {} .. {}: {} calls ({} failed) from {} to {} in {}\n",
                    rfc3339(a.first_seen),
                    rfc3339(a.last_seen),
                    a.calls,
                    a.failed_calls,
                    a.source_ips.join(" "),
                    a.services.join(" "),
                    a.regions.join(" ")
                ));
            }
            Ok(out)
        }
    }
}
