//! Attribution: which configuration (default or alias) an exchange used, decided from what the
//! exchange log says (provider, target principal, audience, phase, workspace) against the
//! inventory as it was at the event's time. Never a guess: an exchange that fits no
//! configuration, or more than one, keeps an empty alias and says why in `alias_match`.
//!
//! Issuance rows carry their tag from the token's capture and are only marked `issuance`; a
//! record whose emitter named no provider or no alias gets them from its audience, when exactly
//! one configuration of its workspace expects that audience.
//! A configuration change (an audit trail record) that names only a variable's id gets the
//! variable's key, and its workspace when exactly one has it, from the inventory; one that names
//! only a workspace id gets its name. Trust changes are not attributed here: their rule fans them
//! out to every configuration that uses the changed principal.

use super::inventory::InventoryRow;
use crate::model::{EventKind, EventRow};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// Set by a format on an issuance row whose record named no alias, for [`Attributor`] to
/// decide from the audience; never stored.
pub const ALIAS_UNSTATED: &str = "unstated";

/// How an alias was decided, or why there is none. Stored as `alias_match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The tag came with the issued token.
    Issuance,
    /// Principal and audience both fit exactly one configuration.
    Matched,
    /// The principal fits exactly one configuration; the log names no audience.
    Principal,
    /// The audience fits exactly one configuration; the log names no principal.
    Audience,
    /// The audience fits exactly one configuration, but the principal is not that
    /// configuration's: the mismatch the rules look for (a role of another account, a plan
    /// token on the apply role).
    AudienceOnly,
    /// Several configurations fit equally (same principal and audience).
    Ambiguous,
    /// The workspace is known, but no configuration has this principal or audience.
    NoMatch,
    /// The log names a workspace the inventory did not have at the time.
    UnknownWorkspace,
    /// The log names neither a workspace, a principal nor an audience.
    NoEvidence,
    /// No inventory existed at the event's time.
    NoInventory,
}

impl Match {
    pub fn as_str(self) -> &'static str {
        match self {
            Match::Issuance => "issuance",
            Match::Matched => "matched",
            Match::Principal => "principal",
            Match::Audience => "audience",
            Match::AudienceOnly => "audience_only",
            Match::Ambiguous => "ambiguous",
            Match::NoMatch => "no_match",
            Match::UnknownWorkspace => "unknown_workspace",
            Match::NoEvidence => "no_evidence",
            Match::NoInventory => "no_inventory",
        }
    }
}

/// A stored configuration with what matching needs precomputed.
#[derive(Debug)]
struct Config {
    row: InventoryRow,
    /// The audience GCP's STS logs for this configuration: `//iam.googleapis.com/` + the
    /// workload provider's name, whatever audience the token itself carries.
    sts_audience: String,
}

impl Config {
    fn new(row: InventoryRow) -> Config {
        let sts_audience = serde_json::from_str::<serde_json::Value>(&row.settings)
            .ok()
            .and_then(|s| s["workload_provider_name"].as_str().map(str::to_owned))
            .map(|name| format!("//iam.googleapis.com/{name}"))
            .unwrap_or_default();
        Config { row, sts_audience }
    }
}

/// Whether events of this kind are decided an alias: exchanges and their sessions' renewals
/// and ends.
fn has_alias(kind: &str) -> bool {
    [
        EventKind::Exchange,
        EventKind::SessionRenewal,
        EventKind::SessionEnd,
    ]
    .iter()
    .any(|k| k.as_str() == kind)
}

/// (organization, workspace name, workspace id)
type WorkspaceName = (String, String, String);

/// One workspace's snapshots, oldest first.
#[derive(Debug, Default)]
struct History {
    snapshots: Vec<(DateTime<Utc>, Vec<Config>)>,
}

impl History {
    fn at(&self, t: DateTime<Utc>) -> Option<&[Config]> {
        let i = self.snapshots.partition_point(|(from, _)| *from <= t);
        (i > 0).then(|| self.snapshots[i - 1].1.as_slice())
    }
}

/// The inventory indexed for attribution.
#[derive(Debug, Default)]
pub struct Attributor {
    /// org -> workspace name -> history (nested so that lookups borrow the row's names: this
    /// runs for every event)
    workspaces: HashMap<String, HashMap<String, History>>,
    /// workspace id -> (org, workspace name)
    ids: HashMap<String, (String, String)>,
    /// variable id -> (key, the workspaces it is in effect for)
    variables: HashMap<String, (String, Vec<WorkspaceName>)>,
    earliest: Option<DateTime<Utc>>,
}

