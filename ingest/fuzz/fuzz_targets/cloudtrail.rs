//! One CloudTrail record's bytes into the exchange normalizer: an event, ignored, or a rejection
//! with a reason; never a panic, never a session token or JWT left in the record as the intake
//! stores it (after `EventRow::redact_secrets`, which the intake applies to every row).
#![no_main]

use credtrail_ingest::fingerprint::{contains_jwt, contains_secret};
use credtrail_ingest::formats::{Normalized, cloudtrail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match cloudtrail::normalize(data, chrono::Utc::now()) {
        Ok(Normalized::Event(mut row)) => {
            assert!(!row.source_event_id.is_empty());
            row.redact_secrets();
            assert!(!contains_jwt(&row.raw));
            assert!(!contains_secret(&row.raw));
            assert!(!contains_secret(row.user_agent.as_bytes()));
            assert!(!contains_secret(row.error_message.as_bytes()));
        }
        Ok(Normalized::Ignored(_)) => {}
        Err(rejection) => assert!(!rejection.reason.is_empty()),
    }
});
