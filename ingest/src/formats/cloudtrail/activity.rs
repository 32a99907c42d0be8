//! CloudTrail API calls made with a session HCP Terraform obtained, as [`SessionCallRow`]s.
//!
//! Optional (`cloudtrail.session_activity`): an account's trail holds every call, and only the
//! sessions of runs are credtrail's business. A call belongs to one when it was made with
//! temporary credentials (`AssumedRole`, an `ASIA…` key) of a session HCP Terraform named
//! `terraform-run-<run id>`; queries join `session_activity` to the exchange that issued the key,
//! so a session never seen issued stands out instead of being hidden.

use crate::fingerprint::dedup_key;
use crate::formats::{JsonStr, parse_time};
use crate::model::{SessionCallRow, Source};
use serde::Deserialize;
use std::borrow::Cow;

#[derive(Debug, Deserialize)]
struct Call<'a> {
    #[serde(rename = "eventTime", borrow)]
    event_time: Cow<'a, str>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Cow<'a, str>,
    #[serde(rename = "eventID", borrow)]
    event_id: Cow<'a, str>,
    #[serde(rename = "awsRegion", borrow, default)]
    aws_region: Option<JsonStr<'a>>,
    #[serde(rename = "sourceIPAddress", borrow, default)]
    source_ip_address: Option<JsonStr<'a>>,
    #[serde(rename = "errorCode", borrow, default)]
    error_code: Option<JsonStr<'a>>,
    #[serde(rename = "recipientAccountId", borrow, default)]
    recipient_account_id: Option<JsonStr<'a>>,
    #[serde(rename = "userIdentity", borrow)]
    user_identity: Identity<'a>,
}

#[derive(Debug, Deserialize)]
struct Identity<'a> {
    #[serde(rename = "type", borrow, default)]
    identity_type: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    arn: Option<JsonStr<'a>>,
    #[serde(rename = "accessKeyId", borrow, default)]
    access_key_id: Option<JsonStr<'a>>,
    #[serde(rename = "sessionContext", borrow, default)]
    session_context: Option<SessionContext<'a>>,
}

#[derive(Debug, Deserialize)]
struct SessionContext<'a> {
    #[serde(rename = "sessionIssuer", borrow, default)]
    session_issuer: Option<Issuer<'a>>,
}

#[derive(Debug, Deserialize)]
struct Issuer<'a> {
    #[serde(borrow, default)]
    arn: Option<JsonStr<'a>>,
}

/// HCP Terraform's role session name prefix.
const RUN_SESSION: &str = "terraform-run-";

/// The call, when it was made with a run's session; `None` for anything else (including
/// records that do not parse: they were already judged by the exchange parser).
pub fn session_call(bytes: &[u8]) -> Option<SessionCallRow> {
    let call: Call<'_> = serde_json::from_slice(bytes).ok()?;
    let identity = &call.user_identity;
    if identity.identity_type.as_deref() != Some("AssumedRole") {
        return None;
    }
    let key = identity.access_key_id.as_deref()?;
    if !key.starts_with("ASIA") {
        return None;
    }
    // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION
    let session_name = identity.arn.as_deref()?.rsplit('/').next()?;
    if !session_name.starts_with(RUN_SESSION) {
        return None;
    }
    let event_time = parse_time(&call.event_time)?;
    Some(SessionCallRow {
        session_id: key.to_owned(),
        event_time: chrono::DateTime::from_timestamp(event_time.timestamp(), 0)?,
        call_key: dedup_key(Source::AwsCloudtrail, &call.event_id),
        event_source: call.event_source.into_owned(),
        failed: u8::from(call.error_code.as_deref().is_some_and(|c| !c.is_empty())),
        source_ip: call.source_ip_address.as_deref().unwrap_or("").to_owned(),
        region: call.aws_region.as_deref().unwrap_or("").to_owned(),
        account: call
            .recipient_account_id
            .as_deref()
            .unwrap_or("")
            .to_owned(),
        role_arn: identity
            .session_context
            .as_ref()
            .and_then(|c| c.session_issuer.as_ref())
            .and_then(|i| i.arn.as_deref())
            .unwrap_or("")
            .to_owned(),
        session_name: session_name.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_run_sessions_count() {
        let call = |kind: &str, key: &str, session: &str| {
            format!(
                r#"{{"eventTime":"2024-07-09T15:50:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","eventID":"e1","awsRegion":"us-east-1","sourceIPAddress":"52.86.200.106","recipientAccountId":"111122223333","userIdentity":{{"type":"{kind}","arn":"arn:aws:sts::111122223333:assumed-role/tfc/{session}","accessKeyId":"{key}","sessionContext":{{"sessionIssuer":{{"arn":"arn:aws:iam::111122223333:role/tfc"}}}}}}}}"#
            )
        };
        let row =
            session_call(call("AssumedRole", "ASIAX", "terraform-run-run-1").as_bytes()).unwrap();
        assert_eq!(row.session_id, "ASIAX");
        assert_eq!(row.role_arn, "arn:aws:iam::111122223333:role/tfc");
        assert_eq!(row.session_name, "terraform-run-run-1");
        assert_eq!(row.failed, 0);
        assert!(session_call(call("AssumedRole", "ASIAX", "alice").as_bytes()).is_none());
        assert!(session_call(call("IAMUser", "AKIAX", "terraform-run-x").as_bytes()).is_none());
        assert!(session_call(b"{not json").is_none());
    }
}
