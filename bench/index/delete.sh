#!/usr/bin/env bash
# bench/index/delete.sh [--base REF] [N] [SINGLES] [BATCHES] [BATCH] — deletes from a Flat index:
# vindex (Debian's libfaiss.a 1.7.3) beside faiss-cpu's IndexIDMap2(IndexFlatIP).remove_ids, on
# the same N clustered vectors (bench/index/run.sh's data) and the same random delete order.
# Per call latency of SINGLES one-label vindex_remove() calls and of BATCHES calls of BATCH labels,
# then (vindex only) BATCHES more batches while a thread queries back to back (query latency
# while deletes run against the idle query, and the deletes' latency behind running queries),
# and BATCHES more, each met by one query issued 1 ms after the delete began (its wait).
# Prints one table and writes it to bench/out/index-delete.md (raw lines:
# bench/out/index-delete-results.txt).
#
# --base REF also builds bench_index from commit REF (git archive into /tmp, this tree's
# bench_index.c, same build options) and runs it first as vindex-REF: before/after in one run.
# Defaults: N=1000000 SINGLES=1000 BATCHES=10 BATCH=1000. Needs SINGLES + 3 * BATCHES * BATCH
# <= N. BENCH_BUILD: this tree's build directory (default build-bench-index, run.sh's).
# OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are unset (as in run.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BASE=
if [ "${1:-}" = --base ]; then
    BASE=$2
    shift 2
fi
N=${1:-1000000}
SINGLES=${2:-1000}
BATCHES=${3:-10}
BATCH=${4:-1000}
NQ=1000
OUT=$ROOT/bench/out
RESULTS=$OUT/index-delete-results.txt
PY=$ROOT/.venv/bin/python
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_WAIT_POLICY=passive
mkdir -p "$OUT"
log() { printf 'bench/index/delete: %s\n' "$*" >&2; }

build() { # source dir, build dir
    cmake -S "$1" -B "$2" -DCMAKE_BUILD_TYPE=Release -DSBERT_FAISS_AVX2=OFF \
        -DSBERT_FAISS_SRC="$ROOT/third_party/faiss-src" >/dev/null
    cmake --build "$2" -j2 --target bench_index >/dev/null
}

d=$OUT/index-data/clustered-$N-$NQ
if [ "$(cat "$d/stamp" 2>/dev/null)" != "clustered $N $NQ" ]; then
    log "generating $N clustered vectors in $d"
    "$PY" "$ROOT/bench/index/faiss_py.py" data "$d" "$N" "$NQ" clustered
    echo "clustered $N $NQ" > "$d/stamp"
fi
order=$d/delete-order.i64
[ -f "$order" ] || "$PY" "$ROOT/bench/index/faiss_py.py" order "$order" "$N"

bins=()
if [ -n "$BASE" ]; then
    src=/tmp/sbert-delete-base-$(git -C "$ROOT" rev-parse --short "$BASE")
    if [ ! -d "$src" ]; then
        mkdir -p "$src"
        git -C "$ROOT" archive "$BASE" | tar -x -C "$src"
    fi
    cp "$ROOT/bench/index/bench_index.c" "$src/bench/index/bench_index.c"
    log "building bench_index at $BASE in $src/build"
    build "$src" "$src/build"
    bins+=("vindex-$BASE=$src/build/bench/bench_index")
fi
BUILD=${BENCH_BUILD:-$ROOT/build-bench-index}
log "building bench_index from this tree in $BUILD"
build "$ROOT" "$BUILD"
bins+=("vindex=$BUILD/bench/bench_index")

{
    echo "# bench/index/delete: Flat, $N clustered unit vectors dim 384; $SINGLES 1-label deletes, $BATCHES x $BATCH-label deletes, then $BATCHES x $BATCH more while a thread queries (k=10, one query per call), then $BATCHES x $BATCH more each met by a query 1 ms in; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
    echo "# vindex: Debian libfaiss.a 1.7.3 (no AVX); faiss-cpu $("$PY" -c 'import faiss; print(faiss.__version__)') from PyPI; latencies per vindex_remove()/remove_ids() call"
} > "$RESULTS"
for b in "${bins[@]}"; do
    log "${b%%=*}"
    "${b#*=}" delete "$d/vectors.f32" "$N" "$d/queries.f32" "$NQ" "$order" "$SINGLES" "$BATCHES" \
        "$BATCH" | sed "s/^impl=vindex /impl=${b%%=*} /" >> "$RESULTS"
done
log faiss-cpu
"$PY" "$ROOT/bench/index/faiss_py.py" delete "$d" "$N" "$order" "$SINGLES" "$BATCHES" "$BATCH" >> "$RESULTS"
echo "# load after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$RESULTS"
"$PY" "$ROOT/bench/index/faiss_py.py" deltable "$RESULTS" "$OUT/index-delete.md"
