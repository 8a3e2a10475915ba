#!/usr/bin/env bash
# The README's test command: makes sure what the tests drive for real is on this machine
# (each scripts/deps/*.sh checks first and installs only what is missing), then runs every
# test of the workspace.
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
