//! AWS CloudTrail: `sts:AssumeRoleWithWebIdentity` records into exchange rows, and the IAM calls
//! that change the trust root into trust-change rows ([`trust`]).
//!
//! One CloudTrail record (from a single event, an NDJSON line or an element of an S3 file's
//! `Records`) becomes one [`EventRow`]. Records of other API calls are [`Normalized::Ignored`]: an S3
//! delivery holds every call in the account and only the web-identity exchanges are ours.
//!
//! What CloudTrail gives us (domain.md §2.1): `sub` as `userIdentity.userName` (present on
//! failures too), `aud` in `responseElements.audience` (successes) or embedded in
//! `userIdentity.principalId` as `<provider arn>:<aud>:<sub>` (always), the run id in the
//! `terraform-run-<run-id>` session name, the access key id of the issued session. It never gives
//! the `jti`.

pub mod activity;
pub mod trust;

use super::{JsonStr, Normalized, Rejection, parse_json, parse_time};
use crate::fingerprint::token_fingerprint;
use crate::model::{EventKind, EventRow, Source, Text, ip_from_text, outcome, split_colons};
use chrono::format::{Item, Parsed, StrftimeItems};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::LazyLock;

/// The CloudTrail record fields credtrail reads, nested objects typed: one pass over the bytes.
#[derive(Debug, Deserialize)]
pub struct Record<'a> {
    #[serde(rename = "eventTime", borrow)]
    pub event_time: Cow<'a, str>,
    #[serde(rename = "eventSource", borrow)]
    pub event_source: Cow<'a, str>,
    #[serde(rename = "eventName", borrow)]
    pub event_name: Cow<'a, str>,
    #[serde(rename = "eventID", borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(rename = "awsRegion", borrow, default)]
    pub aws_region: Option<JsonStr<'a>>,
    #[serde(rename = "sourceIPAddress", borrow, default)]
    pub source_ip_address: Option<JsonStr<'a>>,
    #[serde(rename = "userAgent", borrow, default)]
    pub user_agent: Option<JsonStr<'a>>,
    #[serde(rename = "errorCode", borrow, default)]
    pub error_code: Option<JsonStr<'a>>,
    #[serde(rename = "errorMessage", borrow, default)]
    pub error_message: Option<JsonStr<'a>>,
    #[serde(rename = "recipientAccountId", borrow, default)]
    pub recipient_account_id: Option<JsonStr<'a>>,
    #[serde(rename = "userIdentity", borrow, default)]
    pub user_identity: Option<UserIdentity<'a>>,
    #[serde(rename = "requestParameters", borrow, default)]
    pub request_parameters: Option<RequestParameters<'a>>,
    #[serde(rename = "responseElements", borrow, default)]
    pub response_elements: Option<ResponseElements<'a>>,
}

/// Just enough to tell an exchange from any other API call, whose nested objects may hold
/// anything (the fallback when the typed parse fails).
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "eventSource", borrow)]
    event_source: Cow<'a, str>,
    #[serde(rename = "eventName", borrow)]
    event_name: Cow<'a, str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct UserIdentity<'a> {
    #[serde(rename = "principalId", borrow, default)]
    pub principal_id: Option<JsonStr<'a>>,
    #[serde(rename = "userName", borrow, default)]
    pub user_name: Option<JsonStr<'a>>,
    #[serde(rename = "identityProvider", borrow, default)]
    pub identity_provider: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct RequestParameters<'a> {
    #[serde(rename = "roleArn", borrow, default)]
    pub role_arn: Option<JsonStr<'a>>,
    #[serde(rename = "roleSessionName", borrow, default)]
    pub role_session_name: Option<JsonStr<'a>>,
    #[serde(rename = "durationSeconds", default)]
    pub duration_seconds: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResponseElements<'a> {
    #[serde(borrow, default)]
    pub credentials: Option<Credentials<'a>>,
    #[serde(rename = "subjectFromWebIdentityToken", borrow, default)]
    pub subject_from_web_identity_token: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub audience: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub provider: Option<JsonStr<'a>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Credentials<'a> {
    #[serde(rename = "accessKeyId", borrow, default)]
    pub access_key_id: Option<JsonStr<'a>>,
    #[serde(borrow, default)]
    pub expiration: Option<JsonStr<'a>>,
    #[serde(rename = "sessionToken", borrow, default)]
    pub session_token: Option<JsonStr<'a>>,
}

const EXCHANGE_EVENT: &str = "AssumeRoleWithWebIdentity";
const IGNORED: &str =
    "cloudtrail event is neither sts:AssumeRoleWithWebIdentity nor an IAM trust-root change";

fn is_exchange(source: &str, name: &str) -> bool {
    name == EXCHANGE_EVENT && source == "sts.amazonaws.com"
}
const SESSION_PREFIX: &str = "terraform-run-";

/// The ARN partition of an account's resources: the one a known ARN names, else the region's
/// (`aws-us-gov` for GovCloud, `aws-cn` for China, `aws` elsewhere).
pub fn partition<'a>(known_arn: &'a str, region: &str) -> &'a str {
    match arn_field(known_arn, 1) {
        Some(p) if !p.is_empty() => p,
        _ if region.starts_with("us-gov-") => "aws-us-gov",
        _ if region.starts_with("cn-") => "aws-cn",
        _ => "aws",
    }
}