impl Attributor {
    /// Builds the index from stored rows (in any order).
    pub fn new(mut rows: Vec<InventoryRow>) -> Attributor {
        rows.sort_by(|a, b| {
            (&a.org_name, &a.workspace_name, a.valid_from).cmp(&(
                &b.org_name,
                &b.workspace_name,
                b.valid_from,
            ))
        });
        let mut me = Attributor::default();
        for row in rows {
            me.earliest = Some(
                me.earliest
                    .map_or(row.valid_from, |e| e.min(row.valid_from)),
            );
            if !row.workspace_id.is_empty() {
                let key = (row.org_name.clone(), row.workspace_name.clone());
                me.ids.insert(row.workspace_id.clone(), key);
            }
            let from: HashMap<String, String> =
                serde_json::from_str(&row.derived_from).unwrap_or_default();
            for (id, key) in from {
                let Some(id) = id.strip_prefix("id:") else {
                    continue;
                };
                let entry = me
                    .variables
                    .entry(id.to_owned())
                    .or_insert((key, Vec::new()));
                let ws = (
                    row.org_name.clone(),
                    row.workspace_name.clone(),
                    row.workspace_id.clone(),
                );
                if !entry.1.contains(&ws) {
                    entry.1.push(ws);
                }
            }
            let history = me
                .workspaces
                .entry(row.org_name.clone())
                .or_default()
                .entry(row.workspace_name.clone())
                .or_default();
            let from = row.valid_from;
            match history.snapshots.last_mut() {
                Some((last, rows)) if *last == from => rows.push(Config::new(row)),
                _ => history.snapshots.push((from, vec![Config::new(row)])),
            }
        }
        me
    }

    pub fn is_empty(&self) -> bool {
        self.workspaces.is_empty()
    }

    /// Attributes a row as it is ingested: an exchange's alias (and, when its log names no
    /// subject, its workspace and phase), an issuance's missing provider and alias, a
    /// configuration change's missing variable key and workspace.
    pub fn attribute(&self, row: &mut EventRow) {
        let kind = row.event_kind.as_str();
        if kind == EventKind::Issuance.as_str() {
            let unstated = row.provider == "unknown" || row.alias_match == ALIAS_UNSTATED;
            let found = unstated.then(|| self.by_audience(row)).flatten();
            match found {
                Some(c) => {
                    row.provider = c.provider.as_str().into();
                    row.alias_tag = c.alias_tag.as_str().into();
                    row.alias_match = Match::Audience.as_str().into();
                }
                None => row.alias_match = Match::Issuance.as_str().into(),
            }
            return;
        }
        if kind == EventKind::ConfigChange.as_str() {
            self.name_variable(row);
            return;
        }
        if !has_alias(kind) {
            return;
        }
        let config = self.set_alias(row);
        // A log that names no subject at all (an Entra sign-in names only the client id) takes
        // the workspace, and the phase its principal serves, from the one configuration it
        // fits. A module-test token's subject names no workspace on purpose: it keeps none.
        if let Some(c) = config.filter(|_| row.workspace_name.is_empty() && row.subject.is_empty())
        {
            let principal = row.target_principal.as_str();
            let phase = match c.plan_principal != c.apply_principal {
                true if principal == c.plan_principal => "plan",
                true if principal == c.apply_principal => "apply",
                _ => "",
            };
            row.org_name = c.org_name.as_str().into();
            row.workspace_name = c.workspace_name.as_str().into();
            row.workspace_id = c.workspace_id.as_str().into();
            if row.run_phase.is_empty() {
                row.run_phase = phase.into();
            }
        }
    }

    /// Sets a stored event's alias again against this inventory, changing nothing else: its
    /// workspace is part of `events`' sorting key, so a new version with another one would not
    /// replace the old (`reattribute`).
    pub fn reattribute(&self, row: &mut EventRow) {
        if has_alias(&row.event_kind) {
            self.set_alias(row);
        }
    }

    /// Decides and sets an exchange's `alias_tag` and `alias_match`; the configuration it fits.
    fn set_alias(&self, row: &mut EventRow) -> Option<&InventoryRow> {
        let (tag, how, config) = self.decide(row);
        row.alias_tag = tag.into();
        row.alias_match = how.as_str().into();
        config
    }

    /// Fills what an audit trail record left out: the variable's key and workspace from its id,
    /// the workspace's name from its id.
    fn name_variable(&self, row: &mut EventRow) {
        if row.variable_key.is_empty()
            && let Some((key, workspaces)) = self.variables.get(row.target_principal.as_str())
        {
            row.variable_key = key.as_str().into();
            if let ([(org, name, id)], true) =
                (workspaces.as_slice(), row.workspace_name.is_empty())
            {
                row.org_name = org.as_str().into();
                row.workspace_name = name.as_str().into();
                if row.workspace_id.is_empty() {
                    row.workspace_id = id.as_str().into();
                }
            }
        }
        if row.workspace_name.is_empty()
            && let Some((org, name)) = self.ids.get(row.workspace_id.as_str())
        {
            row.org_name = org.as_str().into();
            row.workspace_name = name.as_str().into();
        }
    }

