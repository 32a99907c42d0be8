//! OTLP logs (`ExportLogsServiceRequest`, protobuf or OTLP/JSON) into source records.
//!
//! An OpenTelemetry pipeline (a collector's filelog, Event Hub or Pub/Sub receiver) delivers each
//! audit record as one log record: the record's JSON in the body as a string, or parsed into a
//! key-value body, or parsed into the attributes. Each log record yields one [`Piece`]: the first
//! candidate, in the order body, JSON-looking string attributes, all attributes as one object, that
//! a known format recognises (or the first candidate at all when the sender names the format in
//! the `credtrail.source` attribute). A log record with no such candidate is a broken piece, so it
//! becomes a dead letter with its reason, and never hides its neighbours.

use super::framing::{Broken, Piece, RawRecord};
use super::{ErrorKind, Rejection, detect_source};
use crate::model::Source;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde_json::{Map, Value};

/// The attribute a sender may set to name the record's format (`cloudtrail`, `gcp`, ...).
pub const SOURCE_ATTRIBUTE: &str = "credtrail.source";

/// How the request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From the `Content-Type` header; OTLP/HTTP defaults to protobuf.
    pub fn from_content_type(content_type: &str) -> Encoding {
        if content_type.starts_with("application/json") {
            Encoding::Json
        } else {
            Encoding::Protobuf
        }
    }
}

/// One log record's piece, and the format its sender named, if any.
#[derive(Debug)]
pub struct LogPiece {
    pub piece: Piece,
    pub named: Option<Source>,
}

/// Decodes a request; an undecodable body is the sender's error (HTTP 400), not a dead letter.
pub fn decode(body: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, String> {
    match encoding {
        Encoding::Protobuf => ExportLogsServiceRequest::decode(body)
            .map_err(|e| format!("not an OTLP protobuf ExportLogsServiceRequest: {e}")),
        Encoding::Json => serde_json::from_slice(body)
            .map_err(|e| format!("not an OTLP/JSON ExportLogsServiceRequest: {e}")),
    }
}

/// How many log records a request holds, counted without decoding it: an OTLP request of a
/// million empty records is a few megabytes on the wire and a gigabyte once decoded, so the
/// collector counts first and refuses past its cap. Protobuf is walked by its wire format
/// (`resource_logs` = 1, `scope_logs` = 2, `log_records` = 2); JSON is parsed with every record
/// skipped, not built.
pub fn count_log_records(body: &[u8], encoding: Encoding) -> Result<u64, String> {
    match encoding {
        Encoding::Json => {
            let request: counting::Request = serde_json::from_slice(body)
                .map_err(|e| format!("not an OTLP/JSON ExportLogsServiceRequest: {e}"))?;
            Ok(request
                .resource_logs
                .iter()
                .flat_map(|r| &r.scope_logs)
                .map(|s| s.log_records.0)
                .sum())
        }
        Encoding::Protobuf => {
            let mut total = 0;
            for resource in fields(body, 1)? {
                for scope in fields(resource, 2)? {
                    total += fields(scope, 2)?.len() as u64;
                }
            }
            Ok(total)
        }
    }
}

/// The OTLP/JSON request's shape down to its log records, which are counted and skipped.
mod counting {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub struct Request {
        #[serde(default, rename = "resourceLogs", alias = "resource_logs")]
        pub resource_logs: Vec<Resource>,
    }

    #[derive(Deserialize)]
    pub struct Resource {
        #[serde(default, rename = "scopeLogs", alias = "scope_logs")]
        pub scope_logs: Vec<Scope>,
    }

    #[derive(Deserialize)]
    pub struct Scope {
        #[serde(default, rename = "logRecords", alias = "log_records")]
        pub log_records: Count,
    }

    /// The length of a JSON array whose elements are skipped.
    #[derive(Default)]
    pub struct Count(pub u64);

    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Count;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an array of log records")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(
                    self,
                    mut seq: A,
                ) -> Result<Count, A::Error> {
                    let mut n = 0;
                    while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(Count(n))
                }
            }
            d.deserialize_seq(Visitor)
        }
    }
}

