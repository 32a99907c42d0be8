//! HashiCorp Vault audit device entries: JWT logins into exchange rows, `renew-self` and
//! `revoke-self` into session renewal and session end rows.
//!
//! The audit device writes one JSON object per line, a `request` entry and then a `response`
//! entry sharing `request.id` (domain.md §2.4). The response entry repeats the whole request and
//! adds the outcome (`error`) and the issued token (`response.auth`), so it alone makes the row,
//! keyed by `request.id`; request entries are counted as ignored. Logins are recognised by their
//! shape under any mount path (`auth/<mount>/login` on a `jwt` or `oidc` mount), so a custom
//! `TFC_VAULT_AUTH_PATH` is covered.
//!
//! What Vault says in clear: the role and whatever `claim_mappings` copied into `auth.metadata`,
//! the display name (the `user_claim` value, `terraform_full_workspace` in HashiCorp's example),
//! TTLs, the caller's address. Token, accessor and request data are HMAC'd by the audit device and
//! are stored HMAC'd: the accessor HMAC is the session id that joins a login to its renewals and
//! its revocation.

use super::{JsonStr, Normalized, Rejection, parse_json, parse_time};
use crate::fingerprint::redact_secrets_str;
use crate::model::{EventKind, EventRow, Source, Text, ip_from_text, outcome, split_colons};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;

#[derive(Debug, Deserialize)]
struct Entry<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    entry_type: Cow<'a, str>,
    /// The calling token's auth: empty-handed for a login, the session's for `renew-self`.
    #[serde(borrow, default)]
    auth: Option<Auth<'a>>,
    #[serde(borrow)]
    request: Request<'a>,
    #[serde(borrow, default)]
    response: Option<Response<'a>>,
    #[serde(borrow, default)]
    error: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Request<'a> {
    #[serde(borrow, default)]
    id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    path: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    mount_type: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    mount_point: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    namespace: Option<Namespace<'a>>,
    #[serde(borrow, default)]
    client_token_accessor: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    remote_address: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    headers: Option<HashMap<Cow<'a, str>, Vec<JsonStr<'a>>>>,
}

#[derive(Debug, Default, Deserialize)]
struct Namespace<'a> {
    #[serde(borrow, default)]
    path: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Response<'a> {
    #[serde(borrow, default)]
    auth: Option<Auth<'a>>,
}

#[derive(Debug, Default, Deserialize)]
struct Auth<'a> {
    #[serde(borrow, default)]
    accessor: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    display_name: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    metadata: Option<HashMap<Cow<'a, str>, JsonStr<'a>>>,
    #[serde(default)]
    token_ttl: Option<i64>,
    #[serde(borrow, default)]
    token_issue_time: Option<JsonStr<'a>>,
}

/// What an entry is, by its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Login,
    Renew,
    Revoke,
}

impl Call {
    fn of(request: &Request<'_>) -> Option<Call> {
        let path = request.path.as_deref().unwrap_or("");
        match path {
            "auth/token/renew-self" => return Some(Call::Renew),
            "auth/token/revoke-self" => return Some(Call::Revoke),
            _ => {}
        }
        let login = path.starts_with("auth/") && path.ends_with("/login");
        let jwt_mount = matches!(request.mount_type.as_deref(), Some("jwt" | "oidc"));
        (login && jwt_mount).then_some(Call::Login)
    }

    fn kind(self) -> EventKind {
        match self {
            Call::Login => EventKind::Exchange,
            Call::Renew => EventKind::SessionRenewal,
            Call::Revoke => EventKind::SessionEnd,
        }
    }

    fn event_name(self) -> &'static str {
        match self {
            Call::Login => "login",
            Call::Renew => "renew-self",
            Call::Revoke => "revoke-self",
        }
    }
}

const IGNORED_REQUEST: &str =
    "vault request entry: the response entry with the same request.id makes the row";
