//! From framed pieces to rows: the one place where a record becomes an event, is ignored, or
//! becomes a dead letter. Sources (HTTP, replay) call [`Normalizer::piece`] and hand the rows to
//! the sink; they never decide a record's fate themselves.

use crate::fingerprint::{hash_parts, redact_secrets, sha256_hex};
use crate::formats::cloudtrail::activity;
use crate::formats::framing::Piece;
use crate::formats::{
    ErrorKind, Normalized, Rejection, detect_source, normalize_record, parse_json, pubsub,
};
use crate::model::{DeadLetterRow, EventRow, SessionCallRow, Source};
use chrono::{DateTime, Utc};

/// A source named by the caller, or `Auto` to detect the format of each record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceChoice {
    Auto,
    Known(Source),
}

impl SourceChoice {
    /// The short names accepted on the command line, in URLs and in `kafka.topics`, for messages.
    pub const NAMES: &'static str = "auto, cloudtrail, gcp, entra, vault, audit_trail, issuance";

    pub fn parse(name: &str) -> Option<SourceChoice> {
        if name == "auto" {
            Some(SourceChoice::Auto)
        } else {
            Source::parse(name).map(SourceChoice::Known)
        }
    }

    /// The metric and dead-letter label of the choice.
    pub fn label(self) -> &'static str {
        match self {
            SourceChoice::Auto => "auto",
            SourceChoice::Known(s) => s.as_str(),
        }
    }
}

/// What became of one piece.
#[derive(Debug)]
pub enum Outcome {
    Event(Box<EventRow>),
    /// An API call made with a run's AWS session (`cloudtrail.session_activity` on).
    SessionCall(Box<SessionCallRow>),
    Ignored(&'static str),
    Dead(Box<DeadLetterRow>),
}

/// Normalizes pieces with shared settings.
#[derive(Debug, Clone)]
pub struct Normalizer {
    /// How many raw bytes a dead letter keeps.
    pub max_dead_letter_bytes: usize,
    /// Whether CloudTrail calls made with runs' sessions are aggregated (else ignored).
    pub session_activity: bool,
}

impl Normalizer {
    /// Normalizes one piece; `origin` names the input (`file:PATH`, `http`), the piece adds its
    /// position.
    pub fn piece(
        &self,
        choice: SourceChoice,
        origin: &str,
        piece: Piece,
        now: DateTime<Utc>,
    ) -> Outcome {
        let position = piece.position();
        let origin = format!("{origin}:{position}");
        match piece {
            Piece::Broken(b) => Outcome::Dead(Box::new(self.dead_letter(
                choice.label(),
                origin,
                &b.rejection,
                &b.bytes,
                b.size,
                now,
            ))),
            Piece::Record(mut r) => {
                // A Pub/Sub push carries its record base64-encoded; the record is what counts.
                if pubsub::is_push(&r.bytes) {
                    match pubsub::unwrap(&r.bytes) {
                        Ok(inner) => r.bytes = inner,
                        Err(rejection) => {
                            let size = r.bytes.len() as u64;
                            return Outcome::Dead(Box::new(self.dead_letter(
                                choice.label(),
                                origin,
                                &rejection,
                                &r.bytes,
                                size,
                                now,
                            )));
                        }
                    }
                }
                let source = match choice {
                    SourceChoice::Known(s) => Some(s),
                    SourceChoice::Auto => detect_source(&r.bytes),
                };
                let result = match source {
                    Some(source) => normalize_record(source, &r.bytes, now),
                    // Not valid JSON says more than "no known format".
                    None => parse_json::<serde::de::IgnoredAny>(&r.bytes).and(Err(Rejection::new(
                        ErrorKind::UnknownFormat,
                        "record matches no known format (CloudTrail, GCP audit, Entra sign-in, \
                         Vault audit, HCP audit trail or issuance)",
                    ))),
                };
                match result {
                    Ok(Normalized::Event(row)) => Outcome::Event(row),
                    Ok(Normalized::Ignored(why)) => {
                        let call = (self.session_activity && source == Some(Source::AwsCloudtrail))
                            .then(|| activity::session_call(&r.bytes))
                            .flatten();
                        match call {
                            Some(call) => Outcome::SessionCall(Box::new(call)),
                            None => Outcome::Ignored(why),
                        }
                    }
                    Err(rejection) => {
                        let label = source.map_or(choice.label(), Source::as_str);
                        let size = r.bytes.len() as u64;
                        Outcome::Dead(Box::new(
                            self.dead_letter(label, origin, &rejection, &r.bytes, size, now),
                        ))
                    }
                }
            }
        }
    }

    /// Builds a dead letter: size-capped, JWT-redacted raw bytes plus the hash of the original.
    pub fn dead_letter(
        &self,
        source: &str,
        origin: String,
        rejection: &Rejection,
        bytes: &[u8],
        size: u64,
        now: DateTime<Utc>,
    ) -> DeadLetterRow {
        let raw_sha256 = sha256_hex(bytes);
        // Redacted whole, then capped: a cut could leave half a token that no longer looks like
        // one. Past a few cap lengths the rest cannot show up in the kept bytes anyway.
        let head = &bytes[..bytes
            .len()
            .min(self.max_dead_letter_bytes.saturating_mul(4))];
        let redacted = redact_secrets(head);
        let capped = &redacted[..redacted.len().min(self.max_dead_letter_bytes)];
        DeadLetterRow {
            received_time: DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now),
            dedup_key: hash_parts(&[source.as_bytes(), origin.as_bytes(), raw_sha256.as_bytes()]),
            source: source.to_owned(),
            origin,
            error_kind: rejection.kind.as_str().to_owned(),
            reason: rejection.reason.clone(),
            raw_size: size,
            raw_sha256,
            raw: capped.to_vec(),
        }
    }
}
