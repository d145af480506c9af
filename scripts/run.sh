#!/usr/bin/env bash
# scripts/run.sh — sets up everything (scripts/setup.sh) and starts sbertd in the foreground on
# the default model (models/all-MiniLM-L6-v2) with its data in ./var/data and its socket at
# ipc://./var/sbertd.sock. Extra arguments go to sbertd, e.g. scripts/run.sh --log-level debug.
# Stop it with Ctrl-C (SIGINT): it finishes in-flight requests and snapshots the index.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$ROOT/build

"$ROOT/scripts/setup.sh" "$BUILD"

cd "$ROOT"
mkdir -p var/data
exec "$BUILD/daemon/sbertd" --model "$ROOT/models/all-MiniLM-L6-v2" --data "$ROOT/var/data" \
    --listen "ipc://$ROOT/var/sbertd.sock" "$@"