const IGNORED_PATH: &str = "vault audit entry is not a JWT login, renew-self or revoke-self";

/// Normalizes one audit entry.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Result<Normalized, Rejection> {
    let entry: Entry<'_> = parse_json(bytes)?;
    let Some(call) = Call::of(&entry.request) else {
        return Ok(Normalized::Ignored(IGNORED_PATH));
    };
    match entry.entry_type.as_ref() {
        "response" => {}
        "request" => return Ok(Normalized::Ignored(IGNORED_REQUEST)),
        other => return Err(Rejection::invalid_value("type", other)),
    }
    let event_time =
        parse_time(&entry.time).ok_or_else(|| Rejection::invalid_value("time", &entry.time))?;
    let request_id = entry.request.id.as_deref().unwrap_or("");
    if request_id.is_empty() {
        return Err(Rejection::missing("request.id"));
    }
    let mut row = EventRow::new(
        call.kind(),
        Source::VaultAudit,
        request_id.into(),
        "vault",
        event_time,
        ingest_time,
    );
    row.event_name = call.event_name().into();
    match entry.error.as_deref() {
        Some(error) if !error.is_empty() => {
            row.outcome = outcome::FAILURE.into();
            row.error_code = error_code(error).into();
            row.error_message = Text::from(redact_secrets_str(error));
        }
        _ => row.outcome = outcome::SUCCESS.into(),
    }

    // A login's session is the token it issued; a renewal's or revocation's is the caller's.
    let issued = entry.response.as_ref().and_then(|r| r.auth.as_ref());
    let session_auth = match call {
        Call::Login => issued,
        Call::Renew | Call::Revoke => entry.auth.as_ref(),
    };
    let request = &entry.request;
    if let Some(auth) = session_auth {
        apply_auth(&mut row, auth);
    }
    if row.session_id.is_empty() {
        row.session_id = request
            .client_token_accessor
            .as_deref()
            .unwrap_or("")
            .into();
    }
    // A renewal's new TTL is in the response.
    if call == Call::Renew
        && let Some(ttl) = issued.and_then(|a| a.token_ttl)
    {
        row.duration_seconds = u32::try_from(ttl).ok();
        row.session_expiry = Some(event_time + Duration::seconds(ttl));
    }
    // A revoked session ends now, whatever its TTL said.
    if call == Call::Revoke && row.outcome == outcome::SUCCESS {
        row.session_expiry = Some(event_time);
    }
    if row.session_expiry.is_none()
        && let Some(ttl) = row.duration_seconds
    {
        row.session_expiry = Some(event_time + Duration::seconds(i64::from(ttl)));
    }
    // The mount path names the JWT auth method that accepted the token.
    if call == Call::Login {
        row.credential_id = request.mount_point.as_deref().unwrap_or("").into();
    }
    row.target_account = match request.namespace.as_ref().and_then(|n| n.path.as_deref()) {
        None | Some("") => "root".into(),
        Some(path) => path.trim_end_matches('/').into(),
    };
    row.source_ip = ip_from_text(request.remote_address.as_deref());
    row.user_agent = request
        .headers
        .as_ref()
        .and_then(|h| h.iter().find(|(k, _)| k.eq_ignore_ascii_case("user-agent")))
        .and_then(|(_, v)| v.first())
        .map(|v| Text::from(&**v))
        .unwrap_or_default();
    row.raw = bytes.to_vec();
    Ok(Normalized::Event(Box::new(row)))
}

