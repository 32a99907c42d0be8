//! HCP Terraform dynamic-credentials variables into configurations: which provider
//! configurations (the default one and each tagged alias) a workspace has, and what principal and
//! audience each should use in each phase.
//!
//! The rules, applied exactly (domain.md §1.2-1.3):
//! - every variable has a bare form (the default configuration), a `_<TAG>` suffixed form (the
//!   alias TAG) and a `TFC_DEFAULT_` prefixed form shared by every configuration; the explicit
//!   form wins over `TFC_DEFAULT_`;
//! - `TFC_<P>_PROVIDER_AUTH` has no `TFC_DEFAULT_` form: a configuration exists only where its
//!   own `PROVIDER_AUTH` is `true`;
//! - tags hold only letters, digits and underscores, and `TYPE` is reserved;
//! - each variable resolves on its own, then the plan and apply principals fall back to the run
//!   principal;
//! - audiences default per provider (GCP: the workload provider's resource name without
//!   `https:`).
//!
//! The same derivation serves `credtrail emit` (the run's environment) and
//! `credtrail inventory import` (a workspace's variables and variable sets).

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// The providers with dynamic credentials, with their variable stem and defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Aws,
    Gcp,
    Azure,
    Vault,
    Hcp,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Aws,
        Provider::Gcp,
        Provider::Azure,
        Provider::Vault,
        Provider::Hcp,
    ];

    /// The `provider` column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Vault => "vault",
            Provider::Hcp => "hcp",
        }
    }

    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// `AWS` in `TFC_AWS_RUN_ROLE_ARN`.
    fn stem(self) -> &'static str {
        match self {
            Provider::Aws => "AWS",
            Provider::Gcp => "GCP",
            Provider::Azure => "AZURE",
            Provider::Vault => "VAULT",
            Provider::Hcp => "HCP",
        }
    }

    /// The suffix of the run/plan/apply principal variables.
    fn principal_suffix(self) -> &'static str {
        match self {
            Provider::Aws => "ROLE_ARN",
            Provider::Gcp => "SERVICE_ACCOUNT_EMAIL",
            Provider::Azure => "CLIENT_ID",
            Provider::Vault => "ROLE",
            Provider::Hcp => "SERVICE_PRINCIPAL_RESOURCE_NAME",
        }
    }

    /// The documented default audience; GCP's depends on the workload provider.
    fn default_audience(self) -> Option<&'static str> {
        match self {
            Provider::Aws => Some("aws.workload.identity"),
            Provider::Azure => Some("api://AzureADTokenExchange"),
            Provider::Vault => Some("vault.workload.identity"),
            Provider::Hcp => Some("hcp.workload.identity"),
            Provider::Gcp => None,
        }
    }

    /// Settings besides principals and audience that describe where the token goes.
    fn settings(self) -> &'static [&'static str] {
        match self {
            Provider::Gcp => &[
                "WORKLOAD_PROVIDER_NAME",
                "PROJECT_NUMBER",
                "WORKLOAD_POOL_ID",
                "WORKLOAD_PROVIDER_ID",
            ],
            Provider::Vault => &[
                "ADDR",
                "NAMESPACE",
                "AUTH_PATH",
                "ENCODED_CACERT",
                "CLIENT_TIMEOUT",
            ],
            _ => &[],
        }
    }
}

/// One configuration: the default (`tag` empty) or an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Configuration {
    pub provider: Provider,
    /// The alias tag; empty for the default configuration.
    pub tag: String,
    /// The principal each phase should assume (role ARN, service account, client id, role).
    pub plan_principal: String,
    pub apply_principal: String,
    /// The audience its token carries.
    pub audience: String,
    /// Provider settings (`addr`, `namespace`, `auth_path`, `workload_provider_name`, ...).
    pub settings: BTreeMap<String, String>,
    /// For each value above, the variable it came from (`TFC_DEFAULT_AWS_RUN_ROLE_ARN`,
    /// `default`), so an analyst can see why.
    pub from: BTreeMap<String, String>,
}

/// Something in the variables that a user most likely did not mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    pub variable: String,
    pub message: String,
}

/// What a set of variables configures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Derived {
    pub configurations: Vec<Configuration>,
    pub warnings: Vec<Warning>,
}

impl Derived {
    /// The configuration of `provider` with `tag` (empty for the default one).
    pub fn get(&self, provider: Provider, tag: &str) -> Option<&Configuration> {
        self.configurations
            .iter()
            .find(|c| c.provider == provider && c.tag == tag)
    }
}

/// Whether a tag is one HCP Terraform accepts.
pub fn valid_tag(tag: &str) -> bool {
    !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && tag != "TYPE"
}

