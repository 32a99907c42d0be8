//! One record builder per source format, field by field as the real systems write them
//! (the same shapes as `tests/fixtures/`): CloudTrail `AssumeRoleWithWebIdentity` and
//! `UpdateAssumeRolePolicy`, GCP STS `ExchangeToken` and IAM `GenerateAccessToken`, Entra
//! service-principal sign-ins (Log Analytics rows), Vault audit request/response pairs of a JWT
//! login, `credtrail emit` issuance records and HCP Terraform audit-trail entries.
//!
//! Every builder returns the record's source event id (what credtrail stores as
//! `source_event_id`) with the record.

use crate::ids::Ids;
use crate::world::{Config, Workspace};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

/// One exchange as a run (or someone holding its token) makes it.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub time: DateTime<Utc>,
    pub ws: &'a Workspace,
    pub config: &'a Config,
    /// The `sub` of the token presented (a renamed workspace's differs from `ws`).
    pub sub: String,
    pub phase: &'a str,
    pub run: &'a str,
    /// The principal asked for (normally the configuration's for the phase).
    pub principal: String,
    /// The `aud` of the token presented.
    pub audience: String,
    pub ip: String,
    pub user_agent: String,
    /// `(code, message)` of a refused exchange.
    pub error: Option<(String, String)>,
    /// AWS `DurationSeconds` asked for (default: none, one hour).
    pub duration: Option<u32>,
}

pub const AWS_UA: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.9.5 (+https://www.terraform.io) terraform-provider-aws/5.70.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.30.5 os/linux lang/go#1.22.7 md/GOOS#linux md/GOARCH#amd64 api/sts#1.30.7";
pub const GCP_UA: &str = "Terraform/1.9.5 (+https://www.terraform.io) Terraform-Plugin-SDK/2.33.0 terraform-provider-google/5.44.0,gzip(gfe)";
pub const VAULT_UA: &str = "Go-http-client/1.1 vault-provider/4.4.0";

fn secs(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The account of an AWS role ARN.
pub fn arn_account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or("")
}

pub fn cloudtrail_exchange(ids: &mut Ids, c: &Call) -> (String, Value) {
    let id = ids.uuid();
    let account = arn_account(&c.principal).to_owned();
    let oidc = format!("arn:aws:iam::{account}:oidc-provider/app.terraform.io");
    let region = "us-east-1";
    let mut params = json!({
        "roleArn": c.principal,
        "roleSessionName": format!("terraform-run-{}", c.run),
    });
    if let Some(d) = c.duration {
        params["durationSeconds"] = d.into();
    }
    let mut record = json!({
        "eventVersion": "1.08",
        "userIdentity": {
            "type": "WebIdentityUser",
            "principalId": format!("{oidc}:{}:{}", c.audience, c.sub),
            "userName": c.sub,
            "identityProvider": oidc,
        },
        "eventTime": secs(c.time),
        "eventSource": "sts.amazonaws.com",
        "eventName": "AssumeRoleWithWebIdentity",
        "awsRegion": region,
        "sourceIPAddress": c.ip,
        "userAgent": c.user_agent,
        "requestParameters": params,
        "responseElements": null,
        "requestID": ids.uuid(),
        "eventID": id,
        "readOnly": true,
        "resources": [{"accountId": account, "type": "AWS::IAM::Role", "ARN": c.principal}],
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": format!("sts.{region}.amazonaws.com"),
        },
    });
    match &c.error {
        Some((code, message)) => {
            record["errorCode"] = code.as_str().into();
            record["errorMessage"] = message.as_str().into();
        }
        None => {
            let expiry = c.time + Duration::seconds(i64::from(c.duration.unwrap_or(3600)));
            let role_name = c.principal.rsplit('/').next().unwrap_or("");
            record["responseElements"] = json!({
                "credentials": {
                    "accessKeyId": ids.access_key(),
                    "sessionToken": "<encoded session token blob>",
                    "expiration": expiry.format("%b %-d, %Y, %-I:%M:%S %p").to_string(),
                },
                "subjectFromWebIdentityToken": c.sub,
                "assumedRoleUser": {
                    "assumedRoleId": format!("AROA{}:terraform-run-{}", ids.hex(16).to_uppercase(), c.run),
                    "arn": format!("arn:aws:sts::{account}:assumed-role/{role_name}/terraform-run-{}", c.run),
                },
                "provider": oidc,
                "audience": c.audience,
            });
        }
    }
    (id, record)
}

