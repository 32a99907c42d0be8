//! The same spec gives the same bytes; another seed gives other traffic; every record is one
//! credtrail reads (no rejection) and the counts in `expected.json` are what it stores.

use credtrail_ingest::formats::{self, Normalized};
use credtrail_scenario::plant::Plant;
use credtrail_scenario::{Spec, generate};

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        start: "2024-07-08T00:00:00Z".parse().unwrap(),
        days: 2,
        orgs: 1,
        workspaces: 20,
        runs_per_day: 3,
        plants: Plant::ALL.to_vec(),
    }
}

#[test]
fn a_seed_is_a_scenario() {
    let a = generate(&spec(3)).unwrap();
    let b = generate(&spec(3)).unwrap();
    let c = generate(&spec(4)).unwrap();
    assert_eq!(a.files, b.files);
    assert_eq!(a.inventory, b.inventory);
    assert_eq!(a.expected.cases, b.expected.cases);
    assert_ne!(a.files["cloudtrail.ndjson"], c.files["cloudtrail.ndjson"]);
    assert_eq!(a.expected.cases.len(), Plant::ALL.len());
}

#[test]
fn too_few_workspaces_for_the_cases_is_an_error() {
    let mut s = spec(1);
    s.workspaces = 5;
    let err = generate(&s).err().unwrap();
    assert!(err.contains("need 19 workspaces"), "{err}");
}

#[test]
fn every_record_normalizes_and_the_counts_add_up() {
    let s = generate(&spec(5)).unwrap();
    let mut events = 0;
    for (name, text) in &s.files {
        let records: Vec<&[u8]> = if *name == "audit_trail.json" {
            Vec::new()
        } else {
            text.lines().map(str::as_bytes).collect()
        };
        for r in records {
            let source = formats::detect_source(r).unwrap_or_else(|| panic!("{name}: no format"));
            match formats::normalize_record(source, r, chrono::Utc::now()) {
                Ok(Normalized::Event(_)) => events += 1,
                Ok(_) => {}
                Err(e) => panic!("{name}: {e}: {}", String::from_utf8_lossy(r)),
            }
        }
    }
    let audit: serde_json::Value = serde_json::from_str(&s.files["audit_trail.json"]).unwrap();
    for entry in audit["data"].as_array().unwrap() {
        let r = entry.to_string();
        let source = formats::detect_source(r.as_bytes()).unwrap();
        assert!(matches!(
            formats::normalize_record(source, r.as_bytes(), chrono::Utc::now()),
            Ok(Normalized::Event(_))
        ));
        events += 1;
    }
    assert_eq!(events, s.expected.benign_events + s.expected.planted_events);
}
