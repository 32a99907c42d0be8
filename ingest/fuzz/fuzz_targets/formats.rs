//! The GCP, Entra, Vault and audit-trail parsers and the Pub/Sub unwrapper: the first byte picks
//! one, the rest is the record. An event, ignored, or a rejection with a reason; never a panic,
//! never secret-shaped text left in the record as the intake stores it (after
//! `EventRow::redact_secrets`, which the intake applies to every row).
#![no_main]

use credtrail_ingest::fingerprint::{contains_jwt, contains_secret};
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
        Ok(Normalized::Event(mut row)) => {
            assert!(!row.source_event_id.is_empty());
            row.redact_secrets();
            assert!(!contains_jwt(&row.raw));
            assert!(!contains_secret(&row.raw));
            assert!(!contains_secret(row.error_message.as_bytes()));
        }
        Ok(Normalized::Ignored(_)) => {}
        Err(rejection) => assert!(!rejection.reason.is_empty()),
    }
});
