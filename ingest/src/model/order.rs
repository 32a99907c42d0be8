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
    use crate::model::{EventKind, Source};
    use chrono::DateTime;

    #[test]
    fn rows_follow_org_workspace_time_then_dedup_key() {
        let row = |id: &str, org: &str, ws: &str, secs: i64, ms: i64| {
            let t = DateTime::from_timestamp_millis((1_720_000_000 + secs) * 1000 + ms).unwrap();
            let mut e = EventRow::new(
                EventKind::Exchange,
                Source::AwsCloudtrail,
                id.into(),
                "aws",
                t,
                t,
            );
            e.org_name = org.into();
            e.workspace_name = ws.into();
            e
        };
        let events = [
            row("a", "acme", "net", 5, 0),
            row("b", "Zeta", "app", 9, 0),
            row("c", "acme", "app", 7, 900),
            row("d", "acme", "app", 7, 100),
            row("e", "acme", "net", 1, 0),
            row("f", "acme", "app", 2, 0),
        ];
        let mut rows: Vec<&EventRow> = events.iter().collect();
        sort_for_storage(&mut rows);
        let mut want: Vec<&EventRow> = events.iter().collect();
        // The table's key, compared the slow way; milliseconds are not part of it.
        want.sort_by_key(|e| {
            (
                e.org_name.clone(),
                e.workspace_name.clone(),
                e.event_time.timestamp(),
                e.dedup_key,
            )
        });
        let ids = |rows: &[&EventRow]| {
            rows.iter()
                .map(|e| e.source_event_id.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&rows), ids(&want));
        // Uppercase sorts before lowercase, bytewise, as in ClickHouse.
        assert_eq!(ids(&rows)[0], "b");
        assert_eq!(
            &ids(&rows)[1..3],
            [
                "f",
                if events[2].dedup_key < events[3].dedup_key {
                    "c"
                } else {
                    "d"
                }
            ]
        );
    }
}