/// `UpdateAssumeRolePolicy` by an administrator, with the new trust policy.
pub fn cloudtrail_trust_change(
    ids: &mut Ids,
    time: DateTime<Utc>,
    role_arn: &str,
    policy: &Value,
) -> (String, Value) {
    let id = ids.uuid();
    let account = arn_account(role_arn).to_owned();
    let record = json!({
        "eventVersion": "1.09",
        "eventSource": "iam.amazonaws.com",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "userAgent": "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22",
        "readOnly": false,
        "eventType": "AwsApiCall",
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "eventTime": secs(time),
        "eventName": "UpdateAssumeRolePolicy",
        "eventID": id,
        "requestID": ids.uuid(),
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEADMIN:mallory",
            "arn": format!("arn:aws:sts::{account}:assumed-role/Admin/mallory"),
            "accountId": account,
            "accessKeyId": ids.access_key(),
        },
        "requestParameters": {
            "roleName": role_arn.rsplit('/').next().unwrap_or(""),
            "policyDocument": policy.to_string(),
        },
        "responseElements": null,
    });
    (id, record)
}

fn gcp_entry(ids: &mut Ids, time: DateTime<Utc>, proto: Value, resource: Value) -> (String, Value) {
    let id = ids.hex(12);
    let record = json!({
        "insertId": id,
        "logName": "projects/hcp-terraform-audit/logs/cloudaudit.googleapis.com%2Fdata_access",
        "protoPayload": proto,
        "receiveTimestamp": millis(time + Duration::milliseconds(250)),
        "resource": resource,
        "severity": "INFO",
        "timestamp": millis(time),
    });
    (id, record)
}

/// STS `ExchangeToken`: the workload identity pool accepts the HCP Terraform token.
pub fn gcp_exchange_token(ids: &mut Ids, c: &Call) -> (String, Value) {
    let name = &c.config.gcp_provider_name;
    let mut proto = json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalSubject": c.sub},
        "methodName": "google.identity.sts.v1.SecurityTokenService.ExchangeToken",
        "request": {
            "@type": "type.googleapis.com/google.identity.sts.v1.ExchangeTokenRequest",
            "audience": format!("//iam.googleapis.com/{name}"),
            "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
            "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
            "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
        },
        "requestMetadata": {"callerIp": c.ip, "callerSuppliedUserAgent": c.user_agent},
        "resourceName": name,
        "serviceName": "sts.googleapis.com",
    });
    if let Some((code, message)) = &c.error {
        proto["status"] = json!({"code": code.parse::<i64>().unwrap_or(7), "message": message});
    }
    let resource = json!({"type": "audited_resource", "labels": {
        "method": "google.identity.sts.v1.SecurityTokenService.ExchangeToken",
        "project_id": c.config.account, "service": "sts.googleapis.com"}});
    gcp_entry(ids, c.time, proto, resource)
}

/// IAM Credentials `GenerateAccessToken`: the federated principal impersonates the phase's
/// service account.
pub fn gcp_generate_access_token(ids: &mut Ids, c: &Call) -> (String, Value) {
    let pool = c
        .config
        .gcp_provider_name
        .split("/providers/")
        .next()
        .unwrap_or("");
    let sa_id = ids.digits(21);
    let proto = json!({
        "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
        "authenticationInfo": {"principalSubject": format!("principal://iam.googleapis.com/{pool}/subject/{}", c.sub)},
        "methodName": "GenerateAccessToken",
        "request": {
            "@type": "type.googleapis.com/google.iam.credentials.v1.GenerateAccessTokenRequest",
            "name": format!("projects/-/serviceAccounts/{}", c.principal),
            "lifetime": "3600s",
        },
        "requestMetadata": {"callerIp": c.ip, "callerSuppliedUserAgent": c.user_agent},
        "resourceName": format!("projects/-/serviceAccounts/{sa_id}"),
        "serviceName": "iamcredentials.googleapis.com",
        "authorizationInfo": [{"permission": "iam.serviceAccounts.getAccessToken", "granted": true,
                               "resource": format!("projects/-/serviceAccounts/{sa_id}")}],
    });
    let resource = json!({"type": "service_account", "labels": {
        "email_id": c.principal, "project_id": c.config.gcp_project_id, "unique_id": sa_id}});
    gcp_entry(ids, c.time, proto, resource)
}

