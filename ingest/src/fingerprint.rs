//! Hashes that stand in for secrets and identities: token fingerprints, dedup keys, redaction.
//!
//! A raw bearer token must never reach ClickHouse, a log line or an HTTP response. Everything that
//! could carry one goes through [`redact_secrets`] or is replaced by [`token_fingerprint`].

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

/// The literal beginnings of every secret shape below, found in one pass (the regex engine's
/// SIMD literal search; ~0.2 µs for a 2 KB record): nearly every text has none of them, and then
/// nothing else runs. Only distinctive literals: a short one of JSON's commonest bytes (`"s.` for
/// legacy Vault tokens) would make the search crawl; those tokens, deprecated since Vault 1.10,
/// are still caught in any text where something else is suspect.
static PREFILTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"eyJ",                                     // a JWT's header, base64url of `{"`
        r"|\\u00",                                  // a JSON escape that may hide any of these
        r"|hv[sbr]\.",                              // Vault service, batch and recovery tokens
        r"|IQoJb3JpZ2lu|FwoGZXIvYXdz|FQoGZXIvYXdz", // AWS session tokens
        r"|ecret_access_key|ecretAccessKey|ECRET_ACCESS_KEY|ecretaccesskey",
        r#"|"token"|"jwt"|_token"|"client_secret"|"password""#, // JSON fields holding one
        r"|<redacted-", // a stand-in: the text held a secret
    ))
    .expect("static regex")
});

/// Every JWT starts with `eyJ`; the searcher is built once.
static JWT_PREFIX: LazyLock<memchr::memmem::Finder<'static>> =
    LazyLock::new(|| memchr::memmem::Finder::new(b"eyJ"));

/// Something shaped like a JWS compact token: three base64url segments, the first a JSON header.
static JWT_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*").expect("static regex")
});

/// Vault tokens (`hvs.`, `hvb.`, `hvr.`, and the legacy `s.`/`b.` with 24 characters) and AWS
/// session tokens.
static BEARER_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\bhv[sbr]\.[A-Za-z0-9_-]{20,}",
        r#"|(?:^|(?P<pre>["\s=]))(?P<legacy>[sb]\.[A-Za-z0-9]{24})\b"#,
        r"|(?:IQoJb3JpZ2lu|FwoGZXIvYXdz|FQoGZXIvYXdz)[A-Za-z0-9/+=]{20,}",
    ))
    .expect("static regex")
});

/// A secret named by its key: an AWS secret access key, or a JSON field that holds a token, a
/// client secret or a password. Group 2 is the value.
static NAMED_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r#"(?i)((?:aws_)?secret_?access_?key["']?\s*[:=]\s*["']?)([A-Za-z0-9/+=]{40})"#,
        r#"|("(?:token|jwt|id_token|access_token|refresh_token|client_secret|password)"\s*:\s*")([^"\\]{8,})"#,
    ))
    .expect("static regex")
});

/// `\u00XX` escapes of printable ASCII, which JSON allows for any character: a token written
/// `\u0065yJ…` is still a token.
static ASCII_ESCAPE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\u00([2-7][0-9A-Fa-f])").expect("static regex"));

fn placeholder(kind: &str, secret: &[u8]) -> Vec<u8> {
    let secret = String::from_utf8_lossy(secret);
    format!("<redacted-{kind} {}>", token_fingerprint(&secret)).into_bytes()
}

/// Replaces every secret-shaped string with `<redacted-jwt sha256:...>` or
/// `<redacted-secret sha256:...>`: JWTs, Vault tokens, AWS session tokens, AWS secret access
/// keys and token, secret and password fields of JSON, also when JSON escapes spell them. Stored
/// rows, dead letters and error messages can then quote what was received without leaking a
/// credential that may still be valid; the fingerprint still matches a token a team holds.
pub fn redact_secrets(bytes: &[u8]) -> Cow<'_, [u8]> {
    if !PREFILTER.is_match(bytes) {
        return Cow::Borrowed(bytes);
    }
    let mut text: Cow<'_, [u8]> = Cow::Borrowed(bytes);
    if memchr::memmem::find(bytes, b"\\u00").is_some() {
        let unescaped = ASCII_ESCAPE.replace_all(&text, |c: &regex::bytes::Captures<'_>| {
            let byte =
                u8::from_str_radix(std::str::from_utf8(&c[1]).unwrap_or("20"), 16).unwrap_or(b' ');
            // A quote or a backslash must stay escaped for the JSON to stay valid.
            if byte == b'"' || byte == b'\\' {
                c[0].to_vec()
            } else {
                vec![byte]
            }
        });
        text = Cow::Owned(unescaped.into_owned());
    }
    let mut changed = matches!(text, Cow::Owned(_));
    let mut out = text.into_owned();
    if JWT_PREFIX.find(&out).is_some() {
        let replaced = JWT_SHAPE.replace_all(&out, |c: &regex::bytes::Captures<'_>| {
            placeholder("jwt", &c[0])
        });
        if let Cow::Owned(r) = replaced {
            out = r;
            changed = true;
        }
    }
    let replaced = BEARER_SHAPE.replace_all(&out, |c: &regex::bytes::Captures<'_>| {
        // A legacy token is matched with the character before it, which stays.
        match c.name("legacy") {
            Some(token) => {
                let mut v = c.name("pre").map_or(Vec::new(), |p| p.as_bytes().to_vec());
                v.extend(placeholder("secret", token.as_bytes()));
                v
            }
            None => placeholder("secret", &c[0]),
        }
    });
    if let Cow::Owned(r) = replaced {
        out = r;
        changed = true;
    }
    let replaced = NAMED_SECRET.replace_all(&out, |c: &regex::bytes::Captures<'_>| {
        let (key, value) = match (c.get(1), c.get(2), c.get(3), c.get(4)) {
            (Some(k), Some(v), _, _) | (_, _, Some(k), Some(v)) => (k.as_bytes(), v.as_bytes()),
            _ => return c[0].to_vec(),
        };
        // Already a stand-in: a fingerprint, Vault's HMAC, a redaction, AWS's placeholder.
        if [&b"sha256:"[..], b"hmac-sha256:", b"<"]
            .iter()
            .any(|p| value.starts_with(p))
        {
            return c[0].to_vec();
        }
        let mut v = key.to_vec();
        v.extend(placeholder("secret", value));
        v
    });
    if let Cow::Owned(r) = replaced {
        out = r;
        changed = true;
    }
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(bytes)
    }
}

