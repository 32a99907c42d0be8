#!/usr/bin/env bash
# The main job end to end on this machine: a private ClickHouse (Debian's, installed if missing),
# credtrail built and migrated, the alias inventory imported (tests/inventory: saved HCP Terraform
# API responses), the collector started, the bundled sample events of every format (tests/fixtures:
# CloudTrail, GCP, Entra, Vault, audit trails, issuance) posted through the HTTP collector with
# formats detected, a token captured by `credtrail emit`, each exchange's alias attribution, and one
# run's timeline read back from ClickHouse.
#
# CLICKHOUSE_URL=http://host:8123 uses an existing server instead of starting one; the demo
# (re)creates its own database there, `credtrail_demo`.
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
# Its own database, recreated each run, so that the demo shows the same thing every time.
export CREDTRAIL_CLICKHOUSE_DATABASE=credtrail_demo
curl -fsS "$ch_url/" --data-binary "DROP DATABASE IF EXISTS credtrail_demo" >/dev/null
echo "ClickHouse at $ch_url, database credtrail_demo"

say "building credtrail"
cargo build --release --quiet
bin=target/release/credtrail

say "credtrail migrate"
$bin migrate

say "credtrail inventory import (workspaces, variables, variable sets as the HCP Terraform API returns them)"
$bin inventory import --valid-from 2024-01-01T00:00:00Z tests/inventory/*.json
$bin inventory show --at 2024-07-09T00:00:00Z

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
say "posting the sample events of every format (detected per record)"
for f in tests/fixtures/*/*; do post auto "$f"; done
say "posting them again (a client retry): nothing is stored twice"
for f in tests/fixtures/cloudtrail/*; do post auto "$f"; done

say "credtrail emit: an agent hook captures the run's token (claims and fingerprint only)"
b64() { python3 -c 'import base64,sys; print(base64.urlsafe_b64encode(sys.argv[1].encode()).decode().rstrip("="))' "$1"; }
now=$(date +%s)
claims='{"jti":"demo-'$now'","iss":"https://app.terraform.io","aud":"aws.workload.identity","sub":"organization:acme:project:Default Project:workspace:network-prod:run_phase:plan","iat":'$now',"exp":'$((now + 300))',"terraform_run_id":"run-DemoEmit000001","terraform_workspace_id":"ws-NetProd0000001","terraform_run_phase":"plan"}'
demo_token="$(b64 '{"alg":"RS256","typ":"JWT"}').$(b64 "$claims").$(b64 signature)"
TFC_AWS_PROVIDER_AUTH=true TFC_AWS_RUN_ROLE_ARN=arn:aws:iam::111122223333:role/tfc-runner \
  TFC_WORKLOAD_IDENTITY_TOKEN=$demo_token CREDTRAIL_EMIT_AUTH_TOKEN=$token \
  $bin emit --collector "$collector" --spool "$(mktemp -d)/spool.ndjson"

say "alias attribution of every exchange (alias_match says how, or why there is none)"
curl -sS "$ch_url/?database=credtrail_demo" --data-binary "SELECT provider, workspace_name AS workspace, run_phase AS phase, outcome, target_principal AS principal, multiIf(alias_match NOT IN ('matched', 'principal', 'audience'), '-', alias_tag = '', '(default)', alias_tag) AS alias, alias_match FROM events FINAL WHERE event_kind IN ('exchange', 'session_renewal', 'session_end') ORDER BY provider, event_time FORMAT PrettyCompactNoEscapes"

say "credtrail detect over the sample day, then credtrail findings"
$bin detect --since 2024-07-09T00:00:00Z --until 2024-07-10T00:00:00Z --no-settle
$bin findings --since 2024-07-01T00:00:00Z

say "credtrail query run run-LMCK4SSiBfR6Y6rb"
$bin query run run-LMCK4SSiBfR6Y6rb

say "done"
echo "collector metrics were at $collector/metrics (stopped with this script)"
echo "events are in ClickHouse at $ch_url, database credtrail_demo; try:"
echo "  curl -s '$ch_url/?database=credtrail_demo' --data-binary 'SELECT outcome, error_code, count() FROM events FINAL GROUP BY outcome, error_code'"
echo "stop the server with: deploy/clickhouse/local.sh stop"
