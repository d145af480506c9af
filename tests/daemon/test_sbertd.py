#!/usr/bin/env python3
"""Integration tests of sbertd through a raw nanomsg REQ client (tests/daemon/sbertd_harness.py).

Usage: test_sbertd.py MODEL_DIR SEEDS_DIR [TEST...]   (SBERTD names the sbertd binary)

Without TEST it runs TESTS; NAMED_TESTS run only when named.

Each test starts the real daemon on a fresh temporary data directory and ipc socket.
"""
import glob
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sbertd_harness as h  # noqa: E402

MODEL = None
SEEDS = None

# The seed article's eight sentences and its table of the ten most similar pairs (all-MiniLM-L6-v2).
SENTENCES = ['The cat sits outside', 'A man is playing guitar', 'I love pasta',
             'The new movie is awesome', 'The cat plays in the garden', 'A woman watches TV',
             'The new movie is so great', 'Do you like pizza?']
SEED_TABLE = [
    ('The new movie is awesome', 'The new movie is so great', 0.8939),
    ('The cat sits outside', 'The cat plays in the garden', 0.6788),
    ('I love pasta', 'Do you like pizza?', 0.5096),
    ('I love pasta', 'The new movie is so great', 0.2560),
    ('I love pasta', 'The new movie is awesome', 0.2440),
    ('A man is playing guitar', 'The cat plays in the garden', 0.2105),
    ('The new movie is awesome', 'Do you like pizza?', 0.1969),
    ('The new movie is so great', 'Do you like pizza?', 0.1692),
    ('The cat sits outside', 'A woman watches TV', 0.1310),
    ('The cat plays in the garden', 'Do you like pizza?', 0.0900),
]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def ok(reply, what=""):
    check(reply.get("v") == 1 and reply.get("ok") is True, "%s: expected ok, got %r" % (what, reply))
    return reply


def err(reply, code, what=""):
    check(reply.get("v") == 1 and reply.get("ok") is False and reply["error"]["code"] == code,
          "%s: expected error %s, got %r" % (what, code, reply))
    check(isinstance(reply["error"].get("message"), str) and reply["error"]["message"],
          "%s: error without a message" % what)
    return reply


def seed_table_from_article():
    """The article's table, parsed from the seed text: the expected values are its numbers."""
    files = glob.glob(os.path.join(SEEDS, "*.txt"))
    check(files, "no seed article in %s" % SEEDS)
    text = open(files[0], encoding="utf-8").read()
    rows = []
    for line in text.splitlines():
        m = re.match(r"^(.*?)\s+Score: ([0-9.]+)\s*$", line)
        if not m:
            continue
        left = m.group(1).strip()
        for a in SENTENCES:
            if left.startswith(a):
                b = left[len(a):].strip()
                if b in SENTENCES:
                    rows.append((a, b, float(m.group(2))))
    return rows


def assert_seed_pairs(pairs, key):
    check(len(pairs) == 10, "expected 10 pairs, got %d" % len(pairs))
    for p, (a, b, score) in zip(pairs, SEED_TABLE):
        got = (p["a"]["text"], p["b"]["text"])
        check(got == (a, b), "pair %r, expected %r" % (got, (a, b)))
        check(abs(p["score"] - score) <= 1e-4,
              "%s / %s: score %.6f, article %.4f" % (a, b, p["score"], score))
        check(key in p["a"] and key in p["b"], "pair sides lack %r: %r" % (key, p))


# ---- tests ----------------------------------------------------------------------------------

def test_seed_table_matches_article():
    check(seed_table_from_article() == SEED_TABLE,
          "the hard-coded table differs from the article's: %r" % seed_table_from_article())


def test_every_op(d):
    c = d.client()
    h_ = ok(c.call("health"), "health")
    check(h_["status"] == "serving" and h_["documents"] == 0, "health: %r" % h_)

    # encode: the seed's first example
    e = ok(c.call("encode", texts=["The quick brown fox jumps over the lazy dog",
                                   "Dogs are a popular household pet around the world"]))
    check(e["dim"] == 384 and len(e["embeddings"]) == 2 and len(e["embeddings"][0]) == 384,
          "encode shape")
    norm = sum(x * x for x in e["embeddings"][0]) ** 0.5
    check(abs(norm - 1) < 1e-4, "encode: not normalised (%f)" % norm)
    check(e["truncated"] == [], "encode: nothing is truncated")

    # add with ids, metadata, and a generated id
    docs = [{"id": "s%d" % i, "text": t, "metadata": {"i": i, "topic": "cat" if "cat" in t else "x"}}
            for i, t in enumerate(SENTENCES)]
    a = ok(c.call("add", documents=docs, req_id="add-1"))
    check(a["ids"] == ["s%d" % i for i in range(8)] and a["replaced"] == [False] * 8, "add: %r" % a)
    g = ok(c.call("add", documents=[{"text": "An extra sentence without an id"}]))
    gen = g["ids"][0]
    check(re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$", gen),
          "generated id %r is not a UUIDv7" % gen)
    # upsert
    u = ok(c.call("add", documents=[{"id": 42, "text": "numeric id"},
                                    {"id": gen, "text": "replaced", "metadata": {"v": 2}}]))
    check(u["ids"] == ["42", gen] and u["replaced"] == [False, True], "upsert: %r" % u)

    # get
    r = ok(c.call("get", ids=[gen, "nope", 42]))
    docs_ = r["documents"]
    check(docs_[0] == {"id": gen, "found": True, "text": "replaced", "metadata": {"v": 2}},
          "get upserted: %r" % docs_[0])
    check(docs_[1] == {"id": "nope", "found": False}, "get missing: %r" % docs_[1])
    check(docs_[2]["text"] == "numeric id" and docs_[2]["metadata"] is None, "get 42: %r" % docs_[2])
    r = ok(c.call("get", ids=["s0"], include=["vector"]))
    check(len(r["documents"][0]["vector"]) == 384 and "text" not in r["documents"][0], "get vector")

    # query by text, by vector, with filter / min_score / include
    q = ok(c.call("query", text="A cat is in the garden", k=3))
    check([x["id"] for x in q["results"]][:2] == ["s4", "s0"], "query: %r" % q)
    check(q["results"][0]["score"] >= q["results"][1]["score"] >= q["results"][2]["score"], "order")
    check(q["results"][0]["metadata"] == {"i": 4, "topic": "cat"}, "query metadata")
    vec = r["documents"][0]["vector"]
    qv = ok(c.call("query", vector=vec, k=1, include=[]))
    check(qv["results"][0]["id"] == "s0" and abs(qv["results"][0]["score"] - 1) < 1e-5
          and set(qv["results"][0]) == {"id", "score", "passage"}, "query by vector: %r" % qv)
    # a short document is one passage: its whole text, scored as the document
    check(qv["results"][0]["passage"] == {"start": 0, "end": len(SENTENCES[0]),
                                          "text": SENTENCES[0],
                                          "score": qv["results"][0]["score"]},
          "query by vector: passage %r" % qv["results"][0]["passage"])
    qf = ok(c.call("query", text="pizza", k=5, filter={"topic": "cat"}))
    check({x["id"] for x in qf["results"]} == {"s0", "s4"}, "query filter: %r" % qf)
    qm = ok(c.call("query", text="The new movie is awesome", k=10, min_score=0.5))
    check([x["id"] for x in qm["results"]] == ["s3", "s6"], "query min_score: %r" % qm)

    # similarity: two texts, two lists
    s = ok(c.call("similarity", a="The new movie is awesome", b="The new movie is so great"))
    check(abs(s["score"] - 0.8939) <= 1e-4, "similarity %r" % s)
    m = ok(c.call("similarity", a=["I love pasta", "A woman watches TV"],
                  b=["Do you like pizza?", "The new movie is so great", "I love pasta"]))
    check(len(m["matrix"]) == 2 and len(m["matrix"][0]) == 3, "matrix shape")
    check(abs(m["matrix"][0][0] - 0.5096) <= 1e-4 and abs(m["matrix"][0][2] - 1) < 1e-5, "matrix %r" % m)

    # pairs within a list (seed example two, no collection involved)
    p = ok(c.call("pairs", n=10, texts=SENTENCES))
    assert_seed_pairs(p["pairs"], "index")
    check(p["pairs"][0]["a"]["index"] == 3 and p["pairs"][0]["b"]["index"] == 6, "pair indices")
    p = ok(c.call("pairs", texts=SENTENCES, n=0, min_score=0.5))
    check(len(p["pairs"]) == 3, "pairs min_score: %r" % p)

    # delete
    dl = ok(c.call("delete", ids=["42", "nope", gen], req_id="del-1"))
    check(dl["deleted"] == 2 and dl["existed"] == [True, False, True], "delete: %r" % dl)
    check(ok(c.call("get", ids=["42"]))["documents"][0]["found"] is False, "deleted doc still there")

    # pairs within the collection: the seed table
    p = ok(c.call("pairs", n=10))
    assert_seed_pairs(p["pairs"], "id")
    check(p["pairs"][0]["a"]["id"] == "s3" and p["pairs"][0]["b"]["id"] == "s6", "pair ids")
    pf = ok(c.call("pairs", n=5, filter={"topic": "cat"}))
    check(len(pf["pairs"]) == 1 and pf["pairs"][0]["a"]["id"] == "s0", "pairs filter: %r" % pf)

    # stats
    st = ok(c.call("stats"))
    check(st["documents"] == 8 and st["dim"] == 384 and st["model"]["name"] == "all-MiniLM-L6-v2", "stats")
    check(st["index"]["spec"] == "Flat" and st["memory"]["rss_bytes"] > 0, "stats index/memory")
    check(st["ops"]["query"]["count"] == 4 and st["ops"]["add"]["count"] == 3, "stats ops: %r" % st["ops"])
    check(st["ops"]["query"]["p50_ms"] > 0 and st["ops"]["query"]["p99_ms"] >= st["ops"]["query"]["p50_ms"],
          "stats percentiles")

    # backup, then the backup opens as a working store
    bdir = os.path.join(d.tmp, "backup")
    b = ok(c.call("backup", dir=bdir, req_id="b-1"))
    check(b["documents"] == 8, "backup: %r" % b)
    err(c.call("backup", dir=bdir), "exists", "backup into a non-empty dir")

    # reindex keeps every document and its scores
    ri = ok(c.call("reindex", req_id="r-1"))
    check(ri["documents"] == 8, "reindex: %r" % ri)
    assert_seed_pairs(ok(c.call("pairs", n=10))["pairs"], "id")
    c.close()

    # the backup serves the same data from a second daemon
    d2 = h.Daemon(MODEL)
    try:
        os.rmdir(d2.tmp)
        os.makedirs(d2.tmp)
        os.rename(bdir, d2.data)
        d2.start()
        c2 = d2.client()
        assert_seed_pairs(ok(c2.call("pairs", n=10))["pairs"], "id")
        c2.close()
        check(d2.stop() == 0, "backup daemon exit status")
    finally:
        d2.cleanup()


