//! The alias inventory: per workspace, which configurations exist and what each should use,
//! from HCP Terraform's API responses (saved to files) or a declarative TOML file, versioned as
//! snapshots in ClickHouse.
//!
//! API import reads any mix of JSON:API documents: workspace lists (names and organizations),
//! workspace variables, variable sets with their variables. A workspace's effective variables
//! follow HCP Terraform's precedence: priority variable sets, then the workspace's own variables,
//! then variable sets assigned to the workspace or its project, then global variable sets; among
//! sets of one level the first by name wins. Only `env` variables count (dynamic credentials are
//! environment variables). Sensitive values are write-only in the API and are reported, not
//! guessed.

use super::variables::{self, Configuration, Provider, Warning};
use chrono::{DateTime, Utc};
use clickhouse::Row;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// One workspace's configurations at one time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workspace {
    pub organization: String,
    pub name: String,
    pub id: String,
    pub configurations: Vec<Configuration>,
    /// Accounts or projects each configuration may reach, keyed `provider:tag`.
    pub allowed_accounts: BTreeMap<String, Vec<String>>,
    /// The ids of the dynamic-credentials variables in effect (`var-…` -> key), from an API
    /// import: an audit trail record of a change may name only the id.
    pub variable_ids: BTreeMap<String, String>,
    pub warnings: Vec<Warning>,
}

/// One stored configuration of a snapshot (or the marker of an empty snapshot).
#[derive(Debug, Clone, PartialEq, Row, Serialize, Deserialize)]
pub struct InventoryRow {
    #[serde(with = "clickhouse::serde::chrono::datetime")]
    pub valid_from: DateTime<Utc>,
    pub snapshot_id: String,
    pub org_name: String,
    pub workspace_name: String,
    pub workspace_id: String,
    pub provider: String,
    pub alias_tag: String,
    pub plan_principal: String,
    pub apply_principal: String,
    pub audience: String,
    pub allowed_accounts: Vec<String>,
    pub settings: String,
    pub derived_from: String,
    pub origin: String,
}

impl Workspace {
    /// The snapshot's rows; a workspace without configurations is one marker row.
    pub fn rows(&self, valid_from: DateTime<Utc>, origin: &str) -> Vec<InventoryRow> {
        let base = InventoryRow {
            valid_from: DateTime::from_timestamp(valid_from.timestamp(), 0).unwrap_or(valid_from),
            snapshot_id: String::new(),
            org_name: self.organization.clone(),
            workspace_name: self.name.clone(),
            workspace_id: self.id.clone(),
            provider: String::new(),
            alias_tag: String::new(),
            plan_principal: String::new(),
            apply_principal: String::new(),
            audience: String::new(),
            allowed_accounts: Vec::new(),
            settings: String::new(),
            derived_from: String::new(),
            origin: origin.to_owned(),
        };
        let mut rows: Vec<InventoryRow> = self
            .configurations
            .iter()
            .map(|c| InventoryRow {
                provider: c.provider.as_str().into(),
                alias_tag: c.tag.clone(),
                plan_principal: c.plan_principal.clone(),
                apply_principal: c.apply_principal.clone(),
                audience: c.audience.clone(),
                allowed_accounts: self
                    .allowed_accounts
                    .get(&key(c.provider, &c.tag))
                    .cloned()
                    .unwrap_or_default(),
                settings: serde_json::to_string(&c.settings).expect("maps serialize"),
                // Where each value came from; `id:var-…` entries name the variables' ids.
                derived_from: serde_json::to_string(
                    &c.from
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .chain(
                            self.variable_ids
                                .iter()
                                .map(|(id, key)| (format!("id:{id}"), key.clone())),
                        )
                        .collect::<BTreeMap<String, String>>(),
                )
                .expect("maps serialize"),
                ..base.clone()
            })
            .collect();
        if rows.is_empty() {
            rows.push(base);
        }
        let id = snapshot_id(&rows);
        for r in &mut rows {
            r.snapshot_id = id.clone();
        }
        rows
    }
}

