//! The detection loops of `credtrail serve`, two of them so that a finding shows in seconds
//! while every event is still judged in full context:
//! - the *fast pass*, every `detect.interval_secs`, judges the last `detect.fast_window_secs`
//!   with the rules marked `fast` (one event is enough to judge them);
//! - the *full pass*, every `detect.full_interval_secs`, judges the windows [`Schedule`] plans
//!   (the sliding `detect.window_secs` and late arrivals) and advances the watermark.
//!
//! Both evaluate rule by rule (a failing rule does not stop the others; a full pass that had a
//! failure is retried, since the watermark stays) and refresh the findings gauges. Finding ids
//! are deterministic and versions merge, so what both passes find is one finding.

use super::metrics::DetectMetrics;
use super::rule::{Rule, Window};
use super::schedule::{ARRIVALS_SQL, Arrivals, Schedule};
use super::suppress::Suppressions;
use super::{engine, findings};
use crate::QueryError;
use chrono::{DateTime, Utc};
use clickhouse::Row;
use credtrail_ingest::config::DetectConfig;
use credtrail_ingest::store::Store;
use futures::StreamExt;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Instant;

/// Evaluates the rules on a schedule.
#[derive(Clone)]
pub struct Detector {
    store: Store,
    rules: Vec<Rule>,
    suppressions_file: Option<PathBuf>,
    suppressions: Suppressions,
    schedule: Schedule,
    settle: engine::Settle,
    fast_window: chrono::Duration,
    future_skew: chrono::Duration,
    full_interval: std::time::Duration,
    parallel: usize,
    /// When the previous successful fast pass began.
    fast_since: Option<DateTime<Utc>>,
    metrics: DetectMetrics,
}

/// How far before the previous fast pass each fast pass looks for arrivals (rows normalized
/// just before a pass and inserted just after it; the full pass judges anything later still).
pub const FAST_OVERLAP: chrono::Duration = chrono::Duration::seconds(10);

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    pub new: usize,
    pub failed_rules: usize,
}

#[derive(Debug, Row, Deserialize)]
struct ArrivalRow {
    judged: u64,
    earliest: u32,
    too_late: u64,
}

impl Detector {
    pub fn new(
        store: Store,
        rules: Vec<Rule>,
        config: &DetectConfig,
        metrics: DetectMetrics,
    ) -> Detector {
        Detector {
            store,
            rules,
            suppressions_file: config.suppressions_file.clone(),
            suppressions: Suppressions::default(),
            schedule: Schedule::new(config, Utc::now()),
            settle: engine::Settle::On {
                cap_seconds: config.max_settle_secs,
            },
            fast_window: secs(config.fast_window_secs),
            future_skew: secs(config.future_skew_secs),
            full_interval: std::time::Duration::from_secs(config.full_interval_secs.max(1)),
            parallel: config.parallel_rules.max(1),
            fast_since: None,
            metrics,
        }
    }

    /// Runs the fast pass every `interval` and the full pass every `detect.full_interval_secs`
    /// until `stop` resolves.
    pub async fn run(self, interval: std::time::Duration, stop: impl Future<Output = ()>) {
        let full_every = self.full_interval;
        let fast_loop = every(interval, self.clone(), Pass::Fast);
        let full_loop = every(full_every, self, Pass::Full);
        tokio::select! {
            _ = stop => {}
            _ = fast_loop => {}
            _ = full_loop => {}
        }
    }

    /// The fast pass at `now`: the fast rules over what arrived since the previous fast pass
    /// began (less [`FAST_OVERLAP`]) in the last `fast_window`; the watermark stays.
    pub async fn fast_pass(&mut self, now: DateTime<Utc>) -> Result<Tick, QueryError> {
        self.reload_suppressions();
        let start = now - self.fast_window;
        let mut window = Window::new(start, now + self.future_skew);
        window.arrived = Some(
            self.fast_since
                .map_or(start, |t| t - FAST_OVERLAP)
                .max(start),
        );
        let tick = self.finish(self.evaluate(&[window], true).await).await?;
        self.fast_since = Some(now);
        Ok(tick)
    }

    /// The full pass at `now`: the planned windows, then the watermark advances.
    pub async fn full_pass(&mut self, now: DateTime<Utc>) -> Result<Tick, QueryError> {
        self.reload_suppressions();
        let q = self.schedule.arrival_query(now);
        let secs = |t: DateTime<Utc>| t.timestamp().max(0);
        let arrived: ArrivalRow = self
            .store
            .client()
            .query(ARRIVALS_SQL)
            .bind(secs(q.too_late_before))
            .bind(secs(q.too_late_before))
            .bind(secs(q.too_late_before))
            .bind(secs(q.new_from))
            .bind(secs(q.ingested_from))
            .bind(secs(q.ingested_until))
            .fetch_one()
            .await?;
        let arrivals = Arrivals {
            earliest_late: (arrived.judged > 0)
                .then(|| DateTime::from_timestamp(i64::from(arrived.earliest), 0))
                .flatten(),
            too_late: arrived.too_late,
        };
        let plan = self.schedule.plan(now, arrivals);
        let windows: Vec<Window> = plan
            .windows
            .iter()
            .map(|(start, end)| Window::new(*start, *end))
            .collect();
        let tick = self.finish(self.evaluate(&windows, false).await).await?;
        self.metrics.late_skipped.inc_by(plan.too_late);
        self.schedule.advance(now);
        self.metrics
            .watermark
            .set(self.schedule.watermark().timestamp());
        self.metrics.last_success.set(now.timestamp());
        Ok(tick)
    }