def test_restart_keeps_everything(d):
    c = d.client()
    docs = [{"id": "s%d" % i, "text": t, "metadata": {"i": i}} for i, t in enumerate(SENTENCES)]
    ok(c.call("add", documents=docs))
    ok(c.call("delete", ids=["s5"]))
    before_q = ok(c.call("query", text="pasta", k=3))
    c.close()
    check(d.stop() == 0, "SIGTERM exit status")
    check(not os.path.exists(d.url[6:]), "the ipc socket file is left behind")
    d.start()
    c = d.client()
    check(ok(c.call("health"))["documents"] == 7, "documents after restart")
    r = ok(c.call("get", ids=["s0", "s5", "s7"]))["documents"]
    check(r[0]["text"] == SENTENCES[0] and r[0]["metadata"] == {"i": 0}, "s0 after restart")
    check(r[1]["found"] is False and r[2]["text"] == SENTENCES[7], "s5/s7 after restart")
    after_q = ok(c.call("query", text="pasta", k=3))
    check(after_q["results"] == before_q["results"], "query differs after restart")
    c.close()


def test_socket_mode(d):
    mode = os.stat(d.url[6:]).st_mode & 0o777
    check(mode == 0o660, "ipc socket mode %o, expected 660" % mode)


def test_idempotent_writes(d):
    c = d.client()
    msg = {"v": 1, "op": "add", "req_id": "batch-7", "documents": [{"text": "first version"}]}
    raw = json.dumps(msg).encode()
    r1 = json.loads(c.send_raw(raw))
    r2 = json.loads(c.send_raw(raw))  # what a REQ re-send delivers
    ok(r1)
    check(r1 == r2, "a repeated write got another reply: %r vs %r" % (r1, r2))
    check(ok(c.call("health"))["documents"] == 1, "a repeated add was executed twice")
    msg["documents"] = [{"text": "another body"}]
    err(json.loads(c.send_raw(json.dumps(msg).encode())), "req_id_reused", "req_id reuse")
    check(ok(c.call("health"))["documents"] == 1, "a reused req_id was executed")
    # reads are never cached: the same req_id on reads is fine
    ok(c.call("health", req_id="batch-7"))
    c.close()


def test_add_precomputed_vectors(d):
    """add with a "vector" per document (computed elsewhere, e.g. on a cluster): stored (after the
    index's usual re-normalisation), not encoded; the others in the batch are encoded; a wrong dimension, a non-finite value or
    a norm off 1 is bad_vector naming the document."""
    c = d.client()
    emb = ok(c.call("encode", texts=["The cat sits outside", "I love pasta"]))["embeddings"]
    dim = len(emb[0])
    other = [0.0] * dim
    other[0] = 1.0  # a unit vector that is no text's: proves the given vector is what is stored
    r = ok(c.call("add", req_id="pre-1", documents=[
        {"id": "cat", "text": "The cat sits outside", "vector": emb[0]},
        {"id": "pasta", "text": "I love pasta"},
        {"id": "axis", "text": "I love pasta", "vector": other, "metadata": {"k": 1}}]))
    check(r["ids"] == ["cat", "pasta", "axis"] and r["truncated"] == [], "add reply %r" % r)
    got = ok(c.call("get", ids=["cat", "pasta", "axis"], include=["text", "vector", "metadata"]))
    vec = {x["id"]: x["vector"] for x in got["documents"]}
    # the index re-normalises every vector it stores (index.c normalize_into): equal within ulps
    check(max(abs(a - b) for a, b in zip(vec["cat"], emb[0])) < 1e-6,
          "the given vector was not stored as given")
    check(vec["axis"] == other, "the given vector was not stored (encoded instead?)")
    check(max(abs(a - b) for a, b in zip(vec["pasta"], emb[1])) < 1e-6,
          "the document without a vector was not encoded")
    hits = ok(c.call("query", vector=other, k=1))["results"]
    check(hits[0]["id"] == "axis" and abs(hits[0]["score"] - 1) < 1e-6, "query by vector %r" % hits)
    hits = ok(c.call("query", text="A cat is outdoors", k=1))["results"]
    check(hits[0]["id"] == "cat", "query by text over a precomputed vector: %r" % hits)
    half = [x / 2 for x in emb[0]]
    for name, v, code in (("short", emb[0][:-1], "bad_vector"), ("long", emb[0] + [0.0], "bad_vector"),
                          ("not unit", half, "bad_vector"), ("zeros", [0.0] * dim, "bad_vector"),
                          ("huge", [3.5e38] + emb[0][1:], "bad_vector"),
                          ("not a list", "x", "bad_vector")):
        e = err(c.call("add", documents=[{"text": "ok"}, {"text": "bad", "vector": v}]), code, name)
        check(e["error"].get("index") == 1 and "documents[1]" in e["error"]["message"],
              "%s: the error does not name documents[1]: %r" % (name, e))
    check(ok(c.call("health"))["documents"] == 3, "a refused batch stored something")
    c.close()


def bad_inputs(dim):
    """(name, raw message bytes, expected code, expected index or None)."""
    def j(**m):
        x = {"v": 1}
        x.update(m)
        return json.dumps(x).encode()
    big = "x" * 70000
    cases = [
        ("not json", b"not json", "bad_json", None),
        ("truncated json", b'{"v":1,"op":"health"', "bad_json", None),
        ("array", b"[1,2]", "bad_json", None),
        ("trailing data", b'{"v":1,"op":"health"} x', "bad_json", None),
        ("empty message", b"", "bad_json", None),
        ("lone surrogate", b'{"v":1,"op":"query","text":"\\ud800"}', "bad_json", None),
        ("deep nesting", b'{"v":1,"op":"query","filter":' + b"[" * 100000 + b"]" * 100000 + b"}",
         "bad_json", None),
        ("invalid utf-8", b'{"v":1,"op":"query","text":"\xff\xfe"}', "bad_utf8", None),
        ("overlong utf-8", b'{"v":1,"op":"query","text":"\xc0\xaf"}', "bad_utf8", None),
        ("encoded surrogate", b'{"v":1,"op":"query","text":"\xed\xa0\x80"}', "bad_utf8", None),
        ("no version", b'{"op":"health"}', "bad_version", None),
        ("version 2", j(op="health", v=2), "bad_version", None),
        ("no op", j(), "bad_request", None),
        ("op not a string", j(op=5), "bad_request", None),
        ("unknown op", j(op="frobnicate"), "unknown_op", None),
        ("unknown member", j(op="health", extra=1), "bad_request", None),
        ("req_id too long", j(op="health", req_id="r" * 200), "bad_request", None),
        ("k zero", j(op="query", text="a", k=0), "bad_k", None),
        ("k fraction", j(op="query", text="a", k=1.5), "bad_k", None),
        ("k huge", j(op="query", text="a", k=10 ** 30), "bad_k", None),
        ("k string", j(op="query", text="a", k="3"), "bad_request", None),
        ("empty text", j(op="query", text=""), "empty_text", None),
        ("text too long", j(op="query", text=big), "text_too_long", None),
        ("text not string", j(op="query", text=["a"]), "bad_request", None),
        ("NUL escape", j(op="query", text="a\u0000b"), "bad_request", None),
        ("text and vector", j(op="query", text="a", vector=[0.0] * dim), "bad_request", None),
        ("neither text nor vector", j(op="query", k=3), "bad_request", None),
        ("vector wrong dim", j(op="query", vector=[0.1, 0.2, 0.3]), "bad_vector", None),
        ("vector too long", j(op="query", vector=[0.1] * (dim + 1)), "bad_vector", None),
        ("vector with string", j(op="query", vector=["a"] * dim), "bad_vector", None),
        ("vector infinite", b'{"v":1,"op":"query","vector":[1e999' + b",0" * (dim - 1) + b"]}",
         "bad_vector", None),
        ("vector NaN", b'{"v":1,"op":"query","vector":[NaN' + b",0" * (dim - 1) + b"]}",
         "bad_json", None),
        ("filter not object", j(op="query", text="a", filter="x"), "bad_filter", None),
        ("filter bad operator", j(op="query", text="a", filter={"year": {"$near": 1}}), "bad_filter", None),
        ("filter type", j(op="query", text="a", filter={"year": {"$gt": "a"}}), "bad_filter", None),
        ("filter bomb", j(op="query", text="a", filter=json.loads('{"$and":[' * 40 + "{}" + "]}" * 40)),
         "bad_filter", None),
        ("min_score range", j(op="query", text="a", min_score=2), "bad_score", None),
        ("include unknown", j(op="query", text="a", include=["txt"]), "bad_request", None),
        ("add no documents", j(op="add"), "bad_request", None),
        ("add empty batch", j(op="add", documents=[]), "bad_request", None),
        ("add not array", j(op="add", documents="x"), "bad_request", None),
        ("add item not object", j(op="add", documents=[{"text": "a"}, 5]), "bad_request", 1),
        ("add empty text", j(op="add", documents=[{"text": "a"}, {"text": ""}]), "empty_text", 1),
        ("add missing text", j(op="add", documents=[{"id": "x"}]), "bad_request", 0),
        ("add text number", j(op="add", documents=[{"text": 5}]), "bad_request", 0),
        ("add unknown member", j(op="add", documents=[{"text": "a", "txt": "b"}]), "bad_request", 0),
        ("add empty id", j(op="add", documents=[{"id": "", "text": "a"}]), "bad_id", 0),
        ("add 10 KB id", j(op="add", documents=[{"id": "i" * 10240, "text": "a"}]), "bad_id", 0),
        ("add id object", j(op="add", documents=[{"id": {}, "text": "a"}]), "bad_id", 0),
        ("add id fraction", j(op="add", documents=[{"id": 1.5, "text": "a"}]), "bad_id", 0),
        ("add metadata array", j(op="add", documents=[{"text": "a", "metadata": [1]}]), "bad_metadata", 0),
        ("add metadata too big", j(op="add", documents=[{"text": "a", "metadata": {"k": "m" * 70000}}]),
         "bad_metadata", 0),
        ("add too many", j(op="add", documents=[{"text": "a"}] * 4097), "too_large", None),
        ("get empty ids", j(op="get", ids=[]), "bad_request", None),
        ("get id object", j(op="get", ids=["a", {}]), "bad_id", 1),
        ("delete ids string", j(op="delete", ids="a"), "bad_request", None),
        ("similarity mixed", j(op="similarity", a="x", b=["y"]), "bad_request", None),
        ("similarity missing b", j(op="similarity", a="x"), "bad_request", None),
        ("similarity empty", j(op="similarity", a="x", b=""), "empty_text", None),
        ("similarity matrix too large", j(op="similarity", a=["a"] * 2000, b=["b"] * 2000), "too_large", None),
        ("encode item number", j(op="encode", texts=["a", 1]), "bad_request", 1),
        ("encode empty item", j(op="encode", texts=["a", ""]), "empty_text", 1),
        ("pairs n negative", j(op="pairs", n=-1), "bad_request", None),
        ("pairs n too large", j(op="pairs", n=10 ** 7), "too_large", None),
        ("pairs unlimited without min_score", j(op="pairs", n=0), "bad_request", None),
        ("pairs one text", j(op="pairs", texts=["a"]), "bad_request", None),
        ("pairs texts with filter", j(op="pairs", texts=["a", "b"], filter={}), "bad_request", None),
        ("pairs per_doc_k zero", j(op="pairs", per_doc_k=0), "bad_k", None),
        ("backup relative dir", j(op="backup", dir="rel/dir"), "bad_request", None),
        ("backup no dir", j(op="backup"), "bad_request", None),
        ("stats with member", j(op="stats", x=1), "bad_request", None),
    ]
    return cases


