//! Azure Entra ID service-principal sign-ins into exchange rows.
//!
//! Two shapes carry the same sign-in (domain.md §2.3):
//! - a Log Analytics `AADServicePrincipalSignInLogs` row (PascalCase columns: `AppId`,
//!   `FederatedCredentialId`, `ResultType`, …), as exported or queried;
//! - a diagnostic-settings record (Event Hub, storage), camelCase with the sign-in under
//!   `properties`; its `{"records": [...]}` container is split by `framing`.
//!
//! Entra never logs the token, and logs its `sub` only inside the text of some failures
//! (`Assertion Subject: '…'`), which is where the subject is recovered from.
//!
//! Only service-principal sign-ins with a federated identity credential are exchanges. Every
//! other record an Entra export carries is ignored with its reason, never stored or
//! dead-lettered: user sign-ins (interactive and not), managed-identity sign-ins, audit log
//! records (known by their category or Log Analytics table) other than changes of federated
//! identity credentials (those are trust changes, [`trust`]), and service-principal sign-ins with
//! a client secret or certificate, including failures that name no credential at all but whose
//! error is not about a federated assertion (`AADSTS7000222`, an expired client secret).

pub mod trust;

use super::{JsonStr, Normalized, Rejection, parse_json, parse_time};
use crate::fingerprint::redact_secrets_str;
use crate::model::{EventKind, EventRow, Source, Text, ip_from_text, outcome};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// A Log Analytics row.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Row<'a> {
    #[serde(borrow)]
    time_generated: JsonStr<'a>,
    #[serde(borrow)]
    id: JsonStr<'a>,
    #[serde(borrow, default)]
    app_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    service_principal_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    federated_credential_id: Option<JsonStr<'a>>,
    #[serde(rename = "IPAddress", borrow, default)]
    ip_address: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    resource_display_name: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    result_type: Option<ResultCode<'a>>,
    #[serde(borrow, default)]
    result_description: Option<JsonStr<'a>>,
    #[serde(rename = "AADTenantId", borrow, default)]
    aad_tenant_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    tenant_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    unique_token_identifier: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    client_credential_type: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    service_principal_credential_key_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    service_principal_credential_thumbprint: Option<JsonStr<'a>>,
}

/// A diagnostic-settings record: envelope fields plus the sign-in in `properties`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Diagnostic<'a> {
    #[serde(borrow)]
    time: JsonStr<'a>,
    #[serde(borrow, default)]
    tenant_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    result_type: Option<ResultCode<'a>>,
    #[serde(borrow, default)]
    result_description: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    caller_ip_address: Option<JsonStr<'a>>,
    #[serde(borrow)]
    properties: Properties<'a>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Properties<'a> {
    #[serde(borrow)]
    id: JsonStr<'a>,
    #[serde(borrow, default)]
    app_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    service_principal_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    federated_credential_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    ip_address: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    resource_display_name: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    status: Option<Status<'a>>,
    #[serde(borrow, default)]
    unique_token_identifier: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    client_credential_type: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    service_principal_credential_key_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    service_principal_credential_thumbprint: Option<JsonStr<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status<'a> {
    #[serde(borrow, default)]
    error_code: Option<ResultCode<'a>>,
    #[serde(borrow, default)]
    failure_reason: Option<JsonStr<'a>>,
}

/// `ResultType` is a string in Log Analytics (`"0"`, `"700213"`) and a number in some exports.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ResultCode<'a> {
    Number(i64),
    Text(#[serde(borrow)] JsonStr<'a>),
}

impl ResultCode<'_> {
    fn code(&self) -> String {
        match self {
            ResultCode::Number(n) => n.to_string(),
            ResultCode::Text(t) => t.trim().to_owned(),
        }
    }
}

/// The fields of one sign-in, whichever shape it came in.
struct SignIn<'r> {
    time: &'r str,
    id: &'r str,
    app_id: &'r str,
    service_principal_id: &'r str,
    federated_credential_id: &'r str,
    ip: &'r str,
    resource: &'r str,
    result: String,
    description: &'r str,
    tenant: &'r str,
    token_id: &'r str,
    credential_type: &'r str,
    secret_or_certificate: bool,
}

fn s<'r>(v: &'r Option<JsonStr<'_>>) -> &'r str {
    v.as_deref().unwrap_or("")
}

