//! GCP Cloud Audit Logs: STS `ExchangeToken` and IAM Credentials `GenerateAccessToken` entries
//! into exchange rows.
//!
//! A workload-identity exchange at GCP is two audit entries (domain.md §2.2): STS swaps the HCP
//! token for a federated token (`ExchangeToken`, v1 or v1beta, a Data Access log), then the
//! federated principal impersonates the service account (`GenerateAccessToken`). Both become
//! exchange rows; `session_id` holds the federated principal
//! (`principal://…/workloadIdentityPools/<pool>/subject/<sub>`) on both, which joins them.
//!
//! Records arrive as a LogEntry (single, NDJSON, arrays) or inside a Pub/Sub push envelope
//! (`{"message":{"data":"<base64 LogEntry>"},"subscription":…}`), which `super::envelope`
//! unwraps before this parser sees the record. Changes of workload identity pools, their
//! providers and service accounts' IAM policies are trust changes ([`trust`]); other methods are
//! ignored.

pub mod trust;

use super::{JsonStr, Normalized, Rejection, parse_json, parse_time};
use crate::model::{EventKind, EventRow, Source, Text, ip_from_text, outcome};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Debug, Deserialize)]
struct Entry<'a> {
    #[serde(rename = "insertId", borrow)]
    insert_id: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(rename = "protoPayload", borrow)]
    payload: Payload<'a>,
    #[serde(borrow, default)]
    resource: Option<Resource<'a>>,
}

#[derive(Debug, Deserialize)]
struct Payload<'a> {
    #[serde(rename = "serviceName", borrow, default)]
    service_name: Option<JsonStr<'a>>,
    #[serde(rename = "methodName", borrow)]
    method_name: Cow<'a, str>,
    #[serde(rename = "resourceName", borrow, default)]
    resource_name: Option<JsonStr<'a>>,
    #[serde(rename = "authenticationInfo", borrow, default)]
    authentication: Option<Authentication<'a>>,
    #[serde(rename = "requestMetadata", borrow, default)]
    request_metadata: Option<RequestMetadata<'a>>,
    #[serde(borrow, default)]
    request: Option<Request<'a>>,
    #[serde(borrow, default)]
    metadata: Option<Metadata<'a>>,
    #[serde(default)]
    status: Option<Status<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Authentication<'a> {
    #[serde(rename = "principalSubject", borrow, default)]
    principal_subject: Option<JsonStr<'a>>,
    #[serde(rename = "principalEmail", borrow, default)]
    principal_email: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct RequestMetadata<'a> {
    #[serde(rename = "callerIp", borrow, default)]
    caller_ip: Option<JsonStr<'a>>,
    #[serde(rename = "callerSuppliedUserAgent", borrow, default)]
    user_agent: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    audience: Option<JsonStr<'a>>,
    /// GenerateAccessToken: `projects/-/serviceAccounts/<email>`.
    #[serde(borrow, default)]
    name: Option<JsonStr<'a>>,
    /// GenerateAccessToken: the requested lifetime, `3600s`.
    #[serde(borrow, default)]
    lifetime: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Metadata<'a> {
    #[serde(borrow, default)]
    mapped_principal: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Status<'a> {
    #[serde(default)]
    code: Option<i64>,
    #[serde(borrow, default)]
    message: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Resource<'a> {
    #[serde(borrow, default)]
    labels: Option<ResourceLabels<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct ResourceLabels<'a> {
    #[serde(borrow, default)]
    email_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    project_id: Option<JsonStr<'a>>,
}

/// Just enough to tell our methods from any other audit entry, whose payload may hold anything.
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "protoPayload", borrow)]
    payload: EnvelopePayload<'a>,
}

#[derive(Debug, Deserialize)]
struct EnvelopePayload<'a> {
    #[serde(rename = "methodName", borrow, default)]
    method_name: Option<JsonStr<'a>>,
}

/// Which of the two steps an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    ExchangeToken,
    GenerateAccessToken,
}

impl Method {
    fn of(method_name: &str) -> Option<Method> {
        // `google.identity.sts.v1.SecurityTokenService.ExchangeToken`, `…v1beta…`, and
        // `GenerateAccessToken` with or without its package prefix.
        let last = method_name.rsplit('.').next().unwrap_or("");
        match last {
            "ExchangeToken" if method_name.contains("sts.") || method_name == last => {
                Some(Method::ExchangeToken)
            }
            "GenerateAccessToken" => Some(Method::GenerateAccessToken),
            _ => None,
        }
    }

    fn event_name(self) -> &'static str {
        match self {
            Method::ExchangeToken => "ExchangeToken",
            Method::GenerateAccessToken => "GenerateAccessToken",
        }
    }
}

const IGNORED: &str = "gcp audit entry is not STS ExchangeToken or GenerateAccessToken";