def test_bad_input_catalogue(d):
    c = d.client()
    ok(c.call("add", documents=[{"id": "s%d" % i, "text": t} for i, t in enumerate(SENTENCES)]))
    cases = bad_inputs(384)
    check(len(cases) >= 40, "the catalogue has %d cases" % len(cases))
    failures = []
    for name, raw, code, index in cases:
        try:
            r = json.loads(c.send_raw(raw))
            err(r, code, name)
            if index is not None:
                check(r["error"].get("index") == index, "%s: index %r, expected %d" % (name, r["error"].get("index"), index))
        except Exception as e:  # collect every failing case, then fail once
            failures.append("%s: %s" % (name, e))
        check(d.alive(), "sbertd died on %r:\n%s" % (name, d.read_log()[-3000:]))
    check(not failures, "bad-input cases failed:\n  " + "\n  ".join(failures))
    # still serving, and nothing of the refused writes was stored
    check(ok(c.call("health"))["documents"] == 8, "a refused add stored something")
    q = ok(c.call("query", text="I love pasta", k=1))
    check(q["results"][0]["id"] == "s2", "query after the catalogue")
    # a refused request carries the req_id back when it could be read
    r = json.loads(c.send_raw(b'{"v":1,"op":"query","req_id":"q-9","k":0,"text":"a"}'))
    check(r["req_id"] == "q-9", "req_id not echoed on an error: %r" % r)
    c.close()


def test_message_sizes(d):
    """max_message_size = 4 MiB here: 1.5 MiB works (above nanomsg's 1 MiB default), 5 MiB gets
    too_large, 9 MiB (above 2 x max) is dropped by nanomsg and the client times out."""
    c = d.client()
    # 24 texts of ~60 KB = ~1.5 MiB, each one word (one [UNK] token: one passage, quick to
    # encode; 9000 words each would be ~45 passages each, minutes of encoding on a small machine)
    texts = [("word%d" % i) * 9000 for i in range(24)]
    raw = json.dumps({"v": 1, "op": "add", "documents": [{"text": t} for t in texts]}).encode()
    check(1 << 20 < len(raw) < 4 << 20, "message size %d" % len(raw))
    r = ok(json.loads(c.send_raw(raw)), "1.5 MiB add")
    check(r["truncated"] == [], "truncated flags: %r" % r["truncated"])
    # a reply above 1 MiB comes back too (the client set its NN_RCVMAXSIZE)
    g = ok(c.call("get", ids=r["ids"]))
    check(sum(len(x["text"]) for x in g["documents"]) == sum(len(t) for t in texts), "big get")

    pad = "p" * (5 << 20)
    r = json.loads(c.send_raw(json.dumps({"v": 1, "op": "health", "pad": pad}).encode()))
    err(r, "too_large", "5 MiB message")

    c.close()
    c = d.client(timeout_ms=3000, scale=False)  # the expected outcome is this timeout
    pad = "p" * (9 << 20)
    try:
        c.send_raw(json.dumps({"v": 1, "op": "health", "pad": pad}).encode())
        raise AssertionError("a 9 MiB message got a reply")
    except h.Timeout:
        pass
    c.close()
    check(d.alive(), "sbertd died on a 9 MiB message")
    c = d.client()
    check(ok(c.call("health"))["documents"] == 24, "health after the dropped message")
    c.close()


def test_concurrent_clients(d):
    """16 clients query at once (their texts share encode batches, the unfiltered ones one vector
    search with the largest k among them): each gets exactly the answer it gets alone, whatever
    its k, min_score, filter, include or query vector."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "s%d" % i, "text": t, "metadata": {"i": i}}
                                for i, t in enumerate(SENTENCES)]))
    vec = ok(c.call("encode", texts=[SENTENCES[5]]))["embeddings"][0]

    def request(n):
        q = {"k": 1 + n % 8}
        if n % 4 == 3:
            q["vector"] = vec
        else:
            q["text"] = SENTENCES[n % 8]
        if n % 5 == 2:
            q["filter"] = {"i": {"$gte": 4}}
        if n % 3 == 1:
            q["min_score"] = 0.2
        if n % 6 == 0:
            q["include"] = ["text", "vector"]
        return q

    def key(r):
        return [(x["id"], x.get("text"), x.get("metadata")) for x in r["results"]]

    alone = {n: ok(c.call("query", **request(n))) for n in range(16)}
    c.close()
    for n, r in alone.items():
        q, res = request(n), alone[n]["results"]
        check(len(res) <= q["k"] and (len(res) == q["k"] or "filter" in q or "min_score" in q) and
              all(x["score"] >= q.get("min_score", -1) for x in res) and
              all(int(x["id"][1:]) >= 4 for x in res if "filter" in q) and
              all(("vector" in x) == ("vector" in q.get("include", [])) for x in res),
              "query %r alone: %r" % (q, key(alone[n])))
    results = {}
    errors = []

    def worker(n):
        try:
            cl = d.client()
            for _ in range(5):
                r = ok(cl.call("query", **request(n)))
                want = alone[n]
                check(key(r) == key(want) and
                      all(abs(x["score"] - y["score"]) < 1e-5 for x, y in zip(r["results"], want["results"])) and
                      all(("vector" in x) == ("vector" in y) for x, y in zip(r["results"], want["results"])),
                      "client %d (%r) got %r, alone %r" % (n, request(n), key(r), key(want)))
            results[n] = True
            cl.close()
        except Exception as e:
            errors.append("client %d: %s" % (n, e))

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    check(not errors, "\n".join(errors))
    check(len(results) == 16, "only %d clients finished" % len(results))
    check(alone[0]["results"][0]["id"] == "s0" and alone[0]["results"][0]["score"] > 0.999, "s0 finds itself")


def test_sigterm_answers_in_flight(d):
    """An add that is in the daemon when SIGTERM arrives (stats counts it in progress) is
    answered and kept, and a second SIGTERM during the shutdown does not cut the drain or the
    snapshot. An add answered before stats saw it in progress was too short for this machine:
    the next one is twice as large."""
    c = d.client()
    probe = d.client()
    n, stored, seen = 600, 0, False
    while not seen:
        texts = ["sentence number %d about something else" % i for i in range(stored, stored + n)]
        out = {}

        def add():
            try:
                out["reply"] = c.call("add", documents=[{"text": t} for t in texts])
            except Exception as e:
                out["error"] = e

        t = threading.Thread(target=add)
        t.start()
        while not seen and t.is_alive():
            # in_progress counts this stats request too
            seen = ok(probe.call("stats"))["requests"]["in_progress"] >= 2 and not out
            time.sleep(0 if seen else 0.005)
        if not seen:
            t.join(600)
            check("reply" in out, "an add before SIGTERM got no reply: %r" % out.get("error"))
            ok(out["reply"], "an add answered before SIGTERM")
            stored += n
            check(n < 4096, "an add of %d texts (max_batch) was never seen in progress" % n)
            n = min(2 * n, 4096)
    probe.close()
    mark = len(d.read_log())
    d.proc.send_signal(signal.SIGTERM)
    deadline = time.time() + 120 * h.TIMEOUT_SCALE
    while d.alive() and "SIGTERM: stopping" not in d.read_log()[mark:] and time.time() < deadline:
        time.sleep(0.01)
    if d.alive():
        d.proc.send_signal(signal.SIGTERM)  # a second one must not cut the drain or the snapshot
    t.join(600)
    rc = d.proc.wait(120 * h.TIMEOUT_SCALE)
    check(rc == 0, "exit status %d after SIGTERM" % rc)
    check("reply" in out, "the in-flight add got no reply: %r" % out.get("error"))
    ok(out["reply"], "in-flight add")
    c.close()
    d.log.close()
    d.start()
    c = d.client()
    check(ok(c.call("health"))["documents"] == stored + n, "the acknowledged add was lost")
    c.close()


def test_sighup_reloads_limits(d):
    c = d.client()
    ok(c.call("add", documents=[{"text": t} for t in SENTENCES]))
    check(len(ok(c.call("query", text="pasta", k=8))["results"]) == 8, "k = 8 before the reload")
    with open(os.path.join(d.tmp, "sbertd.conf"), "w") as f:
        f.write("max_k = 5\nlog_level = debug\n")
    d.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 30
    while time.time() < deadline:
        r = c.call("query", text="pasta", k=8)
        if not r["ok"]:
            break
        time.sleep(0.1)
    err(r, "bad_k", "k = 8 after max_k = 5 was reloaded")
    check(len(ok(c.call("query", text="pasta", k=5))["results"]) == 5, "k = 5 after the reload")
    check(ok(c.call("stats"))["limits"]["max_k"] == 5, "stats shows the reloaded limit")
    log = d.read_log()
    check("max_k: 1000 -> 5" in log and "log_level: info -> debug" in log, "reload not logged")
    c.close()


def test_query_not_blocked_by_ingest(d):
    """A query sent while a large add is in the daemon (stats counts it in progress; its
    documents are not visible before it commits) is answered before the add. An add that ended
    before the query was answered may just have been too short for this machine: it is repeated
    twice as large, up to max_batch. A query that waits for the ingest fails at every size."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "s%d" % i, "text": t} for i, t in enumerate(SENTENCES)]))
    n, stored = 800, 0
    while True:
        texts = ["ingest sentence %d: %s" % (i, SENTENCES[i % 8]) for i in range(stored, stored + n)]
        done = {}

        def add():
            cl = d.client(timeout_ms=600000)
            done["reply"] = cl.call("add", documents=[{"text": t} for t in texts])
            done["t"] = time.time()
            cl.close()

        t = threading.Thread(target=add)
        t.start()
        seen = False
        while not seen and t.is_alive():
            # in_progress counts this stats request too
            seen = ok(c.call("stats"))["requests"]["in_progress"] >= 2 and not done
            time.sleep(0 if seen else 0.005)
        answered = None
        if seen:
            q = ok(c.call("query", text="I love pasta", k=1))
            answered = time.time()
            check(q["results"][0]["id"] == "s2", "query during ingest: %r" % q)
        t.join(600)
        ok(done.get("reply", {}), "the large add")
        stored += n
        if answered is not None and answered < done["t"]:
            break
        check(n < 4096, "%s (adds of up to %d texts)" % (
            "the query waited for the ingest to finish" if answered is not None
            else "no add was seen in progress", n))
        n = min(2 * n, 4096)
    c.close()


