//! The Grafana dashboards (`dashboards/grafana/`): their structure and provisioning, every
//! PromQL expression through `promtool`, and every ClickHouse panel and template variable query,
//! with the plugin's macros expanded, on a real ClickHouse 18.16 holding a replayed scenario.
//! The same panels on modern ClickHouse (chdb) are `tests/modern_clickhouse.rs`'s business.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use support::grafana::{self, Kind, Range};
use support::{ClickHouse, repo_root};

#[test]
fn dashboards_are_provisioned_and_templated() {
    let provisioning = std::fs::read_to_string(
        repo_root().join("dashboards/grafana/provisioning/datasources/credtrail.yaml"),
    )
    .unwrap();
    let files = grafana::dashboard_files();
    let uids: BTreeSet<String> = files
        .iter()
        .map(|f| grafana::load(f)["uid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        uids,
        [
            "credtrail-alias-health",
            "credtrail-findings",
            "credtrail-overview",
            "credtrail-pipeline"
        ]
        .map(String::from)
        .into(),
    );
    for file in &files {
        let d = grafana::load(file);
        let mut sources = BTreeSet::new();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let uid = t["datasource"]["uid"].as_str().unwrap();
                assert!(
                    provisioning.contains(&format!("uid: {uid}")),
                    "{uid} provisioned"
                );
                sources.insert(t["datasource"]["type"].as_str().unwrap().to_owned());
            }
        }
        let names: BTreeSet<String> = grafana::variables(&d).into_iter().map(|v| v.0).collect();
        if sources.contains("grafana-clickhouse-datasource") && d["uid"] != "credtrail-pipeline" {
            let want: BTreeSet<String> = ["organization", "workspace", "alias", "provider"]
                .map(String::from)
                .into();
            assert_eq!(names, want, "{}: template variables", file.display());
        }
    }
}

#[test]
fn every_prometheus_panel_passes_promtool_and_names_real_series() {
    let exprs: Vec<(String, String)> = grafana::panel_queries()
        .into_iter()
        .filter_map(|q| match q.kind {
            Kind::Prometheus(e) => Some((format!("{}: {}", q.dashboard, q.title), e)),
            Kind::ClickHouse(_) => None,
        })
        .collect();
    assert!(exprs.len() >= 8, "{} PromQL panels", exprs.len());
    // Each expression as a recording rule, so promtool parses and type-checks it.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard-panels\n    rules:\n");
    for (i, (_, e)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard:panel_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let file = dir.path().join("panels.yml");
    std::fs::write(&file, rules).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool (Debian package `prometheus`)");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{text}"
    );
    // A broken expression is caught (the check can fail).
    std::fs::write(
        &file,
        "groups:\n  - name: x\n    rules:\n      - record: x:y\n        expr: \"sum(rate(credtrail_events_stored_total[5m]\"\n",
    )
    .unwrap();
    assert!(
        !Command::new("promtool")
            .args(["check", "rules"])
            .arg(&file)
            .output()
            .unwrap()
            .status
            .success()
    );

    for (title, e) in &exprs {
        support::assert_series_exported(e, title);
    }
}

fn rows(ch: &ClickHouse, sql: &str) -> Vec<Value> {
    ch.query(&format!("{sql}\nFORMAT JSONEachRow"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_clickhouse_panel_runs_on_18_16_and_counts_right() {
    let ch = ClickHouse::start();
    ch.migrate();
    // A dead letter, for the pipeline dashboard.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "{not json\n").unwrap();
    ch.credtrail_ok(&["replay", bad.path().to_str().unwrap()]);
    let (_dir, expected) = ch.judged_scenario(&[
        "--seed",
        "9",
        "--orgs",
        "2",
        "--workspaces",
        "12",
        "--runs-per-day",
        "6",
    ]);
    let start = chrono::DateTime::parse_from_rfc3339(expected["start"].as_str().unwrap()).unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(expected["end"].as_str().unwrap()).unwrap();
    let range = Range {
        from: start.timestamp(),
        to: end.timestamp(),
        interval_s: 3600,
    };
    // Dead letters were received now, not in 2024: the pipeline dashboard looks at today.
    let now = chrono::Utc::now().timestamp();
    let today = Range {
        from: now - 3600,
        to: now + 60,
        interval_s: 60,
    };
    let mut ran = 0;
    for file in grafana::dashboard_files() {
        let d = grafana::load(&file);
        let uid = d["uid"].as_str().unwrap().to_owned();
        let range = if uid == "credtrail-pipeline" {
            today
        } else {
            range
        };
        let all = grafana::all_values(&d, range, |sql| grafana::variable_values(&ch, sql));
        if !all.is_empty() {
            assert!(
                all["organization"].len() >= 2 && all["workspace"].len() >= 12,
                "{all:?}"
            );
        }
        for q in grafana::panel_queries()
            .iter()
            .filter(|q| q.dashboard == uid)
        {
            let Kind::ClickHouse(sql) = &q.kind else {
                continue;
            };
            let sql = grafana::expand(sql, range, &all);
            let got = rows(&ch, &sql);
            assert!(!got.is_empty(), "{uid}: {} returns rows", q.title);
            ran += 1;
        }
    }
    assert!(ran >= 10, "{ran} ClickHouse panels");

    // The overview's totals are the stored events' (All selected).
    let d = grafana::load(&repo_root().join("dashboards/grafana/dashboards/overview.json"));
    let all = grafana::all_values(&d, range, |sql| grafana::variable_values(&ch, sql));
    let stat = grafana::panel_queries()
        .into_iter()
        .find(|q| q.title.starts_with("Tokens issued and exchanged"))
        .unwrap();
    let Kind::ClickHouse(sql) = stat.kind else {
        unreachable!()
    };
    let totals = &rows(&ch, &grafana::expand(&sql, range, &all))[0];
    let exchanges = ch.count(&format!(
        "SELECT count() FROM events FINAL WHERE event_kind = 'exchange' AND event_time >= toDateTime({}) AND event_time <= toDateTime({})",
        range.from, range.to
    ));
    assert_eq!(
        totals["exchanges"]
            .as_u64()
            .or_else(|| totals["exchanges"].as_str().map(|s| s.parse().unwrap())),
        Some(exchanges)
    );

    // One workspace selected: the top-workspaces panel lists only it.
    let one = all["workspace"]
        .iter()
        .find(|w| !w.is_empty())
        .unwrap()
        .clone();
    let mut vars: BTreeMap<String, Vec<String>> = all.clone();
    vars.insert("workspace".into(), vec![one.clone()]);
    let top = grafana::panel_queries()
        .into_iter()
        .find(|q| q.title.starts_with("Top workspaces"))
        .unwrap();
    let Kind::ClickHouse(sql) = top.kind else {
        unreachable!()
    };
    let listed: BTreeSet<String> = rows(&ch, &grafana::expand(&sql, range, &vars))
        .iter()
        .map(|r| r["workspace"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, BTreeSet::from([one]));
}
