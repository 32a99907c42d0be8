//! Hostile input against `credtrail ingest` on loopback: decompression and record bombs, slow
//! and silent connections, a flood of idle ones. Each attack is bounded in count and time, and
//! each test asserts the fixed behaviour: a fast, clear answer; peak memory under a stated bound
//! (printed); good clients still answered.

mod support;

use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{ClickHouse, Collector};

/// Peak resident memory of a process in MiB.
fn peak_mib(pid: u32) -> u64 {
    support::peak_rss_kib(pid) / 1024
}

fn gzip(parts: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    for p in parts {
        enc.write_all(&p).unwrap();
    }
    enc.finish().unwrap()
}

/// A raw POST: status and body text.
fn post(c: &Collector, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut req = support::agent().post(format!("{}{path}", c.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut r = req.send(body).expect("request");
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// The bound every bomb must stay under: a few batches and buffers, not the bomb.
const PEAK_BOUND_MIB: u64 = 400;

#[test]
fn decompression_and_record_bombs_answer_fast_in_bounded_memory() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(
        &ch,
        &[
            ("CREDTRAIL_HTTP_ALLOW_UNAUTHENTICATED", "true"),
            (
                "CREDTRAIL_LIMITS_MAX_UNPACKED_BYTES",
                &(64u64 << 20).to_string(),
            ),
        ],
    );
    let pid = c.pid();
    println!("collector at rest: peak {} MiB", peak_mib(pid));

    // 4 million `{}` lines, gzipped without Content-Encoding: ~12 KB that unpack to 12 MB of
    // records. Cut at http.max_records_per_request (200,000), 1,000 dead letters kept and one
    // summary, answered 413.
    let bomb = gzip((0..4_000_000).map(|_| b"{}\n".to_vec()));
    let started = Instant::now();
    let (status, body) = post(&c, "/v1/ingest/auto", &[], &bomb);
    let took = started.elapsed();
    assert_eq!(status, 413, "{}", &body[..body.len().min(400)]);
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["cut_short"], true);
    assert_eq!(answer["records"], 200_000);
    assert_eq!(answer["rejected"], 200_000);
    let kept = ch.count("SELECT count() FROM dead_letters");
    assert_eq!(kept, 1_001, "1,000 dead letters and one summary");
    let summary = ch.query("SELECT reason FROM dead_letters WHERE origin LIKE '%summary%'");
    assert!(
        summary.contains("199000 more rejected record(s)"),
        "{summary}"
    );
    println!(
        "record bomb: {} bytes gzipped, 413 in {took:?}, peak {} MiB",
        bomb.len(),
        peak_mib(pid)
    );
    assert!(peak_mib(pid) < PEAK_BOUND_MIB);

    // One 512 MiB line of zeros, gzipped (~0.5 MB): unpacking stops at 64 MiB.
    let zeros = gzip((0..512).map(|_| vec![b'0'; 1 << 20]));
    let started = Instant::now();
    let (status, body) = post(&c, "/v1/ingest/auto", &[], &zeros);
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("max_unpacked_bytes"),
        "{}",
        &body[..body.len().min(400)]
    );
    println!(
        "decompression bomb: {} bytes gzipped for 512 MiB, refused past 64 MiB in {took:?}, peak {} MiB",
        zeros.len(),
        peak_mib(pid)
    );
    assert!(peak_mib(pid) < PEAK_BOUND_MIB);

    // OTLP: a million empty log records, ~2 MB of protobuf, gzipped. Counted on the wire and
    // refused before anything is decoded.
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 1_000_000],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let otlp = gzip(std::iter::once(prost::Message::encode_to_vec(&request)));
    let started = Instant::now();
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "gzip"),
    ];
    let (status, body) = post(&c, "/v1/logs", &headers, &otlp);
    let took = started.elapsed();
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("nothing was stored"), "{body}");
    println!(
        "OTLP bomb: {} bytes gzipped, 1,000,000 records, 413 in {took:?}, peak {} MiB",
        otlp.len(),
        peak_mib(pid)
    );
    assert!(peak_mib(pid) < PEAK_BOUND_MIB);

    // Good records beside all that are still stored.
    let good = std::fs::read(support::fixtures().join("cloudtrail/run_success_plan.json")).unwrap();
    let (status, body) = post(&c, "/v1/ingest/cloudtrail", &[], &good);
    assert_eq!(status, 200, "{body}");
    assert!(ch.count("SELECT count() FROM events") >= 1);
}

