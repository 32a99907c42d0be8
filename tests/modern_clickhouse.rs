//! The same schema and SQL on both ClickHouse generations: data loaded into 18.16 through the
//! product is exported as RowBinary, loaded into modern ClickHouse (chdb) under the modern DDL,
//! and every shipped query must return the same rows on both; every rule's own test cases must
//! find the same, and what the case expects, on both.

mod support;

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use support::{ClickHouse, fixtures, repo_root};

/// The Python with chdb-core: `CREDTRAIL_CHDB_PYTHON`, else the venv tests/run.sh creates.
fn chdb_python() -> PathBuf {
    let p = std::env::var_os("CREDTRAIL_CHDB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "no Python with chdb-core at {}: run tests/run.sh (it creates .venv), or set CREDTRAIL_CHDB_PYTHON",
        p.display()
    );
    p
}

/// Substitutes `?` placeholders with SQL literals, in order, as the client's `bind` does.
fn shipped(name: &str) -> &'static str {
    credtrail_query::SHIPPED_SQL
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no shipped query {name}"))
        .1
}

const JTI: &str = "0b3e1f4a-7c2d-4e5f-9a8b-1c2d3e4f5a01";
const FINGERPRINT: &str = "sha256:92f1409849f82690a7e7585143a70c010bfa4176a31f93cb008f088078a76c2e";
const DNS_ROLE: &str = "arn:aws:iam::444455556666:role/tfc-network-prod-dns";

/// A lookup-based shipped query (`{kind}_…` by name) with its lookup prefix bound for `key`
/// over all of time, then `rest`.
fn located(kind: &str, key: &str, rest: &[&str]) -> String {
    let name = match kind {
        "run" => "run_events",
        "session" => "session_events",
        "jti" => "jti_events",
        "fingerprint" => "fingerprint_events",
        "principal" => "principal_use",
        _ if rest.len() == 2 => "workspace_days",
        _ => "alias_use",
    };
    let mut literals: Vec<String> = Vec::new();
    for _ in 0..3 {
        literals.push(format!("'{kind}'"));
        literals.push(format!("'{key}'"));
    }
    literals.push("0".into());
    literals.push("4294967295".into());
    literals.extend(rest.iter().map(|r| (*r).to_owned()));
    bind(shipped(name), &literals)
}

fn bind(sql: &str, literals: &[String]) -> String {
    let mut parts = sql.split('?');
    let mut out = parts.next().unwrap_or("").to_owned();
    for (part, lit) in parts.zip(literals.iter().chain(std::iter::repeat(&String::new()))) {
        out.push_str(lit);
        out.push_str(part);
    }
    assert_eq!(sql.matches('?').count(), literals.len(), "binds for {sql}");
    out
}

