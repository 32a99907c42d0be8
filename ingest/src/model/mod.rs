//! The normalized event model: one typed row per credential issuance or exchange.
//!
//! Every source format is normalized into [`EventRow`]; every record that cannot be is a
//! [`DeadLetterRow`]. These two structs are the contract between the write path (this crate) and
//! the read path (`credtrail-query`), and they serialize to the same RowBinary bytes on ClickHouse
//! 18.16 and on modern ClickHouse, whose DDL differs (see `schema`).
//!
//! Invariants:
//! - No stored column holds a secret: the intake applies [`EventRow::redact_secrets`] to every
//!   row; issuance rows keep decoded claims only, CloudTrail rows have their session token
//!   replaced by a fingerprint, dead letters are redacted before they are capped.
//! - `dedup_key` is a pure function of (`source`, `source_event_id`), so a redelivered event lands
//!   on the same ClickHouse sorting key and `FINAL` collapses it.

mod lookup;
mod order;
mod subject;

pub use lookup::{KeyKind, LookupRow, lookup_rows};
pub use order::sort_for_storage;
pub(crate) use subject::split_colons;
pub use subject::{Subject, TokenType};

use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Text columns of [`EventRow`]: most values are short (ids, names, codes) and stay inline,
/// which spares the normalizer an allocation per column.
pub type Text = compact_str::CompactString;

/// What a row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A workload identity token was minted for a run phase (seen by `credtrail emit` or a collector).
    Issuance,
    /// A token was presented to a cloud for temporary credentials.
    Exchange,
    /// A session from an exchange was renewed (Vault `renew-self`).
    SessionRenewal,
    /// A session from an exchange was given up before it expired (Vault `revoke-self`): the
    /// run phase is over.
    SessionEnd,
    /// The trust root changed: a role's trust policy, an OIDC provider, its thumbprints or client ids.
    TrustChange,
    /// A workspace or variable-set variable was created, changed or destroyed (HCP audit trails).
    ConfigChange,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Issuance => "issuance",
            EventKind::Exchange => "exchange",
            EventKind::SessionRenewal => "session_renewal",
            EventKind::SessionEnd => "session_end",
            EventKind::TrustChange => "trust_change",
            EventKind::ConfigChange => "config_change",
        }
    }
}

/// Where a record came from; one value per source format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Decoded claims of an HCP Terraform workload identity token.
    HcpIssuance,
    /// AWS CloudTrail records.
    AwsCloudtrail,
    /// GCP Cloud Audit Logs LogEntry records (STS and IAM Credentials).
    GcpAudit,
    /// Azure Entra service-principal sign-in logs.
    EntraSignin,
    /// HashiCorp Vault audit device entries.
    VaultAudit,
    /// HCP Terraform Audit Trails API records.
    HcpAuditTrail,
}