/// `provider:tag`, the key of per-configuration settings.
pub fn key(provider: Provider, tag: &str) -> String {
    format!("{}:{tag}", provider.as_str())
}

/// A content hash of a snapshot (time and origin excluded), so an unchanged re-import is seen.
fn snapshot_id(rows: &[InventoryRow]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for r in rows {
        for field in [
            &r.org_name,
            &r.workspace_name,
            &r.workspace_id,
            &r.provider,
            &r.alias_tag,
            &r.plan_principal,
            &r.apply_principal,
            &r.audience,
            &r.settings,
        ] {
            h.update(field.as_bytes());
            h.update([0]);
        }
        for a in &r.allowed_accounts {
            h.update(a.as_bytes());
            h.update([1]);
        }
    }
    hex::encode(&h.finalize()[..12])
}

/// Variable-set scope, lowest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Global,
    Assigned,
    Workspace,
    Priority,
}

/// One variable reaching one workspace: (level, variable set name or empty, key, value).
/// (level, variable set name, key, value, variable id)
type Assignment = (Level, String, String, Option<String>, String);

#[derive(Debug, Default)]
struct ApiState {
    /// id -> (organization, name, project id)
    workspaces: BTreeMap<String, (String, String, String)>,
    /// var id -> (key, value or None when sensitive, owner id)
    vars: BTreeMap<String, (String, Option<String>, String)>,
    /// varset id -> (name, global, priority, workspace ids, project ids, var ids)
    varsets: BTreeMap<String, Varset>,
}

#[derive(Debug, Default)]
struct Varset {
    name: String,
    global: bool,
    priority: bool,
    workspaces: Vec<String>,
    projects: Vec<String>,
    vars: Vec<String>,
}

/// Imports HCP Terraform API documents (each a JSON:API response body).
pub fn from_api_documents(documents: &[Value]) -> Result<Vec<Workspace>, String> {
    let mut state = ApiState::default();
    for doc in documents {
        let mut resources: Vec<&Value> = Vec::new();
        match &doc["data"] {
            Value::Array(items) => resources.extend(items),
            Value::Object(_) => resources.push(&doc["data"]),
            _ => return Err("not a JSON:API document (no `data`)".into()),
        }
        if let Some(included) = doc["included"].as_array() {
            resources.extend(included);
        }
        for r in resources {
            absorb(&mut state, r);
        }
    }
    let mut by_workspace: BTreeMap<String, Vec<Assignment>> = BTreeMap::new();
    for (var_id, (k, v, owner)) in &state.vars {
        if owner.starts_with("ws-") {
            by_workspace.entry(owner.clone()).or_default().push((
                Level::Workspace,
                String::new(),
                k.clone(),
                v.clone(),
                var_id.clone(),
            ));
        }
        for (set_id, set) in &state.varsets {
            if !(set.vars.contains(var_id) || *owner == *set_id) {
                continue;
            }
            let level = if set.priority {
                Level::Priority
            } else if set.global {
                Level::Global
            } else {
                Level::Assigned
            };
            let targets: Vec<&String> = if set.global {
                state.workspaces.keys().collect()
            } else {
                state
                    .workspaces
                    .iter()
                    .filter(|(id, (_, _, project))| {
                        set.workspaces.contains(id) || set.projects.contains(project)
                    })
                    .map(|(id, _)| id)
                    .chain(
                        set.workspaces
                            .iter()
                            .filter(|w| !state.workspaces.contains_key(*w)),
                    )
                    .collect()
            };
            for ws in targets {
                by_workspace.entry(ws.clone()).or_default().push((
                    level,
                    set.name.clone(),
                    k.clone(),
                    v.clone(),
                    var_id.clone(),
                ));
            }
        }
    }
    let mut out = Vec::new();
    let mut ids: Vec<String> = state.workspaces.keys().cloned().collect();
    ids.extend(
        by_workspace
            .keys()
            .filter(|id| !state.workspaces.contains_key(*id))
            .cloned(),
    );
    for id in &ids {
        let mut warnings = Vec::new();
        let (org, name) = match state.workspaces.get(id) {
            Some((org, name, _)) => (org.clone(), name.clone()),
            None => {
                warnings.push(Warning {
                    variable: id.clone(),
                    message: "workspace has variables but no name: import the workspace list too"
                        .into(),
                });
                (String::new(), id.clone())
            }
        };
        let mut vars = by_workspace.remove(id).unwrap_or_default();
        // Highest level first; among sets of one level, the first by name.
        vars.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut effective: BTreeMap<String, String> = BTreeMap::new();
        let mut variable_ids = BTreeMap::new();
        for (_, _, k, v, var_id) in vars {
            if effective.contains_key(&k) {
                continue;
            }
            if k.starts_with("TFC_") && !var_id.is_empty() {
                variable_ids.insert(var_id, k.clone());
            }
            match v {
                Some(v) => {
                    effective.insert(k, v);
                }
                None if k.starts_with("TFC_") => {
                    warnings.push(Warning {
                        variable: k.clone(),
                        message: "sensitive: the API does not return its value".into(),
                    });
                    effective.insert(k, String::new());
                }
                None => {}
            }
        }
        let derived = variables::derive(effective.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        warnings.extend(derived.warnings);
        out.push(Workspace {
            organization: org,
            name,
            id: id.clone(),
            configurations: derived.configurations,
            allowed_accounts: BTreeMap::new(),
            variable_ids,
            warnings,
        });
    }
    Ok(out)
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|x| s(&x["id"])).collect())
        .unwrap_or_default()
}

