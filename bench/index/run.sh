#!/usr/bin/env bash
# bench/index/run.sh [--hnsw-n N_HNSW] [N] [NQ] — the vector index benchmark: vindex (index/vindex.h) linked with
# Debian's libfaiss.a, vindex linked with FAISS built from the same Debian source with AVX2, and
# faiss-cpu from PyPI (.venv), on the same N unit vectors (dim 384) and NQ queries, same specs and
# parameters, in one run. Prints one table and writes it to bench/out/index.md.
#
# Defaults: N=1000000, NQ=1000. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are unset here so OpenBLAS
# picks its kernel itself; the table's header says which one it picked.
# BENCH_DATA: clustered (default; a mixture of gaussians of low intrinsic dimension, normalised,
# see faiss_py.py, so recall@10 means something) or random (isotropic unit vectors).
# --hnsw-n (or BENCH_HNSW_N): the number of vectors for the HNSW rows (default N; HNSW's add is
# the slow part: about 1 ms of CPU per vector at 30k, more as the graph grows).
# BENCH_SPECS picks specs (see SPECS below); BENCH_NLIST (default 1024) sets IVF's lists;
# BENCH_FLAT_LAT the number of Flat latency queries; BENCH_IMPLS (default "debian avx2") the
# vindex builds to run; BENCH_RESULTS / BENCH_MD redirect outputs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [ "${1:-}" = --hnsw-n ]; then
    BENCH_HNSW_N=$2
    shift 2
fi
N=${1:-1000000}
NQ=${2:-1000}
OUT=$ROOT/bench/out
DATA=$OUT/index-data
RESULTS=${BENCH_RESULTS:-$OUT/index-results.txt}
PY=$ROOT/.venv/bin/python
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_WAIT_POLICY=passive

mkdir -p "$OUT" "$DATA"
log() { printf 'bench/index: %s\n' "$*" >&2; }

build() { # build dir, avx2 ON/OFF
    cmake -S "$ROOT" -B "$1" -DCMAKE_BUILD_TYPE=Release -DSBERT_FAISS_AVX2="$2" >/dev/null
    cmake --build "$1" -j2 --target bench_index vindex_facts >/dev/null
}
log "building bench_index against Debian's libfaiss.a"
build "$ROOT/build-bench-index" OFF
log "building bench_index against FAISS built with AVX2 (first time: the FAISS build)"
t0=$(date +%s)
build "$ROOT/build-bench-index-avx2" ON
t_avx2_build=$(( $(date +%s) - t0 ))

KIND=${BENCH_DATA:-clustered}
NLIST=${BENCH_NLIST:-1024}
HNSW_N=${BENCH_HNSW_N:-$N}
data_dir() { # n -> the directory holding n vectors, NQ queries and exact top-10 of KIND
    local d=$DATA/$KIND-$1-$NQ
    if [ "$(cat "$d/stamp" 2>/dev/null)" != "$KIND $1 $NQ" ]; then
        log "generating $1 $KIND vectors, $NQ queries and exact top-10 in $d"
        "$PY" "$ROOT/bench/index/faiss_py.py" data "$d" "$1" "$NQ" "$KIND"
        echo "$KIND $1 $NQ" > "$d/stamp"
    fi
    echo "$d"
}

kernel=$(OPENBLAS_VERBOSE=2 "$ROOT/build-bench-index/bench/bench_index" /dev/null 0 /dev/null 0 /dev/null Flat 0 0 0 /tmp 2>&1 \
         | sed -n 's/.*Core: *//p' | head -1 || true)
pyver=$("$PY" -c 'import faiss; print(faiss.__version__)')
{
    echo "# bench/index: $N $KIND unit vectors dim 384 (HNSW: $HNSW_N), $NQ queries, k=10, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
    echo "# OpenBLAS kernel (OPENBLAS_CORETYPE unset): ${kernel:-unknown}; faiss-cpu $pyver; HNSW efConstruction 40"
    echo "# vindex-debian: Debian libfaiss.a 1.7.3 (no AVX); vindex-avx2: same source, FAISS_OPT_LEVEL=avx2 (build+link ${t_avx2_build}s incl. configure when not cached)"
    echo "# rebuild s = create + add of all stored vectors with no snapshot (IVF: training included)"
    echo "# latency: one query per call; recall@10 against exact inner product on all queries; HNSW efSearch 64, IVF nprobe 16 of $NLIST lists"
} > "$RESULTS"

# spec ef nprobe latency-queries; BENCH_SPECS="Flat;IVF1024,SQ8" (specs joined by ';') picks some.
SPECS=("Flat 0 0 ${BENCH_FLAT_LAT:-100}" "HNSW32,Flat 64 0 $NQ" "IVF$NLIST,SQ8 0 16 $NQ" "IVF$NLIST,PQ16np 0 16 $NQ")
if [ -n "${BENCH_SPECS:-}" ]; then
    picked=()
    IFS=';' read -r -a want <<<"$BENCH_SPECS"
    for s in "${SPECS[@]}"; do
        for w in "${want[@]}"; do [ "${s%% *}" = "$w" ] && picked+=("$s"); done
    done
    SPECS=("${picked[@]}")
fi
for s in "${SPECS[@]}"; do
    read -r spec ef nprobe nlat <<<"$s"
    n=$N; case $spec in HNSW*) n=$HNSW_N ;; esac
    d=$(data_dir "$n")
    # vindex trains IVF when the count first reaches max(39 * nlist, 39 * 256 for PQ), after a
    # 10000-vector batch: faiss-cpu gets the same training set.
    train_min=$(( 39 * NLIST ))
    case $spec in *PQ*) [ $train_min -lt 9984 ] && train_min=9984 ;; esac
    train_n=$(( (train_min + 9999) / 10000 * 10000 ))
    for impl in ${BENCH_IMPLS:-debian avx2}; do
        dir=$ROOT/build-bench-index; [ "$impl" = avx2 ] && dir=$ROOT/build-bench-index-avx2
        log "$spec: vindex-$impl"
        "$dir/bench/bench_index" "$d/vectors.f32" "$n" "$d/queries.f32" "$NQ" "$d/gt.i64" \
            "$spec" "$ef" "$nprobe" "$nlat" "$d" | sed "s/^impl=vindex/impl=vindex-$impl/" >> "$RESULTS"
    done
    log "$spec: faiss-cpu"
    "$PY" "$ROOT/bench/index/faiss_py.py" run "$d" "$n" "$NQ" "$spec" "$ef" "$nprobe" "$nlat" "$train_n" >> "$RESULTS"
done
"$PY" "$ROOT/bench/index/faiss_py.py" table "$RESULTS" "${BENCH_MD:-$OUT/index.md}"
