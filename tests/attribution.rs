//! Alias attribution end to end on a real ClickHouse: the inventory imported from saved HCP
//! Terraform API responses, then one mixed stream holding every fixture record of every format,
//! replayed with formats detected per record. Each exchange must carry the right alias, each
//! unattributable one its reason; the inventory must answer "what was configured then".

mod support;

use serde_json::Value;
use std::io::Read;
use support::{ClickHouse, fixtures, repo_root, walk};

/// Every record of every format fixture, one per line, in a fixed interleaved order.
fn mixed_stream() -> String {
    let mut per_file: Vec<Vec<String>> = Vec::new();
    let mut paths: Vec<_> = walk(&fixtures());
    paths.sort();
    for path in paths {
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .unwrap();
            bytes = out;
        }
        let text = String::from_utf8(bytes).unwrap();
        let records: Vec<String> = match serde_json::from_str::<Value>(&text) {
            Ok(Value::Array(items)) => items.iter().map(Value::to_string).collect(),
            Ok(doc) => match ["Records", "records", "data"]
                .iter()
                .find_map(|k| doc[*k].as_array())
            {
                Some(items) => items.iter().map(Value::to_string).collect(),
                None => vec![doc.to_string()],
            },
            Err(_) => text.lines().map(str::to_owned).collect(),
        };
        per_file.push(records);
    }
    // Round-robin across files so formats interleave.
    let mut out = String::new();
    let longest = per_file.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for records in &per_file {
            if let Some(r) = records.get(i) {
                out.push_str(r);
                out.push('\n');
            }
        }
    }
    out
}

fn write_mixed_stream(dir: &std::path::Path) -> std::path::PathBuf {
    let stream = dir.join("mixed.ndjson");
    std::fs::write(&stream, mixed_stream()).unwrap();
    stream
}

/// `credtrail inventory import` of the saved API responses, valid from 2024-01-01; its output.
fn import_api_inventory(ch: &ClickHouse) -> String {
    let inventory = repo_root().join("tests/inventory");
    let files: Vec<String> = ["workspaces", "vars_network-prod", "vars_network", "varsets"]
        .iter()
        .map(|f| inventory.join(format!("{f}.json")).display().to_string())
        .collect();
    let mut args = vec![
        "inventory",
        "import",
        "--valid-from",
        "2024-01-01T00:00:00Z",
    ];
    args.extend(files.iter().map(String::as_str));
    ch.credtrail_ok(&args)
}

/// (source event id, alias, how) for every attributable event of the fixtures.
const EXPECTED: &[(&str, &str, &str)] = &[
    // CloudTrail, network-prod: default plan/apply roles, and the PROD alias' own role and audience.
    ("5b1c7e20-0a9d-4f3e-8c61-3e5d2f9a7b00", "", "matched"),
    ("5b1c7e20-0a9d-4f3e-8c61-3e5d2f9a7b07", "", "matched"),
    ("8d6f1c62-6d3a-4c8e-9a31-1f0b8e7c2a01", "", "matched"),
    ("8d6f1c62-6d3a-4c8e-9a31-1f0b8e7c2a02", "PROD", "matched"),
    ("8d6f1c62-6d3a-4c8e-9a31-1f0b8e7c2a03", "", "matched"),
    ("8d6f1c62-6d3a-4c8e-9a31-1f0b8e7c2a04", "PROD", "matched"),
    // Entra: no subject on successes, but the client id is the ARM alias' alone.
    ("5f6a1a4e-3c2b-4d7e-9d3a-0b1c2d3e4f50", "ARM", "principal"),
    ("9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a", "ARM", "principal"),
    ("a1b2c3d4-0000-4000-8000-000000700024", "ARM", "principal"),
    // `Network` is not `network`: the case-mismatched subject of AADSTS700213.
    (
        "a1b2c3d4-0000-4000-8000-000000700213",
        "",
        "unknown_workspace",
    ),
    // The right client id with a typo'd audience fits no configuration.
    ("b7a6c5d4-0000-4000-8000-000000700212", "", "no_match"),
    // GCP: STS by the pool provider, impersonation by the service account.
    ("1kq3vbxe2a8r", "", "audience"),
    ("7hb2ute1c9xq", "", "principal"),
    ("ps-1", "", "audience"),
    ("f1-attr-cond", "", "unknown_workspace"),
    ("f2-audience", "", "no_match"),
    // A plan token impersonating the apply service account.
    ("f3-impersonation-denied", "", "no_match"),
    ("f4-minimal", "", "no_evidence"),
    // Vault: the SECRETS alias' role, its renewal and revocation; the project set's default.
    (
        "8f1d2c3b-4a59-4687-9a8b-c1d2e3f4a5b6",
        "SECRETS",
        "principal",
    ),
    ("0a1b2c3d-renew-0001", "SECRETS", "principal"),
    ("0a1b2c3d-revoke-0001", "SECRETS", "principal"),
    ("d4e5f6a7-min", "", "principal"),
    ("c3d4e5f6-fail-aud", "", "no_evidence"),
    // Issuance carries its own tag.
    ("0b3e1f4a-7c2d-4e5f-9a8b-1c2d3e4f5a02", "PROD", "issuance"),
    ("0b3e1f4a-7c2d-4e5f-9a8b-1c2d3e4f5a03", "", "issuance"),
];

