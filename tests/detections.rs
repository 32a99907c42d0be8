//! Every detection rule against its own test events on a real ClickHouse: each positive case
//! produces exactly the expected findings (workspace, alias, run), each negative case none, and a
//! second evaluation of the same window changes nothing (deterministic finding ids). The rules'
//! SQL also runs on modern ClickHouse in `tests/modern_clickhouse.rs`.

mod support;

use credtrail_query::detect;
use serde_json::Value;
use support::{ClickHouse, repo_root};

/// `credtrail detect --no-settle` over the fixtures' day for one rule.
fn detect_day(ch: &ClickHouse, rule: &str) -> String {
    ch.detect("2024-07-09T00:00:00Z", "2024-07-10T00:00:00Z", Some(rule))
}

#[test]
fn every_rule_finds_its_positives_and_nothing_in_its_negatives() {
    let ch = ClickHouse::start();
    let rules = detect::rules().unwrap();
    // CREDTRAIL_RULES=a,b narrows the run while writing a rule.
    let only = std::env::var("CREDTRAIL_RULES").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    let mut checked = 0;
    for rule in &rules {
        if !only.is_empty() && !only.contains(&rule.id.as_str()) {
            continue;
        }
        let dir = repo_root().join("query/rules").join(&rule.id);
        for case in &rule.tests {
            ch.reset();
            ch.load_rule_case(&dir, case);
            let since = case.window[0].to_rfc3339();
            let until = case.window[1].to_rfc3339();
            let first = ch.detect(&since, &until, Some(&rule.id));
            let found = findings_json(&ch, &rule.id);
            let mut got: Vec<(String, String, String)> = found
                .iter()
                .map(|f| {
                    (
                        f["workspace"].as_str().unwrap().to_owned(),
                        f["alias"].as_str().unwrap().to_owned(),
                        f["run_id"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            let want = support::expected_findings(case);
            got.sort();
            assert_eq!(got, want, "{} / {}: {first}{found:#?}", rule.id, case.name);
            for f in &found {
                assert_eq!(f["rule"], rule.id.as_str());
                assert_eq!(f["severity"], rule.severity.as_str());
                assert_eq!(f["status"], "open");
                assert!(!f["evidence"].as_array().unwrap().is_empty(), "{f}");
                assert!(!f["summary"].as_str().unwrap().is_empty(), "{f}");
            }
            // The same window again: the same findings, none new, none twice.
            let again = ch.detect(&since, &until, Some(&rule.id));
            assert!(
                again.contains(&format!("{} finding(s), 0 new", want.len())),
                "{again}"
            );
            let stored = ch.count(&format!(
                "SELECT count() FROM findings FINAL WHERE rule_id = '{}'",
                rule.id
            ));
            assert_eq!(
                stored as usize,
                want.len(),
                "{}: findings stored once",
                rule.id
            );
            println!(
                "rule {} / {}: {} finding(s) as expected",
                rule.id,
                case.name,
                want.len()
            );
            checked += 1;
        }
    }
    if only.is_empty() {
        assert!(checked >= 2 * rules.len());
    }
}

/// Every stored finding of a rule, as `credtrail findings --format json` lists them.
fn findings_json(ch: &ClickHouse, rule: &str) -> Vec<Value> {
    let out = ch.credtrail_ok(&[
        "findings",
        "--since",
        "2000-01-01T00:00:00Z",
        "--rule",
        rule,
        "--format",
        "json",
    ]);
    serde_json::from_str(&out).unwrap()
}

/// Every stored finding of a rule: (id, workspace, alias), sorted.
fn stored_findings(ch: &ClickHouse, rule: &str) -> Vec<(String, String, String)> {
    let mut got: Vec<(String, String, String)> = findings_json(ch, rule)
        .iter()
        .map(|f| {
            let field = |k: &str| f[k].as_str().unwrap().to_owned();
            (field("finding_id"), field("workspace"), field("alias"))
        })
        .collect();
    got.sort();
    got
}

/// Findings do not depend on how time is cut: for every rule's positive cases, one `detect` over
/// a month and more, and passes cut at odd points (thirty days back, the day's start, through the
/// bursts of the morning, the day's end) store the same findings, with the same ids. A rule with
/// a baseline judges each event against its own trailing baseline, and a count over a sliding
/// window counts a burst whole wherever a cut falls.
#[test]
fn findings_do_not_depend_on_how_time_is_cut() {
    let ch = ClickHouse::start();
    let only = std::env::var("CREDTRAIL_RULES").unwrap_or_default();
    let only: Vec<&str> = only.split(',').filter(|s| !s.is_empty()).collect();
    let mut checked = 0;
    for rule in &detect::rules().unwrap() {
        if !only.is_empty() && !only.contains(&rule.id.as_str()) {
            continue;
        }
        let dir = repo_root().join("query/rules").join(&rule.id);
        for case in rule.tests.iter().filter(|c| !c.expect.is_empty()) {
            ch.reset();
            ch.load_rule_case(&dir, case);
            let [w0, w1] = case.window;
            let day = chrono::Duration::days(1);
            let at = |d: chrono::Duration| w0 + d;
            let span = [w0 - day * 31, w1 + day];
            let cuts = [
                w0 - day * 31,
                w0 - day * 30,
                w0,
                at(chrono::Duration::seconds(10 * 3600 + 7 * 60 + 13)),
                at(chrono::Duration::seconds(10 * 3600 + 14 * 60)),
                w1,
                w1 + day,
            ];
            let passes = |bounds: &[chrono::DateTime<chrono::Utc>]| {
                ch.query("TRUNCATE TABLE findings");
                for w in bounds.windows(2) {
                    ch.detect(&w[0].to_rfc3339(), &w[1].to_rfc3339(), Some(&rule.id));
                }
                stored_findings(&ch, &rule.id)
            };
            let whole = passes(&span);
            let cut = passes(&cuts);
            assert_eq!(
                whole, cut,
                "{} / {}: one pass vs cut passes",
                rule.id, case.name
            );
            for want in support::expected_findings(case) {
                assert!(
                    whole
                        .iter()
                        .any(|(_, ws, alias)| (ws, alias) == (&want.0, &want.1)),
                    "{} / {}: {want:?} not found over the whole span: {whole:?}",
                    rule.id,
                    case.name
                );
            }
            checked += 1;
        }
    }
    println!("{checked} positive case(s) give the same findings however time is cut");
    assert!(checked > 0);
}

#[test]
fn suppressions_mark_findings_until_they_expire() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = repo_root().join("query/rules/unexpected-client");
    ch.credtrail_ok(&["replay", dir.join("scripted.ndjson").to_str().unwrap()]);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("suppressions.toml");
    let detect = |file: &std::path::Path| {
        let out = ch.credtrail_with(
            &[
                "detect",
                "--since",
                "2024-07-09T00:00:00Z",
                "--until",
                "2024-07-10T00:00:00Z",
                "--rule",
                "unexpected-client",
            ],
            &[("CREDTRAIL_DETECT_SUPPRESSIONS_FILE", file.to_str().unwrap())],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let statuses = || {
        ch.query("SELECT status, status_reason FROM findings FINAL ORDER BY status, status_reason")
    };
    std::fs::write(
        &file,
        "[[suppress]]\nrule = \"unexpected-client\"\nworkspace = \"network-*\"\n\
         principal = \"arn:aws:iam::111122223333:role/tfc-network-prod-*\"\n\
         reason = \"break-glass drill SEC-42\"\nexpires = \"2099-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    let out = detect(&file);
    assert!(out.contains("2 finding(s), 2 new, 2 suppressed"), "{out}");
    assert_eq!(
        statuses(),
        "suppressed\tbreak-glass drill SEC-42 (until 2099-01-01T00:00:00+00:00)\n".repeat(2)
    );
    // Expired: the same findings are open again, not new ones.
    std::fs::write(
        &file,
        "[[suppress]]\nrule = \"*\"\nreason = \"old\"\nexpires = \"2020-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    let out = detect(&file);
    assert!(out.contains("2 finding(s), 0 new, 0 suppressed"), "{out}");
    assert_eq!(statuses(), "open\t\n".repeat(2));
}

#[test]
fn resolved_findings_stay_resolved_until_later_evidence_reopens_them() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = repo_root().join("query/rules/token-overuse");
    let burst = dir.join("burst.ndjson");
    ch.credtrail_ok(&["replay", burst.to_str().unwrap()]);
    let detect = || detect_day(&ch, "token-overuse");
    let out = detect();
    assert!(out.contains("1 finding(s), 1 new"), "{out}");
    let id = ch.query("SELECT finding_id FROM findings FINAL");
    let id = id.trim();
    let out = ch.credtrail_ok(&["findings", "resolve", id, "--reason", "drill INC-7"]);
    assert_eq!(out.trim(), format!("{id} resolved"));
    let unknown = ch.credtrail(&["findings", "resolve", "feedface", "--reason", "x"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no finding with id feedface"));

    // The same evidence judged again: still resolved, one finding.
    detect();
    let status = || ch.query("SELECT status, status_reason FROM findings FINAL");
    assert_eq!(status(), "resolved\tdrill INC-7\n");

    // One more exchange of the same run phase, later than anything resolved: open again.
    let text = std::fs::read_to_string(&burst).unwrap();
    let mut late: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    late["eventID"] = "9e0c3a11-late-4000-8000-000000000001".into();
    late["eventTime"] = "2024-07-09T10:30:00Z".into();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("late.ndjson");
    std::fs::write(&file, format!("{late}\n")).unwrap();
    ch.credtrail_ok(&["replay", file.to_str().unwrap()]);
    detect();
    assert_eq!(
        status(),
        format!("open\t{}\n", detect::engine::REOPENED),
        "later evidence reopens"
    );
    let evidence = ch.count("SELECT length(evidence) FROM findings FINAL");
    assert_eq!(
        evidence as usize,
        text.lines().count() + 1,
        "the evidence is merged, not replaced"
    );
    assert_eq!(ch.count("SELECT count() FROM findings FINAL"), 1);
    // Reopen/resolve by hand round-trips.
    ch.credtrail_ok(&["findings", "resolve", id, "--reason", "fixed"]);
    ch.credtrail_ok(&["findings", "reopen", id, "--reason", "not fixed"]);
    assert_eq!(status(), "open\tnot fixed\n");
}

#[test]
fn absence_rules_wait_until_the_missing_side_had_time_to_arrive() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = repo_root().join("query/rules/exchange-without-issuance");
    let rule = detect::rules()
        .unwrap()
        .into_iter()
        .find(|r| r.id == "exchange-without-issuance")
        .unwrap();
    let case = &rule.tests[0];
    assert!(!case.expect.is_empty());
    let files: Vec<String> = case
        .events
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    let mut args = vec!["replay"];
    args.extend(files.iter().map(String::as_str));
    ch.credtrail_ok(&args);
    let since = case.window[0].to_rfc3339();
    let until = case.window[1].to_rfc3339();
    let detect = |env: &[(&str, &str)]| {
        let out = ch.credtrail_with(
            &[
                "detect", "--since", &since, "--until", &until, "--rule", &rule.id,
            ],
            env,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Just arrived: the issuance may still be on its way.
    let out = detect(&[]);
    assert!(out.contains("0 finding(s)"), "{out}");
    // Once the settle time (here capped to 1 s) has passed, the exchange is judged.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = detect(&[("CREDTRAIL_DETECT_MAX_SETTLE_SECS", "1")]);
    assert!(
        out.contains(&format!("{} finding(s)", case.expect.len())),
        "{out}"
    );
}

#[test]
fn thousands_of_findings_at_once_are_stored_and_recognised_again() {
    let ch = ClickHouse::start();
    ch.migrate();
    let base = "2024-07-09T10:00:00Z".parse().unwrap();
    let mut body = String::new();
    let mut successes = 0;
    // Enough that their ids overflow one query's text (256 KiB) unless looked up in chunks.
    for i in 0..9000u64 {
        let mut r: Value =
            serde_json::from_str(&credtrail_ingest::sample::cloudtrail_exchange(5, i, base))
                .unwrap();
        if r.get("errorCode").is_some() {
            continue;
        }
        r["requestParameters"]["durationSeconds"] = 43_200.into();
        body.push_str(&r.to_string());
        body.push('\n');
        successes += 1;
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("long_sessions.ndjson");
    std::fs::write(&file, body).unwrap();
    ch.credtrail_ok(&["replay", file.to_str().unwrap()]);

    let first = detect_day(&ch, "session-duration-above-policy");
    assert!(
        first.contains(&format!("{successes} finding(s), {successes} new")),
        "{first}"
    );
    let again = detect_day(&ch, "session-duration-above-policy");
    assert!(
        again.contains(&format!("{successes} finding(s), 0 new")),
        "{again}"
    );
    assert_eq!(
        ch.count("SELECT count() FROM findings FINAL") as usize,
        successes
    );
}

#[test]
fn rules_expect_the_configuration_in_force_not_one_removed_since() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = repo_root().join("query/rules/alias-default-fallback");
    let declared = dir.join("inventory.toml");
    ch.credtrail_ok(&[
        "inventory",
        "import",
        "--no-reattribute",
        "--valid-from",
        "2000-01-01T00:00:00Z",
        declared.to_str().unwrap(),
    ]);
    // Before the run, the DNS alias was removed: only PROD (declared and issued) is expected.
    let text = std::fs::read_to_string(&declared).unwrap();
    let without_dns: String = text
        .lines()
        .filter(|l| !l.contains("_DNS"))
        .map(|l| format!("{l}\n"))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let later = tmp.path().join("without_dns.toml");
    std::fs::write(&later, without_dns).unwrap();
    ch.credtrail_ok(&[
        "inventory",
        "import",
        "--no-reattribute",
        "--valid-from",
        "2024-07-01T00:00:00Z",
        later.to_str().unwrap(),
    ]);
    let events: Vec<String> = ["issued.ndjson", "default_only.ndjson"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect();
    ch.credtrail_ok(&["replay", &events[0], &events[1]]);
    detect_day(&ch, "alias-default-fallback");
    assert_eq!(
        ch.query("SELECT alias_tag FROM findings FINAL ORDER BY alias_tag"),
        "PROD\n",
        "DNS is no longer declared"
    );
}
