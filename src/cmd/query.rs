//! `credtrail query ...`: forensic queries. Each subcommand prints one report from
//! `credtrail-query` in the format asked for; the HTTP API serves the same reports.

use super::{load_config, open_store};
use anyhow::anyhow;
use chrono::Utc;
use credtrail_query::render::Format;
use credtrail_query::span::Span;
use credtrail_query::{alias, principal, run, session, sql, token, workspace};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum Query {
    /// A run's timeline per phase and alias: issuance, exchanges, outcomes, principals,
    /// sessions, source IPs; and the findings that cite it.
    Run {
        /// The run id (`run-…`, or `trun-…` for module tests).
        run_id: String,
        #[command(flatten)]
        out: Out,
    },
    /// A workspace over time: per day, provider and alias, runs, exchanges, failures and
    /// principals; and its findings.
    Workspace {
        /// The workspace name or id (`ws-…`).
        workspace: String,
        #[command(flatten)]
        out: Out,
    },
    /// What an alias is configured to use (the inventory at the time) against what it used.
    Alias {
        /// The workspace name or id.
        workspace: String,
        /// The alias tag (`default` for the default configuration).
        tag: String,
        #[command(flatten)]
        out: Out,
    },
    /// Which workspaces, runs and phases assumed a principal, and from where.
    Principal {
        /// An AWS role ARN, a GCP service account email or provider, an Entra client id, a
        /// Vault role.
        principal: String,
        #[command(flatten)]
        out: Out,
    },
    /// The exchange that created a session, back to run, workspace and alias; and for AWS
    /// what the session did.
    Session {
        /// The AWS access key id (`ASIA…`) or another provider's session id.
        session_id: String,
        #[command(flatten)]
        out: Out,
    },
    /// Every exchange of one token.
    Token {
        /// The token's fingerprint (`sha256:…`) or its jti.
        token: String,
        #[command(flatten)]
        out: Out,
    },
    /// Ad hoc read-only SQL (ClickHouse `readonly`, a time limit and a row limit). Writes are
    /// refused.
    Sql {
        /// The statement (database `credtrail`'s tables: events, findings, inventory, …).
        statement: String,
        #[command(flatten)]
        out: Out,
        /// Stop the statement after this long.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// What every query takes: the time span, a row limit and the output format.
#[derive(Debug, clap::Args)]
pub struct Out {
    /// From this time: RFC 3339, or a duration ago (`24h`, `7d`) [default: the beginning].
    #[arg(long)]
    since: Option<String>,
    /// Until this time (exclusive): RFC 3339, or a duration ago [default: no end].
    #[arg(long)]
    until: Option<String>,
    /// At most this many rows (events, groups, findings).
    #[arg(long, default_value_t = 10_000)]
    limit: u64,
    /// Output format: table, json or csv.
    #[arg(long, default_value = "table")]
    format: Format,
}

impl Out {
    fn span(&self) -> anyhow::Result<Span> {
        let (since, until) = (self.since.as_deref(), self.until.as_deref());
        Span::parse(since, until, 0, self.limit, Utc::now()).map_err(|e| anyhow!("--{e}"))
    }
}

pub async fn run(config: Option<&Path>, query: Query) -> anyhow::Result<ExitCode> {
    let config = load_config(config)?;
    let store = open_store(&config)?;
    let text = match query {
        Query::Run { run_id, out } => run::print(
            &run::report(&store, &run_id, &out.span()?).await?,
            out.format,
        )?,
        Query::Workspace { workspace, out } => workspace::print(
            &workspace::report(&store, &workspace, &out.span()?).await?,
            out.format,
        )?,
        Query::Alias {
            workspace,
            tag,
            out,
        } => alias::print(
            &alias::report(&store, &workspace, &tag, &out.span()?).await?,
            out.format,
        )?,
        Query::Principal { principal, out } => principal::print(
            &principal,
            &principal::uses(&store, &principal, &out.span()?).await?,
            out.format,
        )?,
        Query::Session { session_id, out } => session::print(
            &session::report(&store, &session_id, &out.span()?).await?,
            out.format,
        )?,
        Query::Token { token, out } => token::print(
            &token::report(&store, &token, &out.span()?).await?,
            out.format,
        )?,
        Query::Sql {
            statement,
            out,
            timeout,
        } => {
            let limits = sql::Limits {
                max_rows: out.limit,
                timeout,
            };
            match sql::run(&store, &statement, limits).await {
                Ok(rows) => sql::print(&rows, out.format)?,
                Err(credtrail_query::QueryError::Refused(why)) => {
                    eprintln!("credtrail query sql: refused: {why}");
                    return Ok(ExitCode::from(2));
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    print!("{}", credtrail_query::render::terminal(&text));
    Ok(ExitCode::SUCCESS)
}