/// CloudTrail digest files sit in the same bucket tree as the logs (`CloudTrail-Digest/`): they
/// sign the log files and hold no events.
const DIGEST: &str = "cloudtrail digest file (integrity validation), not an event";

/// Whether a record is a digest file rather than an event.
pub fn is_digest(bytes: &[u8]) -> bool {
    memchr::memmem::find(bytes, b"\"digestSignatureAlgorithm\"").is_some()
        && memchr::memmem::find(bytes, b"\"eventSource\"").is_none()
}

/// Normalizes one CloudTrail record.
pub fn normalize(bytes: &[u8], ingest_time: DateTime<Utc>) -> Result<Normalized, Rejection> {
    let record: Record<'_> = match serde_json::from_slice(bytes) {
        Ok(r) => r,
        // A digest has no `eventSource`, so it never parses as a record: checked only here.
        Err(_) if is_digest(bytes) => return Ok(Normalized::Ignored(DIGEST)),
        // Another API call's parameters may not fit our types: that is not an error.
        Err(_) => match parse_json::<Envelope<'_>>(bytes) {
            Ok(e) if trust::is_trust_change(&e.event_source, &e.event_name) => {
                return trust_change(bytes, ingest_time);
            }
            Ok(e) if !is_exchange(&e.event_source, &e.event_name) => {
                return Ok(Normalized::Ignored(IGNORED));
            }
            Ok(_) => return Err(parse_json::<Record<'_>>(bytes).expect_err("failed above")),
            Err(rejection) => return Err(rejection),
        },
    };
    if !is_exchange(&record.event_source, &record.event_name) {
        if trust::is_trust_change(&record.event_source, &record.event_name) {
            return trust_change(bytes, ingest_time);
        }
        return Ok(Normalized::Ignored(IGNORED));
    }
    let identity = record.user_identity.unwrap_or_default();
    let request = record.request_parameters.unwrap_or_default();
    let response = record.response_elements.unwrap_or_default();

    let event_time = parse_time(&record.event_time)
        .ok_or_else(|| Rejection::invalid_value("eventTime", &record.event_time))?;
    if record.event_id.is_empty() {
        return Err(Rejection::invalid_value("eventID", ""));
    }
    let mut row = EventRow::new(
        EventKind::Exchange,
        Source::AwsCloudtrail,
        record.event_id.as_ref().into(),
        "aws",
        event_time,
        ingest_time,
    );
    row.event_name = EXCHANGE_EVENT.into();
    match &record.error_code {
        Some(code) if !code.is_empty() => {
            row.outcome = outcome::FAILURE.into();
            row.error_code = (**code).into();
            row.error_message = record.error_message.as_deref().unwrap_or("").into();
        }
        _ => row.outcome = outcome::SUCCESS.into(),
    }

    let subject = identity
        .user_name
        .as_deref()
        .or(response.subject_from_web_identity_token.as_deref())
        .unwrap_or("");
    row.set_subject(subject);
    let provider_arn = identity
        .identity_provider
        .as_deref()
        .or(response.provider.as_deref())
        .unwrap_or("");
    row.issuer = issuer_from_provider_arn(provider_arn);
    row.audience = match response.audience.as_deref() {
        Some(aud) => aud.into(),
        None => audience_from_principal_id(
            identity.principal_id.as_deref().unwrap_or(""),
            provider_arn,
            subject,
        )
        .into(),
    };

    let role_arn = request.role_arn.as_deref().unwrap_or("");
    row.target_principal = role_arn.into();
    row.target_account = account_from_arn(role_arn)
        .or(record.recipient_account_id.as_deref())
        .unwrap_or("")
        .into();
    let session_name = request.role_session_name.as_deref().unwrap_or("");
    row.session_name = session_name.into();
    row.run_id = session_name
        .strip_prefix(SESSION_PREFIX)
        .unwrap_or("")
        .into();
    row.region = record.aws_region.as_deref().unwrap_or("").into();

    let mut raw = Cow::Borrowed(bytes);
    if let Some(creds) = &response.credentials {
        row.session_id = creds.access_key_id.as_deref().unwrap_or("").into();
        row.session_expiry = creds.expiration.as_deref().and_then(parse_expiration);
        if let Some(token) = creds.session_token.as_deref()
            && !is_placeholder(token)
        {
            raw = Cow::Owned(scrub_session_token(bytes, token)?);
        }
    }
    row.duration_seconds = request.duration_seconds.or_else(|| {
        let expiry = row.session_expiry?;
        u32::try_from((expiry - event_time).num_seconds()).ok()
    });

    row.source_ip = ip_from_text(record.source_ip_address.as_deref());
    row.user_agent = record.user_agent.as_deref().unwrap_or("").into();
    // Other secrets (a JWT in the user agent...) are the intake's: it redacts every row.
    row.raw = raw.into_owned();
    Ok(Normalized::Event(Box::new(row)))
}

