//! The forensic HTTP API of `credtrail serve` against a real ClickHouse with a replayed,
//! generated scenario: every path `openapi.json` documents is called, and each response must
//! validate against the documented schema (which forbids undocumented fields) and carry the
//! same report `credtrail query` prints. Also: readers need an API token (collector tokens do
//! not read), pagination walks the whole list, and the web console is served from the binary.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;
use support::{ClickHouse, Collector, agent};

const READER: &str = "reader-token-for-tests";
const WRITER: &str = "ingest-token-for-tests";

fn get(url: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = agent().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut res = req.call().unwrap();
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A validator for the response schema `name` of the OpenAPI document.
fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
    let schema = serde_json::json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::validator_for(&schema).unwrap()
}

#[test]
fn every_documented_endpoint_answers_as_documented() {
    let ch = ClickHouse::start();
    ch.migrate();
    let (dir, _) = ch.judged_scenario(&[
        "--seed",
        "5",
        "--orgs",
        "2",
        "--workspaces",
        "14",
        "--runs-per-day",
        "6",
    ]);
    let facts = support::facts(dir.path());
    let aws = facts
        .iter()
        .find(|f| f.provider == "aws" && !f.session.is_empty() && !f.alias.is_empty())
        .expect("an AWS exchange of a tagged alias");
    let issued = facts
        .iter()
        .find(|f| f.kind == "issuance" && f.run == aws.run)
        .unwrap();

    let serve = Collector::serve(
        &ch,
        &[
            ("CREDTRAIL_HTTP_API_TOKENS", READER),
            ("CREDTRAIL_HTTP_AUTH_TOKENS", WRITER),
            ("CREDTRAIL_DETECT_ENABLED", "false"),
        ],
    );
    let doc: Value = serde_json::from_str(credtrail_query::api::OPENAPI).unwrap();
    let (status, served) = get(&format!("{}/api/v1/openapi.json", serve.url), None);
    assert_eq!(
        (status, &served),
        (200, &doc),
        "the document is served as is"
    );

    // One call per documented path, with the CLI command that prints the same report.
    let since_arg = "2024-07-01T00:00:00Z";
    let calls: Vec<(&str, String, &str, Vec<String>)> = vec![
        (
            "/api/v1/runs/{run_id}",
            format!("/api/v1/runs/{}", aws.run),
            "RunPage",
            vec!["run".into(), aws.run.clone()],
        ),
        (
            "/api/v1/workspaces/{workspace}",
            format!("/api/v1/workspaces/{}", aws.workspace),
            "WorkspacePage",
            vec!["workspace".into(), aws.workspace.clone()],
        ),
        (
            "/api/v1/workspaces/{workspace}/aliases/{tag}",
            format!("/api/v1/workspaces/{}/aliases/{}", aws.workspace, aws.alias),
            "AliasPage",
            vec!["alias".into(), aws.workspace.clone(), aws.alias.clone()],
        ),
        (
            "/api/v1/principals/{principal}",
            format!("/api/v1/principals/{}", enc(&aws.principal)),
            "PrincipalPage",
            vec!["principal".into(), aws.principal.clone()],
        ),
        (
            "/api/v1/sessions/{session_id}",
            format!("/api/v1/sessions/{}", aws.session),
            "SessionPage",
            vec!["session".into(), aws.session.clone()],
        ),
        (
            "/api/v1/tokens/{token}",
            format!("/api/v1/tokens/{}", issued.jti),
            "TokenPage",
            vec!["token".into(), issued.jti.clone()],
        ),
        (
            "/api/v1/findings",
            format!("/api/v1/findings?since={since_arg}&limit=10000"),
            "FindingPage",
            vec![],
        ),
    ];
    let documented: BTreeSet<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let called: BTreeSet<&str> = calls.iter().map(|c| c.0).collect();
    assert_eq!(called, documented, "every documented path is exercised");

    for (path, url, schema, cli) in &calls {
        let url = format!("{}{url}", serve.url);
        let (status, body) = get(&url, Some(READER));
        assert_eq!(status, 200, "{path}: {body}");
        let v = validator(&doc, schema);
        let errors: Vec<String> = v.iter_errors(&body).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{path} breaks its schema: {errors:?}");
        // The check can fail: an undocumented field breaks the schema.
        let mut extra = body.clone();
        extra["undocumented"] = Value::Bool(true);
        assert!(!v.is_valid(&extra), "{path}: the schema admits anything");
        let data = &body["data"];
        let empty = data.as_array().map(Vec::is_empty).unwrap_or(false);
        assert!(!empty && !data.is_null(), "{path} has data");
        let cli_json: Value = if cli.is_empty() {
            let out = ch.credtrail_ok(&[
                "findings", "--since", since_arg, "--limit", "10000", "--format", "json",
            ]);
            serde_json::from_str(&out).unwrap()
        } else {
            let mut a: Vec<&str> = vec!["query"];
            a.extend(cli.iter().map(String::as_str));
            a.extend(["--format", "json", "--limit", "100"]);
            serde_json::from_str(&ch.credtrail_ok(&a)).unwrap()
        };
        // The alias report says when it judged "now"; the rest is the same report.
        let strip = |mut v: Value| {
            if let Some(o) = v.as_object_mut() {
                o.remove("configured_at");
            }
            v
        };
        assert_eq!(
            strip(data.clone()),
            strip(cli_json),
            "{path}: API and CLI differ"
        );

        // Readers only: no token and a collector token are refused.
        for token in [None, Some(WRITER), Some("guess")] {
            let (status, body) = get(&url, token);
            assert_eq!(status, 401, "{path} with {token:?}");
            assert!(validator(&doc, "Error").is_valid(&body));
        }
    }

    // A bad parameter is a 400 with a reason.
    let (status, body) = get(
        &format!("{}/api/v1/runs/{}?since=yesterday", serve.url, aws.run),
        Some(READER),
    );
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("since"), "{body}");

    // Pagination: pages of 3 findings cover the full list exactly once, in order.
    let (_, all) = get(
        &format!(
            "{}/api/v1/findings?since={since_arg}&limit=10000",
            serve.url
        ),
        Some(READER),
    );
    let all: Vec<Value> = all["data"].as_array().unwrap().clone();
    assert!(all.len() > 3, "{} findings", all.len());
    let mut walked = Vec::new();
    let mut offset = Some(0);
    while let Some(o) = offset {
        let (status, page) = get(
            &format!(
                "{}/api/v1/findings?since={since_arg}&limit=3&offset={o}",
                serve.url
            ),
            Some(READER),
        );
        assert_eq!(status, 200);
        walked.extend(page["data"].as_array().unwrap().iter().cloned());
        offset = page["next_offset"].as_u64();
        assert!(walked.len() <= all.len() + 3, "pagination ends");
    }
    assert_eq!(walked, all);

    // The console: the page, its script and style, from the binary, with a strict CSP.
    let mut res = agent().get(format!("{}/", serve.url)).call().unwrap();
    let csp = res
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = res.body_mut().read_to_string().unwrap();
    assert!(html.contains("<script src=\"/console.js\""));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from the internet"
    );
    for asset in ["/console.js", "/console.css"] {
        let mut r = agent().get(format!("{}{asset}", serve.url)).call().unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        assert!(text.len() > 500, "{asset}");
        assert!(
            !text.contains("https://"),
            "{asset} loads nothing from the internet"
        );
    }
    serve.stop();
}
