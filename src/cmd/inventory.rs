//! `credtrail inventory ...`: import the alias inventory (HCP Terraform API responses saved to
//! files, or a declarative TOML file) as a new snapshot per workspace, import trust policies,
//! and show what was configured at a given time.

use super::{load_config, open_store};
use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use credtrail_ingest::alias::inventory::{self, Workspace};
use credtrail_ingest::alias::trust;
use credtrail_query::render::Format;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Inventory {
    /// Import workspaces' dynamic-credentials configurations. `.json` files are HCP Terraform
    /// API responses (workspace lists, workspace variables, variable sets with `include=vars`),
    /// read together; `.toml` files are declarative inventories.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// When the imported configuration took effect [default: now].
        #[arg(long)]
        valid_from: Option<DateTime<Utc>>,
        /// Print what would be imported (JSON) and write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Do not re-attribute the stored events from `--valid-from` on.
        #[arg(long)]
        no_reattribute: bool,
    },
    /// Import trust policies (what each cloud trust accepts of HCP Terraform's tokens), judged by
    /// the `trust-policy-too-broad` rule: `aws iam get-role`/`list-roles` output, GCP workload
    /// identity providers (`gcloud ... providers describe/list --format=json`), Azure federated
    /// credentials (`az ad app federated-credential list`), Vault JWT roles (`vault read
    /// -format=json auth/jwt/role/NAME` with `"role": "NAME"` added, or named by the file).
    Trust {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// When these policies took effect [default: now].
        #[arg(long)]
        valid_from: Option<DateTime<Utc>>,
        /// Print what would be imported (JSON) and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Recompute the alias of stored exchanges against the current inventory and store the
    /// changed ones (a new row version; nothing is counted twice).
    Reattribute {
        /// From this event time [default: the beginning].
        #[arg(long)]
        since: Option<DateTime<Utc>>,
        /// Up to (excluding) this event time [default: no end].
        #[arg(long)]
        until: Option<DateTime<Utc>>,
    },
    /// The configurations in force at a time, per workspace and alias.
    Show {
        /// Only this workspace (by name).
        workspace: Option<String>,
        /// The instant to look at [default: now].
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// Output format: table, json or csv.
        #[arg(long, default_value = "table")]
        format: Format,
    },
}

pub async fn run(config: Option<&Path>, command: Inventory) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    match command {
        Inventory::Import {
            files,
            valid_from,
            dry_run,
            no_reattribute,
        } => {
            let workspaces = read(&files)?;
            for ws in &workspaces {
                for w in &ws.warnings {
                    eprintln!(
                        "{}/{}: {}: {}",
                        ws.organization, ws.name, w.variable, w.message
                    );
                }
            }
            if dry_run {
                println!("{}", serde_json::to_string_pretty(&workspaces)?);
                return Ok(ExitCode::SUCCESS);
            }
            let store = open_store(&config)?;
            let origin = files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(",");
            let when = valid_from.unwrap_or_else(Utc::now);
            let (written, unchanged) = inventory::store(&store, &workspaces, when, &origin)
                .await
                .context("writing the inventory")?;
            let configurations: usize = workspaces.iter().map(|w| w.configurations.len()).sum();
            println!(
                "inventory: {} workspace(s), {configurations} configuration(s); {written} snapshot(s) written, {unchanged} unchanged",
                workspaces.len()
            );
            if written > 0 && !no_reattribute {
                reattribute(&store, Some(when), None).await?;
            }
        }
        Inventory::Trust {
            files,
            valid_from,
            dry_run,
        } => {
            let mut trusts = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let doc: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not JSON", f.display()))?;
                let stem = f.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                trusts.extend(
                    trust::from_document(&doc, stem)
                        .map_err(anyhow::Error::msg)
                        .with_context(|| f.display().to_string())?,
                );
            }
            let origin = files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(",");
            let rows = trust::rows(&trusts, valid_from.unwrap_or_else(Utc::now), &origin);
            if dry_run {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(ExitCode::SUCCESS);
            }
            let store = open_store(&config)?;
            let (written, unchanged) = trust::store(&store, &rows)
                .await
                .context("writing trust policies")?;
            println!(
                "trust policies: {} statement(s); {written} resource(s) written, {unchanged} unchanged",
                rows.len()
            );
        }
        Inventory::Reattribute { since, until } => {
            let store = open_store(&config)?;
            reattribute(&store, since, until).await?;
        }
        Inventory::Show {
            workspace,
            at,
            format,
        } => {
            let store = open_store(&config)?;
            let rows = credtrail_query::inventory::at(
                &store,
                at.unwrap_or_else(Utc::now),
                workspace.as_deref().unwrap_or(""),
            )
            .await?;
            print!("{}", credtrail_query::inventory::print(&rows, format)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn reattribute(
    store: &credtrail_ingest::store::Store,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    let attribution = credtrail_ingest::alias::Attribution::default();
    attribution.reload(store).await?;
    let done = credtrail_ingest::alias::reattribute::reattribute(
        store,
        &attribution.current(),
        since.unwrap_or(DateTime::UNIX_EPOCH),
        until.unwrap_or(DateTime::<Utc>::MAX_UTC),
    )
    .await
    .context("re-attributing stored events")?;
    println!(
        "re-attributed: {} event(s) scanned, {} changed",
        done.scanned, done.changed
    );
    Ok(())
}

/// Every file, JSON ones read as one API state, TOML ones on their own.
fn read(files: &[PathBuf]) -> anyhow::Result<Vec<Workspace>> {
    let mut documents = Vec::new();
    let mut out = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        match f.extension().and_then(|e| e.to_str()) {
            Some("json") => documents.push(
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: not JSON", f.display()))?,
            ),
            Some("toml") => out.extend(
                inventory::from_toml(&text)
                    .map_err(anyhow::Error::msg)
                    .with_context(|| f.display().to_string())?,
            ),
            _ => bail!(
                "{}: expected a .json (API response) or .toml file",
                f.display()
            ),
        }
    }
    if !documents.is_empty() {
        out.extend(inventory::from_api_documents(&documents).map_err(anyhow::Error::msg)?);
    }
    Ok(out)
}
