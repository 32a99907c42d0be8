//! HCP Terraform Audit Trails API records: variable and variable-set changes into
//! configuration-change rows.
//!
//! The API (`GET /organization/audit-trail`, not JSON:API) answers `{"data": [...],
//! "pagination": …}`; `framing` splits `data` into records. A record is
//! `{id, version, type, timestamp, auth{accessor_id, description, type, impersonator_id,
//! organization_id}, request{id}, resource{id, type, action, meta}}`. Only `var` and `varset`
//! resources (and variables inside variable sets) are kept: a dynamic-credentials variable is
//! the configuration that decides which role each alias assumes (D12). The variable's key, its
//! workspace or set, the actor and the time are kept; a value is never stored, not even in
//! `raw`, which is rebuilt from the record with every `value` field dropped.

use super::{JsonStr, Normalized, Rejection, parse_json, parse_time};
use crate::model::{EventKind, EventRow, Source, outcome};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

#[derive(Debug, Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    #[serde(default)]
    auth: Option<Auth<'a>>,
    #[serde(borrow)]
    resource: Resource<'a>,
}

#[derive(Debug, Default, Deserialize)]
struct Auth<'a> {
    #[serde(borrow, default)]
    accessor_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    impersonator_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    organization_id: Option<JsonStr<'a>>,
}

#[derive(Debug, Deserialize)]
struct Resource<'a> {
    #[serde(borrow, default)]
    id: Option<JsonStr<'a>>,
    #[serde(rename = "type", borrow)]
    resource_type: Cow<'a, str>,
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow, default)]
    meta: Option<Meta<'a>>,
}

/// What the record's `meta` may say about a variable; every field optional because the API does
/// not promise them.
#[derive(Debug, Default, Deserialize)]
struct Meta<'a> {
    #[serde(borrow, default)]
    key: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    workspace_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    workspace_name: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    varset_id: Option<JsonStr<'a>>,
}

const IGNORED: &str = "audit trail record is not a variable or variable-set change";

/// Normalizes one audit trail record.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Result<Normalized, Rejection> {
    let record: Record<'_> = parse_json(bytes)?;
    let resource = &record.resource;
    if !matches!(
        resource.resource_type.as_ref(),
        "var" | "varset" | "varset_var"
    ) {
        return Ok(Normalized::Ignored(IGNORED));
    }
    let event_time = parse_time(&record.timestamp)
        .ok_or_else(|| Rejection::invalid_value("timestamp", &record.timestamp))?;
    if record.id.is_empty() {
        return Err(Rejection::invalid_value("id", ""));
    }
    let mut row = EventRow::new(
        EventKind::ConfigChange,
        Source::HcpAuditTrail,
        record.id.as_ref().into(),
        "hcp",
        event_time,
        ingest_time,
    );
    // `var.create`, `varset.update`: the resource and what was done to it.
    row.event_name = format!("{}.{}", resource.resource_type, resource.action).into();
    row.outcome = outcome::SUCCESS.into();
    let meta = resource.meta.as_ref();
    fn m<'r>(
        meta: Option<&'r Meta<'_>>,
        f: fn(&'r Meta<'_>) -> &'r Option<JsonStr<'r>>,
    ) -> &'r str {
        meta.and_then(|m| f(m).as_deref()).unwrap_or("")
    }
    row.variable_key = m(meta, |m| &m.key).into();
    row.workspace_id = m(meta, |m| &m.workspace_id).into();
    row.workspace_name = m(meta, |m| &m.workspace_name).into();
    // The object changed: the variable set when the variable is in one (a set may apply to
    // every workspace; `global` stays in `raw`), else the variable.
    let varset = m(meta, |m| &m.varset_id);
    row.target_principal = if varset.is_empty() {
        resource.id.as_deref().unwrap_or("").into()
    } else {
        varset.into()
    };
    let auth = record.auth.unwrap_or_default();
    row.org_id = auth.organization_id.as_deref().unwrap_or("").into();
    // `user-…` or a token id, with who impersonated it when someone did.
    row.actor = match auth.impersonator_id.as_deref() {
        Some(by) if !by.is_empty() => format!(
            "{} (impersonated by {by})",
            auth.accessor_id.as_deref().unwrap_or("")
        )
        .into(),
        _ => auth.accessor_id.as_deref().unwrap_or("").into(),
    };
    row.raw = without_values(bytes)?;
    Ok(Normalized::Event(Box::new(row)))
}

/// The record with every `value` field removed, at any depth.
fn without_values(bytes: &[u8]) -> Result<Vec<u8>, Rejection> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.remove("value");
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value: Value = parse_json(bytes)?;
    strip(&mut value);
    Ok(serde_json::to_vec(&value).expect("a Value always serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_reach_raw() {
        let record = br#"{"id":"a1","version":"0","type":"Resource","timestamp":"2024-07-09T16:00:00.000Z","auth":{"accessor_id":"user-1","description":"alice","type":"Client","impersonator_id":null,"organization_id":"org-1"},"request":{"id":"r1"},"resource":{"id":"var-1","type":"var","action":"update","meta":{"key":"TFC_AWS_RUN_ROLE_ARN","value":"arn:aws:iam::1:role/secret","workspace_id":"ws-1"}}}"#;
        let Normalized::Event(row) = normalize(record, Utc::now()).unwrap() else {
            panic!("expected an event")
        };
        assert_eq!(row.variable_key, "TFC_AWS_RUN_ROLE_ARN");
        assert_eq!(row.event_name, "var.update");
        assert_eq!(row.actor, "user-1");
        assert_eq!(row.workspace_id, "ws-1");
        let raw = String::from_utf8(row.raw).unwrap();
        assert!(!raw.contains("role/secret"), "{raw}");
        assert!(raw.contains("TFC_AWS_RUN_ROLE_ARN"));
    }

    #[test]
    fn other_resources_are_ignored() {
        let record = br#"{"id":"a2","timestamp":"2024-07-09T16:00:00Z","resource":{"id":"run-1","type":"run","action":"create"}}"#;
        assert!(matches!(
            normalize(record, Utc::now()),
            Ok(Normalized::Ignored(_))
        ));
    }
}
