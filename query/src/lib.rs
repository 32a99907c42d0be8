//! credtrail's read path: forensic queries over the normalized events, and detections.
//!
//! Every query is a portable SQL constant (ClickHouse 18.16 and modern servers, client-side `?`
//! binds only, reading `events FINAL` so redeliveries never count twice). [`SHIPPED_SQL`] lists
//! them so tests can run each on both server generations. A query that starts from an
//! identifier (a run, a session, a token, a principal, a workspace) first asks `event_lookup`
//! where that identifier lives ([`lookup`]), then reads only that slice of `events` by its
//! primary key. [`render`] prints results as a table, JSON or CSV; the HTTP API serves the same
//! report types as JSON.

#[macro_use]
pub mod lookup;
pub mod alias;
pub mod api;
pub mod console;
pub mod detect;
#[macro_use]
pub mod events;
pub mod inventory;
pub mod principal;
pub mod render;
pub mod run;
pub mod session;
pub mod span;
pub mod sql;
pub mod token;
pub mod workspace;

/// Every SQL statement the read path ships, by name.
pub const SHIPPED_SQL: &[(&str, &str)] = &[
    ("run_events", events::BY_RUN_SQL),
    ("session_events", events::BY_SESSION_SQL),
    ("jti_events", events::BY_JTI_SQL),
    ("fingerprint_events", events::BY_FINGERPRINT_SQL),
    ("token_validity", token::VALIDITY_SQL),
    ("token_next_issuance", token::NEXT_ISSUANCE_SQL),
    ("token_exchanges", token::TOKEN_EXCHANGES_SQL),
    ("token_unnamed_exchanges", token::UNNAMED_EXCHANGES_SQL),
    ("principal_use", principal::PRINCIPAL_USE_SQL),
    ("workspace_days", workspace::WORKSPACE_DAYS_SQL),
    ("alias_use", alias::ALIAS_USE_SQL),
    ("inventory_at", inventory::INVENTORY_AT_SQL),
    ("session_activity", session::SESSION_ACTIVITY_SQL),
    ("findings", detect::findings::FINDINGS_SQL),
    ("findings_citing_run", detect::findings::CITING_RUN_SQL),
    ("findings_of_workspace", detect::findings::OF_WORKSPACE_SQL),
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
    /// A request the read path will not run (`query sql` writes, limits exceeded).
    #[error("refused: {0}")]
    Refused(String),
}
