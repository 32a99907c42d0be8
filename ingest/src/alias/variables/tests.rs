//! The variable rules, one test per rule, and the reference workspace: three AWS aliases, one
//! GCP and one Vault configuration.

use super::*;

fn derive_from(vars: &[(&str, &str)]) -> Derived {
    derive(vars.iter().copied())
}

/// The reference workspace.
const WORKSPACE: &[(&str, &str)] = &[
    // AWS: a default and three aliases.
    ("TFC_AWS_PROVIDER_AUTH", "true"),
    (
        "TFC_AWS_RUN_ROLE_ARN",
        "arn:aws:iam::111111111111:role/tfc-default",
    ),
    ("TFC_AWS_PROVIDER_AUTH_PROD", "true"),
    (
        "TFC_AWS_PLAN_ROLE_ARN_PROD",
        "arn:aws:iam::222222222222:role/tfc-prod-read",
    ),
    (
        "TFC_AWS_APPLY_ROLE_ARN_PROD",
        "arn:aws:iam::222222222222:role/tfc-prod-write",
    ),
    (
        "TFC_AWS_WORKLOAD_IDENTITY_AUDIENCE_PROD",
        "aws.workload.identity.prod",
    ),
    ("TFC_AWS_PROVIDER_AUTH_STAGING", "true"),
    (
        "TFC_AWS_RUN_ROLE_ARN_STAGING",
        "arn:aws:iam::333333333333:role/tfc-staging",
    ),
    ("TFC_AWS_PROVIDER_AUTH_audit_2", "true"),
    (
        "TFC_DEFAULT_AWS_RUN_ROLE_ARN",
        "arn:aws:iam::444444444444:role/tfc-shared",
    ),
    (
        "TFC_DEFAULT_AWS_WORKLOAD_IDENTITY_AUDIENCE",
        "aws.workload.identity.shared",
    ),
    // GCP default, located by number, pool and provider ids.
    ("TFC_GCP_PROVIDER_AUTH", "true"),
    (
        "TFC_GCP_RUN_SERVICE_ACCOUNT_EMAIL",
        "tfc@acme-prod.iam.gserviceaccount.com",
    ),
    (
        "TFC_GCP_APPLY_SERVICE_ACCOUNT_EMAIL",
        "tfc-apply@acme-prod.iam.gserviceaccount.com",
    ),
    ("TFC_GCP_PROJECT_NUMBER", "123456789012"),
    ("TFC_GCP_WORKLOAD_POOL_ID", "hcp-terraform"),
    ("TFC_GCP_WORKLOAD_PROVIDER_ID", "app-terraform-io"),
    // Vault as an alias only, sharing its address through TFC_DEFAULT_.
    ("TFC_VAULT_PROVIDER_AUTH_SECRETS", "true"),
    ("TFC_VAULT_RUN_ROLE_SECRETS", "tfc-network"),
    ("TFC_VAULT_NAMESPACE_SECRETS", "platform"),
    ("TFC_DEFAULT_VAULT_ADDR", "https://vault.example.com:8200"),
    // Not dynamic credentials at all.
    ("AWS_REGION", "us-east-1"),
    ("TFC_RUN_ID", "run-xyz"),
];

