//! The identifiers an analyst starts from, and how a query finds them: `event_lookup` (migrations
//! 0007, 0008) maps each to the workspaces and time span it appears in, so every forensic query reads
//! only that slice of `events` by its primary key.
//!
//! Every lookup-based query starts `WHERE (org_name, workspace_name) IN (…)` and two `event_time`
//! bounds, each taking the kind and the key as binds; [`Lookup::bind`] binds them, then the
//! span's bounds.

use crate::span::Span;

/// A query over `events FINAL` located by the lookup: `located!("SELECT … FROM events FINAL",
/// "AND <conditions> <ORDER BY, LIMIT…>")`. Expands to one string literal, so every query stays
/// a constant listed in `SHIPPED_SQL`. Bound by [`Lookup::bind`] first.
macro_rules! located {
    ($select:literal, $($rest:literal),+) => {
        concat!(
            $select,
            " WHERE (org_name, workspace_name) IN (SELECT org_name, workspace_name \
             FROM event_lookup WHERE key_kind = ? AND key = ?) \
             AND event_time >= (SELECT minMerge(first_seen) FROM event_lookup \
             WHERE key_kind = ? AND key = ?) \
             AND event_time <= (SELECT maxMerge(last_seen) FROM event_lookup \
             WHERE key_kind = ? AND key = ?) \
             AND event_time >= toDateTime(?) AND event_time < toDateTime(?) ",
            $($rest),+
        )
    };
}

pub use credtrail_ingest::model::KeyKind;

/// One identifier to look up.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    pub kind: KeyKind,
    pub key: &'a str,
}

impl Lookup<'_> {
    /// Binds the lookup prefix every such query opens with: (kind, key) three times, then the
    /// span's `since` and `until`.
    pub fn bind(&self, query: clickhouse::query::Query, span: &Span) -> clickhouse::query::Query {
        let kind = self.kind.as_str();
        query
            .bind(kind)
            .bind(self.key)
            .bind(kind)
            .bind(self.key)
            .bind(kind)
            .bind(self.key)
            .bind(span.since_unix())
            .bind(span.until_unix())
    }
}

/// The lookup prefix's `?` binds, for tests that substitute literals.
pub const LOOKUP_BINDS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_say_what_they_are() {
        assert_eq!(KeyKind::of_token("sha256:ab"), KeyKind::Fingerprint);
        assert_eq!(KeyKind::of_token("0b3e1f4a-7c2d"), KeyKind::Jti);
        assert_eq!(KeyKind::of_workspace("ws-8nQ2"), KeyKind::WorkspaceId);
        assert_eq!(KeyKind::of_workspace("network"), KeyKind::Workspace);
    }
}
