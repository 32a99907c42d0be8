//! Parsing the `sub` claim of an HCP Terraform workload identity token.
//!
//! Workspace runs: `organization:<ORG>:project:<PROJECT>:workspace:<WS>:run_phase:<plan|apply>`.
//! Module tests: `organization:<ORG>:module:<MODULE>:operation:test_run`.
//! Names may hold spaces (`Default Project`) but no colons, so a split on `:` is exact; anything else
//! (GitHub, EKS, a hand-made token) parses as [`TokenType::Unknown`] with empty parts.

/// What kind of HCP Terraform token a subject belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    WorkspaceRun,
    ModuleTest,
    Unknown,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::WorkspaceRun => "workspace_run",
            TokenType::ModuleTest => "module_test",
            TokenType::Unknown => "unknown",
        }
    }
}

/// The parts of a subject; borrowed from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject<'a> {
    pub token_type: TokenType,
    pub organization: &'a str,
    pub project: &'a str,
    pub workspace: &'a str,
    /// `plan` or `apply`; module tests are always `plan`.
    pub run_phase: &'a str,
    /// Module-test tokens only.
    pub module: &'a str,
}

impl<'a> Subject<'a> {
    pub fn parse(sub: &'a str) -> Subject<'a> {
        let unknown = Subject {
            token_type: TokenType::Unknown,
            organization: "",
            project: "",
            workspace: "",
            run_phase: "",
            module: "",
        };
        // At most 9 parts are ever meaningful; more means not an HCP subject.
        let mut buf = [""; 9];
        let Some(n) = split_colons(sub, &mut buf) else {
            return unknown;
        };
        let parts = &buf[..n];
        match parts {
            [
                "organization",
                org,
                "project",
                project,
                "workspace",
                ws,
                "run_phase",
                phase,
            ] if !org.is_empty() && !ws.is_empty() && !phase.is_empty() => Subject {
                token_type: TokenType::WorkspaceRun,
                organization: org,
                project,
                workspace: ws,
                run_phase: phase,
                module: "",
            },
            [
                "organization",
                org,
                "module",
                module,
                "operation",
                "test_run",
            ] if !org.is_empty() => Subject {
                token_type: TokenType::ModuleTest,
                organization: org,
                module,
                run_phase: "plan",
                ..unknown
            },
            _ => unknown,
        }
    }
}

/// Splits `text` on `:` into `parts`, returning how many there are, or `None` when there are
/// more than `parts` holds. A byte loop: `str::split` costs more than the rest of the row on these
/// short strings.
pub(crate) fn split_colons<'a>(text: &'a str, parts: &mut [&'a str]) -> Option<usize> {
    let mut n = 0;
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        if b == b':' {
            *parts.get_mut(n)? = &text[start..i];
            n += 1;
            start = i + 1;
        }
    }
    *parts.get_mut(n)? = &text[start..];
    Some(n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_colons_counts_and_bounds_parts() {
        let mut parts = [""; 3];
        assert_eq!(split_colons("a::b", &mut parts), Some(3));
        assert_eq!(parts, ["a", "", "b"]);
        assert_eq!(split_colons("", &mut parts), Some(1));
        assert_eq!(split_colons("a:b:c:d", &mut parts), None);
    }

    #[test]
    fn workspace_run_subject_with_spaces_in_project() {
        let s = Subject::parse(
            "organization:acme:project:Default Project:workspace:net-prod:run_phase:apply",
        );
        assert_eq!(s.token_type, TokenType::WorkspaceRun);
        assert_eq!(s.organization, "acme");
        assert_eq!(s.project, "Default Project");
        assert_eq!(s.workspace, "net-prod");
        assert_eq!(s.run_phase, "apply");
    }

    #[test]
    fn module_test_subject_is_plan_phase() {
        let s = Subject::parse("organization:acme:module:vpc:operation:test_run");
        assert_eq!(s.token_type, TokenType::ModuleTest);
        assert_eq!(s.module, "vpc");
        assert_eq!(s.run_phase, "plan");
        assert_eq!(s.workspace, "");
    }

    #[test]
    fn foreign_and_truncated_subjects_are_unknown() {
        for sub in [
            "repo:octo/app:ref:refs/heads/main",
            "organization:acme:project:p:workspace:w",
            "organization::project:p:workspace:w:run_phase:plan",
            // Found by the `fields` fuzz target: an empty phase is not a run phase.
            "organization:acme:project:p:workspace:w:run_phase:",
            "",
        ] {
            assert_eq!(Subject::parse(sub).token_type, TokenType::Unknown, "{sub}");
        }
    }
}
