//! The order writers send `events` rows in.

use super::EventRow;
use hashbrown::HashSet;

/// Puts rows in the `events` table's sorting key, `ORDER BY (org_name, workspace_name,
/// event_time, dedup_key)` in `0001_events.sql`. Writers send rows in this order so that
/// ClickHouse finds each block already sorted and skips its permutation, a copy of every column
/// (`raw` included). Strings compare bytewise, as ClickHouse compares them; only the distinct
/// (organization, workspace) pairs are sorted as strings, and the rows by their rank.
pub fn sort_for_storage(rows: &mut Vec<&EventRow>) {
    let distinct: HashSet<(&str, &str)> = rows
        .iter()
        .map(|e| (e.org_name.as_str(), e.workspace_name.as_str()))
        .collect();
    let mut workspaces: Vec<(&str, &str)> = distinct.into_iter().collect();
    workspaces.sort_unstable();
    let mut keyed: Vec<(u32, i64, u64, &EventRow)> = rows
        .iter()
        .map(|e| {
            let ws = (e.org_name.as_str(), e.workspace_name.as_str());
            let rank = workspaces.binary_search(&ws).expect("listed above") as u32;
            (rank, e.event_time.timestamp(), e.dedup_key, *e)
        })
        .collect();
    keyed.sort_unstable_by_key(|&(rank, time, key, _)| (rank, time, key));
    rows.clear();
    rows.extend(keyed.into_iter().map(|(_, _, _, e)| e));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_exchange;
    use chrono::DateTime;

    fn row(id: &str, org: &str, ws: &str, ms: i64) -> EventRow {
        let t = DateTime::from_timestamp_millis(1_720_000_000_000 + ms).unwrap();
        test_exchange(id, org, ws, t)
    }

    fn ids(rows: &[&EventRow]) -> Vec<String> {
        rows.iter().map(|e| e.source_event_id.to_string()).collect()
    }

    #[test]
    fn rows_follow_org_workspace_time_then_dedup_key() {
        // Two events in the same second: the one with the smaller dedup key gets the later
        // millisecond (`event_ms`, not part of the table's key), so only ordering by the dedup
        // key puts it first.
        let (c, d) = (
            row("c", "acme", "app", 7_000),
            row("d", "acme", "app", 7_000),
        );
        let (first, second) = if c.dedup_key < d.dedup_key {
            ("c", "d")
        } else {
            ("d", "c")
        };
        let events = [
            row("a", "acme", "net", 5_000),
            row("b", "Zeta", "app", 9_000),
            row(first, "acme", "app", 7_900),
            row(second, "acme", "app", 7_100),
            row("e", "acme", "net", 1_000),
            row("f", "acme", "app", 2_000),
        ];
        let mut rows: Vec<&EventRow> = events.iter().collect();
        sort_for_storage(&mut rows);
        // Uppercase sorts before lowercase, bytewise, as in ClickHouse.
        assert_eq!(ids(&rows), ["b", "f", first, second, "e", "a"]);
    }
}