/// An Entra service-principal sign-in with a federated credential (Log Analytics row).
pub fn entra_signin(ids: &mut Ids, c: &Call) -> (String, Value) {
    let id = ids.uuid();
    let (result, description) = match &c.error {
        Some((code, message)) => (code.clone(), message.clone()),
        None => ("0".to_owned(), String::new()),
    };
    let record = json!({
        "TenantId": ids.uuid(),
        "TimeGenerated": c.time.to_rfc3339_opts(SecondsFormat::Micros, true),
        "Id": id,
        "OperationName": "Sign-in activity",
        "Category": "ServicePrincipalSignInLogs",
        "ResultType": result,
        "ResultSignature": if c.error.is_some() { "FAILURE" } else { "SUCCESS" },
        "ResultDescription": description,
        "AADTenantId": c.config.account,
        "AppId": c.principal,
        "ServicePrincipalId": ids.uuid(),
        "ServicePrincipalName": format!("tfc-{}-{}", c.ws.name, c.phase),
        "FederatedCredentialId": ids.uuid(),
        "ClientCredentialType": "federatedIdentityCredential",
        "IPAddress": c.ip,
        "Location": "US",
        "ResourceDisplayName": "Windows Azure Service Management API",
        "ResourceIdentity": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "ConditionalAccessStatus": "notApplied",
        "CorrelationId": ids.uuid(),
        "UniqueTokenIdentifier": ids.hex(22),
        "DurationMs": 0,
        "Type": "AADServicePrincipalSignInLogs",
    });
    (id, record)
}

/// A Vault JWT login: the audit device's request and response lines (HMAC'd secrets).
pub fn vault_login(ids: &mut Ids, c: &Call, jti: &str) -> (String, [Value; 2]) {
    let id = ids.uuid();
    let hmac = |ids: &mut Ids| format!("hmac-sha256:{}", ids.hex(64));
    let request = json!({
        "id": id,
        "operation": "update",
        "mount_type": "jwt",
        "mount_accessor": "auth_jwt_1a2b3c4d",
        "mount_point": "auth/jwt/",
        "mount_class": "auth",
        "client_id": "",
        "client_token": "",
        "client_token_accessor": "",
        "namespace": {"id": "ns1", "path": format!("{}/", c.config.account)},
        "path": "auth/jwt/login",
        "remote_address": c.ip,
        "remote_port": 40112,
        "headers": {"user-agent": [c.user_agent]},
        "data": {"jwt": hmac(ids), "role": hmac(ids)},
    });
    let time = c.time.to_rfc3339_opts(SecondsFormat::Micros, true);
    let first = json!({"time": time, "type": "request", "auth": {"token_type": "default"}, "request": request});
    let workspace = c
        .sub
        .rsplit_once(":run_phase:")
        .map_or(c.sub.as_str(), |(w, _)| w);
    let mut second = json!({
        "time": (c.time + Duration::milliseconds(80)).to_rfc3339_opts(SecondsFormat::Micros, true),
        "type": "response",
        "auth": {"token_type": "default"},
        "request": request,
        "response": {"mount_type": "jwt", "mount_accessor": "auth_jwt_1a2b3c4d"},
    });
    match &c.error {
        Some((_, message)) => second["error"] = message.as_str().into(),
        None => {
            second["response"]["auth"] = json!({
                "client_token": hmac(ids),
                "accessor": hmac(ids),
                "display_name": format!("jwt-{workspace}"),
                "policies": ["default", c.principal],
                "token_policies": ["default", c.principal],
                "metadata": {
                    "role": c.principal,
                    "terraform_run_id": c.run,
                    "terraform_workspace_id": c.ws.id,
                    "terraform_run_phase": c.phase,
                    "terraform_organization_id": c.ws.org_id,
                    "jti": jti,
                },
                "entity_id": ids.uuid(),
                "token_type": "service",
                "token_ttl": 1200,
                "token_issue_time": secs(c.time),
            });
        }
    }
    (id, [first, second])
}

