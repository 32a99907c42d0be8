//! Source formats: one record's bytes in, one [`EventRow`] (or a reason to reject it) out.
//!
//! Each format is one file that knows its record shape field by field. [`framing`] splits bodies
//! and files into records before they get here; [`normalize_record`] picks the format.
//!
//! Formats never fail a batch: every error is a [`Rejection`] for that record alone, which the
//! caller turns into a dead letter.

pub mod audit_trail;
pub mod cloudtrail;
pub mod entra;
pub mod framing;
pub mod gcp;
pub mod issuance;
pub mod otlp;
pub mod pubsub;
pub mod vault;

use crate::model::{EventRow, Source};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::borrow::Cow;

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
///
/// serde's own `Cow<str>` borrows only as a direct `#[serde(borrow)]` field; inside an `Option`
/// it always allocates, which was the largest cost of a normalized record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonStr<'a>(pub Cow<'a, str>);

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonStr<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = JsonStr<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(JsonStr(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// The result of normalizing one well-formed record.
#[derive(Debug)]
pub enum Normalized {
    Event(Box<EventRow>),
    /// Valid, but not something credtrail stores (another CloudTrail API call). Counted, not kept.
    Ignored(&'static str),
}

/// Why a record could not be normalized; becomes a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: ErrorKind,
    /// Human-readable, with the JSON path when known; never quotes a token.
    pub reason: String,
}

/// Classes of bad input, stored as the dead letter's `error_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidUtf8,
    InvalidJson,
    WrongType,
    MissingField,
    InvalidValue,
    InvalidToken,
    TooLarge,
    Decompression,
    UnknownFormat,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidUtf8 => "invalid_utf8",
            ErrorKind::InvalidJson => "invalid_json",
            ErrorKind::WrongType => "wrong_type",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::InvalidToken => "invalid_token",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Decompression => "decompression",
            ErrorKind::UnknownFormat => "unknown_format",
        }
    }
}

impl Rejection {
    pub fn new(kind: ErrorKind, reason: impl Into<String>) -> Rejection {
        Rejection {
            kind,
            reason: reason.into(),
        }
    }

    pub fn invalid_value(field: &str, value: &str) -> Rejection {
        let shown: String = value.chars().take(80).collect();
        Rejection::new(
            ErrorKind::InvalidValue,
            format!(
                "invalid value at `{field}`: {:?}",
                crate::fingerprint::redact_secrets_str(&shown)
            ),
        )
    }

    pub fn missing(field: &str) -> Rejection {
        Rejection::new(ErrorKind::MissingField, format!("missing field `{field}`"))
    }

    /// Prefixes the JSON path of a nested object's error with the object's field name.
    pub fn within(mut self, field: &str) -> Rejection {
        self.reason = match self.reason.split_once("at `") {
            Some((head, tail)) => format!("{head}at `{field}.{tail}"),
            None => format!("{} (in `{field}`)", self.reason),
        };
        self
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.reason)
    }
}

/// Parses JSON into a typed record. The fast path is a plain `serde_json` parse; only on failure
/// is the input parsed again to name the JSON path and class of the error.
pub fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Rejection> {
    match serde_json::from_slice(bytes) {
        Ok(v) => Ok(v),
        Err(first) => Err(explain_json_error::<T>(bytes, first)),
    }
}

#[cold]
fn explain_json_error<'a, T: Deserialize<'a>>(
    bytes: &'a [u8],
    first: serde_json::Error,
) -> Rejection {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Rejection::new(
            ErrorKind::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        );
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Err(e) => e,
        Ok(_) => return Rejection::new(ErrorKind::InvalidJson, first.to_string()),
    };
    // A path names the input's keys, and a key may be JWT-shaped (found by `fuzz issuance`).
    let path = crate::fingerprint::redact_secrets_str(&err.path().to_string());
    let inner = err.into_inner();
    let message = crate::fingerprint::redact_secrets_str(&inner.to_string());
    let kind = match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            return Rejection::new(ErrorKind::InvalidJson, format!("invalid JSON: {message}"));
        }
        serde_json::error::Category::Io => ErrorKind::InvalidJson,
        serde_json::error::Category::Data if message.starts_with("missing field") => {
            ErrorKind::MissingField
        }
        serde_json::error::Category::Data => ErrorKind::WrongType,
    };
    if path == "." {
        Rejection::new(kind, message)
    } else {
        Rejection::new(kind, format!("{message} at `{path}`"))
    }
}

