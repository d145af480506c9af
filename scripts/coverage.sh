#!/usr/bin/env bash
# scripts/coverage.sh — how much of our code the tests run. Builds with gcc's --coverage in
# build-coverage/ (Debian's FAISS, no AVX2 rebuild), runs the test suite there (every test but the
# slow recall benchmarks and the fuzz runs; ctest arguments given here replace that selection),
# then gcovr (Debian package) summarises encoder/, index/, proto/, daemon/, client/ and util/:
#
#   lines: NN.N%  branches: NN.N%
#
# and writes an HTML report: open build-coverage/coverage/index.html in a browser. Not part of
# scripts/test.sh (CI's time): run it by hand. Processes a test kills with SIGKILL (the crash kit)
# write no coverage data, so what only runs just before such a kill counts as not run.
#
#   scripts/coverage.sh                  # the whole suite (about 3x the Release run)
#   scripts/coverage.sh -L unit          # only the unit tests
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${SBERT_COVERAGE_BUILD:-$ROOT/build-coverage}
SHARED=${SBERT_SHARED_DIR:-$ROOT/../shared}

if ! command -v gcovr >/dev/null; then
    SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get install -y -q gcovr >/dev/null
fi
# -O0 keeps lines and branches as written; the daemon's tests wait on replies with deadlines that
# SBERT_TEST_TIMEOUT_SCALE stretches, as for the sanitizer builds. -fprofile-update=atomic: the
# daemon and encoder count from several threads, and plain counter updates race (gcov then printed
# "branch 1 taken -1", which gcovr 5.2 cannot parse).
CMAKE_BUILD_TYPE=Debug SBERT_FAISS_AVX2=OFF "$ROOT/scripts/setup.sh" "$B" \
    -DCMAKE_C_FLAGS="--coverage -O0 -fprofile-update=atomic" \
    -DCMAKE_CXX_FLAGS="--coverage -O0 -fprofile-update=atomic" \
    -DCMAKE_EXE_LINKER_FLAGS=--coverage -DSBERT_SHARED_DIR="$SHARED"
find "$B" -name '*.gcda' -delete
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(-LE 'slow|fuzz')
(cd "$B" && SBERT_TEST_TIMEOUT_SCALE=4 ctest -j "$(nproc)" --timeout 3600 "${args[@]}") ||
    echo "coverage: some tests failed; the figures below count what ran" >&2

mkdir -p "$B/coverage"
filters=()
for d in encoder index proto daemon client util; do filters+=(--filter "$ROOT/$d/"); done
gcovr --root "$ROOT" "${filters[@]}" --object-directory "$B" \
      --html-details "$B/coverage/index.html" --json-summary "$B/coverage/summary.json" \
      --print-summary >"$B/coverage/summary.txt"
python3 - "$B/coverage/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"lines: {s['line_percent']:.1f}%  branches: {s['branch_percent']:.1f}%")
PY
echo "coverage: report in $B/coverage/index.html"
