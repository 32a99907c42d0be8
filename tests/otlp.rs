//! The OTLP/HTTP logs receiver against a real ClickHouse: log records carrying every kind of
//! source record (a string body, a parsed key-value body, a JSON attribute, a named format) are
//! routed to their parsers, in protobuf and in OTLP/JSON; the rest are dead letters with reasons,
//! counted in `partial_success`.

mod support;

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};
use support::{ClickHouse, Collector, agent, fixtures};

const TOKEN: &str = "otlp-token";

fn string(s: &str) -> Value {
    json!({ "stringValue": s })
}

/// A JSON value as an OTLP AnyValue, as a collector's JSON parser would produce it.
fn any(v: &Value) -> Value {
    match v {
        Value::String(s) => string(s),
        Value::Bool(b) => json!({ "boolValue": b }),
        Value::Number(n) if n.is_i64() => json!({ "intValue": n.as_i64().unwrap().to_string() }),
        Value::Number(n) => json!({ "doubleValue": n.as_f64().unwrap() }),
        Value::Array(a) => {
            json!({ "arrayValue": { "values": a.iter().map(any).collect::<Vec<_>>() } })
        }
        Value::Object(o) => {
            json!({ "kvlistValue": { "values": o.iter().map(|(k, v)| json!({"key": k, "value": any(v)})).collect::<Vec<_>>() } })
        }
        Value::Null => json!({}),
    }
}

fn fixture_line(path: &str, line: usize) -> String {
    std::fs::read_to_string(fixtures().join(path))
        .unwrap()
        .lines()
        .nth(line)
        .unwrap()
        .to_owned()
}

/// Five log records: CloudTrail as a string body, a GCP entry parsed into a key-value body, an
/// Entra row in a JSON attribute, a Vault response named by `credtrail.source`, and plain text.
fn request() -> Value {
    let cloudtrail = fixture_line("cloudtrail/failures.ndjson", 0);
    let gcp: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("gcp/exchange_token.json")).unwrap(),
    )
    .unwrap();
    let entra: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("entra/log_analytics.json")).unwrap(),
    )
    .unwrap();
    let vault = fixture_line("vault/audit.log", 1);
    json!({ "resourceLogs": [{
        "resource": { "attributes": [{ "key": "service.name", "value": string("otelcol") }] },
        "scopeLogs": [{ "logRecords": [
            { "timeUnixNano": "1720540000000000000", "body": string(&cloudtrail) },
            { "body": any(&gcp) },
            { "body": string("entra sign-in"), "attributes": [
                { "key": "log.original", "value": string(&entra[0].to_string()) } ] },
            { "body": string(&vault), "attributes": [
                { "key": "credtrail.source", "value": string("vault") } ] },
            { "body": string("GET /healthz 200"), "attributes": [
                { "key": "http.method", "value": string("GET") } ] }
        ]}]
    }]})
}

fn post(c: &Collector, body: Vec<u8>, content_type: &str) -> (u16, Vec<u8>) {
    let mut r = agent()
        .post(format!("{}/v1/logs", c.url))
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .header("Content-Type", content_type)
        .send(&body[..])
        .expect("otlp request");
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_vec().unwrap_or_default())
}

#[test]
fn log_records_reach_their_parsers_and_the_rest_are_dead_letters() {
    let ch = ClickHouse::start();
    ch.migrate();
    let c = Collector::start(&ch, &[("CREDTRAIL_HTTP_AUTH_TOKENS", TOKEN)]);

    // Protobuf, the OTLP/HTTP default.
    let req: ExportLogsServiceRequest = serde_json::from_value(request()).unwrap();
    let (status, body) = post(&c, req.encode_to_vec(), "application/x-protobuf");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer = ExportLogsServiceResponse::decode(&body[..]).unwrap();
    let partial = answer.partial_success.expect("one record rejected");
    assert_eq!(partial.rejected_log_records, 1, "{}", partial.error_message);
    assert!(
        partial.error_message.contains("unknown_format"),
        "{}",
        partial.error_message
    );

    let by_source =
        ch.query("SELECT source, count() FROM events FINAL GROUP BY source ORDER BY source");
    assert_eq!(
        by_source,
        "aws_cloudtrail\t1\nentra_signin\t1\ngcp_audit\t1\nvault_audit\t1\n"
    );
    let gcp = ch.query("SELECT subject, target_account FROM events WHERE source = 'gcp_audit'");
    assert_eq!(
        gcp,
        "organization:acme:project:Default Project:workspace:network:run_phase:apply\t123456789012\n",
        "the key-value body is the entry, field for field"
    );
    let dead =
        ch.query("SELECT origin, error_kind, position(raw, 'healthz') > 0 FROM dead_letters");
    assert_eq!(dead, "otlp:5\tunknown_format\t1\n");

    // The same request as OTLP/JSON: every record is a duplicate, the reject is rejected again.
    let (status, body) = post(&c, request().to_string().into_bytes(), "application/json");
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"],
        json!(1),
        "{answer}"
    );
    assert_eq!(
        ch.count("SELECT count() FROM events"),
        4,
        "no event stored twice"
    );

    // A body that is not OTLP is the sender's error.
    let (status, _) = post(&c, b"\xff\x00garbage".to_vec(), "application/x-protobuf");
    assert_eq!(status, 400);
    let (status, _) = post(&c, b"{\"resourceLogs\": 5}".to_vec(), "application/json");
    assert_eq!(status, 400);
}
