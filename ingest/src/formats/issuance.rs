//! HCP Terraform workload identity tokens, as issuance rows.
//!
//! A record is what `credtrail emit` (or any issuance collector) sends:
//!
//! ```json
//! {"provider": "aws", "alias_tag": "PROD", "token_fingerprint": "sha256:…", "claims": {…}}
//! ```
//!
//! `claims` are the decoded JWT claims (standard and `terraform_*`, module-test tokens too). A
//! sender may instead put the raw JWT in `token`: it is decoded here, fingerprinted and dropped, so
//! the stored `raw` is always rebuilt from claims and never holds the token.

use super::{JsonStr, Normalized, Rejection, parse_json};
use crate::fingerprint::{redact_jwts, token_fingerprint};
use crate::model::{EventKind, EventRow, Source, Text, outcome};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Providers HCP Terraform mints tokens for, and `unknown` for a token (a manual-generation one
/// seen by `credtrail emit`) whose audience matches no configured provider.
pub const PROVIDERS: [&str; 6] = ["aws", "gcp", "azure", "vault", "hcp", "unknown"];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record<'a> {
    #[serde(borrow)]
    provider: Cow<'a, str>,
    #[serde(borrow, default)]
    alias_tag: Cow<'a, str>,
    #[serde(borrow, default)]
    token_fingerprint: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    claims: Option<&'a RawValue>,
    #[serde(borrow, default)]
    token: Option<JsonStr<'a>>,
    /// `credtrail emit`'s signature verdict, kept in `raw`.
    #[serde(borrow, default)]
    signature: Option<JsonStr<'a>>,
}

/// The claims credtrail keeps; every other claim stays in `raw`.
#[derive(Debug, Deserialize)]
pub struct Claims<'a> {
    #[serde(borrow, default)]
    pub jti: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub iss: Option<JsonStr<'a>>,
    #[serde(default)]
    pub aud: Option<Audience<'a>>,
    #[serde(borrow)]
    pub sub: Cow<'a, str>,
    pub iat: i64,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(borrow, default)]
    pub terraform_organization_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub terraform_project_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub terraform_workspace_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub terraform_run_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub terraform_run_phase: Option<JsonStr<'a>>,
}

/// `aud` is a string in HCP tokens but may be an array in JWTs generally.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Audience<'a> {
    One(#[serde(borrow)] Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl Audience<'_> {
    fn joined(&self) -> String {
        match self {
            Audience::One(a) => a.as_ref().into(),
            Audience::Many(v) => v.join(","),
        }
    }
}

/// What is stored as `raw`: the record minus any token.
#[derive(Serialize)]
struct Stored<'a> {
    provider: &'a str,
    alias_tag: &'a str,
    token_fingerprint: &'a str,
    claims: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'a str>,
}

/// Normalizes one issuance record.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Result<Normalized, Rejection> {
    let record: Record<'_> = parse_json(bytes)?;
    if !PROVIDERS.contains(&record.provider.as_ref()) {
        return Err(Rejection::invalid_value("provider", &record.provider));
    }
    check_alias_tag(&record.alias_tag)?;

    let decoded;
    let (claims_raw, fingerprint): (&RawValue, String) = match (&record.token, record.claims) {
        (Some(token), _) => {
            let fingerprint = token_fingerprint(token);
            decoded = decode_jwt_claims(token).map_err(|why| Rejection {
                kind: super::ErrorKind::InvalidToken,
                reason: format!("`token` is not a usable JWT ({why}); token {fingerprint}"),
            })?;
            (decoded.as_ref(), fingerprint)
        }
        (None, Some(claims)) => {
            let fingerprint = record.token_fingerprint.as_deref().unwrap_or("");
            if !is_fingerprint(fingerprint) {
                return Err(Rejection::invalid_value("token_fingerprint", fingerprint));
            }
            (claims, fingerprint.into())
        }
        (None, None) => return Err(Rejection::missing("claims` or `token")),
    };
    let claims: Claims<'_> =
        parse_json(claims_raw.get().as_bytes()).map_err(|r| r.within("claims"))?;

    let issued_at = DateTime::from_timestamp(claims.iat, 0)
        .filter(|t| t.timestamp() > 0 && t.timestamp() < i64::from(u32::MAX))
        .ok_or_else(|| Rejection::invalid_value("claims.iat", &claims.iat.to_string()))?;
    let expires_at = match claims.exp {
        None => None,
        Some(exp) => Some(
            DateTime::from_timestamp(exp, 0)
                .filter(|t| t.timestamp() > 0 && t.timestamp() < i64::from(u32::MAX))
                .ok_or_else(|| Rejection::invalid_value("claims.exp", &exp.to_string()))?,
        ),
    };
    // The jti names the token; without one (a non-HCP token) the fingerprint does.
    let event_id = match claims.jti.as_deref() {
        Some(jti) if !jti.is_empty() => jti.into(),
        _ => fingerprint.clone(),
    };

    let mut row = EventRow::new(
        EventKind::Issuance,
        Source::HcpIssuance,
        event_id.into(),
        &record.provider,
        issued_at,
        ingest_time,
    );
    row.event_name = "WorkloadIdentityToken".into();
    row.outcome = outcome::ISSUED.into();
    row.set_subject(&claims.sub);
    if let Some(phase) = claims.terraform_run_phase.as_deref() {
        row.run_phase = phase.into();
    }
    row.issuer = claims.iss.as_deref().unwrap_or("").into();
    row.audience = claims
        .aud
        .as_ref()
        .map(Audience::joined)
        .unwrap_or_default()
        .into();
    row.org_id = owned(&claims.terraform_organization_id);
    row.project_id = owned(&claims.terraform_project_id);
    row.workspace_id = owned(&claims.terraform_workspace_id);
    row.run_id = owned(&claims.terraform_run_id);
    row.jti = owned(&claims.jti);
    row.token_fingerprint = fingerprint.as_str().into();
    row.alias_tag = record.alias_tag.as_ref().into();
    row.token_issued_at = Some(issued_at);
    row.token_expires_at = expires_at;
    row.duration_seconds = claims
        .exp
        .and_then(|exp| u32::try_from(exp - claims.iat).ok());

    let stored = Stored {
        provider: &record.provider,
        alias_tag: &record.alias_tag,
        token_fingerprint: &fingerprint,
        claims: claims_raw,
        signature: record.signature.as_deref(),
    };
    let raw = serde_json::to_vec(&stored).expect("issuance record serializes");
    row.raw = redact_jwts(&raw).into_owned();
    Ok(Normalized::Event(Box::new(row)))
}