    /// Rule `i` over `window`, and how long it took.
    #[tracing::instrument(
        name = "detect.rule",
        skip_all,
        fields(rule = %self.rules[i].id, start = %window.start, end = %window.end)
    )]
    async fn evaluate_rule(
        &self,
        i: usize,
        window: Window,
    ) -> (usize, Result<Vec<engine::Evaluation>, QueryError>, f64) {
        let began = Instant::now();
        let result = engine::evaluate(
            &self.store,
            std::slice::from_ref(&self.rules[i]),
            window,
            self.settle,
            &self.suppressions,
        )
        .await;
        (i, result, began.elapsed().as_secs_f64())
    }

    /// Evaluates every rule (only the `fast` ones with `fast_only`) over each window.
    async fn evaluate(&self, windows: &[Window], fast_only: bool) -> Tick {
        let mut tick = Tick::default();
        for window in windows {
            // Rules run side by side (`detect.parallel_rules` at once): on older servers a
            // `FINAL` read is one stream, so one query alone leaves cores idle.
            let results: Vec<(usize, Result<Vec<engine::Evaluation>, QueryError>, f64)> =
                futures::stream::iter(0..self.rules.len())
                    .filter(|&i| std::future::ready(!fast_only || self.rules[i].fast))
                    .map(|i| self.evaluate_rule(i, *window))
                    // The full pass goes one rule at a time, leaving the server room for the
                    // fast pass beside it.
                    .buffer_unordered(if fast_only { self.parallel } else { 1 })
                    .collect()
                    .await;
            for (i, result, took) in results {
                let rule = &self.rules[i];
                self.metrics
                    .evaluation_seconds
                    .with_label_values(&[&rule.id])
                    .observe(took);
                match result {
                    Ok(evaluations) => {
                        self.metrics
                            .evaluations
                            .with_label_values(&[&rule.id, "ok"])
                            .inc();
                        let new: usize = evaluations.iter().map(|e| e.new).sum();
                        self.metrics
                            .findings
                            .with_label_values(&[&rule.id, rule.severity.as_str(), &rule.family])
                            .inc_by(new as u64);
                        tick.new += new;
                    }
                    Err(e) => {
                        self.metrics
                            .evaluations
                            .with_label_values(&[&rule.id, "error"])
                            .inc();
                        tracing::warn!(rule = %rule.id, "evaluation failed: {e}");
                        tick.failed_rules += 1;
                    }
                }
            }
        }
        tick
    }

    /// After a pass: the gauges refreshed, and an error if any rule failed (the caller then
    /// keeps its state, so the pass is repeated).
    async fn finish(&self, tick: Tick) -> Result<Tick, QueryError> {
        self.refresh_open().await?;
        if tick.failed_rules > 0 {
            return Err(QueryError::Output(format!(
                "{} rule evaluation(s) failed",
                tick.failed_rules
            )));
        }
        Ok(tick)
    }

    /// Sets the open-findings gauges from ClickHouse (every rule, zero included).
    async fn refresh_open(&self) -> Result<(), QueryError> {
        let open = findings::open_by_rule(&self.store).await?;
        for rule in &self.rules {
            let n = open.get(&rule.id).copied().unwrap_or(0);
            self.metrics
                .open
                .with_label_values(&[&rule.id, rule.severity.as_str(), &rule.family])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        Ok(())
    }

    /// Reads the suppressions file again; a broken edit keeps the previous suppressions.
    fn reload_suppressions(&mut self) {
        let Some(path) = &self.suppressions_file else {
            return;
        };
        match std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|text| Suppressions::parse(&text))
        {
            Ok(s) => self.suppressions = s,
            Err(e) => tracing::warn!(
                "suppressions in {} not reloaded, keeping the previous ones: {e}",
                path.display()
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Pass {
    Fast,
    Full,
}

/// Runs one kind of pass every `period` (a slow pass delays the next, never piles them up),
/// forever.
async fn every(period: std::time::Duration, mut detector: Detector, pass: Pass) {
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = Utc::now();
        let result = match pass {
            Pass::Fast => detector.fast_pass(now).await,
            Pass::Full => detector.full_pass(now).await,
        };
        match result {
            Ok(t) if t.new > 0 => tracing::info!(new = t.new, ?pass, "findings"),
            Ok(_) => {}
            Err(e) => tracing::warn!(?pass, "detection pass failed, retried: {e}"),
        }
    }
}

fn secs(s: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}
