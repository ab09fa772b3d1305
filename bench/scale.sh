#!/usr/bin/env bash
# Scale: bench/scale.sh [streams] [sizes...]
# Builds the release server and bench/scale, then runs it for each environment size (default
# 100, 10,000 and 100,000 flags) with the streams open (default 1,000). See docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
STREAMS=${1:-1000}
shift || true
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 10000 100000)
ulimit -n "$(ulimit -Hn)"
for n in "${SIZES[@]}"; do
  build/release/bench/scale --server build/release/server/gonfalon --flags "$n" --streams "$STREAMS" --writes 500
done
