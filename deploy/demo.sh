#!/usr/bin/env bash
# The main job end to end on this machine: a private ClickHouse (Debian's, installed if missing),
# credtrail built and migrated, the alias inventory imported (tests/inventory: saved HCP Terraform
# API responses), `credtrail serve` started (collectors plus scheduled detection), the bundled
# sample events of every format (tests/fixtures) posted with formats detected, a token captured
# by `credtrail emit`, each exchange's alias attribution, then a generated scenario (two days of
# traffic of two organizations with one planted case per detection rule) sent to it, its findings
# as detection finds them, and Prometheus (Debian's) scraping credtrail with the shipped alert
# rules. credtrail serve and Prometheus keep running for you to explore; `deploy/demo.sh stop`
# stops them (and the private ClickHouse).
#
# CLICKHOUSE_URL=http://host:8123 uses an existing server instead of starting one; the demo
# (re)creates its own database there, `credtrail_demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }
state=.local/demo
stop_demo() {
  for f in "$state"/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}
if [ "${1:-}" = stop ]; then
  stop_demo
  deploy/clickhouse/local.sh stop || true
  exit 0
fi
stop_demo
mkdir -p "$state"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

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

say "credtrail serve (HTTP collector, scheduled detection, /metrics)"
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
reader=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
port=$(free_port)
collector=http://127.0.0.1:$port
# Detection every 2 s (full pass every 5 s) and absent evidence judged after 10 s, for the demo.
CREDTRAIL_HTTP_AUTH_TOKENS=$token CREDTRAIL_HTTP_API_TOKENS=$reader \
  CREDTRAIL_HTTP_LISTEN=127.0.0.1:$port CREDTRAIL_LOG=warn \
  CREDTRAIL_DETECT_INTERVAL_SECS=2 CREDTRAIL_DETECT_FULL_INTERVAL_SECS=5 \
  CREDTRAIL_DETECT_MAX_SETTLE_SECS=10 CREDTRAIL_ALIAS_REFRESH_SECS=2 \
  nohup $bin serve >"$state/serve.log" 2>&1 &
echo $! >"$state/serve.pid"
for _ in $(seq 1 100); do curl -fsS "$collector/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "$collector/readyz"

if ! command -v prometheus >/dev/null; then
  say "installing Debian's prometheus"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
fi
prom_port=$(free_port)
prom=http://127.0.0.1:$prom_port
printf '%s\n' \
  "global: {scrape_interval: 2s, evaluation_interval: 2s}" \
  "rule_files: [\"$PWD/deploy/prometheus/rules/credtrail.yml\"]" \
  "scrape_configs:" \
  "  - job_name: credtrail" \
  "    static_configs: [{targets: [\"127.0.0.1:$port\"]}]" >"$state/prometheus.yml"
nohup prometheus --config.file="$state/prometheus.yml" --storage.tsdb.path="$state/prometheus" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$state/prometheus.log" 2>&1 &
echo $! >"$state/prometheus.pid"
for _ in $(seq 1 100); do curl -fsS "$prom/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
echo "Prometheus at $prom, scraping credtrail with deploy/prometheus/rules/credtrail.yml"

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
claims='{"jti":"demo-'$now'","iss":"https://app.terraform.io","aud":"aws.workload.identity","sub":"organization:acme:project:Default Project:workspace:network-prod:run_phase:plan","iat":'$now',"exp":'$((now + 300))',"terraform_run_id":"run-DemoEmit000001","terraform_workspace_id":"ws-7Qd2CwLx8HXZPf3q","terraform_run_phase":"plan"}'
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

say "credtrail generate: two days of two organizations' traffic, one planted case per rule"
scenario=$state/scenario
rm -rf "$scenario"
$bin generate --out "$scenario" --seed 42 --orgs 2 --workspaces 20 --runs-per-day 6
# In force since the scenario's first day; serve reloads it within 2 s (alias.refresh_secs).
start=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["start"])' "$scenario/expected.json")
$bin inventory import --no-reattribute --valid-from "$start" "$scenario/inventory.toml"
$bin inventory trust --valid-from "$start" "$scenario"/trust_*.json
sleep 3
for f in issuance.ndjson cloudtrail.ndjson gcp.ndjson entra.json vault.log audit_trail.json; do
  post auto "$scenario/$f"
done

say "credtrail serve finds the planted cases as it goes (waiting for detection)"
since=$(date -u -d '3 days ago' +%Y-%m-%dT%H:%M:%SZ)
count_found() {
  $bin findings --since "$since" --format json --limit 100000 | python3 -c '
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
found = {(f["rule"], f["workspace"], f["alias"]) for f in json.load(sys.stdin)}
print(sum((c["rule"], c["workspace"], c["alias"]) in found for c in cases))' "$scenario/expected.json"
}
want=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["cases"]))' "$scenario/expected.json")
found=0
for _ in $(seq 1 60); do
  found=$(count_found)
  [ "$found" -ge "$want" ] && break
  sleep 2
done
echo "planted cases found: $found of $want"
$bin findings --since "$since" --severity high

say "forensics: the timeline of a planted run, and who used its principal"
run=$(python3 -c '
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
print(next(c["run"] for c in cases if c["rule"] == "plan-token-write-principal"))' "$scenario/expected.json")
$bin query run "$run"
principal=$($bin query run "$run" --format json | python3 -c '
import json, sys
print(next(e["principal"] for e in json.load(sys.stdin)["events"] if e["kind"] == "exchange" and e["phase"] == "plan" and e["principal"].endswith("-apply")))')
$bin query principal "$principal" --since "$since" --limit 10

say "alerts firing in Prometheus"
sleep 6
curl -fsS "$prom/api/v1/alerts" | python3 -c '
import json, sys
alerts = [a for a in json.load(sys.stdin)["data"]["alerts"] if a["state"] == "firing"]
for a in sorted(alerts, key=lambda a: a["labels"]["alertname"]):
    print("%-34s %s" % (a["labels"]["alertname"], a["annotations"].get("summary", "")))'

say "done"
echo "web console:      $collector/#findings&since=$since&token=$reader"
echo "  a planted run:  $collector/#run=$run&token=$reader"
echo "forensic API:     curl -H 'Authorization: Bearer $reader' $collector/api/v1/runs/$run"
echo "credtrail serve:  $collector/metrics   (log: $state/serve.log)"
echo "Prometheus:       $prom/alerts"
echo "ClickHouse:       $ch_url, database credtrail_demo; try:"
echo "  curl -s '$ch_url/?database=credtrail_demo' --data-binary 'SELECT rule_id, count() FROM findings FINAL GROUP BY rule_id'"
echo "stop everything:  deploy/demo.sh stop"
