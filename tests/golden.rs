//! Golden tests for every source format: each fixture file is posted to a real collector, which
//! stores into a real ClickHouse, and the stored rows (every column but `ingest_time`,
//! `dedup_key` and `raw`) must equal `tests/golden/<case>.json` exactly, as must the
//! collector's stored/ignored/dead-lettered counts per file.
//!
//! To review a change on purpose: `CREDTRAIL_BLESS=1 cargo test --test golden`, then read the
//! diff of `tests/golden/` before committing it.

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use support::{ClickHouse, Collector, fixtures, repo_root};

const TOKEN: &str = "golden-token";

/// One golden case: the files posted, the collector source they are posted as, and the
/// `events.source` whose rows are compared.
struct Case {
    name: &'static str,
    files: &'static [&'static str],
    post_as: &'static str,
    stored_source: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "gcp_audit",
        files: &[
            "gcp/exchange_token.json",
            "gcp/generate_access_token.json",
            "gcp/failures.ndjson",
            "gcp/pubsub_push.json",
        ],
        post_as: "gcp",
        stored_source: "gcp_audit",
    },
    Case {
        name: "entra_signin",
        files: &["entra/log_analytics.json", "entra/diagnostic_records.json"],
        post_as: "entra",
        stored_source: "entra_signin",
    },
    Case {
        name: "vault_audit",
        files: &["vault/audit.log"],
        post_as: "vault",
        stored_source: "vault_audit",
    },
    Case {
        name: "hcp_audit_trail",
        files: &["audit_trail/page_1.json"],
        post_as: "audit_trail",
        stored_source: "hcp_audit_trail",
    },
    Case {
        name: "cloudtrail",
        files: &[
            "cloudtrail/run_success_plan.json",
            "cloudtrail/run_apply_v1_11.json",
            "cloudtrail/failures.ndjson",
            "cloudtrail/trust_changes.ndjson",
        ],
        post_as: "cloudtrail",
        stored_source: "aws_cloudtrail",
    },
    Case {
        name: "hcp_issuance",
        files: &["issuance/run_tokens.ndjson", "issuance/module_test.json"],
        post_as: "issuance",
        stored_source: "hcp_issuance",
    },
];

/// Every stored column except the delivery-dependent ones; IPs as text so both generations agree.
const COLUMNS: &str = "event_kind, source, source_event_id, toString(event_time) AS event_time, \
     event_ms, provider, event_name, outcome, error_code, error_message, issuer, audience, subject, \
     token_type, org_name, project_name, workspace_name, run_phase, org_id, project_id, \
     workspace_id, run_id, jti, token_fingerprint, alias_tag, alias_match, region, target_account, \
     target_principal, session_name, session_id, toString(session_expiry) AS session_expiry, \
     duration_seconds, toString(token_issued_at) AS token_issued_at, \
     toString(token_expires_at) AS token_expires_at, IPv6NumToString(source_ip) AS source_ip, \
     user_agent, actor, variable_key, credential_id";

fn golden_path(name: &str) -> PathBuf {
    repo_root()
        .join("tests/golden")
        .join(format!("{name}.json"))
}

fn actual(ch: &ClickHouse, c: &Collector, case: &Case) -> Value {
    let mut posts = Vec::new();
    for file in case.files {
        let body = std::fs::read(fixtures().join(file)).unwrap();
        let (status, resp) = c.post(case.post_as, Some(TOKEN), &body, false);
        assert_eq!(status, 200, "{file}: {resp}");
        posts.push(json!({
            "file": file,
            "stored": resp["stored"],
            "ignored": resp["ignored"],
            "rejected": resp["rejected"],
        }));
    }
    let rows: Vec<Value> = ch
        .query_with(
            &format!(
                "SELECT {COLUMNS} FROM events FINAL WHERE source = '{}' \
                 ORDER BY source_event_id FORMAT JSONEachRow",
                case.stored_source
            ),
            "&output_format_json_quote_64bit_integers=0",
        )
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    json!({ "posts": posts, "rows": rows })
}

#[test]
fn every_format_normalizes_to_its_golden_rows() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(&ch, &[("CREDTRAIL_HTTP_AUTH_TOKENS", TOKEN)]);
    let bless = std::env::var_os("CREDTRAIL_BLESS").is_some();
    let mut mismatched = Vec::new();
    for case in CASES {
        let got = actual(&ch, &c, case);
        let path = golden_path(case.name);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let text = serde_json::to_string_pretty(&got).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let want: Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (bless to create)", path.display())),
        )
        .unwrap();
        if got != want {
            eprintln!(
                "golden mismatch for {}:\n--- want\n{}\n--- got\n{}",
                case.name,
                serde_json::to_string_pretty(&want).unwrap(),
                serde_json::to_string_pretty(&got).unwrap()
            );
            mismatched.push(case.name);
        }
        let rows = got["rows"].as_array().unwrap().len();
        println!("golden {}: {rows} rows match", case.name);
    }
    assert!(mismatched.is_empty(), "golden mismatches: {mismatched:?}");
    assert_no_secret_in_storage(&ch);
}

/// Values that the fixtures hold and that must never be stored: a variable's value from the
/// audit trail, and any JWT-shaped text.
fn assert_no_secret_in_storage(ch: &ClickHouse) {
    let leaks = ch.count(
        "SELECT count() FROM events WHERE position(raw, 'role/Attacker') > 0 \
         OR position(raw, 'role/TerraformProd') > 0 OR match(raw, 'eyJ[A-Za-z0-9_-]{8,}\\\\.')",
    );
    assert_eq!(leaks, 0, "a variable value or a token reached `raw`");
    let kept = ch.count(
        "SELECT count() FROM events WHERE source = 'vault_audit' \
         AND position(raw, 'hmac-sha256:0b8d5e4a') > 0",
    );
    assert!(
        kept > 0,
        "Vault's HMAC'd request data stays as it was logged"
    );
}
