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
use support::ClickHouse;

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
    ch.reset();
    let valid_from = "2000-01-01T00:00:00Z";
    let import = [
        "inventory",
        "import",
        "--no-reattribute",
        "--valid-from",
        valid_from,
    ];
    ch.credtrail_files(&import, &[scenario.join("inventory.toml")]);
    let trust = credtrail_scenario::Scenario::trust_files(scenario);
    ch.credtrail_files(&["inventory", "trust", "--valid-from", valid_from], &trust);
    ch.credtrail_files(&["replay"], files);
    let since = expected["judged_since"].as_str().unwrap();
    let until = expected["judged_until"].as_str().unwrap();
    ch.credtrail_ok(&["detect", "--since", since, "--until", until, "--no-settle"]);
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

#[test]
fn findings_do_not_depend_on_order_duplicates_or_packaging() {
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
