//! Replay end to end on a real ClickHouse: migrations, normalization, dedup, dead letters, the
//! run timeline, and failure when ClickHouse is down.

mod support;

use credtrail_ingest::schema;
use serde_json::Value;
use support::{ClickHouse, fixtures};

const RUN: &str = "run-LMCK4SSiBfR6Y6rb";

fn replay_json(ch: &ClickHouse, paths: &[&str]) -> Value {
    let mut args = vec!["replay", "--json"];
    args.extend_from_slice(paths);
    let out = ch.credtrail_ok(&args);
    serde_json::from_str(out.trim()).expect("replay --json prints one JSON object")
}

#[test]
fn migrate_is_idempotent_and_recorded() {
    let ch = ClickHouse::start();
    let first = ch.credtrail_ok(&["migrate"]);
    assert!(first.contains("migration 0001 events: applied"), "{first}");
    assert!(
        first.contains("migration 0002 change_columns: applied"),
        "{first}"
    );
    let second = ch.credtrail_ok(&["migrate"]);
    assert!(second.contains("already applied"), "{second}");
    assert_eq!(
        ch.count("SELECT count() FROM schema_migrations"),
        schema::MIGRATIONS.len() as u64
    );
    let tables =
        ch.query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name");
    assert_eq!(
        tables,
        "dead_letters\ndedup_keys\nevent_lookup\nevent_lookup_input\nevent_lookup_input_mv\nevents\nfindings\ninventory\nschema_migrations\nsession_activity\nsession_activity_mv\nsession_calls\ntrust_policies\n"
    );
}

#[test]
fn replaying_the_same_files_twice_changes_no_count() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = fixtures();
    let dir = dir.to_str().unwrap();
    let first = replay_json(&ch, &[dir]);
    // Every format's fixtures, each record's format detected.
    assert_eq!(first["files"], 16);
    assert_eq!(first["stored"], 45, "{first}");
    assert_eq!(
        first["ignored"], 13,
        "unrelated calls (S3 file, session calls with session_activity off, GCP, Entra secret \
         sign-in, Vault request and kv read, audit trail run): {first}"
    );
    assert_eq!(first["dead_lettered"], 0);

    let counts = || {
        ch.query(
            "SELECT count(), uniqExact(dedup_key), countIf(outcome = 'failure'), countIf(event_kind = 'issuance') FROM events FINAL",
        )
    };
    let before = counts();
    assert_eq!(before, "45\t45\t17\t5\n");

    let second = replay_json(&ch, &[dir]);
    assert_eq!(second["stored"], 0, "{second}");
    assert_eq!(second["duplicates"], 45, "{second}");
    assert_eq!(counts(), before);
    // The sink skipped the duplicates outright: not even unmerged copies exist.
    assert_eq!(ch.count("SELECT count() FROM events"), 45);
}

#[test]
fn run_timeline_shows_phases_aliases_and_outcomes() {
    let ch = ClickHouse::start();
    ch.migrate();
    replay_json(&ch, &[fixtures().to_str().unwrap()]);

    let out = ch.credtrail_ok(&["query", "run", RUN, "--format", "json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["run_id"], RUN);
    let entries: Vec<Value> = report["events"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 8, "4 tokens and 4 exchanges: {out}");
    let times: Vec<&str> = entries
        .iter()
        .map(|e| e["time"].as_str().unwrap())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "timeline is in event order");

    let issued: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e["kind"] == "issuance")
        .map(|e| (e["phase"].as_str().unwrap(), e["alias"].as_str().unwrap()))
        .collect();
    assert_eq!(
        issued,
        vec![
            ("plan", ""),
            ("plan", "PROD"),
            ("apply", ""),
            ("apply", "PROD")
        ]
    );

    let apply = entries
        .iter()
        .find(|e| e["session_id"] == "ASIAQAPPLYDEFAULT003")
        .expect("the apply exchange");
    assert_eq!(
        apply["time"], "2024-07-09T15:47:02.517Z",
        "sub-second time is kept"
    );
    assert_eq!(apply["source_ip"], "2600:1f18:4a3:6902::17");
    assert_eq!(
        apply["principal"],
        "arn:aws:iam::111122223333:role/tfc-network-prod-apply"
    );
    assert_eq!(apply["workspace"], "network-prod");

    let denied = entries
        .iter()
        .find(|e| e["outcome"] == "failure")
        .expect("the failure");
    assert_eq!(denied["error_code"], "AccessDenied");
    assert_eq!(
        denied["audience"], "aws.workload.identity.prod",
        "audience recovered from principalId"
    );
    assert_eq!(denied["source_ip"], "52.86.1.23");

    let csv = ch.credtrail_ok(&["query", "run", RUN, "--format", "csv"]);
    assert_eq!(csv.lines().count(), 9, "header and 8 rows");
    assert!(
        csv.starts_with("time,run_id,phase,alias,provider,kind,outcome"),
        "{csv}"
    );
    let table = ch.credtrail_ok(&["query", "run", RUN]);
    assert!(
        table.contains("apply  PROD         aws    1 issued, 0 exchanges, 0 failed"),
        "{table}"
    );
    let none = ch.credtrail_ok(&["query", "run", "run-doesnotexist"]);
    assert_eq!(
        none,
        "no events for run run-doesnotexist in this time span\n"
    );
}

