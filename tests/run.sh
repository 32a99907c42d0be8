#!/usr/bin/env bash
# Every check, on a fresh machine or a used one: installs what the tests need (Debian's
# clickhouse-server and prometheus, the tansu Kafka broker, cargo-fuzz, a Python venv with chdb-core for the
# modern-ClickHouse check), then rustfmt, clippy with warnings as errors, every test of the
# workspace, and each fuzz target for a short bounded time. Tests start and stop their own servers
# on free loopback ports.
set -eo pipefail
set -u
cd "$(dirname "$0")/.."

# Build dependencies of rdkafka's bundled librdkafka (TLS via the system OpenSSL), Debian's
# prometheus (the server and promtool) for the alert-rule and dashboard tests, and chromium for
# the web console test.
packages="libssl-dev pkg-config prometheus chromium"
if ! dpkg -s $packages >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages >/dev/null; }
fi
deploy/clickhouse/local.sh install
deploy/kafka/local.sh install
command -v cargo-fuzz >/dev/null || cargo install --quiet --locked cargo-fuzz

CHDB_VERSION=26.9.0
if ! .venv/bin/python -c 'import chdb' >/dev/null 2>&1; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "chdb-core==${CHDB_VERSION}"
fi

cargo fmt --all -- --check
cargo fmt --manifest-path ingest/fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# --show-output: the fault tests print their produced / stored / double-counted / lost counts.
cargo test --workspace --no-fail-fast -- --show-output 2>&1 | tee "$log" || status=$?
# Every fuzz target, briefly (README: Fuzzing, for longer campaigns).
ingest/fuzz/run.sh "${CREDTRAIL_FUZZ_SECONDS:-15}" 2>&1 | tee -a "$log" || status=1
# One closing line over every test binary, in the plain "N passed, N failed" form.
awk '/^test result:/ { p += $4; f += $6 } END { printf "credtrail: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
