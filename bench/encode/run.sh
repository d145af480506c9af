#!/usr/bin/env bash
# bench/encode/run.sh — sbertd's encoder against sentence-transformers and ONNX Runtime.
#
#   bench/encode/run.sh [bench.py options: -n 2000 --batches 1,8,32,128 --threads-list 1,2
#                        --repeat 3 --seed S --model DIR --shared DIR --out FILE]
#
# Prepares the venv and sbert-encode (bench/common/env.sh), unsets OPENBLAS_CORETYPE and
# OPENBLAS_L2_SIZE for this benchmark only, prints the table and writes it to
# bench/out/encode.md. Exits 1 when an output check (cosine >= 0.99999 against
# sentence-transformers) fails.
set -euo pipefail
# shellcheck source=../common/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/env.sh"
exec "$PY" "$ROOT/bench/encode/bench.py" --sbert-encode "${SBERT_ENCODE}" "$@"
