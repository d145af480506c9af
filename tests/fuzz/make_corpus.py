#!/usr/bin/env python3
"""make_corpus.py — writes the committed seed corpus of the fuzz targets (tests/fuzz/corpus/).

    python3 tests/fuzz/make_corpus.py [--optable EXE] [--check] [OUT_DIR]
        OUT_DIR: default tests/fuzz/corpus next to it
        --optable: tests/proto's optable_test (default: build/tests/proto/optable_test)
        --check: write to a temporary directory and fail unless it equals OUT_DIR (ctest
                 fuzz_corpus_current: the committed corpus follows the op table)

Small, meaningful inputs only: valid requests of every op and a few broken ones (fuzz_proto),
texts in several scripts plus special tokens (fuzz_tokenizer; fuzz_text: the same texts with a
language byte), HTTP requests of every op (fuzz_http), the examples of docs/filters.md with
metadata (fuzz_filter), and tiny valid models (fuzz_loader: hidden 4, one layer, a 16-token
vocabulary, F32/F16/BF16 and misaligned weights) built here with the stdlib only. Deterministic:
rerunning it rewrites the same bytes.

fuzz_proto's op and member names come from proto/'s op table (`optable_test --json`): the
hand-written requests below must use only its ops and members and cover every op; and for every
op with members one request carrying each of them with a value of its type (table_<op>.json) is
generated from the table, so a member added there is in the corpus the next time this runs.
"""
import argparse
import filecmp
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
_ap = argparse.ArgumentParser()
_ap.add_argument("out", nargs="?", default=os.path.join(HERE, "corpus"))
_ap.add_argument("--optable", default=os.path.join(HERE, "..", "..", "build", "tests", "proto",
                                                   "optable_test"))
_ap.add_argument("--check", action="store_true")
ARGS = _ap.parse_args()
OUT = tempfile.mkdtemp(prefix="corpus-") if ARGS.check else ARGS.out
if not os.access(ARGS.optable, os.X_OK):
    sys.exit("make_corpus.py: %s is not built (cmake --build build --target optable_test), or "
             "name it with --optable" % ARGS.optable)
TABLE = json.loads(subprocess.run([ARGS.optable, "--json"], check=True, capture_output=True,
                                  text=True).stdout)
OPS = {o["name"]: o for o in TABLE["ops"]}
ENVELOPE = {m["name"]: m for m in TABLE["envelope"]}


