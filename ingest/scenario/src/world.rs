//! The generated estate: organizations, workspaces and the dynamic-credentials configurations
//! each workspace has (a default AWS one always; AWS aliases, GCP, Vault and Azure ones for some),
//! and the inventory file (`inventory.toml`, the declarative form `credtrail inventory import`
//! reads) that describes them.
//!
//! Every configuration has separate plan and apply principals, as HashiCorp recommends; the
//! planted misconfigurations change that for the workspaces they pick.

use crate::ids::Ids;
use rand::Rng;
use std::fmt::Write;

const ORGS: [&str; 6] = ["acme", "globex", "initech", "umbrella", "hooli", "stark"];

/// An organization's place in the estate (its index among the generated organizations).
pub fn org_position(org: &str) -> usize {
    ORGS.iter().position(|o| org.starts_with(o)).unwrap_or(0)
}
const TEAMS: [&str; 16] = [
    "network",
    "payments",
    "identity",
    "data",
    "edge",
    "billing",
    "search",
    "mobile",
    "ledger",
    "ml",
    "observability",
    "dns",
    "mail",
    "storage",
    "queue",
    "gateway",
];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const ALIASES: [&str; 4] = ["SHARED", "DNS", "AUDIT", "BACKUP"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Aws,
    Gcp,
    Vault,
    Azure,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Vault => "vault",
            Provider::Azure => "azure",
        }
    }

    pub fn default_audience(self) -> &'static str {
        match self {
            Provider::Aws => "aws.workload.identity",
            Provider::Gcp => "",
            Provider::Vault => "vault.workload.identity",
            Provider::Azure => "api://AzureADTokenExchange",
        }
    }
}

/// One configuration (default or alias) of one provider in one workspace.
#[derive(Debug, Clone)]
pub struct Config {
    pub provider: Provider,
    /// Empty for the default configuration.
    pub alias: String,
    pub plan: String,
    pub apply: String,
    /// The `aud` its tokens carry.
    pub audience: String,
    /// AWS account, GCP project number, Azure tenant, Vault namespace.
    pub account: String,
    /// Accounts the security team allows it (AWS only; empty: not declared).
    pub allowed_accounts: Vec<String>,
    /// GCP: the workload identity provider's resource name; the service accounts' project id.
    pub gcp_provider_name: String,
    pub gcp_project_id: String,
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub org: String,
    pub org_id: String,
    pub project: String,
    pub project_id: String,
    pub name: String,
    pub id: String,
    pub configs: Vec<Config>,
}

impl Workspace {
    pub fn sub(&self, phase: &str) -> String {
        format!(
            "organization:{}:project:{}:workspace:{}:run_phase:{phase}",
            self.org, self.project, self.name
        )
    }

    pub fn config(&self, provider: Provider, alias: &str) -> Option<&Config> {
        self.configs
            .iter()
            .find(|c| c.provider == provider && c.alias == alias)
    }
}

/// The estate of a scenario.
#[derive(Debug, Clone)]
pub struct World {
    pub workspaces: Vec<Workspace>,
}

impl World {
    pub fn new(ids: &mut Ids, orgs: usize, per_org: usize) -> World {
        let mut workspaces = Vec::new();
        for o in 0..orgs {
            let org = match ORGS.get(o) {
                Some(name) => name.to_string(),
                None => format!("org{o}"),
            };
            let org_id = ids.hcp("org");
            let accounts: Vec<String> = (0..3).map(|_| ids.digits(12)).collect();
            let projects: Vec<(String, String)> = ["Default Project", "Platform", "Product"]
                .iter()
                .map(|p| (p.to_string(), ids.hcp("prj")))
                .collect();
            for w in 0..per_org {
                let team = TEAMS[w % TEAMS.len()];
                let env = ENVS[(w / TEAMS.len()) % ENVS.len()];
                let round = w / (TEAMS.len() * ENVS.len());
                let name = if round == 0 {
                    format!("{team}-{env}")
                } else {
                    format!("{team}-{env}-{round}")
                };
                let (project, project_id) = projects[w % projects.len()].clone();
                let mut ws = Workspace {
                    org: org.clone(),
                    org_id: org_id.clone(),
                    project,
                    project_id,
                    id: ids.hcp("ws"),
                    configs: Vec::new(),
                    name,
                };
                let account = accounts[w % 2].clone();
                ws.configs.push(aws(&ws.name, "", &account, &account));
                if ids.rng.random_bool(0.4) {
                    let tag = ALIASES[ids.rng.random_range(0..ALIASES.len())];
                    ws.configs
                        .push(aws(&ws.name, tag, &accounts[2], &accounts[2]));
                }
                if ids.rng.random_bool(0.3) {
                    ws.configs.push(gcp(ids, &ws.name, &org));
                }
                if ids.rng.random_bool(0.25) {
                    ws.configs.push(vault(&ws.name));
                }
                if ids.rng.random_bool(0.2) {
                    ws.configs.push(azure(ids));
                }
                workspaces.push(ws);
            }
        }
        World { workspaces }
    }

