//! Output formats shared by every query: an aligned table for people, JSON (an array of objects
//! whose fields are the stable, documented names) and CSV for spreadsheets.

use crate::QueryError;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            _ => Err(format!("unknown format {s:?} (table, json, csv)")),
        }
    }
}

/// Unix seconds as RFC 3339 UTC, the time form of every JSON output.
pub fn rfc3339(unix: u32) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(i64::from(unix), 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// One value as pretty JSON with a closing newline (reports that are not a list of rows).
pub fn json<T: Serialize>(value: &T) -> Result<String, QueryError> {
    let mut s =
        serde_json::to_string_pretty(value).map_err(|e| QueryError::Output(e.to_string()))?;
    s.push('\n');
    Ok(s)
}

/// A row type that can be shown as a table.
pub trait Tabular: Serialize {
    fn headers() -> &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

pub fn render<T: Tabular>(rows: &[T], format: Format) -> Result<String, QueryError> {
    match format {
        Format::Json => json(&rows),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            for r in rows {
                w.serialize(r)
                    .map_err(|e| QueryError::Output(e.to_string()))?;
            }
            let bytes = w
                .into_inner()
                .map_err(|e| QueryError::Output(e.to_string()))?;
            String::from_utf8(bytes).map_err(|e| QueryError::Output(e.to_string()))
        }
        Format::Table => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            t.set_header(T::headers());
            for r in rows {
                t.add_row(r.cells());
            }
            Ok(format!("{t}\n"))
        }
    }
}