fn trust_change(bytes: &[u8], ingest_time: DateTime<Utc>) -> Result<Normalized, Rejection> {
    trust::normalize(bytes, ingest_time).map(|row| Normalized::Event(Box::new(row)))
}

/// `arn:aws:iam::123:oidc-provider/app.terraform.io` -> `https://app.terraform.io`.
pub fn issuer_from_provider_arn(arn: &str) -> Text {
    let host = arn_field(arn, 5).and_then(|resource| resource.strip_prefix("oidc-provider/"));
    match host {
        Some(host) if !host.is_empty() => {
            let mut issuer = Text::with_capacity(8 + host.len());
            issuer.push_str("https://");
            issuer.push_str(host);
            issuer
        }
        _ => Text::default(),
    }
}

/// The audience inside `userIdentity.principalId` = `<provider arn>:<aud>:<sub>`.
fn audience_from_principal_id<'a>(principal_id: &'a str, provider_arn: &str, sub: &str) -> &'a str {
    let Some(rest) = principal_id
        .strip_prefix(provider_arn)
        .and_then(|r| r.strip_prefix(':'))
    else {
        return "";
    };
    if sub.is_empty() {
        return "";
    }
    rest.strip_suffix(sub)
        .and_then(|r| r.strip_suffix(':'))
        .unwrap_or("")
}

/// The account id field of an ARN (`arn:aws:iam::ACCOUNT:role/x`).
fn account_from_arn(arn: &str) -> Option<&str> {
    arn_field(arn, 4).filter(|account| !account.is_empty())
}

/// Field `index` of `arn:partition:service:region:account:resource`; the resource may hold `:`.
fn arn_field(arn: &str, index: usize) -> Option<&str> {
    let mut fields = [""; 6];
    let n = split_colons(arn, &mut fields).unwrap_or(6);
    if n < 6 {
        return None;
    }
    if index < 5 {
        return Some(fields[index]);
    }
    // The resource runs from after the fifth colon to the end.
    let offset: usize = fields[..5].iter().map(|f| f.len() + 1).sum();
    arn.get(offset..)
}