    /// The declarative inventory (`credtrail inventory import`): HCP Terraform variables as the
    /// workspaces set them, plus the accounts each AWS configuration may reach.
    pub fn inventory_toml(&self) -> String {
        let mut out = String::from(
            "# Generated by `credtrail generate`: the workspaces' dynamic-credentials variables and\n\
             # the AWS accounts each configuration may reach.\n",
        );
        for ws in &self.workspaces {
            let _ = write!(
                out,
                "\n[[workspace]]\norganization = {:?}\nname = {:?}\nid = {:?}\n\n[workspace.variables]\n",
                ws.org, ws.name, ws.id
            );
            for c in &ws.configs {
                for (k, v) in variables(c) {
                    let _ = writeln!(out, "{k} = {v:?}");
                }
            }
            for c in ws.configs.iter().filter(|c| !c.allowed_accounts.is_empty()) {
                let _ = write!(
                    out,
                    "\n[[workspace.configuration]]\nprovider = {:?}\nalias = {:?}\nallowed_accounts = {:?}\n",
                    c.provider.as_str(),
                    c.alias,
                    c.allowed_accounts
                );
            }
        }
        out
    }
}

/// An AWS configuration with its own plan and apply roles in `account`.
pub fn aws_config(ws: &str, tag: &str, account: &str) -> Config {
    aws(ws, tag, account, account)
}

fn aws(ws: &str, tag: &str, account: &str, allowed: &str) -> Config {
    let stem = if tag.is_empty() {
        format!("tfc-{ws}")
    } else {
        format!("tfc-{ws}-{}", tag.to_ascii_lowercase())
    };
    Config {
        provider: Provider::Aws,
        alias: tag.into(),
        plan: format!("arn:aws:iam::{account}:role/{stem}-plan"),
        apply: format!("arn:aws:iam::{account}:role/{stem}-apply"),
        audience: if tag.is_empty() {
            Provider::Aws.default_audience().into()
        } else {
            format!("aws.workload.identity.{}", tag.to_ascii_lowercase())
        },
        account: account.into(),
        allowed_accounts: vec![allowed.into()],
        gcp_provider_name: String::new(),
        gcp_project_id: String::new(),
    }
}

fn gcp(ids: &mut Ids, ws: &str, org: &str) -> Config {
    let number = ids.digits(12);
    let project_id = format!("{org}-{}", ws.split('-').next().unwrap_or(ws));
    let name = format!(
        "projects/{number}/locations/global/workloadIdentityPools/hcp-terraform/providers/{org}"
    );
    Config {
        provider: Provider::Gcp,
        alias: String::new(),
        plan: format!("tfc-{ws}-plan@{project_id}.iam.gserviceaccount.com"),
        apply: format!("tfc-{ws}-apply@{project_id}.iam.gserviceaccount.com"),
        audience: format!("//iam.googleapis.com/{name}"),
        account: number,
        allowed_accounts: Vec::new(),
        gcp_provider_name: name,
        gcp_project_id: project_id,
    }
}

fn vault(ws: &str) -> Config {
    Config {
        provider: Provider::Vault,
        alias: String::new(),
        plan: format!("tfc-{ws}-plan"),
        apply: format!("tfc-{ws}-apply"),
        audience: Provider::Vault.default_audience().into(),
        account: "admin".into(),
        allowed_accounts: Vec::new(),
        gcp_provider_name: String::new(),
        gcp_project_id: String::new(),
    }
}

fn azure(ids: &mut Ids) -> Config {
    let (tenant, plan, apply) = (ids.uuid(), ids.uuid(), ids.uuid());
    azure_config(&tenant, &plan, &apply)
}

/// An Azure configuration: its tenant and the plan and apply applications' client ids.
pub fn azure_config(tenant: &str, plan: &str, apply: &str) -> Config {
    Config {
        provider: Provider::Azure,
        alias: String::new(),
        plan: plan.into(),
        apply: apply.into(),
        audience: Provider::Azure.default_audience().into(),
        account: tenant.into(),
        allowed_accounts: Vec::new(),
        gcp_provider_name: String::new(),
        gcp_project_id: String::new(),
    }
}

