//! Inventory import from the saved API responses in `tests/fixtures/inventory` and from TOML.

use super::*;

fn fixture(name: &str) -> Value {
    let path = format!("{}/../tests/inventory/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn api() -> Vec<Workspace> {
    from_api_documents(&[
        fixture("workspaces.json"),
        fixture("vars_network-prod.json"),
        fixture("vars_network.json"),
        fixture("varsets.json"),
    ])
    .unwrap()
}

fn config<'w>(ws: &'w [Workspace], name: &str, provider: Provider, tag: &str) -> &'w Configuration {
    ws.iter()
        .find(|w| w.name == name)
        .unwrap_or_else(|| panic!("workspace {name}"))
        .configurations
        .iter()
        .find(|c| c.provider == provider && c.tag == tag)
        .unwrap_or_else(|| panic!("{name} {provider:?} {tag:?}"))
}

#[test]
fn workspace_variables_beat_global_sets_and_priority_sets_beat_both() {
    let ws = api();
    let default = config(&ws, "network-prod", Provider::Aws, "");
    assert_eq!(
        default.plan_principal,
        "arn:aws:iam::111122223333:role/tfc-network-prod-plan"
    );
    let prod = config(&ws, "network-prod", Provider::Aws, "PROD");
    assert_eq!(
        prod.audience, "aws.workload.identity.prod",
        "the priority set wins"
    );
    // `network` switches the global set's AWS configuration off with its own variable.
    let network = ws.iter().find(|w| w.name == "network").unwrap();
    assert!(
        !network
            .configurations
            .iter()
            .any(|c| c.provider == Provider::Aws)
    );
}

#[test]
fn project_sets_reach_the_project_s_workspaces() {
    let ws = api();
    let vault = config(&ws, "vault-config", Provider::Vault, "");
    assert_eq!(
        (
            vault.plan_principal.as_str(),
            vault.apply_principal.as_str()
        ),
        ("tfc-plan", "tfc-apply")
    );
    assert_eq!(vault.settings["auth_path"], "tfc-jwt");
    // And the global set gives it the runner role (M10: a global set reaches every workspace).
    let aws = config(&ws, "vault-config", Provider::Aws, "");
    assert_eq!(
        aws.apply_principal,
        "arn:aws:iam::111122223333:role/tfc-runner"
    );
    assert!(
        ws.iter()
            .find(|w| w.name == "network")
            .unwrap()
            .configurations
            .iter()
            .all(|c| c.provider != Provider::Vault || c.tag == "SECRETS")
    );
}

#[test]
fn terraform_variables_are_not_dynamic_credentials_and_sensitive_ones_are_reported() {
    let ws = api();
    let network = ws.iter().find(|w| w.name == "network").unwrap();
    assert!(!network.configurations.iter().any(|c| c.tag == "X"));
    assert!(network.warnings.iter().any(
        |w| w.variable == "TFC_VAULT_ENCODED_CACERT_SECRETS" && w.message.contains("sensitive")
    ));
    let names: Vec<(&str, &str)> = network
        .configurations
        .iter()
        .map(|c| (c.provider.as_str(), c.tag.as_str()))
        .collect();
    assert_eq!(
        names,
        vec![("gcp", ""), ("azure", "ARM"), ("vault", "SECRETS")]
    );
}

#[test]
fn toml_inventory_adds_allowed_accounts_to_derived_configurations() {
    let text = std::fs::read_to_string(format!(
        "{}/../tests/inventory/declared.toml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let ws = from_toml(&text).unwrap();
    assert_eq!(ws.len(), 1);
    assert_eq!(ws[0].allowed_accounts["aws:PROD"], vec!["444455556666"]);
    let rows = ws[0].rows("2024-01-01T00:00:00Z".parse().unwrap(), "file");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].alias_tag, "PROD");
    assert_eq!(rows[1].allowed_accounts, vec!["444455556666"]);
    assert!(rows.iter().all(|r| r.snapshot_id == rows[0].snapshot_id));
    assert!(from_toml("[[workspace]]\norganization = \"a\"\nname = \"b\"\n[[workspace.configuration]]\nprovider = \"oracle\"\n").is_err());
}

#[test]
fn an_unchanged_snapshot_has_the_same_id_and_a_change_does_not() {
    let ws = api();
    let t1 = "2024-01-01T00:00:00Z".parse().unwrap();
    let t2 = "2024-02-01T00:00:00Z".parse().unwrap();
    let a = ws[0].rows(t1, "x");
    assert_eq!(a[0].snapshot_id, ws[0].rows(t2, "y")[0].snapshot_id);
    let mut changed = ws[0].clone();
    changed.configurations[0].apply_principal.push('2');
    assert_ne!(a[0].snapshot_id, changed.rows(t1, "x")[0].snapshot_id);
    let empty = Workspace {
        configurations: Vec::new(),
        ..ws[0].clone()
    };
    let marker = empty.rows(t1, "x");
    assert_eq!(marker.len(), 1);
    assert_eq!(marker[0].provider, "");
}
