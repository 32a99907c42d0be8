//! The small text parsers: `sub` claims, RFC 3339 times, CloudTrail's free-text `expiration`.
#![no_main]

use credtrail_ingest::formats::{cloudtrail, parse_time};
use credtrail_ingest::model::{Subject, TokenType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let s = Subject::parse(text);
    if s.token_type != TokenType::Unknown {
        // Parts are pieces of the input.
        assert!(text.contains(s.organization));
        assert!(!s.run_phase.is_empty());
    }
    if let Some(t) = parse_time(text) {
        assert!(t.timestamp() > 0);
    }
    let _ = cloudtrail::parse_expiration(text);
});
