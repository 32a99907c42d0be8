//! The forensic queries against the generator's ground truth: a scenario is generated, imported
//! and replayed into a real ClickHouse 18.16; `truth.ndjson` says what every ordinary issuance
//! and exchange is (run, phase, alias, principal, token, session). Each `credtrail query`
//! subcommand must answer exactly what the truth implies for a sample of runs, tokens,
//! sessions, principals, workspaces and aliases. Planted events (expected.json's evidence) are
//! set aside: the truth describes ordinary traffic only. The same SQL on modern ClickHouse is
//! `tests/modern_clickhouse.rs`'s business.

mod support;

use credtrail_scenario::Fact;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use support::ClickHouse;

/// (day, organization, provider, alias) -> (issued, exchanges, failures).
type Days = BTreeMap<(String, String, String, String), (u64, u64, u64)>;

struct Scenario {
    ch: ClickHouse,
    facts: Vec<Fact>,
    planted: HashSet<String>,
    _dir: tempfile::TempDir,
}

fn scenario() -> Scenario {
    let ch = ClickHouse::start();
    ch.migrate();
    let (dir, expected) = ch.judged_scenario(&[
        "--seed",
        "11",
        "--orgs",
        "2",
        "--workspaces",
        "14",
        "--runs-per-day",
        "12",
    ]);
    let facts = support::facts(dir.path());
    let planted = expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["evidence"].as_array().unwrap())
        .map(|e| e.as_str().unwrap().to_owned())
        .collect();
    assert!(facts.len() > 1000, "{} facts", facts.len());
    Scenario {
        ch,
        facts,
        planted,
        _dir: dir,
    }
}

impl Scenario {
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["query"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--format", "json"]);
        serde_json::from_str(&self.ch.credtrail_ok(&all)).unwrap()
    }

    /// The ids of `events` that are ordinary (not planted).
    fn ordinary(&self, events: &Value) -> BTreeSet<String> {
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["source_event_id"].as_str().unwrap().to_owned())
            .filter(|id| !self.planted.contains(id))
            .collect()
    }

    /// Picks `n` distinct values of `key` spread over the facts that pass `keep`.
    fn sample<'a>(
        &'a self,
        n: usize,
        keep: impl Fn(&Fact) -> bool,
        key: impl Fn(&'a Fact) -> &'a str,
    ) -> Vec<&'a str> {
        let all: BTreeSet<&str> = self.facts.iter().filter(|f| keep(f)).map(key).collect();
        let all: Vec<&str> = all.into_iter().collect();
        assert!(all.len() >= n, "only {} candidates", all.len());
        let step = all.len() / n;
        (0..n).map(|i| all[i * step]).collect()
    }
}

