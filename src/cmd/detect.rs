//! `credtrail detect` (evaluate the rules over a window and store findings) and
//! `credtrail findings` (read them, resolve and reopen them).

use super::{load_config, open_store};
use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use credtrail_query::detect::suppress::Suppressions;
use credtrail_query::detect::{self, Severity, engine, findings};
use credtrail_query::render::Format;
use std::path::Path;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct DetectArgs {
    /// Window start (event time) [default: 24 hours before --until].
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Window end, excluded [default: now].
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// Only this rule (repeatable) [default: every rule].
    #[arg(long = "rule")]
    rules: Vec<String>,
    /// List the rules and exit.
    #[arg(long)]
    list: bool,
    /// Judge every stored event now, even one whose counterpart may still be in flight (rules'
    /// `settle_seconds`): for complete data, such as a replay.
    #[arg(long)]
    no_settle: bool,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct FindingsArgs {
    #[command(subcommand)]
    action: Option<Action>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Mark findings resolved; they stay resolved until evidence later than theirs appears.
    Resolve(StatusArgs),
    /// Open resolved findings again.
    Reopen(StatusArgs),
}

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// Finding ids (from `credtrail findings`).
    #[arg(required = true)]
    ids: Vec<String>,
    /// Why (kept with the finding).
    #[arg(long)]
    reason: String,
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Findings last seen at or after this time [default: 7 days ago].
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Only this rule.
    #[arg(long)]
    rule: Option<String>,
    /// Only this status: open, suppressed or resolved.
    #[arg(long, value_parser = ["open", "suppressed", "resolved"])]
    status: Option<String>,
    /// At least this severity: info, low, medium, high, critical.
    #[arg(long, default_value = "info")]
    severity: String,
    /// Output format: table, json or csv.
    #[arg(long, default_value = "table")]
    format: Format,
    /// At most this many findings.
    #[arg(long, default_value_t = 1000)]
    limit: u64,
}

pub async fn detect(config: Option<&Path>, args: DetectArgs) -> anyhow::Result<ExitCode> {
    let all = detect::rules().map_err(anyhow::Error::msg)?;
    if args.list {
        for r in &all {
            println!(
                "{:<32} {:<4} {:<9} {}",
                r.id,
                r.catalogue,
                r.severity.as_str(),
                r.title
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    for wanted in &args.rules {
        if !all.iter().any(|r| &r.id == wanted) {
            bail!("unknown rule {wanted:?} (see `credtrail detect --list`)");
        }
    }
    let rules: Vec<_> = all
        .into_iter()
        .filter(|r| args.rules.is_empty() || args.rules.contains(&r.id))
        .collect();
    let until = args.until.unwrap_or_else(Utc::now);
    let since = args.since.unwrap_or(until - Duration::hours(24));
    let config = load_config(config)?;
    let suppressions = match &config.detect.suppressions_file {
        None => Suppressions::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Suppressions::parse(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| path.display().to_string())?
        }
    };
    let store = open_store(&config)?;
    let settle = if args.no_settle {
        engine::Settle::Off
    } else {
        engine::Settle::On {
            cap_seconds: config.detect.max_settle_secs,
        }
    };
    let window = credtrail_query::detect::rule::Window::new(since, until);
    for e in engine::evaluate(&store, &rules, window, settle, &suppressions).await? {
        println!(
            "{:<32} {} finding(s), {} new, {} suppressed",
            e.rule_id, e.findings, e.new, e.suppressed
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn findings(config: Option<&Path>, args: FindingsArgs) -> anyhow::Result<ExitCode> {
    let (status, StatusArgs { ids, reason }) = match args.action {
        None => return list(config, args.list).await,
        Some(Action::Resolve(a)) => ("resolved", a),
        Some(Action::Reopen(a)) => ("open", a),
    };
    if reason.trim().is_empty() {
        bail!("--reason must say why");
    }
    let config = load_config(config)?;
    let store = open_store(&config)?;
    let missing = engine::set_status(&store, &ids, status, &reason).await?;
    for id in &ids {
        if !missing.contains(id) {
            println!("{id} {status}");
        }
    }
    if !missing.is_empty() {
        bail!("no finding with id {}", missing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(config: Option<&Path>, args: ListArgs) -> anyhow::Result<ExitCode> {
    let Some(severity) = Severity::parse(&args.severity) else {
        bail!(
            "unknown severity {:?} (info, low, medium, high, critical)",
            args.severity
        );
    };
    let config = load_config(config)?;
    let store = open_store(&config)?;
    let since = args.since.unwrap_or_else(|| Utc::now() - Duration::days(7));
    let filter = findings::Filter {
        since,
        rule: args.rule.unwrap_or_default(),
        min_severity: severity,
        status: args.status.unwrap_or_default(),
        offset: 0,
        limit: args.limit,
    };
    let rows = findings::list(&store, &filter).await?;
    let text = findings::print(&rows, args.format)?;
    print!("{}", credtrail_query::render::terminal(&text));
    Ok(ExitCode::SUCCESS)
}