def test_busy_when_over_max_concurrent(d):
    """max_concurrent = 1 (or a small max_inflight_bytes): while a long encode runs, another
    request gets busy, then service resumes. An encode that ended before a health poll got busy
    was too short for this machine: the next one is twice as large, up to max_batch."""
    c = d.client()
    n, seen = 400, None
    while seen is None:
        texts = ["busy test text number %d %s" % (i, SENTENCES[i % 8]) for i in range(n)]
        out = {}

        def encode():
            cl = d.client(timeout_ms=600000)
            # a health poll may hold the one slot when the encode arrives: retry, as clients do
            while True:
                out["reply"] = cl.call("encode", texts=texts)
                if out["reply"]["ok"] or out["reply"]["error"]["code"] != "busy":
                    break
                time.sleep(0.01)
            cl.close()

        t = threading.Thread(target=encode)
        t.start()
        while t.is_alive():
            r = c.call("health")
            if not r["ok"]:
                seen = r
                break
            time.sleep(0.005)
        t.join(600)
        ok(out["reply"], "the long encode")
        check(seen is not None or n < 4096, "no busy reply while an encode of %d texts ran" % n)
        n = min(2 * n, 4096)
    err(seen, "busy", "over max_concurrent")
    ok(c.call("health"), "health after the encode")
    c.close()


def test_auth_token(d):
    c = d.client()
    err(c.call("health"), "unauthorized", "no token")
    err(c.call("health", token="wrong"), "unauthorized", "wrong token")
    err(c.call("health", token="s3cret-tokenX"), "unauthorized", "longer token")
    ok(c.call("health", token="s3cret-token"), "right token")
    c.close()


def test_refuses_remote_tcp():
    tmp = tempfile.mkdtemp(prefix="sbertd-tcp-")
    p = subprocess.run([h.find_sbertd(), "--model", MODEL, "--data", tmp + "/data",
                        "--listen", "tcp://0.0.0.0:5555"], capture_output=True, timeout=60)
    check(p.returncode != 0, "sbertd accepted a non-loopback tcp listen")
    check(b"allow_remote" in p.stderr, "no clear message: %r" % p.stderr)
    check(not os.path.exists(tmp + "/data"), "store created before the refusal")
    p = subprocess.run([h.find_sbertd(), "--listen", "tcp://eth0;10.0.0.1:5555"],
                       capture_output=True, timeout=60)
    check(p.returncode != 0, "sbertd accepted an interface tcp listen")


def test_cli():
    p = subprocess.run([h.find_sbertd(), "--help"], capture_output=True, timeout=30)
    check(p.returncode == 0 and b"--listen" in p.stdout and b"--config" in p.stdout, "--help")
    p = subprocess.run([h.find_sbertd(), "--version"], capture_output=True, timeout=30)
    check(p.returncode == 0 and p.stdout.startswith(b"sbertd "), "--version")
    p = subprocess.run([h.find_sbertd(), "--bogus"], capture_output=True, timeout=30)
    check(p.returncode == 2 and b"--bogus" in p.stderr, "unknown flag")
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as f:
        f.write("threads = many\n")
        f.flush()
        p = subprocess.run([h.find_sbertd(), "--config", f.name], capture_output=True, timeout=30)
        check(p.returncode == 2 and b":1:" in p.stderr and b"threads" in p.stderr, "bad config: %r" % p.stderr)


def test_flat_int8_scan(d):
    """A Flat store from 8192 documents searches an int8 copy of its vectors and re-ranks exactly
    (index/vindex.h): stats names the scan kernel, a stored vector finds its own document with the
    exact score, and so after a restart (the copy derived from the snapshot or the store);
    SBERT_SCAN_ISA naming an unknown kernel keeps the daemon from serving, with a message naming
    the variable."""
    import random
    rnd = random.Random(14)
    c = d.client()
    vecs = []
    for at in range(0, 9000, 1000):
        docs = []
        for i in range(at, at + 1000):
            v = [rnd.gauss(0, 1) for _ in range(384)]
            norm = math.sqrt(sum(x * x for x in v))
            v = [x / norm for x in v]
            vecs.append(v)
            docs.append({"id": "v%d" % i, "text": "vector %d" % i, "vector": v})
        ok(c.call("add", documents=docs))
    st = ok(c.call("stats"))
    check(st["index"]["spec"] == "Flat" and st["index"].get("scan_kernel") in
          ("avx512vnni", "avxvnni", "avx2", "scalar"), "stats names the scan kernel: %r" % st["index"])

    def own(client):
        for i in (0, 4321, 8999):
            top = ok(client.call("query", vector=vecs[i], k=3))["results"]
            check(top[0]["id"] == "v%d" % i and abs(top[0]["score"] - 1.0) < 1e-5 and
                  top[1]["score"] < 0.5, "a stored vector finds its document: %r" % top)
    own(c)
    c.close()
    check(d.stop() == 0, "clean stop")
    d.start()
    c = d.client()
    check(ok(c.call("stats"))["index"].get("scan_kernel"), "the kernel after a restart")
    own(c)
    c.close()
    check(d.stop() == 0, "clean stop")
    env = dict(os.environ, SBERT_SCAN_ISA="sse9")
    p = subprocess.run([h.find_sbertd(), "--model", d.model, "--data", d.data, "--listen", d.url],
                       capture_output=True, timeout=120 * h.TIMEOUT_SCALE, env=env)
    check(p.returncode != 0 and b"SBERT_SCAN_ISA=sse9" in p.stderr,
          "an unknown scan kernel is refused: %r" % p.stderr[-600:])


def test_precision_int8(d):
    """precision = int8: the daemon serves with the int8 encoder (stats names it and its kernel),
    its embeddings stay within cosine 0.98 of the fp32 goldens' texts encoded by an fp32 daemon;
    the store records int8, so the same store refuses an fp32 daemon (naming both) until
    reindex_on_model_change re-encodes it."""
    c = d.client()
    st = ok(c.call("stats"))
    check(st["model"]["precision"] == "int8" and st["model"].get("int8_kernel"),
          "stats names int8 and its kernel: %r" % st["model"])
    texts = list(SENTENCES[:6])
    ok(c.call("add", documents=[{"id": "s%d" % i, "text": t} for i, t in enumerate(texts)]))
    e8 = ok(c.call("encode", texts=texts))["embeddings"]
    top = ok(c.call("query", text=texts[2], k=1))["results"][0]
    check(top["id"] == "s2" and top["score"] > 0.999, "int8 query finds its own text: %r" % top)
    c.close()
    check(d.stop() == 0, "clean stop")
    # the same store with fp32: refused, naming both precisions
    p = subprocess.run([h.find_sbertd(), "--model", d.model, "--data", d.data, "--listen", d.url],
                       capture_output=True, timeout=120 * h.TIMEOUT_SCALE)
    check(p.returncode != 0 and b"int8) but" in p.stderr and b"fp32)" in p.stderr,
          "an int8 store refuses fp32: %r" % p.stderr[-600:])
    # reindex_on_model_change: re-encoded in fp32, then it serves
    d2 = h.Daemon(d.model, tmp=d.tmp, extra=["--set", "reindex_on_model_change=yes"])
    d2.start()
    c = d2.client()
    st = ok(c.call("stats"))
    check(st["model"]["precision"] == "fp32" and st["documents"] == 6, "reindexed to fp32: %r" % st)
    e32 = ok(c.call("encode", texts=texts))["embeddings"]
    c.close()
    d2.stop()
    for a, b in zip(e8, e32):
        cos = sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) *
                                                 math.sqrt(sum(y * y for y in b)))
        check(cos > 0.98, "int8 vs fp32 cosine %.5f" % cos)