#[test]
fn stored_rows_never_hold_a_token() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = tempfile::tempdir().unwrap();
    let token = "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJqdGkiOiJqLTEiLCJzdWIiOiJvcmdhbml6YXRpb246YWNtZTpwcm9qZWN0OnA6d29ya3NwYWNlOnc6cnVuX3BoYXNlOnBsYW4iLCJpYXQiOjE3MjA1Mzk2OTUsImV4cCI6MTcyMDUzOTk5NSwidGVycmFmb3JtX3J1bl9pZCI6InJ1bi1YIn0.c2ln";
    let path = dir.path().join("raw_token.ndjson");
    std::fs::write(
        &path,
        format!("{{\"provider\":\"aws\",\"alias_tag\":\"\",\"token\":\"{token}\"}}\n"),
    )
    .unwrap();
    let stats = replay_json(&ch, &[path.to_str().unwrap()]);
    assert_eq!(stats["stored"], 1, "{stats}");
    let row = ch.query("SELECT jti, run_id, token_fingerprint, raw FROM events FINAL FORMAT TSV");
    assert!(row.starts_with("j-1\trun-X\tsha256:"), "{row}");
    let everything = ch.query("SELECT * FROM events FORMAT TSV");
    assert!(
        !everything.contains(token),
        "a stored column holds the raw token"
    );
}

