#!/usr/bin/env bash
# bench/stsb/run.sh — STS Benchmark Spearman x100 for sbertd and sentence-transformers.
#
#   bench/stsb/run.sh [stsb.py options: --threads 2 --batch 64 --model DIR --shared DIR]
#
# Prepares the venv and sbert-encode (bench/common/env.sh), prints the table and writes it to
# bench/out/stsb.md. Exits 1 when sbertd is more than 0.05 off MTEB's published figure.
set -euo pipefail
# shellcheck source=../common/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/../common/env.sh"
exec "$PY" "$ROOT/bench/stsb/stsb.py" --sbert-encode "${SBERT_ENCODE}" "$@"