def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- fuzz_proto: one raw message per file --------------------------------------------------------
REQUESTS = {
    "add": {"v": 1, "op": "add", "req_id": "load-0001", "documents": [
        {"id": "cat", "text": "The cat sits outside", "metadata": {"lang": "en", "year": 2022}},
        {"text": "A man is playing guitar"}, {"id": 42, "text": "x", "metadata": None}]},
    "get": {"v": 1, "op": "get", "ids": ["cat", "dog", 7], "include": ["text", "vector"]},
    "delete": {"v": 1, "op": "delete", "req_id": "d-9", "ids": ["cat", "dog"]},
    "query_text": {"v": 1, "op": "query", "text": "A cat is outdoors", "k": 2,
                   "filter": {"lang": "en"}, "min_score": 0.25, "include": ["metadata"]},
    "query_vector": {"v": 1, "op": "query", "vector": [0.05] * 384, "k": 1000},
    "query_texts": {"v": 1, "op": "query", "texts": ["A cat is outdoors", "pizza"], "k": 1,
                    "filter": {"lang": "en"}, "min_score": 0.25, "include": []},
    "query_vectors": {"v": 1, "op": "query", "vectors": [[0.05] * 384, [-0.05] * 384], "k": 3},
    "query_passages": {"v": 1, "op": "query", "text": "a cat deep in a long text", "k": 5,
                       "group": "passage", "include": []},
    "query_passages_per_doc": {"v": 1, "op": "query", "text": "cats", "k": 2,
                               "passages_per_document": 3},
    "similarity": {"v": 1, "op": "similarity", "a": "The new movie is awesome",
                   "b": "The new movie is so great"},
    "similarity_lists": {"v": 1, "op": "similarity", "a": ["I love pasta"],
                         "b": ["Do you like pizza?", "A woman watches TV"]},
    "encode": {"v": 1, "op": "encode", "texts": ["The quick brown fox jumps over the lazy dog"]},
    "pairs": {"v": 1, "op": "pairs", "n": 2, "per_doc_k": 5, "include": ["text"]},
    "pairs_texts": {"v": 1, "op": "pairs", "n": 1, "min_score": -1,
                    "texts": ["I love pasta", "Do you like pizza?", "A woman watches TV"]},
    "stats": {"v": 1, "op": "stats"},
    "health": {"v": 1, "op": "health", "token": "s3cret"},
    "backup": {"v": 1, "op": "backup", "req_id": "b-1", "dir": "/var/backups/sbertd/2026-11-27"},
    "reindex": {"v": 1, "op": "reindex", "req_id": "r-1"},
    "delete_filter": {"v": 1, "op": "delete", "req_id": "d-10", "filter": {"source": "crawl-7"}},
    "list": {"v": 1, "op": "list", "limit": 2, "filter": {"lang": "en"}, "cursor": "AWNhdA",
             "include": ["text", "vector"]},
    "count": {"v": 1, "op": "count", "filter": {"year": {"$gte": 2020}}},
    "patch": {"v": 1, "op": "patch", "req_id": "p-1", "documents": [
        {"id": "cat", "set": {"reviewed": True, "year": 2023}, "unset": ["draft"]},
        {"id": 7, "unset": []}]},
    "query_collection": {"v": 1, "op": "query", "collection": "papers", "text": "cats", "k": 3},
    "create_collection": {"v": 1, "op": "create_collection", "req_id": "cc-1", "name": "papers",
                          "index": "HNSW32,Flat", "ef_search": 64, "nprobe": 0,
                          "keyword_language": "english"},
    "list_collections": {"v": 1, "op": "list_collections"},
    "describe_collection": {"v": 1, "op": "describe_collection", "name": "papers"},
    "drop_collection": {"v": 1, "op": "drop_collection", "req_id": "dc-1", "name": "../papers"},
}
for name, req in REQUESTS.items():
    op = OPS.get(req["op"])
    if op is None:
        sys.exit("make_corpus.py: REQUESTS[%r]: op %r is not in the op table" % (name, req["op"]))
    defined = dict(ENVELOPE, **{m["name"]: m for m in op["members"]})
    for k in req:  # names only: a seed may bend a type on purpose (get's integer id)
        if k not in defined:
            sys.exit("make_corpus.py: REQUESTS[%r]: member %r is not %s's in the op table" % (
                name, k, req["op"]))
    put("fuzz_proto", name + ".json", json.dumps(req, separators=(",", ":")))
missing = set(OPS) - {r["op"] for r in REQUESTS.values()}
if missing:
    sys.exit("make_corpus.py: REQUESTS has no request of %s" % sorted(missing))

# Every member of each op, by the table, with a value of its type (the first of a "one of" group
# only: the other is in REQUESTS).
SAMPLES = {"string": "The cat sits outside", "int": 3, "number": 0.5, "bool": True,
           "array": ["text", "metadata", "vector"], "object": {"lang": "en"},
           "array of strings": ["cat", "dog"], "array of numbers": [0.05] * 384,
           "array of objects": [{"id": "cat", "text": "The cat sits outside"}],
           "string or array of strings": "A man is playing guitar",
           "array of arrays of numbers": [[0.05] * 384]}
for op in (o for o in TABLE["ops"] if o["members"]):
    req = {"v": 1, "op": op["name"], "req_id": "t-" + op["name"]}
    groups = set()
    for m in op["members"]:
        if m["one_of"] and m["one_of"] in groups:
            continue
        groups.add(m["one_of"])
        req[m["name"]] = SAMPLES[m["type"]]
    put("fuzz_proto", "table_%s.json" % op["name"], json.dumps(req, separators=(",", ":")))
