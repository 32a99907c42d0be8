//! What the alias inventory said at a point in time: per workspace, its latest snapshot at or
//! before that instant, one row per configuration (`alias` empty is the default one).

use crate::QueryError;
use crate::render::{Format, Tabular, render};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use credtrail_ingest::store::Store;
use serde::{Deserialize, Serialize};

/// The configurations in force at `?` (a Unix time), optionally for one workspace name (`?`,
/// empty for all). Portable: tuple `IN` over a grouped subquery, no `ASOF JOIN`; no alias may
/// reuse a column name (ClickHouse resolves aliases in `WHERE` too).
pub const INVENTORY_AT_SQL: &str = "SELECT org_name AS organization, \
     workspace_name AS workspace, workspace_id, provider, alias_tag AS alias, plan_principal, \
     apply_principal, audience, allowed_accounts, \
     toUnixTimestamp(valid_from) AS since \
     FROM inventory FINAL \
     WHERE (org_name, workspace_name, valid_from) IN ( \
         SELECT org_name, workspace_name, max(valid_from) FROM inventory \
         WHERE valid_from <= toDateTime(?) GROUP BY org_name, workspace_name) \
     AND provider != '' AND (? = '' OR workspace_name = ?) \
     ORDER BY organization, workspace, provider, alias";

#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct Configured {
    pub organization: String,
    pub workspace: String,
    pub workspace_id: String,
    pub provider: String,
    pub alias: String,
    pub plan_principal: String,
    pub apply_principal: String,
    pub audience: String,
    pub allowed_accounts: Vec<String>,
    /// Unix seconds: when the snapshot this row belongs to took effect.
    pub since: u32,
}

impl Configured {
    /// The principal this configuration assumes in `phase` (`plan` or `apply`).
    pub fn principal_for(&self, phase: &str) -> &str {
        match phase {
            "apply" => &self.apply_principal,
            _ => &self.plan_principal,
        }
    }
}

impl Tabular for Configured {
    fn headers() -> &'static [&'static str] {
        &[
            "workspace",
            "provider",
            "alias",
            "plan principal",
            "apply principal",
            "audience",
            "allowed accounts",
            "since",
        ]
    }

    fn cells(&self) -> Vec<String> {
        let since = DateTime::<Utc>::from_timestamp(i64::from(self.since), 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
            .unwrap_or_default();
        vec![
            format!("{}/{}", self.organization, self.workspace),
            self.provider.clone(),
            if self.alias.is_empty() {
                "(default)".into()
            } else {
                self.alias.clone()
            },
            self.plan_principal.clone(),
            self.apply_principal.clone(),
            self.audience.clone(),
            self.allowed_accounts.join(","),
            since,
        ]
    }
}

pub async fn at(
    store: &Store,
    when: DateTime<Utc>,
    workspace: &str,
) -> Result<Vec<Configured>, QueryError> {
    Ok(store
        .client()
        .query(INVENTORY_AT_SQL)
        .bind(when.timestamp())
        .bind(workspace)
        .bind(workspace)
        .fetch_all::<Configured>()
        .await?)
}

pub fn print(rows: &[Configured], format: Format) -> Result<String, QueryError> {
    if format == Format::Table && rows.is_empty() {
        return Ok("no configurations in the inventory at that time\n".into());
    }
    render(rows, format)
}
