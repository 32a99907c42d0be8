//! One file per subcommand, plus the configuration loading they share.

pub mod detect;
pub mod emit;
pub mod generate;
pub mod ingest;
pub mod inventory;
pub mod migrate;
pub mod query;
pub mod replay;
pub mod validate;

use anyhow::{Context, bail};
use credtrail_ingest::config::Config;
use credtrail_ingest::store::Store;
use std::path::Path;

/// Loads the configuration or fails listing every error.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match Config::load(path) {
        Ok(c) => Ok(c),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
            bail!("invalid configuration:\n{}", list.join("\n"))
        }
    }
}

/// Loads the alias inventory for attribution; without one every exchange says `no_inventory`.
pub async fn load_inventory(intake: &credtrail_ingest::sources::Intake, store: &Store) {
    match intake.attribution.reload(store).await {
        Ok(n) => tracing::info!("alias inventory: {n} configuration rows"),
        Err(e) => tracing::warn!("alias inventory not loaded (run `credtrail migrate`?): {e}"),
    }
}

pub fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::new(config).context("connecting to ClickHouse")
}