#[test]
fn a_mixed_stream_is_attributed_against_the_inventory_of_its_time() {
    let ch = ClickHouse::start();
    ch.migrate();
    let out = import_api_inventory(&ch);
    assert!(
        out.contains("3 workspace(s), 7 configuration(s); 3 snapshot(s) written"),
        "{out}"
    );
    let again = import_api_inventory(&ch);
    assert!(
        again.contains("0 snapshot(s) written, 3 unchanged"),
        "{again}"
    );

    let dir = tempfile::tempdir().unwrap();
    let stream = write_mixed_stream(dir.path());
    let out = ch.credtrail_ok(&["replay", "--json", stream.to_str().unwrap()]);
    let summary: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["stored"], 45, "{summary}");
    assert_eq!(summary["dead_lettered"], 0, "{summary}");

    let got = ch.query(
        "SELECT source_event_id, alias_tag, alias_match FROM events FINAL ORDER BY source_event_id",
    );
    let got: std::collections::HashMap<&str, (&str, &str)> = got
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0], (f[1], f[2]))
        })
        .collect();
    for (id, alias, how) in EXPECTED {
        assert_eq!(got.get(id), Some(&(*alias, *how)), "event {id}");
    }
    let unattributed = ch.query(
        "SELECT alias_match, count() FROM events FINAL \
         WHERE event_kind IN ('exchange', 'session_renewal', 'session_end') AND alias_tag = '' \
         AND alias_match NOT IN ('matched', 'principal', 'audience') \
         GROUP BY alias_match ORDER BY alias_match",
    );
    println!("unattributable exchanges by reason:\n{unattributed}");
    assert_eq!(
        unattributed,
        "no_evidence\t2\nno_match\t3\nunknown_workspace\t2\n"
    );
    assert_eq!(
        ch.count("SELECT count() FROM events FINAL WHERE event_kind IN ('trust_change', 'config_change') AND alias_match != ''"),
        0,
        "changes are not attributed"
    );

    // A later declarative import adds allowed accounts; the July view is unchanged.
    let declared = repo_root().join("tests/inventory/declared.toml");
    ch.credtrail_ok(&[
        "inventory",
        "import",
        "--valid-from",
        "2024-08-01T00:00:00Z",
        declared.to_str().unwrap(),
    ]);
    let show = |at: &str| -> Vec<Value> {
        let out = ch.credtrail_ok(&[
            "inventory",
            "show",
            "network-prod",
            "--at",
            at,
            "--format",
            "json",
        ]);
        serde_json::from_str(&out).unwrap()
    };
    let july = show("2024-07-09T00:00:00Z");
    let august = show("2024-08-02T00:00:00Z");
    assert_eq!(july.len(), 2);
    assert_eq!(july[1]["alias"], "PROD");
    assert_eq!(july[1]["allowed_accounts"], serde_json::json!([]));
    assert_eq!(
        august[1]["allowed_accounts"],
        serde_json::json!(["444455556666"])
    );
    let before = ch.credtrail_ok(&["inventory", "show", "--at", "2023-12-31T00:00:00Z"]);
    assert!(before.contains("no configurations"), "{before}");
}

#[test]
fn an_inventory_imported_after_the_events_reattributes_them_without_double_counting() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = tempfile::tempdir().unwrap();
    let stream = write_mixed_stream(dir.path());
    ch.credtrail_ok(&["replay", stream.to_str().unwrap()]);
    assert_eq!(
        ch.count(
            "SELECT count() FROM events FINAL WHERE event_kind = 'exchange' AND alias_match != 'no_inventory'"
        ),
        0,
        "before any inventory every exchange says so"
    );

    let out = import_api_inventory(&ch);
    assert!(
        out.contains("re-attributed: 29 event(s) scanned, 29 changed"),
        "{out}"
    );

    let got = ch.query("SELECT source_event_id, alias_tag, alias_match FROM events FINAL");
    for (id, alias, how) in EXPECTED.iter().filter(|(_, _, how)| *how != "issuance") {
        assert!(
            got.lines().any(|l| l == format!("{id}\t{alias}\t{how}")),
            "event {id}: want {alias:?} {how:?}"
        );
    }
    assert_eq!(
        ch.count("SELECT count() FROM events FINAL"),
        45,
        "no event counted twice"
    );
    // Replaying the stream again stores nothing and keeps the new attribution.
    let again: Value = serde_json::from_str(
        ch.credtrail_ok(&["replay", "--json", stream.to_str().unwrap()])
            .trim(),
    )
    .unwrap();
    assert_eq!(again["stored"], 0);
    let out = ch.credtrail_ok(&["inventory", "reattribute"]);
    assert!(out.contains("29 event(s) scanned, 0 changed"), "{out}");
}
