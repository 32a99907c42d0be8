//! The detection loop of `credtrail serve`: on every tick, the windows [`Schedule`] plans are
//! evaluated rule by rule (a failing rule does not stop the others; the tick is then retried,
//! since the watermark stays), and the findings gauges are refreshed from ClickHouse.

use super::metrics::DetectMetrics;
use super::rule::Rule;
use super::schedule::{ARRIVALS_SQL, Arrivals, Schedule};
use super::suppress::Suppressions;
use super::{engine, findings};
use crate::QueryError;
use chrono::{DateTime, Utc};
use clickhouse::Row;
use credtrail_ingest::config::DetectConfig;
use credtrail_ingest::store::Store;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Instant;

/// Evaluates the rules on a schedule.
pub struct Detector {
    store: Store,
    rules: Vec<Rule>,
    suppressions_file: Option<PathBuf>,
    suppressions: Suppressions,
    schedule: Schedule,
    settle: engine::Settle,
    metrics: DetectMetrics,
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    pub windows: usize,
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
            metrics,
        }
    }

    /// Ticks every `interval` until `stop` resolves.
    pub async fn run(mut self, interval: std::time::Duration, stop: impl Future<Output = ()>) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = every.tick() => {}
            }
            match self.tick(Utc::now()).await {
                Ok(t) if t.new > 0 => tracing::info!(new = t.new, "findings"),
                Ok(_) => {}
                Err(e) => tracing::warn!("detection tick failed, retried next tick: {e}"),
            }
        }
    }

    /// One evaluation at `now`.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Result<Tick, QueryError> {
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
        let mut tick = Tick {
            windows: plan.windows.len(),
            ..Tick::default()
        };
        for (start, end) in &plan.windows {
            for rule in &self.rules {
                let began = Instant::now();
                let result = engine::evaluate(
                    &self.store,
                    std::slice::from_ref(rule),
                    *start,
                    *end,
                    self.settle,
                    &self.suppressions,
                )
                .await;
                self.metrics
                    .evaluation_seconds
                    .with_label_values(&[&rule.id])
                    .observe(began.elapsed().as_secs_f64());
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
        self.refresh_open().await?;
        if tick.failed_rules > 0 {
            return Err(QueryError::Output(format!(
                "{} rule evaluation(s) failed",
                tick.failed_rules
            )));
        }
        self.metrics.late_skipped.inc_by(plan.too_late);
        self.schedule.advance(now);
        self.metrics
            .watermark
            .set(self.schedule.watermark().timestamp());
        self.metrics.last_success.set(now.timestamp());
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
