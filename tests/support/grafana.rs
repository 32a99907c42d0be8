//! The Grafana dashboards as tests see them: every panel's query, and the official ClickHouse
//! plugin's macros and Grafana's `${var:sqlstring}` interpolation expanded the way the plugin
//! (grafana-clickhouse-datasource, pkg/macros) and Grafana do, so the SQL a dashboard sends can
//! be run on real servers.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One query of a dashboard: a panel target or a template variable.
#[derive(Debug, Clone)]
pub struct Query {
    pub dashboard: String,
    pub title: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    ClickHouse(String),
    Prometheus(String),
}

pub fn dashboard_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        super::walk(&super::repo_root().join("dashboards/grafana/dashboards"))
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
            .collect();
    files.sort();
    files
}

pub fn load(file: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// Every panel target of every dashboard.
pub fn panel_queries() -> Vec<Query> {
    let mut out = Vec::new();
    for file in dashboard_files() {
        let d = load(&file);
        let name = d["uid"].as_str().unwrap().to_owned();
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let kind = match t["datasource"]["type"].as_str().unwrap() {
                    "grafana-clickhouse-datasource" => {
                        Kind::ClickHouse(t["rawSql"].as_str().unwrap().to_owned())
                    }
                    "prometheus" => Kind::Prometheus(t["expr"].as_str().unwrap().to_owned()),
                    other => panic!("{name}: unknown data source {other}"),
                };
                out.push(Query {
                    dashboard: name.clone(),
                    title: format!("{} [{}]", p["title"].as_str().unwrap(), t["refId"]),
                    kind,
                });
            }
        }
    }
    out
}

/// The time range and interval a dashboard is asked for.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub from: i64,
    pub to: i64,
    pub interval_s: i64,
}

fn sql_string(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Expands the plugin's macros and the template variables (`vars`: name -> selected values; All
/// is every value the variable offers). Panics on anything left unexpanded.
pub fn expand(sql: &str, range: Range, vars: &BTreeMap<String, Vec<String>>) -> String {
    let mut s = sql.to_owned();
    let dt = |t: i64| format!("toDateTime({t})");
    while let Some(at) = s.find("$__timeFilter(") {
        let rest = &s[at + "$__timeFilter(".len()..];
        let close = rest.find(')').unwrap();
        let column = rest[..close].trim().to_owned();
        let filter = format!(
            "{column} >= {} AND {column} <= {}",
            dt(range.from),
            dt(range.to)
        );
        s.replace_range(at..at + "$__timeFilter(".len() + close + 1, &filter);
    }
    s = s
        .replace("$__fromTime", &dt(range.from))
        .replace("$__toTime", &dt(range.to))
        .replace("$__interval_s", &range.interval_s.to_string());
    for (name, values) in vars {
        let list = if values.is_empty() {
            // Grafana sends an empty multi-value as no value: nothing matches.
            "'__none__'".to_owned()
        } else {
            values
                .iter()
                .map(|v| sql_string(v))
                .collect::<Vec<_>>()
                .join(",")
        };
        s = s.replace(&format!("${{{name}:sqlstring}}"), &list);
    }
    assert!(!s.contains('$'), "unexpanded macro or variable in: {s}");
    s
}

/// The template variables of a dashboard in order: (name, a ClickHouse query or fixed values).
pub fn variables(dashboard: &Value) -> Vec<(String, Result<String, Vec<String>>)> {
    dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_owned();
            let source = match v["type"].as_str().unwrap() {
                "query" => Ok(v["query"].as_str().unwrap().to_owned()),
                "custom" => Err(v["query"]
                    .as_str()
                    .unwrap()
                    .split(',')
                    .map(|s| s.trim().to_owned())
                    .collect()),
                other => panic!("variable {name}: type {other}"),
            };
            (name, source)
        })
        .collect()
}

/// Every variable of `dashboard` set to All: each query variable's values come from running its
/// (expanded) query with `run`, in order, as Grafana does.
pub fn all_values(
    dashboard: &Value,
    range: Range,
    mut run: impl FnMut(&str) -> Vec<String>,
) -> BTreeMap<String, Vec<String>> {
    let mut vars = BTreeMap::new();
    for (name, source) in variables(dashboard) {
        let values = match source {
            Ok(sql) => run(&expand(&sql, range, &vars)),
            Err(fixed) => fixed,
        };
        vars.insert(name, values);
    }
    vars
}

/// The values a variable query offers on `ch` (its first column), as Grafana lists them.
pub fn variable_values(ch: &super::ClickHouse, sql: &str) -> Vec<String> {
    ch.query(&format!("{sql}\nFORMAT JSONEachRow"))
        .lines()
        .map(|l| {
            let row: Value = serde_json::from_str(l).unwrap();
            let first = row.as_object().unwrap().values().next().unwrap().clone();
            first.as_str().unwrap().to_owned()
        })
        .collect()
}