/// A token HCP Terraform issued, as `credtrail emit` reports it (claims and a fingerprint).
#[derive(Debug, Clone)]
pub struct Token<'a> {
    pub ws: &'a Workspace,
    pub config: &'a Config,
    pub phase: &'a str,
    pub run: &'a str,
    pub iat: DateTime<Utc>,
    pub exp: DateTime<Utc>,
    /// The workspace id claimed (a recreated workspace's differs from `ws.id`).
    pub workspace_id: String,
}

pub fn issuance(ids: &mut Ids, t: &Token) -> (String, Value) {
    let jti = ids.uuid();
    let ws = t.ws;
    let fingerprint = ids.hex(64);
    let claims = json!({
        "jti": jti,
        "iss": "https://app.terraform.io",
        "aud": t.config.audience,
        "iat": t.iat.timestamp(),
        "nbf": t.iat.timestamp() - 5,
        "exp": t.exp.timestamp(),
        "sub": ws.sub(t.phase),
        "terraform_organization_id": ws.org_id,
        "terraform_organization_name": ws.org,
        "terraform_project_id": ws.project_id,
        "terraform_project_name": ws.project,
        "terraform_workspace_id": t.workspace_id,
        "terraform_workspace_name": ws.name,
        "terraform_full_workspace": format!("organization:{}:project:{}:workspace:{}", ws.org, ws.project, ws.name),
        "terraform_run_id": t.run,
        "terraform_run_phase": t.phase,
    });
    // Organizations collect issuance differently: `credtrail emit` nests the claims; another
    // emitter writes the decoded claims flat, with its own spellings beside them (a bare hex
    // hash, `alias` or `tag`, and for default configurations no alias at all).
    let record = if crate::world::org_position(&ws.org).is_multiple_of(2) {
        json!({
            "provider": t.config.provider.as_str(),
            "alias_tag": t.config.alias,
            "token_fingerprint": format!("sha256:{fingerprint}"),
            "claims": claims,
        })
    } else {
        let mut flat = claims;
        flat["provider"] = json!(t.config.provider.as_str());
        flat["token_sha256"] = json!(fingerprint);
        if !t.config.alias.is_empty() {
            let spelling = if t.phase == "plan" { "alias" } else { "tag" };
            flat[spelling] = json!(t.config.alias);
        }
        flat
    };
    (jti, record)
}

/// A module test run's token (`sub` names the registry module, not a workspace).
pub fn module_test_issuance(
    ids: &mut Ids,
    ws: &Workspace,
    module: &str,
    run: &str,
    iat: DateTime<Utc>,
) -> (String, Value) {
    let jti = ids.uuid();
    let record = json!({
        "provider": "aws",
        "alias_tag": "",
        "token_fingerprint": format!("sha256:{}", ids.hex(64)),
        "claims": {
            "jti": jti,
            "iss": "https://app.terraform.io",
            "aud": "aws.workload.identity",
            "iat": iat.timestamp(),
            "nbf": iat.timestamp() - 5,
            "exp": iat.timestamp() + 7200,
            "sub": format!("organization:{}:module:{module}:operation:test_run", ws.org),
            "terraform_organization_id": ws.org_id,
            "terraform_organization_name": ws.org,
            "terraform_run_id": run,
            "terraform_run_phase": "plan",
        },
    });
    (jti, record)
}

