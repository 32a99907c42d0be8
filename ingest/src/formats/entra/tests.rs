//! Every class of record an Entra export carries, in the shapes Microsoft documents
//! (diagnostic-settings records and Log Analytics rows): which are exchanges, which are ignored.

use super::*;

fn fate(record: &str) -> String {
    assert_eq!(
        crate::formats::detect_source(record.as_bytes()),
        Some(Source::EntraSignin),
        "{record}"
    );
    match normalize(record.as_bytes(), Utc::now()) {
        Ok(Normalized::Event(row)) => format!("exchange {}", row.outcome),
        Ok(Normalized::Ignored(why)) => format!("ignored: {why}"),
        Err(e) => format!("rejected: {e}"),
    }
}

fn diagnostic(category: &str, properties: &str) -> String {
    format!(
        r#"{{"time":"2024-07-09T15:51:12.4012345Z","resourceId":"/tenants/8d2c/providers/Microsoft.aadiam","operationName":"Sign-in activity","category":"{category}","tenantId":"8d2c","resultType":"0","callerIpAddress":"52.86.200.106","properties":{{"id":"9e8d","createdDateTime":"2024-07-09T15:51:12+00:00",{properties}}}}}"#
    )
}

#[test]
fn federated_service_principal_sign_ins_are_exchanges() {
    let fic = r#""appId":"0a6c","servicePrincipalId":"c0ff","federatedCredentialId":"3c1e","clientCredentialType":"federatedIdentityCredential","status":{"errorCode":0}"#;
    assert_eq!(
        fate(&diagnostic("ServicePrincipalSignInLogs", fic)),
        "exchange success"
    );
    // Without a credential type, the federated credential's id says it.
    let by_id = r#""appId":"0a6c","servicePrincipalId":"c0ff","federatedCredentialId":"3c1e","status":{"errorCode":0}"#;
    assert_eq!(
        fate(&diagnostic("ServicePrincipalSignInLogs", by_id)),
        "exchange success"
    );
    let refused = r#"{"TimeGenerated":"2024-07-09T16:20:00Z","Type":"AADServicePrincipalSignInLogs","Category":"ServicePrincipalSignInLogs","Id":"a1","AppId":"0a6c","ServicePrincipalId":"c0ff","ResultType":"700213","ResultDescription":"AADSTS700213: No matching federated identity record found for presented assertion subject 'organization:acme:project:p:workspace:w:run_phase:plan'."}"#;
    assert_eq!(fate(refused), "exchange failure");
}

#[test]
fn user_managed_identity_and_audit_records_are_ignored() {
    let user = r#""appId":"04b07795","appDisplayName":"Azure CLI","userPrincipalName":"ana@contoso.com","userId":"u1","isInteractive":true,"status":{"errorCode":0}"#;
    for category in ["SignInLogs", "NonInteractiveUserSignInLogs"] {
        assert!(
            fate(&diagnostic(category, user)).contains("user sign-in"),
            "{category}"
        );
    }
    let mi = r#""appId":"0a6c","servicePrincipalId":"c0ff","managedIdentityType":"SystemAssigned","status":{"errorCode":0}"#;
    assert!(fate(&diagnostic("ManagedIdentitySignInLogs", mi)).contains("managed-identity"));
    let audit = r#"{"time":"2024-07-09T15:51:12Z","category":"AuditLogs","operationName":"Update application","tenantId":"8d2c","properties":{"id":"Directory_1","activityDisplayName":"Update application","targetResources":[{"id":"c0ff","type":"Application"}],"initiatedBy":{"user":{"userPrincipalName":"ana@contoso.com"}}}}"#;
    assert!(fate(audit).contains("audit log"));
    let table_row = r#"{"TimeGenerated":"2024-07-09T16:20:00Z","Type":"SigninLogs","Id":"u2","AppId":"04b07795","UserPrincipalName":"ana@contoso.com","ResultType":"0"}"#;
    assert!(fate(table_row).contains("user sign-in"));
}

#[test]
fn secret_and_certificate_sign_ins_are_ignored_even_failing_without_a_credential() {
    let secret = r#""appId":"0a6c","servicePrincipalId":"c0ff","clientCredentialType":"clientSecret","servicePrincipalCredentialKeyId":"k1","status":{"errorCode":0}"#;
    assert!(fate(&diagnostic("ServicePrincipalSignInLogs", secret)).starts_with("ignored"));
    let cert = r#""appId":"0a6c","servicePrincipalId":"c0ff","clientCredentialType":"certificate","servicePrincipalCredentialThumbprint":"AB12","status":{"errorCode":0}"#;
    assert!(fate(&diagnostic("ServicePrincipalSignInLogs", cert)).starts_with("ignored"));
    let expired_secret = r#"{"TimeGenerated":"2024-07-09T16:20:00Z","Type":"AADServicePrincipalSignInLogs","Id":"a2","AppId":"0a6c","ServicePrincipalId":"c0ff","ResultType":"7000222","ResultDescription":"AADSTS7000222: The provided client secret keys for app '0a6c' are expired."}"#;
    assert!(fate(expired_secret).starts_with("ignored"));
}
