#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 20 s each), seeded from tests/fixtures.
#
#   ingest/fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). The toolchain here is stable, so
# RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its -Z flags; `-s none` skips AddressSanitizer (the code
# under test is safe Rust; libFuzzer's coverage guidance and the targets' assertions still apply).
# A crash exits non-zero and leaves its input under ingest/fuzz/artifacts/TARGET/.
# A longer campaign keeps its corpus: CREDTRAIL_FUZZ_CORPUS=DIR ingest/fuzz/run.sh 3600 pipeline
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
fixtures="$here/../../tests/fixtures"
seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(pipeline cloudtrail formats issuance fields config)
corpus_root=${CREDTRAIL_FUZZ_CORPUS:-$(mktemp -d)}
export RUSTC_BOOTSTRAP=1
cd "$here/.."

seed() {
  local target=$1 dir=$corpus_root/$1
  mkdir -p "$dir"
  case "$target" in
    pipeline) cp "$fixtures"/cloudtrail/* "$fixtures"/issuance/* "$dir"/ ;;
    cloudtrail|issuance)
      # One record per seed file.
      for f in "$fixtures/$target"/*.json "$fixtures/$target"/*.ndjson; do
        [ -f "$f" ] || continue
        case "$f" in
          *.ndjson) split -l 1 "$f" "$dir/$(basename "$f")." ;;
          *) cp "$f" "$dir"/ ;;
        esac
      done ;;
    fields) printf '%s' 'organization:acme:project:Default Project:workspace:w:run_phase:plan' > "$dir/sub"
            printf '%s' 'Jul 9, 2024, 4:41:37 PM' > "$dir/expiry"
            printf '%s' '2024-07-09T15:41:37.517Z' > "$dir/time" ;;
    config) cp "$here/../../deploy/credtrail.example.toml" "$dir"/ 2>/dev/null || printf '[clickhouse]\nurl = "http://a:1"\n' > "$dir/min.toml" ;;
  esac
}

cargo fuzz build -s none >/dev/null
status=0
for t in "${targets[@]}"; do
  seed "$t"
  if out=$(cargo fuzz run -s none "$t" "$corpus_root/$t" -- -max_total_time="$seconds" 2>&1); then
    echo "fuzz $t: $(echo "$out" | grep -E '^Done' | tail -1)"
  else
    echo "fuzz $t: FAILED"; echo "$out" | tail -40; status=1
  fi
done
[ -n "${CREDTRAIL_FUZZ_CORPUS:-}" ] || rm -rf "$corpus_root"
exit $status
