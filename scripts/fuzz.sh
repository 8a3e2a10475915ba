#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 30). A crash, a failed check, an
# input that takes over 10 s or memory over 2 GB fails the run; the input is saved in
# fuzz/artifacts/TARGET/.
#
#   scripts/fuzz.sh [SECONDS]   build all targets once, then run each from the checked-in corpus
#   scripts/fuzz.sh --cmin      fold what earlier runs found into fuzz/corpus, minimised
#
# Stable Rust: cargo-fuzz with `--sanitizer none` needs no nightly. The build is unoptimised
# (`--dev`): it costs a third of an optimised one, and a short run finds the same bugs; for a
# long hunt use `cargo fuzz run -s none -O TARGET`. Needs cargo-fuzz 0.13
# (`cargo install cargo-fuzz --locked --version ^0.13`); .ci/run installs it when missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

BUILD_FLAGS=(--sanitizer none --dev)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is not installed: cargo install cargo-fuzz --locked --version ^0.13" >&2
  exit 1
fi

host=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="target/$host/debug"
mapfile -t targets < <(cargo fuzz list)

# Inputs a run finds go to target/found/TARGET (not checked in); --cmin keeps the useful ones.
if [ "${1:-}" = "--cmin" ]; then
  for target in "${targets[@]}"; do
    if [ -d "target/found/$target" ]; then
      cp -n "target/found/$target"/* "corpus/$target/" 2>/dev/null || true
    fi
    # Edges only, not hit counts: a few hundred files per target instead of thousands.
    cargo fuzz cmin "${BUILD_FLAGS[@]}" "$target" "corpus/$target" -- -use_counters=0
  done
  du -sb corpus
  exit 0
fi

seconds=${1:-30}
case $seconds in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] | --cmin" >&2; exit 2 ;;
esac

# One cargo invocation builds every target (they share all their dependencies).
cargo fuzz build "${BUILD_FLAGS[@]}"

failed=()
for target in "${targets[@]}"; do
  # A head may be up to 32 KiB: let the handshake target reach the limit.
  max_len=4096
  [ "$target" = handshake ] && max_len=34000
  mkdir -p "target/found/$target" "artifacts/$target"
  echo "=== fuzz $target for ${seconds}s"
  if ! "$bin_dir/$target" -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="artifacts/$target/" \
    "target/found/$target" "corpus/$target" 2>"target/fuzz-$target.log"; then
    tail -n 40 "target/fuzz-$target.log" >&2
    echo "fuzz target $target FAILED; reproduce with:" >&2
    echo "  cd fuzz && cargo fuzz run ${BUILD_FLAGS[*]} $target artifacts/$target/<file>" >&2
    failed+=("$target")
  else
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)' \
      "target/fuzz-$target.log" || true
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets, ${seconds}s each, no crash"
