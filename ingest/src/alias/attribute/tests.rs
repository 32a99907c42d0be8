//! Attribution against a small inventory: each outcome of [`Match`], and time travel.

use super::*;
use crate::alias::inventory::from_toml;
use crate::model::Source;

const INVENTORY: &str = r#"
[[workspace]]
organization = "acme"
name = "network"
id = "ws-net"
[workspace.variables]
TFC_AWS_PROVIDER_AUTH = "true"
TFC_AWS_PLAN_ROLE_ARN = "arn:aws:iam::111:role/plan"
TFC_AWS_APPLY_ROLE_ARN = "arn:aws:iam::111:role/apply"
TFC_AWS_PROVIDER_AUTH_PROD = "true"
TFC_AWS_RUN_ROLE_ARN_PROD = "arn:aws:iam::222:role/prod"
TFC_AWS_WORKLOAD_IDENTITY_AUDIENCE_PROD = "aws.prod"
TFC_AWS_PROVIDER_AUTH_TWIN = "true"
TFC_AWS_RUN_ROLE_ARN_TWIN = "arn:aws:iam::222:role/prod"
TFC_AWS_WORKLOAD_IDENTITY_AUDIENCE_TWIN = "aws.prod"
TFC_GCP_PROVIDER_AUTH = "true"
TFC_GCP_RUN_SERVICE_ACCOUNT_EMAIL = "sa@p.iam.gserviceaccount.com"
TFC_GCP_WORKLOAD_PROVIDER_NAME = "projects/9/locations/global/workloadIdentityPools/p/providers/x"
TFC_GCP_WORKLOAD_IDENTITY_AUDIENCE = "custom-gcp-aud"

[[workspace]]
organization = "acme"
name = "identity"
id = "ws-idy"
[workspace.variables]
TFC_AZURE_PROVIDER_AUTH = "true"
TFC_AZURE_PLAN_CLIENT_ID = "c-plan"
TFC_AZURE_APPLY_CLIENT_ID = "c-apply"
"#;

fn attributor(valid_from: &str) -> Attributor {
    let t = valid_from.parse().unwrap();
    let rows = from_toml(INVENTORY)
        .unwrap()
        .iter()
        .flat_map(|w| w.rows(t, "test"))
        .collect();
    Attributor::new(rows)
}

fn exchange(provider: &str, sub: &str, principal: &str, audience: &str) -> EventRow {
    let mut row = EventRow::new(
        EventKind::Exchange,
        Source::AwsCloudtrail,
        "e".into(),
        provider,
        "2024-07-09T12:00:00Z".parse().unwrap(),
        Utc::now(),
    );
    row.set_subject(sub);
    row.target_principal = principal.into();
    row.audience = audience.into();
    row
}

const PLAN: &str = "organization:acme:project:p:workspace:network:run_phase:plan";
const APPLY: &str = "organization:acme:project:p:workspace:network:run_phase:apply";

fn decide(a: &Attributor, row: &mut EventRow) -> (String, String) {
    a.attribute(row);
    (row.alias_tag.to_string(), row.alias_match.to_string())
}

#[test]
fn default_and_alias_by_principal_and_audience() {
    let a = attributor("2024-01-01T00:00:00Z");
    let mut r = exchange(
        "aws",
        PLAN,
        "arn:aws:iam::111:role/plan",
        "aws.workload.identity",
    );
    assert_eq!(decide(&a, &mut r), ("".into(), "matched".into()));
    let mut r = exchange("aws", APPLY, "arn:aws:iam::111:role/apply", "");
    assert_eq!(decide(&a, &mut r), ("".into(), "principal".into()));
}

#[test]
fn the_wrong_phase_principal_is_attributed_by_its_audience() {
    let a = attributor("2024-01-01T00:00:00Z");
    // A plan token assuming the apply role fits no configuration for its phase, but its
    // audience says which configuration it was minted for: that is what the rules judge.
    let mut r = exchange(
        "aws",
        PLAN,
        "arn:aws:iam::111:role/apply",
        "aws.workload.identity",
    );
    assert_eq!(decide(&a, &mut r), ("".into(), "audience_only".into()));
    // Without an audience, nothing fits.
    let mut r = exchange("aws", PLAN, "arn:aws:iam::111:role/apply", "");
    assert_eq!(decide(&a, &mut r), ("".into(), "no_match".into()));
}

#[test]
fn twins_are_ambiguous_never_guessed() {
    let a = attributor("2024-01-01T00:00:00Z");
    let mut r = exchange("aws", PLAN, "arn:aws:iam::222:role/prod", "aws.prod");
    assert_eq!(decide(&a, &mut r), ("".into(), "ambiguous".into()));
}

