//! The HTTP collector against a real ClickHouse: auth, per-record reasons, dedup, gzip, health,
//! metrics, and an outage that ends with nothing lost.

mod support;

use support::{ClickHouse, Collector, fixtures};

const TOKEN: &str = "test-collector-token-1";

fn auth_env() -> [(&'static str, &'static str); 1] {
    [(
        "CREDTRAIL_HTTP_AUTH_TOKENS",
        "other-token, test-collector-token-1",
    )]
}

#[test]
fn requests_without_a_known_bearer_token_are_refused() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(&ch, &auth_env());
    let body = std::fs::read(fixtures().join("cloudtrail/failures.ndjson")).unwrap();
    assert_eq!(c.post("cloudtrail", None, &body, false).0, 401);
    assert_eq!(
        c.post("cloudtrail", Some("test-collector-token-2"), &body, false)
            .0,
        401
    );
    assert_eq!(ch.count("SELECT count() FROM events"), 0);
    assert_eq!(c.post("cloudtrail", Some(TOKEN), &body, false).0, 200);
    assert_eq!(c.post("nonsense", Some(TOKEN), &body, false).0, 404);
}

#[test]
fn collector_refuses_to_start_without_tokens() {
    let ch = ClickHouse::start();
    let out = ch.credtrail(&["ingest"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bearer tokens"));
}

#[test]
fn a_mixed_batch_stores_the_good_and_explains_the_bad() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(&ch, &auth_env());
    let good = std::fs::read_to_string(fixtures().join("cloudtrail/failures.ndjson")).unwrap();
    let good: Vec<&str> = good.lines().collect();
    let huge = format!(
        "{{\"eventSource\":\"x\",\"pad\":\"{}\"}}",
        "y".repeat(10 << 20)
    );
    let mut body = Vec::new();
    for part in [
        good[0].as_bytes(),
        b"not json at all",
        good[1].as_bytes(),
        b"{\"eventSource\":\"\xc3\x28\"}",
        huge.as_bytes(),
        &good[2]
            .replace("\"eventID\"", "\"eventID\": 12, \"x\"")
            .into_bytes(),
        good[3].as_bytes(),
    ] {
        body.extend_from_slice(part);
        body.push(b'\n');
    }
    let (status, resp) = c.post("cloudtrail", Some(TOKEN), &body, false);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["records"], 7);
    assert_eq!(resp["stored"], 3, "{resp}");
    assert_eq!(resp["rejected"], 4, "{resp}");
    let errors = resp["errors"].as_array().unwrap();
    let summary: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            (
                e["record"].as_str().unwrap().to_owned(),
                e["error_kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("2".to_owned(), "invalid_json".to_owned()),
            ("4".to_owned(), "invalid_utf8".to_owned()),
            ("5".to_owned(), "too_large".to_owned()),
            ("6".to_owned(), "wrong_type".to_owned()),
        ]
    );
    assert_eq!(ch.count("SELECT count() FROM events FINAL"), 3);
    assert_eq!(ch.count("SELECT count() FROM dead_letters FINAL"), 4);
    assert_eq!(
        ch.count(
            "SELECT count() FROM dead_letters FINAL WHERE origin = 'http:5' AND raw_size > 10485760"
        ),
        1
    );

    // The same batch again (a client retry): nothing new anywhere.
    let (status, resp) = c.post("cloudtrail", Some(TOKEN), &body, true);
    assert_eq!(status, 200);
    assert_eq!(resp["stored"], 0, "{resp}");
    assert_eq!(resp["duplicates"], 3, "{resp}");
    assert_eq!(ch.count("SELECT count() FROM events FINAL"), 3);
    assert_eq!(ch.count("SELECT count() FROM dead_letters FINAL"), 4);
}

/// The server's count of MergeTree blocks written, and of those it found already sorted.
fn blocks_written(ch: &ClickHouse) -> (u64, u64) {
    let count = |event: &str| {
        ch.count(&format!(
            "SELECT sum(value) FROM system.events WHERE event = '{event}'"
        ))
    };
    (
        count("MergeTreeDataWriterBlocks"),
        count("MergeTreeDataWriterBlocksAlreadySorted"),
    )
}

#[test]
fn a_flush_reaches_clickhouse_in_each_tables_sort_order() {
    let ch = ClickHouse::start();
    if !ch.is_own() {
        eprintln!("skipped: system.events is server-wide, and this server is shared");
        return;
    }
    ch.migrate();
    let c = Collector::start(&ch, &auth_env());
    // Runs interleave workspaces, and dedup keys are hashes: neither table's order.
    let base = chrono::Utc::now() - chrono::Duration::days(1);
    let body: String = (0..2000)
        .map(|i| credtrail_ingest::sample::cloudtrail_exchange(7, i, base) + "\n")
        .collect();
    let before = blocks_written(&ch);
    let (status, resp) = c.post("cloudtrail", Some(TOKEN), body.as_bytes(), false);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["stored"], 2000, "{resp}");
    let after = blocks_written(&ch);
    let (written, sorted) = (after.0 - before.0, after.1 - before.1);
    println!("blocks written {written}, already sorted {sorted}");
    // `events` and `dedup_keys` both arrive sorted, so the server copies no column to sort them
    // (the materialized views' blocks are the server's own to sort).
    assert!(
        sorted >= 2,
        "{sorted} of {written} blocks arrived sorted; events and dedup_keys should"
    );
    assert_eq!(
        ch.query("SELECT count(), uniqExact(workspace_name) > 1 FROM events FINAL"),
        "2000\t1\n"
    );
}

