#!/usr/bin/env bash
# The whole test suite, on a fresh Debian or Ubuntu machine too: installs
# the packages the tests drive (headless Chromium for the status page,
# Prometheus and promtool for the metrics and alerts, fuse3 for the
# power-loss tests' file system, PostgreSQL 15 for the city database on
# PostgreSQL) if they are missing, then runs
# `cargo test`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing+=(prometheus)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} (the tests need them)" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

exec cargo test --locked "$@"