/// Whether a text may hold a secret, or already holds a stand-in for one: one fast pass. A
/// record for which this is false holds no secret in any field taken from it.
pub fn may_hold_secret(bytes: &[u8]) -> bool {
    PREFILTER.is_match(bytes)
}

/// Whether anything secret-shaped is left (the invariant stored bytes keep: none).
pub fn contains_secret(bytes: &[u8]) -> bool {
    matches!(redact_secrets(bytes), Cow::Owned(ref r) if r != bytes)
}

/// Whether a text holds a JWT (a lookup key that must be fingerprinted before it is queried).
pub fn contains_jwt(bytes: &[u8]) -> bool {
    JWT_PREFIX.find(bytes).is_some() && JWT_SHAPE.is_match(bytes)
}

/// [`redact_secrets`] for text.
pub fn redact_secrets_str(text: &str) -> String {
    String::from_utf8_lossy(&redact_secrets(text.as_bytes())).into_owned()
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
        let out = redact_secrets_str(&text);
        assert!(!out.contains(JWT), "{out}");
        assert_eq!(out.matches("<redacted-jwt sha256:").count(), 2);
        assert!(contains_jwt(text.as_bytes()));
        assert!(!contains_jwt(out.as_bytes()));
    }

    #[test]
    fn redaction_leaves_plain_text_borrowed() {
        assert!(matches!(
            redact_secrets(b"no tokens here"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn dedup_key_separates_sources_and_ids() {
        let a = dedup_key(Source::AwsCloudtrail, "e1");
        assert_eq!(a, dedup_key(Source::AwsCloudtrail, "e1"));
        assert_ne!(a, dedup_key(Source::HcpIssuance, "e1"));
        assert_ne!(a, dedup_key(Source::AwsCloudtrail, "e2"));
        assert_ne!(hash_parts(&[b"ab", b"c"]), hash_parts(&[b"a", b"bc"]));
    }

    #[test]
    fn every_secret_shape_is_redacted_and_plain_text_is_kept() {
        let session = format!("IQoJb3JpZ2luX2VjEJr{}", "A".repeat(200));
        let cases = [
            format!("curl/8.0 {JWT}"),
            r#"{"userAgent":"\u0065yJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"}"#.to_owned(),
            "X-Vault-Token: hvs.CAESIJ0123456789abcdefghijklmnopqrstuv".to_owned(),
            // A legacy Vault token where an unHMAC'd audit device or a client puts one.
            r#"{"client_token":"s.Aa1Bb2Cc3Dd4Ee5Ff6Gg7Hh8"}"#.to_owned(),
            format!("sessionToken={session}"),
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
            r#"{"provider":"vault","token":"not-a-jwt-but-a-secret"}"#.to_owned(),
        ];
        for case in &cases {
            let out = redact_secrets_str(case);
            assert!(out.contains("<redacted-"), "{case} -> {out}");
            for secret in [
                JWT,
                "hvs.CAES",
                "Aa1Bb2Cc3Dd4",
                "IQoJb3Jp",
                "wJalrXUtnFEMI",
                "not-a-jwt",
            ] {
                assert!(!out.contains(secret), "{case} -> {out}");
            }
            assert!(!contains_secret(out.as_bytes()), "{out}");
            // JSON stays JSON: a stand-in replaces a value's text, never its quotes.
            if case.starts_with('{') {
                serde_json::from_str::<serde_json::Value>(&out)
                    .unwrap_or_else(|e| panic!("{case} -> {out}: {e}"));
            }
        }
        // What looks alike but is no secret stays as it is.
        for plain in [
            "sts.amazonaws.com",
            "s3.amazonaws.com aws-sdk-go-v2/1.30.5",
            r#"{"client_token":"hmac-sha256:5f1c","sessionToken":"<encoded session token blob>"}"#,
            r#"{"token_fingerprint":"sha256:ab12"}"#,
            "organization:acme:project:p:workspace:w:run_phase:plan",
        ] {
            assert!(
                matches!(redact_secrets(plain.as_bytes()), Cow::Borrowed(_)),
                "{plain}"
            );
        }
    }
}