/// CloudTrail writes `expiration` as free text: `Jul 9, 2024, 4:41:37 PM` in the console's style,
/// ISO 8601 elsewhere. Both are UTC.
pub fn parse_expiration(text: &str) -> Option<DateTime<Utc>> {
    if text.starts_with(|c: char| c.is_ascii_digit())
        && let Some(t) = parse_time(text)
    {
        return Some(t);
    }
    if let Some(t) = parse_console_time(text) {
        return Some(t);
    }
    CONSOLE_FORMATS.iter().find_map(|items| {
        let mut parsed = Parsed::new();
        chrono::format::parse(&mut parsed, text.trim(), items.iter()).ok()?;
        parsed
            .to_naive_datetime_with_offset(0)
            .ok()
            .map(|t| t.and_utc())
    })
}

/// The common console layout `Jul 9, 2024, 4:41:37 PM` read field by field: chrono's generic
/// parser costs more than the rest of a record's normalization.
fn parse_console_time(text: &str) -> Option<DateTime<Utc>> {
    let mut words = text.split_ascii_whitespace();
    let month = words.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let day: u32 = words.next()?.strip_suffix(',')?.parse().ok()?;
    let year: i32 = words.next()?.strip_suffix(',')?.parse().ok()?;
    let mut clock = words.next()?.splitn(3, ':').map(|n| n.parse::<u32>().ok());
    let (h, m, sec) = (clock.next()??, clock.next()??, clock.next()??);
    let hour = match (words.next()?, h) {
        ("AM", 12) => 0,
        ("AM", h @ 1..=11) => h,
        ("PM", 12) => 12,
        ("PM", h @ 1..=11) => h + 12,
        _ => return None,
    };
    if words.next().is_some() {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(year, month, day)?;
    Some(date.and_hms_opt(hour, m, sec)?.and_utc())
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The console-style layouts, compiled once (parsing a format string per record is slow).
static CONSOLE_FORMATS: LazyLock<Vec<Vec<Item<'static>>>> = LazyLock::new(|| {
    [
        "%b %d, %Y, %I:%M:%S %p",
        "%b %d, %Y %I:%M:%S %p",
        "%b %d, %Y, %H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .map(|f| {
        StrftimeItems::new(f)
            .parse_to_owned()
            .expect("static format")
    })
    .collect()
});

fn is_placeholder(token: &str) -> bool {
    token.is_empty() || token.starts_with('<') || token.contains("redacted")
}