/// RFC 3339 with or without fractional seconds; the range ClickHouse `DateTime` can hold.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(text.trim())
        .ok()?
        .with_timezone(&Utc);
    (t.timestamp() > 0 && t.timestamp() < i64::from(u32::MAX)).then_some(t)
}

/// Picks the format of a record whose source was not named, by a field only that format has.
/// Issuance comes last: its `"token"` and `"claims"` are the most generic names, and a record
/// that is a token's decoded claims is known by `sub` and `iat` together.
pub fn detect_source(record: &[u8]) -> Option<Source> {
    let has = |needle: &[u8]| memchr::memmem::find(record, needle).is_some();
    if has(b"\"eventSource\"") || cloudtrail::is_digest(record) {
        Some(Source::AwsCloudtrail)
    } else if has(b"\"protoPayload\"") {
        Some(Source::GcpAudit)
    } else if has(b"\"ServicePrincipalId\"")
        || has(b"\"FederatedCredentialId\"")
        || (has(b"\"AppId\"") && has(b"\"ResultType\""))
        || (has(b"\"properties\"") && (has(b"\"appId\"") || has(b"\"category\"")))
        || (has(b"\"Type\"")
            && (has(b"SignInLogs\"") || has(b"SigninLogs\"") || has(b"\"AuditLogs\"")))
    {
        Some(Source::EntraSignin)
    } else if has(b"\"request\"") && has(b"\"time\"") && has(b"\"type\"") {
        Some(Source::VaultAudit)
    } else if has(b"\"resource\"") && has(b"\"accessor_id\"") {
        Some(Source::HcpAuditTrail)
    } else if has(b"\"claims\"") || has(b"\"token\"") || (has(b"\"sub\"") && has(b"\"iat\"")) {
        Some(Source::HcpIssuance)
    } else {
        None
    }
}

/// Normalizes one record of a known source.
pub fn normalize_record(
    source: Source,
    record: &[u8],
    ingest_time: DateTime<Utc>,
) -> Result<Normalized, Rejection> {
    match source {
        Source::AwsCloudtrail => cloudtrail::normalize(record, ingest_time),
        Source::HcpIssuance => issuance::normalize(record, ingest_time),
        Source::GcpAudit => gcp::normalize(record, ingest_time),
        Source::EntraSignin => entra::normalize(record, ingest_time),
        Source::VaultAudit => vault::normalize(record, ingest_time),
        Source::HcpAuditTrail => audit_trail::normalize(record, ingest_time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        b: Inner,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        c: String,
    }

    #[test]
    fn errors_name_their_class_and_path() {
        let e = parse_json::<T>(br#"{"a":1,"b":{"c":5}}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongType);
        assert!(e.reason.ends_with("at `b.c`"), "{}", e.reason);

        let e = parse_json::<T>(br#"{"a":1}"#).unwrap_err();
        assert_eq!(e.kind, ErrorKind::MissingField);

        let e = parse_json::<T>(b"{\"a\":").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidJson);

        let e = parse_json::<T>(b"{\"a\":1,\"b\":{\"c\":\"\xff\"}}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidUtf8);
    }

    #[test]
    fn a_jwt_shaped_key_is_redacted_from_the_path_too() {
        // `fuzz issuance` found it: the path of an error names the offending key.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Strict {
            a: Option<u8>,
        }
        let key = "toeyJprTTz8.-z8.-p";
        let e = parse_json::<Strict>(format!(r#"{{"{key}": 1}}"#).as_bytes()).unwrap_err();
        assert_eq!(e.kind, ErrorKind::WrongType);
        assert!(
            !crate::fingerprint::contains_jwt(e.reason.as_bytes()),
            "{}",
            e.reason
        );
        assert!(e.reason.contains("<redacted-jwt sha256:"), "{}", e.reason);
    }

    #[test]
    fn time_range_matches_clickhouse_datetime() {
        assert!(parse_time("2024-07-09T16:41:37.123Z").is_some());
        assert!(parse_time("1960-01-01T00:00:00Z").is_none());
        assert!(parse_time("2200-01-01T00:00:00Z").is_none());
    }
}
