#!/usr/bin/env bash
# bench/load/run.sh — sbertd under mixed load (see load.py): C clients mixing add, query and
# delete for S seconds against a store of D documents, built once and cached in
# bench/out/load-store-D/. Builds sbertd in BUILD (default ./build), lets OpenBLAS pick its own
# kernel, and writes bench/out/load.md.
#   bench/load/run.sh [--clients 32] [--seconds 60] [--docs 100000] [more load.py flags]
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD" -j"${JOBS:-2}" --target sbertd

# Benchmarks measure the kernel OpenBLAS detects itself; the report says which one ran.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
PY=python3
[ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python
exec "$PY" "$ROOT/bench/load/load.py" --build "$BUILD" "$@"
