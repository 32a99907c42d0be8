//! Scheduled evaluation for `credtrail serve`: which event-time windows to judge on each tick.
//!
//! Every tick judges the sliding window `[now - window, now + future_skew)`. Events that arrive
//! late (their event time before that window) are found by their `ingest_time`: the watermark is
//! the ingest time up to which arrivals have been looked at, and each tick looks at arrivals since
//! the watermark (less [`ARRIVAL_OVERLAP`], for rows normalized before a tick and inserted after
//! it) and judges `[earliest late event, now - window)` too, in windows of the same length. Arrivals older than `max_lateness`
//! are not judged again, only counted. Finding ids are deterministic, so judging a window twice
//! changes nothing; the watermark advances only when a tick succeeded.

use chrono::{DateTime, Duration, Utc};
use credtrail_ingest::config::DetectConfig;

/// How far before the watermark each tick looks for arrivals again.
pub const ARRIVAL_OVERLAP: Duration = Duration::seconds(120);

/// Arrivals since the watermark, as ClickHouse counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Arrivals {
    /// The earliest event time of late arrivals that are still judged, if any.
    pub earliest_late: Option<DateTime<Utc>>,
    /// Arrivals (strictly since the watermark) too old to be judged.
    pub too_late: u64,
}

/// One tick's plan: the windows to evaluate, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    pub too_late: u64,
}

/// The scheduler's state: its settings and the ingest-time watermark.
#[derive(Debug, Clone)]
pub struct Schedule {
    window: Duration,
    max_lateness: Duration,
    future_skew: Duration,
    watermark: DateTime<Utc>,
}

impl Schedule {
    /// Starting at `now`: arrivals of the last `max_lateness` are looked at once, so a restart
    /// judges again what it may have missed while down.
    pub fn new(config: &DetectConfig, now: DateTime<Utc>) -> Schedule {
        let secs = |s: u64| Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000));
        Schedule {
            window: secs(config.window_secs),
            max_lateness: secs(config.max_lateness_secs),
            future_skew: secs(config.future_skew_secs),
            watermark: now - secs(config.max_lateness_secs),
        }
    }

    pub fn watermark(&self) -> DateTime<Utc> {
        self.watermark
    }

    /// The ingest-time range whose arrivals this tick looks at, and the event time before which
    /// an arrival is too late to be judged.
    pub fn arrival_query(&self, now: DateTime<Utc>) -> ArrivalQuery {
        ArrivalQuery {
            ingested_from: self.watermark - ARRIVAL_OVERLAP,
            new_from: self.watermark,
            ingested_until: now,
            too_late_before: now - self.max_lateness,
        }
    }

    /// The windows to judge at `now`, given what arrived.
    pub fn plan(&self, now: DateTime<Utc>, arrivals: Arrivals) -> Plan {
        let current_start = now - self.window;
        let mut windows = Vec::new();
        if let Some(earliest) = arrivals.earliest_late {
            // In windows of the sliding window's length, so that a backfill of several days is
            // judged day by day as it would have been live: rules with a baseline compare each
            // stretch with what came before it.
            let mut from = earliest.max(now - self.max_lateness);
            while from < current_start {
                let to = (from + self.window).min(current_start);
                windows.push((from, to));
                from = to;
            }
        }
        windows.push((current_start, now + self.future_skew));
        Plan {
            windows,
            too_late: arrivals.too_late,
        }
    }

    /// After a successful tick at `now`.
    pub fn advance(&mut self, now: DateTime<Utc>) {
        self.watermark = self.watermark.max(now);
    }
}

/// The bounds of one tick's arrivals query (see [`ARRIVALS_SQL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrivalQuery {
    pub ingested_from: DateTime<Utc>,
    pub new_from: DateTime<Utc>,
    pub ingested_until: DateTime<Utc>,
    pub too_late_before: DateTime<Utc>,
}

/// Arrivals: binds are (unix seconds) `too_late_before` three times, `new_from`,
/// `ingested_from`, `ingested_until`. Returns how many arrivals are recent enough to be judged,
/// the earliest of their event times, and how many new arrivals are too old.
pub const ARRIVALS_SQL: &str = "SELECT \
     countIf(event_time >= toDateTime(?)) AS judged, \
     toUInt32(minIf(event_time, event_time >= toDateTime(?))) AS earliest, \
     countIf(event_time < toDateTime(?) AND ingest_time >= toDateTime(?)) AS too_late \
     FROM events WHERE ingest_time >= toDateTime(?) AND ingest_time < toDateTime(?)";

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DetectConfig {
        DetectConfig {
            window_secs: 3600,
            max_lateness_secs: 86400,
            future_skew_secs: 300,
            ..DetectConfig::default()
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_quiet_tick_judges_the_sliding_window() {
        let now = t("2024-07-09T12:00:00Z");
        let s = Schedule::new(&config(), now);
        let plan = s.plan(now, Arrivals::default());
        assert_eq!(
            plan.windows,
            vec![(t("2024-07-09T11:00:00Z"), t("2024-07-09T12:05:00Z"))]
        );
    }

    #[test]
    fn late_arrivals_widen_the_judged_range_back_to_their_event_time() {
        let now = t("2024-07-09T12:00:00Z");
        let s = Schedule::new(&config(), now);
        let arrivals = Arrivals {
            earliest_late: Some(t("2024-07-09T03:30:00Z")),
            too_late: 2,
        };
        let plan = s.plan(now, arrivals);
        assert_eq!(
            plan.windows,
            vec![
                (t("2024-07-09T03:30:00Z"), t("2024-07-09T04:30:00Z")),
                (t("2024-07-09T04:30:00Z"), t("2024-07-09T05:30:00Z")),
                (t("2024-07-09T05:30:00Z"), t("2024-07-09T06:30:00Z")),
                (t("2024-07-09T06:30:00Z"), t("2024-07-09T07:30:00Z")),
                (t("2024-07-09T07:30:00Z"), t("2024-07-09T08:30:00Z")),
                (t("2024-07-09T08:30:00Z"), t("2024-07-09T09:30:00Z")),
                (t("2024-07-09T09:30:00Z"), t("2024-07-09T10:30:00Z")),
                (t("2024-07-09T10:30:00Z"), t("2024-07-09T11:00:00Z")),
                (t("2024-07-09T11:00:00Z"), t("2024-07-09T12:05:00Z")),
            ]
        );
        assert_eq!(plan.too_late, 2);
        // Never further back than the lateness bound.
        let plan = s.plan(
            now,
            Arrivals {
                earliest_late: Some(t("2024-01-01T00:00:00Z")),
                too_late: 0,
            },
        );
        assert_eq!(plan.windows[0].0, t("2024-07-08T12:00:00Z"));
    }

    #[test]
    fn the_watermark_advances_after_success_and_looks_back_by_the_overlap() {
        let start = t("2024-07-09T12:00:00Z");
        let mut s = Schedule::new(&config(), start);
        assert_eq!(s.watermark(), t("2024-07-08T12:00:00Z"));
        let q = s.arrival_query(start);
        assert_eq!(q.ingested_from, t("2024-07-08T11:58:00Z"));
        assert_eq!(q.ingested_until, start);
        s.advance(start);
        let next = t("2024-07-09T12:00:30Z");
        let q = s.arrival_query(next);
        assert_eq!(q.ingested_from, t("2024-07-09T11:58:00Z"));
        assert_eq!(q.new_from, start);
        assert_eq!(q.too_late_before, t("2024-07-08T12:00:30Z"));
        // A tick that failed does not move it.
        s.advance(t("2024-07-09T11:00:00Z"));
        assert_eq!(s.watermark(), start);
    }
}