def test_config_example_parses(d):
    """docs/sbertd.conf.example: every key commented; uncommented, each is accepted."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs",
                        "sbertd.conf.example")
    lines = [l for l in open(path) if re.match(r"^#\s*[a-z_]+\s*=", l)]
    check(len(lines) >= 20, "the example documents %d keys" % len(lines))
    conf = "".join(l.lstrip("#").lstrip() for l in lines if not re.match(r"^#\s*(listen|model|data)\s*=", l))
    d.config = conf
    d.start()
    c = d.client()
    st = ok(c.call("stats"))
    check(st["limits"]["max_batch"] == 4096 and st["limits"]["max_k"] == 1000, "defaults: %r" % st["limits"])
    c.close()


# Queries of test_batch_query: they rank the stored sentences differently, and none is tied.
BATCH_QUERIES = ["A cat is outdoors", "I like Italian food", "a film I enjoyed",
                 "Someone plays an instrument", "television", "pets in the garden"]


def same_results(got, want, what):
    """got and want (lists of hits) name the same documents in the same order, with scores (the
    passage's too) within 1e-6 and every other member equal."""
    check([x["id"] for x in got] == [x["id"] for x in want],
          "%s: ids %r, a single query gives %r" % (what, [x["id"] for x in got],
                                                   [x["id"] for x in want]))
    for a, b in zip(got, want):
        check(abs(a["score"] - b["score"]) <= 1e-6, "%s: %s scores %r, single %r" % (
            what, a["id"], a["score"], b["score"]))
        check(abs(a["passage"]["score"] - b["passage"]["score"]) <= 1e-6,
              "%s: %s passage scores %r, single %r" % (what, a["id"], a["passage"]["score"],
                                                       b["passage"]["score"]))

        def rest(x):
            return {k: (v if k != "passage" else {pk: pv for pk, pv in v.items() if pk != "score"})
                    for k, v in x.items() if k != "score"}
        check(rest(a) == rest(b), "%s: %r, single %r" % (what, a, b))


def test_batch_query(d):
    """query with "texts" or "vectors" (max_batch = 40 here): each list of the reply equals the
    single query's reply for the same text or vector (ids, and scores within 1e-6), with and
    without a filter and min_score, in the order asked; truncated lists the cut texts; 41 items,
    an empty list, two forms at once, a bad text or vector (named by its index) are refused;
    the queries share max_reply_bytes (64K here) equally."""
    c = d.client()
    docs = [{"id": "s%d" % i, "text": t, "metadata": {"lang": "en" if i % 2 else "de", "n": i}}
            for i, t in enumerate(SENTENCES)]
    docs += [{"id": "x%d" % i, "text": "%s, again and again" % t, "metadata": {"lang": "en", "n": 10 + i}}
             for i, t in enumerate(SENTENCES)]
    for lo in range(0, len(docs), 8):
        ok(c.call("add", documents=docs[lo:lo + 8]))
    vecs = ok(c.call("encode", texts=BATCH_QUERIES))["embeddings"]
    variants = [{}, {"k": 3}, {"k": 4, "filter": {"lang": "en"}}, {"k": 5, "min_score": 0.2},
                {"k": 16, "filter": {"n": {"$gte": 3}}, "min_score": 0.1},
                {"k": 1, "include": ["vector", "metadata"]}, {"k": 3, "include": []}]
    for v in variants:
        batch = ok(c.call("query", texts=BATCH_QUERIES, **v), "texts %r" % v)
        check(len(batch["results"]) == len(BATCH_QUERIES) and batch["truncated"] == [],
              "texts %r: %r" % (v, batch))
        vbatch = ok(c.call("query", vectors=vecs, **v), "vectors %r" % v)
        check(len(vbatch["results"]) == len(vecs) and "truncated" not in vbatch,
              "vectors %r: %r" % (v, vbatch))
        for i, t in enumerate(BATCH_QUERIES):
            single = ok(c.call("query", text=t, **v))["results"]
            same_results(batch["results"][i], single, "texts[%d] %r" % (i, v))
            vsingle = ok(c.call("query", vector=vecs[i], **v))["results"]
            same_results(vbatch["results"][i], vsingle, "vectors[%d] %r" % (i, v))
        if "min_score" in v:
            check(all(h["score"] >= v["min_score"] for r in batch["results"] for h in r),
                  "min_score %r not applied" % v)
        if "filter" in v and "lang" in v["filter"]:
            check(all(h["metadata"]["lang"] == "en" for r in batch["results"] for h in r),
                  "filter %r not applied" % v)
    # order kept, and one text given twice answered twice
    rev = list(reversed(BATCH_QUERIES)) + [BATCH_QUERIES[0]]
    fwd = ok(c.call("query", texts=BATCH_QUERIES, k=3))["results"]
    back = ok(c.call("query", texts=rev, k=3))["results"]
    for i in range(len(BATCH_QUERIES)):
        same_results(back[len(BATCH_QUERIES) - 1 - i], fwd[i], "reversed %d" % i)
    same_results(back[-1], fwd[0], "repeated text")
    # a single-item batch is a list of one list; truncated names the cut text by its index
    one = ok(c.call("query", texts=["I love pasta"], k=1))
    check(one["results"][0][0]["id"] == "s2" and one["truncated"] == [], "one-item batch %r" % one)
    long_text = " ".join(["pasta"] * 600)
    tr = ok(c.call("query", texts=["I love pasta", long_text, "a cat"], k=1))
    check(tr["truncated"] == [1], "truncated %r" % tr["truncated"])
    # a filtered batch of max_batch (searched in pieces of 16 queries) equals its singles
    many = [BATCH_QUERIES[i % len(BATCH_QUERIES)] + " #%d" % i for i in range(40)]
    batch = ok(c.call("query", texts=many, k=3, filter={"lang": "en"}))["results"]
    check(len(batch) == 40, "40 filtered texts")
    for i, t in enumerate(many):
        same_results(batch[i], ok(c.call("query", text=t, k=3, filter={"lang": "en"}))["results"],
                     "filtered texts[%d]" % i)
    # exactly max_batch works, one more is refused before any work
    check(len(ok(c.call("query", vectors=[vecs[0]] * 40, k=1))["results"]) == 40, "40 vectors")
    err(c.call("query", texts=["t%d" % i for i in range(41)]), "too_large", "41 texts")
    err(c.call("query", vectors=[vecs[0]] * 41), "too_large", "41 vectors")
    # refused shapes
    err(c.call("query", texts=[]), "bad_request", "empty texts")
    err(c.call("query", vectors=[]), "bad_request", "empty vectors")
    err(c.call("query", text="a", texts=["b"]), "bad_request", "text and texts")
    err(c.call("query", vector=vecs[0], vectors=[vecs[0]]), "bad_request", "vector and vectors")
    err(c.call("query", texts=["a"], vectors=[vecs[0]]), "bad_request", "texts and vectors")
    err(c.call("query", texts="a"), "bad_request", "texts a string")
    e = err(c.call("query", vectors=vecs[0][:4]), "bad_vector", "vectors a flat vector")
    check(e["error"].get("index") == 0, "a flat vector: %r" % e)
    for name, texts, code in (("empty", ["a", "b", ""], "empty_text"),
                              ("too long", ["a", "b", "y" * 70000], "text_too_long"),
                              ("number", ["a", "b", 5], "bad_request")):
        e = err(c.call("query", texts=texts), code, "texts with an item " + name)
        check(e["error"].get("index") == 2 and "texts[2]" in e["error"]["message"],
              "texts item %s: %r" % (name, e))
    dim = len(vecs[0])
    for name, bad in (("short", vecs[0][:-1]), ("long", vecs[0] + [0.1]),
                      ("zeros", [0.0] * dim), ("not a float32", [3.5e38] + vecs[0][1:]),
                      ("string item", ["a"] * dim), ("nested", [vecs[0]]), ("null", None),
                      ("number", 0.5)):
        e = err(c.call("query", vectors=[vecs[0], vecs[1], bad, vecs[2]]), "bad_vector",
                "vectors with an item " + name)
        check(e["error"].get("index") == 2 and "vectors[2]" in e["error"]["message"],
              "vectors item %s: %r" % (name, e))
    # the reply bound is shared: 8 queries of every document (three of them 4 KB) exceed 64K / 8
    # each; a single such query (13 KB) does not
    ok(c.call("add", documents=[{"id": "big%d" % i, "text": "pasta %d " % i + "z" * 4096}
                                for i in range(3)]))
    every = len(docs) + 3
    check(len(ok(c.call("query", text="pasta", k=every))["results"]) == every, "single query")
    e = err(c.call("query", texts=["pasta"] * 8, k=every), "too_large", "batch over its share")
    check("max_reply_bytes" in e["error"]["message"], "too_large message %r" % e)
    # each hit's passage text stays (these documents are one passage each: their whole text), so
    # without the document texts half as many queries fit: 4 x 12 KB of passages < 64K
    err(c.call("query", texts=["pasta"] * 4, k=every), "too_large", "4 queries with text")
    ok(c.call("query", texts=["pasta"] * 4, k=every, include=[]), "4 queries without text")
    check(ok(c.call("health"))["documents"] == every, "a query changed the store")
    c.close()


# ---- data management: list, count, delete by filter, patch (issue 11) -------------------------

def axis(i, dim=384):
    """A unit vector that is cheap to send: documents whose vectors do not matter to the test."""
    v = [0.0] * dim
    v[i % dim] = 1.0
    return v


def add_axis_docs(c, ids, meta, batch=500):
    """Adds documents ids[j] with metadata meta(j) and precomputed vectors (no encoding)."""
    for at in range(0, len(ids), batch):
        docs = [{"id": ids[j], "text": "doc %s" % ids[j], "metadata": meta(j), "vector": axis(j)}
                for j in range(at, min(at + batch, len(ids)))]
        ok(c.call("add", documents=docs), "add axis docs")


def list_all(c, **members):
    """Every page of a listing: (ids in order, number of pages)."""
    out, pages, cursor = [], 0, None
    while True:
        m = dict(members)
        if cursor is not None:
            m["cursor"] = cursor
        r = ok(c.call("list", **m), "list page %d" % pages)
        out += [x["id"] for x in r["documents"]]
        pages += 1
        cursor = r.get("cursor")
        if cursor is None:
            return out, pages
        check(isinstance(cursor, str) and cursor, "cursor %r" % cursor)
        check(pages < 10000, "the listing does not end")


def test_list_pages(d):
    """list: id order, pages that cover the store exactly once, filter, include, cursors that
    survive deletes and inserts and concurrent writes, a filter that matches nothing."""
    c = d.client()
    ids = ["d%04d" % i for i in range(1000)]
    add_axis_docs(c, ids, lambda j: {"g": j % 3, "n": j})
    got, pages = list_all(c, limit=100)
    check(got == ids and pages == 10, "plain listing: %d ids in %d pages" % (len(got), pages))
    r = ok(c.call("list"))
    check(len(r["documents"]) == 100 and r["documents"][0] == {
        "id": "d0000", "text": "doc d0000", "metadata": {"g": 0, "n": 0}}, "default page %r" %
        r["documents"][:1])
    r = ok(c.call("list", limit=2, include=["vector"]))
    check(r["documents"][1] == {"id": "d0001", "vector": axis(1)}, "include vector: %r" %
          str(r["documents"][1])[:80])
    r = ok(c.call("list", limit=1000))
    check(len(r["documents"]) == 1000 and "cursor" not in r, "one page of everything")
    got, _ = list_all(c, limit=77, filter={"g": 1})
    check(got == [i for j, i in enumerate(ids) if j % 3 == 1], "filtered listing")

    # a cursor names a position: the document it came from may go, others may come
    r1 = ok(c.call("list", limit=10))
    last = r1["documents"][-1]["id"]
    ok(c.call("delete", ids=[last, "d0011"]))
    add_axis_docs(c, ["d0009a", "d0003a"], lambda j: {"g": 5})
    r2 = ok(c.call("list", limit=3, cursor=r1["cursor"]))
    check([x["id"] for x in r2["documents"]] == ["d0009a", "d0010", "d0012"],
          "after deletes and inserts: %r" % [x["id"] for x in r2["documents"]])

    # concurrent writes while listing: every document that stays is listed exactly once
    stop = threading.Event()
    errors = []

    def writer():
        w = d.client()
        n = 0
        try:
            while not stop.is_set():
                ok(w.call("add", documents=[{"id": "w%05d" % n, "text": "w", "vector": axis(n)}]))
                ok(w.call("delete", ids=["d%04d" % (500 + n % 400)]))
                n += 1
        except Exception as e:  # reported by the main thread
            errors.append(e)
        finally:
            w.close()
    t = threading.Thread(target=writer)
    t.start()
    try:
        got, pages = list_all(c, limit=50)
    finally:
        stop.set()
        t.join()
    check(not errors, "writer: %r" % errors)
    check(len(got) == len(set(got)), "a document was listed twice")
    check(got == sorted(got), "the listing is not in id order")
    stayed = [i for i in ids[:500] if i not in (last, "d0011")] + ids[900:]
    missing = set(stayed) - set(got)
    check(not missing, "documents that stayed were not listed: %r" % sorted(missing)[:5])

    # a filter that matches nothing: pages examine a bounded number of documents, empty pages
    # with a cursor lead to the end
    add_axis_docs(c, ["e%05d" % i for i in range(5000)], lambda j: {"g": 0})
    got, pages = list_all(c, limit=1, filter={"g": 99})
    check(got == [] and pages >= 2, "nothing matches: %d pages" % pages)
    c.close()


def test_count_and_delete_filter(d):
    """count with and without a filter; delete by filter in several chunks, idempotent by req_id,
    kept over a restart; the empty filter is refused."""
    c = d.client()
    ids = ["k%05d" % i for i in range(3000)]
    add_axis_docs(c, ids, lambda j: {"src": "a" if j % 2 else "b", "n": j})
    check(ok(c.call("count"))["count"] == 3000, "count")
    check(ok(c.call("count", filter={"src": "a"}))["count"] == 1500, "count with a filter")
    check(ok(c.call("count", filter={"n": {"$lt": 10}, "src": "b"}))["count"] == 5, "count $and")
    check(ok(c.call("count", filter={"src": "zzz"}))["count"] == 0, "count of nothing")
    # $text: a condition on the stored text (texts are "doc kNNNNN")
    check(ok(c.call("count", filter={"$text": {"$contains": "k0001"}}))["count"] == 10,
          "count with $text")
    got, _ = list_all(c, filter={"$text": {"$icontains": "DOC K0002"}, "src": "a"})
    check(got == ["k%05d" % i for i in range(21, 30, 2)], "list with $text: %r" % got)
    err(c.call("count", filter={"n": {"$bogus": 1}}), "bad_filter", "count bad filter")

    err(c.call("delete", filter={}), "bad_filter", "delete with the empty filter")
    err(c.call("delete", filter={"n": {"$gt": "x"}}), "bad_filter", "delete with a bad filter")
    err(c.call("delete", ids=["k00001"], filter={"src": "a"}), "bad_request", "ids and filter")
    err(c.call("delete"), "bad_request", "neither ids nor filter")
    check(ok(c.call("count"))["count"] == 3000, "a refused delete deleted something")

    msg = {"v": 1, "op": "delete", "req_id": "del-a", "filter": {"src": "a"}}
    r1 = json.loads(c.send_raw(json.dumps(msg).encode()))
    check(ok(r1)["deleted"] == 1500, "delete by filter: %r" % r1)
    check(ok(c.call("count"))["count"] == 1500, "count after the delete")
    check(ok(c.call("count", filter={"src": "a"}))["count"] == 0, "matches after the delete")
    check(ok(c.call("get", ids=["k00001"]))["documents"][0]["found"] is False, "get deleted")
    hits = ok(c.call("query", vector=axis(1), k=20))["results"]
    check(hits and all(int(x["id"][1:]) % 2 == 0 for x in hits), "query returns deleted: %r" %
          [x["id"] for x in hits][:5])
    hits = ok(c.call("query", vector=axis(1), k=5, filter={"src": "a"}))["results"]
    check(hits == [], "filtered query returns deleted documents")

    # a retry gets the first reply and deletes nothing new
    add_axis_docs(c, ["late"], lambda j: {"src": "a"})
    r2 = json.loads(c.send_raw(json.dumps(msg).encode()))
    check(r2 == r1, "the retry got another reply: %r" % r2)
    check(ok(c.call("count", filter={"src": "a"}))["count"] == 1, "the retry deleted again")
    c.close()
    check(d.stop() == 0, "SIGTERM exit status")
    d.start()
    c = d.client()
    check(ok(c.call("count"))["count"] == 1501, "count after restart")
    r3 = json.loads(c.send_raw(json.dumps(msg).encode()))
    check(r3 == r1, "the retry after restart got another reply: %r" % r3)
    check(ok(c.call("count", filter={"src": "a"}))["count"] == 1, "retry after restart deleted")
    check(ok(c.call("get", ids=["late"]))["documents"][0]["found"], "late lost at restart")
    hits = ok(c.call("query", vector=axis(1), k=20))["results"]
    check(hits and all(int(x["id"][1:]) % 2 == 0 for x in hits), "query after restart: %r" %
          [x["id"] for x in hits][:5])
    c.close()


def test_patch(d):
    """patch: set and unset keys without re-encoding; get and filters see it, query scores do
    not change; missing ids reported; idempotent by req_id; the metadata bound; restart."""
    c = d.client()
    docs = [{"id": "s%d" % i, "text": t, "metadata": {"i": i, "draft": True}}
            for i, t in enumerate(SENTENCES)]
    ok(c.call("add", documents=docs))
    before = {x["id"]: x["score"] for x in
              ok(c.call("query", text="A cat in the garden", k=8))["results"]}
    vec_before = ok(c.call("get", ids=["s0"], include=["vector"]))["documents"][0]["vector"]
    msg = {"v": 1, "op": "patch", "req_id": "p-1", "documents": [
        {"id": "s0", "set": {"reviewed": True, "i": 100}, "unset": ["draft"]},
        {"id": "nope", "set": {"reviewed": True}},
        {"id": "s1", "unset": ["draft", "i", "absent"]},
        {"id": "s0", "set": {"tags": ["a", "b"]}}]}
    r1 = ok(json.loads(c.send_raw(json.dumps(msg).encode())))
    check(r1["patched"] == 3 and r1["found"] == [True, False, True, True], "patch reply %r" % r1)
    g = ok(c.call("get", ids=["s0", "s1", "s2"]))["documents"]
    check(g[0]["metadata"] == {"i": 100, "reviewed": True, "tags": ["a", "b"]} and
          g[0]["text"] == SENTENCES[0], "patched s0: %r" % g[0])
    check(g[1]["metadata"] is None, "s1 with every key unset has none: %r" % g[1])
    check(g[2]["metadata"] == {"i": 2, "draft": True}, "s2 untouched: %r" % g[2])
    check(ok(c.call("count", filter={"draft": True}))["count"] == 6, "filter sees the unset")
    got, _ = list_all(c, filter={"reviewed": True})
    check(got == ["s0"], "list with a filter sees the set: %r" % got)
    after = {x["id"]: x["score"] for x in
             ok(c.call("query", text="A cat in the garden", k=8))["results"]}
    check(after == before, "scores changed by a patch: %r vs %r" % (after, before))
    check(ok(c.call("get", ids=["s0"], include=["vector"]))["documents"][0]["vector"] == vec_before,
          "the vector changed")
    hits = ok(c.call("query", text="A cat in the garden", k=1, filter={"reviewed": True}))
    check([x["id"] for x in hits["results"]] == ["s0"], "filtered query after patch")
    # a retry gets the first reply and patches nothing again
    ok(c.call("patch", documents=[{"id": "s0", "unset": ["tags"]}]))
    r2 = json.loads(c.send_raw(json.dumps(msg).encode()))
    check(r2 == r1, "the retry got another reply: %r" % r2)
    check("tags" not in ok(c.call("get", ids=["s0"]))["documents"][0]["metadata"],
          "the retry was executed again")
    # bad patches change nothing
    big = {"k%d" % i: "x" * 100 for i in range(700)}  # ~75 KB > max_metadata_bytes (64 KB)
    e = err(c.call("patch", documents=[{"id": "s3", "set": {"a": 1}}, {"id": "s2", "set": big}]),
            "bad_metadata", "set over max_metadata_bytes")
    check(e["error"].get("index") == 1, "the error names documents[1]: %r" % e)
    half = {"h%d" % i: "x" * 100 for i in range(400)}  # ~42 KB each: the sum is over the bound
    ok(c.call("patch", documents=[{"id": "s4", "set": half}]))
    half2 = {"j%d" % i: "x" * 100 for i in range(400)}
    e = err(c.call("patch", documents=[{"id": "s3", "set": {"a": 1}}, {"id": "s4", "set": half2}]),
            "bad_metadata", "patched metadata over max_metadata_bytes")
    check(e["error"].get("index") == 1, "the error names documents[1]: %r" % e)
    check(ok(c.call("get", ids=["s3"]))["documents"][0]["metadata"] == {"i": 3, "draft": True},
          "a refused patch changed something")
    for bad, code in (({"id": "s3"}, "bad_request"), ({"set": {"a": 1}}, "bad_request"),
                      ({"id": "s3", "set": [1]}, "bad_metadata"),
                      ({"id": "s3", "unset": "draft"}, "bad_request"),
                      ({"id": "s3", "unset": [1]}, "bad_request"),
                      ({"id": "s3", "set": {"a": 1}, "text": "x"}, "bad_request"),
                      ({"id": "", "set": {"a": 1}}, "bad_id")):
        err(c.call("patch", documents=[bad]), code, "patch %r" % bad)
    c.close()
    check(d.stop() == 0, "SIGTERM exit status")
    d.start()
    c = d.client()
    g = ok(c.call("get", ids=["s0"]))["documents"][0]
    check(g["metadata"] == {"i": 100, "reviewed": True}, "patch after restart: %r" % g)
    after = {x["id"]: x["score"] for x in
             ok(c.call("query", text="A cat in the garden", k=8))["results"]}
    check(after == before, "scores changed after restart")
    c.close()


def sbertctl(d, *args, stdin=None, expect=0):
    """Runs the sbertctl named by $SBERTCTL against d; returns its stdout."""
    exe = os.environ.get("SBERTCTL")
    check(exe and os.access(exe, os.X_OK), "SBERTCTL must name the built sbertctl")
    p = subprocess.run([exe, "--socket", d.url] + list(args), input=stdin, capture_output=True,
                       text=True, timeout=300)
    check(p.returncode == expect, "sbertctl %s: exit %d\n%s" % (" ".join(args), p.returncode,
                                                              p.stderr[-2000:]))
    return p.stdout


def test_sbertctl_round_trip(d):
    """sbertctl list/count/patch/delete --filter, and list --all --json read back by add --file
    into a fresh daemon: the same documents (id, text, metadata)."""
    c = d.client()
    docs = [{"id": "r%03d" % i, "text": "%s (%d)" % (SENTENCES[i % 8], i),
             "metadata": {"i": i, "src": "ab"[i % 2], "nested": {"x": [i, "y"]}}}
            for i in range(40)]
    docs.append({"id": "bare", "text": "no metadata at all"})
    docs.append({"id": "quote\"tab\t", "text": "line\nbreak \u00e9 \U0001F600"})
    ok(c.call("add", documents=docs))
    check(sbertctl(d, "count").strip() == "42", "count")
    check(json.loads(sbertctl(d, "--json", "count", "--filter", '{"src":"a"}')) == {"count": 20},
          "count --json --filter")
    out = sbertctl(d, "patch", "r001", "flag=true", "n=3", "word=hello", "--unset", "nested")
    check("patched r001" in out, "patch output %r" % out)
    sbertctl(d, "patch", "nope", "k=1", expect=1)
    g = ok(c.call("get", ids=["r001"]))["documents"][0]["metadata"]
    check(g == {"i": 1, "src": "b", "flag": True, "n": 3, "word": "hello"}, "patched: %r" % g)
    table = sbertctl(d, "list", "--limit", "5")
    check("ID" in table.splitlines()[0] and "bare" in table, "list table: %r" % table[:200])
    lines = sbertctl(d, "--json", "list", "--limit", "5").splitlines()
    check(len(lines) == 6 and "cursor" in json.loads(lines[-1]), "list --json page: %r" % lines)
    nxt = sbertctl(d, "--json", "list", "--limit", "5", "--cursor",
                   json.loads(lines[-1])["cursor"]).splitlines()
    check(json.loads(nxt[0])["id"] == "r003", "the next page: %r" % nxt[:1])
    export = sbertctl(d, "--json", "list", "--all", "--limit", "7")
    check(len(export.splitlines()) == 42 and "cursor" not in export, "export: %d lines" %
          len(export.splitlines()))
    # a page's output with its cursor line reads back too
    path = os.path.join(d.tmp, "export.jsonl")
    with open(path, "w") as f:
        f.write(export + "\n".join(lines) + "\n")
    before = [x for x in ok(c.call("list", limit=100))["documents"]]
    d2 = h.Daemon(MODEL)
    try:
        d2.start()
        sbertctl(d2, "add", "--file", path)
        c2 = d2.client()
        after = ok(c2.call("list", limit=100))["documents"]
        c2.close()
        check(after == before, "the round trip differs: %r" % [
            (x, y) for x, y in zip(before, after) if x != y][:2])
        check(d2.stop() == 0, "fresh daemon exit status")
    finally:
        d2.cleanup()
    out = sbertctl(d, "delete", "--filter", '{"src":"a"}')
    check(out.strip() == "deleted 20", "delete --filter: %r" % out)
    check(json.loads(sbertctl(d, "--json", "delete", "--filter", '{"src":"a"}')) == {"deleted": 0},
          "delete --filter again")
    sbertctl(d, "delete", "--filter", "{}", expect=1)
    check(sbertctl(d, "count").strip() == "22", "count after delete --filter")
    c.close()


# ---- runner ---------------------------------------------------------------------------------

KW_DOCS = {
    "a": "apple banana apple cherry",
    "b": "banana split with cherry on top of the banana",
    "c": "a long text about apples and pears and the apple orchard in autumn",
    "d": "nothing in common here at all",
    "e": "Apple APPLE apple",
    "f": "cherry cherry cherry cherry cherry banana",
}


def bm25_reference(docs, query, k1=1.5, b=0.75):
    """Lucene's BM25 as bm25s computes it, written out: idf = ln(1 + (N - df + .5) / (df + .5)),
    each query term occurrence adds idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)). Terms are
    words of 2+ word characters, case-folded (keyword_language = none: no stop words, no stems)."""
    terms = {i: re.findall(r"\w\w+", t.casefold()) for i, t in docs.items()}
    n = len(docs)
    avgdl = sum(len(v) for v in terms.values()) / n
    scores = {}
    for i, words in terms.items():
        s = 0.0
        for q in re.findall(r"\w\w+", query.casefold()):
            df = sum(1 for w in terms.values() if q in w)
            tf = words.count(q)
            if tf:
                idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
                s += idf * tf / (tf + k1 * (1 - b + b * len(words) / avgdl))
        if s > 0:
            scores[i] = s
    return scores


def test_keyword_bm25(d):
    """mode "keyword": BM25 scores equal the reference above on a small corpus, across a delete
    and an upsert and a restart (the keyword index is written in the document's transaction and
    read back from LMDB); hits come best first, documents without a query term are not hits;
    filters apply; a query of stop-word-free nonsense finds nothing; bad modes are refused."""
    c = d.client()
    docs = dict(KW_DOCS)
    ok(c.call("add", documents=[{"id": i, "text": t, "metadata": {"n": n}}
                                for n, (i, t) in enumerate(sorted(docs.items()))]))

    def same(query, what):
        r = ok(c.call("query", text=query, mode="keyword", k=10, include=[]))["results"]
        want = bm25_reference(docs, query)
        got = {h["id"]: h["keyword_score"] for h in r}
        check(set(got) == set(want), "%s: hits %r, reference %r" % (what, sorted(got), sorted(want)))
        for i, s in want.items():
            check(abs(got[i] - s) <= 1e-5 * max(1.0, s), "%s: %s scores %r, reference %r" % (what, i, got[i], s))
        scores = [h["score"] for h in r]
        check(scores == sorted(scores, reverse=True), "%s: best first: %r" % (what, scores))
        check(all(h["score"] == h["keyword_score"] and h["keyword_rank"] == n + 1 and h["dense_score"] is None
                  and h["dense_rank"] is None for n, h in enumerate(r)), "%s: keyword mode's fields: %r" % (what, r))

    same("apple banana", "first")
    same("cherry", "one term")
    same("apple apple pears", "a repeated query term")
    ok(c.call("delete", ids=["a"]))
    del docs["a"]
    same("apple banana", "after a delete")
    ok(c.call("add", documents=[{"id": "b", "text": "pears only, no fruit of the other kind"}]))
    docs["b"] = "pears only, no fruit of the other kind"
    same("banana pears", "after an upsert")
    check(ok(c.call("query", text="zzz qqq", mode="keyword"))["results"] == [], "no term, no hit")
    r = ok(c.call("query", text="cherry", mode="keyword", filter={"n": {"$gte": 5}}))["results"]
    check([h["id"] for h in r] == ["f"], "filter in keyword mode: %r" % r)
    c.close()
    d.stop()
    d.start()
    c = d.client()
    same("apple banana cherry", "after a restart")
    # a 10 KB word is cut to 128 bytes in documents and queries alike, so they still meet
    ok(c.call("add", documents=[{"id": "huge", "text": "w" * 10240 + " tail"}]))
    r = ok(c.call("query", text="w" * 10240, mode="keyword"))["results"]
    check([h["id"] for h in r] == ["huge"], "a 10 KB word: %r" % r)
    err(c.call("query", text="x", mode="lexical"), "bad_request", "unknown mode")
    err(c.call("query", vector=[0.1] * 384, mode="keyword"), "bad_request", "keyword mode without text")
    err(c.call("query", text="x", mode="hybrid", fusion="max"), "bad_request", "unknown fusion")
    err(c.call("query", text="x", mode="hybrid", weight=2), "bad_request", "weight above 1")
    c.close()


def test_hybrid_search(d):
    """mode "hybrid": reciprocal-rank fusion of the dense and keyword rankings. A document that
    only BM25 finds (a rare code the model cannot know) and one that only the vectors find (a
    paraphrase without a shared word) both reach the top; every hit carries its cosine (equal to
    a dense query's score for it), its BM25 score and its rank in each list; the fused score is
    sum 1/(60 + rank); weighted fusion and min_score (a cosine) apply; the stopping word list
    (English default) and stemming match "running" with "runs"."""
    c = d.client()
    texts = {"code": "Error XK-4471 appears when the relay board overheats",
             "para": "A feline rested upon the rug",
             "runs": "She runs every morning before work",
             "other": "Quarterly revenue grew by four percent"}
    ok(c.call("add", documents=[{"id": i, "text": t} for i, t in texts.items()]))
    r = ok(c.call("query", text="XK-4471", mode="hybrid", k=4))["results"]
    check(r[0]["id"] == "code" and r[0]["keyword_rank"] == 1, "BM25 brings the code first: %r" % r)
    r = ok(c.call("query", text="a cat sat on the mat", mode="hybrid", k=4))["results"]
    check(r[0]["id"] == "para" and r[0]["dense_rank"] == 1 and r[0]["keyword_rank"] is None,
          "the vectors bring the paraphrase first: %r" % r)
    dense = {h["id"]: h["score"] for h in ok(c.call("query", text="a cat sat on the mat", k=4))["results"]}
    for h in r:
        check(abs(h["dense_score"] - dense[h["id"]]) < 1e-5, "dense_score equals the dense query's: %r" % h)
        want = sum(1.0 / (60 + h[k]) for k in ("dense_rank", "keyword_rank") if h[k])
        check(abs(h["score"] - want) < 1e-6, "RRF score: %r (want %r)" % (h, want))
    r = ok(c.call("query", text="running", mode="keyword"))["results"]
    check([h["id"] for h in r] == ["runs"], "stemmed match: %r" % r)
    r = ok(c.call("query", text="XK-4471 relay", mode="hybrid", fusion="weighted", weight=0.0, k=4))["results"]
    check(r[0]["id"] == "code" and abs(r[0]["score"] - 1.0) < 1e-6, "weight 0 is BM25 alone: %r" % r)
    r = ok(c.call("query", text="a cat sat on the mat", mode="hybrid", min_score=0.3, k=4))["results"]
    check(r and all(h["dense_score"] >= 0.3 for h in r), "min_score is a cosine: %r" % r)
    # a batch in keyword and hybrid mode: each list is the single query's
    qs = ["XK-4471 relay", "a cat sat on the mat", "running"]
    for mode in ("keyword", "hybrid"):
        batch = ok(c.call("query", texts=qs, mode=mode, k=3, include=[]))["results"]
        for q, got in zip(qs, batch):
            one = ok(c.call("query", text=q, mode=mode, k=3, include=[]))["results"]
            check([h["id"] for h in got] == [h["id"] for h in one]
                  and all(abs(a["score"] - b["score"]) < 1e-6 for a, b in zip(got, one)),
                  "%s batch item %r: %r vs %r" % (mode, q, got, one))
    # diversity (MMR): near-duplicates give way; without it they fill the top
    ok(c.call("add", documents=[{"id": "dup1", "text": "The cat sits on the mat"},
                                {"id": "dup2", "text": "The cat sits on the mat."},
                                {"id": "dog", "text": "A dog sleeps on the mat"}]))
    plain = [h["id"] for h in ok(c.call("query", text="a cat on a mat", k=2))["results"]]
    check(sorted(plain) == ["dup1", "dup2"], "the duplicates rank first: %r" % plain)
    for mode in ("dense", "hybrid"):
        r = ok(c.call("query", text="a cat on a mat", k=2, mode=mode, diversity=0.7))["results"]
        ids = [h["id"] for h in r]
        check(ids[0] in ("dup1", "dup2") and ids[1] not in ("dup1", "dup2"), "%s diversity: %r" % (mode, ids))
    r = ok(c.call("query", text="a cat on a mat", k=2, diversity=0))["results"]
    check(sorted(h["id"] for h in r) == ["dup1", "dup2"], "diversity 0 keeps the ranking: %r" % r)
    c.close()


def test_keyword_language_switch(d):
    """keyword_language is recorded with the keyword index: stats describes it; "off" drops it
    (keyword queries are refused, dense ones serve, writes go on); another language rebuilds it
    from the stored texts at start (documents written while it was off included); a language
    libstemmer does not know stops the start with a message naming it."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "r", "text": "She runs every morning"},
                                {"id": "s", "text": "Running shoes for sale"}]))
    kw = ok(c.call("stats"))["keyword"]
    check(kw["language"] == "english" and kw["documents"] == 2 and kw["postings"] >= 5 and kw["bytes"] > 0,
          "stats keyword: %r" % kw)
    got = sorted(h["id"] for h in ok(c.call("query", text="run", mode="keyword"))["results"])
    check(got == ["r", "s"], "english stems runs and running to run: %r" % got)
    c.close()
    check(d.stop() == 0, "stop")
    d.config = "keyword_language = off\n"
    d.start()
    c = d.client()
    check(ok(c.call("stats"))["keyword"] is None, "off: no keyword index")
    err(c.call("query", text="run", mode="keyword"), "bad_request", "keyword query with the index off")
    ok(c.call("add", documents=[{"id": "t", "text": "running late again"}]))
    check(ok(c.call("query", text="jogging", k=3))["results"], "dense queries serve")
    c.close()
    check(d.stop() == 0, "stop")
    d.config = "keyword_language = none\n"
    d.start()
    c = d.client()
    kw = ok(c.call("stats"))["keyword"]
    check(kw["language"] == "none" and kw["documents"] == 3, "rebuilt under none: %r" % kw)
    got = sorted(h["id"] for h in ok(c.call("query", text="running", mode="keyword"))["results"])
    check(got == ["s", "t"], "none: no stemming, the written-while-off document found: %r" % got)
    c.close()
    check(d.stop() == 0, "stop")
    d.config = "keyword_language = klingon\n"
    try:
        d.start(timeout=60)
        check(False, "a language libstemmer lacks must stop the start")
    except AssertionError as e:
        check("klingon" in str(e), "the message names the language: %s" % str(e)[-500:])


TESTS = [
    ("seed_table_matches_article", test_seed_table_matches_article, None),
    ("cli", test_cli, None),
    ("refuses_remote_tcp", test_refuses_remote_tcp, None),
    ("every_op", test_every_op, {}),
    ("restart_keeps_everything", test_restart_keeps_everything, {}),
    ("socket_mode", test_socket_mode, {}),
    ("idempotent_writes", test_idempotent_writes, {}),
    ("add_precomputed_vectors", test_add_precomputed_vectors, {}),
    ("batch_query", test_batch_query,
     {"config": "max_batch = 40\nmax_reply_bytes = 65536\n"}),
    ("bad_input_catalogue", test_bad_input_catalogue, {}),
    ("message_sizes", test_message_sizes, {"config": "max_message_size = 4M\n"}),
    ("concurrent_clients", test_concurrent_clients, {}),
    ("sigterm_answers_in_flight", test_sigterm_answers_in_flight, {}),
    ("sighup_reloads_limits", test_sighup_reloads_limits, {"config": "max_k = 1000\n"}),
    ("query_not_blocked_by_ingest", test_query_not_blocked_by_ingest, {}),
    ("busy_when_over_max_concurrent", test_busy_when_over_max_concurrent, {"config": "max_concurrent = 1\n"}),
    # the same with a byte bound: the ~20 KB encode is let through alone, a health beside it is not
    ("busy_when_over_max_inflight_bytes", test_busy_when_over_max_concurrent,
     {"config": "max_inflight_bytes = 8192\n"}),
    ("auth_token", test_auth_token, {"config": "auth_token = s3cret-token\n"}),
    ("config_example_parses", test_config_example_parses, {"nostart": True}),
    ("precision_int8", test_precision_int8, {"config": "precision = int8\n"}),
    ("keyword_bm25", test_keyword_bm25, {"config": "keyword_language = none\n"}),
    ("hybrid_search", test_hybrid_search, {}),
    ("keyword_language_switch", test_keyword_language_switch, {}),
]

# Run only when named (ctest daemon_manage, tests/daemon/CMakeLists.txt).
NAMED_TESTS = [
    ("list_pages", test_list_pages, {}),
    ("count_and_delete_filter", test_count_and_delete_filter, {}),
    ("patch", test_patch, {}),
    ("sbertctl_round_trip", test_sbertctl_round_trip, {}),
    ("flat_int8_scan", test_flat_int8_scan, {}),
]


def main():
    global MODEL, SEEDS
    MODEL, SEEDS = sys.argv[1], sys.argv[2]
    check(os.path.isdir(MODEL), "model directory %s is missing" % MODEL)
    check(os.path.isdir(SEEDS), "seeds directory %s is missing" % SEEDS)
    only = set(sys.argv[3:])
    failed = 0
    for name, fn, daemon in TESTS + NAMED_TESTS:
        if (only and name not in only) or (not only and (name, fn, daemon) in NAMED_TESTS):
            continue
        t0 = time.time()
        d = None
        try:
            if daemon is None:
                fn()
            else:
                d = h.Daemon(MODEL, config=daemon.get("config"))
                if not daemon.get("nostart"):
                    d.start()
                fn(d)
                if d.alive():
                    rc = d.stop()
                    check(rc == 0, "exit status %d after SIGTERM" % rc)
            print("PASS %s (%.1f s)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
            if d:
                print("---- sbertd log (tail) ----\n" + d.read_log()[-4000:], flush=True)
        finally:
            if d:
                d.cleanup()
    print("%d failed" % failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
