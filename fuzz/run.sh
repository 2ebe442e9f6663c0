#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each), starting
# from the seed corpus, which it (re)writes first. New inputs that reach new
# code are added to fuzz/corpus/TARGET/; crashes land in fuzz/artifacts/.
# Usage: fuzz/run.sh [SECONDS_PER_TARGET]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo run -q --example fuzz_seeds
# cargo-fuzz uses nightly-only sanitizer flags; RUSTC_BOOTSTRAP lets the
# stable toolchain accept them.
export RUSTC_BOOTSTRAP=1
for target in ward_message change record; do
  echo "== $target for ${seconds}s"
  cargo fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds"
done
