#!/usr/bin/env bash
# What preferences cost the targeted publish path: runs `informd-bench targeted` against a fresh
# informd (SQLite, release) alternately without preferences and with --preferences N (N users
# with a document, the connected recipients among them), ROUNDS times each, and prints one JSON
# summary per run, labelled. Alternating spreads the noise of a shared machine over both.
#
#   scripts/bench-preferences.sh [ROUNDS] [N] -- targeted arguments
#   scripts/bench-preferences.sh 3 10000 -- --clients 1000 --events 20000 --concurrency 16
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-3}"
count="${2:-10000}"
shift 2 || true
[ "${1:-}" = "--" ] && shift
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--clients 1000 --events 20000 --concurrency 16)

cargo build --release --quiet -p informd -p informd-bench
bin=target/release
work=$(mktemp -d)
server_pid=""
secret="bench-secret-$$"
key="bench-key-$$"

stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
  server_pid=""
}
trap 'stop_server; rm -rf "$work"' EXIT

start_server() {
  rm -f "$work"/bench.db* "$work/server.log"
  INFORMD_LISTEN=127.0.0.1:0 INFORMD_DATABASE="$work/bench.db" \
  INFORMD_JWT_SECRET="$secret" INFORMD_PUBLISH_KEYS="$key" \
  RUST_LOG="${SERVER_LOG:-warn,informd::startup=info}" \
    "$bin/informd" serve 2> "$work/server.log" &
  server_pid=$!
  for _ in $(seq 1 200); do
    port=$(sed -n 's/.*informd listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log")
    [ -n "$port" ] && return 0
    sleep 0.05
  done
  cat "$work/server.log" >&2
  echo "informd did not start" >&2
  exit 1
}

for round in $(seq 1 "$rounds"); do
  for preferences in 0 "$count"; do
    start_server
    echo "=== round $round, preferences $preferences: targeted ${args[*]}" >&2
    summary=$("$bin/informd-bench" --url "http://127.0.0.1:$port" --secret "$secret" \
      --key "$key" --pid "$server_pid" targeted "${args[@]}" --preferences "$preferences" | tail -n 1)
    echo "{\"round\":$round,\"preferences\":$preferences,\"summary\":$summary}"
    stop_server
  done
done
