//! Prometheus, for real: the shipped scrape config and alert rules pass `promtool` (check and
//! unit tests); and a real Prometheus scraping `credtrail serve` fires the expected alerts when a
//! generated scenario with planted cases is sent to it, and none of the finding or exchange
//! alerts on ordinary traffic.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{ClickHouse, Collector, Prometheus, repo_root};

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(repo_root().join("deploy/prometheus"))
        .output()
        .expect("promtool (Debian package `prometheus`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

#[test]
fn shipped_config_and_rules_pass_promtool() {
    promtool(&["check", "config", "prometheus.yml"]);
    let checked = promtool(&["check", "rules", "rules/credtrail.yml"]);
    assert!(checked.contains("SUCCESS: 19 rules found"), "{checked}");
    let tested = promtool(&["test", "rules", "tests/credtrail.test.yml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every series the rules name is one credtrail exports (a typo would never fire).
    let rules =
        std::fs::read_to_string(repo_root().join("deploy/prometheus/rules/credtrail.yml")).unwrap();
    let names = support::assert_series_exported(&rules, "the alert rules");
    assert!(names >= 10, "{names} series");
}

/// How long `credtrail serve` lets absent evidence settle in these tests, in seconds.
const SETTLE_SECS: i64 = 12;

/// A scenario sent to `credtrail serve` while Prometheus scrapes it; returns the names of the
/// alerts firing once detection has judged everything, and the open findings Prometheus saw.
fn alerts_after(plant: bool, wanted: &[&str]) -> (BTreeSet<String>, f64) {
    let ch = ClickHouse::start();
    ch.migrate();
    let tmp = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--seed",
        "11",
        "--orgs",
        "1",
        "--workspaces",
        "20",
        "--runs-per-day",
        "6",
    ];
    if !plant {
        args.push("--benign");
    }
    ch.generate(tmp.path(), &args, "2000-01-01T00:00:00Z");
    let serve = Collector::serve(
        &ch,
        &[
            ("CREDTRAIL_HTTP_ALLOW_UNAUTHENTICATED", "true"),
            ("CREDTRAIL_DETECT_INTERVAL_SECS", "1"),
            ("CREDTRAIL_DETECT_FULL_INTERVAL_SECS", "1"),
            // Absent evidence is judged SETTLE_SECS after it arrived: longer than sending the
            // files takes on a loaded 2-core machine (an issuance judged before its exchange
            // arrived would be a false finding).
            ("CREDTRAIL_DETECT_MAX_SETTLE_SECS", &SETTLE_SECS.to_string()),
            ("CREDTRAIL_LOG", "warn"),
        ],
    );
    let target = serve.url.trim_start_matches("http://").to_owned();
    let rules = repo_root().join("deploy/prometheus/rules/credtrail.yml");
    let prom = Prometheus::start(&target, &[rules]);
    let value = |v: &Value| -> f64 { v["value"][1].as_str().unwrap().parse().unwrap() };
    // The counters' zero is scraped before anything happens, as in production.
    wait("first scrape", || {
        prom.query("credtrail_findings_total")
            .first()
            .is_some_and(|s| value(s) == 0.0)
    });

    for file in credtrail_scenario::Scenario::data_files(tmp.path()) {
        let body = std::fs::read(&file).unwrap();
        let (status, resp) = serve.post("auto", None, &body, true);
        assert_eq!(status, 200, "{}: {resp}", file.display());
    }
    let sent_at = chrono::Utc::now().timestamp();
    // Detection has judged every arrival, absent evidence included, once its watermark passed
    // the last post by the settling time; Prometheus scrapes and evaluates after that.
    wait("detection after the last event", || {
        prom.query("credtrail_detect_watermark_timestamp_seconds")
            .first()
            .is_some_and(|s| value(s) as i64 > sent_at + SETTLE_SECS + 2)
    });
    let firing = || -> BTreeSet<String> {
        prom.alerts()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| a["labels"]["alertname"].as_str().unwrap().to_owned())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = firing();
    while Instant::now() < deadline && !wanted.iter().all(|w| seen.contains(*w)) {
        std::thread::sleep(Duration::from_millis(500));
        seen = firing();
    }
    // A few more evaluations, so that what should stay quiet had its chance to fire.
    std::thread::sleep(Duration::from_secs(3));
    let open = prom
        .query("sum(credtrail_findings_open)")
        .first()
        .map(value)
        .unwrap_or(0.0);
    (firing(), open)
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn planted_cases_fire_their_alerts_through_a_real_prometheus() {
    let wanted = [
        "CredtrailCriticalFindingOpen",
        "CredtrailHighFindingOpen",
        "CredtrailTokenMisuse",
        "CredtrailPrivilegeDrift",
        "CredtrailTrustChange",
        "CredtrailConfigurationChange",
        "CredtrailCoverageGap",
        "CredtrailExchangeFailures",
        "CredtrailExchangeFailureSpike",
    ];
    let (firing, open) = alerts_after(true, &wanted);
    println!("firing: {firing:?}; open findings: {open}");
    for w in wanted {
        assert!(firing.contains(w), "{w} is not firing: {firing:?}");
    }
    assert!(open >= 10.0, "{open} open findings");
    assert!(!firing.contains("CredtrailDetectionStalled"));
}

#[test]
fn ordinary_traffic_fires_no_finding_or_exchange_alert() {
    let (firing, open) = alerts_after(false, &[]);
    println!("firing: {firing:?}; open findings: {open}");
    assert_eq!(open, 0.0);
    assert!(firing.is_empty(), "{firing:?}");
}