/// Replaces a real session token in the stored record with its fingerprint.
fn scrub_session_token(bytes: &[u8], token: &str) -> Result<Vec<u8>, Rejection> {
    let mut value: serde_json::Value = parse_json(bytes)?;
    if let Some(slot) = value.pointer_mut("/responseElements/credentials/sessionToken") {
        *slot = serde_json::Value::String(token_fingerprint(token));
    }
    Ok(serde_json::to_vec(&value).expect("a Value always serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_in_console_and_iso_forms() {
        let want = "2024-07-09T16:41:37Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_expiration("Jul 9, 2024, 4:41:37 PM"), Some(want));
        assert_eq!(parse_expiration("Jul 09, 2024 4:41:37 PM"), Some(want));
        assert_eq!(parse_expiration("2024-07-09T16:41:37Z"), Some(want));
        assert_eq!(parse_expiration("soon"), None);
        let midnight = "2024-12-31T00:05:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            parse_console_time("Dec 31, 2024, 12:05:00 AM"),
            Some(midnight)
        );
        let noon = "2024-02-29T12:00:59Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(parse_console_time("Feb 29, 2024, 12:00:59 PM"), Some(noon));
        assert_eq!(parse_console_time("Feb 30, 2024, 1:00:00 PM"), None);
        assert_eq!(parse_console_time("Feb 3, 2024, 13:00:00 PM"), None);
    }

    #[test]
    fn audience_is_recovered_from_principal_id() {
        let arn = "arn:aws:iam::111122223333:oidc-provider/app.terraform.io";
        let sub = "organization:acme:project:p:workspace:w:run_phase:plan";
        let pid = format!("{arn}:aws.workload.identity:{sub}");
        assert_eq!(
            audience_from_principal_id(&pid, arn, sub),
            "aws.workload.identity"
        );
        assert_eq!(audience_from_principal_id("other", arn, sub), "");
    }

    #[test]
    fn issuer_and_account_from_arns() {
        assert_eq!(
            issuer_from_provider_arn("arn:aws:iam::1:oidc-provider/tfe.example.com/x"),
            "https://tfe.example.com/x"
        );
        assert_eq!(issuer_from_provider_arn("nonsense"), "");
        assert_eq!(
            account_from_arn("arn:aws:iam::111122223333:role/r"),
            Some("111122223333")
        );
        assert_eq!(account_from_arn("arn:aws:iam:::role/r"), None);
        assert_eq!(
            arn_field("arn:aws:ecs:r:1:task/a:b:c", 5),
            Some("task/a:b:c")
        );
        assert_eq!(arn_field("arn:aws:iam", 4), None);
    }

    #[test]
    fn digest_files_are_ignored_whatever_their_path() {
        // The documented digest file shape (CloudTrail log file integrity validation).
        let digest = br#"{"awsAccountId":"111122223333","digestStartTime":"2024-07-09T14:42:27Z","digestEndTime":"2024-07-09T15:42:27Z","digestS3Bucket":"trail-bucket","digestS3Object":"AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2024/07/09/111122223333_CloudTrail-Digest_us-east-1_trail_us-east-1_20240709T154227Z.json.gz","digestPublicKeyFingerprint":"31e8b5433410dfb61a9dc45cc65b22ff","digestSignatureAlgorithm":"SHA256withRSA","newestEventTime":"2024-07-09T15:41:08Z","oldestEventTime":"2024-07-09T14:41:50Z","previousDigestS3Bucket":"trail-bucket","previousDigestS3Object":"x.json.gz","previousDigestHashValue":"97fb791cf91ffc440d274f8190dbdd9aa09c34432aba82739df18b6d3c13df2d","previousDigestHashAlgorithm":"SHA-256","previousDigestSignature":"50887ccffad4c002b97caa37cc9dc626e3c680207d41d27fa5835458e066e0d3","logFiles":[{"s3Bucket":"trail-bucket","s3Object":"AWSLogs/111122223333/CloudTrail/us-east-1/2024/07/09/a.json.gz","hashValue":"9bb6196fc6b84d6f075a56548feca262bd99ba3c2de41b618e5b6e22c1fc71f6","hashAlgorithm":"SHA-256","newestEventTime":"2024-07-09T15:41:08Z","oldestEventTime":"2024-07-09T14:41:50Z"}]}"#;
        assert_eq!(
            crate::formats::detect_source(digest),
            Some(Source::AwsCloudtrail)
        );
        assert!(matches!(
            normalize(digest, Utc::now()),
            Ok(Normalized::Ignored(DIGEST))
        ));
    }

    #[test]
    fn partitions_come_from_the_caller_or_the_region() {
        assert_eq!(
            partition("arn:aws-cn:sts::1:assumed-role/a/b", "us-east-1"),
            "aws-cn"
        );
        assert_eq!(partition("", "us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("", "cn-north-1"), "aws-cn");
        assert_eq!(partition("", "eu-west-1"), "aws");
        let record = br#"{"eventVersion":"1.09","eventSource":"iam.amazonaws.com","awsRegion":"us-gov-west-1","recipientAccountId":"111122223333","eventTime":"2024-07-09T14:05:00Z","eventName":"UpdateAssumeRolePolicy","eventID":"gov-1","userIdentity":{"type":"AssumedRole","arn":"arn:aws-us-gov:sts::111122223333:assumed-role/admin/alice"},"requestParameters":{"roleName":"tfc-apply","policyDocument":"{}"},"responseElements":null}"#;
        let Ok(Normalized::Event(row)) = normalize(record, Utc::now()) else {
            panic!("a trust change")
        };
        assert_eq!(
            row.target_principal,
            "arn:aws-us-gov:iam::111122223333:role/tfc-apply"
        );
    }
}
