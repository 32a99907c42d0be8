//! What `credtrail serve` says about detection in `/metrics`: findings by rule, severity and
//! family (bounded: rules are compiled in), evaluations, and the watermark.

use super::rule::Rule;
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct DetectMetrics {
    /// New findings, by rule, severity and family.
    pub findings: IntCounterVec,
    /// Findings whose status is open, by rule, severity and family (refreshed every tick).
    pub open: IntGaugeVec,
    /// Rule evaluations by rule and result (ok, error).
    pub evaluations: IntCounterVec,
    pub evaluation_seconds: HistogramVec,
    /// Ingest-time watermark (unix seconds): arrivals before it have been judged.
    pub watermark: IntGauge,
    /// When a tick last succeeded (unix seconds).
    pub last_success: IntGauge,
    pub late_skipped: IntCounter,
}

impl DetectMetrics {
    /// Registers the series, every rule's at zero so that the first finding is an increase.
    pub fn new(registry: &Registry, rules: &[Rule]) -> DetectMetrics {
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("unique, valid metric");
        };
        let findings = IntCounterVec::new(
            Opts::new(
                "credtrail_findings_total",
                "Findings detected for the first time, by rule, severity and family.",
            ),
            &["rule", "severity", "family"],
        )
        .expect("valid metric");
        let open = IntGaugeVec::new(
            Opts::new(
                "credtrail_findings_open",
                "Findings whose status is open, by rule, severity and family.",
            ),
            &["rule", "severity", "family"],
        )
        .expect("valid metric");
        let evaluations = IntCounterVec::new(
            Opts::new(
                "credtrail_rule_evaluations_total",
                "Rule evaluations by rule and result (ok, error).",
            ),
            &["rule", "result"],
        )
        .expect("valid metric");
        let evaluation_seconds = HistogramVec::new(
            HistogramOpts::new(
                "credtrail_rule_evaluation_duration_seconds",
                "Time to evaluate one rule over one window and store its findings.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["rule"],
        )
        .expect("valid metric");
        let watermark = IntGauge::new(
            "credtrail_detect_watermark_timestamp_seconds",
            "Ingest time up to which arrivals have been judged.",
        )
        .expect("valid metric");
        let last_success = IntGauge::new(
            "credtrail_detect_last_success_timestamp_seconds",
            "When a scheduled evaluation of every rule last succeeded.",
        )
        .expect("valid metric");
        let late_skipped = IntCounter::new(
            "credtrail_detect_late_events_skipped_total",
            "Events that arrived later than detect.max_lateness_secs and were not judged again.",
        )
        .expect("valid metric");
        reg(Box::new(findings.clone()));
        reg(Box::new(open.clone()));
        reg(Box::new(evaluations.clone()));
        reg(Box::new(evaluation_seconds.clone()));
        reg(Box::new(watermark.clone()));
        reg(Box::new(last_success.clone()));
        reg(Box::new(late_skipped.clone()));
        for r in rules {
            let labels = [r.id.as_str(), r.severity.as_str(), r.family.as_str()];
            findings.with_label_values(&labels);
            open.with_label_values(&labels);
            for result in ["ok", "error"] {
                evaluations.with_label_values(&[&r.id, result]);
            }
        }
        DetectMetrics {
            findings,
            open,
            evaluations,
            evaluation_seconds,
            watermark,
            last_success,
            late_skipped,
        }
    }
}
