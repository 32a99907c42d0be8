//! `credtrail emit` as an agent hook runs it: tokens in the environment and in files, a dry run,
//! a collector that is down (the records wait in the spool, the run is not failed), and the
//! next invocation delivering the spool into a real ClickHouse. The raw token must appear
//! nowhere: not in output, the spool, ClickHouse or the collector's log.

mod support;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{BIN, ClickHouse, Collector, free_port};

const AUTH: &str = "emit-test-collector-token";

/// A token as HCP Terraform mints it: header, claims, signature (the signature is random-looking
/// bytes so that each segment is distinctive to search for).
fn token(aud: &str, jti: &str, phase: &str) -> String {
    let claims = format!(
        r#"{{"jti":"{jti}","iss":"https://app.terraform.io","aud":"{aud}","sub":"organization:acme:project:Default Project:workspace:network:run_phase:{phase}","iat":1720540000,"nbf":1720539995,"exp":1720540300,"terraform_organization_id":"org-Lq8wE2rT5yU9iO1p","terraform_workspace_id":"ws-8nQ2mVx4Rk1Tz9Pa","terraform_run_id":"run-GxV9rT2mQe7Lk3Yb","terraform_run_phase":"{phase}"}}"#
    );
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"RS256","kid":"j-1"}"#),
        URL_SAFE_NO_PAD.encode(claims),
        URL_SAFE_NO_PAD.encode(Sha256::digest(jti.as_bytes()))
    )
}

fn fingerprint(token: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(token.as_bytes())))
}

/// The parts of a token that must never be seen: the whole, its claims and its signature.
fn assert_absent(what: &str, text: &str, tokens: &[&str]) {
    for t in tokens {
        let parts: Vec<&str> = t.split('.').collect();
        for needle in [*t, parts[1], parts[2]] {
            assert!(!text.contains(needle), "{what} holds (part of) a raw token");
        }
    }
}