#[test]
fn s3_files_issuance_and_json_arrays_are_accepted() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(&ch, &auth_env());
    // An S3 object as delivered: gzip bytes posted as they are.
    let s3 = std::fs::read(
        fixtures()
            .join("cloudtrail/111122223333_CloudTrail_us-east-1_20240709T1550Z_a1b2c3.json.gz"),
    )
    .unwrap();
    let (status, resp) = c.post("cloudtrail", Some(TOKEN), &s3, false);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        (resp["stored"].as_u64(), resp["ignored"].as_u64()),
        (Some(3), Some(1)),
        "two exchanges and a trust-policy update stored, DescribeVpcs ignored: {resp}"
    );

    let tokens = std::fs::read_to_string(fixtures().join("issuance/run_tokens.ndjson")).unwrap();
    let array = format!("[{}]", tokens.lines().collect::<Vec<_>>().join(","));
    let (status, resp) = c.post("issuance", Some(TOKEN), array.as_bytes(), true);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(resp["stored"], 4, "{resp}");
    assert_eq!(
        ch.count(
            "SELECT count() FROM events FINAL WHERE event_kind = 'issuance' AND alias_tag = 'PROD'"
        ),
        2
    );
}

#[test]
fn health_readiness_and_metrics() {
    let ch = ClickHouse::start();
    let c = Collector::start(&ch, &auth_env());
    assert_eq!(c.get("/healthz").0, 200);
    assert_eq!(c.get("/readyz").0, 503, "not ready before migrations");
    ch.migrate();
    assert_eq!(c.get("/readyz").0, 200);
    let body = std::fs::read(fixtures().join("cloudtrail/failures.ndjson")).unwrap();
    assert_eq!(c.post("cloudtrail", Some(TOKEN), &body, false).0, 200);
    let (_, metrics) = c.get("/metrics");
    assert!(
        metrics.contains("credtrail_events_stored_total{source=\"aws_cloudtrail\"} 8"),
        "{metrics}"
    );
    assert!(
        metrics.contains("credtrail_http_requests_total{route=\"ingest\",status=\"2xx\"} 1"),
        "{metrics}"
    );
    assert!(c.stop(), "SIGTERM drains and exits 0");
}

#[test]
fn an_outage_answers_503_and_loses_nothing() {
    let mut ch = ClickHouse::start();
    if !ch.is_own() {
        return;
    }
    ch.migrate();
    let c = Collector::start(
        &ch,
        &[
            auth_env()[0],
            ("CREDTRAIL_HTTP_ACK_TIMEOUT_SECS", "2"),
            ("CREDTRAIL_SINK_RETRY_MAX_BACKOFF_MS", "300"),
        ],
    );
    let lines = std::fs::read_to_string(fixtures().join("cloudtrail/failures.ndjson")).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    ch.stop();
    let (status, resp) = c.post(
        "cloudtrail",
        Some(TOKEN),
        lines[..4].join("\n").as_bytes(),
        false,
    );
    assert_eq!(status, 503, "{resp}");
    ch.restart();
    // The sender retries the refused batch and sends the rest.
    let (status, resp) = c.post(
        "cloudtrail",
        Some(TOKEN),
        lines[..4].join("\n").as_bytes(),
        false,
    );
    assert_eq!(status, 200, "{resp}");
    let (status, _) = c.post(
        "cloudtrail",
        Some(TOKEN),
        lines[4..].join("\n").as_bytes(),
        false,
    );
    assert_eq!(status, 200);
    // The batch refused during the outage may have been written by a late retry: either way
    // every event is there exactly once.
    assert_eq!(ch.count("SELECT count() FROM events FINAL"), 8);
    assert_eq!(ch.count("SELECT uniqExact(source_event_id) FROM events"), 8);
}

#[test]
fn tls_serves_https_with_the_configured_certificate() {
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian's openssl package) makes the test certificate");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let port = support::free_port();
    let mut child = std::process::Command::new(support::BIN)
        .arg("ingest")
        .envs(ch.env())
        .env("CREDTRAIL_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("CREDTRAIL_HTTP_AUTH_TOKENS", TOKEN)
        .env("CREDTRAIL_HTTP_TLS_CERT_FILE", &cert)
        .env("CREDTRAIL_HTTP_TLS_KEY_FILE", &key)
        .spawn()
        .unwrap();
    let body = fixtures().join("cloudtrail/run_success_plan.json");
    let curl = |extra: &[&str]| {
        let mut cmd = std::process::Command::new("curl");
        cmd.args([
            "-sS",
            "--retry",
            "20",
            "--retry-connrefused",
            "--retry-delay",
            "0",
        ])
        .args(extra);
        cmd.output().unwrap()
    };
    let https = format!("https://127.0.0.1:{port}/v1/ingest/cloudtrail");
    let out = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        "-H",
        &format!("Authorization: Bearer {TOKEN}"),
        "--data-binary",
        &format!("@{}", body.display()),
        &https,
    ]);
    let plain = curl(&[
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("http://127.0.0.1:{port}/healthz"),
    ]);
    let _ = child.kill();
    let _ = child.wait();
    let resp: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "no JSON over HTTPS: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(resp["stored"], 1, "{resp}");
    assert_ne!(
        String::from_utf8_lossy(&plain.stdout),
        "200",
        "plain HTTP must not be served"
    );
    assert_eq!(ch.count("SELECT count() FROM events FINAL"), 1);
}
