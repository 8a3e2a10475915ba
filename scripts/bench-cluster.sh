#!/usr/bin/env bash
# Runs informd-bench across informd nodes on one fresh PostgreSQL database with a Redis of
# their own between them, so that every delivery crosses Redis.
#
#   scripts/bench-cluster.sh targeted --clients 1000 --events 20000 --concurrency 16
#       two nodes, one generator: clients on the second node, publishes to the first
#   scripts/bench-cluster.sh --spread 3 fanout --clients 18000 --events 60 --rate 1
#       three nodes, one generator per node (its own process, so its own file limit): the
#       sessions of node i subscribe to topic article:bench-i, whose events are published
#       on node i+1
#   scripts/bench-cluster.sh --spread 3 --phase spread fanout --clients 18000 --events 60 --rate 1
#       the same, with the three topics' events a third of a second apart rather than at the
#       same instant (--phase aligned, the default: the worst case, every node's fan-out at once)
#   BIN=/tmp/informd scripts/bench-cluster.sh …   serve with this informd binary (to compare builds)
#   BENCH=/tmp/informd-bench scripts/bench-cluster.sh …   generate load with this informd-bench
#
# Needs the machine's PostgreSQL (scripts/deps/postgres.sh) and redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."

spread=0
phase=aligned
if [ "${1:-}" = "--spread" ]; then
  spread=$2
  shift 2
fi
if [ "${1:-}" = "--phase" ]; then
  phase=$2
  shift 2
fi
case "$phase" in
  aligned | spread) ;;
  *) echo "--phase must be aligned or spread, not '$phase'" >&2; exit 2 ;;
esac

cargo build --release --quiet -p informd -p informd-bench
bin=target/release
server=${INFORMD_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
database="informd_bench_$$"
redis_port=$((20000 + $$ % 10000))
if [ "$spread" -gt 0 ]; then
  ports=($(seq 18481 $((18480 + spread))))
else
  ports=(18481 18482)
fi
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
    "${BIN:-$bin/informd}" serve >"$work/node-$port.log" 2>&1 &
  pids+=($!)
done
for port in "${ports[@]}"; do
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null || { cat "$work/node-$port.log"; exit 1; }
done

if [ "$spread" -eq 0 ]; then
  echo "=== nodes ${ports[*]} on PostgreSQL $database, Redis :$redis_port; clients on ${ports[1]}, publishes to ${ports[0]}"
  "${BENCH:-$bin/informd-bench}" --url "http://127.0.0.1:${ports[1]}" \
    --publish-url "http://127.0.0.1:${ports[0]}" --pid "${pids[2]}" "$@"
  exit
fi

echo "=== ${#ports[@]} nodes ${ports[*]} on PostgreSQL $database, Redis :$redis_port; one generator per node, phase $phase"
# Every generator begins publishing at an instant set here, once all sessions have had time
# to connect (START_DELAY seconds), so the phase between the topics' events is chosen, not
# left to when each generator's sessions happened to settle.
start_at=$(( $(date +%s%3N) + ${START_DELAY:-40} * 1000 ))
generators=()
for i in "${!ports[@]}"; do
  next=$(( (i + 1) % ${#ports[@]} ))
  offset=0
  [ "$phase" = spread ] && offset=$(( i * 1000 / ${#ports[@]} ))
  timing=()
  [ "$1" = fanout ] && timing=(--start-at $(( start_at + offset )))
  "${BENCH:-$bin/informd-bench}" --url "http://127.0.0.1:${ports[$i]}" \
    --publish-url "http://127.0.0.1:${ports[$next]}" --pid "${pids[$((i + 1))]}" \
    --source-ips "127.0.$((i + 1)).2-127.0.$((i + 1)).9" "$@" --topic "article:bench-$i" \
    "${timing[@]}" >"$work/generator-$i.json" 2>"$work/generator-$i.log" &
  generators+=($!)
done
failed=0
for i in "${!generators[@]}"; do
  wait "${generators[$i]}" || failed=1
  echo "--- node ${ports[$i]} (published on node ${ports[$(( (i + 1) % ${#ports[@]} ))]})"
  grep -v "sessions settled" "$work/generator-$i.log" || true
  cat "$work/generator-$i.json"
done
exit "$failed"
