#!/usr/bin/env bash
# Soak test: the deterministic simulation (tests/simulation) over many seeds,
# in a release build, each seed in its own process, one per core at a time.
# Prints every failing seed with the command that replays it, and exits
# non-zero if there was one.
#
#   scripts/soak.sh [SEEDS] [FIRST]      # default: 5000 seeds from 0
set -euo pipefail
seeds=${1:-5000}
first=${2:-0}
cd "$(dirname "$0")/.."
exec cargo test --release --test simulation -- --from "$first" --seeds "$seeds"
