//! Trust policies: which HCP Terraform tokens each federation trust accepts, from the documents
//! the clouds return, reduced to what the `trust-policy-too-broad` rule judges: the `sub`
//! patterns, the audiences and (GCP) the attribute condition of every trusting statement.
//!
//! Accepted documents (JSON; one file may hold several):
//! - AWS: `aws iam get-role` (`{"Role": …}`) and `aws iam list-roles` (`{"Roles": […]}`); the
//!   `AssumeRolePolicyDocument` may be an object or the API's URL-encoded string. Statements
//!   allowing `sts:AssumeRoleWithWebIdentity` from an OIDC provider are kept when the provider is
//!   `app.terraform.io` or their `sub` patterns name an `organization:`.
//! - GCP: `gcloud iam workload-identity-pools providers describe/list` (one provider, a list, or
//!   `{"workloadIdentityPoolProviders": […]}`) whose issuer or attribute mapping is HCP
//!   Terraform's.
//! - Azure: `az ad app federated-credential list` (an array or Graph's `{"value": […]}`),
//!   including flexible credentials' `claimsMatchingExpression`.
//! - Vault: `vault read -format=json auth/<mount>/role/<name>` output with the role's name added
//!   as `"role"` (Vault's output does not carry it).
//!
//! Exact-match conditions become globs with their own `*` and `?` escaped, so one pattern language
//! serves every provider.

use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// One trusting statement of one resource, as stored in `trust_policies`.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct TrustRow {
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub valid_from: DateTime<Utc>,
    pub snapshot_id: String,
    pub provider: String,
    /// Role ARN, workload identity provider name, federated credential, Vault role.
    pub resource: String,
    pub statement: u16,
    pub issuer: String,
    pub sub_patterns: Vec<String>,
    pub audiences: Vec<String>,
    pub condition: String,
    pub document_sha256: String,
    pub origin: String,
}

/// A statement before it is versioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    pub provider: &'static str,
    pub resource: String,
    pub issuer: String,
    pub sub_patterns: Vec<String>,
    pub audiences: Vec<String>,
    pub condition: String,
    pub document_sha256: String,
}

fn sha256(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

/// `*` and `?` of an exact-match value, escaped so the value reads as a glob matching only itself.
fn exact(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('*', "\\*")
        .replace('?', "\\?")
}

/// A string or an array of strings.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn is_hcp_sub(patterns: &[String]) -> bool {
    patterns.iter().any(|p| p.starts_with("organization:"))
}

/// Every trusting statement in a document, whatever its provider.
pub fn from_document(doc: &Value, name_hint: &str) -> Result<Vec<Trust>, String> {
    let mut out = Vec::new();
    if let Some(role) = doc.get("Role") {
        out.extend(aws_role(role)?);
    } else if let Some(roles) = doc.get("Roles").and_then(Value::as_array) {
        for role in roles {
            out.extend(aws_role(role)?);
        }
    } else if let Some(list) = doc
        .get("workloadIdentityPoolProviders")
        .and_then(Value::as_array)
    {
        out.extend(list.iter().filter_map(gcp_provider));
    } else if doc.get("oidc").is_some() && doc.get("name").is_some() {
        out.extend(gcp_provider(doc));
    } else if let Some(data) = doc.get("data")
        && (data.get("bound_claims").is_some() || data.get("bound_audiences").is_some())
    {
        let role = doc.get("role").and_then(Value::as_str).unwrap_or(name_hint);
        out.push(vault_role(role, data));
    } else {
        let items = match doc {
            Value::Array(a) => a.as_slice(),
            _ => match doc.get("value").and_then(Value::as_array) {
                Some(a) => a.as_slice(),
                None => return Err("not a trust policy document this version reads (see `credtrail inventory trust --help`)".into()),
            },
        };
        for item in items {
            if item.get("subject").is_some() || item.get("claimsMatchingExpression").is_some() {
                out.extend(azure_credential(item));
            } else if item.get("oidc").is_some() {
                out.extend(gcp_provider(item));
            }
        }
    }
    Ok(out)
}