#[test]
fn every_query_answers_what_the_generator_meant() {
    let s = scenario();
    let mut checked = BTreeMap::new();

    // run: the run's issuance and the exchanges whose logs name it, phase and alias each.
    for run in s.sample(8, |f| f.kind == "issuance", |f| f.run.as_str()) {
        let report = s.json(&["run", run]);
        let want: BTreeMap<&str, (&str, &str)> = s
            .facts
            .iter()
            .filter(|f| f.run == run)
            .map(|f| (f.id.as_str(), (f.phase.as_str(), f.alias.as_str())))
            .collect();
        let got: BTreeMap<String, (String, String)> = report["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| !s.planted.contains(e["source_event_id"].as_str().unwrap()))
            .map(|e| {
                (
                    e["source_event_id"].as_str().unwrap().to_owned(),
                    (
                        e["phase"].as_str().unwrap().to_owned(),
                        e["alias"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect();
        let want: BTreeMap<String, (String, String)> = want
            .into_iter()
            .map(|(k, (p, a))| (k.to_owned(), (p.to_owned(), a.to_owned())))
            .collect();
        assert_eq!(got, want, "run {run}");
        assert!(!want.is_empty());
        *checked.entry("runs").or_insert(0) += 1;
    }

    // token: by jti, every exchange that presented it, whatever the provider.
    for provider in ["aws", "gcp", "vault", "azure"] {
        let jtis = s.sample(
            4,
            |f| f.kind == "issuance" && f.provider == provider,
            |f| f.jti.as_str(),
        );
        for jti in jtis {
            let report = s.json(&["token", jti]);
            let want: BTreeSet<String> = s
                .facts
                .iter()
                .filter(|f| f.kind == "exchange" && f.jti == jti)
                .map(|f| f.id.clone())
                .collect();
            assert_eq!(
                s.ordinary(&report["exchanges"]),
                want,
                "{provider} token {jti}"
            );
            assert_eq!(report["issued"].as_array().unwrap().len(), 1);
            // The same token by its fingerprint.
            let fingerprint = report["issued"][0]["token_fingerprint"].as_str().unwrap();
            assert!(fingerprint.starts_with("sha256:"));
            let again = s.json(&["token", fingerprint]);
            assert_eq!(again["exchanges"], report["exchanges"], "by fingerprint");
            *checked.entry("tokens").or_insert(0) += 1;
        }
    }

    // session: an AWS access key back to the exchange that created it, its run and alias.
    for key in s.sample(6, |f| !f.session.is_empty(), |f| f.session.as_str()) {
        let fact = s.facts.iter().find(|f| f.session == key).unwrap();
        let report = s.json(&["session", key]);
        let events = report["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "session {key}");
        let e = &events[0];
        assert_eq!(e["source_event_id"], fact.id.as_str());
        assert_eq!(e["run_id"], fact.run.as_str());
        assert_eq!(e["workspace"], fact.workspace.as_str());
        assert_eq!(e["phase"], fact.phase.as_str());
        assert_eq!(e["alias"], fact.alias.as_str());
        *checked.entry("sessions").or_insert(0) += 1;
    }

    // principal: which workspaces, runs and phases assumed an AWS role.
    for role in s.sample(
        4,
        |f| f.kind == "exchange" && f.provider == "aws",
        |f| f.principal.as_str(),
    ) {
        let uses = s.json(&["principal", role]);
        let got: BTreeSet<(String, String, String, u64)> = uses
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                (
                    u["workspace"].as_str().unwrap().to_owned(),
                    u["run_id"].as_str().unwrap().to_owned(),
                    u["phase"].as_str().unwrap().to_owned(),
                    u["exchanges"].as_u64().unwrap(),
                )
            })
            .collect();
        let mut want: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        for f in s
            .facts
            .iter()
            .filter(|f| f.kind == "exchange" && f.principal == role)
        {
            *want
                .entry((f.workspace.clone(), f.run.clone(), f.phase.clone()))
                .or_default() += 1;
        }
        let ordinary_runs: HashSet<String> = s
            .facts
            .iter()
            .filter(|f| f.principal == role)
            .map(|f| f.run.clone())
            .collect();
        // Planted cases may use the role in runs of their own; compare the ordinary runs.
        let got: BTreeSet<_> = got
            .into_iter()
            .filter(|(_, run, _, _)| ordinary_runs.contains(run))
            .collect();
        let want: BTreeSet<_> = want
            .into_iter()
            .map(|((w, r, p), n)| (w, r, p, n))
            .collect();
        assert_eq!(got, want, "principal {role}");
        *checked.entry("principals").or_insert(0) += 1;
    }

    // workspace: per day, provider and alias, tokens issued and exchanges (and failures).
    let planted_ws: HashSet<String> =
        s.ch.query(&format!(
            "SELECT DISTINCT workspace_name FROM events WHERE source_event_id IN ({})",
            s.planted
                .iter()
                .map(|p| format!("'{p}'"))
                .collect::<Vec<_>>()
                .join(",")
        ))
        .lines()
        .map(String::from)
        .collect();
    for ws in s.sample(
        2,
        |f| !planted_ws.contains(&f.workspace),
        |f| f.workspace.as_str(),
    ) {
        let report = s.json(&["workspace", ws]);
        let mut want: Days = BTreeMap::new();
        // Failed Vault logins do not name the workspace; Entra sign-ins take theirs from the
        // client id in the inventory.
        let named =
            |f: &&Fact| f.kind == "issuance" || !(f.provider == "vault" && f.outcome == "failure");
        for f in s.facts.iter().filter(|f| f.workspace == ws).filter(named) {
            let day = format!("{}T00:00:00Z", &f.time[..10]);
            let c = want
                .entry((day, f.org.clone(), f.provider.clone(), f.alias.clone()))
                .or_default();
            match f.kind.as_str() {
                "issuance" => c.0 += 1,
                _ => {
                    c.1 += 1;
                    c.2 += u64::from(f.outcome == "failure");
                }
            }
        }
        let got: Days = report["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    (
                        d["day"].as_str().unwrap().to_owned(),
                        d["organization"].as_str().unwrap().to_owned(),
                        d["provider"].as_str().unwrap().to_owned(),
                        d["alias"].as_str().unwrap().to_owned(),
                    ),
                    (
                        d["issued"].as_u64().unwrap(),
                        d["exchanges"].as_u64().unwrap(),
                        d["failures"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        assert_eq!(got, want, "workspace {ws}");
        *checked.entry("workspaces").or_insert(0) += 1;
    }

    // alias: what each tagged alias used, per phase, against the inventory.
    for ws in s.sample(
        2,
        |f| !f.alias.is_empty() && !planted_ws.contains(&f.workspace),
        |f| f.workspace.as_str(),
    ) {
        let tags: BTreeSet<&str> = s
            .facts
            .iter()
            .filter(|f| f.workspace == ws && !f.alias.is_empty())
            .map(|f| f.alias.as_str())
            .collect();
        for tag in tags {
            let report = s.json(&["alias", ws, tag]);
            let want: BTreeSet<(String, String, String)> = s
                .facts
                .iter()
                .filter(|f| f.workspace == ws && f.alias == tag && f.kind == "exchange")
                .map(|f| (f.provider.clone(), f.phase.clone(), f.principal.clone()))
                .collect();
            let used = report["used"].as_array().unwrap();
            let got: BTreeSet<(String, String, String)> = used
                .iter()
                .map(|u| {
                    (
                        u["provider"].as_str().unwrap().to_owned(),
                        u["phase"].as_str().unwrap().to_owned(),
                        u["principal"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            // GCP logs the workload identity provider on the STS step: only principals the
            // configuration names count as used principals here.
            let got: BTreeSet<_> = got.into_iter().filter(|(p, _, _)| p != "gcp").collect();
            let want: BTreeSet<_> = want.into_iter().filter(|(p, _, _)| p != "gcp").collect();
            assert_eq!(got, want, "alias {ws} {tag}");
            assert!(!report["configured"].as_array().unwrap().is_empty());
            for u in used.iter().filter(|u| u["provider"] != "gcp") {
                assert_eq!(u["as_configured"], true, "{u}");
            }
            *checked.entry("aliases").or_insert(0) += 1;
        }
    }
    println!("checked against the ground truth: {checked:?}");
}

#[test]
fn ad_hoc_sql_reads_and_refuses_writes() {
    let ch = ClickHouse::start();
    ch.migrate();
    ch.credtrail_ok(&["replay", support::fixtures().to_str().unwrap()]);
    let stored = ch.count("SELECT count() FROM events");
    assert!(stored > 0);
    let out = ch.credtrail_ok(&[
        "query",
        "sql",
        "SELECT provider, count() AS n FROM events GROUP BY provider ORDER BY provider",
        "--format",
        "json",
    ]);
    let rows: Vec<Value> = serde_json::from_str(&out).unwrap();
    let total: u64 = rows.iter().map(|r| r["n"].as_u64().unwrap()).sum();
    assert_eq!(total, stored);
    let csv = ch.credtrail_ok(&[
        "query",
        "sql",
        "SELECT 1 AS one, 'a,b' AS two",
        "--format",
        "csv",
    ]);
    assert_eq!(csv, "one,two\n1,\"a,b\"\n");

    for (statement, what) in [
        (
            "INSERT INTO events (source_event_id) VALUES ('forged')",
            "insert",
        ),
        ("DROP TABLE events", "drop"),
        ("ALTER TABLE events DELETE WHERE 1", "alter"),
        (
            "SELECT count() FROM events SETTINGS readonly = 0",
            "setting",
        ),
        ("TRUNCATE TABLE findings", "truncate"),
    ] {
        let out = ch.credtrail(&["query", "sql", statement]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(stderr.contains("refused"), "{what}: {stderr}");
    }
    assert_eq!(
        ch.count("SELECT count() FROM events"),
        stored,
        "nothing written"
    );

    let out = ch.credtrail(&[
        "query",
        "sql",
        "SELECT number FROM system.numbers LIMIT 50",
        "--limit",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 10 rows"));
    let out = ch.credtrail(&["query", "sql", "SELECT nonsense FROM events"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a bad statement is an error, not a refusal"
    );

    let empty = ch.credtrail_ok(&["query", "run", "run-doesnotexist"]);
    assert_eq!(
        empty,
        "no events for run run-doesnotexist in this time span\n"
    );
}