/// Normalizes one LogEntry.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Result<Normalized, Rejection> {
    if trust::may_be(bytes)
        && let Some(change) = trust::normalize(bytes, ingest_time)
    {
        return change.map(|row| Normalized::Event(Box::new(row)));
    }
    let entry: Entry<'_> = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(_) => match parse_json::<Envelope<'_>>(bytes) {
            Ok(e)
                if e.payload
                    .method_name
                    .as_deref()
                    .and_then(Method::of)
                    .is_none() =>
            {
                return Ok(Normalized::Ignored(IGNORED));
            }
            Ok(_) => return Err(parse_json::<Entry<'_>>(bytes).expect_err("failed above")),
            Err(rejection) => return Err(rejection),
        },
    };
    let payload = &entry.payload;
    let Some(method) = Method::of(&payload.method_name) else {
        return Ok(Normalized::Ignored(IGNORED));
    };
    if let Some(service) = payload.service_name.as_deref()
        && !matches!(
            service,
            "sts.googleapis.com" | "iamcredentials.googleapis.com"
        )
    {
        return Ok(Normalized::Ignored(IGNORED));
    }
    let event_time = parse_time(&entry.timestamp)
        .ok_or_else(|| Rejection::invalid_value("timestamp", &entry.timestamp))?;
    if entry.insert_id.is_empty() {
        return Err(Rejection::invalid_value("insertId", ""));
    }

    let mut row = EventRow::new(
        EventKind::Exchange,
        Source::GcpAudit,
        entry.insert_id.as_ref().into(),
        "gcp",
        event_time,
        ingest_time,
    );
    row.event_name = method.event_name().into();
    let status = payload.status.as_ref();
    match status.and_then(|s| s.code).unwrap_or(0) {
        0 => row.outcome = outcome::SUCCESS.into(),
        code => {
            row.outcome = outcome::FAILURE.into();
            row.error_code = status_name(code).into();
            let message = status.and_then(|s| s.message.as_deref()).unwrap_or("");
            row.error_message = Text::from(crate::fingerprint::redact_secrets_str(message));
        }
    }

    let auth = payload.authentication.as_ref();
    let principal_subject = auth
        .and_then(|a| a.principal_subject.as_deref())
        .unwrap_or("");
    let mapped = payload
        .metadata
        .as_ref()
        .and_then(|m| m.mapped_principal.as_deref())
        .unwrap_or("");
    let request = payload.request.as_ref();
    let resource_name = payload.resource_name.as_deref().unwrap_or("");
    match method {
        Method::ExchangeToken => {
            // For a generic OIDC provider principalSubject is the token's `sub` itself.
            row.set_subject(principal_subject);
            row.session_id = mapped.into();
            // The pool provider is what the token was presented to.
            row.target_principal = resource_name.into();
            row.target_account = project_number(resource_name).into();
            row.audience = request
                .and_then(|r| r.audience.as_deref())
                .unwrap_or("")
                .into();
        }
        Method::GenerateAccessToken => {
            // The caller is the federated principal; its last path segment is the `sub`.
            let federated = if principal_subject.starts_with("principal://") {
                principal_subject
            } else {
                mapped
            };
            row.set_subject(federated.rsplit_once("/subject/").map_or("", |(_, s)| s));
            row.session_id = federated.into();
            let labels = entry.resource.as_ref().and_then(|r| r.labels.as_ref());
            let email = request
                .and_then(|r| r.name.as_deref())
                .and_then(|n| n.rsplit_once("/serviceAccounts/").map(|(_, e)| e))
                .filter(|e| e.contains('@'))
                .or(labels.and_then(|l| l.email_id.as_deref()))
                .unwrap_or("");
            row.target_principal = email.into();
            row.target_account = labels
                .and_then(|l| l.project_id.as_deref())
                .unwrap_or("")
                .into();
            row.duration_seconds = request
                .and_then(|r| r.lifetime.as_deref())
                .and_then(|l| l.strip_suffix('s'))
                .and_then(|l| l.split('.').next())
                .and_then(|l| l.parse().ok());
            row.actor = auth
                .and_then(|a| a.principal_email.as_deref())
                .unwrap_or("")
                .into();
        }
    }
    if let Some(meta) = &payload.request_metadata {
        row.source_ip = ip_from_text(meta.caller_ip.as_deref());
        row.user_agent = meta.user_agent.as_deref().unwrap_or("").into();
    }
    row.raw = bytes.to_vec();
    Ok(Normalized::Event(Box::new(row)))
}

/// `projects/<number>/locations/global/workloadIdentityPools/…` -> `<number>`.
fn project_number(resource_name: &str) -> &str {
    resource_name
        .strip_prefix("projects/")
        .and_then(|r| r.split('/').next())
        .filter(|n| *n != "-")
        .unwrap_or("")
}

/// The canonical name of a `google.rpc.Code`, as GCP clients print it.
fn status_name(code: i64) -> String {
    let name = match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        other => return format!("CODE_{other}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_by_name() {
        assert_eq!(
            Method::of("google.identity.sts.v1beta.SecurityTokenService.ExchangeToken"),
            Some(Method::ExchangeToken)
        );
        assert_eq!(
            Method::of("GenerateAccessToken"),
            Some(Method::GenerateAccessToken)
        );
        assert_eq!(Method::of("google.iam.admin.v1.CreateServiceAccount"), None);
    }

    #[test]
    fn project_number_from_pool_provider() {
        assert_eq!(
            project_number("projects/123456/locations/global/workloadIdentityPools/p/providers/x"),
            "123456"
        );
        assert_eq!(project_number("projects/-/serviceAccounts/1"), "");
        assert_eq!(status_name(7), "PERMISSION_DENIED");
        assert_eq!(status_name(99), "CODE_99");
    }
}
