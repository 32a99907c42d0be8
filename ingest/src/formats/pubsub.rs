//! Pub/Sub push envelopes: `{"message": {"data": "<base64>", "messageId": …}, "subscription": …}`.
//!
//! GCP log sinks routed to Pub/Sub reach an HTTP endpoint this way, one LogEntry per push. The
//! envelope is unwrapped before format detection, so the record that is parsed, stored as `raw`
//! or dead-lettered is the entry itself.

use super::{ErrorKind, Rejection, parse_json};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Debug, Deserialize)]
struct Push<'a> {
    #[serde(borrow)]
    message: Message<'a>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    subscription: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// Whether a record looks like a push envelope (cheap; the parse decides).
pub fn is_push(record: &[u8]) -> bool {
    let has = |needle: &[u8]| memchr::memmem::find(record, needle).is_some();
    has(b"\"message\"") && has(b"\"subscription\"") && has(b"\"data\"")
}

/// The payload of a push envelope.
pub fn unwrap(record: &[u8]) -> Result<Vec<u8>, Rejection> {
    let push: Push<'_> = parse_json(record)?;
    let data = push.message.data.trim();
    STANDARD
        .decode(data)
        .or_else(|_| URL_SAFE.decode(data))
        .map_err(|e| {
            Rejection::new(
                ErrorKind::InvalidValue,
                format!("`message.data` is not base64: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_envelopes_unwrap() {
        let env = format!(
            r#"{{"message":{{"data":"{}","messageId":"1"}},"subscription":"projects/p/subscriptions/s"}}"#,
            STANDARD.encode(br#"{"insertId":"x"}"#)
        );
        assert!(is_push(env.as_bytes()));
        assert_eq!(unwrap(env.as_bytes()).unwrap(), br#"{"insertId":"x"}"#);
        let bad = r#"{"message":{"data":"***"},"subscription":"s"}"#;
        assert_eq!(
            unwrap(bad.as_bytes()).unwrap_err().kind,
            ErrorKind::InvalidValue
        );
    }
}
