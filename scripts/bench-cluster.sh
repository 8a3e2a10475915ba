#!/usr/bin/env bash
# Runs one informd-bench scenario across two informd nodes on one fresh PostgreSQL database
# with a Redis of its own between them: clients connect to the second node, publishes go to
# the first, so every delivery crosses Redis.
#
#   scripts/bench-cluster.sh targeted --clients 1000 --events 20000 --concurrency 16
#
# Needs the machine's PostgreSQL (scripts/deps/postgres.sh) and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet -p informd -p informd-bench
bin=target/release
server=${INFORMD_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
database="informd_bench_$$"
redis_port=$((20000 + $$ % 10000))
ports=(18481 18482)
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$server/postgres" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

psql "$server/postgres" -qc "CREATE DATABASE $database" >/dev/null
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)

ulimit -n "$(ulimit -Hn)"
for port in "${ports[@]}"; do
  INFORMD_DATABASE="$server/$database" INFORMD_BROKER="redis://127.0.0.1:$redis_port" \
    INFORMD_LISTEN="127.0.0.1:$port" RUST_LOG=warn \
    "$bin/informd" serve >"$work/node-$port.log" 2>&1 &
  pids+=($!)
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/node-$port.log"; exit 1; }
done

echo "=== nodes ${ports[*]} on PostgreSQL $database, Redis :$redis_port; clients on ${ports[1]}, publishes to ${ports[0]}"
"$bin/informd-bench" --url "http://127.0.0.1:${ports[1]}" \
  --publish-url "http://127.0.0.1:${ports[0]}" --pid "${pids[2]}" "$@"