fn absorb(state: &mut ApiState, r: &Value) {
    let id = s(&r["id"]);
    let attrs = &r["attributes"];
    let rel = &r["relationships"];
    match r["type"].as_str() {
        Some("workspaces") => {
            state.workspaces.insert(
                id,
                (
                    s(&rel["organization"]["data"]["id"]),
                    s(&attrs["name"]),
                    s(&rel["project"]["data"]["id"]),
                ),
            );
        }
        Some("vars") => {
            if attrs["category"].as_str().unwrap_or("env") != "env" {
                return;
            }
            let owner = [
                &rel["configurable"]["data"]["id"],
                &rel["varset"]["data"]["id"],
            ]
            .into_iter()
            .find_map(|v| v.as_str())
            .unwrap_or("")
            .to_owned();
            let value = match (&attrs["value"], attrs["sensitive"].as_bool()) {
                (Value::String(v), _) => Some(v.clone()),
                (_, Some(true)) | (Value::Null, _) => None,
                (other, _) => Some(other.to_string()),
            };
            state.vars.insert(id, (s(&attrs["key"]), value, owner));
        }
        Some("varsets") => {
            let set = Varset {
                name: s(&attrs["name"]),
                global: attrs["global"].as_bool().unwrap_or(false),
                priority: attrs["priority"].as_bool().unwrap_or(false),
                workspaces: ids(&rel["workspaces"]["data"]),
                projects: ids(&rel["projects"]["data"]),
                vars: ids(&rel["vars"]["data"]),
            };
            state.varsets.insert(id, set);
        }
        _ => {}
    }
}

/// The declarative inventory file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    workspace: Vec<FileWorkspace>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWorkspace {
    organization: String,
    name: String,
    #[serde(default)]
    id: String,
    /// Dynamic-credentials variables, derived by the documented rules.
    #[serde(default)]
    variables: BTreeMap<String, String>,
    /// Explicit configurations; one naming a derived configuration adds to or overrides it.
    #[serde(default)]
    configuration: Vec<FileConfiguration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfiguration {
    provider: String,
    #[serde(default)]
    alias: String,
    plan_principal: Option<String>,
    apply_principal: Option<String>,
    /// Both phases, when they use one principal.
    principal: Option<String>,
    audience: Option<String>,
    #[serde(default)]
    allowed_accounts: Vec<String>,
}

