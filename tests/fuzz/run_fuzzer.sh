#!/bin/sh
# run_fuzzer.sh FUZZER SECONDS WORKDIR CORPUS_DIR... — one libFuzzer run for ctest (fuzz_<t>_run).
#
# New inputs go to WORKDIR/corpus (never into the committed corpus), crashes to
# WORKDIR/artifacts/. Exits non-zero when the fuzzer found a crash, leak, timeout or failed
# invariant; the artifact is then to be committed under tests/fuzz/regressions/<target>/ with the
# fix (see README.md, Tests).
set -eu
fuzzer=$1 seconds=$2 work=$3
shift 3
mkdir -p "$work/corpus" "$work/artifacts"
# -rss_limit_mb: ASan's shadow plus the real vocabulary stay far below it; more is a leak.
# -timeout: no single input may take 10 s.
exec "$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" "$work/corpus" "$@"
