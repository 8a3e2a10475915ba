#!/usr/bin/env bash
# The README's test command: makes sure what the tests drive for real is on this machine
# (each scripts/deps/*.sh checks first and installs only what is missing), then runs every
# test of the workspace, and the behaviour tests a second time on PostgreSQL.
#
#   scripts/test.sh              everything
#   scripts/test.sh -- NAME      passes NAME on to cargo test (a filter)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi

for deps in scripts/deps/*.sh; do
  [ -e "$deps" ] || continue
  echo "--- $deps"
  bash "$deps"
done

[ "${1:-}" = "--" ] && shift
cargo test --workspace --locked -- "$@"

# The behaviour tests again, on PostgreSQL (each test on a fresh database of the server that
# scripts/deps/postgres.sh made sure of).
echo "--- tests/api on PostgreSQL"
INFORMD_TEST_POSTGRES="${INFORMD_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432}" \
  cargo test --locked --test api -- "$@"
