//! The GCP, Entra, Vault and audit-trail parsers and the Pub/Sub unwrapper: the first byte picks
//! one, the rest is the record. An event, ignored, or a rejection with a reason; never a panic,
//! never JWT-shaped text left in the stored record.
#![no_main]

use credtrail_ingest::fingerprint::contains_jwt;
use credtrail_ingest::formats::{Normalized, audit_trail, entra, gcp, pubsub, vault};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, record)) = data.split_first() else {
        return;
    };
    let now = chrono::Utc::now();
    let result = match pick % 5 {
        0 => gcp::normalize(record, now),
        1 => entra::normalize(record, now),
        2 => vault::normalize(record, now),
        3 => audit_trail::normalize(record, now),
        _ => match pubsub::unwrap(record) {
            Ok(inner) => gcp::normalize(&inner, now),
            Err(rejection) => Err(rejection),
        },
    };
    match result {
        Ok(Normalized::Event(row)) => {
            assert!(!row.source_event_id.is_empty());
            assert!(!contains_jwt(&row.raw));
        }
        Ok(Normalized::Ignored(_)) => {}
        Err(rejection) => assert!(!rejection.reason.is_empty()),
    }
});
