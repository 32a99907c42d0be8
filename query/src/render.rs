//! Output formats shared by every query: an aligned table for people, JSON (an array of objects
//! whose fields are the stable, documented names) and CSV for spreadsheets.
//!
//! Every cell comes from logs that strangers write. In a table each one goes through
//! [`visible`], so a user agent cannot clear the analyst's screen, retitle the window, plant a
//! hyperlink or forge a row; in CSV through [`spreadsheet_cell`] as well, so a cell cannot run
//! as a formula. JSON escapes by itself.

use crate::QueryError;
use serde::Serialize;
use std::borrow::Cow;

/// Characters that move the cursor, change the terminal or reorder and hide text: C0 and C1
/// controls (ESC starts every terminal sequence), bidirectional overrides and isolates, and
/// zero-width characters.
fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Text safe to print: every hidden character shown as an escape: `\x1b` for C0 controls,
/// `\u202e` (JSON's own escape, so JSON output stays valid) for the rest.
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if !is_hidden(c) => out.push(c),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{:04x}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// Output for a terminal, in any format: every hidden character escaped but the line breaks.
/// Table and CSV cells are already [`visible`] (their newlines escaped), so the lines left are
/// the report's own; in JSON, only characters serde_json leaves raw can be hidden (DEL, C1
/// controls, bidi and zero-width), and their `\uXXXX` escapes keep it valid JSON.
pub fn terminal(text: &str) -> Cow<'_, str> {
    if !text.chars().any(|c| c != '\n' && is_hidden(c)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.split('\n')
            .map(|line| visible(line).into_owned())
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

/// A CSV cell a spreadsheet shows as text: visible, and one that would start a formula (`=`,
/// `+`, `-`, `@`, a tab or a carriage return) is prefixed with `'`, as OWASP advises.
pub fn spreadsheet_cell(text: &str) -> Cow<'_, str> {
    let shown = visible(text);
    if shown.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{shown}"))
    } else {
        shown
    }
}

/// CSV of a header row and string rows, every cell made [`spreadsheet_cell`].
pub fn csv<'a>(
    headers: impl IntoIterator<Item = &'a str>,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<String, QueryError> {
    let out = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(
        headers
            .into_iter()
            .map(spreadsheet_cell)
            .map(|c| c.into_owned()),
    )
    .map_err(|e| out(&e))?;
    for row in rows {
        w.write_record(row.iter().map(|c| spreadsheet_cell(c).into_owned()))
            .map_err(|e| out(&e))?;
    }
    let bytes = w.into_inner().map_err(|e| out(&e))?;
    String::from_utf8(bytes).map_err(|e| out(&e))
}

/// An aligned table, every cell made [`visible`].
pub fn table<'a>(
    headers: impl IntoIterator<Item = &'a str>,
    rows: impl IntoIterator<Item = Vec<String>>,
) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(headers.into_iter().map(|h| visible(h).into_owned()));
    for row in rows {
        t.add_row(row.iter().map(|c| visible(c).into_owned()));
    }
    format!("{t}\n")
}

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
        Format::Csv => csv_of_fields(rows),
        Format::Table => Ok(table(
            T::headers().iter().copied(),
            rows.iter().map(Tabular::cells),
        )),
    }
}

/// A row's JSON fields in their declared order (serde_json's own map sorts its keys).
struct Fields(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Fields {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Fields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a row object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Fields, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// One CSV cell of a JSON value: text as is, lists joined with `;`, nothing for null.
fn field_cell(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(field_cell).collect::<Vec<_>>().join(";")
        }
        other => other.to_string(),
    }
}

/// CSV with the JSON output's field names as columns (the documented, stable names), lists
/// (evidence) as `;`-joined cells: the serde CSV writer cannot write lists at all.
fn csv_of_fields<T: Serialize>(rows: &[T]) -> Result<String, QueryError> {
    let out = |e: &dyn std::fmt::Display| QueryError::Output(e.to_string());
    if rows.is_empty() {
        return Ok(String::new());
    }
    let mut names: Vec<String> = Vec::new();
    let mut cells: Vec<Vec<String>> = Vec::with_capacity(rows.len());
    for row in rows {
        let text = serde_json::to_string(row).map_err(|e| out(&e))?;
        let Fields(fields) = serde_json::from_str(&text).map_err(|e| out(&e))?;
        if names.is_empty() {
            names = fields.iter().map(|(k, _)| k.clone()).collect();
        }
        cells.push(fields.iter().map(|(_, v)| field_cell(v)).collect());
    }
    csv(names.iter().map(String::as_str), cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_and_hidden_text_are_shown_not_obeyed() {
        // Clear screen, retitle the window, an OSC 8 hyperlink, a forged row, a bidi override.
        let hostile =
            "aws-cli\x1b[2J\x1b]0;pwned\x07\x1b]8;;http://x\x1b\\\\link\n│ fake │\u{202e}txt";
        let shown = visible(hostile);
        assert!(!shown.chars().any(is_hidden), "{shown}");
        assert!(
            shown.contains("\\x1b[2J") && shown.contains("\\x0a") && shown.contains("\\u202e"),
            "{shown}"
        );
        assert!(matches!(
            visible("terraform-provider-aws/5.70.0"),
            Cow::Borrowed(_)
        ));
        let t = table(["agent"], [vec![hostile.to_owned()]]);
        assert!(!t.contains('\x1b') && !t.contains('\u{202e}'), "{t}");
    }

    #[test]
    fn terminal_output_stays_valid_json() {
        let json = serde_json::to_string(&["a\u{202e}b\u{7f}c\u{1b}d"]).unwrap();
        let shown = terminal(&json);
        let back: Vec<String> = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, ["a\u{202e}b\u{7f}c\u{1b}d"]);
        assert!(
            !shown.contains('\u{202e}') && !shown.contains('\u{7f}'),
            "{shown}"
        );
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        let out = csv(
            ["a", "b"],
            [
                vec!["=HYPERLINK(\"http://x\")".into(), "-2+3".into()],
                vec!["@SUM(A1)".into(), "plain".into()],
            ],
        )
        .unwrap();
        let mut r = ::csv::Reader::from_reader(out.as_bytes());
        let rows: Vec<Vec<String>> = r
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        assert_eq!(
            rows,
            vec![
                vec!["'=HYPERLINK(\"http://x\")", "'-2+3"],
                vec!["'@SUM(A1)", "plain"]
            ]
        );
    }
}
