#!/usr/bin/env bash
# Profiles one node of a `wardsync bench` run and draws its flamegraph.
#
#   scripts/profile.sh NODE [-- wardsync bench flags]
#
# NODE is `ward` (the agent the write phase measures) or `city` (the first
# city process the benchmark starts). The script builds wardsync with line
# tables and frame pointers (`--profile profiling`, in target/fp), starts the
# benchmark, attaches `perf record -g` to the node until it exits, and writes
#   target/profile/NODE.svg    the flamegraph (open it in a browser)
#   target/profile/NODE.txt    the functions with most samples, children included
# It installs perf (Debian's linux-perf) and inferno (crates.io) if missing.
#
# Example: the city while it loads a ward's queue:
#   scripts/profile.sh city -- --phases load --records 50000
set -euo pipefail
node=${1:?usage: scripts/profile.sh ward|city [-- bench flags]}
shift
[[ "${1:-}" == "--" ]] && shift
[[ "$node" == ward || "$node" == city ]] || { echo "NODE must be ward or city, not $node" >&2; exit 2; }
cd "$(dirname "$0")/.."
out=target/profile
mkdir -p "$out"

if ! command -v perf >/dev/null; then
    echo "installing perf from Debian..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
if ! command -v inferno-flamegraph >/dev/null; then
    echo "installing inferno (flamegraphs) from crates.io..."
    cargo install inferno --locked -q
fi
RUSTFLAGS="-C force-frame-pointers=yes --cfg tokio_unstable" \
    cargo build -q --profile profiling --target-dir target/fp
bin=$PWD/target/fp/profiling/wardsync

"$bin" bench "$@" >"$out/bench.txt" 2>&1 &
bench=$!
trap 'kill $bench 2>/dev/null || true' EXIT
pid=
for _ in $(seq 1 600); do
    pid=$(pgrep -f "^$bin $node " | head -1 || true)
    [[ -n "$pid" ]] && break
    kill -0 $bench 2>/dev/null || { cat "$out/bench.txt"; echo "the benchmark ended before a $node started" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$pid" ]] || { echo "no $node process appeared within a minute" >&2; exit 1; }
echo "profiling $node (pid $pid) until it exits..."
perf record -q -F 999 -g -p "$pid" -o "$out/$node.data" 2>/dev/null || true
wait $bench || true
trap - EXIT
perf script -i "$out/$node.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph >"$out/$node.svg"
# Children included; the runtime's and the threads' own frames left out.
{ perf report -i "$out/$node.data" --children --sort sym --stdio -g none 2>/dev/null || true; } \
    | grep -v -e '^#' -e '^$' -e 'tokio::runtime' -e 'std::sys' -e 'core::ops::function' -e 'thread_start' \
    | head -60 >"$out/$node.txt" || true
cat "$out/bench.txt"
echo "flamegraph: $out/$node.svg; top functions: $out/$node.txt"
