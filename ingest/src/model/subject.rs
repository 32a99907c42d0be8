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
        let mut n = 0;
        for part in sub.split(':') {
            if n == buf.len() {
                return unknown;
            }
            buf[n] = part;
            n += 1;
        }
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
            ] if !org.is_empty() && !ws.is_empty() => Subject {
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

#[cfg(test)]
mod tests {
    use super::*;

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
            "",
        ] {
            assert_eq!(Subject::parse(sub).token_type, TokenType::Unknown, "{sub}");
        }
    }
}
