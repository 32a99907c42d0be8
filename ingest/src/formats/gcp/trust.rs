//! GCP Admin Activity entries that change the trust root of workload identity federation, as
//! `trust_change` rows.
//!
//! Who may turn an HCP Terraform token into GCP credentials is decided by the workload identity
//! pool and its provider (issuer, allowed audiences, attribute condition) and by the IAM policy of
//! the service account the federated principal impersonates (`roles/iam.workloadIdentityUser`).
//! Each change of those is kept with its caller and, for providers, the issuer it names; the
//! rule judges which of them are HCP Terraform's.

use crate::formats::{Rejection, parse_time};
use crate::model::{EventKind, EventRow, Source, ip_from_text, outcome};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// The methods (last segment of `methodName`) that change the trust root.
const POOL_METHODS: [&str; 8] = [
    "CreateWorkloadIdentityPoolProvider",
    "UpdateWorkloadIdentityPoolProvider",
    "DeleteWorkloadIdentityPoolProvider",
    "UndeleteWorkloadIdentityPoolProvider",
    "CreateWorkloadIdentityPool",
    "UpdateWorkloadIdentityPool",
    "DeleteWorkloadIdentityPool",
    "UndeleteWorkloadIdentityPool",
];

/// Whether an entry may be a trust change; cheap, on the bytes.
pub fn may_be(bytes: &[u8]) -> bool {
    let has = |needle: &[u8]| memchr::memmem::find(bytes, needle).is_some();
    has(b"WorkloadIdentityPool") || (has(b"SetIAMPolicy") && has(b"serviceAccounts/"))
}

/// The trust change an entry records, or `None` for any other method.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Option<Result<EventRow, Rejection>> {
    let entry: Value = serde_json::from_slice(bytes).ok()?;
    let payload = &entry["protoPayload"];
    let method = payload["methodName"].as_str()?;
    let last = method.rsplit('.').next().unwrap_or("");
    let resource = payload["resourceName"].as_str().unwrap_or("");
    let pool = POOL_METHODS.contains(&last);
    let account_policy =
        last.eq_ignore_ascii_case("SetIAMPolicy") && resource.contains("/serviceAccounts/");
    if !pool && !account_policy {
        return None;
    }
    Some(row(&entry, bytes, last, resource, pool, ingest_time))
}

