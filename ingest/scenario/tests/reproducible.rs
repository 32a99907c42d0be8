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
    use credtrail_ingest::formats::framing::{Framer, Piece, decompressing_bytes};
    let s = generate(&spec(5)).unwrap();
    let mut events = 0;
    for (name, text) in &s.files {
        // Split as a replay splits them: lines, arrays, envelopes, pages.
        let framer = Framer::new(
            decompressing_bytes(text.clone().into_bytes(), 1 << 30),
            1 << 20,
        );
        for piece in framer {
            let Piece::Record(r) = piece else {
                panic!("{name}: a broken piece")
            };
            let r = r.bytes.as_slice();
            let source = formats::detect_source(r).unwrap_or_else(|| panic!("{name}: no format"));
            match formats::normalize_record(source, r, chrono::Utc::now()) {
                Ok(Normalized::Event(_)) => events += 1,
                Ok(_) => {}
                Err(e) => panic!("{name}: {e}: {}", String::from_utf8_lossy(r)),
            }
        }
    }
    assert_eq!(events, s.expected.benign_events + s.expected.planted_events);
}
