//! CloudTrail IAM calls that change the trust root, as `trust_change` rows.
//!
//! Who may exchange an HCP token for AWS credentials is decided by two things: the role's trust
//! policy (`UpdateAssumeRolePolicy`) and the account's OIDC provider for the issuer (its
//! existence, thumbprints and client ids = accepted audiences). A change to either silently
//! widens or breaks every workspace that relies on it (domain.md §2.1, D11), so each call is kept
//! with the caller, the object changed and, in `raw`, the new policy document.

use super::{arn_field, issuer_from_provider_arn};
use crate::formats::{JsonStr, Rejection, parse_json, parse_time};
use crate::model::{EventKind, EventRow, Source, Text, ip_from_text, outcome};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::borrow::Cow;

/// The IAM calls that change the trust root.
pub const TRUST_EVENTS: [&str; 6] = [
    "UpdateAssumeRolePolicy",
    "CreateOpenIDConnectProvider",
    "DeleteOpenIDConnectProvider",
    "UpdateOpenIDConnectProviderThumbprint",
    "AddClientIDToOpenIDConnectProvider",
    "RemoveClientIDFromOpenIDConnectProvider",
];

pub fn is_trust_change(source: &str, name: &str) -> bool {
    source == "iam.amazonaws.com" && TRUST_EVENTS.contains(&name)
}

#[derive(Debug, Deserialize)]
struct Record<'a> {
    #[serde(rename = "eventTime", borrow)]
    event_time: Cow<'a, str>,
    #[serde(rename = "eventName", borrow)]
    event_name: Cow<'a, str>,
    #[serde(rename = "eventID", borrow)]
    event_id: Cow<'a, str>,
    #[serde(rename = "awsRegion", borrow, default)]
    aws_region: Option<JsonStr<'a>>,
    #[serde(rename = "sourceIPAddress", borrow, default)]
    source_ip_address: Option<JsonStr<'a>>,
    #[serde(rename = "userAgent", borrow, default)]
    user_agent: Option<JsonStr<'a>>,
    #[serde(rename = "errorCode", borrow, default)]
    error_code: Option<JsonStr<'a>>,
    #[serde(rename = "errorMessage", borrow, default)]
    error_message: Option<JsonStr<'a>>,
    #[serde(rename = "recipientAccountId", borrow, default)]
    recipient_account_id: Option<JsonStr<'a>>,
    #[serde(rename = "userIdentity", borrow, default)]
    user_identity: Option<Caller<'a>>,
    #[serde(rename = "requestParameters", borrow, default)]
    request: Option<Request<'a>>,
    #[serde(rename = "responseElements", borrow, default)]
    response: Option<Response<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Caller<'a> {
    #[serde(borrow, default)]
    arn: Option<JsonStr<'a>>,
    #[serde(rename = "accessKeyId", borrow, default)]
    access_key_id: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Request<'a> {
    #[serde(rename = "roleName", borrow, default)]
    role_name: Option<JsonStr<'a>>,
    #[serde(rename = "openIDConnectProviderArn", borrow, default)]
    provider_arn: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    url: Option<JsonStr<'a>>,
    #[serde(rename = "clientID", borrow, default)]
    client_id: Option<JsonStr<'a>>,
    #[serde(rename = "clientIDList", borrow, default)]
    client_id_list: Option<Vec<JsonStr<'a>>>,
    /// `UpdateAssumeRolePolicy`'s new trust policy, a JSON document in a string.
    #[serde(rename = "policyDocument", borrow, default)]
    policy_document: Option<JsonStr<'a>>,
}

/// The issuer of the first OIDC provider a trust policy document lets in (`Principal.Federated`),
/// or empty when it trusts none (a role for a service, an account, SAML). CloudTrail writes the
/// document as JSON text, URL-encoded by some clients.
fn federated_issuer(document: &str) -> Text {
    let decoded;
    let text = if document.trim_start().starts_with('{') {
        document
    } else {
        decoded = percent_encoding::percent_decode_str(document).decode_utf8_lossy();
        &decoded
    };
    let Ok(policy) = serde_json::from_str::<serde_json::Value>(text) else {
        return Text::default();
    };
    let statements = match &policy["Statement"] {
        serde_json::Value::Array(list) => list.iter().collect(),
        one => vec![one],
    };
    statements
        .into_iter()
        .flat_map(|st| match &st["Principal"]["Federated"] {
            serde_json::Value::String(one) => vec![one.as_str()],
            serde_json::Value::Array(many) => many.iter().filter_map(|v| v.as_str()).collect(),
            _ => Vec::new(),
        })
        .map(issuer_from_provider_arn)
        .find(|issuer| !issuer.is_empty())
        .unwrap_or_default()
}

