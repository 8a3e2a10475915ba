#!/usr/bin/env bash
# Compares allocators (docs/BENCHMARKS.md, "Allocator"): for one informd binary, the memory
# attack of issue 6 (scripts/memflood.py: RSS at rest, at the peak of 6,000 half-sent 32 KB
# heads, and 15 s after), then the idle, fanout and targeted-batch benchmarks, each against a
# fresh server, as scripts/bench.sh runs them. Prints one JSON line per step.
#
#   cargo build --release -p informd-bench
#   cargo build --release [--features jemalloc|mimalloc] && cp target/release/informd /tmp/x
#   scripts/alloc-bench.sh /tmp/x LABEL
#
# CLIENTS (default 5000) sizes the benchmarks; SERVER_ENV is put in the server's environment
# only, e.g. SERVER_ENV="MALLOC_ARENA_MAX=2" or "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/serve.sh

bin=${1:?usage: scripts/alloc-bench.sh INFORMD_BINARY LABEL}
label=${2:-$(basename "$bin")}
clients=${CLIENTS:-5000}
bench=target/release/informd-bench
ulimit -n "$(ulimit -Hn)"
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
  rm -f "$work"/bench.db*
  # shellcheck disable=SC2086
  serve_informd "$work/server.log" 200 env INFORMD_LISTEN=127.0.0.1:0 \
    INFORMD_DATABASE="$work/bench.db" INFORMD_JWT_SECRET="$secret" INFORMD_PUBLISH_KEYS="$key" \
    RUST_LOG=warn,informd::startup=info ${SERVER_ENV:-} "$bin" serve || exit 1
  sleep 1
}

start_server
printf '{"allocator":"%s","step":"memflood",' "$label"
python3 scripts/memflood.py --port "$port" --pid "$server_pid" | sed 's/^{//'
stop_server

for run in "idle|idle --clients $clients --hold 10" \
  "fanout|fanout --clients $clients --events 60 --rate 4" \
  "targeted-batch|targeted --clients $clients --events 100000 --batch 100 --concurrency 16"; do
  name="${run%%|*}"
  start_server
  # shellcheck disable=SC2086
  "$bench" --url "http://127.0.0.1:$port" --secret "$secret" --key "$key" --pid "$server_pid" \
    ${run#*|} > "$work/$name.json" 2> "$work/$name.err" || echo "$name FAILED" >&2
  printf '{"allocator":"%s","step":"%s",' "$label" "$name"
  tail -n 1 "$work/$name.json" | sed 's/^{//'
  stop_server
done