fn emit(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("emit")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run credtrail emit")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn dry_run_prints_claims_and_fingerprints_and_never_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let vault = token("vault.workload.identity", "jti-vault-plan", "plan");
    let prod = token("aws.workload.identity.prod", "jti-aws-prod-plan", "plan");
    let staging = token("aws.workload.identity", "jti-aws-staging-plan", "plan");
    let staging_file = dir.path().join("staging-token");
    std::fs::write(&staging_file, &staging).unwrap();
    let file_arg = format!("aws:STAGING={}", staging_file.display());
    let out = emit(
        &["--dry-run", "--token-file", &file_arg],
        &[
            ("TFC_VAULT_PROVIDER_AUTH", "true"),
            ("TFC_VAULT_RUN_ROLE", "tfc-network"),
            ("TFC_AWS_PROVIDER_AUTH_PROD", "true"),
            (
                "TFC_AWS_RUN_ROLE_ARN_PROD",
                "arn:aws:iam::222222222222:role/tfc-prod",
            ),
            (
                "TFC_AWS_WORKLOAD_IDENTITY_AUDIENCE_PROD",
                "aws.workload.identity.prod",
            ),
            ("TFC_WORKLOAD_IDENTITY_TOKEN", &vault),
            ("TFC_WORKLOAD_IDENTITY_TOKEN_PROD", &prod),
            ("TFC_WORKLOAD_IDENTITY_TOKEN_BROKEN", "abc.def"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            (
                r["provider"].as_str().unwrap().to_owned(),
                r["alias_tag"].as_str().unwrap().to_owned(),
                r["claims"]["jti"].as_str().unwrap().to_owned(),
                r["token_fingerprint"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "vault".into(),
                "".into(),
                "jti-vault-plan".into(),
                fingerprint(&vault)
            ),
            (
                "aws".into(),
                "PROD".into(),
                "jti-aws-prod-plan".into(),
                fingerprint(&prod)
            ),
            (
                "aws".into(),
                "STAGING".into(),
                "jti-aws-staging-plan".into(),
                fingerprint(&staging)
            ),
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped env:TFC_WORKLOAD_IDENTITY_TOKEN_BROKEN")
            && stderr.contains(&fingerprint("abc.def")),
        "{stderr}"
    );
    assert_absent("emit output", &text(&out), &[&vault, &prod, &staging]);
    assert!(
        !text(&out).contains("abc.def"),
        "the broken token is not echoed"
    );
}

#[test]
fn a_down_collector_spools_and_the_next_run_delivers_without_leaking_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool/emit.ndjson");
    let spool_arg = spool.to_str().unwrap();
    let plan = token("aws.workload.identity", "jti-spooled-plan", "plan");
    let apply_tag = token("aws.workload.identity", "jti-spooled-apply-prod", "apply");
    let down = format!("http://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = emit(
        &[
            "--collector",
            &down,
            "--spool",
            spool_arg,
            "--deadline-secs",
            "3",
        ],
        &[
            ("TFC_AWS_PROVIDER_AUTH", "true"),
            ("TFC_AWS_RUN_ROLE_ARN", "arn:aws:iam::111111111111:role/tfc"),
            ("TFC_AWS_PROVIDER_AUTH_PROD", "true"),
            (
                "TFC_AWS_RUN_ROLE_ARN_PROD",
                "arn:aws:iam::222222222222:role/tfc-prod",
            ),
            ("TFC_WORKLOAD_IDENTITY_TOKEN", &plan),
            ("TFC_WORKLOAD_IDENTITY_TOKEN_PROD", &apply_tag),
            ("CREDTRAIL_EMIT_AUTH_TOKEN", AUTH),
        ],
    );
    let took = started.elapsed();
    assert!(out.status.success(), "never fails the run: {}", text(&out));
    assert!(took < Duration::from_secs(15), "emit took {took:?}");
    let spooled = std::fs::read_to_string(&spool).unwrap();
    assert_eq!(spooled.lines().count(), 2, "{spooled}");
    assert!(spooled.contains(&fingerprint(&plan)));
    assert_absent("the spool", &spooled, &[&plan, &apply_tag]);
    assert_absent("emit output", &text(&out), &[&plan, &apply_tag]);
    println!("collector down: emit exited 0 after {took:?}, 2 records spooled");

    // The collector is back; the next hook has no token of its own and sends the spool.
    let ch = ClickHouse::start();
    ch.migrate();
    let log_path = dir.path().join("collector.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let c = Collector::start_logging(
        &ch,
        &[
            ("CREDTRAIL_HTTP_AUTH_TOKENS", AUTH),
            ("CREDTRAIL_LOG", "debug"),
        ],
        Stdio::from(log),
    );
    let out = emit(
        &["--collector", &c.url, "--spool", spool_arg],
        &[("CREDTRAIL_EMIT_AUTH_TOKEN", AUTH)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("2 from the spool"), "{}", text(&out));
    assert!(!spool.exists(), "a delivered spool is removed");
    let rows = ch.query(
        "SELECT provider, alias_tag, jti, run_phase, token_fingerprint FROM events FINAL \
         WHERE event_kind = 'issuance' ORDER BY jti",
    );
    assert_eq!(
        rows,
        format!(
            "aws\tPROD\tjti-spooled-apply-prod\tapply\t{}\naws\t\tjti-spooled-plan\tplan\t{}\n",
            fingerprint(&apply_tag),
            fingerprint(&plan)
        )
    );
    let stored = ch.query(
        "SELECT raw FROM events UNION ALL SELECT raw FROM dead_letters \
         UNION ALL SELECT reason FROM dead_letters",
    );
    assert_absent("ClickHouse", &stored, &[&plan, &apply_tag]);
    drop(c);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_absent("the collector's log", &log, &[&plan, &apply_tag]);
    println!("delivered: 2 issuance rows, no token in output, spool, ClickHouse or logs");
}

/// A token signed by the test issuer's key (`tests/keys`).
fn signed(claims: &Value, kid: &str) -> String {
    let pem = std::fs::read(support::repo_root().join("tests/keys/test-issuer.pem")).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

#[test]
fn signatures_are_checked_against_the_issuer_keys_and_forgeries_flagged() {
    let claims = serde_json::json!({
        "jti": "jti-signed", "iss": "https://app.terraform.io", "aud": "aws.workload.identity",
        "sub": "organization:acme:project:Default Project:workspace:network:run_phase:plan",
        "iat": 1720540000, "exp": 1720540300, "terraform_run_id": "run-GxV9rT2mQe7Lk3Yb"
    });
    let good = signed(&claims, "test-key-1");
    // The same claims under a signature of other claims: a forgery.
    let mut other = claims.clone();
    other["sub"] = "organization:evil:project:p:workspace:w:run_phase:apply".into();
    let forged = {
        let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let evil: Vec<String> = signed(&other, "test-key-1")
            .split('.')
            .map(str::to_owned)
            .collect();
        format!("{}.{}.{}", parts[0], evil[1], parts[2])
    };
    let unknown_key = signed(&claims, "rotated-away");
    let jwks = support::repo_root().join("tests/keys/test-issuer.jwks.json");
    let out = emit(
        &["--dry-run", "--jwks-file", jwks.to_str().unwrap()],
        &[
            ("TFC_WORKLOAD_IDENTITY_TOKEN", &good),
            ("TFC_WORKLOAD_IDENTITY_TOKEN_FORGED", &forged),
            ("TFC_WORKLOAD_IDENTITY_TOKEN_OLD", &unknown_key),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<(&str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["alias_tag"].as_str().unwrap(),
                r["signature"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(verdicts[0], ("", "verified"));
    assert_eq!(verdicts[1].0, "FORGED");
    assert!(verdicts[1].1.starts_with("invalid:"), "{verdicts:?}");
    assert_eq!(verdicts[2].0, "OLD");
    assert!(verdicts[2].1.starts_with("unverifiable:"), "{verdicts:?}");
    assert_absent("emit output", &text(&out), &[&good, &forged, &unknown_key]);
}
