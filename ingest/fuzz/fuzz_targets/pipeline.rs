//! Arbitrary bytes through framing (NDJSON, arrays, `Records`, pretty JSON, gzip), format
//! detection and every format's normalizer, as any source feeds them. Invariants: no panic; every
//! record is an event, ignored, or a dead letter with a kind and a reason; stored bytes never hold
//! anything JWT-shaped; dead letters respect their size cap.
#![no_main]

use credtrail_ingest::fingerprint::contains_jwt;
use credtrail_ingest::metrics::Metrics;
use credtrail_ingest::normalize::{Normalizer, SourceChoice};
use credtrail_ingest::sources::Intake;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

const MAX_DEAD_LETTER: usize = 512;

static INTAKE: LazyLock<Intake> = LazyLock::new(|| Intake {
    normalizer: Normalizer {
        session_activity: true,
        max_dead_letter_bytes: MAX_DEAD_LETTER,
    },
    max_record_bytes: 4096,
    max_unpacked_bytes: 1 << 20,
    attribution: Default::default(),
    metrics: Metrics::new(),
});

fuzz_target!(|data: &[u8]| {
    let mut records = 0;
    INTAKE
        .frame(
            std::io::Cursor::new(data.to_vec()),
            SourceChoice::Auto,
            "fuzz",
            64,
            |batch, tally, errors, _bytes| {
                records += tally.records;
                assert_eq!(
                    tally.records,
                    tally.events + tally.session_calls + tally.ignored + tally.dead_letters
                );
                assert_eq!(batch.session_calls.len() as u64, tally.session_calls);
                assert_eq!(errors.len() as u64, tally.dead_letters);
                for e in &batch.events {
                    assert!(!contains_jwt(&e.raw), "event raw keeps a JWT");
                }
                for d in &batch.dead_letters {
                    assert!(!d.error_kind.is_empty() && !d.reason.is_empty());
                    assert!(d.raw.len() <= MAX_DEAD_LETTER + 64 * 8);
                    assert!(!contains_jwt(&d.raw), "dead letter keeps a JWT");
                    assert!(!contains_jwt(d.reason.as_bytes()), "reason quotes a JWT");
                }
            },
        )
        .expect("reading from memory");
    let _ = records;
});
