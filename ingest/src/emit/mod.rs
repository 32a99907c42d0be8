//! Issuance capture inside an HCP Terraform run: find the run's workload identity tokens, decode
//! their claims, fingerprint them, say which provider and alias each serves, and build the
//! issuance records `credtrail emit` sends. The token itself never leaves this module: a
//! [`Found`] token is turned into a [`Record`] (claims and fingerprint) and dropped.
//!
//! Where tokens are found:
//! - `TFC_WORKLOAD_IDENTITY_TOKEN` and `TFC_WORKLOAD_IDENTITY_TOKEN_<TAG>` (manual generation,
//!   the tokens HCP Terraform gives agent hooks);
//! - token files named on the command line (`aws:PROD=/path`);
//! - the token files the dynamic-credentials configuration points at, when the run exposes it as
//!   `TF_VAR_tfc_<provider>_dynamic_credentials` (AWS `shared_config_file` ->
//!   `web_identity_token_file`, GCP `credentials` -> `credential_source.file`, Azure
//!   `oidc_token_file_path`), and `AWS_WEB_IDENTITY_TOKEN_FILE`.
//!   Vault's `token_filename` holds a Vault token, not a JWT, and is never read.

pub mod spool;
pub mod verify;

use crate::alias::variables::{self, Derived, Provider};
use crate::fingerprint::token_fingerprint;
use crate::formats::issuance::decode_jwt_claims;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::path::{Path, PathBuf};

/// A token found in the run, before it is decoded. Deliberately not `Debug`, `Serialize` or
/// `Clone`: nothing can print or copy the token by accident.
pub struct Found {
    /// Where it was found (`env:TFC_WORKLOAD_IDENTITY_TOKEN_PROD`, `file:/path`).
    pub origin: String,
    /// What the location says about provider and tag, if anything.
    pub provider: Option<Provider>,
    pub tag: String,
    token: String,
}

/// An issuance record as the collector's `issuance` format takes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// A provider, or `unknown` when the token's audience matches no configuration.
    pub provider: String,
    pub alias_tag: String,
    pub token_fingerprint: String,
    pub claims: Box<RawValue>,
    /// The signature check's verdict, when one was asked for (`verified`, `invalid: …`,
    /// `unverifiable: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// A token that could not be used, reported without the token.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    pub origin: String,
    pub token_fingerprint: String,
    pub reason: String,
}

/// An explicit token file: `PROVIDER[:TAG]=PATH`.
pub fn parse_token_file_arg(arg: &str) -> Result<(Provider, String, PathBuf), String> {
    let (spec, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg:?}: expected PROVIDER[:TAG]=PATH"))?;
    let (provider, tag) = spec.split_once(':').unwrap_or((spec, ""));
    let provider = Provider::parse(provider)
        .ok_or_else(|| format!("{arg:?}: unknown provider {provider:?}"))?;
    if !tag.is_empty() && !variables::valid_tag(tag) {
        return Err(format!("{arg:?}: invalid alias tag {tag:?}"));
    }
    Ok((provider, tag.to_owned(), PathBuf::from(path)))
}

/// Every token the environment and the named files hold.
pub fn find_tokens(
    env: &[(String, String)],
    files: &[(Provider, String, PathBuf)],
) -> (Vec<Found>, Vec<Skipped>) {
    let mut found = Vec::new();
    let mut skipped = Vec::new();
    for (name, value) in env {
        let tag = if name == "TFC_WORKLOAD_IDENTITY_TOKEN" {
            Some("")
        } else {
            name.strip_prefix("TFC_WORKLOAD_IDENTITY_TOKEN_")
        };
        if let Some(tag) = tag
            && !value.trim().is_empty()
        {
            found.push(Found {
                origin: format!("env:{name}"),
                provider: None,
                tag: tag.to_owned(),
                token: value.trim().to_owned(),
            });
        }
    }
    let mut read = |provider: Provider, tag: &str, path: &Path| match std::fs::read_to_string(path)
    {
        Ok(token) if !token.trim().is_empty() => found.push(Found {
            origin: format!("file:{}", path.display()),
            provider: Some(provider),
            tag: tag.to_owned(),
            token: token.trim().to_owned(),
        }),
        Ok(_) => skipped.push(Skipped {
            origin: format!("file:{}", path.display()),
            token_fingerprint: String::new(),
            reason: "empty token file".into(),
        }),
        Err(e) => skipped.push(Skipped {
            origin: format!("file:{}", path.display()),
            token_fingerprint: String::new(),
            reason: format!("unreadable: {e}"),
        }),
    };
    for (provider, tag, path) in files {
        read(*provider, tag, path);
    }
    for (provider, tag, path) in configured_token_files(env) {
        if !files.iter().any(|(_, _, p)| *p == path) {
            read(provider, &tag, &path);
        }
    }
    (found, skipped)
}