/// Imports a declarative TOML inventory.
pub fn from_toml(text: &str) -> Result<Vec<Workspace>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for ws in file.workspace {
        let derived = variables::derive(ws.variables.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut configurations = derived.configurations;
        let mut allowed = BTreeMap::new();
        for c in ws.configuration {
            let provider = Provider::parse(&c.provider).ok_or_else(|| {
                format!("workspace {}: unknown provider {:?}", ws.name, c.provider)
            })?;
            if !c.alias.is_empty() && !variables::valid_tag(&c.alias) {
                return Err(format!(
                    "workspace {}: invalid alias {:?}",
                    ws.name, c.alias
                ));
            }
            let slot = match configurations
                .iter()
                .position(|x| x.provider == provider && x.tag == c.alias)
            {
                Some(i) => &mut configurations[i],
                None => {
                    configurations.push(Configuration {
                        provider,
                        tag: c.alias.clone(),
                        plan_principal: String::new(),
                        apply_principal: String::new(),
                        audience: String::new(),
                        settings: BTreeMap::new(),
                        from: BTreeMap::new(),
                    });
                    configurations.last_mut().expect("just pushed")
                }
            };
            let plan = c.plan_principal.as_ref().or(c.principal.as_ref());
            let apply = c.apply_principal.as_ref().or(c.principal.as_ref());
            for (field, name, value) in [
                (&mut slot.plan_principal, "plan_principal", plan),
                (&mut slot.apply_principal, "apply_principal", apply),
                (&mut slot.audience, "audience", c.audience.as_ref()),
            ] {
                if let Some(v) = value {
                    *field = v.clone();
                    slot.from.insert(name.to_owned(), "inventory".to_owned());
                }
            }
            if !c.allowed_accounts.is_empty() {
                allowed.insert(key(provider, &c.alias), c.allowed_accounts);
            }
        }
        configurations.sort_by(|a, b| (a.provider, &a.tag).cmp(&(b.provider, &b.tag)));
        out.push(Workspace {
            organization: ws.organization,
            name: ws.name,
            id: ws.id,
            configurations,
            allowed_accounts: allowed,
            variable_ids: BTreeMap::new(),
            warnings: derived.warnings,
        });
    }
    Ok(out)
}

/// Latest snapshot id per workspace, to skip unchanged re-imports.
pub const LATEST_SNAPSHOTS_SQL: &str = "SELECT org_name, workspace_name, \
     argMax(snapshot_id, valid_from) FROM inventory GROUP BY org_name, workspace_name";

/// Every stored snapshot row, for the attributor.
pub const ALL_ROWS_SQL: &str = "SELECT ?fields FROM inventory FINAL \
     ORDER BY org_name, workspace_name, valid_from, provider, alias_tag";

/// Writes the snapshots that differ from each workspace's latest; returns (written, unchanged).
pub async fn store(
    store: &crate::store::Store,
    workspaces: &[Workspace],
    valid_from: DateTime<Utc>,
    origin: &str,
) -> Result<(usize, usize), clickhouse::error::Error> {
    let latest: HashMap<(String, String), String> = store
        .client()
        .query(LATEST_SNAPSHOTS_SQL)
        .fetch_all::<(String, String, String)>()
        .await?
        .into_iter()
        .map(|(o, w, id)| ((o, w), id))
        .collect();
    let mut written = 0;
    let mut unchanged = 0;
    let mut insert = store.client().insert::<InventoryRow>("inventory").await?;
    for ws in workspaces {
        let rows = ws.rows(valid_from, origin);
        let current = latest.get(&(ws.organization.clone(), ws.name.clone()));
        if current == Some(&rows[0].snapshot_id) {
            unchanged += 1;
            continue;
        }
        for r in &rows {
            insert.write(r).await?;
        }
        written += 1;
    }
    insert.end().await?;
    Ok((written, unchanged))
}

/// Every stored row.
pub async fn load(
    store: &crate::store::Store,
) -> Result<Vec<InventoryRow>, clickhouse::error::Error> {
    store
        .client()
        .query(ALL_ROWS_SQL)
        .fetch_all::<InventoryRow>()
        .await
}

#[cfg(test)]
mod tests;