    /// The one configuration of an issued token's workspace that expects its audience (of its
    /// provider, when the emitter named one).
    fn by_audience(&self, row: &EventRow) -> Option<&InventoryRow> {
        if row.audience.is_empty() || row.workspace_name.is_empty() {
            return None;
        }
        let configs = self
            .workspaces
            .get(row.org_name.as_str())?
            .get(row.workspace_name.as_str())?
            .at(row.event_time)?;
        // A GCP token's default audience is its workload provider's name.
        let mut fits = configs
            .iter()
            .filter(|c| {
                (row.provider == "unknown" || c.row.provider == row.provider.as_str())
                    && (c.row.audience == row.audience.as_str()
                        || c.sts_audience == row.audience.as_str())
            })
            .map(|c| &c.row);
        match (fits.next(), fits.next()) {
            (Some(one), None) => Some(one),
            _ => None,
        }
    }

    fn decide(&self, row: &EventRow) -> (String, Match, Option<&InventoryRow>) {
        let t = row.event_time;
        if self.earliest.is_none_or(|e| e > t) {
            return (String::new(), Match::NoInventory, None);
        }
        let workspace: Option<(&str, &str)> = if !row.workspace_name.is_empty() {
            Some((&row.org_name, &row.workspace_name))
        } else if !row.workspace_id.is_empty() {
            match self.ids.get(row.workspace_id.as_str()) {
                Some((org, ws)) => Some((org, ws)),
                None => return (String::new(), Match::UnknownWorkspace, None),
            }
        } else {
            None
        };
        // GCP's STS step names the pool provider, not the service account the configuration
        // expects, and logs the provider's resource name as audience.
        let sts = row.provider == "gcp" && row.event_name == "ExchangeToken";
        let principal = if sts {
            ""
        } else {
            row.target_principal.as_str()
        };
        let audience = row.audience.as_str();
        if workspace.is_none() && principal.is_empty() && audience.is_empty() {
            return (String::new(), Match::NoEvidence, None);
        }
        let configurations: Vec<&Config> = match workspace {
            Some((org, ws)) => {
                let history = self.workspaces.get(org).and_then(|w| w.get(ws));
                match history.and_then(|h| h.at(t)) {
                    Some(configs) => configs.iter().collect(),
                    None => return (String::new(), Match::UnknownWorkspace, None),
                }
            }
            None => self
                .workspaces
                .values()
                .flat_map(HashMap::values)
                .filter_map(|h| h.at(t))
                .flatten()
                .collect(),
        };
        Self::choose(row, principal, audience, sts, &configurations)
    }

    /// The configuration an exchange fits, with how; `None` when none or several fit.
    fn choose<'c>(
        row: &EventRow,
        principal: &str,
        audience: &str,
        sts: bool,
        configurations: &[&'c Config],
    ) -> (String, Match, Option<&'c InventoryRow>) {
        let phase = row.run_phase.as_str();
        let fits_principal = |c: &InventoryRow| match phase {
            "plan" => c.plan_principal == principal,
            "apply" => c.apply_principal == principal,
            _ => c.plan_principal == principal || c.apply_principal == principal,
        };
        let mut both = Vec::new();
        let mut one = Vec::new();
        let mut by_audience = Vec::new();
        for config in configurations
            .iter()
            .filter(|c| c.row.provider == row.provider.as_str())
        {
            let c = &config.row;
            let expected_audience = if sts {
                &config.sts_audience
            } else {
                &c.audience
            };
            let p = !principal.is_empty() && fits_principal(c);
            let a = !audience.is_empty() && *expected_audience == audience;
            // A side the log names must fit; a side it does not name cannot refute.
            let refuted = (!principal.is_empty() && !p) || (!audience.is_empty() && !a);
            if p && a {
                both.push(c);
            } else if (p || a) && !refuted {
                one.push(c);
            }
            if a {
                by_audience.push(c);
            }
        }
        let how = if principal.is_empty() {
            Match::Audience
        } else if audience.is_empty() {
            Match::Principal
        } else {
            Match::Matched
        };
        let winners = if both.is_empty() { one } else { both };
        match (winners.as_slice(), by_audience.as_slice()) {
            ([c], _) => (c.alias_tag.clone(), how, Some(c)),
            ([], [c]) => (c.alias_tag.clone(), Match::AudienceOnly, Some(c)),
            ([], _) => (String::new(), Match::NoMatch, None),
            _ => (String::new(), Match::Ambiguous, None),
        }
    }
}

#[cfg(test)]
mod tests;
