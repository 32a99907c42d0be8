"""Runs credtrail's modern DDL and shipped SQL on modern ClickHouse (chdb, in-process).

Called by tests/modern_clickhouse.rs with one argument: a JSON spec
  {"ddl": [statements], "session": dir,
   "tables": [{"name", "file"}], "queries": [{"name", "sql"}],
   "cases": [{"name", "tables": [...], "queries": [...]}]}
The data files are RowBinary exported from the 18.16 server: loading them here proves that the
two generations' schemas share one RowBinary encoding. The top-level tables and queries use the
database `credtrail`; each case gets a database of its own with the same DDL. Prints
{"version", "counts", "results", "cases": {name: results}} as JSON, each query's rows in
JSONEachRow form.
"""
import json
import sys

from chdb import session


def load(s, database, ddl, tables, queries):
    """Creates `database` with the DDL, loads the tables, runs the queries."""
    s.query(f"CREATE DATABASE IF NOT EXISTS {database}")
    s.query(f"USE {database}")
    for stmt in ddl:
        s.query(stmt)
    counts = {}
    for t in tables:
        desc = s.query(f"DESCRIBE TABLE {t['name']}", "JSONEachRow").bytes().decode()
        cols = [json.loads(line) for line in desc.splitlines() if line.strip()]
        structure = ", ".join(f"{c['name']} {c['type']}" for c in cols).replace("'", "\\'")
        s.query(f"INSERT INTO {t['name']} SELECT * FROM file('{t['file']}', 'RowBinary', '{structure}')")
        counts[t["name"]] = int(s.query(f"SELECT count() FROM {t['name']}", "TSV").bytes().decode())
    results = {}
    for q in queries:
        out = s.query(q["sql"], "JSONEachRow").bytes().decode()
        results[q["name"]] = [json.loads(line) for line in out.splitlines() if line.strip()]
    return counts, results


def main():
    spec = json.load(open(sys.argv[1]))
    s = session.Session(spec["session"])
    # 18.16 is asked for the same: 64-bit integers as JSON numbers.
    s.query("SET output_format_json_quote_64bit_integers = 0")
    counts, results = load(s, "credtrail", spec["ddl"], spec.get("tables", []), spec.get("queries", []))
    cases = {}
    for i, case in enumerate(spec.get("cases", [])):
        _, cases[case["name"]] = load(s, f"case_{i}", spec["ddl"], case["tables"], case["queries"])
    version = s.query("SELECT version()", "TSV").bytes().decode().strip()
    print(json.dumps({"version": version, "counts": counts, "results": results, "cases": cases}))


if __name__ == "__main__":
    main()
