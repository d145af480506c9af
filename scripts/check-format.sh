#!/usr/bin/env bash
# scripts/check-format.sh — every C and C++ file of ours against clang-format and the committed
# .clang-format. Prints the files that differ and exits 1 when there is one; --fix rewrites them.
# clang-format 14 (Debian 12's; scripts/setup.sh installs it): another major version formats some
# constructs differently, so the check names the version it ran.
#
#   scripts/check-format.sh          # check (scripts/test.sh runs this first)
#   scripts/check-format.sh --fix    # format in place
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CF=${CLANG_FORMAT:-clang-format}
command -v "$CF" >/dev/null || { echo "check-format: $CF not found (Debian package clang-format)" >&2; exit 1; }

# Tracked files, and new ones not ignored; third_party/ and build trees are ignored by git.
mapfile -t files < <(git ls-files --cached --others --exclude-standard -- '*.c' '*.h' '*.cpp' |
                     while read -r f; do [ -f "$f" ] && echo "$f"; done)
if [ "${1:-}" = --fix ]; then
    "$CF" -i "${files[@]}"
    exit 0
fi
bad=()
for f in "${files[@]}"; do
    "$CF" --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
    printf 'check-format: %d file(s) differ from %s (%s):\n' "${#bad[@]}" "$CF" \
        "$("$CF" --version | head -1)" >&2
    printf '  %s\n' "${bad[@]}" >&2
    printf 'check-format: run scripts/check-format.sh --fix\n' >&2
    exit 1
fi
echo "check-format: ${#files[@]} files formatted as .clang-format says"
