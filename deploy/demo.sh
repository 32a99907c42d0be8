#!/usr/bin/env bash
# The main job end to end on this machine: a private ClickHouse (Debian's, installed if missing),
# credtrail built and migrated, the collector started, the bundled sample events (tests/fixtures:
# CloudTrail exchanges incl. every failure code and an S3 delivery, HCP Terraform issuance) posted
# through the HTTP collector, and one run's timeline read back from ClickHouse.
#
# CLICKHOUSE_URL=http://host:8123 uses an existing server instead of starting one.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }

if [ -n "${CLICKHOUSE_URL:-}" ]; then
  ch_url=$CLICKHOUSE_URL
else
  say "starting a private ClickHouse (deploy/clickhouse/local.sh)"
  deploy/clickhouse/local.sh install
  ch_url=$(deploy/clickhouse/local.sh start)
fi
export CREDTRAIL_CLICKHOUSE_URL=$ch_url
echo "ClickHouse at $ch_url"

say "building credtrail"
cargo build --release --quiet
bin=target/release/credtrail

say "credtrail migrate"
$bin migrate

say "credtrail ingest (HTTP collector)"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
collector=http://127.0.0.1:$port
CREDTRAIL_HTTP_AUTH_TOKENS=$token CREDTRAIL_HTTP_LISTEN=127.0.0.1:$port CREDTRAIL_LOG=warn $bin ingest &
collector_pid=$!
trap 'kill $collector_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -fsS "$collector/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$collector/readyz"

post() { # source file
  printf '%-80s ' "$2"
  curl -sS -H "Authorization: Bearer $token" --data-binary "@$2" "$collector/v1/ingest/$1" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin); print("stored %(stored)s, duplicates %(duplicates)s, ignored %(ignored)s, rejected %(rejected)s" % r)'
}
say "posting the sample events"
for f in tests/fixtures/issuance/*; do post issuance "$f"; done
for f in tests/fixtures/cloudtrail/*; do post cloudtrail "$f"; done
say "posting them again (a client retry): nothing is stored twice"
for f in tests/fixtures/cloudtrail/*; do post cloudtrail "$f"; done

say "credtrail query run run-LMCK4SSiBfR6Y6rb"
$bin query run run-LMCK4SSiBfR6Y6rb

say "done"
echo "collector metrics were at $collector/metrics (stopped with this script)"
echo "events are in ClickHouse at $ch_url, database credtrail; try:"
echo "  curl -s '$ch_url/?database=credtrail' --data-binary 'SELECT outcome, error_code, count() FROM events FINAL GROUP BY outcome, error_code'"
echo "stop the server with: deploy/clickhouse/local.sh stop"