fn row(
    entry: &Value,
    bytes: &[u8],
    method: &str,
    resource: &str,
    pool: bool,
    ingest_time: DateTime<Utc>,
) -> Result<EventRow, Rejection> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let time = text(&entry["timestamp"]);
    let event_time =
        parse_time(&time).ok_or_else(|| Rejection::invalid_value("timestamp", &time))?;
    let id = text(&entry["insertId"]);
    if id.is_empty() {
        return Err(Rejection::invalid_value("insertId", ""));
    }
    let payload = &entry["protoPayload"];
    let mut row = EventRow::new(
        EventKind::TrustChange,
        Source::GcpAudit,
        id.into(),
        "gcp",
        event_time,
        ingest_time,
    );
    row.event_name = method.into();
    match payload["status"]["code"].as_i64().unwrap_or(0) {
        0 => row.outcome = outcome::SUCCESS.into(),
        code => {
            row.outcome = outcome::FAILURE.into();
            row.error_code = super::status_name(code).into();
            let message = payload["status"]["message"].as_str().unwrap_or("");
            row.error_message =
                crate::model::Text::from(crate::fingerprint::redact_secrets_str(message));
        }
    }
    if pool {
        // `projects/<number>/locations/global/workloadIdentityPools/<pool>[/providers/<p>]`
        row.target_principal = resource.into();
        row.target_account = resource
            .strip_prefix("projects/")
            .and_then(|r| r.split('/').next())
            .unwrap_or("")
            .into();
        let provider = &payload["request"]["workloadIdentityPoolProvider"];
        row.issuer = provider["oidc"]["issuerUri"]
            .as_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .into();
        row.audience = provider["oidc"]["allowedAudiences"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
            .into();
    } else {
        // `projects/-/serviceAccounts/<email>` (or the project id, or the unique id).
        let account = resource
            .rsplit_once("/serviceAccounts/")
            .map_or("", |(_, a)| a);
        let email = if account.contains('@') {
            account.to_owned()
        } else {
            text(&entry["resource"]["labels"]["email_id"])
        };
        row.target_principal = email.as_str().into();
        row.target_account = text(&entry["resource"]["labels"]["project_id"]).into();
    }
    row.actor = text(&payload["authenticationInfo"]["principalEmail"]).into();
    row.source_ip = ip_from_text(payload["requestMetadata"]["callerIp"].as_str());
    row.user_agent = text(&payload["requestMetadata"]["callerSuppliedUserAgent"]).into();
    row.raw = bytes.to_vec();
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Admin Activity entry of `gcloud iam workload-identity-pools providers update-oidc`.
    const UPDATE: &str = r#"{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","status":{},"authenticationInfo":{"principalEmail":"admin@acme.com"},"requestMetadata":{"callerIp":"203.0.113.7","callerSuppliedUserAgent":"google-cloud-sdk gcloud/470.0.0"},"serviceName":"iam.googleapis.com","methodName":"google.iam.v1.WorkloadIdentityPools.UpdateWorkloadIdentityPoolProvider","authorizationInfo":[{"resource":"projects/123456789012/locations/global/workloadIdentityPools/tfc-pool/providers/tfc-provider","permission":"iam.workloadIdentityPoolProviders.update","granted":true}],"resourceName":"projects/123456789012/locations/global/workloadIdentityPools/tfc-pool/providers/tfc-provider","request":{"@type":"type.googleapis.com/google.iam.v1.UpdateWorkloadIdentityPoolProviderRequest","workloadIdentityPoolProvider":{"name":"projects/123456789012/locations/global/workloadIdentityPools/tfc-pool/providers/tfc-provider","attributeCondition":"true","oidc":{"issuerUri":"https://app.terraform.io/","allowedAudiences":["gcp.workload.identity"]}},"updateMask":"attributeCondition,oidc"}},"insertId":"1x2y3z4a5b6c","resource":{"type":"audited_resource","labels":{"service":"iam.googleapis.com","method":"google.iam.v1.WorkloadIdentityPools.UpdateWorkloadIdentityPoolProvider","project_id":"acme-prod"}},"timestamp":"2024-07-09T14:20:00.123456Z","severity":"NOTICE","logName":"projects/acme-prod/logs/cloudaudit.googleapis.com%2Factivity"}"#;

    #[test]
    fn a_pool_provider_update_is_a_trust_change_naming_its_issuer() {
        assert!(may_be(UPDATE.as_bytes()));
        let row = normalize(UPDATE.as_bytes(), Utc::now()).unwrap().unwrap();
        assert_eq!(row.event_kind, "trust_change");
        assert_eq!(row.event_name, "UpdateWorkloadIdentityPoolProvider");
        assert_eq!(
            row.target_principal,
            "projects/123456789012/locations/global/workloadIdentityPools/tfc-pool/providers/tfc-provider"
        );
        assert_eq!(
            (row.issuer.as_str(), row.target_account.as_str()),
            ("https://app.terraform.io", "123456789012")
        );
        assert_eq!(row.actor, "admin@acme.com");
    }

    #[test]
    fn a_service_account_policy_change_names_the_account() {
        let set = r#"{"protoPayload":{"status":{},"authenticationInfo":{"principalEmail":"admin@acme.com"},"serviceName":"iam.googleapis.com","methodName":"google.iam.admin.v1.SetIAMPolicy","resourceName":"projects/-/serviceAccounts/tfc-apply@acme-prod.iam.gserviceaccount.com","serviceData":{"policyDelta":{"bindingDeltas":[{"action":"ADD","role":"roles/iam.workloadIdentityUser","member":"principalSet://iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/tfc-pool/*"}]}}},"insertId":"s1","resource":{"type":"service_account","labels":{"email_id":"tfc-apply@acme-prod.iam.gserviceaccount.com","project_id":"acme-prod"}},"timestamp":"2024-07-09T14:30:00Z"}"#;
        let row = normalize(set.as_bytes(), Utc::now()).unwrap().unwrap();
        assert_eq!(
            row.target_principal,
            "tfc-apply@acme-prod.iam.gserviceaccount.com"
        );
        // Other IAM methods are not trust changes.
        let get = UPDATE.replace(
            "Pools.UpdateWorkloadIdentityPoolProvider",
            "Pools.GetWorkloadIdentityPoolProvider",
        );
        assert!(normalize(get.as_bytes(), Utc::now()).is_none());
    }
}