fn rows(ch: &ClickHouse, sql: &str) -> Vec<Value> {
    ch.query_with(
        &format!("{sql}\nFORMAT JSONEachRow"),
        "&output_format_json_quote_64bit_integers=0",
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

#[test]
fn modern_ddl_and_every_shipped_query_agree_with_18_16() {
    let python = chdb_python();
    let ch = ClickHouse::start();
    ch.migrate();
    let out = ch.credtrail_with(
        &["replay", fixtures().to_str().unwrap()],
        &[("CREDTRAIL_CLOUDTRAIL_SESSION_ACTIVITY", "true")],
    );
    assert!(out.status.success());
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(&bad, b"{oops\n{\"provider\":\"aws\",\"token\":\"x.y\"}\n").unwrap();
    ch.credtrail_ok(&["replay", bad.to_str().unwrap()]);
    // Trust policies of every provider, broad and tight, for the trust-policy rule.
    let trust_dir = repo_root().join("query/rules/trust-policy-too-broad");
    let mut trust: Vec<String> = std::fs::read_dir(&trust_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.display().to_string())
        .collect();
    trust.sort();
    let mut args = vec!["inventory", "trust", "--valid-from", "2024-01-01T00:00:00Z"];
    args.extend(trust.iter().map(String::as_str));
    ch.credtrail_ok(&args);
    // Findings from every rule over the fixtures' day, so the findings query has rows too.
    ch.credtrail_ok(&[
        "detect",
        "--since",
        "2024-07-09T00:00:00Z",
        "--until",
        "2024-07-10T00:00:00Z",
        "--no-settle",
    ]);
    let inventory = repo_root().join("tests/inventory");
    ch.credtrail_ok(&[
        "inventory",
        "import",
        // Re-attribution writes new row versions, which modern servers fold on load
        // (`optimize_on_insert`): raw row counts would differ for no reason.
        "--no-reattribute",
        "--valid-from",
        "2024-01-01T00:00:00Z",
        inventory.join("workspaces.json").to_str().unwrap(),
        inventory.join("vars_network.json").to_str().unwrap(),
        inventory.join("varsets.json").to_str().unwrap(),
    ]);

    // Shipped SQL with binds drawn from the data.
    // The sink sends a flush's keys as the external table `flush_keys`; here it is a table of
    // three stored keys and one that is not.
    ch.query(FLUSH_KEYS_DDL);
    ch.query("INSERT INTO flush_keys SELECT dedup_key FROM dedup_keys ORDER BY dedup_key LIMIT 3");
    ch.query("INSERT INTO flush_keys VALUES (42)");
    let ids = ch.query("SELECT finding_id FROM findings ORDER BY finding_id LIMIT 3");
    let mut finding_ids: Vec<String> = ids.lines().map(|id| format!("'{id}'")).collect();
    finding_ids.push("'0000'".into());
    let cited = ch.query("SELECT evidence[1] FROM findings ORDER BY finding_id LIMIT 1");
    let flagged = ch.query(
        "SELECT workspace_name FROM findings WHERE workspace_name != '' ORDER BY finding_id LIMIT 1",
    );
    let queries: Vec<(&str, String)> = vec![
        (
            "run_events",
            located(
                "run",
                "run-LMCK4SSiBfR6Y6rb",
                &["'run-LMCK4SSiBfR6Y6rb'", "0", "100"],
            ),
        ),
        (
            "session_events",
            located(
                "session",
                "ASIAQPLANDEFAULT0001",
                &["'ASIAQPLANDEFAULT0001'", "0", "100"],
            ),
        ),
        (
            "jti_events",
            located("jti", JTI, &[&format!("'{JTI}'"), "0", "100"]),
        ),
        (
            "fingerprint_events",
            located(
                "fingerprint",
                FINGERPRINT,
                &[&format!("'{FINGERPRINT}'"), "0", "100"],
            ),
        ),
        (
            "token_validity",
            bind(
                shipped("token_validity"),
                &[
                    "'acme'".into(),
                    "'network-prod'".into(),
                    "1720539695".into(),
                    format!("'{JTI}'"),
                ],
            ),
        ),
        (
            "token_next_issuance",
            bind(
                shipped("token_next_issuance"),
                &[
                    "'acme'".into(),
                    "'network-prod'".into(),
                    "1720539000".into(),
                    "1720560000".into(),
                    "''".into(),
                    "''".into(),
                    "'aws'".into(),
                    "'aws.workload.identity'".into(),
                ],
            ),
        ),
        (
            "token_exchanges",
            bind(
                shipped("token_exchanges"),
                &[
                    "'acme'".into(),
                    "'network-prod'".into(),
                    "1720539000".into(),
                    "1720560000".into(),
                    "'run-LMCK4SSiBfR6Y6rb'".into(),
                    "1720560000".into(),
                    "'plan'".into(),
                    "'aws'".into(),
                    "'aws.workload.identity'".into(),
                    "0".into(),
                    "100".into(),
                ],
            ),
        ),
        (
            "token_unnamed_exchanges",
            bind(
                shipped("token_unnamed_exchanges"),
                &[
                    "'azure'".into(),
                    "'0a6c3b1e-9f24-4e0a-8b7d-3c5e2f1a9b04'".into(),
                    "1720483200".into(),
                    "1720569600".into(),
                    "0".into(),
                    "100".into(),
                ],
            ),
        ),
        (
            "principal_use",
            located(
                "principal",
                DNS_ROLE,
                &[&format!("'{DNS_ROLE}'"), "0", "100"],
            ),
        ),
        (
            "workspace_days",
            located("workspace", "network", &["0", "100"]),
        ),
        (
            "alias_use",
            located("workspace", "network-prod", &["''", "0", "100"]),
        ),
        (
            "findings_citing_run",
            bind(
                shipped("findings_citing_run"),
                &[
                    "'run-none'".into(),
                    format!("['{}']", cited.trim()),
                    "100".into(),
                ],
            ),
        ),
        (
            "findings_of_workspace",
            bind(
                shipped("findings_of_workspace"),
                &[
                    "'workspace'".into(),
                    format!("'{}'", flagged.trim()),
                    "0".into(),
                    "4294967295".into(),
                    "100".into(),
                ],
            ),
        ),
        (
            "inventory_at",
            bind(
                shipped("inventory_at"),
                &["1720483200".into(), "''".into(), "''".into()],
            ),
        ),
        (
            "session_activity",
            bind(
                shipped("session_activity"),
                &[
                    "'ASIAQPLANDEFAULT0001'".into(),
                    "'ASIAQPLANDEFAULT0001'".into(),
                    "'ASIAQPLANDEFAULT0001'".into(),
                    "'ASIAQPLANDEFAULT0001'".into(),
                    "'ASIAQPLANDEFAULT0001'".into(),
                ],
            ),
        ),
        (
            "findings",
            bind(
                shipped("findings"),
                &[
                    "1000000000".into(),
                    "''".into(),
                    "''".into(),
                    "0".into(),
                    "''".into(),
                    "''".into(),
                    "0".into(),
                    "1000".into(),
                ],
            ),
        ),
        ("open_findings", shipped("open_findings").to_owned()),
        (
            "known_findings",
            bind(
                shipped("known_findings"),
                &[format!("[{}]", finding_ids.join(", "))],
            ),
        ),
        (
            "detect_arrivals",
            bind(
                shipped("detect_arrivals"),
                &[
                    "1720000000".into(),
                    "1720000000".into(),
                    "1720000000".into(),
                    "1000000000".into(),
                    "0".into(),
                    "4000000000".into(),
                ],
            ),
        ),
        (
            "latest_snapshots",
            credtrail_ingest::alias::inventory::LATEST_SNAPSHOTS_SQL.to_owned(),
        ),
        (
            "latest_trust_snapshots",
            credtrail_ingest::alias::trust::LATEST_TRUST_SNAPSHOTS_SQL.to_owned(),
        ),
        (
            "existing_dedup_keys",
            credtrail_ingest::sink::EXISTING_DEDUP_KEYS_SQL.to_owned(),
        ),
    ];
    assert_eq!(
        credtrail_query::SHIPPED_SQL.len() + 3,
        queries.len(),
        "every shipped query is exercised here"
    );
    // Every detection rule, over the fixtures' day; a rule may rightly find nothing there.
    let window = (
        "2024-07-09T00:00:00Z".parse().unwrap(),
        "2024-07-10T00:00:00Z".parse().unwrap(),
    );
    let rules = credtrail_query::detect::rules().unwrap();
    let rule_queries: Vec<(String, String)> = rules
        .iter()
        .map(|r| {
            (
                format!("rule {}", r.id),
                r.render(&credtrail_query::detect::rule::Window::new(
                    window.0, window.1,
                ))
                .unwrap(),
            )
        })
        .collect();
    let mut queries: Vec<(&str, String)> = queries;
    queries.extend(rule_queries.iter().map(|(n, s)| (n.as_str(), s.clone())));
    let dashboard_queries = dashboard_queries(&ch);
    queries.extend(
        dashboard_queries
            .iter()
            .map(|(n, s)| (n.as_str(), s.clone())),
    );

    let tables = export(
        &ch,
        dir.path(),
        &[
            "events",
            "dedup_keys",
            "dead_letters",
            "inventory",
            "session_activity",
            "findings",
            "trust_policies",
            "event_lookup",
            "flush_keys",
        ],
    );
    let mut statements = modern_ddl(&ch);
    statements.push(FLUSH_KEYS_DDL.to_owned());
    let spec = json!({
        "ddl": statements,
        "tables": tables,
        "queries": queries.iter().map(|(n, s)| json!({"name": n, "sql": s})).collect::<Vec<_>>(),
        "session": dir.path().join("chdb"),
    });
    let modern = chdb(&python, dir.path(), &spec);

    let version = modern["version"].as_str().unwrap();
    assert!(
        version.split('.').next().unwrap().parse::<u32>().unwrap() >= 23,
        "chdb {version}"
    );

    for t in [
        "events",
        "dedup_keys",
        "dead_letters",
        "inventory",
        "findings",
        "trust_policies",
    ] {
        let legacy = ch.count(&format!("SELECT count() FROM {t}"));
        assert!(legacy > 0, "{t} has data");
        assert_eq!(
            modern["counts"][t], legacy,
            "{t} row count on modern ClickHouse"
        );
    }
    // Modern servers fold aggregate states on insert (`optimize_on_insert`), so only the
    // sessions, not the unmerged rows, must agree; the query below compares the contents.
    let sessions = ch.count("SELECT uniqExact(session_id) FROM session_activity");
    let modern_rows = modern["counts"]["session_activity"].as_u64().unwrap();
    assert!(
        sessions >= 2 && modern_rows >= sessions,
        "session_activity: {sessions} sessions, {modern_rows} rows on modern ClickHouse"
    );
    for (name, sql) in &queries {
        let mut legacy = rows(&ch, sql);
        assert!(
            !legacy.is_empty() || name.starts_with("rule ") || name.starts_with("dashboard "),
            "{name} returns rows on 18.16"
        );
        let mut modern_rows = modern["results"][*name]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Without ORDER BY the row order is the server's business; compare as multisets.
        if !sql.contains("ORDER BY") {
            legacy.sort_by_key(|v| v.to_string());
            modern_rows.sort_by_key(|v| v.to_string());
        }
        assert_eq!(
            modern_rows, legacy,
            "{name} differs between 18.16 and {version}"
        );
    }
}

/// Every ClickHouse panel and template variable of the Grafana dashboards, expanded as the
/// plugin does over the fixtures' days (the pipeline dashboard over the last hour, when the
/// dead letters arrived), with every variable at All (its values as 18.16 lists them).
fn dashboard_queries(ch: &ClickHouse) -> Vec<(String, String)> {
    use support::grafana::{self, Kind, Range};
    let fixtures = Range {
        from: 1_720_483_200,
        to: 1_720_656_000,
        interval_s: 3600,
    };
    let now = chrono::Utc::now().timestamp();
    let mut out = Vec::new();
    for file in grafana::dashboard_files() {
        let d = grafana::load(&file);
        let uid = d["uid"].as_str().unwrap().to_owned();
        let range = if uid == "credtrail-pipeline" {
            Range {
                from: now - 3600,
                to: now + 3600,
                interval_s: 60,
            }
        } else {
            fixtures
        };
        // Every variable at All, with the values 18.16 lists; each variable query runs on chdb
        // too.
        let vars = grafana::all_values(&d, range, |sql| {
            out.push((
                format!("dashboard {uid} variable {}", out.len()),
                sql.to_owned(),
            ));
            grafana::variable_values(ch, sql)
        });
        for q in grafana::panel_queries()
            .into_iter()
            .filter(|q| q.dashboard == uid)
        {
            if let Kind::ClickHouse(sql) = q.kind {
                out.push((
                    format!("dashboard {uid} {}", q.title),
                    grafana::expand(&sql, range, &vars),
                ));
            }
        }
    }
    assert!(out.len() >= 15, "{} dashboard queries", out.len());
    out
}

/// Every table in `names` exported from 18.16 as RowBinary into `dir`, as the chdb spec lists them.
fn export(ch: &ClickHouse, dir: &std::path::Path, names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|t| {
            let file = dir.join(format!("{t}.rowbinary"));
            std::fs::write(
                &file,
                ch.query_bytes(&format!("SELECT * FROM {t} FORMAT RowBinary")),
            )
            .unwrap();
            json!({"name": t, "file": file})
        })
        .collect()
}

/// Stands in for the sink's external table on both servers (see `Store::fetch_keys_in`).
const FLUSH_KEYS_DDL: &str = "CREATE TABLE flush_keys (dedup_key UInt64) ENGINE = Memory";

/// The DDL a modern server gets, one statement each.
fn modern_ddl(ch: &ClickHouse) -> Vec<String> {
    // Retention long enough that the TTL does not expire the 2024 fixtures while we compare.
    let out = ch.credtrail_with(
        &["migrate", "--print", "--target", "modern"],
        &[("CREDTRAIL_CLICKHOUSE_RETENTION_DAYS", "36500")],
    );
    assert!(out.status.success());
    let ddl = String::from_utf8(out.stdout).unwrap();
    assert!(ddl.contains("TTL event_time + INTERVAL 36500 DAY"), "{ddl}");
    let statements: Vec<String> = ddl
        .split(";\n")
        .map(str::trim)
        .filter(|s| {
            s.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--"))
        })
        .map(String::from)
        .collect();
    assert_eq!(
        statements.len(),
        17,
        "three tables, the change columns, the inventory table and its column on events, \
         the session call table, the activity table and its view, the findings table, the \
         trust policy table, the lookup table, its view and its backfill, the lookup input \
         table, its view and the old view's drop"
    );
    statements
}

/// Runs a spec in chdb (tests/chdb/differential.py) and returns its output.
fn chdb(python: &std::path::Path, dir: &std::path::Path, spec: &Value) -> Value {
    let spec_file = dir.join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).unwrap();
    let out = Command::new(python)
        .arg(repo_root().join("tests/chdb/differential.py"))
        .arg(&spec_file)
        .output()
        .expect("run chdb");
    assert!(
        out.status.success(),
        "chdb run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Rows as a multiset (sorted by their JSON text): without ORDER BY the order is the server's.
fn multiset(mut rows: Vec<Value>) -> Vec<Value> {
    rows.sort_by_key(|v| v.to_string());
    rows
}

#[test]
fn every_rule_case_finds_the_same_on_modern_clickhouse() {
    let python = chdb_python();
    let ch = ClickHouse::start();
    let dir = tempfile::tempdir().unwrap();
    let rules = credtrail_query::detect::rules().unwrap();
    let mut cases = Vec::new();
    let mut legacy = Vec::new();
    for rule in &rules {
        let rule_dir = repo_root().join("query/rules").join(&rule.id);
        for (i, case) in rule.tests.iter().enumerate() {
            ch.reset();
            ch.load_rule_case(&rule_dir, case);
            let name = format!("{}#{i}", rule.id);
            let case_dir = dir.path().join(&name);
            std::fs::create_dir_all(&case_dir).unwrap();
            let tables = export(&ch, &case_dir, &["events", "inventory", "trust_policies"]);
            let window = credtrail_query::detect::rule::Window::new(case.window[0], case.window[1]);
            let sql = rule.render(&window).unwrap();
            legacy.push((name.clone(), case, rows(&ch, &sql)));
            cases.push(
                json!({"name": name, "tables": tables, "queries": [{"name": "rule", "sql": sql}]}),
            );
        }
    }
    let spec = json!({
        "ddl": modern_ddl(&ch),
        "cases": cases,
        "session": dir.path().join("chdb"),
    });
    let modern = chdb(&python, dir.path(), &spec);
    let version = modern["version"].as_str().unwrap().to_owned();
    let checked = legacy.len();
    for (name, case, legacy_rows) in legacy {
        let modern_rows = modern["cases"][&name]["rule"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            multiset(modern_rows.clone()),
            multiset(legacy_rows),
            "{name}: {} differs between 18.16 and {version}",
            case.name
        );
        // One finding per key, with what the case expects of it.
        let mut got: Vec<(String, String, String)> = modern_rows
            .iter()
            .map(|r| {
                (
                    r["finding_key"].as_str().unwrap().to_owned(),
                    (
                        r["workspace_name"].as_str().unwrap().to_owned(),
                        r["alias_tag"].as_str().unwrap().to_owned(),
                        r["run_id"].as_str().unwrap().to_owned(),
                    ),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_values()
            .collect();
        let want = support::expected_findings(case);
        got.sort();
        assert_eq!(got, want, "{name}: {} on {version}", case.name);
    }
    assert!(checked >= 2 * rules.len());
    println!("{checked} rule cases find the same on 18.16 and {version}");
}
