//! Findings depend on what was logged, never on how it was delivered. One generated scenario is
//! replayed four ways into a fresh database each time: as generated; every file's records in
//! reverse order and the files reversed; everything delivered twice; and re-packaged (CloudTrail
//! as a gzipped one-line `{"Records": [...]}` S3 object, Entra as a pretty-printed
//! `{"records": [...]}` export, GCP as a JSON array, the rest gzipped NDJSON). Each way must
//! store the same events and the same findings, with the same ids.

mod support;

use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{ClickHouse, Collector};

/// A file's records, one JSON text each, split as a replay splits them.
fn records(path: &Path) -> Vec<String> {
    use credtrail_ingest::formats::framing::{Framer, Piece, decompressing_bytes};
    let bytes = std::fs::read(path).unwrap();
    Framer::new(decompressing_bytes(bytes, 1 << 30), 1 << 20)
        .map(|piece| match piece {
            Piece::Record(r) => String::from_utf8(r.bytes).unwrap(),
            Piece::Broken(b) => panic!("{}: {}", path.display(), b.rejection),
        })
        .collect()
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

/// What a delivery left: events and dead letters stored, and the findings' ids.
#[derive(Debug, PartialEq)]
struct Stored {
    events: u64,
    dead_letters: u64,
    findings: Vec<String>,
}

fn deliver(
    ch: &ClickHouse,
    scenario: &Path,
    expected: &serde_json::Value,
    files: &[PathBuf],
) -> Stored {
    load(ch, scenario, files);
    let since = expected["judged_since"].as_str().unwrap();
    let until = expected["judged_until"].as_str().unwrap();
    ch.detect(since, until, None);
    stored(ch)
}

/// A fresh database with the scenario's inventory, trust policies and `files`.
fn load(ch: &ClickHouse, scenario: &Path, files: &[PathBuf]) {
    ch.reset();
    ch.import_scenario(scenario, "2000-01-01T00:00:00Z");
    ch.credtrail_files(&["replay"], files);
}

fn stored(ch: &ClickHouse) -> Stored {
    let mut findings: Vec<String> = ch
        .query("SELECT finding_id FROM findings FINAL")
        .lines()
        .map(str::to_owned)
        .collect();
    findings.sort();
    Stored {
        events: ch.count("SELECT count() FROM events FINAL"),
        dead_letters: ch.count("SELECT count() FROM dead_letters"),
        findings,
    }
}

/// A server and a small generated scenario (two days, two organizations, every rule planted):
/// its folder, `expected.json` and its data files.
fn generated() -> (
    ClickHouse,
    tempfile::TempDir,
    serde_json::Value,
    Vec<PathBuf>,
) {
    let ch = ClickHouse::start();
    ch.migrate();
    let scenario = tempfile::tempdir().unwrap();
    let sizes = [
        "--start",
        "2024-07-08T00:00:00Z",
        "--orgs",
        "2",
        "--workspaces",
        "12",
    ];
    let expected = ch.generate(scenario.path(), &sizes, "2000-01-01T00:00:00Z");
    let files = credtrail_scenario::Scenario::data_files(scenario.path());
    (ch, scenario, expected, files)
}

#[test]
fn findings_do_not_depend_on_order_duplicates_or_packaging() {
    let (ch, scenario, expected, files) = generated();
    let work = tempfile::tempdir().unwrap();

    let as_generated = deliver(&ch, scenario.path(), &expected, &files);
    assert!(as_generated.events > 1000, "{as_generated:?}");
    assert!(!as_generated.findings.is_empty(), "{as_generated:?}");
    println!(
        "as generated: {} events, {} dead letters, {} findings",
        as_generated.events,
        as_generated.dead_letters,
        as_generated.findings.len()
    );

    // Every file's records reversed, and the files in reverse order.
    let mut reversed = Vec::new();
    for (i, f) in files.iter().enumerate().rev() {
        let mut rs = records(f);
        rs.reverse();
        let path = work.path().join(format!("reversed-{i}.ndjson"));
        std::fs::write(&path, rs.join("\n") + "\n").unwrap();
        reversed.push(path);
    }
    assert_eq!(
        deliver(&ch, scenario.path(), &expected, &reversed),
        as_generated,
        "reversed"
    );

    // Everything delivered twice: at-least-once delivery counts nothing twice.
    let twice: Vec<PathBuf> = files.iter().chain(files.iter()).cloned().collect();
    assert_eq!(
        deliver(&ch, scenario.path(), &expected, &twice),
        as_generated,
        "twice"
    );

    // Re-packaged as the services' own envelopes, arrays, pretty JSON and gzip.
    let mut packaged = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let rs = records(f);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let (file, bytes) = if name.starts_with("cloudtrail") {
            (
                "cloudtrail.json.gz",
                gzip(&format!("{{\"Records\":[{}]}}", rs.join(","))),
            )
        } else if name.starts_with("entra") {
            let body = rs.join(",\n    ");
            (
                "entra.json",
                format!("{{\n  \"records\": [\n    {body}\n  ]\n}}\n").into_bytes(),
            )
        } else if name.starts_with("gcp") {
            (
                "gcp.json",
                format!("[\n{}\n]\n", rs.join(",\n")).into_bytes(),
            )
        } else {
            ("records.ndjson.gz", gzip(&(rs.join("\n") + "\n")))
        };
        let path = work.path().join(format!("{i}-{file}"));
        std::fs::write(&path, bytes).unwrap();
        packaged.push(path);
    }
    assert_eq!(
        deliver(&ch, scenario.path(), &expected, &packaged),
        as_generated,
        "packaged"
    );
}

/// `credtrail serve`'s scheduled passes over a backfill (windows of `detect.window_secs` from the
/// earliest late arrival, fast passes beside them) store the findings one `detect` over the same
/// span stores, with the same ids.
#[test]
fn scheduled_passes_find_what_one_pass_finds() {
    let (ch, scenario, expected, files) = generated();
    let since = expected["start"].as_str().unwrap();
    let until = expected["end"].as_str().unwrap();
    load(&ch, scenario.path(), &files);
    ch.detect(since, until, None);
    let one_pass = stored(&ch);
    assert!(!one_pass.findings.is_empty());

    load(&ch, scenario.path(), &files);
    let serve = Collector::serve(
        &ch,
        &[
            ("CREDTRAIL_HTTP_ALLOW_UNAUTHENTICATED", "true"),
            ("CREDTRAIL_DETECT_INTERVAL_SECS", "1"),
            ("CREDTRAIL_DETECT_FULL_INTERVAL_SECS", "1"),
            // Six-hour windows cut the two days at points of their own.
            ("CREDTRAIL_DETECT_WINDOW_SECS", "21600"),
            // The backfill is from 2024: judge it all, and now (it is complete).
            ("CREDTRAIL_DETECT_MAX_LATENESS_SECS", "1000000000"),
            ("CREDTRAIL_DETECT_MAX_SETTLE_SECS", "0"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut scheduled = stored(&ch);
    while scheduled.findings != one_pass.findings && Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(2));
        scheduled = stored(&ch);
    }
    drop(serve);
    println!(
        "one pass: {} findings; serve's scheduled passes: {}",
        one_pass.findings.len(),
        scheduled.findings.len()
    );
    assert_eq!(
        scheduled, one_pass,
        "serve's scheduled passes vs one detect"
    );
}
