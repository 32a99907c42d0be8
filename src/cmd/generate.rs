//! `credtrail generate`: writes a seeded scenario (traffic in the real source formats, the
//! inventory, and the findings its planted cases must produce) into a directory.

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, DurationRound, Utc};
use credtrail_scenario::plant::Plant;
use credtrail_scenario::{Spec, generate};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: PathBuf,
    /// Same seed, same start, same sizes: byte-identical files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Start of the first day [default: midnight UTC, --days days ago, so the scenario ends today].
    #[arg(long)]
    start: Option<DateTime<Utc>>,
    /// Days of traffic; the first is history for the rules' baselines.
    #[arg(long, default_value_t = 2)]
    days: u32,
    /// Organizations.
    #[arg(long, default_value_t = 2)]
    orgs: usize,
    /// Workspaces per organization.
    #[arg(long, default_value_t = 20)]
    workspaces: usize,
    /// Runs per workspace per day.
    #[arg(long, default_value_t = 12)]
    runs_per_day: usize,
    /// Plant the case of this rule (repeatable) [default: every rule's].
    #[arg(long = "plant")]
    plants: Vec<String>,
    /// Plant nothing: ordinary traffic only.
    #[arg(long, conflicts_with = "plants")]
    benign: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plants = if args.benign {
        Vec::new()
    } else if args.plants.is_empty() {
        Plant::ALL.to_vec()
    } else {
        let mut out = Vec::new();
        for rule in &args.plants {
            match Plant::parse(rule) {
                Some(p) => out.push(p),
                None => bail!(
                    "no case to plant for {rule:?}; known: {}",
                    Plant::ALL.map(Plant::rule).join(", ")
                ),
            }
        }
        out
    };
    let start = match args.start {
        Some(s) => s,
        None => {
            let today = Utc::now()
                .duration_trunc(Duration::days(1))
                .context("today's date")?;
            today - Duration::days(i64::from(args.days))
        }
    };
    let spec = Spec {
        seed: args.seed,
        start,
        days: args.days,
        orgs: args.orgs,
        workspaces: args.workspaces,
        runs_per_day: args.runs_per_day,
        plants,
    };
    let scenario = generate(&spec).map_err(anyhow::Error::msg)?;
    scenario
        .write(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let e = &scenario.expected;
    println!(
        "{}: {} benign and {} planted events from {} to {}; {} planted case(s) in {}..{} \
         (expected.json), inventory.toml",
        args.out.display(),
        e.benign_events,
        e.planted_events,
        e.start,
        e.end,
        e.cases.len(),
        e.judged_since,
        e.judged_until
    );
    Ok(ExitCode::SUCCESS)
}
