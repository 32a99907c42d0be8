//! A generated scenario end to end: `credtrail generate` writes ordinary traffic of many
//! organizations, workspaces and runs with one case planted per rule; the inventory is imported,
//! the files are replayed into a real ClickHouse and every rule is evaluated over the judged day.
//! Every planted case must be found with its rule, workspace and alias (recall 1), and findings
//! that rest on ordinary traffic only must stay at or below 1 per 10,000 benign events. Findings
//! that another rule rightly makes of a planted case's events are reported as collateral.

mod support;

use serde_json::Value;
use std::collections::HashSet;
use support::ClickHouse;

/// Generates, imports, replays and detects; returns (expected.json, findings).
fn judged(ch: &ClickHouse, dir: &std::path::Path, sizes: &[&str]) -> (Value, Vec<Value>) {
    let mut args = vec!["--seed", "7", "--start", "2024-07-08T00:00:00Z"];
    args.extend_from_slice(sizes);
    let expected = ch.generate(dir, &args, "2000-01-01T00:00:00Z");
    ch.credtrail_files(&["replay"], &credtrail_scenario::Scenario::data_files(dir));
    let events = ch.count("SELECT count() FROM events FINAL");
    let generated =
        expected["benign_events"].as_u64().unwrap() + expected["planted_events"].as_u64().unwrap();
    assert_eq!(events, generated, "every generated event stored once");
    assert_eq!(ch.count("SELECT count() FROM dead_letters"), 0);
    let since = expected["judged_since"].as_str().unwrap();
    let until = expected["judged_until"].as_str().unwrap();
    println!(
        "{}",
        ch.credtrail_ok(&["detect", "--since", since, "--until", until, "--no-settle"])
    );
    let out = ch.credtrail_ok(&[
        "findings",
        "--since",
        "2000-01-01T00:00:00Z",
        "--format",
        "json",
        "--limit",
        "100000",
    ]);
    (expected, serde_json::from_str(&out).unwrap())
}

fn key(v: &Value, rule: &str, ws: &str, alias: &str) -> (String, String, String) {
    (
        v[rule].as_str().unwrap().to_owned(),
        v[ws].as_str().unwrap().to_owned(),
        v[alias].as_str().unwrap().to_owned(),
    )
}

#[test]
fn every_planted_case_is_found_and_benign_traffic_stays_quiet() {
    let ch = ClickHouse::start();
    ch.migrate();
    let tmp = tempfile::tempdir().unwrap();
    let sizes = ["--orgs", "4", "--workspaces", "40", "--runs-per-day", "40"];
    let (expected, findings) = judged(&ch, tmp.path(), &sizes);
    let benign = expected["benign_events"].as_u64().unwrap();
    assert!(benign >= 100_000, "{benign} benign events");
    let cases = expected["cases"].as_array().unwrap();
    let rules = credtrail_query::detect::rules().unwrap();
    let planted_rules: HashSet<&str> = cases.iter().map(|c| c["rule"].as_str().unwrap()).collect();
    let missing_plants: Vec<&str> = rules
        .iter()
        .map(|r| r.id.as_str())
        .filter(|id| !planted_rules.contains(id))
        .collect();
    println!("rules without a planted case: {missing_plants:?}");

    let planted_ids: HashSet<&str> = cases
        .iter()
        .flat_map(|c| c["evidence"].as_array().unwrap())
        .map(|e| e.as_str().unwrap())
        .collect();
    let found: HashSet<_> = findings
        .iter()
        .map(|f| key(f, "rule", "workspace", "alias"))
        .collect();
    let mut missed = Vec::new();
    for c in cases {
        let k = key(c, "rule", "workspace", "alias");
        if !found.contains(&k) {
            missed.push(format!("{k:?}: {}", c["description"]));
        }
    }
    let wanted: HashSet<_> = cases
        .iter()
        .map(|c| key(c, "rule", "workspace", "alias"))
        .collect();
    let mut true_positive = 0;
    let mut collateral = Vec::new();
    let mut false_findings = Vec::new();
    for f in &findings {
        let rests_on_plant = f["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| planted_ids.contains(e.as_str().unwrap()));
        if wanted.contains(&key(f, "rule", "workspace", "alias")) {
            true_positive += 1;
        } else if rests_on_plant {
            collateral.push(format!("{} {} {}", f["rule"], f["workspace"], f["summary"]));
        } else {
            false_findings.push(format!(
                "{} {} {} {}",
                f["rule"], f["workspace"], f["alias"], f["summary"]
            ));
        }
    }
    let recall = (cases.len() - missed.len()) as f64 / cases.len() as f64;
    let precision = true_positive as f64 / (true_positive + false_findings.len()).max(1) as f64;
    println!(
        "scenario: {benign} benign events, {} planted cases; {} findings: {true_positive} planted, \
         {} collateral (other rules on planted events), {} false",
        cases.len(),
        findings.len(),
        collateral.len(),
        false_findings.len()
    );
    println!("recall {recall:.3}, precision {precision:.3}");
    for c in &collateral {
        println!("  collateral: {c}");
    }
    for f in false_findings.iter().take(30) {
        println!("  false: {f}");
    }
    assert!(missed.is_empty(), "missed planted cases: {missed:#?}");
    assert!(
        false_findings.len() as u64 * 10_000 <= benign,
        "{} false findings over {benign} benign events",
        false_findings.len()
    );
}
