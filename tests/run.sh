#!/usr/bin/env bash
# Every check, on a fresh machine or a used one: installs what the tests need (Debian's
# clickhouse-server, a Python venv with chdb-core for the modern-ClickHouse check), then rustfmt,
# clippy with warnings as errors, and every test of the workspace. Tests start and stop their own
# servers on free loopback ports.
set -eo pipefail
set -u
cd "$(dirname "$0")/.."

deploy/clickhouse/local.sh install

CHDB_VERSION=26.9.0
if ! .venv/bin/python -c 'import chdb' >/dev/null 2>&1; then
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "chdb-core==${CHDB_VERSION}"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace 2>&1 | tee "$log" || status=$?
# One closing line over every test binary, in the plain "N passed, N failed" form.
awk '/^test result:/ { p += $4; f += $6 } END { printf "credtrail: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
