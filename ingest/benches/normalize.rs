//! CloudTrail normalize throughput against a bare typed `serde_json` parse of the same bytes.
//!
//! `cargo bench -p credtrail-ingest --bench normalize` prints records/s and MB/s for both and the
//! ratio (target: normalize at least 70% of the bare parse), and what redacting secrets from
//! every column adds per record. The bare parse reads every field the
//! normalizer reads into a typed struct, borrowing strings (the same `JsonStr` the normalizer uses), and
//! nothing else.

use chrono::Utc;
use credtrail_ingest::formats::{JsonStr, Normalized, cloudtrail};
use serde::Deserialize;
use std::borrow::Cow;
use std::hint::black_box;
use std::time::Instant;

#[derive(Deserialize)]
#[allow(dead_code)]
struct Bare<'a> {
    #[serde(rename = "eventTime", borrow)]
    event_time: Cow<'a, str>,
    #[serde(rename = "eventSource", borrow)]
    event_source: Cow<'a, str>,
    #[serde(rename = "eventName", borrow)]
    event_name: Cow<'a, str>,
    #[serde(rename = "eventID", borrow)]
    event_id: Cow<'a, str>,
    #[serde(rename = "awsRegion", borrow)]
    aws_region: Option<JsonStr<'a>>,
    #[serde(rename = "sourceIPAddress", borrow)]
    source_ip_address: Option<JsonStr<'a>>,
    #[serde(rename = "userAgent", borrow)]
    user_agent: Option<JsonStr<'a>>,
    #[serde(rename = "errorCode", borrow)]
    error_code: Option<JsonStr<'a>>,
    #[serde(rename = "errorMessage", borrow)]
    error_message: Option<JsonStr<'a>>,
    #[serde(rename = "recipientAccountId", borrow)]
    recipient_account_id: Option<JsonStr<'a>>,
    #[serde(rename = "userIdentity", borrow)]
    user_identity: Option<BareIdentity<'a>>,
    #[serde(rename = "requestParameters", borrow)]
    request_parameters: Option<BareRequest<'a>>,
    #[serde(rename = "responseElements", borrow)]
    response_elements: Option<BareResponse<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct BareIdentity<'a> {
    #[serde(rename = "principalId", borrow)]
    principal_id: Option<JsonStr<'a>>,
    #[serde(rename = "userName", borrow)]
    user_name: Option<JsonStr<'a>>,
    #[serde(rename = "identityProvider", borrow)]
    identity_provider: Option<JsonStr<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct BareRequest<'a> {
    #[serde(rename = "roleArn", borrow)]
    role_arn: Option<JsonStr<'a>>,
    #[serde(rename = "roleSessionName", borrow)]
    role_session_name: Option<JsonStr<'a>>,
    #[serde(rename = "durationSeconds")]
    duration_seconds: Option<u32>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct BareResponse<'a> {
    #[serde(borrow)]
    credentials: Option<BareCredentials<'a>>,
    #[serde(borrow)]
    audience: Option<JsonStr<'a>>,
    #[serde(borrow)]
    provider: Option<JsonStr<'a>>,
    #[serde(rename = "subjectFromWebIdentityToken", borrow)]
    subject: Option<JsonStr<'a>>,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct BareCredentials<'a> {
    #[serde(rename = "accessKeyId", borrow)]
    access_key_id: Option<JsonStr<'a>>,
    #[serde(borrow)]
    expiration: Option<JsonStr<'a>>,
    #[serde(rename = "sessionToken", borrow)]
    session_token: Option<JsonStr<'a>>,
}

/// Realistic records: the fixture shapes with varied ids, phases, outcomes and expirations.
fn corpus(n: usize) -> Vec<Vec<u8>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/cloudtrail");
    let success = std::fs::read_to_string(format!("{root}/run_success_plan.json")).unwrap();
    let success: serde_json::Value = serde_json::from_str(&success).unwrap();
    let failures = std::fs::read_to_string(format!("{root}/failures.ndjson")).unwrap();
    let failure: serde_json::Value =
        serde_json::from_str(failures.lines().next().unwrap()).unwrap();
    (0..n)
        .map(|i| {
            let mut v = if i % 10 == 0 {
                failure.clone()
            } else {
                success.clone()
            };
            v["eventID"] = format!("{:08x}-6d3a-4c8e-9a31-1f0b8e7c2a01", i).into();
            v["requestParameters"]["roleSessionName"] = format!("terraform-run-run-{i:016}").into();
            serde_json::to_vec(&v).unwrap()
        })
        .collect()
}

/// Best time of one pass over `records`.
fn pass(records: &[Vec<u8>], f: &mut impl FnMut(&[u8])) -> f64 {
    let t = Instant::now();
    for r in records {
        f(r);
    }
    t.elapsed().as_secs_f64()
}

fn report(label: &str, records: usize, bytes: usize, best: f64) -> f64 {
    let rate = records as f64 / best;
    println!(
        "{label:<28} {:>10.0} records/s {:>8.1} MB/s",
        rate,
        bytes as f64 / best / 1e6
    );
    rate
}

fn main() {
    let records = corpus(200_000);
    let bytes: usize = records.iter().map(Vec::len).sum();
    println!(
        "{} CloudTrail AssumeRoleWithWebIdentity records, {:.0} bytes each on average",
        records.len(),
        bytes as f64 / records.len() as f64
    );
    let mut bare = |r: &[u8]| {
        black_box(serde_json::from_slice::<Bare<'_>>(r).unwrap());
    };
    let now = Utc::now();
    let mut normalize = |r: &[u8]| match cloudtrail::normalize(r, now).unwrap() {
        Normalized::Event(row) => {
            black_box(row);
        }
        Normalized::Ignored(_) => unreachable!(),
    };
    // What the intake adds per row: secrets redacted from every text column and `raw`.
    let mut redacted = |r: &[u8]| match cloudtrail::normalize(r, now).unwrap() {
        Normalized::Event(mut row) => {
            row.redact_secrets();
            black_box(row);
        }
        Normalized::Ignored(_) => unreachable!(),
    };
    // Alternate them so that machine noise (other processes, frequency changes) hits all
    // alike; keep each one's best pass.
    let (mut bare_best, mut normalize_best, mut redacted_best) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..7 {
        bare_best = bare_best.min(pass(&records, &mut bare));
        normalize_best = normalize_best.min(pass(&records, &mut normalize));
        redacted_best = redacted_best.min(pass(&records, &mut redacted));
    }
    let bare = report(
        "bare typed serde_json parse",
        records.len(),
        bytes,
        bare_best,
    );
    let normalize = report(
        "normalize (parse + row)",
        records.len(),
        bytes,
        normalize_best,
    );
    println!(
        "normalize / bare parse = {:.0}% (target >= 70%)",
        normalize / bare * 100.0
    );
    report(
        "normalize + redact secrets",
        records.len(),
        bytes,
        redacted_best,
    );
    println!(
        "redaction adds {:.2} µs per record",
        (redacted_best - normalize_best) / records.len() as f64 * 1e6
    );
}
