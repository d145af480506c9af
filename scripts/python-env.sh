#!/usr/bin/env bash
# scripts/python-env.sh — the Python environment for tests/python (issue 15): a virtual
# environment in .venv (git-ignored) with tests/python/requirements.txt from PyPI and the sbertd
# package (python/) installed editable, so the tests always import the working tree's code.
#
#   scripts/python-env.sh [VENV]      default: <repo>/.venv
#
# Idempotent and cheap when done: a stamp in the venv holds the sha256 of the requirements and of
# python/pyproject.toml; while it matches, nothing is installed. SBERT_PYTHON picks the
# interpreter that makes the venv (default python3; Debian's needs python3-venv, which
# scripts/setup.sh installs).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${1:-$ROOT/.venv}
REQ=$ROOT/tests/python/requirements.txt
want=$(cat "$REQ" "$ROOT/python/pyproject.toml" | sha256sum | cut -d' ' -f1)
stamp=$VENV/.sbertd-stamp
if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || "${SBERT_PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT/python"
echo "$want" > "$stamp"
