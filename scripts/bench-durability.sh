#!/usr/bin/env bash
# The cost of the durable flush: the write and load phases of `wardsync
# bench`, the same command run alternately with sled's own flush (the
# `flush-not-durable` mutation, built in only with the `mutation` feature)
# and with the durable flush, ROUNDS times each.
#
#   scripts/bench-durability.sh [RECORDS] [ROUNDS]     (defaults 30000, 2)
#
# The build goes to target/mutation (the release build of wardsync itself
# never contains the mutation). Figures go to target/bench/durability-*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
records="${1:-30000}"
rounds="${2:-2}"
cargo build --release --features mutation --target-dir target/mutation
bin=target/mutation/release/wardsync
mkdir -p target/bench
for round in $(seq 1 "$rounds"); do
  for flush in sled durable; do
    mutation=""
    [ "$flush" = sled ] && mutation=flush-not-durable
    echo "== round $round: $flush flush"
    WARDSYNC_MUTATION="$mutation" "$bin" bench --phases engine,write,load --records "$records" \
      --engine-records 50000 --json "target/bench/durability-$flush-$round.json"
  done
done