/// The length-delimited values of field `wanted` in one protobuf message, others skipped.
fn fields(mut buf: &[u8], wanted: u32) -> Result<Vec<&[u8]>, String> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let bad = |e: prost::DecodeError| format!("not an OTLP protobuf ExportLogsServiceRequest: {e}");
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (tag, wire) = decode_key(&mut buf).map_err(bad)?;
        let skip = match wire {
            WireType::Varint => {
                decode_varint(&mut buf).map_err(bad)?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                let len = usize::try_from(decode_varint(&mut buf).map_err(bad)?)
                    .map_err(|_| "length out of range".to_owned())?;
                if len > buf.len() {
                    return Err("not an OTLP protobuf ExportLogsServiceRequest: truncated".into());
                }
                if tag == wanted {
                    out.push(&buf[..len]);
                }
                len
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err("not an OTLP protobuf ExportLogsServiceRequest: groups".into());
            }
        };
        if skip > buf.len() {
            return Err("not an OTLP protobuf ExportLogsServiceRequest: truncated".into());
        }
        buf = &buf[skip..];
    }
    Ok(out)
}

/// Every log record of a request, in order, as pieces numbered from 1.
pub fn pieces(request: &ExportLogsServiceRequest, max_record_bytes: usize) -> Vec<LogPiece> {
    let records = request
        .resource_logs
        .iter()
        .flat_map(|r| &r.scope_logs)
        .flat_map(|s| &s.log_records);
    records
        .enumerate()
        .map(|(i, record)| {
            let line = i as u64 + 1;
            let named = record
                .attributes
                .iter()
                .find(|kv| kv.key == SOURCE_ATTRIBUTE)
                .and_then(|kv| as_str(kv.value.as_ref()))
                .and_then(Source::parse);
            let candidates = candidates(record.body.as_ref(), &record.attributes);
            let chosen = match named {
                Some(_) => candidates.first(),
                None => candidates.iter().find(|c| detect_source(c).is_some()),
            };
            let piece = match chosen {
                Some(bytes) if bytes.len() > max_record_bytes => Piece::Broken(Broken {
                    line,
                    element: None,
                    rejection: Rejection::new(
                        ErrorKind::TooLarge,
                        format!(
                            "log record is {} bytes, over the {max_record_bytes} byte limit",
                            bytes.len()
                        ),
                    ),
                    bytes: bytes[..max_record_bytes].to_vec(),
                    size: bytes.len() as u64,
                }),
                Some(bytes) => Piece::Record(RawRecord {
                    line,
                    element: None,
                    bytes: bytes.clone(),
                }),
                None => {
                    let shown = describe(record.body.as_ref(), &record.attributes);
                    let size = shown.len() as u64;
                    Piece::Broken(Broken {
                        line,
                        element: None,
                        rejection: Rejection::new(
                            ErrorKind::UnknownFormat,
                            "OTLP log record carries no known format in its body or attributes \
                             (set `credtrail.source` to name one)",
                        ),
                        bytes: shown[..shown.len().min(max_record_bytes)].to_vec(),
                        size,
                    })
                }
            };
            LogPiece { piece, named }
        })
        .collect()
}

/// The byte strings that may be a source record, most likely first.
fn candidates(body: Option<&AnyValue>, attributes: &[KeyValue]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    match body.and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => out.push(s.as_bytes().to_vec()),
        Some(any_value::Value::BytesValue(b)) => out.push(b.clone()),
        Some(v @ any_value::Value::KvlistValue(_)) => {
            out.push(serde_json::to_vec(&to_json(v)).expect("JSON values serialize"));
        }
        _ => {}
    }
    let own = |kv: &&KeyValue| !kv.key.starts_with("credtrail.");
    for kv in attributes.iter().filter(own) {
        if let Some(s) = as_str(kv.value.as_ref())
            && s.trim_start().starts_with('{')
        {
            out.push(s.as_bytes().to_vec());
        }
    }
    let object: Map<String, Value> = attributes
        .iter()
        .filter(own)
        .filter_map(|kv| Some((kv.key.clone(), to_json(kv.value.as_ref()?.value.as_ref()?))))
        .collect();
    if !object.is_empty() {
        out.push(serde_json::to_vec(&Value::Object(object)).expect("JSON values serialize"));
    }
    out
}

