//! Optional signature check of captured tokens against the issuer's JWKS
//! (`https://app.terraform.io/.well-known/jwks` for HCP Terraform).
//!
//! `emit` records what it saw whatever the verdict: a token that fails verification is evidence
//! (a forged or foreign token inside a run), so it is sent flagged, not dropped. Only the
//! signature and the algorithm are checked here; times and audiences are the detections' business.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The verdict stored with an issuance record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// The signature does not match the issuer's key.
    Invalid(String),
    /// No key to check against (JWKS unreachable, unknown `kid`, unsupported algorithm).
    Unverifiable(String),
}

impl Verdict {
    /// `verified`, `invalid: …` or `unverifiable: …`.
    pub fn label(&self) -> String {
        match self {
            Verdict::Verified => "verified".into(),
            Verdict::Invalid(why) => format!("invalid: {why}"),
            Verdict::Unverifiable(why) => format!("unverifiable: {why}"),
        }
    }
}

/// The JWKS endpoint of an issuer, for HTTPS issuers only (never fetch keys in clear).
pub fn jwks_url(issuer: &str) -> Option<String> {
    issuer
        .starts_with("https://")
        .then(|| format!("{}/.well-known/jwks", issuer.trim_end_matches('/')))
}

/// Checks `token`'s signature with the key its header names.
pub fn verify(token: &str, keys: &JwkSet) -> Verdict {
    let header = match jsonwebtoken::decode_header(token) {
        Ok(h) => h,
        Err(e) => return Verdict::Invalid(format!("unreadable header: {e}")),
    };
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::ES256
    ) {
        return Verdict::Invalid(format!("algorithm {:?} is not an issuer's", header.alg));
    }
    let Some(kid) = header.kid.as_deref() else {
        return Verdict::Unverifiable("the token names no key (kid)".into());
    };
    let Some(jwk) = keys.find(kid) else {
        return Verdict::Unverifiable(format!("the issuer publishes no key {kid:?}"));
    };
    let key = match DecodingKey::from_jwk(jwk) {
        Ok(k) => k,
        Err(e) => return Verdict::Unverifiable(format!("key {kid:?} unusable: {e}")),
    };
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    match jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation) {
        Ok(_) => Verdict::Verified,
        Err(e) => Verdict::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_issuers_are_fetched() {
        assert_eq!(
            jwks_url("https://app.terraform.io/").as_deref(),
            Some("https://app.terraform.io/.well-known/jwks")
        );
        assert_eq!(jwks_url("http://tfe.local"), None);
    }

    #[test]
    fn unsigned_and_keyless_tokens_are_not_verified() {
        let keys: JwkSet = serde_json::from_str(r#"{"keys":[]}"#).unwrap();
        let none = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
        assert!(matches!(verify(none, &keys), Verdict::Invalid(_)));
        let no_kid = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        assert!(matches!(verify(no_kid, &keys), Verdict::Unverifiable(_)));
    }
}
