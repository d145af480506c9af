#!/usr/bin/env python3
"""Writes the encoder's embedding goldens with the reference implementation.

    .venv/bin/python tests/golden/make_embeddings.py [--model models/all-MiniLM-L6-v2]
        [--shared ../shared] [--out tests/golden]

Texts: a fixed, seeded sample of the shared corpora (STS-B sentences, Tatoeba, WordNet glosses,
SciFact title + abstract, several longer than 256 tokens) plus the tokenizer's hard strings
(tests/golden/hard_strings.jsonl when present, else the few below). Embeddings:
sentence-transformers' model.encode() on CPU in float32 with the same model directory.

Output (committed; CI needs no PyTorch):
  embeddings.jsonl  line 1: a header object {"format": "sbert-embeddings-golden", "version": 1,
                    "dim", "count", "model_sha256", "sentence_transformers", "torch"};
                    then one JSON string per text, in row order
  embeddings.f32    count x dim little-endian float32, row i for text i
"""
import argparse
import csv
import gzip
import hashlib
import json
import os
import random
import struct
import sys

# Used only when the tokenizer's hard strings are not there yet: a few that stress the
# normaliser and the forward pass (accents, CJK, emoji, control/zero-width characters, long words).
FALLBACK_HARD = [
    "", "   ", "\t\n", "Héllo Wörld", "naïve café résumé", "Ångström ﬁnance", "ÉCOLE ÉLÉMENTAIRE",
    "東京は日本の首都です。", "我爱北京天安门", "한국어 문장입니다", "مرحبا بالعالم", "שלום עולם",
    "emoji 😀🎉👍🏽 family 👨‍👩‍👧", "zero\u200bwidth\u200djoiner", "soft\u00adhyphen",
    "tab\tseparated\tvalues", "ctrl\u0001\u0002chars\u007f", "repl\ufffdchar",
    "!!!???...,,,;;;", "https://example.com/path?q=1&r=2#frag", "3.14159 2,718 1e-10 0x1F",
    "a" * 150, "pneumonoultramicroscopicsilicovolcanoconiosis " * 3,
    "Straße GROSS ß ẞ", "İstanbul ıi", "ǅungla ǈ", "x\u0301\u0302\u0303 combining",
    "Ελληνικά κείμενα", "Русский текст", "mixed 中文 and English and 日本語",
    "don't can't won't", "e-mail co-operate", "C++ C# F# .NET", "$100 €50 £20 ¥1000",
    "«quotes» „German“ ‘single’", "…ellipsis—dash–en", "\u3000ideographic space\u3000",
    "word " * 300,
]


def read_lines_gz(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(root, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(root), "shared"))
    ap.add_argument("--out", default=here)
    a = ap.parse_args()
    data = os.path.join(a.shared, "data")
    if not os.path.isdir(data):
        sys.exit(f"make_embeddings.py: {data} is missing")
    rng = random.Random(20261127)

    stsb = []
    with open(os.path.join(data, "stsb", "sts-test.pairs.tsv"), encoding="utf-8") as f:
        for row in list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]:
            stsb += row[1:3]
    stsb = sorted(set(stsb))
    tatoeba = read_lines_gz(os.path.join(data, "corpus", "tatoeba_en_sentences.txt.gz"))
    glosses = []
    for part in ("part1", "part2"):
        lines = read_lines_gz(os.path.join(data, "corpus", f"wordnet30_glosses.{part}.tsv.gz"))
        glosses += [line.split("\t")[2] for line in lines[1:] if line.count("\t") >= 2]
    docs = []
    with gzip.open(os.path.join(data, "scifact", "corpus.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(d["title"] + " " + d["text"])
    docs.sort(key=len)
    # SciFact: some short, most long (many past 256 tokens, which exercises truncation).
    sci = rng.sample(docs[: len(docs) // 2], 10) + rng.sample(docs[len(docs) // 2:], 40)

    hard_path = os.path.join(here, "hard_strings.jsonl")
    if os.path.exists(hard_path):
        hard = []
        with open(hard_path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                v = json.loads(line)
                if isinstance(v, dict):
                    v = v.get("text")
                if isinstance(v, str):
                    hard.append(v)
    else:
        hard = FALLBACK_HARD
    # Texts the C API cannot receive (lone surrogates) are left out.
    hard = [h for h in hard if all(not 0xD800 <= ord(c) <= 0xDFFF for c in h)]

    texts = (rng.sample(stsb, 150) + rng.sample(tatoeba, 150) + rng.sample(glosses, 120) + sci
             + hard)

    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    import torch

    torch.set_num_threads(2)
    model = SentenceTransformer(a.model, device="cpu")
    emb = model.encode(texts, batch_size=32, convert_to_numpy=True, normalize_embeddings=False,
                       show_progress_bar=False).astype("<f4")
    with open(os.path.join(a.model, "model.safetensors"), "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    header = {"format": "sbert-embeddings-golden", "version": 1, "dim": int(emb.shape[1]),
              "count": len(texts), "model_sha256": sha,
              "sentence_transformers": sentence_transformers.__version__,
              "torch": torch.__version__}
    with open(os.path.join(a.out, "embeddings.jsonl"), "w", encoding="utf-8") as f:
        f.write(json.dumps(header) + "\n")
        for t in texts:
            f.write(json.dumps(t, ensure_ascii=True) + "\n")
    with open(os.path.join(a.out, "embeddings.f32"), "wb") as f:
        f.write(emb.tobytes())
    long_n = sum(1 for t in texts if len(model.tokenizer(t)["input_ids"]) > 256)
    print(f"wrote {len(texts)} texts ({len(hard)} hard strings, {long_n} over 256 tokens), "
          f"dim {emb.shape[1]}", file=sys.stderr)


if __name__ == "__main__":
    main()