for name, raw in {
    "reply_ok": '{"v":1,"ok":true,"req_id":"x","score":0.893899918}',
    "reply_error": '{"v":1,"ok":false,"error":{"code":"bad_k","message":"k out of range","index":3}}',
    "nul_escape": '{"v":1,"op":"encode","texts":["a\\u0000b"]}',
    "bad_version": '{"v":2,"op":"stats"}',
    "trailing": '{"v":1,"op":"stats"} x',
    "duplicate_member": '{"v":1,"op":"stats","op":"delete","ids":["s0"],"x":{"a":1,"a":2}}',
    "raw_control": '{"v":1,"op":"query","text":"a\x01b\nc"}\t\x00',
    "big_numbers": '{"v":1,"op":"pairs","n":9.3e18,"k":1e308,"min_score":-0.0}',
    "escapes": '{"v":1,"op":"get","ids":["\\ud83d\\ude00","\\"\\\\\\/"],"req_id":"\\u00e9"}',
}.items():
    put("fuzz_proto", name + ".json", raw)

# ---- fuzz_http: "METHOD PATH\nHEADER\nBODY" (HEADER: Authorization and Host) ----------------------
# Every op of the table on POST /v1/<op> with its hand-written body less "v" and "op" (the path
# names the op), and the mapping's edge cases.
for name, req in REQUESTS.items():
    body = {k: v for k, v in req.items() if k not in ("v", "op")}
    put("fuzz_http", name, "POST /v1/%s\n\n%s" % (req["op"], json.dumps(body, separators=(",", ":"))))
for name, raw in {
    "health_get": "GET /v1/health\n\n",
    "token": "POST /v1/stats\nBearer s3cret\n{}",
    "token_in_body": "POST /v1/stats\nbearer  s3cret \n{\"token\":\"other\"}",
    "host_v6": "POST /v1/health\n[::1]:8780\n{ }",
    "op_agrees": "POST /v1/query\n\n{\"v\":1,\"op\":\"query\",\"text\":\"x\"}",
    "op_mismatch": "POST /v1/query\n\n{\"op\":\"delete\",\"ids\":[\"x\"]}",
    "op_escaped": "POST /v1/query\n\n{\"\\u006fp\":\"delete\"}",
    "op_twice": "POST /v1/stats\n\n{\"op\":\"stats\",\"op\":\"reindex\"}",
    "bom": "POST /v1/stats\n\n\ufeff {}",
    "trailing": "POST /v1/stats\n\n{} {\"op\":\"delete\"}",
    "not_object": "POST /v1/stats\n\n[\"op\",\"delete\"]",
    "big_number": "POST /v1/query\n\n{\"text\":\"x\",\"k\":1e400}",
    "reply_ok": "GET /\n\n{\"v\":1,\"ok\":true,\"results\":[]}",
    "reply_busy": "GET /metrics\n\n{\"v\":1,\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"x\"}}",
    "wrong_method": "DELETE /v1/HEALTH\nlocalhost\n",
    "openapi_head": "HEAD /openapi.json\n127.0.0.1:8780\n",
}.items():
    put("fuzz_http", name, raw)
put("fuzz_http", "bad_utf8", b"POST /v1/stats\n\n{\"a\":\"\xff\"}")

# ---- fuzz_tokenizer: byte 0 picks the configuration and capacity, the rest is the text -----------
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "  Héllo, WÖRLD!  naïve café\tunaffable [CLS] [MASK]  ",
    "北京欢迎你 東京 ソウル 서울",
    "Ünïcödé: ﬁ ß ǅ İ ẞ \u0301e \u200b zero\u00a0width",
    "emoji 😀👍🏽 and symbols ∑∫√ ← → ‰",
    "a" * 120 + " " + "supercalifragilisticexpialidocious " * 4,
    "مرحبا بالعالم שלום עולם नमस्ते दुनिया",
    "[SEP][UNK][PAD]\x00\x01\x7f tabs\tand\nnewlines\r\n",
]
for i, t in enumerate(TEXTS):
    put("fuzz_tokenizer", "text%02d" % i, bytes([(i * 37) & 0xFF]) + t.encode("utf-8"))