#[test]
fn malformed_records_are_dead_letters_and_good_ones_are_stored() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read_to_string(fixtures().join("cloudtrail/failures.ndjson")).unwrap();
    let good: Vec<&str> = good.lines().collect();
    let mut input: Vec<u8> = Vec::new();
    let mut line = |bytes: &[u8]| {
        input.extend_from_slice(bytes);
        input.push(b'\n');
    };
    line(good[0].as_bytes());
    line(b"{\"eventVersion\": \"1.08\", \"eventTime\": "); // invalid JSON
    line(good[1].as_bytes());
    line(b"{\"eventSource\":\"sts.amazonaws.com\",\"eventName\":\"\xff\xfe\"}"); // invalid UTF-8
    line(good[2].as_bytes());
    let wrong_type = good[3].replace(
        "\"eventTime\": \"2024-07-10T08:03:00Z\"",
        "\"eventTime\": 1720598580",
    );
    assert_ne!(wrong_type, good[3]);
    line(wrong_type.as_bytes());
    let huge = format!(
        "{{\"eventSource\":\"sts.amazonaws.com\",\"pad\":\"{}\"}}",
        "x".repeat(10 << 20)
    );
    line(huge.as_bytes()); // a 10 MB record
    line(br#"{"provider":"aws","alias_tag":"","token":"eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"}"#); // garbage JWT
    line(br#"{"hello":"world"}"#); // no known format
    line(good[4].as_bytes());
    let path = dir.path().join("mixed.ndjson");
    std::fs::write(&path, &input).unwrap();

    let stats = replay_json(&ch, &[path.to_str().unwrap()]);
    assert_eq!(stats["stored"], 4, "{stats}");
    assert_eq!(stats["dead_lettered"], 6, "{stats}");

    let kinds = ch.query("SELECT error_kind, count() FROM dead_letters FINAL GROUP BY error_kind ORDER BY error_kind");
    assert_eq!(
        kinds,
        "invalid_json\t1\ninvalid_token\t1\ninvalid_utf8\t1\ntoo_large\t1\nunknown_format\t1\nwrong_type\t1\n"
    );
    let wrong = ch.query(
        "SELECT reason, origin FROM dead_letters FINAL WHERE error_kind = 'wrong_type' FORMAT TSV",
    );
    assert!(wrong.contains("at `eventTime`"), "{wrong}");
    assert!(
        wrong.trim_end().ends_with(":6"),
        "origin names the line: {wrong}"
    );
    let big = ch.query(
        "SELECT raw_size, length(raw) FROM dead_letters FINAL WHERE error_kind = 'too_large'",
    );
    let (size, kept) = big.trim().split_once('\t').unwrap();
    assert!(size.parse::<u64>().unwrap() > 10 << 20, "{big}");
    assert!(
        kept.parse::<u64>().unwrap() <= 64 << 10,
        "raw is capped: {big}"
    );
    let garbage =
        ch.query("SELECT raw, reason FROM dead_letters FINAL WHERE error_kind = 'invalid_token'");
    assert!(
        !garbage.contains("eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln"),
        "token leaked: {garbage}"
    );
    assert!(garbage.contains("<redacted-jwt sha256:"), "{garbage}");

    // Replaying the bad file again adds no dead letter and no event.
    let again = replay_json(&ch, &[path.to_str().unwrap()]);
    assert_eq!(again["duplicates"], 4);
    assert_eq!(ch.count("SELECT count() FROM dead_letters FINAL"), 6);
    assert_eq!(ch.count("SELECT count() FROM events FINAL"), 4);
}

#[test]
fn replay_fails_loudly_when_clickhouse_is_down() {
    let mut ch = ClickHouse::start();
    if !ch.is_own() {
        return; // cannot stop a server we did not start
    }
    ch.migrate();
    ch.stop();
    let out = ch.credtrail_with(
        &["replay", fixtures().to_str().unwrap()],
        &[
            ("CREDTRAIL_SINK_RETRY_MAX_ATTEMPTS", "2"),
            ("CREDTRAIL_SINK_RETRY_MAX_BACKOFF_MS", "200"),
        ],
    );
    assert!(!out.status.success(), "replay must fail without ClickHouse");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ClickHouse write failed after 2 attempts"),
        "{err}"
    );
}

#[test]
fn session_activity_is_aggregated_per_session_and_counts_each_call_once() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = fixtures().join("cloudtrail");
    let on = [("CREDTRAIL_CLOUDTRAIL_SESSION_ACTIVITY", "true")];
    for _ in 0..2 {
        // Twice: a redelivered call must not count again.
        let out = ch.credtrail_with(&["replay", "--json", dir.to_str().unwrap()], &on);
        assert!(out.status.success());
        let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(stats["session_calls"], 7, "{stats}");
    }
    let sql = credtrail_query::session::SESSION_ACTIVITY_SQL.replace('?', "'ASIAQPLANDEFAULT0001'");
    let plan = ch.query(&format!("{sql} FORMAT JSONEachRow"));
    let plan: Value = serde_json::from_str(plan.trim()).unwrap();
    assert_eq!(plan["calls"], "4", "{plan}");
    assert_eq!(plan["failed_calls"], "1");
    assert_eq!(
        plan["source_ips"],
        serde_json::json!(["198.51.100.77", "52.86.1.23"])
    );
    assert_eq!(
        plan["regions"],
        serde_json::json!(["eu-west-1", "us-east-1"])
    );
    assert_eq!(
        plan["services"],
        serde_json::json!([
            "ec2.amazonaws.com",
            "iam.amazonaws.com",
            "sts.amazonaws.com"
        ])
    );
    assert_eq!(
        plan["run_id"], RUN,
        "joined to the exchange that issued the key"
    );
    assert_eq!(plan["run_phase"], "plan");
    let human =
        ch.count("SELECT count() FROM session_activity WHERE session_id = 'ASIAHUMANSESSION0001'");
    assert_eq!(human, 0, "a person's session is not a run's");

    // Off (the default), the same calls are ignored.
    let fresh = ClickHouse::start();
    fresh.migrate();
    let stats: Value = serde_json::from_str(
        fresh
            .credtrail_ok(&[
                "replay",
                "--json",
                dir.join("session_calls.ndjson").to_str().unwrap(),
            ])
            .trim(),
    )
    .unwrap();
    assert_eq!(
        (stats["ignored"].as_u64(), stats["session_calls"].as_u64()),
        (Some(7), Some(0))
    );
}
