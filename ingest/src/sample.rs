//! Generated, realistic CloudTrail `AssumeRoleWithWebIdentity` records, for load tests,
//! benchmarks and demos (the Vector `demo_logs` idea): each has a unique `eventID` derived from
//! its sequence number, so a test knows exactly which events must be stored.
//!
//! Shape follows domain.md §2.1 field by field: one in ten is an `AccessDenied` failure (no
//! credentials, audience only in `principalId`), the rest successes with a console-style
//! `expiration`; every four records are one run (one workspace, one worker address, plan and
//! apply twice); phases and regions vary with the sequence number.

use chrono::{DateTime, Duration, Utc};

const WORKSPACES: [&str; 5] = [
    "network-prod",
    "network-staging",
    "payments-prod",
    "identity-core",
    "data-lake",
];
const REGIONS: [&str; 3] = ["us-east-1", "eu-west-1", "ap-southeast-2"];

/// The `eventID` of record `i`: a UUID-shaped string unique per `i` (and per `salt`).
pub fn event_id(salt: u32, i: u64) -> String {
    format!(
        "{salt:08x}-{:04x}-4c8e-9a31-{:012x}",
        (i >> 48) & 0xffff,
        i & 0xffff_ffff_ffff
    )
}

/// Record `i` of a generated stream, as compact JSON.
pub fn cloudtrail_exchange(salt: u32, i: u64, base: DateTime<Utc>) -> String {
    // Four records a run (plan, apply, and each again a moment later), one workspace and one
    // worker address per run: ordinary traffic, not the replay the rules look for.
    let run_no = i / 4;
    let ws = WORKSPACES[(run_no % WORKSPACES.len() as u64) as usize];
    let phase = if i.is_multiple_of(2) { "plan" } else { "apply" };
    let region = REGIONS[(i % REGIONS.len() as u64) as usize];
    let run = format!("run-{salt:08x}{run_no:08}");
    let time = base + Duration::milliseconds(i as i64 * 7);
    let sub = format!("organization:acme:project:Default Project:workspace:{ws}:run_phase:{phase}");
    let provider = "arn:aws:iam::111122223333:oidc-provider/app.terraform.io";
    let role = format!("arn:aws:iam::111122223333:role/tfc-{ws}-{phase}");
    let id = event_id(salt, i);
    let common = format!(
        r#""eventVersion":"1.08","userIdentity":{{"type":"WebIdentityUser","principalId":"{provider}:aws.workload.identity:{sub}","userName":"{sub}","identityProvider":"{provider}"}},"eventTime":"{}","eventSource":"sts.amazonaws.com","eventName":"AssumeRoleWithWebIdentity","awsRegion":"{region}","sourceIPAddress":"52.86.{}.{}","userAgent":"APN/1.0 HashiCorp/1.0 Terraform/1.9.5 (+https://www.terraform.io) terraform-provider-aws/5.70.0 aws-sdk-go-v2/1.30.5 api/sts/1.30.7","requestParameters":{{"roleArn":"{role}","roleSessionName":"terraform-run-{run}"}}"#,
        time.format("%Y-%m-%dT%H:%M:%SZ"),
        (run_no / 256) % 256,
        run_no % 256,
    );
    let tail = format!(
        r#""requestID":"{id}","eventID":"{id}","readOnly":true,"resources":[{{"accountId":"111122223333","type":"AWS::IAM::Role","ARN":"{role}"}}],"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management","tlsDetails":{{"tlsVersion":"TLSv1.3","cipherSuite":"TLS_AES_128_GCM_SHA256","clientProvidedHostHeader":"sts.{region}.amazonaws.com"}}"#
    );
    if i % 10 == 9 {
        return format!(
            r#"{{{common},"errorCode":"AccessDenied","errorMessage":"Not authorized to perform sts:AssumeRoleWithWebIdentity","responseElements":null,{tail}}}"#
        );
    }
    let expiry = time + Duration::hours(1);
    format!(
        r#"{{{common},"responseElements":{{"credentials":{{"accessKeyId":"ASIA{:016X}","sessionToken":"<encoded session token blob>","expiration":"{}"}},"subjectFromWebIdentityToken":"{sub}","assumedRoleUser":{{"assumedRoleId":"AROAEXAMPLEID:terraform-run-{run}","arn":"arn:aws:sts::111122223333:assumed-role/tfc-{ws}-{phase}/terraform-run-{run}"}},"provider":"{provider}","audience":"aws.workload.identity"}},{tail}}}"#,
        i,
        expiry.format("%b %-d, %Y, %-I:%M:%S %p"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{Normalized, cloudtrail};

    #[test]
    fn generated_records_normalize_with_their_ids() {
        let base = "2026-01-05T10:00:00Z".parse().unwrap();
        for i in [0u64, 1, 9, 123_456] {
            let text = cloudtrail_exchange(7, i, base);
            let Normalized::Event(row) =
                cloudtrail::normalize(text.as_bytes(), Utc::now()).unwrap()
            else {
                panic!("record {i} ignored");
            };
            assert_eq!(row.source_event_id, event_id(7, i));
            assert_eq!(row.run_id, format!("run-{:08x}{:08}", 7, i / 4));
            assert_eq!(row.outcome, if i % 10 == 9 { "failure" } else { "success" });
            if i % 10 != 9 {
                assert!(row.session_expiry.is_some(), "expiry of {i}: {text}");
            }
        }
        assert_ne!(event_id(1, 5), event_id(2, 5));
    }
}
