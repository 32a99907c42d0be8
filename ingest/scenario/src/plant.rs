//! Planted cases: one misconfiguration or attack per chosen rule, each in its own workspace and
//! in the judged days, with the finding (rule, workspace, alias, run) it must produce.
//!
//! [`prepare`] picks the workspaces and changes the estate where a case is a configuration (an
//! alias whose role is in an account it may not reach, a workspace whose Azure sign-ins are not
//! collected) before ordinary traffic is generated; [`plant`] then writes the cases' events.

use crate::benign::{TOKEN_LIFETIME, call, exchange, issue};
use crate::records::{self, Token};
use crate::world::{Config, Provider, Workspace};
use crate::{Case, Gen};
use chrono::{DateTime, Duration, Utc};
use rand::Rng;
use rand::seq::SliceRandom;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// What can be planted: one case per detection rule, named by the rule's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Plant {
    ExchangeWithoutIssuance,
    ExchangeAfterExpiry,
    TokenOveruse,
    UnexpectedWorkspace,
    FirstSeenPrincipal,
    PlanTokenWritePrincipal,
    AliasDefaultFallback,
    AudienceMismatch,
    FailureSpike,
    TrustRootChange,
    CredentialVariableChange,
    CrossAccountAlias,
    SessionDurationAbovePolicy,
    UnexpectedClient,
    WorkspaceRenameDrift,
    ModuleTestTokenMisuse,
    CoverageGap,
    TrustPolicyTooBroad,
}

impl Plant {
    pub const ALL: [Plant; 18] = [
        Plant::ExchangeWithoutIssuance,
        Plant::ExchangeAfterExpiry,
        Plant::TokenOveruse,
        Plant::UnexpectedWorkspace,
        Plant::FirstSeenPrincipal,
        Plant::PlanTokenWritePrincipal,
        Plant::AliasDefaultFallback,
        Plant::AudienceMismatch,
        Plant::FailureSpike,
        Plant::TrustRootChange,
        Plant::CredentialVariableChange,
        Plant::CrossAccountAlias,
        Plant::SessionDurationAbovePolicy,
        Plant::UnexpectedClient,
        Plant::WorkspaceRenameDrift,
        Plant::ModuleTestTokenMisuse,
        Plant::CoverageGap,
        Plant::TrustPolicyTooBroad,
    ];

    /// The id of the rule that must find it.
    pub fn rule(self) -> &'static str {
        match self {
            Plant::ExchangeWithoutIssuance => "exchange-without-issuance",
            Plant::ExchangeAfterExpiry => "exchange-after-expiry",
            Plant::TokenOveruse => "token-overuse",
            Plant::UnexpectedWorkspace => "unexpected-workspace",
            Plant::FirstSeenPrincipal => "first-seen-principal",
            Plant::PlanTokenWritePrincipal => "plan-token-write-principal",
            Plant::AliasDefaultFallback => "alias-default-fallback",
            Plant::AudienceMismatch => "audience-mismatch",
            Plant::FailureSpike => "failure-spike",
            Plant::TrustRootChange => "trust-root-change",
            Plant::CredentialVariableChange => "credential-variable-change",
            Plant::CrossAccountAlias => "cross-account-alias",
            Plant::SessionDurationAbovePolicy => "session-duration-above-policy",
            Plant::UnexpectedClient => "unexpected-client",
            Plant::WorkspaceRenameDrift => "workspace-rename-drift",
            Plant::ModuleTestTokenMisuse => "module-test-token-misuse",
            Plant::CoverageGap => "coverage-gap",
            Plant::TrustPolicyTooBroad => "trust-policy-too-broad",
        }
    }

    pub fn parse(rule: &str) -> Option<Plant> {
        Plant::ALL.into_iter().find(|p| p.rule() == rule)
    }

    fn needs_alias(self) -> bool {
        matches!(self, Plant::AliasDefaultFallback | Plant::CrossAccountAlias)
    }
}

