#!/usr/bin/env bash
# scripts/setup.sh — everything sbertd needs to build, on Debian 12. Idempotent: each step is
# skipped when its result is already there. Used by run.sh and test.sh; safe to run by hand.
#
#   scripts/setup.sh [BUILD_DIR] [extra cmake -D options...]
#   scripts/setup.sh --packages-only       # the Debian packages alone
#
# Steps: Debian packages (apt-get, as root or through sudo), Debian's faiss source package (for
# the FAISS C API, which libfaiss-dev 1.7.3 ships headers for but no library), the model
# (scripts/fetch-model.sh), then cmake configure + build.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${1:-$ROOT/build}
shift || true

log() { printf 'setup: %s\n' "$*" >&2; }

SUDO=
if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi

# clang's libFuzzer and sanitizer runtimes (libclang-rt-14-dev) and LLVM's OpenMP with its TSan
# tool Archer (libomp-14-dev): scripts/test.sh's fuzz and TSan stages. libmicrohttpd-dev: http/;
# curl, python3-requests and chromium (headless, for the search page): tests/http;
# python3-prometheus-client: tests/daemon/test_http_daemon.py parses /metrics with it.
PACKAGES=(build-essential cmake pkg-config dpkg-dev clang clang-format libclang-rt-14-dev libomp-14-dev
          libfaiss-dev libopenblas-dev liblmdb-dev lmdb-utils libnanomsg-dev libcjson-dev
          libstemmer-dev libxml2-dev libpoppler-glib-dev
          libutf8proc-dev libsystemd-dev systemd man-db strace python3 python3-venv
          libmicrohttpd-dev curl python3-requests chromium python3-prometheus-client)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi
if [ "$BUILD" = --packages-only ]; then exit 0; fi

# FAISS C API source: Debian's own faiss source package, the exact version libfaiss-dev was built
# from, so the C wrapper we compile matches the installed C++ library.
FAISS_SRC=$ROOT/third_party/faiss-src
if [ ! -f "$FAISS_SRC/c_api/Index_c.cpp" ]; then
    if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        log "adding a deb-src entry for bookworm"
        printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            | $SUDO tee /etc/apt/sources.list.d/sbertd-deb-src.sources >/dev/null
        $SUDO apt-get update -q
    fi
    log "fetching Debian's faiss source package"
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get source --download-only faiss >/dev/null && dpkg-source --no-check -x faiss_*.dsc src >/dev/null)
    mkdir -p "$ROOT/third_party"
    rm -rf "$FAISS_SRC"
    mv "$tmp/src" "$FAISS_SRC"
    rm -rf "$tmp"
fi

"$ROOT/scripts/fetch-model.sh"

log "building in $BUILD"
# FAISS built from Debian's source with AVX2 (cmake/faiss_c.cmake): Debian's libfaiss.a has no
# SIMD at all (bench/index: Flat search 6x, IVF-SQ8 5x slower); ~2 min of the first build at -j2.
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE="${CMAKE_BUILD_TYPE:-Release}" \
    -DSBERT_FAISS_AVX2="${SBERT_FAISS_AVX2:-ON}" "$@" >/dev/null
cmake --build "$BUILD" -j "$(nproc)"
