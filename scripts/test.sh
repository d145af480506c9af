#!/usr/bin/env bash
# scripts/test.sh — sets up everything (scripts/setup.sh) and runs every test with ctest, then the
# same code under the sanitizers and the fuzzers (issue 6). .ci/run calls it with no arguments.
#
#   scripts/test.sh [ctest arguments...]     e.g. scripts/test.sh -L unit
#
# Stages, each in its own build directory; a failing stage does not stop the later ones, the exit
# status is non-zero when any failed:
#   0. format       scripts/check-format.sh: every C/C++ file as clang-format 14 and the committed
#                   .clang-format make it.
#   1. build/       Release: every test (the ctest arguments apply to this stage only).
#   2. build-asan/  ASan + UBSan (gcc, -fno-sanitize-recover=all, LeakSanitizer on): the unit and
#                   integration tests, so the integration tests' sbertd is the sanitized one, and
#                   the fault-injection loops (-DSBERT_FAULTS=ON, ctest label faults, tests/faults):
#                   every allocation, LMDB and file call of each store operation failed in turn,
#                   so a leak or UB on an error path fails the stage too.
#   3. build-tsan/  TSan (clang): the concurrency tests (and sbertd's concurrent cases). OpenMP is LLVM's libomp with its Archer
#                   tool, which tells TSan about OpenMP's barriers and tasks; libgomp is not
#                   instrumented and gave false reports. Debian's libfaiss.a (gcc) calls the GOMP
#                   entry points, which libomp implements, so FAISS's OpenMP runs on libomp too.
#                   ignore_noninstrumented_modules=1 (Archer asks for it): the runtime's own
#                   memory reuse, done in uninstrumented libomp.so, is not reported as races.
#   4. build-fuzz/  libFuzzer (clang, ASan + UBSan): each tests/fuzz target for
#                   SBERT_FUZZ_SECONDS seconds (30).
# Quick local runs: SBERT_TEST_SANITIZERS=0 skips stages 2-4; SBERT_TEST_ASAN=0, SBERT_TEST_TSAN=0,
# SBERT_TEST_FUZZ=0 skip one, SBERT_TEST_RELEASE=0 skips stage 1. CI runs everything. The build
# directories can be moved with SBERT_ASAN_BUILD, SBERT_TSAN_BUILD, SBERT_FUZZ_BUILD.
#
# Sanitized code is slower (ASan ~2-4x, TSan 5-15x): SBERT_TEST_TIMEOUT_SCALE tells tests that
# wait for replies with a deadline how much longer to wait, and SBERT_TEST_SANITIZER (address,
# thread) lets a test skip what a sanitizer makes meaningless (RSS bounds under ASan's quarantine).
# ASan, LSan and TSan reports are written to <build>/sanitizer-logs/ (log_path), whichever process
# made them (the tests spawn sbertd and sbertctl): a stage with a report fails even when the test
# that caused it did not look at the exit status, and the reports are printed at the end. UBSan
# reports go to the process's stderr (gcc's runtime ignores log_path for them when ASan is linked
# too), but -fno-sanitize-recover=all makes the process exit 1 at the first one, which the tests
# see (every daemon test checks sbertd's exit status).
# Tests read the model from models/all-MiniLM-L6-v2 and the shared data from ../shared (override
# with SBERT_SHARED_DIR).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SBERT_SHARED_DIR:-$ROOT/../shared}
BUILD=$ROOT/build
JOBS=$(nproc)
SAN_ALL=${SBERT_TEST_SANITIZERS:-1}
SUPP=$ROOT/scripts/sanitizers
BUILD_ASAN=$(realpath -m "${SBERT_ASAN_BUILD:-$ROOT/build-asan}")
BUILD_TSAN=$(realpath -m "${SBERT_TSAN_BUILD:-$ROOT/build-tsan}")
BUILD_FUZZ=$(realpath -m "${SBERT_FUZZ_BUILD:-$ROOT/build-fuzz}")

declare -a SUMMARY=()
FAILED=0

# stage NAME COMMAND...: runs one stage, records its result and wall time.
stage() {
    local name=$1 t0 rc
    shift
    t0=$(date +%s)
    printf '\n==== test.sh: %s ====\n' "$name"
    set +e
    (set -e; "$@")
    rc=$?
    set -e
    SUMMARY+=("$(printf '%-6s %-34s %5ds' "$([ $rc -eq 0 ] && echo PASS || echo FAIL)" "$name" $(($(date +%s) - t0)))")
    [ $rc -eq 0 ] || FAILED=1
}

enabled() { [ "$SAN_ALL" != 0 ] && [ "${1:-1}" != 0 ]; }

