//! Ordinary traffic: every workspace's runs, day after day. A run's plan phase (and, for most
//! runs, its apply phase) issues one token per configuration and exchanges it from one HCP
//! Terraform worker address; AWS sessions of long applies are re-exchanged every hour; a few
//! exchanges fail transiently and are retried; module tests use their own role; people edit
//! ordinary (non-credential) variables.

use crate::ids::Ids;
use crate::plant::Planned;
use crate::records::{self, AWS_UA, Call, GCP_UA, Token, VAULT_UA};
use crate::world::{Config, Provider, Workspace};
use crate::{Fact, Gen, Out};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rand::Rng;

/// A token's lifetime: the phase timeout (HCP Terraform's default, two hours).
pub const TOKEN_LIFETIME: Duration = Duration::hours(2);

/// Issues a token (writes its issuance record) and returns its `jti`.
pub fn issue(
    ids: &mut Ids,
    out: &mut Out,
    ws: &Workspace,
    config: &Config,
    phase: &str,
    run: &str,
    iat: DateTime<Utc>,
) -> String {
    let (jti, record) = records::issuance(
        ids,
        &Token {
            ws,
            config,
            phase,
            run,
            iat,
            exp: iat + TOKEN_LIFETIME,
            workspace_id: ws.id.clone(),
        },
    );
    out.event("issuance.ndjson", jti.clone(), &record);
    out.fact(Fact {
        id: jti.clone(),
        kind: "issuance".into(),
        provider: config.provider.as_str().into(),
        org: ws.org.clone(),
        workspace: ws.name.clone(),
        run: run.into(),
        phase: phase.into(),
        alias: config.alias.clone(),
        principal: String::new(),
        outcome: "issued".into(),
        jti: jti.clone(),
        session: String::new(),
        time: iat.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    jti
}

/// The fact of one exchange record of call `c` (`run` as the log names it).
fn fact(c: &Call, id: &str, run: &str, jti: &str, session: &str, time: DateTime<Utc>) -> Fact {
    Fact {
        id: id.into(),
        kind: "exchange".into(),
        provider: c.config.provider.as_str().into(),
        org: c.ws.org.clone(),
        // A module test's token names a module, not a workspace.
        workspace: if c.sub.contains(":workspace:") {
            c.ws.name.clone()
        } else {
            String::new()
        },
        run: run.into(),
        phase: c.phase.into(),
        alias: c.config.alias.clone(),
        principal: c.principal.clone(),
        outcome: if c.error.is_some() {
            "failure"
        } else {
            "success"
        }
        .into(),
        jti: jti.into(),
        session: session.into(),
        time: time.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// The exchange a run makes for `config` in `phase`, as it normally looks.
pub fn call<'a>(
    ws: &'a Workspace,
    config: &'a Config,
    phase: &'a str,
    run: &'a str,
    time: DateTime<Utc>,
    ip: &str,
) -> Call<'a> {
    Call {
        time,
        ws,
        config,
        sub: ws.sub(phase),
        phase,
        run,
        principal: if phase == "plan" {
            config.plan.clone()
        } else {
            config.apply.clone()
        },
        audience: config.audience.clone(),
        ip: ip.into(),
        user_agent: match config.provider {
            Provider::Aws => AWS_UA,
            Provider::Gcp => GCP_UA,
            Provider::Vault => VAULT_UA,
            Provider::Azure => "",
        }
        .into(),
        error: None,
        duration: None,
    }
}

/// Writes the records of one exchange (GCP: the STS step and, if it succeeded, the
/// impersonation; Vault: request and response lines).
pub fn exchange(ids: &mut Ids, out: &mut Out, c: &Call, jti: &str) {
    match c.config.provider {
        Provider::Aws => {
            let (id, r) = records::cloudtrail_exchange(ids, c);
            let key = r["responseElements"]["credentials"]["accessKeyId"]
                .as_str()
                .unwrap_or_default();
            out.fact(fact(c, &id, c.run, jti, key, c.time));
            out.event("cloudtrail.ndjson", id, &r);
        }
        Provider::Gcp => {
            let (id, r) = records::gcp_exchange_token(ids, c);
            out.fact(fact(c, &id, "", jti, "", c.time));
            out.event("gcp.ndjson", id, &r);
            if c.error.is_none() {
                let later = Call {
                    time: c.time + Duration::milliseconds(140),
                    ..c.clone()
                };
                let (id, r) = records::gcp_generate_access_token(ids, &later);
                out.fact(fact(c, &id, "", jti, "", later.time));
                out.event("gcp.ndjson", id, &r);
            }
        }
        Provider::Vault => {
            let (id, [request, response]) = records::vault_login(ids, c, jti);
            let run = if c.error.is_none() { c.run } else { "" };
            out.fact(fact(c, &id, run, jti, "", c.time));
            out.line("vault.log", &request);
            out.event("vault.log", id, &response);
        }
        Provider::Azure => {
            let (id, r) = records::entra_signin(ids, c);
            out.fact(fact(c, &id, "", jti, "", c.time));
            out.event("entra.json", id, &r);
        }
    }
}

/// A transient failure of this provider, retried a few seconds later.
fn transient(provider: Provider) -> (String, String) {
    match provider {
        Provider::Aws => (
            "IDPCommunicationError".into(),
            "Couldn't retrieve verification key from your identity provider".into(),
        ),
        Provider::Gcp => (
            "14".into(),
            "UNAVAILABLE: the service is currently unavailable".into(),
        ),
        Provider::Vault => ("".into(), "context deadline exceeded".into()),
        Provider::Azure => (
            "AADSTS50058".into(),
            "AADSTS50058: A silent sign-in request was sent but no user is signed in.".into(),
        ),
    }
}

/// One phase of a run: every configuration issues and exchanges.
#[allow(clippy::too_many_arguments)]
fn phase(
    g: &mut Gen,
    planned: &Planned,
    w: usize,
    ws: &Workspace,
    run: &str,
    name: &'static str,
    at: DateTime<Utc>,
    duration: Duration,
    ip: &str,
) {
    for config in &ws.configs {
        let judged = at >= g.judged_since;
        let planted = judged && planned.is_planted_config(w, config);
        if planted {
            g.out.begin_case();
        }
        let jti = issue(&mut g.ids, &mut g.out, ws, config, name, run, at);
        let silent = planned.is_silent(w, config.provider);
        if !silent {
            let mut t = at + Duration::milliseconds(g.ids.rng.random_range(1500..20_000));
            if g.ids.rng.random_bool(0.015) {
                let mut c = call(ws, config, name, run, t, ip);
                c.error = Some(transient(config.provider));
                exchange(&mut g.ids, &mut g.out, &c, &jti);
                t += Duration::seconds(g.ids.rng.random_range(2..10));
            }
            let c = call(ws, config, name, run, t, ip);
            exchange(&mut g.ids, &mut g.out, &c, &jti);
            // The AWS provider re-exchanges when its one-hour session runs out.
            if config.provider == Provider::Aws {
                let mut again = t + Duration::hours(1);
                while again < at + duration {
                    let c = call(ws, config, name, run, again, ip);
                    exchange(&mut g.ids, &mut g.out, &c, &jti);
                    again += Duration::hours(1);
                }
            }
        }
        if planted {
            let ids = g.out.end_case();
            planned.collect(w, config, ids);
        }
    }
}

/// One run of workspace `w` starting at `t0`.
fn run(g: &mut Gen, planned: &Planned, w: usize, t0: DateTime<Utc>) {
    let ws = g.world.workspaces[w].clone();
    let run = g.ids.hcp("run");
    let ip = g.ids.hcp_ip();
    let plan_for = Duration::seconds(g.ids.rng.random_range(30..300));
    phase(g, planned, w, &ws, &run, "plan", t0, plan_for, &ip);
    if g.ids.rng.random_bool(0.75) {
        let at = t0 + plan_for + Duration::seconds(g.ids.rng.random_range(10..1800));
        let apply_for = if g.ids.rng.random_bool(0.05) {
            Duration::minutes(g.ids.rng.random_range(65..115))
        } else {
            Duration::seconds(g.ids.rng.random_range(60..900))
        };
        phase(g, planned, w, &ws, &run, "apply", at, apply_for, &ip);
    }
}

/// A registry module's test run: its own token, its own role (not a workspace's).
fn module_test(g: &mut Gen, w: usize, at: DateTime<Utc>) {
    let ws = g.world.workspaces[w].clone();
    let Some(default) = ws.config(Provider::Aws, "") else {
        return;
    };
    let account = records::arn_account(&default.plan).to_owned();
    let run = g.ids.hcp("trun");
    let (jti, record) = records::module_test_issuance(&mut g.ids, &ws, "vpc", &run, at);
    g.out.event("issuance.ndjson", jti.clone(), &record);
    let tester = Config {
        plan: format!("arn:aws:iam::{account}:role/tfc-module-tests"),
        ..default.clone()
    };
    let ip = g.ids.hcp_ip();
    let mut c = call(&ws, &tester, "plan", &run, at + Duration::seconds(4), &ip);
    c.sub = format!("organization:{}:module:vpc:operation:test_run", ws.org);
    exchange(&mut g.ids, &mut g.out, &c, &jti);
}

const ORDINARY_VARIABLES: [(&str, &str); 5] = [
    ("TF_LOG", "INFO"),
    ("TF_CLI_ARGS_plan", "-parallelism=20"),
    ("AWS_REGION", "eu-west-1"),
    ("instance_type", "m7g.large"),
    ("replicas", "3"),
];

/// Every workspace's runs over every day, plus module tests and variable edits.
pub fn traffic(g: &mut Gen, runs_per_day: usize, planned: &Planned) {
    let days = (g.end - g.start).num_days();
    for day in 0..days {
        let day_start = g.start + Duration::days(day);
        for w in 0..g.world.workspaces.len() {
            let mut times: Vec<i64> = (0..runs_per_day)
                .map(|_| g.ids.rng.random_range(0..86_400 - 3 * 3600))
                .collect();
            times.sort_unstable();
            for s in times {
                run(g, planned, w, day_start + Duration::seconds(s));
            }
        }
        // Per organization: a few module tests and ordinary variable edits.
        let firsts: Vec<usize> = (0..g.world.workspaces.len())
            .filter(|&w| w == 0 || g.world.workspaces[w].org != g.world.workspaces[w - 1].org)
            .collect();
        for w in firsts {
            other_logs(g, w, day_start);
            for _ in 0..3 {
                let at = day_start + Duration::seconds(g.ids.rng.random_range(0..80_000));
                module_test(g, w, at);
            }
            for i in 0..5 {
                let target = w + g.ids.rng.random_range(0..runs_per_day.max(1)) % 3;
                let ws = g.world.workspaces[target.min(g.world.workspaces.len() - 1)].clone();
                let at = day_start + Duration::seconds(g.ids.rng.random_range(0..80_000));
                let (key, value) = ORDINARY_VARIABLES[i % ORDINARY_VARIABLES.len()];
                let (id, r) =
                    records::audit_variable(&mut g.ids, at, &ws, "update", key, value, "alice");
                g.out.event("audit_trail.json", id, &r);
            }
        }
    }
}

/// What an estate's logs hold besides HCP Terraform: Entra sign-ins of people, managed
/// identities and secrets, and trust-policy churn on roles for AWS services. None of it is an
/// exchange, and none of it may raise a finding.
fn other_logs(g: &mut Gen, w: usize, day_start: DateTime<Utc>) {
    use records::OtherSignIn::*;
    let ws = g.world.workspaces[w].clone();
    let tenant = ws
        .configs
        .iter()
        .find(|c| c.provider == Provider::Azure)
        .map_or_else(|| g.ids.uuid(), |c| c.account.clone());
    for kind in [
        User,
        User,
        NonInteractiveUser,
        ManagedIdentity,
        ClientSecret,
        ExpiredSecret,
    ] {
        let at = day_start + Duration::seconds(g.ids.rng.random_range(0..86_000));
        let record = records::entra_other_signin(&mut g.ids, at, &tenant, kind);
        g.out.line("entra.json", &record);
    }
    if let Some(account) = ws
        .configs
        .iter()
        .find(|c| c.provider == Provider::Aws)
        .map(|c| c.account.clone())
    {
        for service in [
            "lambda.amazonaws.com",
            "ec2.amazonaws.com",
            "backup.amazonaws.com",
        ] {
            let at = day_start + Duration::seconds(g.ids.rng.random_range(0..86_000));
            let (id, r) =
                records::cloudtrail_service_role_change(&mut g.ids, at, &account, service);
            g.out.event("cloudtrail.ndjson", id, &r);
        }
    }
}
