//! HCP Terraform workload identity tokens, as issuance rows.
//!
//! A record is what `credtrail emit` (or any issuance collector) sends, in one of two shapes:
//!
//! ```json
//! {"provider": "aws", "alias_tag": "PROD", "token_fingerprint": "sha256:…", "claims": {…}}
//! {"iss": "https://app.terraform.io", "aud": "…", "sub": "organization:…", "jti": "…", "iat": …,
//!  "terraform_run_id": "run-…", …, "provider": "aws", "alias": "PROD", "token_sha256": "…"}
//! ```
//!
//! The first nests the decoded JWT claims (standard and `terraform_*`, module-test tokens too);
//! the second *is* the decoded claims, with what the emitter knows beside them. Emitters spell
//! those differently: the alias as `alias_tag`, `alias` or `tag`; the token's hash as
//! `token_fingerprint`, `token_sha256` or `fingerprint` (with or without `sha256:`); the provider
//! by HCP Terraform's names or the Terraform providers' (`google`, `azurerm`). A record without a
//! provider gets it from its audience: a provider's default audience here, the inventory's
//! configured audiences in attribution (`unknown` until then).
//!
//! A sender may instead put the raw JWT in `token`: it is decoded here, fingerprinted and
//! dropped, so the stored `raw` is always rebuilt from claims and never holds the token.

use super::{JsonStr, Normalized, Rejection, parse_json};
use crate::fingerprint::token_fingerprint;
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

/// What an issuance record says beside the claims, in every spelling accepted.
#[derive(Debug, Deserialize)]
struct Record<'a> {
    #[serde(borrow, default)]
    provider: Option<JsonStr<'a>>,
    #[serde(borrow, default, alias = "alias", alias = "tag")]
    alias_tag: Option<JsonStr<'a>>,
    #[serde(
        borrow,
        default,
        alias = "token_sha256",
        alias = "fingerprint",
        alias = "token_hash"
    )]
    token_fingerprint: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    claims: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "jwt")]
    token: Option<JsonStr<'a>>,
    /// `credtrail emit`'s signature verdict, kept in `raw`.
    #[serde(borrow, default)]
    signature: Option<JsonStr<'a>>,
    /// Present when the record is the claims themselves.
    #[serde(borrow, default)]
    sub: Option<&'a RawValue>,
}

/// A provider as emitters name it, in HCP Terraform's terms.
fn provider_named(name: &str) -> Option<&'static str> {
    let lower = name.trim().to_ascii_lowercase();
    let canonical = match lower.as_str() {
        "google" | "google-beta" | "gcp" => "gcp",
        "azurerm" | "azuread" | "azure" | "entra" | "azapi" => "azure",
        other => other,
    };
    PROVIDERS.iter().copied().find(|p| *p == canonical)
}

/// The provider a default audience belongs to (domain.md §1.1); GCP's is the workload provider's
/// resource name.
pub fn provider_by_default_audience(audience: &str) -> Option<&'static str> {
    match audience {
        "aws.workload.identity" => Some("aws"),
        "vault.workload.identity" => Some("vault"),
        "api://AzureADTokenExchange" => Some("azure"),
        "hcp.workload.identity" => Some("hcp"),
        a if a.contains("iam.googleapis.com/projects/") => Some("gcp"),
        _ => None,
    }
}