impl<'r> SignIn<'r> {
    fn from_row(r: &'r Row<'_>) -> SignIn<'r> {
        SignIn {
            time: &r.time_generated,
            id: &r.id,
            app_id: s(&r.app_id),
            service_principal_id: s(&r.service_principal_id),
            federated_credential_id: s(&r.federated_credential_id),
            ip: s(&r.ip_address),
            resource: s(&r.resource_display_name),
            result: r
                .result_type
                .as_ref()
                .map(ResultCode::code)
                .unwrap_or_default(),
            description: s(&r.result_description),
            tenant: if r.aad_tenant_id.is_some() {
                s(&r.aad_tenant_id)
            } else {
                s(&r.tenant_id)
            },
            token_id: s(&r.unique_token_identifier),
            credential_type: s(&r.client_credential_type),
            secret_or_certificate: !s(&r.service_principal_credential_key_id).is_empty()
                || !s(&r.service_principal_credential_thumbprint).is_empty(),
        }
    }

    fn from_diagnostic(d: &'r Diagnostic<'_>) -> SignIn<'r> {
        let p = &d.properties;
        let status = p.status.as_ref();
        let result = status
            .and_then(|st| st.error_code.as_ref())
            .or(d.result_type.as_ref())
            .map(ResultCode::code)
            .unwrap_or_default();
        SignIn {
            time: &d.time,
            id: &p.id,
            app_id: s(&p.app_id),
            service_principal_id: s(&p.service_principal_id),
            federated_credential_id: s(&p.federated_credential_id),
            ip: if p.ip_address.is_some() {
                s(&p.ip_address)
            } else {
                s(&d.caller_ip_address)
            },
            resource: s(&p.resource_display_name),
            result,
            description: status
                .and_then(|st| st.failure_reason.as_deref())
                .unwrap_or(s(&d.result_description)),
            tenant: s(&d.tenant_id),
            token_id: s(&p.unique_token_identifier),
            credential_type: s(&p.client_credential_type),
            secret_or_certificate: !s(&p.service_principal_credential_key_id).is_empty()
                || !s(&p.service_principal_credential_thumbprint).is_empty(),
        }
    }

    fn is_federated(&self) -> bool {
        match self.credential_type {
            "federatedIdentityCredential" => true,
            "" if self.secret_or_certificate => false,
            "" if !self.federated_credential_id.is_empty() => true,
            // Named nothing: a success is taken for what the table holds, a failure only when
            // its error is about a federated assertion.
            "" => {
                let code = self.result.trim_start_matches("AADSTS");
                matches!(code, "" | "0" | "Success")
                    || FEDERATED_ERRORS.contains(&code)
                    || self.description.contains("federated identity")
                    || self.description.contains("Assertion Subject")
            }
            _ => false,
        }
    }
}

const IGNORED: &str = "entra sign-in did not use a federated identity credential";

#[cfg(test)]
#[path = "entra/tests.rs"]
mod classes;

/// Which log a record belongs to: a diagnostic record's `category`, or a Log Analytics row's
/// table (`Type`) or `Category` column.
#[derive(Debug, Deserialize)]
struct Kind<'a> {
    #[serde(borrow, default, alias = "Category")]
    category: Option<JsonStr<'a>>,
    #[serde(rename = "Type", borrow, default)]
    table: Option<JsonStr<'a>>,
}

/// Why a record of another Entra log is not an exchange; `None` for service-principal sign-ins.
fn other_log(bytes: &[u8]) -> Option<&'static str> {
    let kind: Kind<'_> = serde_json::from_slice(bytes).ok()?;
    [kind.table.as_deref(), kind.category.as_deref()]
        .into_iter()
        .flatten()
        .find_map(|name| match name {
            "ServicePrincipalSignInLogs" | "AADServicePrincipalSignInLogs" => None,
            "SignInLogs"
            | "SigninLogs"
            | "NonInteractiveUserSignInLogs"
            | "AADNonInteractiveUserSignInLogs" => {
                Some("entra user sign-in, not a workload exchange")
            }
            "ManagedIdentitySignInLogs" | "AADManagedIdentitySignInLogs" => {
                Some("entra managed-identity sign-in, not a federated exchange")
            }
            "AuditLogs" => Some("entra audit log record, not a sign-in"),
            "" => None,
            _ => Some("entra record of another log, not a service-principal sign-in"),
        })
}