impl Source {
    pub const ALL: [Source; 6] = [
        Source::HcpIssuance,
        Source::AwsCloudtrail,
        Source::GcpAudit,
        Source::EntraSignin,
        Source::VaultAudit,
        Source::HcpAuditTrail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::HcpIssuance => "hcp_issuance",
            Source::AwsCloudtrail => "aws_cloudtrail",
            Source::GcpAudit => "gcp_audit",
            Source::EntraSignin => "entra_signin",
            Source::VaultAudit => "vault_audit",
            Source::HcpAuditTrail => "hcp_audit_trail",
        }
    }

    /// Accepts the canonical name and the short names used in URLs and on the command line.
    pub fn parse(name: &str) -> Option<Source> {
        match name {
            "hcp_issuance" | "issuance" => Some(Source::HcpIssuance),
            "aws_cloudtrail" | "cloudtrail" => Some(Source::AwsCloudtrail),
            "gcp_audit" | "gcp" => Some(Source::GcpAudit),
            "entra_signin" | "entra" | "azure" => Some(Source::EntraSignin),
            "vault_audit" | "vault" => Some(Source::VaultAudit),
            "hcp_audit_trail" | "audit_trail" => Some(Source::HcpAuditTrail),
            _ => None,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of an exchange; issuance rows say `issued`.
pub mod outcome {
    pub const SUCCESS: &str = "success";
    pub const FAILURE: &str = "failure";
    pub const ISSUED: &str = "issued";
}

/// One normalized issuance or exchange. Column order here is the RowBinary column order.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct EventRow {
    /// When the event happened (whole seconds, UTC); `event_ms` keeps the sub-second part.
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub event_time: DateTime<Utc>,
    pub event_ms: u16,
    /// When credtrail normalized it; the ReplacingMergeTree version (the latest delivery wins).
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub ingest_time: DateTime<Utc>,
    pub dedup_key: u64,
    pub event_kind: Text,
    pub source: Text,
    pub source_event_id: Text,
    /// aws, gcp, azure, vault, hcp.
    pub provider: Text,
    pub event_name: Text,
    pub outcome: Text,
    pub error_code: Text,
    pub error_message: Text,
    pub issuer: Text,
    pub audience: Text,
    pub subject: Text,
    pub token_type: Text,
    pub org_name: Text,
    pub project_name: Text,
    pub workspace_name: Text,
    pub run_phase: Text,
    pub org_id: Text,
    pub project_id: Text,
    pub workspace_id: Text,
    pub run_id: Text,
    /// Issuance only: exchange logs never carry the JWT ID.
    pub jti: Text,
    /// Issuance only: `sha256:<hex>` of the token bytes; the token itself is never kept.
    pub token_fingerprint: Text,
    /// The multiple-configurations tag (`TFC_*_<TAG>`); empty for the default configuration or
    /// until attribution knows better.
    pub alias_tag: Text,
    /// How `alias_tag` was decided, or why it is empty (see `alias::attribute::Match`).
    pub alias_match: Text,
    pub region: Text,
    /// AWS account, GCP project number, Entra tenant, Vault namespace.
    pub target_account: Text,
    /// Role ARN, service account, client id, Vault role.
    pub target_principal: Text,
    pub session_name: Text,
    /// AWS access key id of the issued session: the join key to the session's later API calls.
    pub session_id: Text,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub session_expiry: Option<DateTime<Utc>>,
    pub duration_seconds: Option<u32>,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub token_issued_at: Option<DateTime<Utc>>,
    #[serde(with = "clickhouse::serde::chrono::datetime::option")]
    pub token_expires_at: Option<DateTime<Utc>>,
    /// IPv6, IPv4 as IPv4-mapped; all zero when the caller was not an IP (an AWS service).
    pub source_ip: [u8; 16],
    pub user_agent: Text,
    /// Who made a trust or configuration change (IAM ARN, HCP user or token id); for sign-ins
    /// and logins, the identity the cloud created for the token (Entra service principal object
    /// id, Vault display name, GCP service account).
    pub actor: Text,
    /// Configuration changes: the variable's key (never its value).
    pub variable_key: Text,
    /// The trust object that accepted (or refused) the token: the Entra federated identity
    /// credential id, the Vault auth mount path.
    pub credential_id: Text,
    /// The source record as received (scrubbed of secrets), for forensics; compressed by ClickHouse.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

/// A CloudTrail exchange in `org`/`workspace` at `time`, for the model's unit tests.
#[cfg(test)]
fn test_exchange(id: &str, org: &str, workspace: &str, time: DateTime<Utc>) -> EventRow {
    let mut e = EventRow::new(
        EventKind::Exchange,
        Source::AwsCloudtrail,
        id.into(),
        "aws",
        time,
        time,
    );
    e.org_name = org.into();
    e.workspace_name = workspace.into();
    e
}

impl EventRow {
    /// Replaces anything secret-shaped in every text column and in `raw` by its fingerprint
    /// ([`crate::fingerprint::redact_secrets`]). The intake applies it to every row it makes, so
    /// no format can forget a field: a token in a user agent, an error message or an id is
    /// never stored, listed or shown.
    pub fn redact_secrets(&mut self) {
        use crate::fingerprint::{may_hold_secret, redact_secrets};
        use std::borrow::Cow;
        // Every column is taken from the record `raw` keeps (formats store it unredacted: this
        // is the one place), and a JSON escape counts as suspect. So a clean `raw` means clean
        // columns, and the common case costs one pass.
        if !self.raw.is_empty() && !may_hold_secret(&self.raw) {
            return;
        }
        for text in [
            &mut self.event_kind,
            &mut self.source_event_id,
            &mut self.provider,
            &mut self.event_name,
            &mut self.outcome,
            &mut self.error_code,
            &mut self.error_message,
            &mut self.issuer,
            &mut self.audience,
            &mut self.subject,
            &mut self.org_name,
            &mut self.project_name,
            &mut self.workspace_name,
            &mut self.run_phase,
            &mut self.org_id,
            &mut self.project_id,
            &mut self.workspace_id,
            &mut self.run_id,
            &mut self.jti,
            &mut self.alias_tag,
            &mut self.region,
            &mut self.target_account,
            &mut self.target_principal,
            &mut self.session_name,
            &mut self.session_id,
            &mut self.user_agent,
            &mut self.actor,
            &mut self.variable_key,
            &mut self.credential_id,
        ] {
            if let Cow::Owned(clean) = redact_secrets(text.as_bytes()) {
                *text = Text::from(String::from_utf8_lossy(&clean).as_ref());
            }
        }
        if let Cow::Owned(clean) = redact_secrets(&self.raw) {
            self.raw = clean;
        }
    }

    /// A row with the identity of its source event filled in and everything else empty.
    pub fn new(
        kind: EventKind,
        source: Source,
        source_event_id: Text,
        provider: &str,
        event_time: DateTime<Utc>,
        ingest_time: DateTime<Utc>,
    ) -> EventRow {
        EventRow {
            event_time: trunc_seconds(event_time),
            event_ms: event_time.timestamp_subsec_millis().min(999) as u16,
            ingest_time: trunc_seconds(ingest_time),
            dedup_key: crate::fingerprint::dedup_key(source, &source_event_id),
            event_kind: Text::const_new(kind.as_str()),
            source: Text::const_new(source.as_str()),
            source_event_id,
            provider: provider.into(),
            event_name: Text::default(),
            outcome: Text::default(),
            error_code: Text::default(),
            error_message: Text::default(),
            issuer: Text::default(),
            audience: Text::default(),
            subject: Text::default(),
            token_type: Text::default(),
            org_name: Text::default(),
            project_name: Text::default(),
            workspace_name: Text::default(),
            run_phase: Text::default(),
            org_id: Text::default(),
            project_id: Text::default(),
            workspace_id: Text::default(),
            run_id: Text::default(),
            jti: Text::default(),
            token_fingerprint: Text::default(),
            alias_tag: Text::default(),
            alias_match: Text::default(),
            region: Text::default(),
            target_account: Text::default(),
            target_principal: Text::default(),
            session_name: Text::default(),
            session_id: Text::default(),
            session_expiry: None,
            duration_seconds: None,
            token_issued_at: None,
            token_expires_at: None,
            source_ip: [0; 16],
            user_agent: Text::default(),
            actor: Text::default(),
            variable_key: Text::default(),
            credential_id: Text::default(),
            raw: Vec::new(),
        }
    }

    /// Fills the subject and every part parsed from it.
    pub fn set_subject(&mut self, subject: &str) {
        let parsed = Subject::parse(subject);
        self.subject = subject.into();
        self.token_type = Text::const_new(parsed.token_type.as_str());
        self.org_name = parsed.organization.into();
        self.project_name = parsed.project.into();
        self.workspace_name = parsed.workspace.into();
        self.run_phase = parsed.run_phase.into();
    }
}

fn trunc_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The stored form of an IP address as logs write it; all zero when absent or not an address
/// (AWS writes a service name, `ec2.amazonaws.com`, for calls made by a service).
pub fn ip_from_text(text: Option<&str>) -> [u8; 16] {
    text.and_then(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(ip_bytes)
        .unwrap_or([0; 16])
}

/// The 16 bytes ClickHouse stores for an IP (`IPv6` or `FixedString(16)`); IPv4 is mapped.
pub fn ip_bytes(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A record that could not be parsed or normalized, kept with the reason.
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct DeadLetterRow {
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub received_time: DateTime<Utc>,
    /// Hash of (source, origin, raw bytes): the same bad record delivered again is one dead letter.
    pub dedup_key: u64,
    pub source: String,
    /// Where the record was: `file:PATH:LINE`, `http:INDEX`, later `kafka:TOPIC:PARTITION:OFFSET`.
    pub origin: String,
    /// A short machine-readable class (`invalid_json`, `too_large`, `invalid_token`, ...).
    pub error_kind: String,
    /// The human-readable reason, with the JSON path when there is one.
    pub reason: String,
    pub raw_size: u64,
    pub raw_sha256: String,
    /// The first `max_dead_letter_bytes` of the record, with every secret redacted.
    #[serde(with = "serde_bytes")]
    pub raw: Vec<u8>,
}

/// One API call made with an issued AWS session, folded into `session_activity` by ClickHouse
/// (the row itself is not kept).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct SessionCallRow {
    /// The session's access key id (`ASIA…`), as `responseElements.credentials.accessKeyId` of
    /// the exchange that issued it.
    pub session_id: String,
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub event_time: DateTime<Utc>,
    /// Hash of the call's `eventID`: counted once however often it is delivered.
    pub call_key: u64,
    pub event_source: String,
    pub failed: u8,
    pub source_ip: String,
    pub region: String,
    pub account: String,
    pub role_arn: String,
    pub session_name: String,
}
