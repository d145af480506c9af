#!/usr/bin/env bash
# bench/fuzz/run.sh — runs every libFuzzer target of tests/fuzz for longer than CI does and prints
# one table row per target: executions, executions per second, coverage (libFuzzer's cov = edges,
# ft = features), corpus size, peak RSS and crashes.
#
#   bench/fuzz/run.sh [--seconds N] [--build DIR] [--targets "fuzz_proto fuzz_filter ..."]
#                     [--keep-corpus]
#
#   --seconds N     per target (default 300)
#   --build DIR     the SBERT_FUZZ=ON build directory, configured and built here when needed
#                   (default build-fuzz, the one scripts/test.sh uses)
#   --targets LIST  default: fuzz_proto fuzz_filter fuzz_tokenizer fuzz_loader fuzz_text fuzz_extract fuzz_http
#   --keep-corpus   grow DIR/bench-fuzz/<target>/corpus across runs; by default every run starts
#                   from the committed seed corpus alone, so runs compare
#
# Targets run one after another, one process each. Each starts from tests/fuzz/corpus/<target>/
# and tests/fuzz/regressions/<target>/ (read-only); what it finds goes under
# DIR/bench-fuzz/<target>/. A crash stops that target (libFuzzer's default): its artifact path is
# printed; commit it under tests/fuzz/regressions/<target>/ with the fix. Exit status 1 when any
# target crashed. Raw libFuzzer logs: DIR/bench-fuzz/<target>/log; the table: bench/out/fuzz.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SECONDS_PER=300
BUILD=$ROOT/build-fuzz
TARGETS="fuzz_proto fuzz_filter fuzz_tokenizer fuzz_loader fuzz_text fuzz_extract fuzz_http"
KEEP=0
while [ $# -gt 0 ]; do
    case $1 in
    --seconds) SECONDS_PER=$2; shift 2 ;;
    --build) BUILD=$(realpath -m "$2"); shift 2 ;;
    --targets) TARGETS=$2; shift 2 ;;
    --keep-corpus) KEEP=1; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

# A benchmark measures the machine's own OpenBLAS kernel (the tests pin Haswell). The fuzz
# targets barely touch BLAS (fuzz_loader's 4-wide toy models): the kernel does not matter here.
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBERT_FUZZ=ON -DSBERT_FAISS_AVX2=OFF >/dev/null
fi
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$(nproc)" --target $TARGETS >/dev/null

# The table also goes to bench/out/fuzz.md, like the other benchmarks' tables.
mkdir -p "$ROOT/bench/out"
exec > >(tee "$ROOT/bench/out/fuzz.md")
printf '# bench/fuzz: %s s per target, %s, load before: %s\n' "$SECONDS_PER" "$(date -u +%FT%TZ)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-15s %6s %10s %8s %6s %7s %7s %7s %7s %s\n' target seconds execs exec/s cov ft corpus \
    new rss_mb crashes
status=0
for t in $TARGETS; do
    work=$BUILD/bench-fuzz/$t
    [ "$KEEP" = 1 ] || rm -rf "$work"
    mkdir -p "$work/corpus" "$work/artifacts"
    rm -f "$work/artifacts/"*
    seeds=("$ROOT/tests/fuzz/corpus/$t")
    [ -d "$ROOT/tests/fuzz/regressions/$t" ] && seeds+=("$ROOT/tests/fuzz/regressions/$t")
    t0=$(date +%s)
    set +e
    "$BUILD/tests/fuzz/$t" -max_total_time="$SECONDS_PER" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" "${seeds[@]}" \
        >"$work/log" 2>&1
    rc=$?
    set -e
    took=$(($(date +%s) - t0))
    # The last status line ("#N DONE cov: C ft: F corp: U/..." or the last one before a crash).
    last=$(grep -E '^#[0-9]+[[:space:]]' "$work/log" | tail -1)
    execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$work/log" || echo "${last%%[[:space:]]*}" | tr -d '#')
    eps=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$work/log" || echo "?")
    rss=$(grep -oP 'stat::peak_rss_mb:\s*\K[0-9]+' "$work/log" || echo "?")
    newu=$(grep -oP 'stat::new_units_added:\s*\K[0-9]+' "$work/log" || echo "?")
    cov=$(grep -oP 'cov: \K[0-9]+' <<<"$last" || echo "?")
    ft=$(grep -oP 'ft: \K[0-9]+' <<<"$last" || echo "?")
    corp=$(grep -oP 'corp: \K[0-9]+' <<<"$last" || echo "?")
    crashes=$(find "$work/artifacts" -type f | wc -l)
    printf '%-15s %6s %10s %8s %6s %7s %7s %7s %7s %s\n' "$t" "$took" "$execs" "$eps" "$cov" "$ft" \
        "$corp" "$newu" "$rss" "$crashes"
    if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
        status=1
        find "$work/artifacts" -type f -printf '  artifact: %p\n'
        grep -m3 -E 'ERROR|runtime error|invariant failed' "$work/log" | sed 's/^/  /' || true
    fi
done
exit $status