# sanitizer_reports DIR: prints every report in DIR; returns 1 when there is one.
sanitizer_reports() {
    local f found=0
    for f in "$1"/*; do
        [ -s "$f" ] || continue
        found=1
        printf -- '---- sanitizer report %s ----\n' "$f"
        cat "$f"
    done
    return $found
}

# ---- 0. Formatting -----------------------------------------------------------------------------
# clang-format's view of every C/C++ file (the committed .clang-format); drift fails the run.
format_check() {
    command -v clang-format >/dev/null || "$ROOT/scripts/setup.sh" --packages-only
    "$ROOT/scripts/check-format.sh"
}
stage "format (clang-format)" format_check

# ---- 1. Release --------------------------------------------------------------------------------
release() {
    "$ROOT/scripts/setup.sh" "$BUILD" -DSBERT_SHARED_DIR="$SHARED"
    (cd "$BUILD" && ctest --output-on-failure --timeout 1800 -j "$JOBS" "$@")
}
if [ "${SBERT_TEST_RELEASE:-1}" != 0 ]; then stage "release (build/)" release "$@"; fi

# ---- 2. ASan + UBSan ---------------------------------------------------------------------------
# Debian's libfaiss.a (SBERT_FAISS_AVX2=OFF): one FAISS build less; FAISS itself is not
# instrumented either way, our C API wrapper around it is.
asan() {
    local b=$BUILD_ASAN logs=$BUILD_ASAN/sanitizer-logs
    CMAKE_BUILD_TYPE=RelWithDebInfo SBERT_FAISS_AVX2=OFF \
        "$ROOT/scripts/setup.sh" "$b" -DSBERT_SANITIZE=ON -DSBERT_FAULTS=ON \
        -DSBERT_SHARED_DIR="$SHARED"
    rm -rf "$logs" && mkdir -p "$logs"
    local rc=0
    # The slow recall benchmarks and the fuzz runs are left to stage 1 and 4. systemd_syscalls
    # runs sbertd under strace: LeakSanitizer cannot work under ptrace (it aborts the exit), and
    # the system calls it records would be ASan's runtime's, not sbertd's.
    (cd "$b" &&
        SBERT_TEST_TIMEOUT_SCALE=4 SBERT_TEST_SANITIZER=address \
        ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:log_path=$logs/asan" \
        LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0" \
        UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$logs/ubsan" \
        ctest --output-on-failure --timeout 3600 -j "$JOBS" -L 'unit|integration|faults' -LE 'slow|fuzz' \
            -E '^systemd_syscalls$') ||
        rc=1
    sanitizer_reports "$logs" || rc=1
    return $rc
}
if enabled "${SBERT_TEST_ASAN:-1}"; then stage "asan+ubsan ($BUILD_ASAN)" asan; fi

# ---- 3. TSan -----------------------------------------------------------------------------------
TSAN_TESTS=(encoder_concurrency tokenizer_unit systemd_sd store_unit)
TSAN_TARGETS=(encoder_test_concurrency tokenizer_unit_test sd_test store_test_store sbertd)
# The daemon's concurrent cases of tests/daemon/test_sbertd.py, not all of daemon_integration:
# under TSan the model runs 10x slower and the whole file alone would take most of CI's time.
TSAN_DAEMON_CASES=(concurrent_clients sigterm_answers_in_flight query_not_blocked_by_ingest
                   busy_when_over_max_concurrent)
tsan() {
    local b=$BUILD_TSAN logs=$BUILD_TSAN/sanitizer-logs archer
    cmake -S "$ROOT" -B "$b" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBERT_TSAN=ON -DSBERT_FAISS_AVX2=OFF \
        -DSBERT_SHARED_DIR="$SHARED" >/dev/null
    cmake --build "$b" -j "$JOBS" --target "${TSAN_TARGETS[@]}"
    # next to clang's own lib/ (/usr/lib/llvm-14/lib), where clang -print-file-name does not look
    archer=$(readlink -f "$(dirname "$(readlink -f "$(command -v clang)")")/../lib/libarcher.so")
    if [ ! -f "$archer" ]; then
        echo "test.sh: $archer not found (Debian package libomp-14-dev)" >&2
        return 1
    fi
    rm -rf "$logs" && mkdir -p "$logs"
    local rc=0 regex
    regex="^($(IFS='|'; echo "${TSAN_TESTS[*]}"))\$"
    export SBERT_TEST_TIMEOUT_SCALE=10 SBERT_TEST_SANITIZER=thread OMP_TOOL_LIBRARIES="$archer"
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:log_path=$logs/tsan:suppressions=$SUPP/tsan.supp"
    (cd "$b" && ctest --output-on-failure --timeout 3600 -j "$JOBS" -R "$regex") || rc=1
    SBERTD=$b/daemon/sbertd timeout 1800 python3 "$ROOT/tests/daemon/test_sbertd.py" \
        "$ROOT/models/all-MiniLM-L6-v2" "$SHARED/seeds" "${TSAN_DAEMON_CASES[@]}" || rc=1
    sanitizer_reports "$logs" || rc=1
    return $rc
}
if enabled "${SBERT_TEST_TSAN:-1}"; then stage "tsan ($BUILD_TSAN)" tsan; fi

# ---- 4. libFuzzer ------------------------------------------------------------------------------
fuzz() {
    local b=$BUILD_FUZZ
    cmake -S "$ROOT" -B "$b" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSBERT_FUZZ=ON -DSBERT_FAISS_AVX2=OFF \
        -DSBERT_FUZZ_SECONDS="${SBERT_FUZZ_SECONDS:-30}" -DSBERT_SHARED_DIR="$SHARED" >/dev/null
    cmake --build "$b" -j "$JOBS" --target fuzz_proto fuzz_filter fuzz_tokenizer fuzz_loader fuzz_text fuzz_extract fuzz_http fuzz_search
    (cd "$b" && ctest --output-on-failure -j "$JOBS" -L fuzz)
}
if enabled "${SBERT_TEST_FUZZ:-1}"; then stage "libfuzzer ($BUILD_FUZZ)" fuzz; fi

printf '\n==== test.sh summary ====\n'
printf '%s\n' "${SUMMARY[@]}"
exit $FAILED
