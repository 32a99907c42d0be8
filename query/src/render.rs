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

/// A row type that can be shown as a table.
pub trait Tabular: Serialize {
    fn headers() -> &'static [&'static str];
    fn cells(&self) -> Vec<String>;
}

pub fn render<T: Tabular>(rows: &[T], format: Format) -> Result<String, QueryError> {
    match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(rows)
                .map_err(|e| QueryError::Output(e.to_string()))?;
            s.push('\n');
            Ok(s)
        }
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