/// Fills what a token's auth block says: role, mapped claims, display name, TTL.
fn apply_auth(row: &mut EventRow, auth: &Auth<'_>) {
    row.session_id = auth.accessor.as_deref().unwrap_or("").into();
    let display = auth.display_name.as_deref().unwrap_or("");
    row.actor = display.into();
    if let Some(ttl) = auth.token_ttl {
        row.duration_seconds = u32::try_from(ttl).ok();
        let issued = auth.token_issue_time.as_deref().and_then(parse_time);
        row.session_expiry = issued.map(|t| t + Duration::seconds(ttl));
    }
    let empty = HashMap::new();
    let meta = auth.metadata.as_ref().unwrap_or(&empty);
    let get = |keys: &[&str]| -> &str {
        keys.iter()
            .find_map(|k| meta.get(*k).map(|v| &**v))
            .unwrap_or("")
    };
    row.target_principal = get(&["role"]).into();
    let sub = get(&["sub"]);
    if !sub.is_empty() {
        row.set_subject(sub);
    } else {
        // `user_claim = terraform_full_workspace` puts `organization:O:project:P:workspace:W`
        // in the display name, after the mount's prefix.
        let full = get(&["terraform_full_workspace"]);
        let full = if full.is_empty() {
            display.find("organization:").map_or("", |i| &display[i..])
        } else {
            full
        };
        apply_full_workspace(row, full);
    }
    let phase = get(&["terraform_run_phase", "run_phase"]);
    if !phase.is_empty() {
        row.run_phase = phase.into();
    }
    row.run_id = get(&["terraform_run_id", "run_id"]).into();
    row.workspace_id = get(&["terraform_workspace_id", "workspace_id"]).into();
    row.org_id = get(&["terraform_organization_id", "organization_id"]).into();
    row.project_id = get(&["terraform_project_id", "project_id"]).into();
    row.jti = get(&["jti"]).into();
    let workspace = get(&["terraform_workspace_name", "workspace_name"]);
    if !workspace.is_empty() {
        row.workspace_name = workspace.into();
    }
}

/// `organization:O:project:P:workspace:W` into the name columns.
fn apply_full_workspace(row: &mut EventRow, full: &str) {
    let mut parts = [""; 7];
    if let Some(6) = split_colons(full, &mut parts)
        && let ["organization", org, "project", project, "workspace", ws, _] = parts
    {
        row.org_name = org.into();
        row.project_name = project.into();
        row.workspace_name = ws.into();
    }
}

/// A short, stable class for Vault's free-text login errors.
fn error_code(error: &str) -> &'static str {
    let e = error.to_ascii_lowercase();
    if e.contains("audience") {
        "invalid_audience"
    } else if e.contains("expired") {
        "token_expired"
    } else if e.contains("not yet valid") || e.contains("nbf") {
        "token_not_yet_valid"
    } else if e.contains("bound claim") || e.contains("bound_claims") || e.contains("bound subject")
    {
        "bound_claims_mismatch"
    } else if e.contains("role") && e.contains("not") && e.contains("found") {
        "role_not_found"
    } else if e.contains("signature") || e.contains("verify") || e.contains("issuer") {
        "token_unverified"
    } else if e.contains("permission denied") {
        "permission_denied"
    } else {
        "error"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_errors_are_classed() {
        assert_eq!(
            error_code(
                "error validating token: invalid audience (aud) claim: audience claim does not match any expected audience"
            ),
            "invalid_audience"
        );
        assert_eq!(
            error_code(
                "error validating claims: claim \"sub\" does not match any associated bound claim values"
            ),
            "bound_claims_mismatch"
        );
        assert_eq!(
            error_code("error validating token: token is expired (exp)"),
            "token_expired"
        );
        assert_eq!(
            error_code("role \"tfc\" could not be found"),
            "role_not_found"
        );
        assert_eq!(error_code("1 error occurred"), "error");
    }

    #[test]
    fn full_workspace_fills_names() {
        let mut row = EventRow::new(
            EventKind::Exchange,
            Source::VaultAudit,
            "r".into(),
            "vault",
            Utc::now(),
            Utc::now(),
        );
        apply_full_workspace(
            &mut row,
            "organization:acme:project:Default Project:workspace:web",
        );
        assert_eq!(row.org_name, "acme");
        assert_eq!(row.project_name, "Default Project");
        assert_eq!(row.workspace_name, "web");
    }
}
