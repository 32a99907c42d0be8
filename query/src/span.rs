//! The time span and page every forensic query takes: `--since/--until` (half-open, UTC),
//! `--limit` and, for the HTTP API's pagination, an offset.

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub offset: u64,
    pub limit: u64,
}

impl Span {
    /// All of time (as ClickHouse's `DateTime` can hold it), the first `limit` rows.
    pub fn all(limit: u64) -> Span {
        Span {
            since: DateTime::<Utc>::UNIX_EPOCH,
            until: DateTime::<Utc>::from_timestamp(i64::from(u32::MAX), 0).unwrap_or_default(),
            offset: 0,
            limit,
        }
    }

    /// The span the CLI's `--since/--until` and the API's `since`/`until` ask for (each RFC 3339
    /// or a duration ago; unset: unbounded), starting at row `offset`. Errors name the parameter.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        offset: u64,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Span, String> {
        let mut span = Span::all(limit);
        span.offset = offset;
        if let Some(s) = since {
            span.since = parse_instant(s, now).map_err(|e| format!("since: {e}"))?;
        }
        if let Some(u) = until {
            span.until = parse_instant(u, now).map_err(|e| format!("until: {e}"))?;
        }
        Ok(span)
    }

    /// `since` as the Unix seconds a `toDateTime(?)` bind takes (clamped to `DateTime`'s range).
    pub fn since_unix(&self) -> u32 {
        unix(self.since)
    }

    pub fn until_unix(&self) -> u32 {
        unix(self.until)
    }
}

/// An instant as the CLI and the API take it: RFC 3339 (`2024-07-09T15:00:00Z`), or a
/// duration before `now` (`90m`, `24h`, `7d`).
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time nor a duration ago such as 24h or 7d")
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|e| format!("{text:?}: {e}"))?;
    Ok(now - ago)
}

fn unix(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp().max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_clamp_to_datetime_range() {
        let mut s = Span::all(10);
        assert_eq!((s.since_unix(), s.until_unix()), (0, u32::MAX));
        s.since = "1960-01-01T00:00:00Z".parse().unwrap();
        s.until = "2200-01-01T00:00:00Z".parse().unwrap();
        assert_eq!((s.since_unix(), s.until_unix()), (0, u32::MAX));
    }

    #[test]
    fn spans_parse_both_bounds_and_name_the_bad_one() {
        let now: DateTime<Utc> = "2024-07-10T00:00:00Z".parse().unwrap();
        let s = Span::parse(Some("1d"), Some("2024-07-09T12:00:00Z"), 5, 10, now).unwrap();
        assert_eq!(s.since.to_rfc3339(), "2024-07-09T00:00:00+00:00");
        assert_eq!(s.until.to_rfc3339(), "2024-07-09T12:00:00+00:00");
        assert_eq!((s.offset, s.limit), (5, 10));
        assert_eq!(Span::parse(None, None, 0, 7, now).unwrap(), Span::all(7));
        assert!(
            Span::parse(None, Some("soon"), 0, 1, now)
                .unwrap_err()
                .starts_with("until: ")
        );
    }

    #[test]
    fn instants_are_rfc3339_or_a_duration_ago() {
        let now: DateTime<Utc> = "2024-07-10T00:00:00Z".parse().unwrap();
        let at = |s| parse_instant(s, now).map(|t| t.to_rfc3339());
        assert_eq!(
            at("2024-07-09T15:00:00+02:00").unwrap(),
            "2024-07-09T13:00:00+00:00"
        );
        assert_eq!(at("24h").unwrap(), "2024-07-09T00:00:00+00:00");
        assert_eq!(at("7d").unwrap(), "2024-07-03T00:00:00+00:00");
        assert!(at("yesterday").unwrap_err().contains("neither"));
    }
}