#[test]
fn gcp_sts_matches_the_provider_and_impersonation_the_account() {
    let a = attributor("2024-01-01T00:00:00Z");
    let mut r = exchange(
        "gcp",
        PLAN,
        "projects/9/locations/global/workloadIdentityPools/p/providers/x",
        "//iam.googleapis.com/projects/9/locations/global/workloadIdentityPools/p/providers/x",
    );
    r.event_name = "ExchangeToken".into();
    assert_eq!(decide(&a, &mut r), ("".into(), "audience".into()));
    let mut r = exchange("gcp", APPLY, "sa@p.iam.gserviceaccount.com", "");
    r.event_name = "GenerateAccessToken".into();
    assert_eq!(decide(&a, &mut r), ("".into(), "principal".into()));
}

#[test]
fn without_a_workspace_only_a_unique_principal_decides() {
    let a = attributor("2024-01-01T00:00:00Z");
    let mut r = exchange("aws", "", "arn:aws:iam::111:role/plan", "");
    assert_eq!(decide(&a, &mut r), ("".into(), "principal".into()));
    let mut r = exchange("aws", "", "", "");
    assert_eq!(decide(&a, &mut r), ("".into(), "no_evidence".into()));
}

#[test]
fn unknown_workspaces_and_times_before_the_inventory() {
    let a = attributor("2024-01-01T00:00:00Z");
    let mut r = exchange(
        "aws",
        "organization:acme:project:p:workspace:Network:run_phase:plan",
        "arn:aws:iam::111:role/plan",
        "aws.workload.identity",
    );
    assert_eq!(decide(&a, &mut r), ("".into(), "unknown_workspace".into()));
    let later = attributor("2025-01-01T00:00:00Z");
    let mut r = exchange(
        "aws",
        PLAN,
        "arn:aws:iam::111:role/plan",
        "aws.workload.identity",
    );
    assert_eq!(decide(&later, &mut r), ("".into(), "no_inventory".into()));
    let empty = Attributor::new(Vec::new());
    assert_eq!(decide(&empty, &mut r), ("".into(), "no_inventory".into()));
}

#[test]
fn the_snapshot_at_event_time_decides() {
    let t1: DateTime<Utc> = "2024-01-01T00:00:00Z".parse().unwrap();
    let t2: DateTime<Utc> = "2024-08-01T00:00:00Z".parse().unwrap();
    let old = from_toml(INVENTORY).unwrap();
    let renamed = from_toml(&INVENTORY.replace("role/prod", "role/prod-v2")).unwrap();
    let rows = old[0]
        .rows(t1, "a")
        .into_iter()
        .chain(renamed[0].rows(t2, "b"))
        .collect();
    let a = Attributor::new(rows);
    // In July the alias still used role/prod (and its twin); in August only role/prod-v2 fits.
    let mut r = exchange("aws", PLAN, "arn:aws:iam::222:role/prod-v2", "aws.prod");
    assert_eq!(decide(&a, &mut r), ("".into(), "no_match".into()));
    r.event_time = "2024-08-02T00:00:00Z".parse().unwrap();
    assert_eq!(decide(&a, &mut r), ("".into(), "ambiguous".into()));
}

#[test]
fn issuance_keeps_its_tag_and_changes_are_left_alone() {
    let a = attributor("2024-01-01T00:00:00Z");
    let mut r = exchange("aws", PLAN, "", "");
    r.event_kind = EventKind::Issuance.as_str().into();
    r.alias_tag = "PROD".into();
    assert_eq!(decide(&a, &mut r), ("PROD".into(), "issuance".into()));
    let mut r = exchange("aws", "", "arn:aws:iam::111:role/plan", "");
    r.event_kind = EventKind::TrustChange.as_str().into();
    assert_eq!(decide(&a, &mut r), ("".into(), "".into()));
}

fn issued(provider: &str, audience: &str, stated_alias: Option<&str>) -> EventRow {
    let mut row = exchange(provider, PLAN, "", audience);
    row.event_kind = EventKind::Issuance.as_str().into();
    row.alias_tag = stated_alias.unwrap_or("").into();
    if stated_alias.is_none() {
        row.alias_match = ALIAS_UNSTATED.into();
    }
    row
}

#[test]
fn an_issuance_that_names_no_provider_or_alias_gets_them_from_its_audience() {
    let a = attributor("2024-07-01T00:00:00Z");
    let mut row = issued("unknown", "custom-gcp-aud", None);
    assert_eq!(decide(&a, &mut row), ("".into(), "audience".into()));
    assert_eq!(row.provider, "gcp");
    let mut row = issued("aws", "aws.workload.identity", None);
    assert_eq!(decide(&a, &mut row), ("".into(), "audience".into()));
    // Two aliases expect one audience: nothing is guessed.
    let mut row = issued("aws", "aws.prod", None);
    assert_eq!(decide(&a, &mut row), ("".into(), "issuance".into()));
    // A stated alias is never overruled.
    let mut row = issued("aws", "aws.workload.identity", Some("PROD"));
    assert_eq!(decide(&a, &mut row), ("PROD".into(), "issuance".into()));
}