#[test]
fn reference_workspace_has_five_configurations() {
    let d = derive_from(WORKSPACE);
    let names: Vec<(Provider, &str)> = d
        .configurations
        .iter()
        .map(|c| (c.provider, c.tag.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![
            (Provider::Aws, ""),
            (Provider::Aws, "PROD"),
            (Provider::Aws, "STAGING"),
            (Provider::Aws, "audit_2"),
            (Provider::Gcp, ""),
            (Provider::Vault, "SECRETS"),
        ]
    );
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn explicit_values_win_over_tfc_default() {
    let d = derive_from(WORKSPACE);
    let default = d.get(Provider::Aws, "").unwrap();
    assert_eq!(
        default.plan_principal,
        "arn:aws:iam::111111111111:role/tfc-default"
    );
    assert_eq!(default.from["plan_principal"], "TFC_AWS_RUN_ROLE_ARN");
    // The default configuration takes TFC_DEFAULT_ where it has no bare value.
    assert_eq!(default.audience, "aws.workload.identity.shared");
    assert_eq!(
        default.from["audience"],
        "TFC_DEFAULT_AWS_WORKLOAD_IDENTITY_AUDIENCE"
    );
    let staging = d.get(Provider::Aws, "STAGING").unwrap();
    assert_eq!(
        staging.apply_principal,
        "arn:aws:iam::333333333333:role/tfc-staging"
    );
    assert_eq!(staging.audience, "aws.workload.identity.shared");
}

#[test]
fn an_alias_with_only_provider_auth_inherits_tfc_default() {
    let d = derive_from(WORKSPACE);
    let audit = d.get(Provider::Aws, "audit_2").unwrap();
    assert_eq!(
        audit.plan_principal,
        "arn:aws:iam::444444444444:role/tfc-shared"
    );
    assert_eq!(
        audit.from["apply_principal"],
        "TFC_DEFAULT_AWS_RUN_ROLE_ARN"
    );
}

#[test]
fn plan_and_apply_fall_back_to_run_separately() {
    let d = derive_from(WORKSPACE);
    let prod = d.get(Provider::Aws, "PROD").unwrap();
    assert_eq!(
        prod.plan_principal,
        "arn:aws:iam::222222222222:role/tfc-prod-read"
    );
    assert_eq!(
        prod.apply_principal,
        "arn:aws:iam::222222222222:role/tfc-prod-write"
    );
    assert_eq!(prod.audience, "aws.workload.identity.prod");
    let gcp = d.get(Provider::Gcp, "").unwrap();
    assert_eq!(gcp.plan_principal, "tfc@acme-prod.iam.gserviceaccount.com");
    assert_eq!(
        gcp.from["plan_principal"],
        "TFC_GCP_RUN_SERVICE_ACCOUNT_EMAIL"
    );
    assert_eq!(
        gcp.apply_principal,
        "tfc-apply@acme-prod.iam.gserviceaccount.com"
    );
}

#[test]
fn explicit_plan_role_wins_over_default_plan_and_tagged_run() {
    // Each variable resolves on its own first: the alias' own PLAN, else TFC_DEFAULT_ PLAN;
    // only then does plan fall back to run.
    let d = derive_from(&[
        ("TFC_AWS_PROVIDER_AUTH_X", "true"),
        ("TFC_AWS_RUN_ROLE_ARN_X", "arn:aws:iam::1:role/x-run"),
        (
            "TFC_DEFAULT_AWS_PLAN_ROLE_ARN",
            "arn:aws:iam::1:role/shared-plan",
        ),
    ]);
    let x = d.get(Provider::Aws, "X").unwrap();
    assert_eq!(x.plan_principal, "arn:aws:iam::1:role/shared-plan");
    assert_eq!(x.apply_principal, "arn:aws:iam::1:role/x-run");
}

#[test]
fn audiences_default_per_provider() {
    let d = derive_from(WORKSPACE);
    assert_eq!(
        d.get(Provider::Gcp, "").unwrap().audience,
        "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/hcp-terraform/providers/app-terraform-io"
    );
    let vault = d.get(Provider::Vault, "SECRETS").unwrap();
    assert_eq!(vault.audience, "vault.workload.identity");
    assert_eq!(vault.from["audience"], "default");
    let d = derive_from(&[
        ("TFC_AZURE_PROVIDER_AUTH", "true"),
        ("TFC_AZURE_RUN_CLIENT_ID", "0a6c3b1e"),
    ]);
    assert_eq!(
        d.get(Provider::Azure, "").unwrap().audience,
        "api://AzureADTokenExchange"
    );
}

#[test]
fn gcp_canonical_provider_name_takes_precedence() {
    let d = derive_from(&[
        ("TFC_GCP_PROVIDER_AUTH", "true"),
        (
            "TFC_GCP_RUN_SERVICE_ACCOUNT_EMAIL",
            "sa@p.iam.gserviceaccount.com",
        ),
        (
            "TFC_GCP_WORKLOAD_PROVIDER_NAME",
            "projects/9/locations/global/workloadIdentityPools/a/providers/b",
        ),
        ("TFC_GCP_PROJECT_NUMBER", "1"),
        ("TFC_GCP_WORKLOAD_POOL_ID", "x"),
        ("TFC_GCP_WORKLOAD_PROVIDER_ID", "y"),
    ]);
    assert_eq!(
        d.get(Provider::Gcp, "").unwrap().audience,
        "//iam.googleapis.com/projects/9/locations/global/workloadIdentityPools/a/providers/b"
    );
}

#[test]
fn vault_settings_resolve_with_defaults() {
    let d = derive_from(WORKSPACE);
    let vault = d.get(Provider::Vault, "SECRETS").unwrap();
    assert_eq!(vault.plan_principal, "tfc-network");
    assert_eq!(vault.settings["addr"], "https://vault.example.com:8200");
    assert_eq!(vault.from["addr"], "TFC_DEFAULT_VAULT_ADDR");
    assert_eq!(vault.settings["namespace"], "platform");
    assert_eq!(vault.settings["auth_path"], "jwt");
    assert_eq!(vault.from["auth_path"], "default");
}

#[test]
fn provider_auth_has_no_default_form() {
    let d = derive_from(&[
        ("TFC_DEFAULT_AWS_PROVIDER_AUTH", "true"),
        ("TFC_DEFAULT_AWS_RUN_ROLE_ARN", "arn:aws:iam::1:role/r"),
    ]);
    assert!(d.configurations.is_empty());
    assert_eq!(d.warnings.len(), 1);
    assert_eq!(d.warnings[0].variable, "TFC_DEFAULT_AWS_PROVIDER_AUTH");
}

#[test]
fn tags_are_checked_and_type_is_reserved() {
    assert!(valid_tag("PROD_2"));
    assert!(valid_tag("lower"));
    assert!(!valid_tag("TYPE"));
    assert!(!valid_tag(""));
    assert!(!valid_tag("PROD-2"));
    let d = derive_from(&[
        ("TFC_AWS_PROVIDER_AUTH_TYPE", "true"),
        ("TFC_AWS_RUN_ROLE_ARN_TYPE", "arn:aws:iam::1:role/r"),
        ("TFC_AWS_PROVIDER_AUTH_BAD-TAG", "true"),
    ]);
    assert!(d.configurations.is_empty());
    let flagged: Vec<&str> = d.warnings.iter().map(|w| w.variable.as_str()).collect();
    assert_eq!(
        flagged,
        vec![
            "TFC_AWS_PROVIDER_AUTH_TYPE",
            "TFC_AWS_RUN_ROLE_ARN_TYPE",
            "TFC_AWS_PROVIDER_AUTH_BAD-TAG"
        ]
    );
}

#[test]
fn alias_variables_without_provider_auth_are_flagged() {
    let d = derive_from(&[
        ("TFC_AWS_PROVIDER_AUTH", "true"),
        ("TFC_AWS_RUN_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ("TFC_AWS_RUN_ROLE_ARN_PROD", "arn:aws:iam::2:role/p"),
        ("TFC_AWS_PROVIDER_AUTH_OFF", "false"),
    ]);
    assert_eq!(d.configurations.len(), 1);
    assert_eq!(d.warnings.len(), 1, "{:?}", d.warnings);
    assert_eq!(d.warnings[0].variable, "TFC_AWS_RUN_ROLE_ARN_PROD");
}

#[test]
fn a_configuration_without_a_principal_is_flagged() {
    let d = derive_from(&[
        ("TFC_AWS_PROVIDER_AUTH", "true"),
        ("TFC_AWS_PLAN_ROLE_ARN", "arn:aws:iam::1:role/plan"),
    ]);
    let c = d.get(Provider::Aws, "").unwrap();
    assert_eq!(c.plan_principal, "arn:aws:iam::1:role/plan");
    assert_eq!(c.apply_principal, "");
    assert_eq!(d.warnings.len(), 1);
    assert!(d.warnings[0].message.contains("no apply principal"));
}

#[test]
fn longest_base_wins_when_splitting_tags() {
    // `TFC_GCP_WORKLOAD_PROVIDER_ID_X` is the provider id of alias X, not a tag `ID_X` of
    // some shorter variable.
    let d = derive_from(&[
        ("TFC_GCP_PROVIDER_AUTH_X", "true"),
        (
            "TFC_GCP_RUN_SERVICE_ACCOUNT_EMAIL_X",
            "sa@p.iam.gserviceaccount.com",
        ),
        ("TFC_GCP_PROJECT_NUMBER_X", "7"),
        ("TFC_GCP_WORKLOAD_POOL_ID_X", "pool"),
        ("TFC_GCP_WORKLOAD_PROVIDER_ID_X", "prov"),
    ]);
    assert_eq!(
        d.get(Provider::Gcp, "X").unwrap().audience,
        "//iam.googleapis.com/projects/7/locations/global/workloadIdentityPools/pool/providers/prov"
    );
}
