# bench/common/env.sh — sourced by bench/*/run.sh. Sets:
#   ROOT      the repository root
#   PY        a Python with the peers' packages (the repo's .venv when it has them, else
#             bench/.venv, created here from PyPI on first use)
#   SBERT_ENCODE  the sbert-encode binary (built here in build-bench), or empty when it does not
#             build: the benchmarks then measure the peers alone and say why sbertd is missing
# and unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE so OpenBLAS picks its kernel for this CPU
# (the machines' Haswell override halves sgemm on AVX-512 parts).
# Environment knobs: SBERT_ENCODE (use this binary, build nothing), SBERT_BENCH_BUILD (build dir,
# default $ROOT/build-bench), SBERT_BENCH_VENV (venv to create, default $ROOT/bench/.venv).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export ROOT

bench_log() { printf 'bench: %s\n' "$*" >&2; }

unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE

BENCH_PACKAGES=(torch sentence-transformers transformers tokenizers onnxruntime onnx numpy scipy
                threadpoolctl)
BENCH_IMPORTS="import torch, sentence_transformers, transformers, tokenizers, onnxruntime, onnx, numpy, scipy, threadpoolctl"

if [ -x "$ROOT/.venv/bin/python" ] && "$ROOT/.venv/bin/python" -c "$BENCH_IMPORTS" 2>/dev/null; then
    PY=$ROOT/.venv/bin/python
else
    venv=${SBERT_BENCH_VENV:-$ROOT/bench/.venv}
    if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$BENCH_IMPORTS" 2>/dev/null; }; then
        bench_log "creating $venv from PyPI (${BENCH_PACKAGES[*]})"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
        "$venv/bin/python" -m pip install -q "${BENCH_PACKAGES[@]}"
    fi
    PY=$venv/bin/python
fi
export PY

if [ -z "${SBERT_ENCODE:-}" ]; then
    build=${SBERT_BENCH_BUILD:-$ROOT/build-bench}
    mkdir -p "$ROOT/bench/out"
    blog=$ROOT/bench/out/build.log
    if cmake -S "$ROOT" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$blog" 2>&1 &&
       cmake --build "$build" -j2 --target sbert-encode >>"$blog" 2>&1; then
        SBERT_ENCODE=$build/encoder/sbert-encode
    else
        bench_log "sbert-encode did not build (log: $blog); measuring the peers only"
        SBERT_ENCODE=
    fi
fi
export SBERT_ENCODE

# Quiet, offline peers: the model is a local directory; no progress bars in the tables.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 \
       TRANSFORMERS_VERBOSITY=error TOKENIZERS_PARALLELISM=true PYTHONWARNINGS=ignore
