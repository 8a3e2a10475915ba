#!/usr/bin/env bash
# What preferences cost the targeted publish path: `informd-bench targeted` on a fresh informd
# (scripts/bench.sh --run: release, SQLite) alternately without preferences and with
# --preferences N (N users with a document, the connected recipients among them), ROUNDS times
# each; prints one JSON summary per run, labelled. Alternating spreads the noise of a shared
# machine over both.
#
#   scripts/bench-preferences.sh [ROUNDS] [N] -- targeted arguments
#   scripts/bench-preferences.sh 3 10000 -- --clients 1000 --events 20000 --concurrency 16
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-3}"
count="${2:-10000}"
shift 2 || true
[ "${1:-}" = "--" ] && shift
args="${*:---clients 1000 --events 20000 --concurrency 16}"

for round in $(seq 1 "$rounds"); do
  for preferences in 0 "$count"; do
    summary=$(scripts/bench.sh --run "targeted $args --preferences $preferences" \
      | grep '^{' | tail -n 1)
    echo "{\"round\":$round,\"preferences\":$preferences,\"summary\":$summary}"
  done
done