#[derive(Debug, Default, Deserialize)]
struct Response<'a> {
    #[serde(rename = "openIDConnectProviderArn", borrow, default)]
    provider_arn: Option<JsonStr<'a>>,
}

/// Normalizes one trust-changing IAM call.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Result<EventRow, Rejection> {
    let record: Record<'_> = parse_json(bytes)?;
    let event_time = parse_time(&record.event_time)
        .ok_or_else(|| Rejection::invalid_value("eventTime", &record.event_time))?;
    if record.event_id.is_empty() {
        return Err(Rejection::invalid_value("eventID", ""));
    }
    let mut row = EventRow::new(
        EventKind::TrustChange,
        Source::AwsCloudtrail,
        record.event_id.as_ref().into(),
        "aws",
        event_time,
        ingest_time,
    );
    row.event_name = record.event_name.as_ref().into();
    match record.error_code.as_deref() {
        Some(code) if !code.is_empty() => {
            row.outcome = outcome::FAILURE.into();
            row.error_code = code.into();
            row.error_message = record.error_message.as_deref().unwrap_or("").into();
        }
        _ => row.outcome = outcome::SUCCESS.into(),
    }
    let account = record.recipient_account_id.as_deref().unwrap_or("");
    row.target_account = account.into();
    let request = record.request.unwrap_or_default();
    let response = record.response.unwrap_or_default();
    let caller = record.user_identity.unwrap_or_default();
    if let Some(role) = request.role_name.as_deref() {
        // CloudTrail names the role, not its path; the plain ARN is what trust policies and
        // exchanges name too for roles at `/`. GovCloud and China have their own partitions.
        let partition = super::partition(
            caller.arn.as_deref().unwrap_or(""),
            record.aws_region.as_deref().unwrap_or(""),
        );
        row.target_principal = format!("arn:{partition}:iam::{account}:role/{role}").into();
        // Whom the new policy trusts: the rule judges only roles federated with HCP Terraform
        // (or that the inventory uses).
        row.issuer = request
            .policy_document
            .as_deref()
            .map(federated_issuer)
            .unwrap_or_default();
    } else {
        let provider = request
            .provider_arn
            .as_deref()
            .or(response.provider_arn.as_deref())
            .unwrap_or("");
        row.target_principal = provider.into();
        if let Some(a) = arn_field(provider, 4).filter(|a| !a.is_empty()) {
            row.target_account = a.into();
        }
        row.issuer = match request.url.as_deref() {
            Some(url) if url.starts_with("https://") => url.into(),
            Some(url) => format!("https://{url}").into(),
            None => issuer_from_provider_arn(provider),
        };
    }
    row.audience = match (&request.client_id, &request.client_id_list) {
        (Some(id), _) => (**id).into(),
        (None, Some(list)) => list
            .iter()
            .map(|s| &**s)
            .collect::<Vec<_>>()
            .join(",")
            .into(),
        _ => Default::default(),
    };
    row.actor = caller.arn.as_deref().unwrap_or("").into();
    // The caller's key: if it is a session credtrail saw issued, a run changed its own trust.
    row.session_id = caller.access_key_id.as_deref().unwrap_or("").into();
    row.region = record.aws_region.as_deref().unwrap_or("").into();
    row.source_ip = ip_from_text(record.source_ip_address.as_deref());
    row.user_agent = record.user_agent.as_deref().unwrap_or("").into();
    row.raw = bytes.to_vec();
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trust_policy_names_the_issuer_it_federates() {
        let hcp = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::111122223333:oidc-provider/app.terraform.io"},"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{"app.terraform.io:aud":"aws.workload.identity"}}}]}"#;
        assert_eq!(federated_issuer(hcp), "https://app.terraform.io");
        let encoded: String =
            percent_encoding::utf8_percent_encode(hcp, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        assert_eq!(federated_issuer(&encoded), "https://app.terraform.io");
        // A role for a service, and one statement alone (not in a list).
        let lambda = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}}"#;
        assert_eq!(federated_issuer(lambda), "");
        let many = r#"{"Statement":[{"Principal":{"Federated":["cognito-identity.amazonaws.com","arn:aws:iam::1:oidc-provider/tfe.example.com"]}}]}"#;
        assert_eq!(federated_issuer(many), "https://tfe.example.com");
        assert_eq!(federated_issuer("not json"), "");
    }
}