/// The token files the run's dynamic-credentials configuration points at.
fn configured_token_files(env: &[(String, String)]) -> Vec<(Provider, String, PathBuf)> {
    let get = |name: &str| env.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let mut out = Vec::new();
    if let Some(path) = get("AWS_WEB_IDENTITY_TOKEN_FILE") {
        out.push((Provider::Aws, String::new(), PathBuf::from(path)));
    }
    for provider in [Provider::Aws, Provider::Gcp, Provider::Azure] {
        let name = format!("TF_VAR_tfc_{}_dynamic_credentials", provider.as_str());
        let Some(json) = get(&name) else { continue };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        let mut configs = vec![(String::new(), value["default"].clone())];
        if let Some(aliases) = value["aliases"].as_object() {
            configs.extend(aliases.iter().map(|(t, v)| (t.clone(), v.clone())));
        }
        for (tag, config) in configs {
            let path = match provider {
                Provider::Aws => config["shared_config_file"]
                    .as_str()
                    .and_then(aws_token_file),
                Provider::Gcp => config["credentials"].as_str().and_then(gcp_token_file),
                Provider::Azure => config["oidc_token_file_path"].as_str().map(PathBuf::from),
                _ => None,
            };
            if let Some(path) = path {
                out.push((provider, tag, path));
            }
        }
    }
    out
}

/// `web_identity_token_file = PATH` in an AWS shared config file.
fn aws_token_file(config_path: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config_path).ok()?;
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "web_identity_token_file").then(|| PathBuf::from(value.trim()))
    })
}

/// `credential_source.file` in a GCP external-account credentials file (or inline JSON).
fn gcp_token_file(credentials: &str) -> Option<PathBuf> {
    let text = if credentials.trim_start().starts_with('{') {
        credentials.to_owned()
    } else {
        std::fs::read_to_string(credentials).ok()?
    };
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["credential_source"]["file"]
        .as_str()
        .map(PathBuf::from)
}

/// Where signature checks get an issuer's keys (`None`: no check).
pub type KeysFor<'k> = Option<&'k mut dyn FnMut(&str) -> Result<jsonwebtoken::jwk::JwkSet, String>>;

/// Decodes every found token into a record, attributing provider and alias and, with `keys`,
/// checking its signature; the tokens are consumed and dropped here.
pub fn records(
    found: Vec<Found>,
    configured: &Derived,
    mut keys: KeysFor<'_>,
) -> (Vec<Record>, Vec<Skipped>) {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for f in found {
        let fingerprint = token_fingerprint(&f.token);
        let claims = match decode_jwt_claims(&f.token) {
            Ok(c) => c,
            Err(why) => {
                skipped.push(Skipped {
                    origin: f.origin,
                    token_fingerprint: fingerprint,
                    reason: format!("not a usable JWT: {why}"),
                });
                continue;
            }
        };
        let signature = keys.as_mut().map(|keys_for| {
            let issuer = serde_json::from_str::<serde_json::Value>(claims.get())
                .ok()
                .and_then(|c| c["iss"].as_str().map(str::to_owned))
                .unwrap_or_default();
            match keys_for(&issuer) {
                Ok(set) => verify::verify(&f.token, &set).label(),
                Err(why) => verify::Verdict::Unverifiable(why).label(),
            }
        });
        drop(f.token);
        let provider = match f.provider {
            Some(p) => p.as_str().to_owned(),
            None => provider_by_audience(&claims, &f.tag, configured),
        };
        records.push(Record {
            provider,
            alias_tag: f.tag,
            token_fingerprint: fingerprint,
            claims,
            signature,
        });
    }
    (records, skipped)
}

