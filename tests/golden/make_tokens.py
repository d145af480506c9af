#!/usr/bin/env python3
"""Generate the tokenizer goldens from the reference implementation.

Writes, next to this script:
  tokens.jsonl      one JSON object per line. Line 1 is the header ({"v": 1, "meta": {...}}: format
                    version and the reference versions); every other line is
                    {"src", "text", "ids", "truncated"}, plus "slow" (the legacy Python
                    BertTokenizer's ids) where that differs from the fast tokenizer and
                    "utf8_hex" (the text's bytes) where the text contains NUL.
  codepoints*.txt   what the fast tokenizer's normalizer + pre-tokenizer make of every code point,
                    in the contexts "a" X "b", "a" X U+1D165 "b" and "a" U+1D16D X "b" (format in
                    the header): codepoints.txt for the model's BertNormalizer configuration, and
                    codepoints.<name>.txt for the other configurations a BERT model can have
                    (cased, lowercase without accent stripping, ...).

Inputs: hard_strings.jsonl (one JSON string per line: the strings chosen to break tokenizers) and
a deterministic sample of real sentences read from $SBERT_SHARED_DIR/data (default
/work/shared/data) at generation time; only the generated lines are committed.

Reference: transformers' AutoTokenizer (fast, from the model's tokenizer.json) on text.strip()
with truncation=True, max_length=max_seq_length (sentence_bert_config.json), as
sentence-transformers' Transformer module tokenizes; every id sequence is also checked against
SentenceTransformer.tokenize() itself.

Usage: .venv/bin/python tests/golden/make_tokens.py [MODEL_DIR]
"""
import gzip
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "all-MiniLM-L6-v2")
SHARED = os.environ.get("SBERT_SHARED_DIR", "/work/shared")
DATA = os.path.join(SHARED, "data")