/// Whether the server closed a connection (a read returns end of file or an error) within
/// `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a 408 or 400 answer, then the close
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn slow_and_idle_connections_are_closed_while_good_clients_are_answered() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(
        &ch,
        &[
            ("CREDTRAIL_HTTP_ALLOW_UNAUTHENTICATED", "true"),
            ("CREDTRAIL_HTTP_HEADER_READ_TIMEOUT_SECS", "2"),
            ("CREDTRAIL_HTTP_BODY_READ_TIMEOUT_SECS", "3"),
            ("CREDTRAIL_HTTP_MAX_CONNECTIONS", "64"),
        ],
    );
    let pid = c.pid();
    let addr = c.url.trim_start_matches("http://").to_owned();
    let at_rest = open_fds(pid);

    // Slowloris: 20 connections that never finish their headers, and 10 whose body trickles.
    let mut slow = Vec::new();
    for i in 0..30 {
        let mut s = TcpStream::connect(&addr).unwrap();
        if i < 20 {
            s.write_all(b"POST /v1/ingest/auto HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
        } else {
            s.write_all(
                b"POST /v1/ingest/auto HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{",
            )
            .unwrap();
        }
        slow.push(s);
    }
    // An idle flood: 200 connections that send nothing, over three times the cap.
    let idle: Vec<TcpStream> = (0..200)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    let flooded = open_fds(pid);

    // A good client keeps being answered: health and an ingest, retried while the cap is full.
    let good = std::fs::read(support::fixtures().join("cloudtrail/run_success_plan.json")).unwrap();
    let started = Instant::now();
    let answered = loop {
        let health = support::agent().get(format!("{}/healthz", c.url)).call();
        let ingest = support::agent()
            .post(format!("{}/v1/ingest/cloudtrail", c.url))
            .send(&good[..]);
        if matches!((&health, &ingest), (Ok(h), Ok(i)) if h.status() == 200 && i.status() == 200) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a good client was not answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!("good client answered after {answered:?} with 30 slow and 200 idle connections open");

    // Every slow connection is closed by the header or body deadline.
    let closed = slow
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_secs(6)))
        .filter(|closed| *closed)
        .count();
    assert_eq!(closed, 30, "slow connections still open");
    // Silent ones too (the first were admitted under the cap, the rest closed at once).
    let mut idle = idle;
    let silent_closed = idle
        .iter_mut()
        .take(5)
        .map(|s| closed_within(s, Duration::from_secs(6)))
        .filter(|closed| *closed)
        .count();
    assert_eq!(silent_closed, 5, "silent connections still open");
    drop(idle);
    std::thread::sleep(Duration::from_millis(500));
    let after = open_fds(pid);
    println!(
        "descriptors: {at_rest} at rest, {flooded} under the flood (cap 64 connections), {after} after"
    );
    assert!(
        flooded <= at_rest + 64 + 8,
        "the cap held descriptors: {flooded}"
    );
    assert!(after <= at_rest + 8, "descriptors came back: {after}");
    assert!(ch.count("SELECT count() FROM events") >= 1);
}

