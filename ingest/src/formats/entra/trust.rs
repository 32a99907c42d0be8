//! Entra ID audit log records that change an application's federated identity credentials, as
//! `trust_change` rows.
//!
//! An HCP Terraform workspace signs in to Entra through a federated identity credential on its
//! application: issuer, subject (`organization:…:run_phase:…`, matched exactly) and audience.
//! Adding, changing or removing one is logged as `Update application` with the modified property
//! `FederatedIdentityCredentials` (old and new values as JSON text). The record comes as a
//! diagnostic-settings record (`category: AuditLogs`, camelCase under `properties`), a Log
//! Analytics `AuditLogs` row (PascalCase) or a Microsoft Graph `directoryAudit` (camelCase at the
//! top): fields are looked up in any of those spellings.

use crate::formats::{Rejection, parse_time};
use crate::model::{EventKind, EventRow, Source, outcome};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// Whether a record may be a federated-credential change; cheap, on the bytes.
pub fn may_be(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"FederatedIdentityCredential").is_some()
        || memchr::memmem::find(bytes, b"federated identity credential").is_some()
}

/// `obj[name]` in camelCase or PascalCase.
fn field<'v>(obj: &'v Value, camel: &str) -> &'v Value {
    match &obj[camel] {
        Value::Null => {
            let mut pascal = camel[..1].to_ascii_uppercase();
            pascal.push_str(&camel[1..]);
            &obj[pascal.as_str()]
        }
        v => v,
    }
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The change a record describes, or `None` when it changes no federated credential.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Option<Result<EventRow, Rejection>> {
    let record: Value = serde_json::from_slice(bytes).ok()?;
    // The diagnostic shape nests the audit under `properties`.
    let audit = match &record["properties"] {
        Value::Object(_) => &record["properties"],
        _ => &record,
    };
    let targets = field(audit, "targetResources").as_array()?;
    let modified: Vec<&Value> = targets
        .iter()
        .filter_map(|t| field(t, "modifiedProperties").as_array())
        .flatten()
        .filter(|p| text(field(p, "displayName")).contains("FederatedIdentityCredential"))
        .collect();
    let activity = text(field(audit, "activityDisplayName"));
    if modified.is_empty()
        && !activity
            .to_ascii_lowercase()
            .contains("federated identity credential")
    {
        return None;
    }
    Some(row(
        &record,
        audit,
        targets,
        &modified,
        activity,
        bytes,
        ingest_time,
    ))
}