/// The provider whose configuration (for the same tag) expects the token's audience; failing
/// that, the only provider configured for the tag; failing that, `unknown`.
fn provider_by_audience(claims: &RawValue, tag: &str, configured: &Derived) -> String {
    #[derive(Deserialize)]
    struct Aud {
        #[serde(default)]
        aud: serde_json::Value,
    }
    let aud: Vec<String> = match serde_json::from_str::<Aud>(claims.get()).map(|a| a.aud) {
        Ok(serde_json::Value::String(s)) => vec![s],
        Ok(serde_json::Value::Array(v)) => v
            .into_iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let same_tag: Vec<_> = configured
        .configurations
        .iter()
        .filter(|c| c.tag == tag)
        .collect();
    if let Some(c) = same_tag.iter().find(|c| aud.contains(&c.audience)) {
        return c.provider.as_str().to_owned();
    }
    match same_tag.as_slice() {
        [only] => only.provider.as_str().to_owned(),
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(aud: &str) -> String {
        let claims = format!(
            r#"{{"jti":"j-{aud}","iss":"https://app.terraform.io","aud":"{aud}","sub":"organization:acme:project:p:workspace:w:run_phase:plan","iat":1700000000,"exp":1700000300}}"#
        );
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims)
        )
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_tokens_are_attributed_by_audience_and_tag() {
        let e = env(&[
            ("TFC_AWS_PROVIDER_AUTH", "true"),
            ("TFC_AWS_RUN_ROLE_ARN", "arn:aws:iam::1:role/r"),
            ("TFC_VAULT_PROVIDER_AUTH", "true"),
            ("TFC_VAULT_RUN_ROLE", "tfc"),
            ("TFC_AWS_PROVIDER_AUTH_PROD", "true"),
            ("TFC_AWS_RUN_ROLE_ARN_PROD", "arn:aws:iam::2:role/p"),
            (
                "TFC_WORKLOAD_IDENTITY_TOKEN",
                &jwt("vault.workload.identity"),
            ),
            ("TFC_WORKLOAD_IDENTITY_TOKEN_PROD", &jwt("custom")),
            ("TFC_WORKLOAD_IDENTITY_TOKEN_NONE", &jwt("x")),
            ("TFC_WORKLOAD_IDENTITY_TOKEN_BAD", "not-a-jwt"),
        ]);
        let configured = variables::derive(e.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let (found, skipped) = find_tokens(&e, &[]);
        assert!(skipped.is_empty());
        let (records, skipped) = records(found, &configured, None);
        let got: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.provider.as_str(), r.alias_tag.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("vault", ""), ("aws", "PROD"), ("unknown", "NONE")]
        );
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].origin, "env:TFC_WORKLOAD_IDENTITY_TOKEN_BAD");
        assert!(!skipped[0].reason.contains("not-a-jwt"));
        assert_eq!(skipped[0].token_fingerprint, token_fingerprint("not-a-jwt"));
    }

    #[test]
    fn token_file_arguments() {
        let (p, tag, path) = parse_token_file_arg("aws:PROD=/run/token").unwrap();
        assert_eq!(
            (p, tag.as_str(), path),
            (Provider::Aws, "PROD", "/run/token".into())
        );
        assert!(parse_token_file_arg("aws:BAD-TAG=/x").is_err());
        assert!(parse_token_file_arg("oracle=/x").is_err());
        assert!(parse_token_file_arg("aws").is_err());
    }

    #[test]
    fn configured_files_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("aws-token");
        std::fs::write(&token, jwt("aws.workload.identity")).unwrap();
        let shared = dir.path().join("shared-config");
        std::fs::write(
            &shared,
            format!(
                "[default]\nrole_arn = arn:aws:iam::1:role/r\nweb_identity_token_file = {}\n",
                token.display()
            ),
        )
        .unwrap();
        let gcp_token = dir.path().join("gcp-token");
        std::fs::write(&gcp_token, jwt("//iam.googleapis.com/x")).unwrap();
        let creds = format!(
            r#"{{"type":"external_account","credential_source":{{"file":"{}"}}}}"#,
            gcp_token.display()
        );
        let e = vec![
            (
                "TF_VAR_tfc_aws_dynamic_credentials".to_string(),
                format!(
                    r#"{{"default":null,"aliases":{{"PROD":{{"shared_config_file":"{}"}}}}}}"#,
                    shared.display()
                ),
            ),
            (
                "TF_VAR_tfc_gcp_dynamic_credentials".to_string(),
                serde_json::json!({"default": {"credentials": creds}, "aliases": {}}).to_string(),
            ),
        ];
        let (found, skipped) = find_tokens(&e, &[]);
        assert!(skipped.is_empty());
        let got: Vec<(Option<Provider>, &str)> =
            found.iter().map(|f| (f.provider, f.tag.as_str())).collect();
        assert_eq!(
            got,
            vec![(Some(Provider::Aws), "PROD"), (Some(Provider::Gcp), "")]
        );
    }
}
