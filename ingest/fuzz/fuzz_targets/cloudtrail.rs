//! One CloudTrail record's bytes into the exchange normalizer: an event, ignored, or a rejection
//! with a reason; never a panic, never a session token or JWT left in the stored record.
#![no_main]

use credtrail_ingest::fingerprint::contains_jwt;
use credtrail_ingest::formats::{Normalized, cloudtrail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match cloudtrail::normalize(data, chrono::Utc::now()) {
        Ok(Normalized::Event(row)) => {
            assert!(!row.source_event_id.is_empty());
            assert!(!contains_jwt(&row.raw));
        }
        Ok(Normalized::Ignored(_)) => {}
        Err(rejection) => assert!(!rejection.reason.is_empty()),
    }
});