/// A workspace's configuration: (workspace index, provider, alias).
type ConfigKey = (usize, &'static str, String);

/// The cases chosen, and what ordinary traffic must do differently for them.
#[derive(Debug, Default)]
pub struct Planned {
    targets: Vec<(Plant, usize)>,
    /// Configurations whose judged-day events are a case's evidence.
    planted_configs: Vec<(usize, Provider, String)>,
    /// Workspaces and providers whose exchanges are never logged.
    silent: Vec<(usize, Provider)>,
    collected: RefCell<BTreeMap<ConfigKey, Vec<String>>>,
}

impl Planned {
    /// The workspace whose apply role's trust policy is planted too broad.
    pub fn broad_trust(&self) -> Option<usize> {
        self.targets
            .iter()
            .find(|(p, _)| *p == Plant::TrustPolicyTooBroad)
            .map(|(_, w)| *w)
    }
}

impl Planned {
    pub fn is_planted_config(&self, w: usize, c: &Config) -> bool {
        self.planted_configs
            .iter()
            .any(|(pw, p, a)| *pw == w && *p == c.provider && *a == c.alias)
    }

    pub fn is_silent(&self, w: usize, p: Provider) -> bool {
        self.silent.contains(&(w, p))
    }

    pub fn collect(&self, w: usize, c: &Config, ids: Vec<String>) {
        self.collected
            .borrow_mut()
            .entry((w, c.provider.as_str(), c.alias.clone()))
            .or_default()
            .extend(ids);
    }

    fn collected(&self, w: usize, p: Provider, alias: &str) -> Vec<String> {
        self.collected
            .borrow()
            .get(&(w, p.as_str(), alias.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Picks a workspace per case (each its own) and plants configuration cases into the estate.
pub fn prepare(g: &mut Gen, plants: &[Plant]) -> Result<Planned, String> {
    let mut plants = plants.to_vec();
    plants.sort();
    plants.dedup();
    let n = g.world.workspaces.len();
    // Unexpected-workspace also borrows a second workspace's role.
    let needed = plants.len() + usize::from(plants.contains(&Plant::UnexpectedWorkspace));
    if needed > n {
        return Err(format!(
            "{} planted case(s) need {needed} workspaces; the scenario has {n}",
            plants.len()
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut g.ids.rng);
    let mut planned = Planned::default();
    // Cases that need an alias or an Azure configuration first, where one exists.
    plants.sort_by_key(|p| !(p.needs_alias() || *p == Plant::CoverageGap));
    for plant in plants {
        let has = |ws: &Workspace| match plant {
            p if p.needs_alias() => ws
                .configs
                .iter()
                .any(|c| c.provider == Provider::Aws && !c.alias.is_empty()),
            Plant::CoverageGap => ws.config(Provider::Azure, "").is_some(),
            _ => true,
        };
        let pos = order
            .iter()
            .position(|&w| has(&g.world.workspaces[w]))
            .unwrap_or(0);
        let w = order.remove(pos);
        let ws = &mut g.world.workspaces[w];
        match plant {
            p if p.needs_alias() => {
                if !has(ws) {
                    let account = g.ids.digits(12);
                    ws.configs
                        .push(crate::world::aws_config(&ws.name, "SHARED", &account));
                }
                if plant == Plant::CrossAccountAlias {
                    // The alias' variables name a role in an account the alias may not reach.
                    let stray = g.ids.digits(12);
                    let alias = ws
                        .configs
                        .iter_mut()
                        .find(|c| c.provider == Provider::Aws && !c.alias.is_empty())
                        .expect("an alias");
                    for role in [&mut alias.plan, &mut alias.apply] {
                        *role = role.replace(&alias.account, &stray);
                    }
                    alias.account = stray;
                    let tag = alias.alias.clone();
                    planned.planted_configs.push((w, Provider::Aws, tag));
                }
            }
            Plant::CoverageGap => {
                if !has(ws) {
                    let tenant = g.ids.uuid();
                    let (plan, apply) = (g.ids.uuid(), g.ids.uuid());
                    ws.configs
                        .push(crate::world::azure_config(&tenant, &plan, &apply));
                }
                planned.silent.push((w, Provider::Azure));
                planned
                    .planted_configs
                    .push((w, Provider::Azure, String::new()));
            }
            _ => {}
        }
        planned.targets.push((plant, w));
    }
    if planned
        .targets
        .iter()
        .any(|(p, _)| *p == Plant::UnexpectedWorkspace)
    {
        // The victim whose role is borrowed: reserved, so no other case lands there.
        let victim = order.remove(0);
        planned
            .targets
            .push((Plant::UnexpectedWorkspace, victim + n));
    }
    Ok(planned)
}

/// A moment in the judged days, away from their edges.
fn judged_time(g: &mut Gen) -> DateTime<Utc> {
    let span = (g.end - g.judged_since).num_seconds() - 8 * 3600;
    g.judged_since + Duration::seconds(4 * 3600 + g.ids.rng.random_range(0..span.max(1)))
}

/// A run of `ws` as usual (benign events); returns its id, address and apply time.
fn usual_run(g: &mut Gen, ws: &Workspace, t0: DateTime<Utc>) -> (String, String, DateTime<Utc>) {
    let run = g.ids.hcp("run");
    let ip = g.ids.hcp_ip();
    let apply_at = t0 + Duration::minutes(5);
    for (phase, at) in [("plan", t0), ("apply", apply_at)] {
        for config in &ws.configs {
            let jti = issue(&mut g.ids, &mut g.out, ws, config, phase, &run, at);
            let c = call(ws, config, phase, &run, at + Duration::seconds(6), &ip);
            exchange(&mut g.ids, &mut g.out, &c, &jti);
        }
    }
    (run, ip, apply_at)
}

fn default_aws(ws: &Workspace) -> Config {
    ws.config(Provider::Aws, "")
        .cloned()
        .expect("every workspace has a default AWS configuration")
}

/// Writes every case's events; returns the cases.
pub fn plant(g: &mut Gen, planned: &Planned) -> Vec<Case> {
    let n = g.world.workspaces.len();
    let victim = planned
        .targets
        .iter()
        .find(|(_, w)| *w >= n)
        .map(|(_, w)| w - n);
    let mut cases = Vec::new();
    for &(plant, w) in planned.targets.iter().filter(|(_, w)| *w < n) {
        let ws = g.world.workspaces[w].clone();
        let aws = default_aws(&ws);
        let t = judged_time(g);
        let mut case = Case {
            rule: plant.rule().into(),
            provider: "aws".into(),
            workspace: ws.name.clone(),
            alias: String::new(),
            run: String::new(),
            description: String::new(),
            evidence: Vec::new(),
        };
        // Most cases are one odd exchange beside an ordinary run.
        let odd = |g: &mut Gen,
                   case: &mut Case,
                   phase: &'static str,
                   tweak: &dyn Fn(&mut records::Call)| {
            let (run, ip, apply_at) = usual_run(g, &ws, t);
            let at = if phase == "plan" { t } else { apply_at } + Duration::seconds(40);
            let mut c = call(&ws, &aws, phase, &run, at, &ip);
            tweak(&mut c);
            g.out.begin_case();
            exchange(&mut g.ids, &mut g.out, &c, "");
            case.evidence = g.out.end_case();
            case.run = run;
        };
        match plant {
            Plant::ExchangeWithoutIssuance => {
                case.description = "a token exchanged for a run HCP Terraform never issued".into();
                let run = g.ids.hcp("run");
                let c = call(&ws, &aws, "apply", &run, t, "198.51.100.23");
                g.out.begin_case();
                exchange(&mut g.ids, &mut g.out, &c, "");
                case.evidence = g.out.end_case();
                case.run = run;
            }
            Plant::ExchangeAfterExpiry => {
                case.description =
                    "the apply token exchanged three hours after it was issued".into();
                let (run, ip, apply_at) = usual_run(g, &ws, t);
                let c = call(
                    &ws,
                    &aws,
                    "apply",
                    &run,
                    apply_at + TOKEN_LIFETIME + Duration::hours(1),
                    &ip,
                );
                g.out.begin_case();
                exchange(&mut g.ids, &mut g.out, &c, "");
                case.evidence = g.out.end_case();
                case.run = run;
            }
            Plant::TokenOveruse => {
                case.description = "the plan token also exchanged from a second address".into();
                let second = g.ids.hcp_ip();
                odd(g, &mut case, "plan", &|c| c.ip = second.clone());
            }
            Plant::UnexpectedWorkspace => {
                let v = victim.expect("a victim workspace");
                let role = default_aws(&g.world.workspaces[v]).plan;
                case.description =
                    format!("the workspace assumed {role}, another workspace's role");
                odd(g, &mut case, "apply", &|c| c.principal = role.clone());
            }
            Plant::FirstSeenPrincipal => {
                let role = format!("arn:aws:iam::{}:role/{}-breakglass", aws.account, ws.name);
                case.description = format!("the workspace assumed {role} for the first time");
                odd(g, &mut case, "apply", &|c| c.principal = role.clone());
            }
            Plant::PlanTokenWritePrincipal => {
                case.description = "the plan token assumed the apply role".into();
                let apply = aws.apply.clone();
                odd(g, &mut case, "plan", &|c| c.principal = apply.clone());
            }
            Plant::AudienceMismatch => {
                case.description = "a token with a mistyped audience refused".into();
                odd(g, &mut case, "apply", &|c| {
                    c.audience = "aws.workload.identity.typo".into();
                    c.error = Some((
                        "InvalidIdentityToken".into(),
                        "Incorrect token audience".into(),
                    ));
                });
            }
            Plant::SessionDurationAbovePolicy => {
                case.description = "a twelve-hour AWS session".into();
                odd(g, &mut case, "apply", &|c| c.duration = Some(43_200));
            }
            Plant::UnexpectedClient => {
                case.description = "the run's token exchanged by the AWS CLI from a laptop".into();
                odd(g, &mut case, "apply", &|c| {
                    c.user_agent = "aws-cli/2.15.30 Python/3.11.8 Darwin/23.4.0 exe/x86_64 prompt/off command/sts.assume-role-with-web-identity".into();
                    c.ip = "198.51.100.77".into();
                });
            }
            Plant::AliasDefaultFallback => {
                let alias = ws
                    .configs
                    .iter()
                    .find(|c| c.provider == Provider::Aws && !c.alias.is_empty())
                    .cloned()
                    .expect("prepared with an alias");
                case.alias = alias.alias.clone();
                case.description = format!(
                    "alias {} issued a token but its provider block used the default credentials",
                    alias.alias
                );
                let run = g.ids.hcp("run");
                let ip = g.ids.hcp_ip();
                for config in &ws.configs {
                    let fallback = config.alias == alias.alias && config.provider == Provider::Aws;
                    if fallback {
                        g.out.begin_case();
                    }
                    let jti = issue(&mut g.ids, &mut g.out, &ws, config, "apply", &run, t);
                    if fallback {
                        case.evidence = g.out.end_case();
                        continue;
                    }
                    let c = call(&ws, config, "apply", &run, t + Duration::seconds(6), &ip);
                    exchange(&mut g.ids, &mut g.out, &c, &jti);
                }
                case.run = run;
            }
            Plant::FailureSpike => {
                let renamed = Workspace {
                    name: format!("{}-v2", ws.name),
                    ..ws.clone()
                };
                case.workspace = renamed.name.clone();
                case.description =
                    "the workspace was renamed; its trust policy still names the old name".into();
                // Three runs, each retrying ten times, across a 20-minute boundary: 20 failures
                // before it and 10 after, so only a sliding window counts the 30 together.
                let bucket = t.timestamp() - t.timestamp().rem_euclid(1200);
                let t0 = DateTime::from_timestamp(bucket + 1200 - 540, 0).unwrap_or(t);
                g.out.begin_case();
                for r in 0..3 {
                    let run = g.ids.hcp("run");
                    let ip = g.ids.hcp_ip();
                    let at = t0 + Duration::minutes(5 * r);
                    let jti = issue(&mut g.ids, &mut g.out, &renamed, &aws, "plan", &run, at);
                    for i in 0..10 {
                        let mut c = call(
                            &renamed,
                            &aws,
                            "plan",
                            &run,
                            at + Duration::seconds(5 + 25 * i),
                            &ip,
                        );
                        c.error = Some((
                            "AccessDenied".into(),
                            "Not authorized to perform sts:AssumeRoleWithWebIdentity".into(),
                        ));
                        exchange(&mut g.ids, &mut g.out, &c, &jti);
                    }
                }
                case.evidence = g.out.end_case();
            }
            Plant::TrustRootChange => {
                // The role is the workspace's default apply role: the change is the workspace's.
                case.alias = aws.alias.clone();
                case.description = format!(
                    "the trust policy of {} widened to the whole organization",
                    aws.apply
                );
                let policy = serde_json::json!({"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Federated": format!("arn:aws:iam::{}:oidc-provider/app.terraform.io", aws.account)},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {"StringEquals": {"app.terraform.io:aud": "aws.workload.identity"},
                                  "StringLike": {"app.terraform.io:sub": format!("organization:{}:*", ws.org)}}}]});
                let (id, r) = records::cloudtrail_trust_change(&mut g.ids, t, &aws.apply, &policy);
                g.out.begin_case();
                g.out.event("cloudtrail.ndjson", id, &r);
                case.evidence = g.out.end_case();
            }
            Plant::CredentialVariableChange => {
                case.provider = "hcp".into();
                case.description = "the apply role variable pointed at another role".into();
                let (id, r) = records::audit_variable(
                    &mut g.ids,
                    t,
                    &ws,
                    "update",
                    "TFC_AWS_APPLY_ROLE_ARN",
                    &format!(
                        "arn:aws:iam::{}:role/OrganizationAccountAccessRole",
                        aws.account
                    ),
                    "ci-token",
                );
                g.out.begin_case();
                g.out.event("audit_trail.json", id, &r);
                case.evidence = g.out.end_case();
            }
            Plant::CrossAccountAlias => {
                let alias = ws
                    .configs
                    .iter()
                    .find(|c| c.provider == Provider::Aws && !c.alias.is_empty())
                    .expect("prepared with an alias");
                case.alias = alias.alias.clone();
                case.description = format!(
                    "alias {}'s role is in account {}, which it may not reach",
                    alias.alias, alias.account
                );
                case.evidence = planned.collected(w, Provider::Aws, &alias.alias);
            }
            Plant::WorkspaceRenameDrift => {
                case.provider = "hcp".into();
                case.description =
                    "the workspace was deleted and created again under the same name".into();
                let new_id = g.ids.hcp("ws");
                let run = g.ids.hcp("run");
                let ip = g.ids.hcp_ip();
                g.out.begin_case();
                for config in &ws.configs {
                    let (jti, r) = records::issuance(
                        &mut g.ids,
                        &Token {
                            ws: &ws,
                            config,
                            phase: "plan",
                            run: &run,
                            iat: t,
                            exp: t + TOKEN_LIFETIME,
                            workspace_id: new_id.clone(),
                        },
                    );
                    g.out.event("issuance.ndjson", jti.clone(), &r);
                    let c = call(&ws, config, "plan", &run, t + Duration::seconds(6), &ip);
                    exchange(&mut g.ids, &mut g.out, &c, &jti);
                }
                case.evidence = g.out.end_case();
                case.run = run;
            }
            Plant::ModuleTestTokenMisuse => {
                case.workspace = String::new();
                case.description = format!("a module test token assumed {}", aws.plan);
                let run = g.ids.hcp("trun");
                g.out.begin_case();
                let (jti, r) = records::module_test_issuance(&mut g.ids, &ws, "iam", &run, t);
                g.out.event("issuance.ndjson", jti.clone(), &r);
                let mut c = call(
                    &ws,
                    &aws,
                    "plan",
                    &run,
                    t + Duration::seconds(4),
                    &g.ids.hcp_ip(),
                );
                c.sub = format!("organization:{}:module:iam:operation:test_run", ws.org);
                exchange(&mut g.ids, &mut g.out, &c, &jti);
                case.evidence = g.out.end_case();
            }
            Plant::TrustPolicyTooBroad => {
                // The trust policy file is written with the estate; only the case is told here.
                case.workspace = String::new();
                case.description = format!(
                    "the trust policy of {} accepts any workspace of {}",
                    aws.apply, ws.org
                );
            }
            Plant::CoverageGap => {
                case.provider = "azure".into();
                case.description = "the workspace's Azure sign-ins are not collected".into();
                case.evidence = planned.collected(w, Provider::Azure, "");
            }
        }
        cases.push(case);
    }
    cases.sort_by(|a, b| a.rule.cmp(&b.rule));
    cases
}
