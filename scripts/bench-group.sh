#!/usr/bin/env bash
# Alternating plain / --group runs of informd-bench targeted, fresh database each run.
# usage: [BIN=dir] scripts/bench-group.sh sqlite|postgres ROUNDS ARGS...
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/serve.sh
backend=$1; rounds=$2; shift 2
bin=${BIN:-target/release}   # BIN=dir: another build's informd and informd-bench
work=$(mktemp -d)
secret=bench-secret-$$; key=bench-key-$$
for round in $(seq 1 "$rounds"); do
  for mode in plain group; do
    if [ "$backend" = postgres ]; then
      psql -q -h 127.0.0.1 -U postgres -c 'DROP DATABASE IF EXISTS informd_bench_grouping WITH (FORCE)' -c 'CREATE DATABASE informd_bench_grouping' >/dev/null
      db=postgres://postgres@127.0.0.1:5432/informd_bench_grouping
    else
      rm -f "$work"/bench.db*; db="$work/bench.db"
    fi
    serve_informd "$work/server.log" 200 env INFORMD_LISTEN=127.0.0.1:0 INFORMD_DATABASE="$db" \
      INFORMD_JWT_SECRET="$secret" INFORMD_PUBLISH_KEYS="$key" \
      RUST_LOG=warn,informd::startup=info "$bin/informd" serve || true
    extra=(); [ "$mode" = group ] && extra=(--group 4)
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$(timeout 90 "$bin/informd-bench" --url "http://127.0.0.1:$port" --secret "$secret" --key "$key" --pid "$server_pid" \
      targeted "$@" "${extra[@]}" 2>/dev/null | tail -1 || true)
    kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid" || true
    echo "$backend round $round $mode load $load $(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("publishes/s", d["publishes_per_sec"], "notifications/s", d["notifications_per_sec"], "p50", d["latency_ms"].get("p50"), "p99", d["latency_ms"].get("p99"), "lost", d["deliveries"].get("lost"), "doubled", d["deliveries"].get("doubled"), "ok", d.get("ok"))' 2>/dev/null || echo 'run failed')"
  done
done
rm -rf "$work"
