#!/usr/bin/env bash
# Runs informd-bench against a freshly started informd (temp SQLite database, durable
# commits) for each scenario, printing the figures and saving the JSON summaries. The fan-out
# scenarios also time durable publishes made while the fan-out loads the server (--probe-rate).
#
#   scripts/bench.sh                 full runs (19,500 sessions; several minutes)
#   scripts/bench.sh --smoke         small runs (500 sessions, seconds) for CI
#   scripts/bench.sh --only fanout   one scenario (idle, fanout, fanout-unpaced, targeted,
#                                    targeted-batch, targeted-steady)
#   scripts/bench.sh --run 'targeted --clients 1000 --events 20000'
#                                    one run of your own, on 500 sessions' sources
#   PROFILE=debug scripts/bench.sh   use debug builds (CI reuses the test build)
#   BIN=/tmp/informd scripts/bench.sh   serve with this informd binary (to compare builds)
#   BENCH=/tmp/informd-bench scripts/bench.sh   generate load with this informd-bench
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/serve.sh

mode=full
only=""
custom=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) mode=smoke ;;
    --only) only="$2"; shift ;;
    --run) custom="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

profile="${PROFILE:-release}"
if [ "$profile" = release ]; then
  cargo build --release --quiet -p informd -p informd-bench
else
  cargo build --quiet -p informd -p informd-bench
fi
bin="target/$profile"
work=$(mktemp -d)
results="${RESULTS:-$work/results.jsonl}"
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
  serve_informd "$work/server.log" 200 env INFORMD_LISTEN=127.0.0.1:0 \
    INFORMD_DATABASE="$work/bench.db" INFORMD_JWT_SECRET="$secret" INFORMD_PUBLISH_KEYS="$key" \
    RUST_LOG="${SERVER_LOG:-warn,informd::startup=info}" "${BIN:-$bin/informd}" serve && return 0
  echo "informd did not start" >&2
  exit 1
}

if [ -n "$custom" ]; then
  sources=""
  runs=("custom|$custom")
elif [ "$mode" = smoke ]; then
  clients=500; sources=""
  runs=(
    "idle|idle --clients $clients --hold 1"
    "fanout|fanout --clients $clients --events 12 --rate 8"
    "fanout-unpaced|fanout --clients $clients --events 20 --probe-rate 20"
    "targeted|targeted --clients $clients --events 2000 --concurrency 16"
    "targeted-batch|targeted --clients $clients --events 5000 --batch 100 --concurrency 16"
    "targeted-steady|targeted --clients $clients --events 1000 --rate 500"
  )
else
  clients=19500; sources="--source-ips 127.0.0.2-127.0.0.40"
  runs=(
    "idle|idle --clients $clients --hold 10"
    "fanout|fanout --clients $clients --events 240 --rate 4 --probe-rate 50"
    "fanout-unpaced|fanout --clients $clients --events 50 --probe-rate 50"
    "targeted|targeted --clients $clients --events 100000 --concurrency 16"
    "targeted-batch|targeted --clients $clients --events 600000 --batch 100 --concurrency 16"
    "targeted-steady|targeted --clients $clients --events 60000 --rate 1000 --concurrency 16"
  )
fi

failed=0
for run in "${runs[@]}"; do
  name="${run%%|*}"
  args="${run#*|}"
  if [ -n "$only" ] && [ "$only" != "$name" ]; then continue; fi
  start_server
  echo "=== $name: informd-bench $args"
  # shellcheck disable=SC2086
  if "${BENCH:-$bin/informd-bench}" --url "http://127.0.0.1:$port" --secret "$secret" --key "$key" \
      --pid "$server_pid" $sources $args > "$work/$name.json"; then
    :
  else
    failed=1
    echo "=== $name FAILED" >&2
    kill -0 "$server_pid" 2>/dev/null || echo "=== the server (pid $server_pid) is no longer running" >&2
    echo "=== the server's log, last lines:" >&2
    tail -n 20 "$work/server.log" >&2
  fi
  tail -n 1 "$work/$name.json" | tee -a "$results"
  stop_server
done
echo "summaries: $results"
exit $failed