/// An HCP Terraform audit-trail entry for a workspace variable (`var.create`/`update`/...).
/// The value is included as the API returns it; credtrail drops it on ingest.
pub fn audit_variable(
    ids: &mut Ids,
    time: DateTime<Utc>,
    ws: &Workspace,
    action: &str,
    key: &str,
    value: &str,
    actor: &str,
) -> (String, Value) {
    let id = ids.uuid();
    let record = json!({
        "id": id,
        "version": "0",
        "type": "Resource",
        "timestamp": millis(time),
        "auth": {"accessor_id": format!("user-{}", ids.hex(16)), "description": actor,
                 "type": "Client", "impersonator_id": null, "organization_id": ws.org_id},
        "request": {"id": ids.uuid()},
        "resource": {"id": ids.hcp("var"), "type": "var", "action": action, "meta": {
            "key": key, "category": "env", "sensitive": false, "value": value,
            "workspace_id": ws.id, "workspace_name": ws.name}},
    });
    (id, record)
}

/// What else an Entra export holds besides workload sign-ins, none of it an exchange.
#[derive(Debug, Clone, Copy)]
pub enum OtherSignIn {
    /// A person at the portal (`SigninLogs`).
    User,
    /// A person's token refreshed by a client (`AADNonInteractiveUserSignInLogs`).
    NonInteractiveUser,
    /// An Azure resource's managed identity (`AADManagedIdentitySignInLogs`).
    ManagedIdentity,
    /// A service principal with a client secret (`AADServicePrincipalSignInLogs`).
    ClientSecret,
    /// The same with an expired secret: a failure that names no credential.
    ExpiredSecret,
}

/// One such record, as a Log Analytics row.
pub fn entra_other_signin(
    ids: &mut Ids,
    time: DateTime<Utc>,
    tenant: &str,
    kind: OtherSignIn,
) -> Value {
    let at = time.to_rfc3339_opts(SecondsFormat::Micros, true);
    let (table, category) = match kind {
        OtherSignIn::User => ("SigninLogs", "SignInLogs"),
        OtherSignIn::NonInteractiveUser => (
            "AADNonInteractiveUserSignInLogs",
            "NonInteractiveUserSignInLogs",
        ),
        OtherSignIn::ManagedIdentity => {
            ("AADManagedIdentitySignInLogs", "ManagedIdentitySignInLogs")
        }
        OtherSignIn::ClientSecret | OtherSignIn::ExpiredSecret => (
            "AADServicePrincipalSignInLogs",
            "ServicePrincipalSignInLogs",
        ),
    };
    let mut row = json!({
        "TenantId": ids.uuid(),
        "TimeGenerated": at,
        "Id": ids.uuid(),
        "OperationName": "Sign-in activity",
        "Category": category,
        "Type": table,
        "ResultType": "0",
        "AADTenantId": tenant,
        "AppId": ids.uuid(),
        "IPAddress": "198.51.100.24",
        "CorrelationId": ids.uuid(),
    });
    match kind {
        OtherSignIn::User | OtherSignIn::NonInteractiveUser => {
            row["UserPrincipalName"] = json!("ana@contoso.com");
            row["AppDisplayName"] = json!("Azure Portal");
        }
        OtherSignIn::ManagedIdentity => {
            row["ServicePrincipalId"] = json!(ids.uuid());
            row["ResourceDisplayName"] = json!("Azure Key Vault");
        }
        OtherSignIn::ClientSecret => {
            row["ServicePrincipalId"] = json!(ids.uuid());
            row["ClientCredentialType"] = json!("clientSecret");
            row["ServicePrincipalCredentialKeyId"] = json!(ids.uuid());
        }
        OtherSignIn::ExpiredSecret => {
            row["ServicePrincipalId"] = json!(ids.uuid());
            row["ResultType"] = json!("7000222");
            row["ResultDescription"] =
                json!("AADSTS7000222: The provided client secret keys for app are expired.");
        }
    }
    row
}

/// A trust policy replaced on a role that trusts an AWS service (Lambda, EC2, Backup): ordinary
/// IAM churn that is not HCP Terraform's trust root.
pub fn cloudtrail_service_role_change(
    ids: &mut Ids,
    time: DateTime<Utc>,
    account: &str,
    service: &str,
) -> (String, Value) {
    let role = format!(
        "arn:aws:iam::{account}:role/{}-exec",
        service.split('.').next().unwrap_or("svc")
    );
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]});
    cloudtrail_trust_change(ids, time, &role, &policy)
}
