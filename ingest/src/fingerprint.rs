//! Hashes that stand in for secrets and identities: token fingerprints, dedup keys, redaction.
//!
//! A raw bearer token must never reach ClickHouse, a log line or an HTTP response. Everything that
//! could carry one goes through [`redact_jwts`] or is replaced by [`token_fingerprint`].

use crate::model::Source;
use regex::bytes::Regex;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::sync::LazyLock;

/// `sha256:<hex>` of the token's bytes: lets a security team match a token they hold against
/// credtrail's records without credtrail ever keeping the token.
pub fn token_fingerprint(token: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(token.trim().as_bytes()))
    )
}

/// Hex SHA-256 of arbitrary bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The dedup key of a source event: the first 8 bytes of SHA-256(source, 0, source_event_id).
/// Collisions only matter within one ClickHouse sorting key (same workspace and second), where
/// 64 bits are ample.
pub fn dedup_key(source: Source, source_event_id: &str) -> u64 {
    hash_parts(&[source.as_str().as_bytes(), source_event_id.as_bytes()])
}

/// The first 8 bytes of SHA-256 over the parts, each followed by a 0 byte so that parts cannot
/// run into each other.
pub fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("sha256 has 32 bytes"))
}

/// Something shaped like a JWS compact token: three base64url segments, the first a JSON header.
/// Every JWT starts with `eyJ` (base64url of `{"`); the searcher is built once.
static JWT_PREFIX: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"eyJ"));

static JWT_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*").expect("static regex")
});

/// Replaces every JWT-shaped string with `<redacted-jwt sha256:...>`, so dead letters and error
/// messages can quote a bad record without leaking a token that may still be valid.
pub fn redact_jwts(bytes: &[u8]) -> Cow<'_, [u8]> {
    // Nearly every record has no token: a plain substring search settles that fastest.
    if JWT_PREFIX.find(bytes).is_none() {
        return Cow::Borrowed(bytes);
    }
    JWT_SHAPE.replace_all(bytes, |caps: &regex::bytes::Captures<'_>| {
        let token = String::from_utf8_lossy(&caps[0]);
        format!("<redacted-jwt {}>", token_fingerprint(&token)).into_bytes()
    })
}

/// Whether anything JWT-shaped is left (the invariant stored bytes keep: none).
pub fn contains_jwt(bytes: &[u8]) -> bool {
    JWT_PREFIX.find(bytes).is_some() && JWT_SHAPE.is_match(bytes)
}

/// [`redact_jwts`] for text.
pub fn redact_jwts_str(text: &str) -> String {
    String::from_utf8_lossy(&redact_jwts(text.as_bytes())).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

    #[test]
    fn fingerprint_is_stable_and_prefixed() {
        let f = token_fingerprint(JWT);
        assert!(f.starts_with("sha256:"));
        assert_eq!(f.len(), 7 + 64);
        assert_eq!(f, token_fingerprint(&format!(" {JWT}\n")));
        assert_ne!(f, token_fingerprint("other"));
    }

    #[test]
    fn redaction_removes_every_token() {
        let text = format!(r#"{{"token":"{JWT}","again":"Bearer {JWT}"}}"#);
        let out = redact_jwts_str(&text);
        assert!(!out.contains(JWT), "{out}");
        assert_eq!(out.matches("<redacted-jwt sha256:").count(), 2);
        assert!(contains_jwt(text.as_bytes()));
        assert!(!contains_jwt(out.as_bytes()));
    }

    #[test]
    fn redaction_leaves_plain_text_borrowed() {
        assert!(matches!(redact_jwts(b"no tokens here"), Cow::Borrowed(_)));
    }

    #[test]
    fn dedup_key_separates_sources_and_ids() {
        let a = dedup_key(Source::AwsCloudtrail, "e1");
        assert_eq!(a, dedup_key(Source::AwsCloudtrail, "e1"));
        assert_ne!(a, dedup_key(Source::HcpIssuance, "e1"));
        assert_ne!(a, dedup_key(Source::AwsCloudtrail, "e2"));
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
    }
}