fn owned(v: &Option<JsonStr<'_>>) -> Text {
    v.as_deref().unwrap_or("").into()
}

/// Tags may hold only letters, digits and underscores, and `TYPE` is reserved (domain.md §1.3).
fn check_alias_tag(tag: &str) -> Result<(), Rejection> {
    let valid = tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && tag != "TYPE";
    if valid {
        Ok(())
    } else {
        Err(Rejection::invalid_value("alias_tag", tag))
    }
}

fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Decodes the claims segment of a compact JWS without verifying it (the signature is the
/// cloud's business; credtrail records what was presented). Errors never quote the token.
pub fn decode_jwt_claims(token: &str) -> Result<Box<RawValue>, String> {
    let mut parts = token.trim().split('.');
    let (Some(_header), Some(payload), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("expected three dot-separated segments".into());
    };
    let json = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| format!("claims segment is not base64url: {e}"))?;
    let claims: Box<RawValue> =
        serde_json::from_slice(&json).map_err(|e| format!("claims segment is not JSON: {e}"))?;
    if !claims.get().starts_with('{') {
        return Err("claims segment is not a JSON object".into());
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT","kid":"k1"}"#),
            URL_SAFE_NO_PAD.encode(claims.as_bytes()),
            URL_SAFE_NO_PAD.encode(b"signature")
        )
    }

    #[test]
    fn raw_token_is_decoded_fingerprinted_and_never_stored() {
        let token = jwt(
            r#"{"jti":"j-1","iss":"https://app.terraform.io","aud":"aws.workload.identity","sub":"organization:acme:project:Default Project:workspace:web:run_phase:plan","iat":1700000000,"nbf":1699999995,"exp":1700000300,"terraform_run_id":"run-abc","terraform_workspace_id":"ws-1","terraform_run_phase":"plan"}"#,
        );
        let record = format!(r#"{{"provider":"aws","alias_tag":"PROD","token":"{token}"}}"#);
        let Normalized::Event(row) = normalize(record.as_bytes(), Utc::now()).unwrap() else {
            panic!("expected an event")
        };
        assert_eq!(row.jti, "j-1");
        assert_eq!(row.run_id, "run-abc");
        assert_eq!(row.workspace_name, "web");
        assert_eq!(row.project_name, "Default Project");
        assert_eq!(row.alias_tag, "PROD");
        assert_eq!(row.duration_seconds, Some(300));
        assert_eq!(row.token_fingerprint, token_fingerprint(&token));
        let raw = String::from_utf8(row.raw.clone()).unwrap();
        assert!(!raw.contains(&token), "raw must not hold the token: {raw}");
        assert!(raw.contains("\"jti\":\"j-1\""), "{raw}");
    }

    #[test]
    fn garbage_token_is_rejected_without_echoing_it() {
        let record = br#"{"provider":"aws","token":"eyJhbGciOi.notbase64!!.sig"}"#;
        let err = normalize(record, Utc::now()).unwrap_err();
        assert_eq!(err.kind, super::super::ErrorKind::InvalidToken);
        assert!(!err.reason.contains("notbase64"), "{}", err.reason);
    }

    #[test]
    fn alias_tags_follow_the_documented_rules() {
        assert!(check_alias_tag("ALIAS_1").is_ok());
        assert!(check_alias_tag("").is_ok());
        assert!(check_alias_tag("TYPE").is_err());
        assert!(check_alias_tag("bad-tag").is_err());
    }
}
