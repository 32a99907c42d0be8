//! The web console in a real headless Chromium (Debian's `chromium`): `credtrail serve` over a
//! replayed, generated scenario with its findings; the browser runs the console's script, which
//! reads the API with a reader token. The rendered DOM must list the findings and a planted
//! run's timeline; screenshots of both are saved under `target/screenshots/`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::{ClickHouse, Collector, repo_root};

const READER: &str = "console-reader-token";

/// Headless Chromium with a fresh profile, no background networking (this machine has no
/// internet), as root without the sandbox.
fn chromium(profile: &Path, extra: &[&str], url: &str) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1500,1100",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium (Debian package chromium; tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The text of the `<tbody>`/`<ol>` with `id`, tags stripped.
fn text_of(dom: &str, id: &str) -> String {
    let start = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &dom[start..];
    let end = rest
        .find("</table>")
        .or(rest.find("</ol>"))
        .unwrap_or(rest.len());
    let mut text = String::new();
    let mut in_tag = false;
    for c in rest[..end].chars() {
        match c {
            '<' => {
                in_tag = true;
                text.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

fn screenshot(profile: &Path, url: &str, name: &str) -> PathBuf {
    let dir = repo_root().join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    chromium(profile, &[&format!("--screenshot={}", file.display())], url);
    let png = std::fs::read(&file).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{name}: {} bytes",
        png.len()
    );
    file
}

#[test]
fn console_shows_findings_and_a_run_timeline_from_a_replay() {
    let ch = ClickHouse::start();
    ch.migrate();
    let (_dir, expected) = ch.judged_scenario(&[
        "--seed",
        "3",
        "--orgs",
        "2",
        "--workspaces",
        "14",
        "--runs-per-day",
        "6",
    ]);
    // A planted case about one run: its timeline and the finding citing it.
    let case = expected["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["rule"] == "plan-token-write-principal")
        .expect("a planted plan-token-write-principal case");
    let run = case["run"].as_str().unwrap();
    let workspace = case["workspace"].as_str().unwrap();

    let serve = Collector::serve(
        &ch,
        &[
            ("CREDTRAIL_HTTP_API_TOKENS", READER),
            ("CREDTRAIL_HTTP_AUTH_TOKENS", "collector-token"),
            ("CREDTRAIL_DETECT_ENABLED", "false"),
        ],
    );
    let profile = tempfile::tempdir().unwrap();

    // Findings (the default view shows 30 days; the 2024 scenario needs a link with `since`).
    let findings_url = format!(
        "{}/#findings&since=2024-07-01T00:00:00Z&token={READER}",
        serve.url
    );
    let dom = chromium(profile.path(), &["--dump-dom"], &findings_url);
    let table = text_of(&dom, "findings-table");
    // Exactly what the CLI lists for the same filter: the open findings since 2024-07-01.
    let listed: Vec<serde_json::Value> = serde_json::from_str(&ch.credtrail_ok(&[
        "findings",
        "--since",
        "2024-07-01T00:00:00Z",
        "--status",
        "open",
        "--format",
        "json",
    ]))
    .unwrap();
    assert!(listed.len() >= 10, "{} open findings", listed.len());
    assert!(
        dom.contains(&format!(">{} findings<", listed.len())),
        "the status line counts {} findings",
        listed.len()
    );
    for f in &listed {
        for field in ["rule", "summary"] {
            let text = f[field].as_str().unwrap();
            assert!(table.contains(text), "{field} {text:?} is shown");
        }
    }
    assert!(
        table.contains(run),
        "the planted run is linked from its finding"
    );

    // The run's timeline.
    let run_url = format!("{}/#run={run}&token={READER}", serve.url);
    let dom = chromium(profile.path(), &["--dump-dom"], &run_url);
    let timeline = text_of(&dom, "run-timeline");
    assert!(timeline.contains("issuance issued"), "{timeline}");
    assert!(timeline.contains("exchange success"), "{timeline}");
    assert!(
        dom.contains(&format!("run {run}:")),
        "status line names the run"
    );
    assert!(
        dom.contains("plan-token-write-principal"),
        "the citing finding is listed"
    );

    // Alias health of the planted workspace.
    let alias_url = format!(
        "{}/#aliases={workspace}&since=2024-07-01T00:00:00Z&token={READER}",
        serve.url
    );
    let dom = chromium(profile.path(), &["--dump-dom"], &alias_url);
    let health = text_of(&dom, "aliases-table");
    assert!(
        health.contains(workspace) && health.contains('%'),
        "{health}"
    );

    // Without a token the console says so instead of showing data.
    let profile2 = tempfile::tempdir().unwrap();
    let dom = chromium(profile2.path(), &["--dump-dom"], &format!("{}/", serve.url));
    assert!(dom.contains("missing or unknown bearer token"));

    let a = screenshot(profile.path(), &findings_url, "console-findings.png");
    let b = screenshot(profile.path(), &run_url, "console-run-timeline.png");
    println!("screenshots: {} {}", a.display(), b.display());
    serve.stop();
}