put("fuzz_tokenizer", "cap_small", bytes([0x04]) + "tiny capacity test sentence".encode())
put("fuzz_tokenizer", "bad_utf8", bytes([0x01]) + b"ok \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80")

# ---- fuzz_text: byte 0 picks the analyzer's language, the rest is the text -----------------------
for i, t in enumerate(TEXTS + ["Straße STRASSE strasse; runners running ran; don't won't",
                               "Привет, мир! Häuser und Häusern, x_y_z 2024 ١٢٣"]):
    put("fuzz_text", "text%02d" % i, bytes([i & 3]) + t.encode("utf-8"))
put("fuzz_text", "long_word", bytes([0]) + b"x" * 5000 + b" " + "ж".encode() * 700)
# ---- fuzz_search: byte 0 mode (+0x80 store the text), byte 1 k - 1, byte 2 candidates/diversity --
for i, t in enumerate(["running café", "STRASSE code-7", "the the the", "日本語 doc3 doc9",
                       "nothing matches zzz", ""]):
    for mode in range(4):
        put("fuzz_search", "q%d_%d" % (i, mode), bytes([mode | (0x80 if i % 2 else 0), 9, 0x18 * mode])
            + t.encode("utf-8"))
put("fuzz_search", "long_word", bytes([0x81, 63, 0x88]) + b"x" * 5000 + b" runs")
put("fuzz_search", "bad_utf8", bytes([0x82, 3, 0]) + b"ab\xc0\xaf cd\xed\xa0\x80ef \x00gh\xff")
# ---- fuzz_extract: byte 0 picks the format (0 text, 1 Markdown, 2 HTML, 3 PDF) ---------------------
HTML = [
    "<!DOCTYPE html><html><head><title>T</title><style>p{}</style></head><body><h1>H</h1>"
    "<p>a &amp; b<br>c</p><pre> x\n  y</pre><table><tr><td>1</td><td>2</td></tr></table></body>",
    "<html><body><h1>unclosed <i>tags<p>para <div>div</p></span><script>x</script>tail",
    "<html><head><meta charset=iso-8859-1></head><body>caf\xe9</body></html>",
    "<div>" * 300 + "deep",
]
for i, h in enumerate(HTML):
    put("fuzz_extract", "html%02d" % i, b"\x02" + h.encode("latin-1"))
put("fuzz_extract", "markdown", b"\x01" + "# Title\n\nbody ```\n# no\n```\nSetext\n===\n".encode())
put("fuzz_extract", "text", b"\x00" + "plain \t text\r\n\x01ctl é".encode())