def real_sentences():
    """(source, text) pairs sampled deterministically from the shared data sets."""
    if not os.path.isdir(DATA):
        sys.exit("make_tokens.py: %s is missing (set SBERT_SHARED_DIR)" % DATA)
    rnd = random.Random(20261127)
    out = []
    sts = []
    with open(os.path.join(DATA, "stsb", "sts-test.csv"), encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            sts.extend(cols[5:7])
    out += [("stsb", s) for s in rnd.sample(sts, 160)]
    with gzip.open(os.path.join(DATA, "corpus", "tatoeba_en_sentences.txt.gz"), "rt", encoding="utf-8") as f:
        tat = f.read().split("\n")
    out += [("tatoeba", s) for s in rnd.sample([t for t in tat if t], 100)]
    glosses = []
    with gzip.open(os.path.join(DATA, "corpus", "wordnet30_glosses.part1.tsv.gz"), "rt", encoding="utf-8") as f:
        next(f)
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 3:
                glosses.append(cols[2])
    out += [("wordnet", s) for s in rnd.sample(glosses, 60)]
    docs = []
    with gzip.open(os.path.join(DATA, "scifact", "corpus.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(d["title"] + " " + d["text"])
    out += [("scifact", s) for s in rnd.sample(docs, 30)]
    return out


def token_goldens(fast, slow, st_model, max_len):
    texts = []
    with open(os.path.join(HERE, "hard_strings.jsonl"), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                texts.append(("hard", json.loads(line)))
    texts += real_sentences()

    st_ids = []
    batch = [t for _, t in texts]
    for i in range(0, len(batch), 64):
        feats = st_model.tokenize(batch[i : i + 64])
        for row, mask in zip(feats["input_ids"].tolist(), feats["attention_mask"].tolist()):
            st_ids.append([x for x, m in zip(row, mask) if m])

    lines = []
    n_slow_diff = 0
    for (src, text), ref in zip(texts, st_ids):
        stripped = text.strip()
        ids = fast(stripped, truncation=True, max_length=max_len)["input_ids"]
        full = fast(stripped, truncation=False)["input_ids"]
        if ids != ref:
            sys.exit("make_tokens.py: sentence-transformers disagrees with AutoTokenizer on %r" % text)
        if fast(text, truncation=True, max_length=max_len)["input_ids"] != ids:
            sys.exit("make_tokens.py: str.strip() changes the ids of %r" % text)
        rec = {"src": src, "text": text, "ids": ids, "truncated": len(full) > max_len}
        if "\0" in text:
            rec["utf8_hex"] = text.encode("utf-8").hex()  # cJSON strings end at a NUL
        sids = slow(stripped, truncation=True, max_length=max_len)["input_ids"]
        if sids != ids:
            rec["slow"] = sids
            n_slow_diff += 1
        lines.append(rec)
    return lines, n_slow_diff


# ---- code points ------------------------------------------------------------------------------

FIXED = {0x61: "a", 0x62: "b", 0x1D165: "s", 0x1D16D: "p"}


def encode_template(c, pieces):
    """pieces (lists of code points) as a template relative to c; see codepoints.txt's header."""
    out = []
    for piece in pieces:
        toks = []
        for t in piece:
            if t == c:
                toks.append("X")
            elif t in FIXED:
                toks.append(FIXED[t])
            elif abs(t - c) < 0x100:
                toks.append("X%+d" % (t - c))
            else:
                toks.append("%X" % t)
        out.append(".".join(toks))
    return " ".join(out)


def order_flags(c, s_pieces, p_pieces):
    """S: X ends up after U+1D165 (ccc 216) in "aXsb"; P: X ends up before U+1D16D (ccc 226) in
    "apXb". Canonical reordering by NFD is what moves it."""
    if c in FIXED:
        return ""
    flags = ""
    flat = [t for p in s_pieces for t in p]
    if c in flat and 0x1D165 in flat and flat.index(c) > flat.index(0x1D165):
        flags += "S"
    flat = [t for p in p_pieces for t in p]
    if c in flat and 0x1D16D in flat and flat.index(c) < flat.index(0x1D16D):
        flags += "P"
    return flags


# (file suffix, do_lower_case, strip_accents, tokenize_chinese_chars); the first is the model's.
CONFIGS = [
    ("", True, None, True),
    (".cased", False, None, True),
    (".lower_keep_accents", True, False, True),
    (".cased_strip_accents", False, True, True),
    (".no_chinese", True, None, False),
]


def codepoint_golden(backend, versions, suffix, lower, strip, chinese):
    from tokenizers.normalizers import BertNormalizer

    norm = BertNormalizer(clean_text=True, handle_chinese_chars=chinese, strip_accents=strip, lowercase=lower)
    pre = backend.pre_tokenizer

    def run(s):
        return [[ord(ch) for ch in w] for w, _ in pre.pre_tokenize_str(norm.normalize_str(s))]

    runs = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        x = chr(c)
        base = run("a" + x + "b")
        if 0xAC00 <= c <= 0xD7A3:
            si = c - 0xAC00
            jamo = [0x1100 + si // 588, 0x1161 + (si % 588) // 28] + ([0x11A7 + si % 28] if si % 28 else [])
            t = "H" if base == [[0x61] + jamo + [0x62]] else encode_template(c, base)
        else:
            t = encode_template(c, base)
        flags = order_flags(c, run("a" + x + "\U0001D165b"), run("a\U0001D16D" + x + "b"))
        if flags:
            t += " ;" + flags
        if runs and runs[-1][2] == t and runs[-1][1] == c - 1:
            runs[-1][1] = c
        else:
            runs.append([c, c, t])
    with open(os.path.join(HERE, "codepoints%s.txt" % suffix), "w", encoding="ascii") as f:
        f.write("# sbertd tokenizer code point golden v1 (made by make_tokens.py; %s)\n" % versions)
        f.write("# config: do_lower_case=%d strip_accents=%d tokenize_chinese_chars=%d\n"
                % (lower, -1 if strip is None else int(strip), chinese))
        f.write("# Line: LO HI TEMPLATE [;FLAGS], hex code points LO..HI, surrogates skipped. TEMPLATE is\n")
        f.write("# what BertNormalizer + BertPreTokenizer make of \"a\" X \"b\": words separated by ' ',\n")
        f.write("# code points by '.'; X is the code point, X+d / X-d decimal offsets from it, a b s p are\n")
        f.write("# U+0061 U+0062 U+1D165 U+1D16D, anything else absolute hex. H: Hangul syllable, a +\n")
        f.write("# its algorithmic NFD jamo + b as one word. FLAGS: S when X is moved after U+1D165 in\n")
        f.write("# \"a\" X U+1D165 \"b\", P when X is moved before U+1D16D in \"a\" U+1D16D X \"b\".\n")
        for lo, hi, t in runs:
            f.write("%X %X %s\n" % (lo, hi, t))
    return len(runs)


def main():
    import sentence_transformers
    import tokenizers
    import transformers
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    with open(os.path.join(MODEL, "sentence_bert_config.json")) as f:
        max_len = json.load(f)["max_seq_length"]
    fast = AutoTokenizer.from_pretrained(MODEL)
    slow = BertTokenizerLegacy.from_pretrained(MODEL)
    st_model = SentenceTransformer(MODEL, device="cpu")
    versions = "tokenizers %s, transformers %s, sentence-transformers %s" % (
        tokenizers.__version__, transformers.__version__, sentence_transformers.__version__)
    meta = {
        "model": os.path.basename(os.path.normpath(MODEL)),
        "max_length": max_len,
        "tokenizers": tokenizers.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "reference": "AutoTokenizer(fast)(text.strip(), truncation=True, max_length); slow: BertTokenizerLegacy",
    }
    lines, n_slow = token_goldens(fast, slow, st_model, max_len)
    with open(os.path.join(HERE, "tokens.jsonl"), "w", encoding="ascii") as f:
        f.write(json.dumps({"v": 1, "meta": meta}) + "\n")
        for rec in lines:
            f.write(json.dumps(rec, ensure_ascii=True) + "\n")
    print("tokens.jsonl: %d texts (%d where the slow tokenizer differs)" % (len(lines), n_slow))
    for suffix, lower, strip, chinese in CONFIGS:
        n_runs = codepoint_golden(fast.backend_tokenizer, versions, suffix, lower, strip, chinese)
        print("codepoints%s.txt: %d runs" % (suffix, n_runs))


if __name__ == "__main__":
    main()
