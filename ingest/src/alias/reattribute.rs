//! Re-attribution of stored events after the inventory changed.
//!
//! Attribution happens as events are ingested, against the inventory of that moment; an
//! inventory imported later (the usual order when credtrail is first deployed, or when a snapshot
//! is back-dated) would leave stored events judged by what was known then. This pass reads the
//! attributable events of a time range, recomputes each one's alias against the current
//! inventory, and writes a new version of every row whose alias or reason changed. `events` is a
//! ReplacingMergeTree on `ingest_time`, so the new version (with a later `ingest_time`) replaces
//! the old one in `FINAL` reads; the dedup key is unchanged, so nothing is counted twice.

use super::attribute::Attributor;
use crate::model::{EventRow, sort_for_storage};
use crate::store::Store;
use chrono::{DateTime, Utc};

/// Rows written per INSERT.
const BATCH: usize = 5_000;

/// The attributable events of `[since, until)`.
pub const ATTRIBUTABLE_EVENTS_SQL: &str = "SELECT ?fields FROM events FINAL \
     WHERE event_kind IN ('exchange', 'session_renewal', 'session_end') \
     AND event_time >= toDateTime(?) AND event_time < toDateTime(?)";

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Reattributed {
    pub scanned: u64,
    pub changed: u64,
}

/// Recomputes the alias of every attributable event of `[since, until)`.
pub async fn reattribute(
    store: &Store,
    attributor: &Attributor,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<Reattributed, clickhouse::error::Error> {
    let mut cursor = store
        .client()
        .query(ATTRIBUTABLE_EVENTS_SQL)
        .bind(since.timestamp().max(0))
        .bind(until.timestamp().min(i64::from(u32::MAX)))
        .fetch::<EventRow>()?;
    let now = DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now);
    let mut out = Reattributed::default();
    let mut changed: Vec<EventRow> = Vec::new();
    while let Some(mut row) = cursor.next().await? {
        out.scanned += 1;
        let before = (row.alias_tag.clone(), row.alias_match.clone());
        attributor.reattribute(&mut row);
        if (row.alias_tag.clone(), row.alias_match.clone()) != before {
            row.ingest_time = now;
            changed.push(row);
            if changed.len() >= BATCH {
                out.changed += write(store, &mut changed).await?;
            }
        }
    }
    out.changed += write(store, &mut changed).await?;
    Ok(out)
}

async fn write(store: &Store, rows: &mut Vec<EventRow>) -> Result<u64, clickhouse::error::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut sorted: Vec<&EventRow> = rows.iter().collect();
    sort_for_storage(&mut sorted);
    store.insert_rows("events", &sorted).await?;
    let n = rows.len() as u64;
    rows.clear();
    Ok(n)
}