def pdf(pages, title="Fuzz Title"):
    """A small PDF with Helvetica text on each page and an Info Title; offsets computed here."""
    objs = {1: "<< /Type /Catalog /Pages 2 0 R >>"}
    kids = " ".join("%d 0 R" % (4 + 2 * i) for i in range(len(pages)))
    objs[2] = "<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(pages))
    objs[3] = "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    for i, text in enumerate(pages):
        s = "BT /F1 24 Tf 72 700 Td (%s) Tj ET" % text
        objs[4 + 2 * i] = ("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                           "/Resources << /Font << /F1 3 0 R >> >> >>" % (5 + 2 * i))
        objs[5 + 2 * i] = "<< /Length %d >>\nstream\n%s\nendstream" % (len(s), s)
    info = max(objs) + 1
    objs[info] = "<< /Title (%s) >>" % title
    out, offs = "%PDF-1.4\n", {}
    for k in sorted(objs):
        offs[k] = len(out)
        out += "%d 0 obj\n%s\nendobj\n" % (k, objs[k])
    xref = len(out)
    out += "xref\n0 %d\n0000000000 65535 f \n" % (info + 1)
    out += "".join("%010d 00000 n \n" % offs[k] for k in sorted(objs))
    out += "trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        info + 1, info, xref)
    return out.encode("latin-1")


put("fuzz_extract", "pdf_one", b"\x03" + pdf(["Hello PDF world"]))
put("fuzz_extract", "pdf_two", b"\x03" + pdf(["First page", "Second (page)"]))
put("fuzz_extract", "pdf_cut", b"\x03" + pdf(["Cut short"])[:200])

put("fuzz_text", "bad_utf8", bytes([1]) + b"ab\xc0\xaf cd\xed\xa0\x80ef \x00gh\xff")

# ---- fuzz_filter: the filter, then a newline and metadata ----------------------------------------
FILTERS = [
    ('{"genre": "news"}', '{"genre":"news","year":2001}'),
    ('{"year": {"$gte": 2000, "$lt": 2010}}', '{"year":2005.5}'),
    ('{"lang": {"$in": ["en", "de"]}, "draft": false}', '{"lang":"de","draft":false}'),
    ('{"$or": [{"source": "wiki"}, {"score": {"$gt": 0.8}}]}', '{"score":0.9,"source":null}'),
    ('{"$and": [{"tag": {"$ne": "spam"}}, {"$or": [{"a": 1}, {"b": 2}]}]}', '{"a":1.0,"tag":["spam"]}'),
    ('{"x": {"$nin": [1, "1", true]}}', '{"x":"1 "}'),
    ('{"a.b": {"$eq": "\\u00e9\\"q"}}', '{"a.b":"\\u00e9\\"q","a":{"b":1}}'),
    ('{"year": {"$gt": "2019"}}', '{}'),
    ('{"$and": [{"a": 1}, 3]}', '{"a":1}'),
    ('{"$not": {"a": 1}}', '{"a":1}'),
    ('{"a": {"$in": []}}', '{"a":1}'),
    ('{"a":', ''),
    ('{}', '{"k":[1,{"n":"x"}],"e":1e308,"u":"\\ud83d\\ude00"}'),
    ('{"tags": {"$contains": "red"}, "a.b.c": {"$gte": 2}}', '{"tags":["red",2],"a":{"b":{"c":3}}}'),
    ('{"t": {"$icontains": "STRASSE"}, "n": {"$exists": true}}', '{"t":"Gro\\u00dfe Stra\\u00dfe","n":null}'),
    ('{"$not": {"$or": [{"x": {"$in": [1, "a"]}}, {"$text": {"$contains": "z"}}]}}', '{"x":["b",2]}'),
    ('{"k": {"$contains": 1}, "k.m": {"$exists": false}}', '{"k":{"m":1}}'),
]
for i, (flt, meta) in enumerate(FILTERS):
    put("fuzz_filter", "filter%02d" % i, flt + ("\n" + meta if meta else ""))
put("fuzz_filter", "deep", '{"$or":[' * 33 + '{"a":1}' + ']}' * 33)

# ---- fuzz_loader: tiny models --------------------------------------------------------------------
SEP = b"\n====\n"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "##s", ",", "a", "b",
         "un", "##aff", "##able", "é", "##a"]
H, I, L, HEADS, MAXPOS = 4, 8, 1, 2, 16


def f16(x):
    return struct.pack("<e", x)


def bf16(x):
    return struct.pack("<f", x)[2:]


