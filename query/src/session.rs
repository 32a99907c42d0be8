//! What an issued AWS session did: its aggregated API activity (`session_activity`), joined to
//! the exchange that issued it, when credtrail saw that exchange.

use crate::QueryError;
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
     x.run_id AS run_id, x.workspace_name AS workspace_name, x.run_phase AS run_phase, \
     x.alias_tag AS alias_tag \
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
         SELECT session_id, any(run_id) AS run_id, any(workspace_name) AS workspace_name, \
             any(run_phase) AS run_phase, any(alias_tag) AS alias_tag \
         FROM events FINAL \
         WHERE event_kind = 'exchange' AND provider = 'aws' AND session_id = ? \
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
        .fetch_optional::<SessionActivity>()
        .await?)
}