/// Secrets of every shape, planted in text fields of several formats: none may reach a stored
/// column, a dead letter, an answer or a lookup.
#[test]
fn planted_secrets_reach_no_column_dead_letter_or_answer() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let jwt = format!(
        "{}.{}.{}",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(r#"{"sub":"organization:acme:project:p:workspace:w:run_phase:plan","jti":"planted"}"#),
        b64("signature-bytes")
    );
    let vault = "hvs.CAESIPlantedVaultToken0123456789abcdef";
    let session = format!("IQoJb3JpZ2luX2VjEPlanted{}", "Q".repeat(120));
    let secret_key = "wJalrXUtnFEMIPlantedSecretKeyEXAMPLEKEY1";
    let secrets = [jwt.as_str(), vault, session.as_str(), secret_key];

    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(&ch, &[("CREDTRAIL_HTTP_ALLOW_UNAUTHENTICATED", "true")]);
    let line = |path: &str| -> serde_json::Value {
        let text = std::fs::read_to_string(support::fixtures().join(path)).unwrap();
        serde_json::from_str(text.lines().next().unwrap()).unwrap()
    };
    // CloudTrail: a JWT in the user agent, an AWS secret key and a session token in the error.
    let mut ct = line("cloudtrail/failures.ndjson");
    ct["userAgent"] = format!("curl/8.5 {jwt}").into();
    ct["errorMessage"] =
        format!("aws_secret_access_key={secret_key} token {session} rejected").into();
    // GCP: a Vault token in the caller's user agent.
    let mut gcp = line("gcp/failures.ndjson");
    gcp["protoPayload"]["requestMetadata"]["callerSuppliedUserAgent"] =
        format!("google-api-go {vault}").into();
    let mut answers = String::new();
    for (source, record) in [("cloudtrail", &ct), ("gcp", &gcp)] {
        let (status, body) = post(
            &c,
            &format!("/v1/ingest/{source}"),
            &[],
            record.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{body}");
        answers.push_str(&body);
    }
    // Dead letters: a JSON-escaped JWT in a broken record, a Vault token as an issuance `token`.
    let escaped = jwt.replacen('e', "\\u0065", 1);
    let broken = format!(r#"{{"eventSource":"sts.amazonaws.com","userAgent":"{escaped}","#);
    let issuance = format!(r#"{{"provider":"vault","alias_tag":"","token":"{vault}"}}"#);
    for (source, body) in [("auto", broken), ("issuance", issuance)] {
        let (status, answer) = post(&c, &format!("/v1/ingest/{source}"), &[], body.as_bytes());
        assert_eq!(status, 200, "{answer}");
        answers.push_str(&answer);
    }
    assert_eq!(ch.count("SELECT count() FROM events"), 2);
    assert_eq!(ch.count("SELECT count() FROM dead_letters"), 2);
    ch.credtrail_ok(&["detect", "--since", "2000-01-01T00:00:00Z", "--no-settle"]);
    let mut stored = String::new();
    for table in ["events", "dead_letters", "findings"] {
        stored.push_str(&ch.query(&format!("SELECT * FROM {table} FORMAT TSV")));
    }
    let lookup = ch.credtrail_ok(&["query", "token", &jwt, "--format", "json"]);
    let findings = ch.credtrail_ok(&[
        "findings",
        "--since",
        "2000-01-01T00:00:00Z",
        "--format",
        "json",
    ]);
    for (what, text) in [
        ("tables", &stored),
        ("answers", &answers),
        ("token lookup", &lookup),
        ("findings", &findings),
    ] {
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{what} hold a planted secret: {}",
                &secret[..12]
            );
        }
        assert!(
            !text.contains("Planted"),
            "{what} hold part of a planted secret"
        );
    }
    assert!(
        stored.contains("<redacted-jwt sha256:"),
        "the fingerprints stay"
    );
    assert!(
        lookup.contains(&credtrail_ingest::fingerprint::token_fingerprint(&jwt)),
        "{lookup}"
    );
}

/// A user agent that carries terminal sequences and starts a formula, shown by every table and
/// CSV output: escaped on the terminal, never a formula in a spreadsheet, and CSV always works.
#[test]
fn terminal_and_spreadsheet_output_show_hostile_text_inert() {
    let ch = ClickHouse::start();
    ch.migrate();
    let agent = "=HYPERLINK(\"http://evil\")\u{1b}[2J\u{1b}]0;pwned\u{7}\u{1b}]8;;http://evil\u{1b}\\x\u{202e}\n│ forged │";
    let mut record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::fixtures().join("cloudtrail/run_success_plan.json"))
            .unwrap(),
    )
    .unwrap();
    record["userAgent"] = agent.into();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hostile.json");
    std::fs::write(&file, record.to_string()).unwrap();
    ch.credtrail_files(&["replay"], &[file]);
    ch.credtrail_ok(&["detect", "--since", "2000-01-01T00:00:00Z", "--no-settle"]);
    let since = ["--since", "2000-01-01T00:00:00Z"];
    let run = "run-LMCK4SSiBfR6Y6rb";
    let role = "arn:aws:iam::111122223333:role/tfc-network-prod-plan";
    let commands: Vec<Vec<&str>> = vec![
        vec!["findings"],
        vec!["query", "workspace", "network-prod"],
        vec!["query", "principal", role],
        vec!["query", "run", run],
        vec!["query", "sql", "SELECT user_agent, event_name FROM events"],
    ];
    for command in commands {
        for format in ["table", "csv"] {
            let mut args = command.clone();
            if command[0] != "query" || command[1] != "sql" {
                args.extend(since);
            }
            args.extend(["--format", format]);
            let out = ch.credtrail_ok(&args);
            assert!(
                !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\u{202e}'),
                "{args:?} printed a raw control character:\n{out}"
            );
            if format == "csv" {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(out.as_bytes());
                let cells: Vec<String> = reader
                    .records()
                    .flat_map(|r| r.unwrap().iter().map(str::to_owned).collect::<Vec<_>>())
                    .collect();
                assert!(
                    cells
                        .iter()
                        .all(|c| !c.starts_with(['=', '+', '-', '@', '\t', '\r'])),
                    "{args:?}: a cell starts a formula: {cells:?}"
                );
            }
            if command == ["query", "sql", "SELECT user_agent, event_name FROM events"] {
                assert!(
                    out.contains("\\x1b[2J"),
                    "{args:?} shows the escape:\n{out}"
                );
            }
        }
    }
}

