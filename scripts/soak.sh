#!/usr/bin/env bash
# Soak: starts informd on a loopback port and a fresh SQLite file, kills it with SIGKILL again
# and again (every 1.5-4 s) under a mixed load (publishers retrying with idempotency keys
# across the crashes, broadcasts to global and topics, reads via REST and `read` frames) with
# WebSocket clients connected that resume with `since`; restarts it each time; then checks
# that every acknowledged publish is stored once, every user's and topic's seqs are gapless,
# every badge equals its unread rows, and every client got everything exactly once. Prints
# the figures and exits non-zero on any loss, double, gap or badge mismatch.
#
#   scripts/soak.sh                 full run: release build, 180 s, 40 users
#   scripts/soak.sh --short         CI run: debug build (reuses the test build), 25 s, 12 users
#   scripts/soak.sh --seconds N     run N seconds of crashes (with either of the above)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
seconds=""
while [ $# -gt 0 ]; do
  case "$1" in
    --short) mode=short ;;
    --seconds) seconds="$2"; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$mode" = short ]; then
  profile=debug
  cargo build --quiet -p informd -p informd-bench
  args=(--seconds "${seconds:-25}" --users 12 --publishers 4 --settle 30)
else
  profile=release
  cargo build --release --quiet -p informd -p informd-bench
  args=(--seconds "${seconds:-180}")
fi
bin="target/$profile"

# Loopback only: informd listens on 127.0.0.1 and every client connects there.
"$bin/informd-bench" \
  --secret "soak-secret-$$-0123456789abcdef0123456789" \
  --key "soak-key-$$-0123456789abcdef0123456789" \
  soak --informd "$bin/informd" "${args[@]}"
