//! The exchange series: `credtrail_exchanges_total` by provider, outcome, error code and alias
//! (and workspace, when enabled), counted once per event as it is first stored.
//!
//! Error codes, aliases and workspaces come from logs and configuration, so each label has a cap:
//! the first `max` distinct values keep their name, later ones are counted as `other` (and the
//! overflow itself is counted), so a flood of novel values cannot grow the series without bound.

use crate::config::MetricsConfig;
use crate::model::EventRow;
use prometheus::{IntCounterVec, Opts, Registry};
use std::collections::HashSet;
use std::sync::Mutex;

/// What a label value past its cap is counted as.
pub const OTHER: &str = "other";

/// The exchange counters and their label caps.
#[derive(Clone)]
pub struct ExchangeMetrics {
    exchanges: IntCounterVec,
    overflow: IntCounterVec,
    caps: std::sync::Arc<Caps>,
}

struct Caps {
    aliases: Cap,
    error_codes: Cap,
    workspaces: Option<Cap>,
}

/// The admitted values of one label.
struct Cap {
    max: usize,
    seen: Mutex<HashSet<String>>,
}

impl Cap {
    fn new(max: usize) -> Cap {
        Cap {
            max,
            seen: Mutex::new(HashSet::new()),
        }
    }

    /// `value` if it is admitted (already, or now while there is room), else `None`.
    fn admit<'a>(&self, value: &'a str) -> Option<&'a str> {
        // The empty value (no alias, no error) is always its own series.
        if value.is_empty() {
            return Some(value);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(value) {
            return Some(value);
        }
        if seen.len() < self.max {
            seen.insert(value.to_owned());
            return Some(value);
        }
        None
    }
}

impl ExchangeMetrics {
    pub fn new(registry: &Registry, config: &MetricsConfig) -> ExchangeMetrics {
        let mut labels = vec!["provider", "outcome", "error_code", "alias"];
        if config.workspace_labels {
            labels.push("workspace");
        }
        let exchanges = IntCounterVec::new(
            Opts::new(
                "credtrail_exchanges_total",
                "Credential exchanges stored, by provider, outcome, error code and alias (empty: the default configuration).",
            ),
            &labels,
        )
        .expect("valid metric");
        let overflow = IntCounterVec::new(
            Opts::new(
                "credtrail_metric_label_overflow_total",
                "Exchanges counted under `other` because a label reached its cap (metrics.max_*).",
            ),
            &["label"],
        )
        .expect("valid metric");
        for m in [&exchanges, &overflow] {
            registry
                .register(Box::new(m.clone()))
                .expect("unique, valid metric");
        }
        ExchangeMetrics {
            exchanges,
            overflow,
            caps: std::sync::Arc::new(Caps {
                aliases: Cap::new(config.max_aliases),
                error_codes: Cap::new(config.max_error_codes),
                workspaces: config
                    .workspace_labels
                    .then(|| Cap::new(config.max_workspaces)),
            }),
        }
    }

    /// Counts `event` if it is an exchange.
    pub fn observe(&self, event: &EventRow) {
        if &*event.event_kind != "exchange" {
            return;
        }
        let alias = self.capped("alias", &self.caps.aliases, &event.alias_tag);
        let code = self.capped("error_code", &self.caps.error_codes, &event.error_code);
        let mut values = vec![&*event.provider, &*event.outcome, code, alias];
        if let Some(cap) = &self.caps.workspaces {
            values.push(self.capped("workspace", cap, &event.workspace_name));
        }
        self.exchanges.with_label_values(&values).inc();
    }

    fn capped<'a>(&self, label: &str, cap: &Cap, value: &'a str) -> &'a str {
        cap.admit(value).unwrap_or_else(|| {
            self.overflow.with_label_values(&[label]).inc();
            OTHER
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventKind, Source};

    fn exchange(alias: &str, code: &str, workspace: &str) -> EventRow {
        let mut row = EventRow::new(
            EventKind::Exchange,
            Source::AwsCloudtrail,
            "e".into(),
            "aws",
            chrono::Utc::now(),
            chrono::Utc::now(),
        );
        row.outcome = if code.is_empty() {
            "success"
        } else {
            "failure"
        }
        .into();
        row.error_code = code.into();
        row.alias_tag = alias.into();
        row.workspace_name = workspace.into();
        row
    }

    fn series(registry: &Registry) -> Vec<(Vec<(String, String)>, f64)> {
        registry
            .gather()
            .into_iter()
            .filter(|f| f.name() == "credtrail_exchanges_total")
            .flat_map(|f| f.get_metric().to_vec())
            .map(|m| {
                let labels = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name().to_owned(), l.value().to_owned()))
                    .collect();
                (labels, m.get_counter().get_value())
            })
            .collect()
    }

    #[test]
    fn values_past_the_cap_are_other_and_counted_as_overflow() {
        let registry = Registry::new();
        let config = MetricsConfig {
            max_aliases: 2,
            max_error_codes: 1,
            ..MetricsConfig::default()
        };
        let m = ExchangeMetrics::new(&registry, &config);
        for alias in ["A", "B", "C", "D", "A", ""] {
            m.observe(&exchange(alias, "", "ws"));
        }
        m.observe(&exchange("A", "AccessDenied", "ws"));
        m.observe(&exchange("A", "InvalidIdentityToken", "ws"));
        let mut issuance = exchange("Z", "", "ws");
        issuance.event_kind = EventKind::Issuance.as_str().into();
        m.observe(&issuance);

        let got = series(&registry);
        let count = |alias: &str, code: &str| -> f64 {
            got.iter()
                .filter(|(l, _)| {
                    l.contains(&("alias".into(), alias.into()))
                        && l.contains(&("error_code".into(), code.into()))
                })
                .map(|(_, v)| v)
                .sum()
        };
        assert_eq!(count("A", ""), 2.0);
        assert_eq!(count("B", ""), 1.0);
        assert_eq!(count("other", ""), 2.0, "C and D are past the cap of 2");
        assert_eq!(
            count("", ""),
            1.0,
            "the default configuration is always its own series"
        );
        assert_eq!(count("A", "AccessDenied"), 1.0);
        assert_eq!(count("A", "other"), 1.0);
        assert_eq!(count("Z", ""), 0.0, "issuance is not an exchange");
        assert!(
            got.iter()
                .all(|(l, _)| l.iter().all(|(k, _)| k != "workspace"))
        );
        let text = {
            let mut buf = Vec::new();
            prometheus::Encoder::encode(
                &prometheus::TextEncoder::new(),
                &registry.gather(),
                &mut buf,
            )
            .unwrap();
            String::from_utf8(buf).unwrap()
        };
        assert!(
            text.contains("credtrail_metric_label_overflow_total{label=\"alias\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("credtrail_metric_label_overflow_total{label=\"error_code\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn workspace_labels_are_opt_in_and_capped() {
        let registry = Registry::new();
        let config = MetricsConfig {
            workspace_labels: true,
            max_workspaces: 1,
            ..MetricsConfig::default()
        };
        let m = ExchangeMetrics::new(&registry, &config);
        m.observe(&exchange("", "", "network-prod"));
        m.observe(&exchange("", "", "payments"));
        let got = series(&registry);
        let workspaces: HashSet<String> = got
            .iter()
            .flat_map(|(l, _)| {
                l.iter()
                    .filter(|(k, _)| k == "workspace")
                    .map(|(_, v)| v.clone())
            })
            .collect();
        assert_eq!(
            workspaces,
            HashSet::from(["network-prod".into(), OTHER.into()])
        );
    }
}
