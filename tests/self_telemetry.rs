//! credtrail observing itself over OTLP: `credtrail serve` with `telemetry.otlp_endpoint` set
//! exports its `tracing` spans (sink batches, ClickHouse inserts, dedup lookups, rule
//! evaluations, API requests) and its `/metrics` over OTLP/HTTP. A receiver in this test
//! accepts the protobuf requests like an OpenTelemetry collector and decodes them; without the
//! setting nothing is sent.

mod support;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use prost::Message;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{ClickHouse, Collector, fixtures};

/// Everything the receiver got: (path, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP receiver on a free port: answers every POST 200 and keeps its body.
fn receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let keep = got.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let keep = keep.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut length = 0usize;
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    keep.lock().unwrap().push((path, body));
                    let _ = conn.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
                    );
                }
            });
        }
    });
    (url, got)
}

fn span_names(got: &Received) -> BTreeSet<String> {
    got.lock()
        .unwrap()
        .iter()
        .filter(|(p, _)| p == "/v1/traces")
        .flat_map(|(_, b)| {
            let req = ExportTraceServiceRequest::decode(&b[..]).unwrap();
            req.resource_spans
                .into_iter()
                .flat_map(|r| r.scope_spans)
                .flat_map(|s| s.spans)
                .map(|s| s.name)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The latest exported value of counter `name` summed over its series.
fn counter(got: &Received, name: &str) -> Option<f64> {
    let got = got.lock().unwrap();
    let mut latest = None;
    for (_, b) in got.iter().filter(|(p, _)| p == "/v1/metrics") {
        let req = ExportMetricsServiceRequest::decode(&b[..]).unwrap();
        for m in req
            .resource_metrics
            .iter()
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name)
        {
            if let Some(Data::Sum(sum)) = &m.data {
                latest = Some(
                    sum.data_points
                        .iter()
                        .map(|p| match p.value {
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v)) => v,
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => v as f64,
                            None => 0.0,
                        })
                        .sum(),
                );
            }
        }
    }
    latest
}

#[test]
fn serve_exports_its_spans_and_metrics_over_otlp() {
    let ch = ClickHouse::start();
    ch.migrate();
    let (url, got) = receiver();
    let serve = Collector::serve(
        &ch,
        &[
            ("CREDTRAIL_TELEMETRY_OTLP_ENDPOINT", url.as_str()),
            ("CREDTRAIL_TELEMETRY_METRICS_INTERVAL_SECS", "1"),
            ("CREDTRAIL_TELEMETRY_SERVICE_NAME", "credtrail-test"),
            ("CREDTRAIL_HTTP_AUTH_TOKENS", "writer"),
            ("CREDTRAIL_HTTP_API_TOKENS", "reader"),
            ("CREDTRAIL_DETECT_INTERVAL_SECS", "1"),
            ("CREDTRAIL_DETECT_FULL_INTERVAL_SECS", "2"),
            ("OTEL_BSP_SCHEDULE_DELAY", "500"),
        ],
    );
    let body = std::fs::read(fixtures().join("cloudtrail/run_success_plan.json")).unwrap();
    let (status, ack) = serve.post("cloudtrail", Some("writer"), &body, false);
    assert_eq!(status, 200, "{ack}");
    let stored = ack["stored"].as_u64().unwrap();
    assert!(stored > 0);
    let mut res = support::agent()
        .get(format!("{}/api/v1/runs/run-LMCK4SSiBfR6Y6rb", serve.url))
        .header("Authorization", "Bearer reader")
        .call()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let _ = res.body_mut().read_to_string();

    let want: BTreeSet<String> = [
        "sink.batch",
        "sink.dedup_lookup",
        "clickhouse.insert",
        "detect.rule",
        "api.run",
    ]
    .map(String::from)
    .into();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let names = span_names(&got);
        let metric = counter(&got, "credtrail_events_stored_total");
        if want.is_subset(&names) && metric == Some(stored as f64) {
            println!("spans received: {names:?}; credtrail_events_stored_total = {metric:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "spans {names:?} (want {want:?}), events stored {metric:?} (want {stored})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // The resource names the service; spans carry their attributes.
    let guard = got.lock().unwrap();
    let (_, first) = guard.iter().find(|(p, _)| p == "/v1/traces").unwrap();
    let req = ExportTraceServiceRequest::decode(&first[..]).unwrap();
    let resource = req.resource_spans[0].resource.as_ref().unwrap();
    assert!(
        resource
            .attributes
            .iter()
            .any(|a| a.key == "service.name" && format!("{:?}", a.value).contains("credtrail-test")),
        "{resource:?}"
    );
    drop(guard);
    assert!(serve.stop(), "serve stops cleanly with the exporters on");
}

#[test]
fn nothing_is_exported_unless_configured() {
    let ch = ClickHouse::start();
    ch.migrate();
    let (url, got) = receiver();
    // The receiver's address is known, but the setting is not given.
    let serve = Collector::serve(
        &ch,
        &[
            ("CREDTRAIL_HTTP_AUTH_TOKENS", "writer"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
        ],
    );
    let body = std::fs::read(fixtures().join("cloudtrail/run_success_plan.json")).unwrap();
    assert_eq!(
        serve.post("cloudtrail", Some("writer"), &body, false).0,
        200
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(serve.stop());
    assert!(got.lock().unwrap().is_empty(), "off by default");
}
