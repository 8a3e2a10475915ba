#!/usr/bin/env bash
# Alternating plain / --group runs of informd-bench targeted, fresh database each run.
# usage: [BIN=dir] scripts/bench-group.sh sqlite|postgres ROUNDS ARGS...
set -euo pipefail
cd "$(dirname "$0")/.."
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
    : > "$work/server.log" # before the job starts: see scripts/bench.sh
    INFORMD_LISTEN=127.0.0.1:0 INFORMD_DATABASE="$db" INFORMD_JWT_SECRET="$secret" INFORMD_PUBLISH_KEYS="$key" \
      RUST_LOG=warn,informd::startup=info "$bin/informd" serve 2> "$work/server.log" &
    pid=$!
    port=""
    for _ in $(seq 1 200); do
      port=$(sed -n 's/.*informd listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/server.log")
      [ -n "$port" ] && break; sleep 0.05
    done
    extra=(); [ "$mode" = group ] && extra=(--group 4)
    load=$(cut -d' ' -f1 /proc/loadavg)
    out=$(timeout 90 "$bin/informd-bench" --url "http://127.0.0.1:$port" --secret "$secret" --key "$key" --pid "$pid" \
      targeted "$@" "${extra[@]}" 2>/dev/null | tail -1 || true)
    kill -TERM "$pid" 2>/dev/null; wait "$pid" || true
    echo "$backend round $round $mode load $load $(echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print("publishes/s", d["publishes_per_sec"], "notifications/s", d["notifications_per_sec"], "p50", d["latency_ms"].get("p50"), "p99", d["latency_ms"].get("p99"), "lost", d["deliveries"].get("lost"), "doubled", d["deliveries"].get("doubled"), "ok", d.get("ok"))' 2>/dev/null || echo 'run failed')"
  done
done
rm -rf "$work"
