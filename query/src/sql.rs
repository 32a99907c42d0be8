//! `query sql`: ad hoc read-only SQL for forensics.
//!
//! The server enforces it: every statement runs with `readonly = 1` (no writes, no DDL, no
//! `SET`, no `SETTINGS` clause that lifts the limits), a time limit and a result row limit. A
//! refused write comes back as [`QueryError::Refused`], a clear error, not a ClickHouse dump.

use crate::QueryError;
use credtrail_ingest::store::Store;
use std::time::Duration;

/// ClickHouse's error code for "… in readonly mode".
const READONLY: &str = "Code: 164";
/// "Limit for result exceeded".
const TOO_MANY_ROWS: &str = "Code: 396";
/// "Timeout exceeded".
const TIMEOUT: &str = "Code: 159";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: u64,
    pub timeout: Duration,
}

/// Runs `sql` read-only, returning its rows as JSON objects (ClickHouse's `JSONEachRow`).
pub async fn run(
    store: &Store,
    sql: &str,
    limits: Limits,
) -> Result<Vec<serde_json::Value>, QueryError> {
    let statement = sql.trim().trim_end_matches(';').trim();
    if statement.is_empty() {
        return Err(QueryError::Refused("empty statement".into()));
    }
    let client = store
        .client()
        .clone()
        .with_setting("readonly", "1")
        .with_setting(
            "max_execution_time",
            limits.timeout.as_secs().max(1).to_string(),
        )
        .with_setting("max_result_rows", limits.max_rows.to_string())
        .with_setting("result_overflow_mode", "throw")
        .with_setting("output_format_json_quote_64bit_integers", "0");
    // `?` is the client's bind marker; an ad hoc statement has no binds, so it is escaped.
    let text = statement.replace('?', "??");
    let mut cursor = client
        .query(&text)
        .fetch_bytes("JSONEachRow")
        .map_err(|e| classify(e, limits))?;
    let bytes = cursor.collect().await.map_err(|e| classify(e, limits))?;
    let mut rows = Vec::new();
    for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        rows.push(serde_json::from_slice(line).map_err(|e| QueryError::Output(e.to_string()))?);
    }
    Ok(rows)
}

fn classify(e: clickhouse::error::Error, limits: Limits) -> QueryError {
    let text = e.to_string();
    if text.contains(READONLY) {
        QueryError::Refused(format!(
            "only reads are allowed (SELECT, SHOW, DESCRIBE, EXISTS); the server refused: {}",
            first_line(&text)
        ))
    } else if text.contains(TOO_MANY_ROWS) {
        QueryError::Refused(format!(
            "the result has more than {} rows: add a LIMIT or raise --limit",
            limits.max_rows
        ))
    } else if text.contains(TIMEOUT) {
        QueryError::Refused(format!(
            "the statement ran longer than {} s: narrow it or raise --timeout",
            limits.timeout.as_secs()
        ))
    } else {
        QueryError::ClickHouse(e)
    }
}

fn first_line(text: &str) -> &str {
    let t = text.lines().next().unwrap_or(text);
    t.split(", e.what()").next().unwrap_or(t)
}

/// Prints ad hoc rows: JSON as they came, CSV and table with the first row's columns.
pub fn print(
    rows: &[serde_json::Value],
    format: crate::render::Format,
) -> Result<String, QueryError> {
    use crate::render::Format;
    let columns: Vec<String> = rows
        .first()
        .and_then(|r| r.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    let cell = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match format {
        Format::Json => crate::render::json(&rows),
        _ if rows.is_empty() => Ok(if format == Format::Table {
            "no rows\n".into()
        } else {
            String::new()
        }),
        Format::Csv => crate::render::csv(
            columns.iter().map(String::as_str),
            rows.iter()
                .map(|r| columns.iter().map(|c| cell(&r[c])).collect()),
        ),
        Format::Table => {
            let t = crate::render::table(
                columns.iter().map(String::as_str),
                rows.iter()
                    .map(|r| columns.iter().map(|c| cell(&r[c])).collect()),
            );
            Ok(format!("{t}{} rows\n", rows.len()))
        }
    }
}