/// Error codes only a federated assertion's sign-in fails with (domain.md §2.3).
const FEDERATED_ERRORS: [&str; 7] = [
    "70021", "70025", "700211", "700212", "700213", "7002138", "700024",
];

/// Normalizes one sign-in record.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Result<Normalized, Rejection> {
    if trust::may_be(bytes)
        && let Some(change) = trust::normalize(bytes, ingest_time)
    {
        return change.map(|row| Normalized::Event(Box::new(row)));
    }
    if let Some(why) = other_log(bytes) {
        return Ok(Normalized::Ignored(why));
    }
    let diagnostic;
    let row;
    let is_diagnostic = memchr::memmem::find(bytes, b"\"properties\"").is_some();
    let sign_in = if is_diagnostic {
        diagnostic = parse_json::<Diagnostic<'_>>(bytes)?;
        SignIn::from_diagnostic(&diagnostic)
    } else {
        row = parse_json::<Row<'_>>(bytes)?;
        SignIn::from_row(&row)
    };
    if !sign_in.is_federated() {
        return Ok(Normalized::Ignored(IGNORED));
    }
    let time_field = if is_diagnostic {
        "time"
    } else {
        "TimeGenerated"
    };
    let event_time = parse_time(sign_in.time)
        .ok_or_else(|| Rejection::invalid_value(time_field, sign_in.time))?;
    if sign_in.id.is_empty() {
        return Err(Rejection::invalid_value("Id", ""));
    }
    let mut out = EventRow::new(
        EventKind::Exchange,
        Source::EntraSignin,
        sign_in.id.into(),
        "azure",
        event_time,
        ingest_time,
    );
    out.event_name = "ServicePrincipalSignIn".into();
    match sign_in.result.as_str() {
        "" | "0" | "Success" => out.outcome = outcome::SUCCESS.into(),
        code => {
            out.outcome = outcome::FAILURE.into();
            out.error_code = if code.starts_with("AADSTS") {
                code.into()
            } else {
                format!("AADSTS{code}").into()
            };
            out.error_message = Text::from(redact_secrets_str(sign_in.description));
        }
    }
    // Failures name the assertion; successes do not, and attribution fills the rest.
    let assertion = |field: &str| {
        [
            format!("Assertion {field}: '"),
            format!("presented assertion {}", field.to_lowercase() + " '"),
        ]
        .iter()
        .find_map(|label| quoted_after(sign_in.description, label))
        .unwrap_or("")
    };
    out.set_subject(assertion("Subject"));
    out.issuer = assertion("Issuer").into();
    out.audience = assertion("Audience").into();
    out.target_principal = sign_in.app_id.into();
    out.target_account = sign_in.tenant.into();
    out.credential_id = sign_in.federated_credential_id.into();
    out.session_id = sign_in.token_id.into();
    // The token Entra issued is for this resource (ARM, Graph, ...).
    out.session_name = sign_in.resource.into();
    out.actor = sign_in.service_principal_id.into();
    out.source_ip = ip_from_text(Some(sign_in.ip));
    out.raw = bytes.to_vec();
    Ok(Normalized::Event(Box::new(out)))
}

/// The text between `label` and the next `'`.
fn quoted_after<'t>(text: &'t str, label: &str) -> Option<&'t str> {
    let start = text.find(label)? + label.len();
    let len = text[start..].find('\'')?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assertion_fields_come_out_of_failure_text() {
        let text = "AADSTS700213: No matching federated identity record found for presented assertion subject 'x'. Assertion Issuer: 'https://app.terraform.io'. Assertion Subject: 'organization:acme:project:p:workspace:w:run_phase:apply'. Assertion Audience: 'api://AzureADTokenExchange'.";
        assert_eq!(
            quoted_after(text, "Assertion Subject: '"),
            Some("organization:acme:project:p:workspace:w:run_phase:apply")
        );
        assert_eq!(
            quoted_after(text, "Assertion Audience: '"),
            Some("api://AzureADTokenExchange")
        );
        assert_eq!(quoted_after("none", "Assertion Subject: '"), None);
    }
}
