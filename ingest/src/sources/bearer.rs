//! Bearer-token authentication for credtrail's HTTP endpoints (the collector, the forensic
//! API). Tokens are kept only as SHA-256 digests and compared in constant time against every
//! known digest, so neither memory dumps nor timing say which token is valid.

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Bearer {
    digests: Vec<[u8; 32]>,
    /// `http.allow_unauthenticated`: admit every request (tests, demos).
    open: bool,
}

impl Bearer {
    pub fn new(tokens: &[String], allow_unauthenticated: bool) -> Bearer {
        Bearer {
            digests: tokens
                .iter()
                .map(|t| Sha256::digest(t.as_bytes()).into())
                .collect(),
            open: allow_unauthenticated,
        }
    }

    /// The request's `Authorization: Bearer …` is a known token (or no token is needed).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        if self.open {
            return true;
        }
        // The scheme is case-insensitive (RFC 7235): `Bearer`, `bearer`, `BEARER`.
        let Some(presented) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token)
        else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut ok = subtle::Choice::from(0u8);
        for known in &self.digests {
            ok |= known.ct_eq(&digest);
        }
        ok.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn only_known_tokens_are_admitted() {
        let b = Bearer::new(&["s3cret".into()], false);
        assert!(b.admits(&with("s3cret")));
        assert!(!b.admits(&with("guess")));
        assert!(!b.admits(&HeaderMap::new()));
        assert!(Bearer::new(&[], true).admits(&HeaderMap::new()));
        assert!(!Bearer::new(&[], false).admits(&with("")));
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let mut h = HeaderMap::new();
            h.insert(
                header::AUTHORIZATION,
                format!("{scheme} s3cret").parse().unwrap(),
            );
            assert!(b.admits(&h), "{scheme}");
        }
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, "Basic s3cret".parse().unwrap());
        assert!(!b.admits(&basic));
    }
}
