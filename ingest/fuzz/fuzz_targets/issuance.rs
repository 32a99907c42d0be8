//! One issuance record (decoded claims, or a raw token to decode) into the issuance normalizer:
//! the raw token is never kept (the row's `raw` is rebuilt without it, and the intake's
//! `EventRow::redact_secrets` leaves no secret in it), a garbage token is a rejection, never a
//! panic.
#![no_main]

use credtrail_ingest::fingerprint::{contains_jwt, contains_secret};
use credtrail_ingest::formats::{Normalized, issuance};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match issuance::normalize(data, chrono::Utc::now()) {
        Ok(Normalized::Event(mut row)) => {
            row.redact_secrets();
            assert!(!contains_jwt(&row.raw), "issuance row keeps a JWT");
            assert!(!contains_secret(&row.raw), "issuance row keeps a secret");
            assert!(
                row.token_fingerprint.is_empty() || row.token_fingerprint.starts_with("sha256:")
            );
        }
        Ok(Normalized::Ignored(_)) => {}
        Err(rejection) => {
            assert!(!rejection.reason.is_empty());
            assert!(!contains_jwt(rejection.reason.as_bytes()));
        }
    }
});