fn as_str(value: Option<&AnyValue>) -> Option<&str> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// An OTLP value as the JSON it was parsed from.
fn to_json(value: &any_value::Value) -> Value {
    use any_value::Value as V;
    match value {
        V::StringValue(s) => Value::String(s.clone()),
        V::BoolValue(b) => Value::Bool(*b),
        V::IntValue(i) => Value::from(*i),
        V::DoubleValue(d) => Value::from(*d),
        V::ArrayValue(a) => Value::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(Value::Null, to_json))
                .collect(),
        ),
        V::KvlistValue(kv) => Value::Object(object(&kv.values)),
        V::BytesValue(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

/// A key-value list as a JSON object (an empty value is `null`).
fn object(values: &[KeyValue]) -> Map<String, Value> {
    values
        .iter()
        .map(|kv| {
            let v = kv
                .value
                .as_ref()
                .and_then(|v| v.value.as_ref())
                .map_or(Value::Null, to_json);
            (kv.key.clone(), v)
        })
        .collect()
}

/// What a dead letter keeps of an unrecognised log record: its body and attributes as JSON.
fn describe(body: Option<&AnyValue>, attributes: &[KeyValue]) -> Vec<u8> {
    let body = body
        .and_then(|b| b.value.as_ref())
        .map_or(Value::Null, to_json);
    let attributes = object(attributes);
    serde_json::to_vec(&serde_json::json!({ "body": body, "attributes": attributes }))
        .expect("JSON values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ExportLogsServiceRequest {
        decode(json.as_bytes(), Encoding::Json).unwrap()
    }

    #[test]
    fn body_string_kvlist_and_attributes_are_found() {
        let ct = r#"{\"eventSource\":\"sts.amazonaws.com\",\"eventName\":\"AssumeRoleWithWebIdentity\"}"#;
        let req = request(&format!(
            r#"{{"resourceLogs":[{{"scopeLogs":[{{"logRecords":[
                {{"body":{{"stringValue":"{ct}"}}}},
                {{"body":{{"kvlistValue":{{"values":[{{"key":"protoPayload","value":{{"kvlistValue":{{"values":[{{"key":"methodName","value":{{"stringValue":"GenerateAccessToken"}}}}]}}}}}}]}}}}}},
                {{"body":{{"stringValue":"plain text"}},"attributes":[{{"key":"log.original","value":{{"stringValue":"{ct}"}}}}]}},
                {{"body":{{"stringValue":"nothing here"}}}},
                {{"body":{{"stringValue":"x"}},"attributes":[{{"key":"credtrail.source","value":{{"stringValue":"vault"}}}}]}}
            ]}}]}}]}}"#
        ));
        let pieces = pieces(&req, 1 << 20);
        assert_eq!(pieces.len(), 5);
        let record = |i: usize| match &pieces[i].piece {
            Piece::Record(r) => String::from_utf8(r.bytes.clone()).unwrap(),
            Piece::Broken(b) => panic!("piece {i} broken: {}", b.rejection),
        };
        assert!(record(0).contains("AssumeRoleWithWebIdentity"));
        assert_eq!(
            record(1),
            r#"{"protoPayload":{"methodName":"GenerateAccessToken"}}"#
        );
        assert!(record(2).contains("eventSource"));
        match &pieces[3].piece {
            Piece::Broken(b) => assert_eq!(b.rejection.kind, ErrorKind::UnknownFormat),
            Piece::Record(_) => panic!("plain text is no format"),
        }
        assert_eq!(pieces[4].named, Some(Source::VaultAudit));
        assert_eq!(record(4), "x");
    }

    #[test]
    fn protobuf_round_trips() {
        let req = request(
            r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"{}"}}]}]}]}"#,
        );
        let bytes = req.encode_to_vec();
        assert_eq!(decode(&bytes, Encoding::Protobuf).unwrap(), req);
        assert!(decode(b"\xff\xff\xff", Encoding::Protobuf).is_err());
    }

    #[test]
    fn records_are_counted_on_the_wire_before_decoding() {
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        let request = ExportLogsServiceRequest {
            resource_logs: vec![
                ResourceLogs {
                    scope_logs: vec![
                        ScopeLogs {
                            log_records: vec![LogRecord::default(); 3],
                            ..Default::default()
                        },
                        ScopeLogs {
                            log_records: vec![LogRecord::default(); 2],
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                };
                2
            ],
        };
        let bytes = prost::Message::encode_to_vec(&request);
        assert_eq!(count_log_records(&bytes, Encoding::Protobuf), Ok(10));
        assert!(count_log_records(&bytes[..bytes.len() - 1], Encoding::Protobuf).is_err());
        let json = serde_json::to_vec(&request).unwrap();
        assert_eq!(count_log_records(&json, Encoding::Json), Ok(10));
    }
}
