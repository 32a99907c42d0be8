//! `credtrail migrate`: apply the schema, or print the DDL a server would get.

use super::{load_config, open_store};
use credtrail_ingest::schema::{self, Capabilities, MIGRATIONS, RenderOptions};
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the rendered DDL instead of applying it (no server needed).
    #[arg(long)]
    print: bool,
    /// With --print: render for `modern`, `legacy`, or a server version such as 18.16.1.
    #[arg(long, default_value = "modern", requires = "print")]
    target: String,
}

pub async fn run(config: Option<&Path>, args: Args) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let options = RenderOptions {
        retention_days: config.clickhouse.retention_days,
    };
    if args.print {
        let caps = match args.target.as_str() {
            "modern" => Capabilities::modern(),
            "legacy" => Capabilities::legacy(),
            v => Capabilities::for_version(v.parse().map_err(anyhow::Error::msg)?),
        };
        for m in MIGRATIONS {
            println!("-- migration {:04} {}", m.version, m.name);
            for stmt in schema::render(m.template, caps, options)? {
                println!("{stmt};\n");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let store = open_store(&config)?;
    let version = store.server_version().await?;
    let report = schema::migrate(&store, options).await?;
    for r in report {
        let what = if r.applied_now {
            "applied"
        } else {
            "already applied"
        };
        println!("migration {:04} {}: {what}", r.version, r.name);
    }
    println!(
        "schema of database {} is current (ClickHouse {version})",
        store.database()
    );
    Ok(ExitCode::SUCCESS)
}
