//! `credtrail query ...`: forensic queries.

use super::{load_config, open_store};
use credtrail_query::render::Format;
use credtrail_query::run;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum Query {
    /// The timeline of one run: issuance and exchanges per phase and alias, with outcomes.
    Run {
        /// The run id (`run-…`, or `trun-…` for module tests).
        run_id: String,
        /// Output format: table, json or csv.
        #[arg(long, default_value = "table")]
        format: Format,
        /// At most this many events.
        #[arg(long, default_value_t = 10_000)]
        limit: u64,
    },
}

pub async fn run(config: Option<&Path>, query: Query) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let store = open_store(&config)?;
    match query {
        Query::Run {
            run_id,
            format,
            limit,
        } => {
            let entries = run::timeline(&store, &run_id, limit).await?;
            print!("{}", run::print(&run_id, &entries, format)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}
