//! Suppressions: accepted findings, kept visible but out of the way. A suppression names a rule
//! (or `*`), glob patterns for workspace, alias and principal, a reason, and optionally an
//! expiry, after which the finding is open again. They live in a TOML file
//! (`detect.suppressions_file`) so that they are reviewed like code:
//!
//! ```toml
//! [[suppress]]
//! rule = "unexpected-client"
//! workspace = "sandbox-*"
//! principal = "arn:aws:iam::111122223333:role/ci-*"
//! reason = "CI smoke tests call STS with the AWS CLI (SEC-1234)"
//! expires = "2027-01-01T00:00:00Z"
//! ```

use super::engine::Finding;
use chrono::{DateTime, Utc};
use globset::{Glob, GlobMatcher};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    suppress: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    rule: String,
    #[serde(default = "any")]
    workspace: String,
    #[serde(default = "any")]
    alias: String,
    #[serde(default = "any")]
    principal: String,
    reason: String,
    expires: Option<DateTime<Utc>>,
}

fn any() -> String {
    "*".into()
}

/// One compiled suppression.
#[derive(Debug, Clone)]
pub struct Suppression {
    rule: String,
    workspace: GlobMatcher,
    alias: GlobMatcher,
    principal: GlobMatcher,
    pub reason: String,
    pub expires: Option<DateTime<Utc>>,
}

/// Every suppression in force.
#[derive(Debug, Clone, Default)]
pub struct Suppressions(Vec<Suppression>);

impl Suppressions {
    /// Parses a suppressions file; every entry needs a reason.
    pub fn parse(text: &str) -> Result<Suppressions, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let glob = |p: &str| {
            Glob::new(p)
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("pattern {p:?}: {e}"))
        };
        file.suppress
            .into_iter()
            .map(|e| {
                if e.reason.trim().is_empty() {
                    return Err(format!("suppression of {:?} has no reason", e.rule));
                }
                Ok(Suppression {
                    workspace: glob(&e.workspace)?,
                    alias: glob(&e.alias)?,
                    principal: glob(&e.principal)?,
                    rule: e.rule,
                    reason: e.reason,
                    expires: e.expires,
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map(Suppressions)
    }

    /// The first suppression in force at `now` that covers the finding.
    pub fn matching(&self, f: &Finding, now: DateTime<Utc>) -> Option<&Suppression> {
        self.0.iter().find(|s| {
            (s.rule == "*" || s.rule == f.rule_id)
                && s.expires.is_none_or(|e| e > now)
                && s.workspace.is_match(&f.workspace_name)
                && s.alias.is_match(&f.alias_tag)
                && s.principal.is_match(&f.principal)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &str, workspace: &str, principal: &str) -> Finding {
        let t = DateTime::UNIX_EPOCH;
        Finding {
            finding_id: "f".into(),
            rule_id: rule.into(),
            severity: "high".into(),
            provider: "aws".into(),
            org_name: "acme".into(),
            workspace_name: workspace.into(),
            alias_tag: String::new(),
            run_id: String::new(),
            principal: principal.into(),
            first_seen: t,
            last_seen: t,
            evidence: Vec::new(),
            summary: String::new(),
            status: "open".into(),
            status_reason: String::new(),
            detected_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn patterns_rules_and_expiry() {
        let s = Suppressions::parse(
            r#"
            [[suppress]]
            rule = "unexpected-client"
            workspace = "sandbox-*"
            principal = "arn:aws:iam::1:role/ci-*"
            reason = "CI"
            expires = "2030-01-01T00:00:00Z"
            [[suppress]]
            rule = "*"
            workspace = "lab"
            reason = "the lab is out of scope"
            "#,
        )
        .unwrap();
        let now: DateTime<Utc> = "2029-01-01T00:00:00Z".parse().unwrap();
        let later: DateTime<Utc> = "2031-01-01T00:00:00Z".parse().unwrap();
        let ci = finding(
            "unexpected-client",
            "sandbox-7",
            "arn:aws:iam::1:role/ci-smoke",
        );
        assert_eq!(s.matching(&ci, now).unwrap().reason, "CI");
        assert!(s.matching(&ci, later).is_none(), "expired");
        assert!(
            s.matching(
                &finding("unexpected-client", "prod", "arn:aws:iam::1:role/ci-smoke"),
                now
            )
            .is_none()
        );
        assert!(
            s.matching(&finding("token-overuse", "lab", "x"), later)
                .is_some()
        );
        assert!(Suppressions::parse("[[suppress]]\nrule = \"x\"\nreason = \" \"\n").is_err());
    }
}
