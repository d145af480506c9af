#!/usr/bin/env bash
# bench/query/run.sh — a batch query of 64 texts against 64 single queries, sequential and
# concurrent (see batch.py). Builds sbertd in BUILD (default ./build), then runs batch.py with
# OpenBLAS left to choose its own kernel. Extra arguments go to batch.py (e.g. --docs 20000).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD" -j"${JOBS:-2}" --target sbertd

# Benchmarks measure the kernel OpenBLAS detects itself; batch.py prints which one ran.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
exec python3 "$ROOT/bench/query/batch.py" --build "$BUILD" "$@"