/// The forensic API has its own door: an open collector (`http.allow_unauthenticated`) leaves it
/// shut, it answers only allowed `Host` names, and its answers are neither sniffed nor cached.
#[test]
fn the_api_keeps_its_own_token_and_host_checks() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::serve(
        &ch,
        &[
            ("CREDTRAIL_HTTP_ALLOW_UNAUTHENTICATED", "true"),
            ("CREDTRAIL_HTTP_API_TOKENS", "reader-token"),
        ],
    );
    let get = |host: Option<&str>, auth: Option<&str>| {
        let mut req = support::agent().get(format!("{}/api/v1/findings", c.url));
        if let Some(h) = host {
            req = req.header("Host", h);
        }
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        let r = req.call().unwrap();
        let headers = (
            r.headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap().to_owned()),
            r.headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_owned()),
        );
        (r.status().as_u16(), headers)
    };
    assert_eq!(
        get(None, None).0,
        401,
        "no token, though the collector is open"
    );
    assert_eq!(get(None, Some("Bearer guess")).0, 401);
    let (status, headers) = get(None, Some("Bearer reader-token"));
    assert_eq!(status, 200);
    assert_eq!(headers, (Some("nosniff".into()), Some("no-store".into())));
    assert_eq!(
        get(None, Some("bearer reader-token")).0,
        200,
        "the scheme is case-insensitive"
    );
    assert_eq!(get(Some("localhost"), Some("Bearer reader-token")).0, 200);
    assert_eq!(
        get(Some("attacker.example"), Some("Bearer reader-token")).0,
        421,
        "a rebound name is refused"
    );
}

/// `/metrics` says which findings fired: with `http.metrics_require_token` only a token reads it.
#[test]
fn metrics_can_require_a_token() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(
        &ch,
        &[
            ("CREDTRAIL_HTTP_AUTH_TOKENS", "scraper-token"),
            ("CREDTRAIL_HTTP_METRICS_REQUIRE_TOKEN", "true"),
        ],
    );
    assert_eq!(c.get("/metrics").0, 401);
    let r = support::agent()
        .get(format!("{}/metrics", c.url))
        .header("Authorization", "Bearer scraper-token")
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(c.get("/healthz").0, 200, "liveness stays open");
}