fn aws_role(role: &Value) -> Result<Vec<Trust>, String> {
    let arn = role
        .get("Arn")
        .and_then(Value::as_str)
        .ok_or("an AWS role without `Arn`")?;
    let policy = match role.get("AssumeRolePolicyDocument") {
        Some(Value::String(encoded)) => {
            let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8_lossy();
            serde_json::from_str(&decoded)
                .map_err(|e| format!("{arn}: AssumeRolePolicyDocument: {e}"))?
        }
        Some(v) => v.clone(),
        None => return Ok(Vec::new()),
    };
    let statements = match &policy["Statement"] {
        Value::Array(a) => a.clone(),
        v @ Value::Object(_) => vec![v.clone()],
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for st in &statements {
        let allows = st["Effect"].as_str() == Some("Allow")
            && strings(&st["Action"])
                .iter()
                .any(|a| a == "sts:AssumeRoleWithWebIdentity" || a == "sts:*" || a == "*");
        let Some(host) = strings(&st["Principal"]["Federated"])
            .iter()
            .find_map(|f| f.split_once("oidc-provider/").map(|(_, h)| h.to_owned()))
        else {
            continue;
        };
        if !allows {
            continue;
        }
        let mut subs = Vec::new();
        let mut auds = Vec::new();
        if let Some(conditions) = st["Condition"].as_object() {
            for (op, keys) in conditions {
                let positive = !op.contains("Not") && !op.contains("Null");
                let glob = op.contains("Like");
                let Some(keys) = keys.as_object() else {
                    continue;
                };
                for (key, values) in keys {
                    if !positive {
                        continue;
                    }
                    let values = strings(values);
                    if key.ends_with(":sub") {
                        subs.extend(
                            values
                                .iter()
                                .map(|v| if glob { v.clone() } else { exact(v) }),
                        );
                    } else if key.ends_with(":aud") {
                        auds.extend(values);
                    }
                }
            }
        }
        if host != "app.terraform.io" && !is_hcp_sub(&subs) {
            continue;
        }
        out.push(Trust {
            provider: "aws",
            resource: arn.to_owned(),
            issuer: host,
            sub_patterns: subs,
            audiences: auds,
            condition: String::new(),
            document_sha256: sha256(st),
        });
    }
    Ok(out)
}

fn gcp_provider(p: &Value) -> Option<Trust> {
    let name = p.get("name")?.as_str()?;
    let issuer = p["oidc"]["issuerUri"].as_str().unwrap_or("");
    let mapping = p["attributeMapping"].to_string();
    if !issuer.contains("terraform") && !mapping.contains("terraform_") {
        return None;
    }
    Some(Trust {
        provider: "gcp",
        resource: name.to_owned(),
        issuer: issuer.trim_start_matches("https://").to_owned(),
        sub_patterns: Vec::new(),
        audiences: strings(&p["oidc"]["allowedAudiences"]),
        condition: p["attributeCondition"].as_str().unwrap_or("").to_owned(),
        document_sha256: sha256(p),
    })
}

fn azure_credential(c: &Value) -> Option<Trust> {
    let issuer = c["issuer"].as_str().unwrap_or("");
    let mut subs: Vec<String> = c["subject"].as_str().map(exact).into_iter().collect();
    if let Some(expr) = c["claimsMatchingExpression"]["value"].as_str() {
        let re = regex::Regex::new(r"claims\['sub'\]\s+matches\s+'([^']*)'").expect("valid regex");
        subs.extend(re.captures_iter(expr).map(|m| m[1].to_owned()));
    }
    if !issuer.contains("terraform") && !is_hcp_sub(&subs) {
        return None;
    }
    let name = c["name"].as_str().unwrap_or("");
    let id = c["id"].as_str().unwrap_or("");
    Some(Trust {
        provider: "azure",
        resource: if id.is_empty() {
            name.to_owned()
        } else {
            format!("{name} ({id})")
        },
        issuer: issuer.trim_start_matches("https://").to_owned(),
        sub_patterns: subs,
        audiences: strings(&c["audiences"]),
        condition: String::new(),
        document_sha256: sha256(c),
    })
}

fn vault_role(name: &str, data: &Value) -> Trust {
    let glob = data["bound_claims_type"].as_str() == Some("glob");
    let mut subs: Vec<String> = strings(&data["bound_claims"]["sub"])
        .iter()
        .map(|v| if glob { v.clone() } else { exact(v) })
        .collect();
    if let Some(s) = data["bound_subject"].as_str().filter(|s| !s.is_empty()) {
        subs.push(exact(s));
    }
    // Vault also accepts a comma-separated string.
    let audiences = match &data["bound_audiences"] {
        Value::String(s) => s
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect(),
        v => strings(v),
    };
    Trust {
        provider: "vault",
        resource: name.to_owned(),
        issuer: String::new(),
        sub_patterns: subs,
        audiences,
        condition: String::new(),
        document_sha256: sha256(data),
    }
}

/// The rows of one import: per resource, its statements numbered, and a snapshot id that
/// hashes them (an unchanged re-import is skipped).
pub fn rows(trusts: &[Trust], valid_from: DateTime<Utc>, origin: &str) -> Vec<TrustRow> {
    let valid_from = DateTime::from_timestamp(valid_from.timestamp(), 0).unwrap_or(valid_from);
    let mut by_resource: Vec<(&str, &str, Vec<&Trust>)> = Vec::new();
    for t in trusts {
        match by_resource
            .iter_mut()
            .find(|(p, r, _)| *p == t.provider && *r == t.resource)
        {
            Some((_, _, list)) => list.push(t),
            None => by_resource.push((t.provider, &t.resource, vec![t])),
        }
    }
    let mut out = Vec::new();
    for (provider, resource, list) in by_resource {
        let mut h = Sha256::new();
        for t in &list {
            h.update(t.document_sha256.as_bytes());
        }
        let snapshot_id = hex::encode(&h.finalize()[..16]);
        for (i, t) in list.iter().enumerate() {
            out.push(TrustRow {
                valid_from,
                snapshot_id: snapshot_id.clone(),
                provider: provider.into(),
                resource: resource.into(),
                statement: u16::try_from(i).unwrap_or(u16::MAX),
                issuer: t.issuer.clone(),
                sub_patterns: t.sub_patterns.clone(),
                audiences: t.audiences.clone(),
                condition: t.condition.clone(),
                document_sha256: t.document_sha256.clone(),
                origin: origin.into(),
            });
        }
    }
    out
}

/// Latest snapshot id per trusting resource.
pub const LATEST_TRUST_SNAPSHOTS_SQL: &str = "SELECT provider, resource, \
     argMax(snapshot_id, valid_from) FROM trust_policies GROUP BY provider, resource";

/// Writes the rows of resources whose latest stored snapshot differs; returns (written,
/// unchanged) resources.
pub async fn store(
    store: &crate::store::Store,
    rows: &[TrustRow],
) -> Result<(usize, usize), clickhouse::error::Error> {
    let latest: HashMap<(String, String), String> = store
        .client()
        .query(LATEST_TRUST_SNAPSHOTS_SQL)
        .fetch_all::<(String, String, String)>()
        .await?
        .into_iter()
        .map(|(p, r, id)| ((p, r), id))
        .collect();
    let mut written = std::collections::BTreeSet::new();
    let mut unchanged = std::collections::BTreeSet::new();
    let mut insert = store.client().insert::<TrustRow>("trust_policies").await?;
    for r in rows {
        let key = (r.provider.clone(), r.resource.clone());
        if latest.get(&key) == Some(&r.snapshot_id) {
            unchanged.insert(key);
            continue;
        }
        insert.write(r).await?;
        written.insert(key);
    }
    insert.end().await?;
    Ok((written.len(), unchanged.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn aws_statements_keep_sub_and_aud_and_skip_other_issuers() {
        let doc = json!({"Roles": [{
            "Arn": "arn:aws:iam::111122223333:role/tfc-network-prod-apply",
            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow",
                 "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/app.terraform.io"},
                 "Action": "sts:AssumeRoleWithWebIdentity",
                 "Condition": {
                    "StringEquals": {"app.terraform.io:aud": "aws.workload.identity"},
                    "StringLike": {"app.terraform.io:sub": "organization:acme:project:*:workspace:network-prod:run_phase:apply"}}},
                {"Effect": "Allow",
                 "Principal": {"Federated": "arn:aws:iam::111122223333:oidc-provider/token.actions.githubusercontent.com"},
                 "Action": "sts:AssumeRoleWithWebIdentity",
                 "Condition": {"StringLike": {"token.actions.githubusercontent.com:sub": "repo:acme/*"}}}]}},
            {"Arn": "arn:aws:iam::111122223333:role/legacy",
             "AssumeRolePolicyDocument": "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22Federated%22%3A%22arn%3Aaws%3Aiam%3A%3A1%3Aoidc-provider%2Fapp.terraform.io%22%7D%2C%22Action%22%3A%22sts%3AAssumeRoleWithWebIdentity%22%2C%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22app.terraform.io%3Asub%22%3A%22organization%3Aacme%3Aproject%3AP%3Aworkspace%3Aw*%3Arun_phase%3Aplan%22%7D%7D%7D%5D%7D"}]});
        let t = from_document(&doc, "x").unwrap();
        assert_eq!(t.len(), 2, "{t:#?}");
        assert_eq!(t[0].issuer, "app.terraform.io");
        assert_eq!(t[0].audiences, ["aws.workload.identity"]);
        assert_eq!(
            t[0].sub_patterns,
            ["organization:acme:project:*:workspace:network-prod:run_phase:apply"]
        );
        // URL-encoded, exact: the `*` is literal, escaped.
        assert_eq!(t[1].resource, "arn:aws:iam::111122223333:role/legacy");
        assert_eq!(
            t[1].sub_patterns,
            ["organization:acme:project:P:workspace:w\\*:run_phase:plan"]
        );
        assert!(t[1].audiences.is_empty());
    }

    #[test]
    fn gcp_azure_and_vault_documents() {
        let gcp = json!({"workloadIdentityPoolProviders": [{
            "name": "projects/1/locations/global/workloadIdentityPools/hcp/providers/acme",
            "attributeCondition": "assertion.terraform_organization_name == 'acme'",
            "attributeMapping": {"google.subject": "assertion.sub"},
            "oidc": {"issuerUri": "https://app.terraform.io", "allowedAudiences": []}}]});
        let t = from_document(&gcp, "g").unwrap();
        assert_eq!(
            t[0].condition,
            "assertion.terraform_organization_name == 'acme'"
        );
        assert_eq!(t[0].issuer, "app.terraform.io");

        let azure = json!({"value": [
            {"name": "plan", "id": "c1", "issuer": "https://app.terraform.io",
             "subject": "organization:acme:project:P:workspace:w:run_phase:plan",
             "audiences": ["api://AzureADTokenExchange"]},
            {"name": "any", "id": "c2", "issuer": "https://app.terraform.io", "audiences": [],
             "claimsMatchingExpression": {"value": "claims['sub'] matches 'organization:acme:*'", "languageVersion": 1}}]});
        let t = from_document(&azure, "a").unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[1].sub_patterns, ["organization:acme:*"]);
        assert_eq!(t[1].resource, "any (c2)");

        let vault = json!({"role": "tfc-network", "data": {
            "bound_audiences": "vault.workload.identity",
            "bound_claims": {"sub": "organization:acme:project:*:workspace:*:run_phase:*"},
            "bound_claims_type": "glob", "user_claim": "terraform_full_workspace"}});
        let t = from_document(&vault, "ignored").unwrap();
        assert_eq!(t[0].resource, "tfc-network");
        assert_eq!(t[0].audiences, ["vault.workload.identity"]);
        assert_eq!(
            t[0].sub_patterns,
            ["organization:acme:project:*:workspace:*:run_phase:*"]
        );

        assert!(from_document(&json!({"hello": 1}), "x").is_err());
    }

    #[test]
    fn rows_number_statements_and_hash_snapshots() {
        let a = Trust {
            provider: "aws",
            resource: "r".into(),
            issuer: "app.terraform.io".into(),
            sub_patterns: vec!["organization:acme:*".into()],
            audiences: Vec::new(),
            condition: String::new(),
            document_sha256: "1".into(),
        };
        let b = Trust {
            document_sha256: "2".into(),
            ..a.clone()
        };
        let t = "2024-07-09T00:00:00Z".parse().unwrap();
        let rows = rows(&[a.clone(), b], t, "f");
        assert_eq!(rows.iter().map(|r| r.statement).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(rows[0].snapshot_id, rows[1].snapshot_id);
        let alone = super::rows(&[a], t, "f");
        assert_ne!(alone[0].snapshot_id, rows[0].snapshot_id);
    }
}
