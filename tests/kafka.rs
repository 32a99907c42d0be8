//! The Kafka source against a real broker (tansu) and a real ClickHouse, with real processes:
//! poison records, SIGKILL crashes, a ClickHouse outage, a frozen broker, and a group member
//! dying. Each test prints produced / stored / double-counted / lost and asserts 0 lost and
//! 0 double-counted.
//!
//! The tests take turns (one lock): each already runs a broker, a ClickHouse server and one or
//! two ingest processes on a 2-core machine.

mod support;

use credtrail_ingest::sample;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use support::*;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn base_time() -> chrono::DateTime<chrono::Utc> {
    // Recent, so that modern servers' TTL never drops the rows.
    chrono::Utc::now() - chrono::Duration::days(1)
}

fn events(salt: u32, range: std::ops::Range<u64>) -> impl Iterator<Item = Vec<u8>> {
    let base = base_time();
    range.map(move |i| sample::cloudtrail_exchange(salt, i, base).into_bytes())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Malformed record number `i`, of six kinds in turn.
fn poison(i: u64) -> Vec<u8> {
    match i % 6 {
        0 => format!(r#"{{"eventSource":"sts.amazonaws.com","eventID":"p{i}","#).into_bytes(),
        1 => {
            let mut b = br#"{"eventSource":"sts.amazonaws.com","eventName":"AssumeRoleWithWebIdentity","eventID":"p"#.to_vec();
            b.extend_from_slice(&[0xff, 0xfe, b'"', b'}']);
            b
        }
        2 if i % 500 == 2 => {
            // A 5 MB record: over limits.max_record_bytes.
            let mut b = br#"{"eventSource":"sts.amazonaws.com","pad":""#.to_vec();
            b.resize(5 << 20, b'x');
            b.extend_from_slice(b"\"}");
            b
        }
        2 | 3 => format!(
            r#"{{"eventVersion":"1.08","eventTime":12,"eventSource":"sts.amazonaws.com","eventName":"AssumeRoleWithWebIdentity","eventID":["p{i}"]}}"#
        )
        .into_bytes(),
        4 => {
            let full = gzip(&sample::cloudtrail_exchange(99, i, base_time()).into_bytes());
            full[..full.len() / 2].to_vec()
        }
        _ => format!(r#"{{"token":"eyJnotajwt{i}.garbage.x","provider":"aws"}}"#).into_bytes(),
    }
}

const DEAD_LETTER_MESSAGES: &str = "SELECT uniqExact(replaceRegexpOne(origin, '^(kafka:[^:]+:[0-9]+:[0-9]+).*$', '\\\\1')) FROM dead_letters FINAL WHERE origin LIKE 'kafka:%'";

#[test]
fn poison_records_become_dead_letters_with_their_offsets() {
    let _turn = turn();
    let ch = ClickHouse::start();
    ch.migrate();
    let broker = Broker::start();
    broker.create_topic("mixed", 3);
    let producer = broker.producer();
    let good = 20_000u64;
    let bad = 10_000u64;
    // One malformed record after every second good one, then the rest of the good ones.
    let stream = (0..good).flat_map(|i| {
        let mut v = vec![sample::cloudtrail_exchange(1, i, base_time()).into_bytes()];
        if i % 2 == 1 && i / 2 < bad {
            v.push(poison(i / 2));
        }
        v
    });
    let produced = produce(&producer, "mixed", stream);
    assert_eq!(produced, good + bad);
    let ingest = kafka_ingest(&ch, &broker, "poison", "mixed=auto", &[]);

    let stored = wait_for_count(
        &ch,
        "SELECT uniqExact(source_event_id) FROM events FINAL",
        good,
        Duration::from_secs(120),
    );
    let dead = wait_for_count(&ch, DEAD_LETTER_MESSAGES, bad, Duration::from_secs(60));
    let mut ingest = ingest;
    assert!(ingest.running(), "ingest crashed on poison records");
    let delivery = Delivery::measure(&ch, good);
    delivery.print("poison");
    println!("poison: {bad} malformed produced, {dead} dead-lettered with their offsets");
    assert_eq!(stored, good);
    assert_eq!(delivery.lost, 0);
    assert_eq!(delivery.double_counted, 0);
    assert_eq!(dead, bad);
    // Every kind of bad input has its reason.
    let kinds = ch.query(
        "SELECT error_kind, count() FROM dead_letters FINAL GROUP BY error_kind ORDER BY error_kind",
    );
    for kind in [
        "invalid_json",
        "invalid_utf8",
        "too_large",
        "wrong_type",
        "decompression",
        "invalid_token",
    ] {
        assert!(kinds.contains(kind), "no {kind} dead letters:\n{kinds}");
    }
    assert_eq!(
        ch.count("SELECT count() FROM dead_letters FINAL WHERE reason = '' OR origin NOT LIKE 'kafka:mixed:%'"),
        0
    );
    // A garbage token is never stored as such, only its fingerprint.
    assert_eq!(
        ch.count("SELECT count() FROM dead_letters FINAL WHERE position(raw, 'eyJnotajwt') > 0 OR position(reason, 'eyJnotajwt') > 0"),
        0
    );
    assert!(ingest.stop(), "ingest did not stop cleanly");
}
