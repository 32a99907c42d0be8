//! Forensic lookups on a large store: how long `credtrail query run` (and the other identifier
//! lookups) take on ClickHouse 18.16 holding about 10M events.
//!
//! `cargo bench --bench forensic_lookup` (optionally `-- EVENTS LOOKUPS`, default 10,000,000 and
//! 200) starts a real ClickHouse, replays a generated estate (realistic events of every source
//! format), then grows it to EVENTS rows by copying it under new organization names, run ids,
//! sessions, tokens, workspace ids and principals, shifted back in time (the copies leave `raw`
//! empty: lookups never read it), each copy indexed in `event_lookup` as the sink indexes what it
//! stores.
//! It then times LOOKUPS reports of random runs through the library `credtrail query run` uses
//! (timeline plus the findings citing the run), and a smaller sample of session, token,
//! principal and workspace lookups, and prints p50, p99 and max. Target from the issue: a run
//! lookup under 100 ms on 10M stored events.

#[path = "../tests/support/mod.rs"]
mod support;

use credtrail_ingest::config::Config;
use credtrail_ingest::store::Store;
use credtrail_query::span::Span;
use std::time::Instant;
use support::*;

fn percentiles(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "{name:<10} {:>4} lookups: p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms",
        ms.len(),
        at(0.5),
        at(0.99),
        ms[ms.len() - 1]
    );
}

