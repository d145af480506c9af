#!/bin/sh
# bench/longdoc/run.sh — longdoc.py with OpenBLAS left to pick its own kernel (some machines set
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for tests; a benchmark measures what a user gets).
here=$(dirname "$0")
root=$(cd "$here/../.." && pwd)
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$py" "$here/longdoc.py" "$@"
