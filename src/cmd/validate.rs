//! `credtrail validate CONFIG`: every error with its key path, or `ok`.

use credtrail_ingest::config::{Config, KEYS, env_name};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The configuration file to check.
    config: Option<PathBuf>,
    /// List every key, its environment override and what it does.
    #[arg(long)]
    list_keys: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.list_keys {
        for (key, doc) in KEYS {
            println!("{key:<34} {:<42} {doc}", env_name(key));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut errors = match Config::load(args.config.as_deref()) {
        Ok(config) => {
            let mut e = Vec::new();
            if let Err(err) = config.http_auth_tokens() {
                e.push(err);
            }
            if let Err(err) = config.clickhouse_password() {
                e.push(err);
            }
            e
        }
        Err(errors) => errors,
    };
    errors.sort_by(|a, b| a.path.cmp(&b.path));
    if errors.is_empty() {
        println!("ok");
        return Ok(ExitCode::SUCCESS);
    }
    for e in &errors {
        println!("error: {e}");
    }
    println!("{} error(s)", errors.len());
    Ok(ExitCode::FAILURE)
}
