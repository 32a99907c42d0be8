//! `credtrail emit`: issuance capture for HCP Terraform agent hooks (pre-plan, pre-apply).
//!
//! It finds the run's workload identity tokens, sends their claims and fingerprints to the
//! collector and exits well inside the hook's 60 s timeout. By default it never fails the run:
//! when the collector cannot be reached in `--deadline-secs`, the records go to the spool and
//! the next invocation sends them. The token never reaches stdout, stderr, the spool or the wire.

use anyhow::Context;
use credtrail_ingest::alias::variables;
use credtrail_ingest::emit::spool::{Spool, Taken};
use credtrail_ingest::emit::{self, Record, verify};
use jsonwebtoken::jwk::JwkSet;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Collector base URL, e.g. `https://credtrail.example.com:8080`.
    #[arg(long, env = "CREDTRAIL_COLLECTOR_URL")]
    collector: Option<String>,
    /// File whose first line is the collector's bearer token (else CREDTRAIL_EMIT_AUTH_TOKEN).
    #[arg(long, env = "CREDTRAIL_EMIT_AUTH_TOKEN_FILE")]
    auth_token_file: Option<PathBuf>,
    /// A token file to read besides the environment: `PROVIDER[:TAG]=PATH` (repeatable).
    #[arg(long = "token-file", value_name = "PROVIDER[:TAG]=PATH")]
    token_files: Vec<String>,
    /// Print the issuance records as JSON and send nothing.
    #[arg(long)]
    dry_run: bool,
    /// Where unsent records wait for the next run [default: ~/.credtrail/emit-spool.ndjson].
    #[arg(long, env = "CREDTRAIL_EMIT_SPOOL")]
    spool: Option<PathBuf>,
    /// Give up sending after this long and spool instead (the hook's timeout is 60 s).
    #[arg(long, default_value_t = 20)]
    deadline_secs: u64,
    /// Exit non-zero when the records could not be sent (fails the run).
    #[arg(long)]
    strict: bool,
    /// Check each token's signature against its issuer's JWKS (`<iss>/.well-known/jwks`,
    /// HTTPS issuers only); the verdict is sent with the record.
    #[arg(long)]
    verify: bool,
    /// Check signatures against this JWKS file instead of fetching (air-gapped agents).
    #[arg(long, value_name = "PATH")]
    jwks_file: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("TFC_")
                || k.starts_with("TF_VAR_tfc_")
                || k == "AWS_WEB_IDENTITY_TOKEN_FILE"
        })
        .collect();
    let configured = variables::derive(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let files = args
        .token_files
        .iter()
        .map(|a| emit::parse_token_file_arg(a).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (found, mut skipped) = emit::find_tokens(&env, &files);
    let mut keys_for = jwks_source(&args)?;
    let (records, unusable) = emit::records(
        found,
        &configured,
        keys_for
            .as_mut()
            .map(|f| f as &mut dyn FnMut(&str) -> Result<JwkSet, String>),
    );
    skipped.extend(unusable);
    for s in &skipped {
        let fp = if s.token_fingerprint.is_empty() {
            String::new()
        } else {
            format!(" (token {})", s.token_fingerprint)
        };
        eprintln!("credtrail emit: skipped {}{fp}: {}", s.origin, s.reason);
    }
    for w in &configured.warnings {
        eprintln!("credtrail emit: {}: {}", w.variable, w.message);
    }
    if args.dry_run {
        println!("{}", serde_json::to_string_pretty(&records)?);
        return Ok(ExitCode::SUCCESS);
    }

    let spool = Spool::new(args.spool.clone().unwrap_or_else(default_spool));
    let taken = spool
        .take()
        .with_context(|| format!("reading spool {}", spool.path().display()))?;
    if taken.unreadable > 0 {
        eprintln!(
            "credtrail emit: {} unreadable line(s) in the spool were dropped",
            taken.unreadable
        );
    }
    let total = taken.records.len() + records.len();
    if total == 0 {
        eprintln!("credtrail emit: no workload identity token found, nothing to send");
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = match &args.collector {
        Some(url) => send(url, &args, &taken, &records),
        None => Err("no collector (--collector or CREDTRAIL_COLLECTOR_URL)".to_owned()),
    };
    match outcome {
        Ok(summary) => {
            let spooled = taken.records.len();
            spool.sent(taken)?;
            eprintln!(
                "credtrail emit: sent {total} issuance record(s) ({spooled} from the spool): {summary}"
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            let dropped = spool.put_back(Some(taken), &records)?;
            eprintln!(
                "credtrail emit: not sent ({why}); {total} record(s) spooled to {} for the next run",
                spool.path().display()
            );
            if dropped > 0 {
                eprintln!("credtrail emit: the spool is full; {dropped} oldest record(s) dropped");
            }
            Ok(if args.strict {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

/// Where signature checks get keys: a file, the issuer's endpoint (cached per issuer), or none.
#[allow(clippy::type_complexity)]
fn jwks_source(
    args: &Args,
) -> anyhow::Result<Option<Box<dyn FnMut(&str) -> Result<JwkSet, String>>>> {
    if let Some(path) = &args.jwks_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let set: JwkSet = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JWKS", path.display()))?;
        return Ok(Some(Box::new(move |_issuer: &str| Ok(set.clone()))));
    }
    if !args.verify {
        return Ok(None);
    }
    let mut cache: HashMap<String, Result<JwkSet, String>> = HashMap::new();
    Ok(Some(Box::new(move |issuer: &str| {
        cache
            .entry(issuer.to_owned())
            .or_insert_with(|| fetch_jwks(issuer))
            .clone()
    })))
}

fn fetch_jwks(issuer: &str) -> Result<JwkSet, String> {
    let url = verify::jwks_url(issuer)
        .ok_or_else(|| format!("issuer {issuer:?} is not HTTPS; keys are not fetched in clear"))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let text = agent
        .get(&url)
        .call()
        .map_err(|e| format!("{url}: {e}"))?
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{url} is not a JWKS: {e}"))
}

fn default_spool() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".credtrail/emit-spool.ndjson")
}

/// POSTs every record as NDJSON, retrying briefly until the deadline.
fn send(url: &str, args: &Args, taken: &Taken, records: &[Record]) -> Result<String, String> {
    let auth = auth_token(args)?;
    let mut body = String::new();
    for r in taken.records.iter().chain(records) {
        body.push_str(&serde_json::to_string(r).expect("records serialize"));
        body.push('\n');
    }
    let deadline = Instant::now() + Duration::from_secs(args.deadline_secs);
    let endpoint = format!("{}/v1/ingest/issuance", url.trim_end_matches('/'));
    let mut pause = Duration::from_millis(500);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "collector not reached within {}s",
                args.deadline_secs
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(left.min(Duration::from_secs(5))))
            .build()
            .into();
        let mut request = agent
            .post(&endpoint)
            .header("Content-Type", "application/x-ndjson");
        if let Some(token) = &auth {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let last = match request.send(body.as_bytes()) {
            Ok(mut r) if r.status() == 200 => {
                return Ok(r.body_mut().read_to_string().unwrap_or_default());
            }
            Ok(r) => format!("collector answered {}", r.status()),
            Err(e) => format!("collector unreachable: {e}"),
        };
        if Instant::now() + pause >= deadline {
            return Err(last);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_secs(4));
    }
}

fn auth_token(args: &Args) -> Result<Option<String>, String> {
    if let Some(path) = &args.auth_token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("auth token file {}: {e}", path.display()))?;
        return Ok(text.lines().next().map(|l| l.trim().to_owned()));
    }
    Ok(std::env::var("CREDTRAIL_EMIT_AUTH_TOKEN").ok())
}