/// `n` keys of `kind` (whose key matches the `LIKE` pattern) spread by hash.
fn sample(ch: &ClickHouse, kind: &str, like: &str, n: usize) -> Vec<String> {
    ch.query(&format!(
        "SELECT key FROM (SELECT DISTINCT key FROM event_lookup WHERE key_kind = '{kind}' \
         AND key LIKE '{like}') ORDER BY cityHash64(key) LIMIT {n}"
    ))
    .lines()
    .map(String::from)
    .collect()
}

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let target = args.next().unwrap_or(10_000_000);
    let lookups = args.next().unwrap_or(200) as usize;
    let ch = ClickHouse::start();
    ch.migrate();
    let dir = tempfile::tempdir().unwrap();
    let began = Instant::now();
    let expected = ch.generate(
        dir.path(),
        &[
            "--seed",
            "21",
            "--start",
            "2025-01-01T00:00:00Z",
            "--days",
            "3",
            "--orgs",
            "4",
            "--workspaces",
            "40",
            "--runs-per-day",
            "40",
        ],
        "2000-01-01T00:00:00Z",
    );
    ch.credtrail_files(
        &["replay"],
        &credtrail_scenario::Scenario::data_files(dir.path()),
    );
    let base = ch.count("SELECT count() FROM events");
    println!(
        "generated and replayed {base} events ({} benign) in {:.0} s",
        expected["benign_events"],
        began.elapsed().as_secs_f64()
    );
    // Copy k of the base: its own organizations, runs, sessions, tokens and dedup keys, k * 3
    // days earlier.
    let copies = target.div_ceil(base).saturating_sub(1);
    let grow = Instant::now();
    let columns: Vec<String> = ch
        .query("DESCRIBE TABLE events")
        .lines()
        .filter_map(|l| l.split('\t').next().map(String::from))
        .collect();
    for k in 1..=copies {
        let suffix = |c: &str| format!("if({c} = '', '', concat({c}, '-c{k}'))");
        let select: Vec<String> = columns
            .iter()
            .map(|c| match c.as_str() {
                "event_time" => format!("event_time - {}", k * 3 * 86_400),
                "dedup_key" => format!("cityHash64(dedup_key, {k})"),
                "source_event_id" => format!("concat(source_event_id, '-c{k}')"),
                "org_name" | "run_id" | "jti" | "token_fingerprint" | "session_id"
                | "workspace_id" | "target_principal" => suffix(c),
                "raw" => "''".into(),
                other => other.to_owned(),
            })
            .collect();
        ch.query(&format!(
            "INSERT INTO events ({}) SELECT {} FROM events \
             WHERE dedup_key IN (SELECT dedup_key FROM dedup_keys)",
            columns.join(", "),
            select.join(", ")
        ));
        // Index the copy as the sink indexes what it stores (migration 0008).
        ch.query(&format!(
            "INSERT INTO event_lookup_input SELECT tupleElement(k, 1), tupleElement(k, 2), \
             org_name, workspace_name, min(event_time), max(event_time) FROM events \
             ARRAY JOIN [('run', run_id), ('session', session_id), ('jti', jti), \
             ('fingerprint', token_fingerprint), ('principal', target_principal), \
             ('workspace', workspace_name), ('workspace_id', workspace_id)] AS k \
             WHERE endsWith(source_event_id, '-c{k}') AND tupleElement(k, 2) != '' \
             GROUP BY tupleElement(k, 1), tupleElement(k, 2), org_name, workspace_name"
        ));
    }
    let stored = ch.count("SELECT count() FROM events");
    let parts = || {
        ch.count(
            "SELECT count() FROM system.parts WHERE active AND table = 'events' \
             AND database = currentDatabase()",
        )
    };
    println!(
        "grew to {stored} events ({copies} copies) in {:.0} s; {} active parts",
        grow.elapsed().as_secs_f64(),
        parts()
    );
    // Let the background merges catch up, as they have on a server that has been ingesting
    // for a while (at most two minutes).
    let settle = Instant::now();
    let mut last = parts();
    while settle.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_secs(10));
        let now = parts();
        if now >= last {
            break;
        }
        last = now;
    }
    println!(
        "{last} active parts after {:.0} s of merging",
        settle.elapsed().as_secs_f64()
    );

    let mut config = Config::default();
    config.clickhouse.url = ch.url.clone();
    config.clickhouse.database = ch.database.clone();
    let store = Store::new(&config).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let span = Span::all(10_000);
    let runs = sample(&ch, "run", "%", lookups);
    let mut events = 0usize;
    let mut ms = Vec::new();
    // One warm-up lookup (marks and the lookup table into the cache), as a server that has
    // been up a while has them.
    rt.block_on(credtrail_query::run::report(&store, &runs[0], &span))
        .unwrap();
    for run in &runs {
        let t = Instant::now();
        let r = rt
            .block_on(credtrail_query::run::report(&store, run, &span))
            .unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!r.events.is_empty(), "run {run} has events");
        events += r.events.len();
    }
    println!("on {stored} stored events (ClickHouse 18.16):");
    percentiles("run", ms);
    println!(
        "           {:.1} events per run on average",
        events as f64 / runs.len() as f64
    );
    let small = (lookups / 4).max(10);
    let time = |name: &str, keys: Vec<String>, f: &dyn Fn(&str) -> usize| {
        let mut ms = Vec::new();
        for k in &keys {
            let t = Instant::now();
            let n = f(k);
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(n > 0, "{name} {k} found nothing");
        }
        percentiles(name, ms);
    };
    time("session", sample(&ch, "session", "ASIA%", small), &|k| {
        rt.block_on(credtrail_query::session::report(&store, k, &span))
            .unwrap()
            .events
            .len()
    });
    time("token", sample(&ch, "jti", "%", small), &|k| {
        rt.block_on(credtrail_query::token::report(&store, k, &span))
            .unwrap()
            .issued
            .len()
    });
    time(
        "principal",
        sample(&ch, "principal", "arn:aws:iam::%:role/%", small),
        &|k| {
            rt.block_on(credtrail_query::principal::uses(&store, k, &span))
                .unwrap()
                .len()
        },
    );
    time(
        "workspace",
        sample(&ch, "workspace_id", "ws-%", small),
        &|k| {
            rt.block_on(credtrail_query::workspace::report(&store, k, &span))
                .unwrap()
                .days
                .len()
        },
    );
}