/// The variables that produce `c` (HCP Terraform's `TFC_*` rules).
pub fn variables(c: &Config) -> Vec<(String, String)> {
    let tag = if c.alias.is_empty() {
        String::new()
    } else {
        format!("_{}", c.alias)
    };
    let (stem, suffix) = match c.provider {
        Provider::Aws => ("AWS", "ROLE_ARN"),
        Provider::Gcp => ("GCP", "SERVICE_ACCOUNT_EMAIL"),
        Provider::Vault => ("VAULT", "ROLE"),
        Provider::Azure => ("AZURE", "CLIENT_ID"),
    };
    let mut v = vec![(format!("TFC_{stem}_PROVIDER_AUTH{tag}"), "true".to_owned())];
    if c.plan == c.apply {
        v.push((format!("TFC_{stem}_RUN_{suffix}{tag}"), c.plan.clone()));
    } else {
        v.push((format!("TFC_{stem}_PLAN_{suffix}{tag}"), c.plan.clone()));
        v.push((format!("TFC_{stem}_APPLY_{suffix}{tag}"), c.apply.clone()));
    }
    if c.provider == Provider::Aws && !c.alias.is_empty() {
        v.push((
            format!("TFC_AWS_WORKLOAD_IDENTITY_AUDIENCE{tag}"),
            c.audience.clone(),
        ));
    }
    match c.provider {
        Provider::Gcp => v.push((
            format!("TFC_GCP_WORKLOAD_PROVIDER_NAME{tag}"),
            c.gcp_provider_name.clone(),
        )),
        Provider::Vault => {
            v.push((
                format!("TFC_VAULT_ADDR{tag}"),
                "https://vault.internal:8200".into(),
            ));
            v.push((format!("TFC_VAULT_NAMESPACE{tag}"), c.account.clone()));
        }
        _ => {}
    }
    v
}

/// The estate's trust policies as the clouds return them: `aws iam list-roles` for every AWS
/// role (each pinned to its audience and its workspace's exact `sub`, the phase wildcarded) and
/// each GCP workload identity provider (conditioned on its organization). With `broad`, that
/// workspace's default apply role trusts any workspace of the organization instead; its
/// statement's SHA-256 (as `credtrail inventory trust` computes it) is returned.
pub fn trust_policies(
    world: &World,
    broad: Option<usize>,
) -> (Vec<(&'static str, String)>, Option<String>) {
    use serde_json::json;
    use sha2::Digest;
    let mut roles = Vec::new();
    let mut providers = Vec::new();
    let mut broad_sha = None;
    for (w, ws) in world.workspaces.iter().enumerate() {
        for c in &ws.configs {
            match c.provider {
                Provider::Aws => {
                    for (phase, arn) in [("plan", &c.plan), ("apply", &c.apply)] {
                        let account = arn.split(':').nth(4).unwrap_or("");
                        let wide = broad == Some(w) && c.alias.is_empty() && phase == "apply";
                        let sub = if wide {
                            format!("organization:{}:project:*:workspace:*:run_phase:*", ws.org)
                        } else {
                            format!(
                                "organization:{}:project:{}:workspace:{}:run_phase:{phase}",
                                ws.org, ws.project, ws.name
                            )
                        };
                        let statement = json!({
                            "Effect": "Allow",
                            "Principal": {"Federated": format!("arn:aws:iam::{account}:oidc-provider/app.terraform.io")},
                            "Action": "sts:AssumeRoleWithWebIdentity",
                            "Condition": {
                                "StringEquals": {"app.terraform.io:aud": c.audience},
                                "StringLike": {"app.terraform.io:sub": sub},
                            },
                        });
                        if wide {
                            broad_sha =
                                Some(hex::encode(sha2::Sha256::digest(statement.to_string())));
                        }
                        roles.push(json!({
                            "Path": "/",
                            "RoleName": arn.rsplit('/').next().unwrap_or(""),
                            "Arn": arn,
                            "CreateDate": "2024-01-02T10:00:00Z",
                            "MaxSessionDuration": 3600,
                            "AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": [statement]},
                        }));
                    }
                }
                Provider::Gcp => providers.push(json!({
                    "name": c.gcp_provider_name,
                    "state": "ACTIVE",
                    "attributeMapping": {"google.subject": "assertion.sub",
                                         "attribute.terraform_workspace_id": "assertion.terraform_workspace_id"},
                    "attributeCondition": format!("assertion.terraform_organization_id == '{}'", ws.org_id),
                    "oidc": {"issuerUri": "https://app.terraform.io"},
                })),
                _ => {}
            }
        }
    }
    let files = vec![
        ("trust_aws.json", json!({"Roles": roles}).to_string() + "\n"),
        (
            "trust_gcp.json",
            json!({"workloadIdentityPoolProviders": providers}).to_string() + "\n",
        ),
    ];
    (files, broad_sha)
}