/// A variable's name split into base name (`TFC_AWS_RUN_ROLE_ARN`) and form.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Form {
    Bare,
    Tagged(String),
    Default,
}

/// Derives every configuration from variables (name -> value). Non-`TFC_` names are ignored.
pub fn derive<'a>(variables: impl IntoIterator<Item = (&'a str, &'a str)>) -> Derived {
    let bases = known_bases();
    // base name -> form -> value
    let mut values: BTreeMap<&'static str, Vec<(Form, String)>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for (name, value) in variables {
        let Some(rest) = name.strip_prefix("TFC_") else {
            continue;
        };
        if let Some(base_rest) = rest.strip_prefix("DEFAULT_") {
            let full = format!("TFC_{base_rest}");
            match bases.iter().find(|b| **b == full) {
                Some(base) if base.ends_with("_PROVIDER_AUTH") => warnings.push(Warning {
                    variable: name.into(),
                    message: "PROVIDER_AUTH has no TFC_DEFAULT_ form; it is ignored, so no \
                              configuration is enabled by it"
                        .into(),
                }),
                Some(base) => values
                    .entry(base)
                    .or_default()
                    .push((Form::Default, value.into())),
                None => {}
            }
            continue;
        }
        if let Some(base) = bases.iter().find(|b| **b == name) {
            values
                .entry(base)
                .or_default()
                .push((Form::Bare, value.into()));
            continue;
        }
        // The longest base followed by `_TAG`.
        let tagged = bases
            .iter()
            .filter(|b| name.len() > b.len() + 1 && name.starts_with(**b))
            .filter(|b| name.as_bytes()[b.len()] == b'_')
            .max_by_key(|b| b.len());
        if let Some(base) = tagged {
            let tag = &name[base.len() + 1..];
            if valid_tag(tag) {
                values
                    .entry(base)
                    .or_default()
                    .push((Form::Tagged(tag.into()), value.into()));
            } else {
                warnings.push(Warning {
                    variable: name.into(),
                    message: if tag == "TYPE" {
                        "the tag TYPE is reserved; the variable is ignored".into()
                    } else {
                        format!(
                            "tag {tag:?} may hold only letters, digits and underscores; the \
                             variable is ignored"
                        )
                    },
                });
            }
        }
    }

    let mut configurations = Vec::new();
    for provider in Provider::ALL {
        let auth = format!("TFC_{}_PROVIDER_AUTH", provider.stem());
        let auth_values = values.get(auth.as_str()).cloned().unwrap_or_default();
        let mut tags: BTreeSet<String> = BTreeSet::new();
        for (form, value) in &auth_values {
            let enabled = value.trim().eq_ignore_ascii_case("true");
            match form {
                Form::Bare if enabled => {
                    tags.insert(String::new());
                }
                Form::Tagged(tag) if enabled => {
                    tags.insert(tag.clone());
                }
                _ => {}
            }
        }
        // Tagged variables of a tag whose configuration is not enabled do nothing.
        let prefix = format!("TFC_{}_", provider.stem());
        let others = values
            .iter()
            .filter(|(b, _)| b.starts_with(&prefix) && **b != auth.as_str());
        for (base, forms) in others {
            for (form, _) in forms {
                if let Form::Tagged(tag) = form
                    && !tags.contains(tag)
                {
                    warnings.push(Warning {
                        variable: format!("{base}_{tag}"),
                        message: format!(
                            "alias {tag} is not enabled ({auth}_{tag} is not \"true\"); the \
                             variable has no effect"
                        ),
                    });
                }
            }
        }
        for tag in tags {
            let config = resolve(provider, &tag, &values);
            for phase in ["plan", "apply"] {
                let principal = if phase == "plan" {
                    &config.plan_principal
                } else {
                    &config.apply_principal
                };
                if principal.is_empty() {
                    warnings.push(Warning {
                        variable: format!(
                            "TFC_{}_RUN_{}",
                            provider.stem(),
                            provider.principal_suffix()
                        ),
                        message: format!(
                            "{} configuration {} has no {phase} principal",
                            provider.as_str(),
                            if tag.is_empty() { "default" } else { &tag }
                        ),
                    });
                }
            }
            configurations.push(config);
        }
    }
    Derived {
        configurations,
        warnings,
    }
}

/// Every variable name the rules know, without forms.
fn known_bases() -> Vec<&'static str> {
    static BASES: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
        let mut out = Vec::new();
        for p in Provider::ALL {
            let s = p.stem();
            let mut names = vec![
                format!("TFC_{s}_PROVIDER_AUTH"),
                format!("TFC_{s}_WORKLOAD_IDENTITY_AUDIENCE"),
            ];
            for phase in ["RUN", "PLAN", "APPLY"] {
                names.push(format!("TFC_{s}_{phase}_{}", p.principal_suffix()));
            }
            for setting in p.settings() {
                names.push(format!("TFC_{s}_{setting}"));
            }
            out.extend(names.into_iter().map(|n| &*Box::leak(n.into_boxed_str())));
        }
        out
    });
    BASES.clone()
}