def safetensors(dtype, pad_header=0):
    rnd = random.Random(6)
    shapes = [("embeddings.word_embeddings.weight", [len(VOCAB), H]),
              ("embeddings.position_embeddings.weight", [MAXPOS, H]),
              ("embeddings.token_type_embeddings.weight", [2, H]),
              ("embeddings.LayerNorm.weight", [H]), ("embeddings.LayerNorm.bias", [H])]
    for l in range(L):
        p = "encoder.layer.%d." % l
        for n in ("query", "key", "value"):
            shapes += [(p + "attention.self.%s.weight" % n, [H, H]),
                       (p + "attention.self.%s.bias" % n, [H])]
        shapes += [(p + "attention.output.dense.weight", [H, H]),
                   (p + "attention.output.dense.bias", [H]),
                   (p + "attention.output.LayerNorm.weight", [H]),
                   (p + "attention.output.LayerNorm.bias", [H]),
                   (p + "intermediate.dense.weight", [I, H]), (p + "intermediate.dense.bias", [I]),
                   (p + "output.dense.weight", [H, I]), (p + "output.dense.bias", [H]),
                   (p + "output.LayerNorm.weight", [H]), (p + "output.LayerNorm.bias", [H])]
    header, data = {"__metadata__": {"format": "pt"}}, b""
    size, pack = {"F32": (4, lambda x: struct.pack("<f", x)), "F16": (2, f16),
                  "BF16": (2, bf16)}[dtype]
    for name, shape in shapes:
        n = 1
        for d in shape:
            n *= d
        vals = [1.0 if "LayerNorm.weight" in name else rnd.uniform(-0.5, 0.5) for _ in range(n)]
        blob = b"".join(pack(v) for v in vals)
        # BertModel checkpoints name tensors without a prefix; BertForX ones with "bert."
        key = ("bert." + name) if dtype == "BF16" else name
        header[key] = {"dtype": dtype, "shape": shape,
                       "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    hj = json.dumps(header, separators=(",", ":")).encode()
    hj += b" " * pad_header  # an odd pad misaligns every F32 tensor: the copying path
    return struct.pack("<Q", len(hj)) + hj + data


def model(dtype="F32", pad=0, pooling="pooling_mode_mean_tokens", normalize=True, **cfg_extra):
    config = {"model_type": "bert", "hidden_size": H, "num_attention_heads": HEADS,
              "num_hidden_layers": L, "intermediate_size": I, "vocab_size": len(VOCAB),
              "max_position_embeddings": MAXPOS, "type_vocab_size": 2, "hidden_act": "gelu",
              "layer_norm_eps": 1e-12, "position_embedding_type": "absolute"}
    config.update(cfg_extra)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    pool = {"word_embedding_dimension": H, pooling: True}
    tok_cfg = {"do_lower_case": True, "model_max_length": 12, "strip_accents": None,
               "tokenize_chinese_chars": True}
    st_cfg = {"max_seq_length": 10, "do_lower_case": False}
    special = {"cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]",
               "pad_token": {"content": "[PAD]", "lstrip": False}, "mask_token": "[MASK]"}
    parts = [json.dumps(x).encode() for x in (config, modules, pool, tok_cfg, st_cfg, special)]
    parts += ["\n".join(VOCAB).encode() + b"\n", safetensors(dtype, pad)]
    return SEP.join(parts)


put("fuzz_loader", "tiny_f32", model())
put("fuzz_loader", "tiny_f16_cls", model("F16", pooling="pooling_mode_cls_token", normalize=False))
put("fuzz_loader", "tiny_bf16_max", model("BF16", pooling="pooling_mode_max_tokens",
                                          hidden_act="gelu_new"))
put("fuzz_loader", "tiny_f32_misaligned", model(pad=1))
# only the required files: config.json, vocab.txt and the weights (no modules.json: mean pooling)
m = model().split(SEP)
put("fuzz_loader", "tiny_minimal", SEP.join([m[0], b"", b"", b"", b"", b"", m[6], m[7]]))
put("fuzz_loader", "bad_safetensors_header", SEP.join(m[:7] + [struct.pack("<Q", 1 << 40) + b"{}"]))
if ARGS.check:
    cmp = filecmp.dircmp(OUT, ARGS.out)
    stale = []

    def walk(d, rel):
        stale.extend(os.path.join(rel, f) for f in d.left_only + d.right_only + d.diff_files +
                     d.funny_files)
        for sub, dd in d.subdirs.items():
            walk(dd, os.path.join(rel, sub))
    walk(cmp, "")
    shutil.rmtree(OUT)
    if stale:
        sys.exit("make_corpus.py: %s differs from what make_corpus.py writes now (rerun it and "
                 "commit): %s" % (ARGS.out, ", ".join(sorted(stale))))
    print("corpus in", ARGS.out, "is current")
else:
    print("corpus written to", OUT)
