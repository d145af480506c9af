#!/usr/bin/env bash
# bench/e2e/run.sh — end-to-end benchmark of sbertd (see e2e.py): ingest through the daemon vs
# sbert-encode alone, and query latency p50/p99 with 1 and 16 clients against 100k+ sentences.
# Builds sbert-encode, sbertd and sbertctl in BUILD (default ./build), then runs e2e.py with
# OpenBLAS left to choose its own kernel. Extra arguments go to e2e.py (e.g. --n 120000).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD" -j"${JOBS:-2}" --target sbert-encode sbertd sbertctl

# Benchmarks measure the kernel OpenBLAS detects itself; e2e.py prints which one ran.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
exec python3 "$ROOT/bench/e2e/e2e.py" --build "$BUILD" "$@"