#[test]
fn a_sign_in_naming_only_its_client_id_gets_the_workspace_and_phase() {
    let a = attributor("2024-07-01T00:00:00Z");
    let mut row = exchange("azure", "", "c-apply", "");
    assert_eq!(decide(&a, &mut row), ("".into(), "principal".into()));
    assert_eq!(
        (
            row.org_name.as_str(),
            row.workspace_name.as_str(),
            row.run_phase.as_str()
        ),
        ("acme", "identity", "apply")
    );
    assert_eq!(row.workspace_id, "ws-idy");
    // An unknown client id names nothing.
    let mut row = exchange("azure", "", "c-other", "");
    assert_eq!(decide(&a, &mut row), ("".into(), "no_match".into()));
    assert_eq!(row.workspace_name, "");
}

#[test]
fn an_audience_that_names_one_alias_attributes_a_foreign_principal_to_it() {
    let a = attributor("2024-07-01T00:00:00Z");
    // The GCP configuration's own audience, with a service account it does not use.
    let mut row = exchange(
        "gcp",
        PLAN,
        "intruder@p.iam.gserviceaccount.com",
        "custom-gcp-aud",
    );
    row.event_name = "GenerateAccessToken".into();
    assert_eq!(decide(&a, &mut row), ("".into(), "audience_only".into()));
    // An audience two aliases share decides nothing.
    let mut row = exchange("aws", PLAN, "arn:aws:iam::999:role/x", "aws.prod");
    assert_eq!(decide(&a, &mut row), ("".into(), "no_match".into()));
}

#[test]
fn a_variable_change_naming_only_its_id_gets_key_and_workspace() {
    // HCP Terraform API documents: a workspace list and its variables (JSON:API).
    let workspaces = serde_json::json!({"data": [{"id": "ws-Net", "type": "workspaces",
        "attributes": {"name": "network"},
        "relationships": {"organization": {"data": {"id": "acme", "type": "organizations"}}}}]});
    let vars = serde_json::json!({"data": [
        {"id": "var-Auth", "type": "vars", "attributes": {"key": "TFC_AWS_PROVIDER_AUTH", "value": "true", "category": "env", "sensitive": false},
         "relationships": {"configurable": {"data": {"id": "ws-Net", "type": "workspaces"}}}},
        {"id": "var-Role", "type": "vars", "attributes": {"key": "TFC_AWS_RUN_ROLE_ARN", "value": "arn:aws:iam::111:role/r", "category": "env", "sensitive": false},
         "relationships": {"configurable": {"data": {"id": "ws-Net", "type": "workspaces"}}}}]});
    let t = "2024-07-01T00:00:00Z".parse().unwrap();
    let rows = crate::alias::inventory::from_api_documents(&[workspaces, vars])
        .unwrap()
        .iter()
        .flat_map(|w| w.rows(t, "test"))
        .collect();
    let a = Attributor::new(rows);
    let mut row = EventRow::new(
        EventKind::ConfigChange,
        Source::HcpAuditTrail,
        "audit-1".into(),
        "hcp",
        "2024-07-09T12:00:00Z".parse().unwrap(),
        Utc::now(),
    );
    row.target_principal = "var-Role".into();
    a.attribute(&mut row);
    assert_eq!(row.variable_key, "TFC_AWS_RUN_ROLE_ARN");
    assert_eq!(
        (row.org_name.as_str(), row.workspace_name.as_str()),
        ("acme", "network")
    );
    // A record that names the workspace's id only gets its name.
    row.target_principal = "var-Unknown".into();
    row.variable_key = "".into();
    row.workspace_name = "".into();
    row.workspace_id = "ws-Net".into();
    a.attribute(&mut row);
    assert_eq!(
        (row.variable_key.as_str(), row.workspace_name.as_str()),
        ("", "network")
    );
}

#[test]
fn reattribution_decides_the_alias_but_never_moves_a_stored_event() {
    let a = attributor("2024-07-01T00:00:00Z");
    // Stored before the inventory knew the client id: no workspace. Re-attribution may now
    // name its alias, but its workspace (part of the sorting key) stays as stored.
    let mut row = exchange("azure", "", "c-apply", "");
    a.reattribute(&mut row);
    assert_eq!(row.alias_match, "principal");
    assert_eq!(
        (row.workspace_name.as_str(), row.run_phase.as_str()),
        ("", "")
    );
    // At ingest the same event takes them.
    let mut row = exchange("azure", "", "c-apply", "");
    a.attribute(&mut row);
    assert_eq!(row.workspace_name, "identity");
}