/// `sha256:<hex>` from either spelling; `None` if it is no SHA-256.
fn fingerprint_spelled(s: &str) -> Option<String> {
    let hex = s.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// A JWT NumericDate: seconds as an integer or a float, or a string of either.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum NumericDate<'a> {
    Int(i64),
    Float(f64),
    Text(#[serde(borrow)] Cow<'a, str>),
}

impl NumericDate<'_> {
    fn seconds(&self) -> Option<i64> {
        match self {
            NumericDate::Int(i) => Some(*i),
            NumericDate::Float(f) if f.is_finite() => Some(f.trunc() as i64),
            NumericDate::Float(_) => None,
            NumericDate::Text(t) => t
                .trim()
                .parse::<i64>()
                .ok()
                .or_else(|| super::parse_time(t).map(|t| t.timestamp())),
        }
    }
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
    #[serde(borrow)]
    pub iat: NumericDate<'a>,
    #[serde(borrow, default)]
    pub exp: Option<NumericDate<'a>>,
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
    let alias_tag = record.alias_tag.as_deref().unwrap_or("").trim();
    check_alias_tag(alias_tag)?;

    let decoded;
    let whole;
    let (claims_raw, fingerprint): (&RawValue, String) = match (&record.token, record.claims) {
        (Some(token), _) => {
            let fingerprint = token_fingerprint(token);
            decoded = decode_jwt_claims(token).map_err(|why| Rejection {
                kind: super::ErrorKind::InvalidToken,
                reason: format!("`token` is not a usable JWT ({why}); token {fingerprint}"),
            })?;
            (decoded.as_ref(), fingerprint)
        }
        (None, claims) => {
            let claims = match (claims, record.sub) {
                (Some(claims), _) => claims,
                // The record is the claims themselves.
                (None, Some(_)) => {
                    whole = std::str::from_utf8(bytes)
                        .ok()
                        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok())
                        .ok_or_else(|| Rejection::missing("claims` or `token"))?;
                    whole
                }
                (None, None) => return Err(Rejection::missing("claims` or `token")),
            };
            let fingerprint = match record.token_fingerprint.as_deref() {
                Some(f) => fingerprint_spelled(f)
                    .ok_or_else(|| Rejection::invalid_value("token_fingerprint", f))?,
                None => String::new(),
            };
            (claims, fingerprint)
        }
    };
    let claims: Claims<'_> =
        parse_json(claims_raw.get().as_bytes()).map_err(|r| r.within("claims"))?;

    let date = |field: &str, d: &NumericDate<'_>| {
        d.seconds()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .filter(|t| t.timestamp() > 0 && t.timestamp() < i64::from(u32::MAX))
            .ok_or_else(|| Rejection::invalid_value(field, &format!("{d:?}")))
    };
    let issued_at = date("claims.iat", &claims.iat)?;
    let expires_at = claims
        .exp
        .as_ref()
        .map(|exp| date("claims.exp", exp))
        .transpose()?;
    // The jti names the token; without one (a non-HCP token) the fingerprint does.
    let event_id = match claims.jti.as_deref() {
        Some(jti) if !jti.is_empty() => jti.to_owned(),
        _ if !fingerprint.is_empty() => fingerprint.clone(),
        _ => return Err(Rejection::missing("claims.jti` or `token_fingerprint")),
    };
    let audience = claims
        .aud
        .as_ref()
        .map(Audience::joined)
        .unwrap_or_default();
    let provider = match record.provider.as_deref() {
        Some(name) => {
            provider_named(name).ok_or_else(|| Rejection::invalid_value("provider", name))?
        }
        None => provider_by_default_audience(&audience).unwrap_or("unknown"),
    };

    let mut row = EventRow::new(
        EventKind::Issuance,
        Source::HcpIssuance,
        event_id.into(),
        provider,
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
    row.audience = audience.as_str().into();
    row.org_id = owned(&claims.terraform_organization_id);
    row.project_id = owned(&claims.terraform_project_id);
    row.workspace_id = owned(&claims.terraform_workspace_id);
    row.run_id = owned(&claims.terraform_run_id);
    row.jti = owned(&claims.jti);
    row.token_fingerprint = fingerprint.as_str().into();
    row.alias_tag = alias_tag.into();
    if record.alias_tag.is_none() {
        row.alias_match = crate::alias::attribute::ALIAS_UNSTATED.into();
    }
    row.token_issued_at = Some(issued_at);
    row.token_expires_at = expires_at;
    row.duration_seconds =
        expires_at.and_then(|exp| u32::try_from(exp.timestamp() - issued_at.timestamp()).ok());

    let stored = Stored {
        provider,
        alias_tag,
        token_fingerprint: &fingerprint,
        claims: claims_raw,
        signature: record.signature.as_deref(),
    };
    let raw = serde_json::to_vec(&stored).expect("issuance record serializes");
    row.raw = raw;
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

    fn event(record: &str) -> Box<EventRow> {
        match normalize(record.as_bytes(), Utc::now()) {
            Ok(Normalized::Event(row)) => row,
            other => panic!("{record}: {other:?}"),
        }
    }

    const CLAIMS: &str = r#""jti":"j-2","iss":"https://app.terraform.io","aud":"aws.workload.identity.prod","sub":"organization:acme:project:Default Project:workspace:web:run_phase:apply","iat":1700000000,"nbf":1699999995,"exp":1700000300,"terraform_organization_name":"acme","terraform_workspace_id":"ws-1","terraform_run_id":"run-abc","terraform_run_phase":"apply""#;

    #[test]
    fn a_record_that_is_the_claims_is_an_issuance_in_every_spelling() {
        let hex = "ab".repeat(32);
        for (beside, tag, fp) in [
            (
                format!(r#""provider":"aws","alias":"PROD","token_sha256":"{hex}""#),
                "PROD",
                true,
            ),
            (
                format!(r#""provider":"AWS","tag":"PROD","fingerprint":"sha256:{hex}""#),
                "PROD",
                true,
            ),
            (
                format!(
                    r#""provider":"aws","alias_tag":"","token_fingerprint":"sha256:{}""#,
                    hex.to_uppercase()
                ),
                "",
                true,
            ),
            (r#""provider":"aws""#.to_owned(), "", false),
        ] {
            let record = format!("{{{CLAIMS},{beside}}}");
            assert_eq!(
                crate::formats::detect_source(record.as_bytes()),
                Some(Source::HcpIssuance),
                "{record}"
            );
            let row = event(&record);
            assert_eq!(
                (row.provider.as_str(), row.alias_tag.as_str()),
                ("aws", tag)
            );
            assert_eq!((row.jti.as_str(), row.run_id.as_str()), ("j-2", "run-abc"));
            assert_eq!(
                (row.workspace_name.as_str(), row.run_phase.as_str()),
                ("web", "apply")
            );
            assert_eq!(
                row.token_expires_at.map(|t| t.timestamp()),
                Some(1700000300)
            );
            let want = if fp {
                format!("sha256:{hex}")
            } else {
                String::new()
            };
            assert_eq!(row.token_fingerprint, want.as_str());
        }
    }

    #[test]
    fn a_missing_provider_comes_from_a_default_audience() {
        let row = event(&format!(
            "{{{}}}",
            CLAIMS.replace("aws.workload.identity.prod", "vault.workload.identity")
        ));
        assert_eq!(row.provider, "vault");
        // A custom audience is left to the inventory (attribution).
        assert_eq!(event(&format!("{{{CLAIMS}}}")).provider, "unknown");
        let row = event(&format!(r#"{{{CLAIMS},"provider":"google"}}"#));
        assert_eq!(row.provider, "gcp");
        // Dates as floats or strings, as some JWT libraries write them.
        let row = event(&format!(
            "{{{}}}",
            CLAIMS
                .replace("1700000300", "\"1700000300\"")
                .replace("1700000000", "1700000000.25")
        ));
        assert_eq!(row.duration_seconds, Some(300));
    }

    #[test]
    fn a_flat_record_without_a_subject_or_an_id_is_rejected() {
        assert!(normalize(br#"{"provider":"aws","iat":1700000000}"#, Utc::now()).is_err());
        let no_id = format!("{{{}}}", CLAIMS.replace(r#""jti":"j-2","#, ""));
        assert_eq!(
            normalize(no_id.as_bytes(), Utc::now()).unwrap_err().kind,
            super::super::ErrorKind::MissingField
        );
    }
}