fn row(
    record: &Value,
    audit: &Value,
    targets: &[Value],
    modified: &[&Value],
    activity: &str,
    bytes: &[u8],
    ingest_time: DateTime<Utc>,
) -> Result<EventRow, Rejection> {
    let time = [
        field(audit, "activityDateTime"),
        field(record, "time"),
        &record["TimeGenerated"],
    ]
    .into_iter()
    .map(text)
    .find(|t| !t.is_empty())
    .unwrap_or("");
    let event_time =
        parse_time(time).ok_or_else(|| Rejection::invalid_value("activityDateTime", time))?;
    let id = text(field(audit, "id"));
    if id.is_empty() {
        return Err(Rejection::invalid_value("id", ""));
    }
    let mut row = EventRow::new(
        EventKind::TrustChange,
        Source::EntraSignin,
        id.into(),
        "azure",
        event_time,
        ingest_time,
    );
    row.event_name = if activity.is_empty() {
        "Update application"
    } else {
        activity
    }
    .into();
    let result = text(field(audit, "result")).to_ascii_lowercase();
    if result.is_empty() || result == "success" {
        row.outcome = outcome::SUCCESS.into();
    } else {
        row.outcome = outcome::FAILURE.into();
        row.error_code = text(field(audit, "resultReason")).into();
    }
    // The application's client id (what the inventory names) is in the details; the target's
    // id is its object id.
    let app_id = field(audit, "additionalDetails")
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| text(field(d, "key")).eq_ignore_ascii_case("AppId"))
        .map(|d| text(field(d, "value")))
        .unwrap_or("");
    let target = targets.first().map_or("", |t| text(field(t, "id")));
    row.target_principal = if app_id.is_empty() { target } else { app_id }.into();
    row.target_account = [
        text(field(record, "tenantId")),
        text(&record["AADTenantId"]),
    ]
    .into_iter()
    .find(|t| !t.is_empty())
    .unwrap_or("")
    .into();
    // The issuer (and audiences) the new credentials trust.
    let (issuer, audience) = modified
        .iter()
        .filter_map(|p| serde_json::from_str::<Value>(text(field(p, "newValue"))).ok())
        .flat_map(|v| match v {
            Value::Array(items) => items,
            one => vec![one],
        })
        .map(|c| {
            let audiences = field(&c, "audiences")
                .as_array()
                .map(|a| a.iter().map(text).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            (
                text(field(&c, "issuer")).trim_end_matches('/').to_owned(),
                audiences,
            )
        })
        .find(|(issuer, _)| !issuer.is_empty())
        .unwrap_or_default();
    row.issuer = issuer.as_str().into();
    row.audience = audience.as_str().into();
    let by = field(audit, "initiatedBy");
    row.actor = [
        text(field(field(by, "user"), "userPrincipalName")),
        text(field(field(by, "app"), "displayName")),
        text(field(field(by, "app"), "servicePrincipalId")),
    ]
    .into_iter()
    .find(|a| !a.is_empty())
    .unwrap_or("")
    .into();
    row.raw = bytes.to_vec();
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW_VALUE: &str = r#"[{\"Name\":\"tfc-network-apply\",\"Issuer\":\"https://app.terraform.io\",\"Subject\":\"organization:acme:project:Default Project:workspace:network:run_phase:*\",\"Audiences\":[\"api://AzureADTokenExchange\"]}]"#;

    fn diagnostic() -> String {
        format!(
            r#"{{"time":"2024-07-09T14:40:00.0000000Z","category":"AuditLogs","operationName":"Update application","tenantId":"8d2c4f70","properties":{{"id":"Directory_4f1a","category":"ApplicationManagement","activityDisplayName":"Update application","activityDateTime":"2024-07-09T14:40:00.0000000Z","result":"success","initiatedBy":{{"user":{{"userPrincipalName":"ana@contoso.com","ipAddress":"203.0.113.9"}}}},"targetResources":[{{"id":"5f6e7d8c-object","displayName":"tfc-network","type":"Application","modifiedProperties":[{{"displayName":"FederatedIdentityCredentials","oldValue":"[]","newValue":"{NEW_VALUE}"}}]}}],"additionalDetails":[{{"key":"User-Agent","value":"Mozilla/5.0"}},{{"key":"AppId","value":"0a6c3b1e-9f24-4e0a-8b7d-3c5e2f1a9b04"}}]}}}}"#
        )
    }

    #[test]
    fn a_federated_credential_update_is_a_trust_change_in_every_shape() {
        let d = diagnostic();
        let la = r#"{"TimeGenerated":"2024-07-09T14:40:00Z","Type":"AuditLogs","Id":"Directory_4f1a","OperationName":"Update application","ActivityDisplayName":"Update application","Result":"success","InitiatedBy":{"user":{"userPrincipalName":"ana@contoso.com"}},"TargetResources":[{"id":"5f6e7d8c-object","type":"Application","modifiedProperties":[{"displayName":"FederatedIdentityCredentials","oldValue":"[]","newValue":"NEW"}]}],"AdditionalDetails":[{"key":"AppId","value":"0a6c3b1e-9f24-4e0a-8b7d-3c5e2f1a9b04"}],"AADTenantId":"8d2c4f70"}"#.replace("NEW", NEW_VALUE);
        for record in [d.as_str(), la.as_str()] {
            assert!(may_be(record.as_bytes()));
            let row = normalize(record.as_bytes(), Utc::now()).unwrap().unwrap();
            assert_eq!(row.event_kind, "trust_change");
            assert_eq!(row.target_principal, "0a6c3b1e-9f24-4e0a-8b7d-3c5e2f1a9b04");
            assert_eq!(row.issuer, "https://app.terraform.io");
            assert_eq!(row.audience, "api://AzureADTokenExchange");
            assert_eq!(row.actor, "ana@contoso.com");
        }
        // Through the format: the audit record is not ignored.
        assert!(matches!(
            crate::formats::entra::normalize(d.as_bytes(), Utc::now()),
            Ok(crate::formats::Normalized::Event(_))
        ));
    }

    #[test]
    fn other_application_changes_are_not_trust_changes() {
        let d = diagnostic().replace("FederatedIdentityCredentials", "DisplayName");
        assert!(normalize(d.as_bytes(), Utc::now()).is_none());
    }
}
