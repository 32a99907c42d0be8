//! Detections as data: rules (`query/rules/<id>/rule.toml`, each with its test events beside it)
//! evaluated over event-time windows into findings.
//!
//! [`rule`] is the file format, [`RULE_FILES`] the rules compiled into the binary, [`engine`]
//! runs them and stores findings with deterministic ids, [`suppress`] marks accepted ones,
//! [`findings`] reads them back. For `credtrail serve`, [`schedule`] plans each tick's windows
//! (sliding window plus late arrivals, by an ingest-time watermark), [`runner`] runs the ticks and
//! [`metrics`] exposes findings and evaluations to Prometheus.

pub mod engine;
pub mod findings;
pub mod metrics;
pub mod rule;
pub mod runner;
pub mod schedule;
pub mod suppress;

pub use rule::{Rule, Severity};

/// Every shipped rule: (directory under `query/rules/`, its `rule.toml`). A test checks that
/// every directory there is listed here.
pub const RULE_FILES: &[(&str, &str)] = &[
    (
        "exchange-without-issuance",
        include_str!("../../rules/exchange-without-issuance/rule.toml"),
    ),
    (
        "audience-mismatch",
        include_str!("../../rules/audience-mismatch/rule.toml"),
    ),
    (
        "trust-root-change",
        include_str!("../../rules/trust-root-change/rule.toml"),
    ),
    (
        "credential-variable-change",
        include_str!("../../rules/credential-variable-change/rule.toml"),
    ),
    (
        "session-duration-above-policy",
        include_str!("../../rules/session-duration-above-policy/rule.toml"),
    ),
    (
        "unexpected-client",
        include_str!("../../rules/unexpected-client/rule.toml"),
    ),
    (
        "plan-token-write-principal",
        include_str!("../../rules/plan-token-write-principal/rule.toml"),
    ),
    (
        "cross-account-alias",
        include_str!("../../rules/cross-account-alias/rule.toml"),
    ),
    (
        "module-test-token-misuse",
        include_str!("../../rules/module-test-token-misuse/rule.toml"),
    ),
    (
        "token-overuse",
        include_str!("../../rules/token-overuse/rule.toml"),
    ),
    (
        "exchange-after-expiry",
        include_str!("../../rules/exchange-after-expiry/rule.toml"),
    ),
    (
        "workspace-rename-drift",
        include_str!("../../rules/workspace-rename-drift/rule.toml"),
    ),
    (
        "alias-default-fallback",
        include_str!("../../rules/alias-default-fallback/rule.toml"),
    ),
    (
        "first-seen-principal",
        include_str!("../../rules/first-seen-principal/rule.toml"),
    ),
    (
        "unexpected-workspace",
        include_str!("../../rules/unexpected-workspace/rule.toml"),
    ),
    (
        "coverage-gap",
        include_str!("../../rules/coverage-gap/rule.toml"),
    ),
    (
        "failure-spike",
        include_str!("../../rules/failure-spike/rule.toml"),
    ),
    (
        "trust-policy-too-broad",
        include_str!("../../rules/trust-policy-too-broad/rule.toml"),
    ),
];

/// The shipped rules, parsed and checked.
pub fn rules() -> Result<Vec<Rule>, String> {
    RULE_FILES
        .iter()
        .map(|(dir, text)| {
            let rule = Rule::parse(text).map_err(|e| format!("rules/{dir}: {e}"))?;
            if rule.id != *dir {
                return Err(format!(
                    "rules/{dir}: id {:?} differs from its directory",
                    rule.id
                ));
            }
            Ok(rule)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_parses_and_every_directory_is_listed() {
        let rules = rules().unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = rules.iter().map(|r| r.id.clone()).collect();
        listed.sort();
        assert_eq!(listed, on_disk);
        for r in &rules {
            assert!(
                r.tests.iter().any(|t| !t.expect.is_empty()),
                "{}: no positive case",
                r.id
            );
            assert!(
                r.tests.iter().any(|t| t.expect.is_empty()),
                "{}: no negative case",
                r.id
            );
        }
    }

    #[test]
    fn placeholders_must_be_known() {
        let text = RULE_FILES[0].1.replace("{lookback_seconds}", "{nope}");
        assert!(
            Rule::parse(&text)
                .unwrap_err()
                .contains("unknown placeholder")
        );
    }
}
