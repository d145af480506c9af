#!/usr/bin/env bash
# scripts/test.sh — sets up everything (scripts/setup.sh) and runs every test with ctest.
#
#   scripts/test.sh [ctest arguments...]     e.g. scripts/test.sh -L unit
#
# Builds in build/ (Release). Tests read the model from models/all-MiniLM-L6-v2 and the shared
# data from ../shared (override with SBERT_SHARED_DIR).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SBERT_SHARED_DIR:-$ROOT/../shared}
BUILD=$ROOT/build

"$ROOT/scripts/setup.sh" "$BUILD" -DSBERT_SHARED_DIR="$SHARED"

cd "$BUILD"
ctest --output-on-failure --timeout 1800 -j "$(nproc)" "$@"