/// One variable's value for a configuration: the explicit form, else `TFC_DEFAULT_`.
fn lookup<'v>(
    values: &'v BTreeMap<&'static str, Vec<(Form, String)>>,
    base: &str,
    tag: &str,
) -> Option<(&'v str, String)> {
    let forms = values.get(base)?;
    let explicit = forms.iter().find(|(f, _)| match f {
        Form::Bare => tag.is_empty(),
        Form::Tagged(t) => t == tag,
        Form::Default => false,
    });
    if let Some((form, v)) = explicit {
        let name = match form {
            Form::Tagged(t) => format!("{base}_{t}"),
            _ => base.to_owned(),
        };
        return Some((v.as_str(), name));
    }
    forms
        .iter()
        .find(|(f, _)| *f == Form::Default)
        .map(|(_, v)| (v.as_str(), format!("TFC_DEFAULT_{}", &base[4..])))
}

fn resolve(
    provider: Provider,
    tag: &str,
    values: &BTreeMap<&'static str, Vec<(Form, String)>>,
) -> Configuration {
    let s = provider.stem();
    let suffix = provider.principal_suffix();
    let mut from = BTreeMap::new();
    let mut get = |key: &str, base: String| -> String {
        match lookup(values, &base, tag) {
            Some((v, name)) if !v.trim().is_empty() => {
                from.insert(key.to_owned(), name);
                v.trim().to_owned()
            }
            _ => String::new(),
        }
    };
    let run = get("run_principal", format!("TFC_{s}_RUN_{suffix}"));
    let plan = get("plan_principal", format!("TFC_{s}_PLAN_{suffix}"));
    let apply = get("apply_principal", format!("TFC_{s}_APPLY_{suffix}"));
    let audience = get("audience", format!("TFC_{s}_WORKLOAD_IDENTITY_AUDIENCE"));
    let mut settings = BTreeMap::new();
    for setting in provider.settings() {
        let value = get(&setting.to_ascii_lowercase(), format!("TFC_{s}_{setting}"));
        if !value.is_empty() {
            settings.insert(setting.to_ascii_lowercase(), value);
        }
    }
    let (plan, apply) = fallback(&mut from, run, plan, apply);
    if provider == Provider::Vault && !settings.contains_key("auth_path") {
        settings.insert("auth_path".into(), "jwt".into());
        from.insert("auth_path".into(), "default".into());
    }
    if provider == Provider::Gcp
        && let Some(name) = gcp_provider_name(&settings)
    {
        settings.insert("workload_provider_name".into(), name);
    }
    let audience = if audience.is_empty() {
        from.insert("audience".into(), "default".into());
        match provider.default_audience() {
            Some(a) => a.to_owned(),
            None => settings
                .get("workload_provider_name")
                .map(|n| format!("//iam.googleapis.com/{n}"))
                .unwrap_or_default(),
        }
    } else {
        audience
    };
    Configuration {
        provider,
        tag: tag.to_owned(),
        plan_principal: plan,
        apply_principal: apply,
        audience,
        settings,
        from,
    }
}

/// Plan and apply principals fall back to the run principal.
fn fallback(
    from: &mut BTreeMap<String, String>,
    run: String,
    plan: String,
    apply: String,
) -> (String, String) {
    let run_from = from.get("run_principal").cloned();
    let mut pick = |key: &str, own: String| {
        if own.is_empty() {
            if let Some(source) = &run_from {
                from.insert(key.to_owned(), source.clone());
            }
            run.clone()
        } else {
            own
        }
    };
    let plan = pick("plan_principal", plan);
    let apply = pick("apply_principal", apply);
    from.remove("run_principal");
    (plan, apply)
}

/// `projects/N/locations/global/workloadIdentityPools/P/providers/X`: the canonical name
/// wins, else it is built from number, pool and provider ids.
fn gcp_provider_name(settings: &BTreeMap<String, String>) -> Option<String> {
    if let Some(name) = settings.get("workload_provider_name") {
        return Some(name.trim_start_matches('/').to_owned());
    }
    let n = settings.get("project_number")?;
    let pool = settings.get("workload_pool_id")?;
    let provider = settings.get("workload_provider_id")?;
    Some(format!(
        "projects/{n}/locations/global/workloadIdentityPools/{pool}/providers/{provider}"
    ))
}

#[cfg(test)]
mod tests;
