#!/usr/bin/env bash
# bench/soak/run.sh — crash soak: SIGKILL sbertd N times (default 100) at chosen moments (during
# encoding, the LMDB commit, an index snapshot, at random, while it reopens its store, during
# reindex, backup, IVF training, and in an HNSW store), restart it on the same data and check
# every acknowledged write after each restart (tests/reliability/crashkit.py). Prints a report:
# kills per phase, acknowledged documents checked, losses (must be 0), restart time p50/max.
#
#   bench/soak/run.sh                       # 100 kills over every phase, random seed
#   bench/soak/run.sh --kills 20 --seed 7   # extra arguments go to crashkit.py
#
# Builds sbertd in BUILD (default ./build). The report is also written to bench/out/soak.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
MODEL=${SBERT_MODEL_DIR:-$ROOT/models/all-MiniLM-L6-v2}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD" -j"${JOBS:-2}" --target sbertd

# Benchmarks run the kernel OpenBLAS detects itself (the daemon's log names it).
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
mkdir -p "$ROOT/bench/out"
export SBERTD="$BUILD/daemon/sbertd"
set +e
python3 "$ROOT/tests/reliability/crashkit.py" "$MODEL" --kills 100 \
    --phases encode,commit,snapshot,random,recovery,reindex,backup,ivf,hnsw "$@" \
    | tee "$ROOT/bench/out/soak.md"
rc=${PIPESTATUS[0]}
echo "load: $(uptime)" | tee -a "$ROOT/bench/out/soak.md"
exit "$rc"
