#!/usr/bin/env bash
# A private ClickHouse server on loopback for the demo and for development.
#
#   deploy/clickhouse/local.sh install         install Debian's clickhouse-server (needs root)
#   deploy/clickhouse/local.sh start [DIR]     start a server with its own data dir (default .local/clickhouse)
#   deploy/clickhouse/local.sh stop  [DIR]     stop it (by the PID it recorded)
#   deploy/clickhouse/local.sh url   [DIR]     print its HTTP URL
#
# `start` picks a free port unless CLICKHOUSE_HTTP_PORT is set, and prints the URL. Tests do not use this
# script: they start their own servers through tests/support (same config template, own temp dirs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
. "$here/../lib.sh"
cmd=${1:-}
dir=${2:-${CREDTRAIL_LOCAL_DIR:-$here/../../.local}/clickhouse}

install() {
  if [ -x /usr/sbin/clickhouse-server ]; then return 0; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
}


start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    cat "$dir/url"; return 0
  fi
  local http=${CLICKHOUSE_HTTP_PORT:-$(free_port)} tcp
  tcp=$(free_port)
  sed -e "s#@DIR@#$dir#g" -e "s#@HTTP_PORT@#$http#g" -e "s#@TCP_PORT@#$tcp#g" \
    "$here/server-config.xml" > "$dir/config.xml"
  cp "$here/users.xml" "$dir/users.xml"
  /usr/sbin/clickhouse-server --config-file="$dir/config.xml" >"$dir/stdout.log" 2>&1 &
  echo $! > "$dir/pid"
  echo "http://127.0.0.1:$http" > "$dir/url"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$http/ping" >/dev/null 2>&1; then cat "$dir/url"; return 0; fi
    sleep 0.1
  done
  echo "clickhouse did not start; see $dir/log" >&2
  return 1
}


case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop_pidfile "$dir" ;;
  url) cat "$dir/url" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
