//! credtrail's read path: forensic queries over the normalized events.
//!
//! Every query is a shipped `.sql` file under `query/sql/` (portable across ClickHouse 18.16 and
//! modern servers, client-side `?` binds only, reading `events FINAL` so redeliveries never
//! count twice). [`SHIPPED_SQL`] lists them so tests can run each on both server generations.
//! [`render`] prints results as a table, JSON or CSV.

pub mod detect;
pub mod inventory;
pub mod render;
pub mod run;
pub mod session;

/// Every SQL statement the read path ships, by name.
pub const SHIPPED_SQL: &[(&str, &str)] = &[
    ("run_timeline", run::RUN_TIMELINE_SQL),
    ("inventory_at", inventory::INVENTORY_AT_SQL),
    ("session_activity", session::SESSION_ACTIVITY_SQL),
    ("findings", detect::findings::FINDINGS_SQL),
    ("open_findings", detect::findings::OPEN_BY_RULE_SQL),
    ("known_findings", detect::engine::KNOWN_FINDINGS_SQL),
    ("detect_arrivals", detect::schedule::ARRIVALS_SQL),
];

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("output: {0}")]
    Output(String),
}
