#!/usr/bin/env python3
"""Hostile input, limits and resource exhaustion against the real sbertd (issue 6), through the
raw nanomsg client of sbertd_harness.py.

Usage: test_hostile.py MODEL_DIR SEEDS_DIR [TEST...]   (SBERTD names the sbertd binary)

Each test starts the real daemon on a fresh temporary data directory and ipc socket. The
disk-full test mounts a small tmpfs, so it needs root (as CI and the dev machines run).
"""
import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sbertd_harness as h  # noqa: E402
import test_sbertd as t  # noqa: E402  (check, ok, err, SENTENCES, the first catalogue)

check, ok, err, SENTENCES = t.check, t.ok, t.err, t.SENTENCES
MODEL = None
DIM = 384  # all-MiniLM-L6-v2; the tests check it against stats


# ASan's quarantine holds freed memory back (256 MiB by default) and its shadow memory grows with
# the heap, so RSS bounds measure the sanitizer, not sbertd: under ASan they are not checked (the
# functional checks of the same tests still run).
RSS_BOUNDS = h.SANITIZER != "address"


def check_rss(cond, what):
    """check() for an RSS bound; under ASan it says that the bound was not checked."""
    if RSS_BOUNDS:
        check(cond, what)
    else:
        print("  not checked under ASan (RSS bound): %s" % what, flush=True)


class Skip(Exception):
    """The test (or the part of it that remains) means nothing in this build: reported as SKIP
    with the reason, not as a failure."""


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def j(**m):
    x = {"v": 1}
    x.update(m)
    return json.dumps(x).encode()


def zeros(n):
    return b",".join([b"0"] * n)


def hostile_inputs():
    """(name, raw message bytes, expected code, expected index or None): the cases of issue 6 that
    the first catalogue (test_sbertd.bad_inputs) does not already send."""
    deep = 100000
    utf8_bad = [("lone continuation", b"\x80"), ("truncated 3-byte", b"\xe2\x82"),
                ("above U+10FFFF", b"\xf4\x90\x80\x80"), ("overlong NUL", b"\xc0\x80")]
    cases = [
        # truncated JSON, at every kind of place
        ("truncated in a string", b'{"v":1,"op":"add","documents":[{"text":"ab', "bad_json", None),
        ("truncated after a key", b'{"v":1,"op":', "bad_json", None),
        ("truncated in a number", b'{"v":1,"op":"query","text":"a","k":1', "bad_json", None),
        ("truncated in an escape", b'{"v":1,"op":"query","text":"a\\u00', "bad_json", None),
        ("only an opening brace", b"{", "bad_json", None),
        # deep nesting: cJSON stops at 1000 levels (CJSON_NESTING_LIMIT), never recursing further
        ("100k [ unclosed", b"[" * deep, "bad_json", None),
        ("100k { unclosed", b'{"a":' * deep, "bad_json", None),
        ("100k { closed, in metadata", b'{"v":1,"op":"add","documents":[{"text":"x","metadata":'
         + b'{"a":' * deep + b"1" + b"}" * deep + b"}]}", "bad_json", None),
        ("100k [{ mixed, as the request", b'[{"a":' * deep, "bad_json", None),
        ("1000 $or levels", b'{"v":1,"op":"query","text":"x","filter":' + b'{"$or":[' * 1000
         + b"{}" + b"]}" * 1000 + b"}", "bad_json", None),
        # huge numbers: strtod gives inf (1e400), -0 and 2^64 are numbers, none is a valid k
        ("k 1e400", b'{"v":1,"op":"query","text":"a","k":1e400}', "bad_k", None),
        ("k -1e400", b'{"v":1,"op":"query","text":"a","k":-1e400}', "bad_k", None),
        ("k -0", b'{"v":1,"op":"query","text":"a","k":-0}', "bad_k", None),
        ("k 2^64", b'{"v":1,"op":"query","text":"a","k":18446744073709551616}', "bad_k", None),
        ("k 2^63-1", b'{"v":1,"op":"query","text":"a","k":9223372036854775807}', "bad_k", None),
        ("k 1e-400 (0)", b'{"v":1,"op":"query","text":"a","k":1e-400}', "bad_k", None),
        ("v 1e400", b'{"v":1e400,"op":"health"}', "bad_version", None),
        ("v string", b'{"v":"1","op":"health"}', "bad_version", None),
        ("v true", b'{"v":true,"op":"health"}', "bad_version", None),
        ("id 2^64", b'{"v":1,"op":"add","documents":[{"id":18446744073709551616,"text":"x"}]}',
         "bad_id", 0),
        ("id 2^53+2", b'{"v":1,"op":"get","ids":[9007199254740994]}', "bad_id", 0),
        ("id 1e400", b'{"v":1,"op":"delete","ids":[1e400]}', "bad_id", 0),
        ("min_score 1e400", b'{"v":1,"op":"query","text":"a","min_score":1e400}', "bad_score", None),
        ("min_score string", j(op="query", text="a", min_score="0.5"), "bad_request", None),
        ("pairs n 1e400", b'{"v":1,"op":"pairs","n":1e400}', "bad_request", None),
        ("pairs n 2^64", b'{"v":1,"op":"pairs","n":18446744073709551616}', "bad_request", None),
        ("per_doc_k 2^64", b'{"v":1,"op":"pairs","per_doc_k":18446744073709551616}', "bad_k", None),
        ("filter $gt 1e400", b'{"v":1,"op":"query","text":"a","filter":{"y":{"$gt":1e400}}}',
         "bad_filter", None),
        ("metadata 1e400", b'{"v":1,"op":"add","documents":[{"text":"x","metadata":{"x":1e400}}]}',
         "bad_metadata", 0),
        ("metadata -1e400 nested", b'{"v":1,"op":"add","documents":[{"text":"x"},{"text":"y",'
         b'"metadata":{"a":[1,{"b":-1e400}]}}]}', "bad_metadata", 1),
        # NaN / Infinity are not JSON: cJSON refuses them as syntax errors
        ("vector Infinity", b'{"v":1,"op":"query","vector":[Infinity,' + zeros(DIM - 1) + b"]}",
         "bad_json", None),
        ("vector -Infinity", b'{"v":1,"op":"query","vector":[-Infinity,' + zeros(DIM - 1) + b"]}",
         "bad_json", None),
        ("vector nan", b'{"v":1,"op":"query","vector":[nan,' + zeros(DIM - 1) + b"]}", "bad_json", None),
        ("vector -NaN", b'{"v":1,"op":"query","vector":[-NaN,' + zeros(DIM - 1) + b"]}", "bad_json", None),
        ("vector 3.5e38 (not a float32)", b'{"v":1,"op":"query","vector":[3.5e38,' + zeros(DIM - 1)
         + b"]}", "bad_vector", None),
        ("vector all zero", b'{"v":1,"op":"query","vector":[' + zeros(DIM) + b"]}", "bad_vector", None),
        ("vector underflows to zero", b'{"v":1,"op":"query","vector":['
         + b",".join([b"1e-400"] * DIM) + b"]}", "bad_vector", None),
        # wrong dimensions
        ("vector empty", j(op="query", vector=[]), "bad_vector", None),
        ("vector dim-1", j(op="query", vector=[0.1] * (DIM - 1)), "bad_vector", None),
        ("vector 10x dim", j(op="query", vector=[0.1] * (DIM * 10)), "bad_vector", None),
        ("vector nested", j(op="query", vector=[[0.1] * DIM]), "bad_vector", None),
        ("vector object", j(op="query", vector={"0": 1}), "bad_vector", None),
        ("vector null item", j(op="query", vector=[None] * DIM), "bad_vector", None),
        # a batch of vectors: each item as "vector", named by its index
        ("vectors nan at item 1", b'{"v":1,"op":"query","vectors":[[0.5,' + zeros(DIM - 1)
         + b'],[nan,' + zeros(DIM - 1) + b"]]}", "bad_json", None),
        ("vectors Infinity at item 2", b'{"v":1,"op":"query","vectors":[[0.5,' + zeros(DIM - 1)
         + b'],[0.5,' + zeros(DIM - 1) + b'],[Infinity,' + zeros(DIM - 1) + b"]]}", "bad_json", None),
        ("vectors 1e999 at item 1", b'{"v":1,"op":"query","vectors":[[0.5,' + zeros(DIM - 1)
         + b'],[1e999,' + zeros(DIM - 1) + b"]]}", "bad_vector", 1),
        ("vectors 3.5e38 at item 1", b'{"v":1,"op":"query","vectors":[[0.5,' + zeros(DIM - 1)
         + b'],[3.5e38,' + zeros(DIM - 1) + b"]]}", "bad_vector", 1),
        ("vectors all zero at item 1", b'{"v":1,"op":"query","vectors":[[0.5,' + zeros(DIM - 1)
         + b'],[' + zeros(DIM) + b"]]}", "bad_vector", 1),
        ("vectors underflow at item 0", b'{"v":1,"op":"query","vectors":[['
         + b",".join([b"1e-400"] * DIM) + b"]]}", "bad_vector", 0),
        ("vectors nested twice", j(op="query", vectors=[[[0.1] * DIM]]), "bad_vector", 0),
        ("vectors flat", j(op="query", vectors=[0.1] * DIM), "bad_vector", 0),
        ("vectors dim-1 at item 1", j(op="query", vectors=[[0.1] * DIM, [0.1] * (DIM - 1)]),
         "bad_vector", 1),
        ("vectors 10x dim at item 0", j(op="query", vectors=[[0.1] * (DIM * 10)]), "bad_vector", 0),
        ("vectors null item", j(op="query", vectors=[[0.1] * DIM, None]), "bad_vector", 1),
        ("vectors empty item", j(op="query", vectors=[[]]), "bad_vector", 0),
        ("vectors object", j(op="query", vectors={"0": [0.1] * DIM}), "bad_request", None),
        ("vectors string", j(op="query", vectors="0.1"), "bad_request", None),
        ("vectors and vector", j(op="query", vectors=[[0.1] * DIM], vector=[0.1] * DIM),
         "bad_request", None),
        ("texts and text", j(op="query", texts=["a"], text="a"), "bad_request", None),
        ("texts and vectors", j(op="query", texts=["a"], vectors=[[0.1] * DIM]), "bad_request", None),
        ("texts item object", j(op="query", texts=["a", {"text": "b"}]), "bad_request", 1),
        ("texts item nested list", j(op="query", texts=[["a"]]), "bad_request", 0),
        ("texts item 1 MB", j(op="query", texts=["a", "y" * (1 << 20)]), "text_too_long", 1),
        ("texts with a bad filter", j(op="query", texts=["a"], filter={"$where": "1"}), "bad_filter",
         None),
        ("texts k 0", j(op="query", texts=["a"], k=0), "bad_k", None),
        # control characters: escaped ones are ordinary text (\u0000 excepted)
        ("escaped NUL in id", j(op="add", documents=[{"id": "a\u0000b", "text": "x"}]), "bad_request", None),
        ("escaped NUL in metadata key", j(op="add", documents=[{"text": "x", "metadata": {"a\u0000": 1}}]),
         "bad_request", None),
        ("escaped NUL in filter", j(op="query", text="x", filter={"a": "\u0000"}), "bad_request", None),
        ("escaped NUL in op", j(op="health\u0000"), "bad_request", None),
        # empty batches, in every list
        ("get ids empty", j(op="get", ids=[]), "bad_request", None),
        ("delete ids empty", j(op="delete", ids=[]), "bad_request", None),
        ("encode texts empty", j(op="encode", texts=[]), "bad_request", None),
        ("similarity empty lists", j(op="similarity", a=[], b=[]), "bad_request", None),
        ("pairs texts empty", j(op="pairs", texts=[]), "bad_request", None),
        ("query texts empty", j(op="query", texts=[]), "bad_request", None),
        ("query vectors empty", j(op="query", vectors=[]), "bad_request", None),
        ("add documents null", j(op="add", documents=None), "bad_request", None),
        # 100k items: refused by max_batch before anything is encoded or stored
        ("add 100k documents", j(op="add", documents=[{"text": "a"}] * 100000), "too_large", None),
        ("get 100k ids", j(op="get", ids=["a"] * 100000), "too_large", None),
        ("delete 100k ids", j(op="delete", ids=["a"] * 100000), "too_large", None),
        ("encode 100k texts", j(op="encode", texts=["a"] * 100000), "too_large", None),
        ("similarity 100k x 1", j(op="similarity", a=["a"] * 100000, b=["b"]), "too_large", None),
        ("pairs 100k texts", j(op="pairs", texts=["a"] * 100000), "too_large", None),
        ("query 100k texts", j(op="query", texts=["a"] * 100000), "too_large", None),
        ("query 100k vectors", j(op="query", vectors=[[0.1]] * 100000), "too_large", None),
        # ids of 10 KB and one byte over the store's 512
        ("get 10 KB id", j(op="get", ids=["i" * 10240]), "bad_id", 0),
        ("delete 10 KB id", j(op="delete", ids=["ok", "i" * 10240]), "bad_id", 1),
        ("add 513-byte id", j(op="add", documents=[{"id": "i" * 513, "text": "a"}]), "bad_id", 0),
        ("add 513-byte id, 2-byte chars", j(op="add", documents=[{"id": "é" * 256 + "x", "text": "a"}]),
         "bad_id", 0),
        ("add id true", j(op="add", documents=[{"id": True, "text": "a"}]), "bad_id", 0),
        # filter bombs
        ("filter $in 100k", j(op="query", text="x", filter={"k": {"$in": list(range(100000))}}),
         "bad_filter", None),
        ("filter $and 5000 clauses", j(op="query", text="x",
                                       filter={"$and": [{"a%d" % i: 1} for i in range(5000)]}),
         "bad_filter", None),
        ("filter $or 200 deep", b'{"v":1,"op":"query","text":"x","filter":' + b'{"$or":[' * 200
         + b'{"a":1}' + b"]}" * 200 + b"}", "bad_filter", None),
        ("filter 100 KB string", j(op="query", text="x", filter={"a": {"$eq": "x" * 100000}}),
         "bad_filter", None),
        ("filter unknown $op", j(op="query", text="x", filter={"$where": "1"}), "bad_filter", None),
        ("filter array", j(op="query", text="x", filter=[{"a": 1}]), "bad_filter", None),
        ("pairs filter bomb", j(op="pairs", filter={"k": {"$in": list(range(100000))}}), "bad_filter", None),
        # unknown fields, in every op and in nested objects
        ("query unknown member", j(op="query", text="x", txt="y"), "bad_request", None),
        ("get unknown member", j(op="get", ids=["a"], limit=1), "bad_request", None),
        ("delete unknown member", j(op="delete", ids=["a"], force=True), "bad_request", None),
        ("encode unknown member", j(op="encode", texts=["a"], normalize=False), "bad_request", None),
        ("similarity unknown member", j(op="similarity", a="x", b="y", c="z"), "bad_request", None),
        ("pairs unknown member", j(op="pairs", texts=["a", "b"], k=3), "bad_request", None),
        ("health unknown member", j(op="health", verbose=True), "bad_request", None),
        ("backup unknown member", j(op="backup", dir="/nonexistent/x", overwrite=True), "bad_request", None),
        ("reindex unknown member", j(op="reindex", model="x"), "bad_request", None),
        ("get include unknown", j(op="get", ids=["a"], include=["vector", "score"]), "bad_request", None),
        ("include not a list", j(op="query", text="x", include="text"), "bad_request", None),
        # a request that is not an object
        ("a JSON string", b'"health"', "bad_json", None),
        ("a JSON number", b"42", "bad_json", None),
        ("a JSON null", b"null", "bad_json", None),
        ("a JSON true", b"true", "bad_json", None),
        ("an array of requests", b'[{"v":1,"op":"health"}]', "bad_json", None),
        ("one NUL byte", b"\x00", "bad_json", None),
        ("whitespace only", b" \n\t ", "bad_json", None),
        ("two NULs after the object", b'{"v":1,"op":"health"}\x00\x00', "bad_json", None),
        ("two objects", b'{"v":1,"op":"health"}{"v":1,"op":"health"}', "bad_json", None),
        ("single quotes", b"{'v':1,'op':'health'}", "bad_json", None),
        ("trailing comma", b'{"v":1,"op":"health",}', "bad_json", None),
        ("comment", b'{"v":1,"op":"health"/* x */}', "bad_json", None),
        ("lone low surrogate", b'{"v":1,"op":"query","text":"\\udc00"}', "bad_json", None),
        ("swapped surrogates", b'{"v":1,"op":"query","text":"\\udc00\\ud800"}', "bad_json", None),
        ("bad escape", b'{"v":1,"op":"query","text":"\\x41"}', "bad_json", None),
        # op names are exact
        ("op upper case", j(op="HEALTH"), "unknown_op", None),
        ("op with a space", j(op="health "), "unknown_op", None),
        ("op empty", j(op=""), "unknown_op", None),
        ("op 10 KB", j(op="q" * 10240), "unknown_op", None),
        # collections: names that are not names, collections that do not exist (issue 11)
        ("create_collection name /", j(op="create_collection", name="a/b"), "bad_request", None),
        ("create_collection name ..", j(op="create_collection", name=".."), "bad_request", None),
        ("create_collection name ../x", j(op="create_collection", name="../x"), "bad_request", None),
        ("create_collection name empty", j(op="create_collection", name=""), "bad_request", None),
        ("create_collection name 10 KB", j(op="create_collection", name="c" * 10240), "bad_request",
         None),
        ("create_collection name 65 bytes", j(op="create_collection", name="c" * 65), "bad_request",
         None),
        ("create_collection name 1", j(op="create_collection", name=1), "bad_request", None),
        ("create_collection name -x", j(op="create_collection", name="-x"), "bad_request", None),
        ("create_collection name NUL", j(op="create_collection", name="a\u0000b"), "bad_request",
         None),
        ("create_collection name .tmp-x", j(op="create_collection", name=".tmp-x"), "bad_request",
         None),
        ("create_collection name é", j(op="create_collection", name="é"), "bad_request", None),
        ("create_collection default", j(op="create_collection", name="default"), "exists", None),
        ("create_collection bad spec", j(op="create_collection", name="c", index="Nope42"),
         "bad_request", None),
        ("create_collection ef_search -1", j(op="create_collection", name="c", ef_search=-1),
         "bad_request", None),
        ("create_collection no name", j(op="create_collection"), "bad_request", None),
        ("drop_collection default", j(op="drop_collection", name="default"), "bad_request", None),
        ("drop_collection unknown", j(op="drop_collection", name="nope"), "no_collection", None),
        ("drop_collection name ..", j(op="drop_collection", name=".."), "bad_request", None),
        ("drop_collection name /", j(op="drop_collection", name="/"), "bad_request", None),
        ("describe_collection unknown", j(op="describe_collection", name="nope"), "no_collection",
         None),
        ("describe_collection name ../", j(op="describe_collection", name="../"), "bad_request",
         None),
        ("list_collections unknown member", j(op="list_collections", name="x"), "bad_request", None),
        ("query unknown collection", j(op="query", text="x", collection="nope"), "no_collection",
         None),
        ("add unknown collection", j(op="add", documents=[{"text": "x"}], collection="nope"),
         "no_collection", None),
        ("count collection ..", j(op="count", collection=".."), "bad_request", None),
        ("get collection /etc", j(op="get", ids=["a"], collection="/etc"), "bad_request", None),
        ("list collection 10 KB", j(op="list", collection="c" * 10240), "bad_request", None),
        ("delete collection 1", j(op="delete", ids=["a"], collection=1), "bad_request", None),
        ("patch collection empty", j(op="patch", documents=[{"id": "a", "set": {"x": 1}}],
                                     collection=""), "bad_request", None),
        ("pairs collection NUL", j(op="pairs", collection="a\u0000"), "bad_request", None),
        # text length, after unescaping
        ("text 64 KiB + 1 of escapes", j(op="encode", texts=["\u00e9" * 32768 + "a"]), "text_too_long", 0),
        ("text 1 MB", j(op="query", text="y" * (1 << 20)), "text_too_long", None),
        ("metadata 1 MB", j(op="add", documents=[{"text": "a", "metadata": {"k": "m" * (1 << 20)}}]),
         "bad_metadata", 0),
        ("metadata key 100 KB", j(op="add", documents=[{"text": "a", "metadata": {"k" * 100000: 1}}]),
         "bad_metadata", 0),
        ("backup dir 10 KB", j(op="backup", dir="/" + "d" * 10240), "bad_request", None),
        ("req_id 129 bytes", j(op="health", req_id="r" * 129), "bad_request", None),
        ("req_id number", j(op="health", req_id=7), "bad_request", None),
        ("token object", j(op="health", token={}), "bad_request", None),
        # keyword and hybrid queries (issue 13)
        ("mode number", j(op="query", text="a", mode=1), "bad_request", None),
        ("mode unknown", j(op="query", text="a", mode="sparse"), "bad_request", None),
        ("mode 10 KB", j(op="query", text="a", mode="k" * 10240), "bad_request", None),
        ("mode keyword with a vector", j(op="query", vector=[0.1] * DIM, mode="keyword"), "bad_request", None),
        ("mode hybrid with text and vector", j(op="query", text="a", vector=[0.1] * DIM, mode="hybrid"),
         "bad_request", None),
        ("fusion unknown", j(op="query", text="a", mode="hybrid", fusion="max"), "bad_request", None),
        ("weight 1e400", b'{"v":1,"op":"query","text":"a","mode":"hybrid","fusion":"weighted","weight":1e400}',
         "bad_request", None),
        ("weight -0.5", j(op="query", text="a", mode="hybrid", fusion="weighted", weight=-0.5), "bad_request", None),
        ("candidates 2^64", b'{"v":1,"op":"query","text":"a","mode":"hybrid","candidates":18446744073709551616}',
         "bad_request", None),
        ("candidates 0", j(op="query", text="a", mode="hybrid", candidates=0), "bad_request", None),
        ("keyword text 1 MB", j(op="query", text="y" * (1 << 20), mode="keyword"), "text_too_long", None),
        ("keyword k 2^63-1", b'{"v":1,"op":"query","text":"a","mode":"keyword","k":9223372036854775807}',
         "bad_k", None),
        ("diversity 2", j(op="query", text="a", diversity=2), "bad_request", None),
        ("diversity string", j(op="query", text="a", diversity="0.5"), "bad_request", None),
        ("diversity with a zero vector", j(op="query", vector=[0.0] * DIM, diversity=0.5), "bad_vector", None),
        ("keyword escaped NUL", j(op="query", text="a\u0000b", mode="keyword"), "bad_request", None),
        # passages (issue 12)
        ("group unknown", j(op="query", text="a", group="sentence"), "bad_request", None),
        ("group number", j(op="query", text="a", group=1), "bad_request", None),
        ("group empty", j(op="query", text="a", group=""), "bad_request", None),
        ("group 1 MB", j(op="query", text="a", group="p" * (1 << 20)), "bad_request", None),
        ("group with keyword mode", j(op="query", text="a", mode="keyword", group="passage"),
         "bad_request", None),
        ("group with diversity", j(op="query", text="a", diversity=0.5, group="document"),
         "bad_request", None),
        ("passages_per_document 0", j(op="query", text="a", passages_per_document=0),
         "bad_request", None),
        ("passages_per_document -1", j(op="query", text="a", passages_per_document=-1),
         "bad_request", None),
        ("passages_per_document 1001", j(op="query", text="a", passages_per_document=1001),
         "bad_request", None),
        ("passages_per_document 2^64",
         b'{"v":1,"op":"query","text":"a","passages_per_document":18446744073709551616}',
         "bad_request", None),
        ("passages_per_document 1.5", j(op="query", text="a", passages_per_document=1.5),
         "bad_request", None),
        ("passages_per_document string", j(op="query", text="a", passages_per_document="3"),
         "bad_request", None),
        ("passages_per_document with group passage",
         j(op="query", text="a", group="passage", passages_per_document=2), "bad_request", None),
        ("passages_per_document with hybrid",
         j(op="query", text="a", mode="hybrid", passages_per_document=2), "bad_request", None),
    ]
    # list, count, patch, delete by filter (issue 11): forged cursors, limits, filters, metadata
    def cur(raw):
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    for name, c_ in (("not base64url", "!!!!"), ("empty", ""), ("padded", cur(b"\x01cat") + "=="),
                     ("version 0", cur(b"\x00cat")), ("version 2", cur(b"\x02cat")),
                     ("non-canonical bits", "AWNhdB"), ("version only", cur(b"\x01")),
                     ("NUL in the id", cur(b"\x01a\x00b")), ("not UTF-8", cur(b"\x01\xff\xfe")),
                     ("513-byte id", cur(b"\x01" + b"i" * 513)), ("10 KB", "A" * 10240),
                     ("one character", "A"), ("standard base64 +/", "AW+/dA")):
        cases.append(("list cursor " + name, j(op="list", cursor=c_), "bad_request", None))
    cases += [
        ("list cursor number", j(op="list", cursor=7), "bad_request", None),
        ("list cursor object", j(op="list", cursor={"id": "x"}), "bad_request", None),
        ("list limit 0", j(op="list", limit=0), "bad_request", None),
        ("list limit -1", j(op="list", limit=-1), "bad_request", None),
        ("list limit 1.5", j(op="list", limit=1.5), "bad_request", None),
        ("list limit max_batch + 1", j(op="list", limit=4097), "bad_request", None),
        ("list limit 2^64", b'{"v":1,"op":"list","limit":18446744073709551616}', "bad_request",
         None),
        ("list limit 1e400", b'{"v":1,"op":"list","limit":1e400}', "bad_request", None),
        ("list limit string", j(op="list", limit="10"), "bad_request", None),
        ("list include bogus", j(op="list", include=["vectors"]), "bad_request", None),
        ("list filter bad", j(op="list", filter={"a": {"$regex": "x"}}), "bad_filter", None),
        ("list filter array", j(op="list", filter=[1]), "bad_filter", None),
        ("count filter bad", j(op="count", filter={"a": {"$gt": "x"}}), "bad_filter", None),
        ("count filter string", j(op="count", filter="x"), "bad_filter", None),
        ("count unknown member", j(op="count", limit=3), "bad_request", None),
        ("delete filter {}", j(op="delete", filter={}), "bad_filter", None),
        ("delete filter bad", j(op="delete", filter={"$nor": []}), "bad_filter", None),
        ("delete filter null", j(op="delete", filter=None), "bad_filter", None),
        ("delete ids and filter", j(op="delete", ids=["s0"], filter={"a": 1}), "bad_request",
         None),
        ("delete neither ids nor filter", j(op="delete"), "bad_request", None),
        ("patch no documents", j(op="patch"), "bad_request", None),
        ("patch empty documents", j(op="patch", documents=[]), "bad_request", None),
        ("patch max_batch + 1", j(op="patch", documents=[{"id": "s0", "set": {}}] * 4097),
         "too_large", None),
        ("patch set 1 MB", j(op="patch", documents=[{"id": "s0", "set": {"k": "m" * (1 << 20)}}]),
         "bad_metadata", 0),
        ("patch set 1e400", b'{"v":1,"op":"patch","documents":[{"id":"s0","set":{"a":1}},'
         b'{"id":"s1","set":{"x":1e400}}]}', "bad_metadata", 1),
        ("patch set array", j(op="patch", documents=[{"id": "s0", "set": [1]}]), "bad_metadata",
         0),
        ("patch unset string", j(op="patch", documents=[{"id": "s0", "unset": "k"}]),
         "bad_request", 0),
        ("patch unset numbers", j(op="patch", documents=[{"id": "s0", "unset": [1]}]),
         "bad_request", 0),
        ("patch neither set nor unset", j(op="patch", documents=[{"id": "s0"}]), "bad_request",
         0),
        ("patch without id", j(op="patch", documents=[{"set": {"a": 1}}]), "bad_request", 0),
        ("patch id 2^64", b'{"v":1,"op":"patch","documents":[{"id":18446744073709551616,'
         b'"set":{"a":1}}]}', "bad_id", 0),
        ("patch id 10 KB", j(op="patch", documents=[{"id": "i" * 10240, "set": {"a": 1}}]),
         "bad_id", 0),
        ("patch text member", j(op="patch", documents=[{"id": "s0", "text": "x", "set": {}}]),
         "bad_request", 0),
        ("patch document not object", j(op="patch", documents=["s0"]), "bad_request", None),
    ]
    # invalid UTF-8 in every string position: the whole message is checked before parsing
    for what, bad in utf8_bad:
        for where, raw in [
                ("id", b'{"v":1,"op":"add","documents":[{"id":"a%sb","text":"x"}]}'),
                ("text", b'{"v":1,"op":"add","documents":[{"text":"a%sb"}]}'),
                ("metadata key", b'{"v":1,"op":"add","documents":[{"text":"x","metadata":{"%s":1}}]}'),
                ("metadata value", b'{"v":1,"op":"add","documents":[{"text":"x","metadata":{"k":"%s"}}]}'),
                ("nested metadata", b'{"v":1,"op":"add","documents":[{"text":"x","metadata":{"k":[{"z":"%s"}]}}]}'),
                ("filter key", b'{"v":1,"op":"query","text":"x","filter":{"%s":1}}'),
                ("filter value", b'{"v":1,"op":"query","text":"x","filter":{"k":{"$in":["%s"]}}}'),
                ("query text", b'{"v":1,"op":"query","text":"%s"}'),
                ("query texts", b'{"v":1,"op":"query","texts":["ok","%s"]}'),
                ("get id", b'{"v":1,"op":"get","ids":["%s"]}'),
                ("delete id", b'{"v":1,"op":"delete","ids":["%s"]}'),
                ("encode text", b'{"v":1,"op":"encode","texts":["ok","%s"]}'),
                ("similarity b", b'{"v":1,"op":"similarity","a":"x","b":"%s"}'),
                ("pairs texts", b'{"v":1,"op":"pairs","texts":["a","%s"]}'),
                ("op", b'{"v":1,"op":"he%slth"}'),
                ("member name", b'{"v":1,"op":"health","%s":1}'),
                ("req_id", b'{"v":1,"op":"health","req_id":"%s"}'),
                ("token", b'{"v":1,"op":"health","token":"%s"}'),
                ("backup dir", b'{"v":1,"op":"backup","dir":"/tmp/%s"}'),
                ("outside strings", b'{"v":1,"op":"health"}%s')]:
            cases.append(("invalid UTF-8 (%s) in %s" % (what, where), raw.replace(b"%s", bad),
                          "bad_utf8", None))
    return cases


def send_catalogue(d, c, cases):
    failures = []
    for name, raw, code, index in cases:
        try:
            r = json.loads(c.send_raw(raw))
            err(r, code, name)
            if index is not None:
                check(r["error"].get("index") == index,
                      "%s: index %r, expected %d" % (name, r["error"].get("index"), index))
        except Exception as e:  # collect every failing case, then fail once
            failures.append("%s: %s" % (name, e))
        check(d.alive(), "sbertd died on %r:\n%s" % (name, d.read_log()[-3000:]))
    return failures


def oversize_messages(d):
    """100 MB (above max_message_size 64 MiB, within the socket's 128 MiB): too_large; 200 MB
    (above 2 x max_message_size = NN_RCVMAXSIZE): nanomsg drops it and closes the connection,
    so the client gets no reply (only its receive timeout)."""
    c = d.client()
    r = json.loads(c.send_raw(b'{"v":1,"op":"health"}' + b" " * (100 << 20)))
    err(r, "too_large", "100 MB message")
    c.close()
    c = d.client(timeout_ms=3000, scale=False)  # the expected outcome is this timeout
    try:
        c.send_raw(b'{"v":1,"op":"health"}' + b" " * (200 << 20))
        raise AssertionError("a 200 MB message got a reply")
    except h.Timeout:
        pass
    c.close()
    check(d.alive(), "sbertd died on a 200 MB message")


# ---- tests ----------------------------------------------------------------------------------

def test_hostile_catalogue(d):
    """Both catalogues (test_sbertd's and this file's), three times: every case gets its
    documented error, the daemon serves a normal query afterwards, nothing refused was stored,
    and VmRSS after round 3 is within 24 MiB of what it was after round 1 (the warm-up). Then
    exactly max_batch items work in every list.

    The bound: glibc keeps or returns the memory of the largest parse (a 100k-item list, about
    13 MiB of cJSON nodes) depending on what sits at the top of its heap, so RSS after a round
    moves by that much with no leak at all (measured: 123.5, 136.7, 136.8 MiB). A leak of any
    large request (the 100 MB message, one 100k-item parse per round) exceeds 24 MiB over the
    two rounds."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "s%d" % i, "text": t} for i, t in enumerate(SENTENCES)]))
    check(ok(c.call("stats"))["dim"] == DIM, "the model's dim is not %d" % DIM)
    cases = t.bad_inputs(DIM) + hostile_inputs()
    names = [x[0] for x in cases]
    check(len(set(names)) == len(names), "duplicate case names")
    check(len(cases) >= 200, "the catalogue has %d cases" % len(cases))
    rss = []
    for rnd in range(3):
        failures = send_catalogue(d, c, cases)
        check(not failures, "round %d: bad-input cases failed:\n  " % (rnd + 1)
              + "\n  ".join(failures))
        oversize_messages(d)
        c.close()
        c = d.client()
        check(ok(c.call("health"))["documents"] == 8, "a refused add stored something")
        q = ok(c.call("query", text="I love pasta", k=1))
        check(q["results"][0]["id"] == "s2", "query after the catalogue: %r" % q)
        time.sleep(0.5)  # let freed memory settle (glibc trims on free; nothing to wait for)
        rss.append(rss_kb(d.proc.pid))
    print("  %d cases per round; VmRSS after each round (KiB): %r" % (len(cases), rss), flush=True)
    check_rss(rss[2] - rss[0] < 24 * 1024, "VmRSS grew by %d KiB after the warm-up round"
              % (rss[2] - rss[0]))
    # exactly max_batch (4096, the default) works in every list
    many = ["m%d" % i for i in range(4096)]
    check(ok(c.call("get", ids=many))["documents"][4095] == {"id": "m4095", "found": False}, "get 4096")
    check(ok(c.call("delete", ids=many))["deleted"] == 0, "delete 4096")
    a = ok(c.call("add", documents=[{"id": i, "text": "doc " + i} for i in many]), "add 4096")
    check(a["ids"] == many, "add 4096: ids")
    check(len(ok(c.call("encode", texts=many))["embeddings"]) == 4096, "encode 4096")
    q = ok(c.call("query", texts=many, k=1, include=[]), "query 4096 texts")["results"]
    check(len(q) == 4096 and all(len(r) == 1 for r in q), "query 4096 texts: %d lists" % len(q))
    check(ok(c.call("health"))["documents"] == 8 + 4096, "documents after the 4096 add")
    c.close()


def test_escaped_controls_are_text(d):
    """Escaped control characters (except \\u0000) are ordinary text: stored and returned intact."""
    c = d.client()
    text = "tab\there\u0001\u001f\u007f end \u2028 line \U0001F600"
    r = ok(c.call("add", documents=[{"id": "ctl\u0007id", "text": text, "metadata": {"k\u0001": "\u001b[31m"}}]))
    check(r["ids"] == ["ctl\u0007id"], "add: %r" % r)
    g = ok(c.call("get", ids=["ctl\u0007id"]))["documents"][0]
    check(g["text"] == text and g["metadata"] == {"k\u0001": "\u001b[31m"}, "round trip: %r" % g)
    check(ok(c.call("query", text="tab here", k=1, filter={"k\u0001": "\u001b[31m"}))["results"][0]["id"]
          == "ctl\u0007id", "filter on a control-character key")
    # texts that are only whitespace or invisible are not empty: encoded, not refused
    ok(c.call("encode", texts=["   ", "\u200b", "\t\n"]))
    c.close()


def test_strict_json(d):
    """RFC 8259 says an unescaped control character (U+0000..U+001F) cannot appear in a string,
    and a name should be unique within an object. cJSON 1.7.15 accepts both (a raw NUL cuts the
    string short, so the text stored would not be the text sent; a duplicate member is read as
    its first occurrence, while Python's json and JavaScript take the last, so a proxy that
    checks "op" would see another request than the daemon runs): proto.c refuses them itself."""
    c = d.client()
    cases = [
        ("raw NUL in a text", b'{"v":1,"op":"add","documents":[{"id":"n","text":"abc\x00def"}]}', "bad_json"),
        ("raw NUL in an op", b'{"v":1,"op":"he\x00alth"}', "bad_json"),
        ("raw 0x01 in a text", b'{"v":1,"op":"query","text":"a\x01b"}', "bad_json"),
        ("raw newline in a text", b'{"v":1,"op":"query","text":"a\nb"}', "bad_json"),
        ("duplicate op", b'{"v":1,"op":"stats","op":"delete","ids":["s0"]}', "bad_request"),
        ("duplicate v", b'{"v":1,"v":2,"op":"health"}', "bad_request"),
        ("duplicate text", b'{"v":1,"op":"query","text":"x","text":"y"}', "bad_request"),
        ("duplicate id in a document", b'{"v":1,"op":"add","documents":[{"id":"a","id":"b","text":"x"}]}',
         "bad_request"),
        ("duplicate key in nested metadata",
         b'{"v":1,"op":"add","documents":[{"text":"x","metadata":{"a":{"b":1,"b":2}}}]}', "bad_request"),
        ("duplicate key in a filter", b'{"v":1,"op":"query","text":"x","filter":{"a":1,"a":2}}', "bad_request"),
    ]
    failures = []
    for name, raw, code in cases:
        try:
            err(json.loads(c.send_raw(raw)), code, name)
        except Exception as e:
            failures.append("%s: %s" % (name, e))
    check(d.alive(), "sbertd died")
    check(not failures, "strict JSON cases failed:\n  " + "\n  ".join(failures))
    c.close()


def test_concurrent_same_id(d):
    """8 clients delete the same id at once: all succeed, exactly one saw it exist. 8 clients add
    the same id with different texts: one wins, and the store and the index agree on which."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "s%d" % i, "text": t} for i, t in enumerate(SENTENCES)]))
    for rnd in range(5):
        ok(c.call("add", documents=[{"id": "victim", "text": "A victim of deletes %d" % rnd}]))
        out, errs = [], []
        go = threading.Barrier(8)

        def deleter():
            cl = d.client()
            try:
                go.wait()
                out.append(ok(cl.call("delete", ids=["victim"], req_id=os.urandom(8).hex())))
            except Exception as e:
                errs.append(str(e))
            finally:
                cl.close()

        ts = [threading.Thread(target=deleter) for _ in range(8)]
        for x in ts:
            x.start()
        for x in ts:
            x.join(120)
        check(not errs, "concurrent deletes: %r" % errs)
        check(sorted(r["deleted"] for r in out) == [0] * 7 + [1], "deleted counts: %r" % out)
        check(ok(c.call("get", ids=["victim"]))["documents"][0]["found"] is False, "victim survived")

    texts = ["Concurrent writer number %d likes %s" % (i, w) for i, w in
             enumerate(["apples", "trains", "jazz", "chess", "rain", "tea", "owls", "maps"])]
    go = threading.Barrier(8)
    errs = []

    def adder(i):
        cl = d.client()
        try:
            go.wait()
            ok(cl.call("add", documents=[{"id": "contested", "text": texts[i]}]))
        except Exception as e:
            errs.append(str(e))
        finally:
            cl.close()

    ts = [threading.Thread(target=adder, args=(i,)) for i in range(8)]
    for x in ts:
        x.start()
    for x in ts:
        x.join(300)
    check(not errs, "concurrent adds: %r" % errs)
    g = ok(c.call("get", ids=["contested"], include=["text", "vector"]))["documents"][0]
    check(g["text"] in texts, "contested text %r" % g.get("text"))
    q = ok(c.call("query", vector=g["vector"], k=20, include=["text"]))["results"]
    hits = [r for r in q if r["id"] == "contested"]
    check(len(hits) == 1 and hits[0]["text"] == g["text"] and hits[0]["score"] > 0.9999,
          "the index disagrees with the store: %r" % q[:3])
    check(ok(c.call("health"))["documents"] == 9, "documents after the contested adds")
    c.close()


def test_reply_bounded(d):
    """A small request must not make a huge reply: with 100 documents of 16 KB text + 16 KB
    metadata, an 84-byte pairs request with include text+metadata made a 290 MiB reply and took
    sbertd from 148 to 1558 MiB RSS (get of 4000 repeated ids: 117 MiB reply, 620 MiB RSS);
    with 64 KB texts and n = max_pairs it would be tens of GiB. max_reply_bytes (here 8M) bounds
    every reply: over it, too_large, and the daemon's RSS stays near its baseline. Vectors count
    at their JSON size (16 bytes a float, not 4), and a query stops reading documents at the
    limit. Each text is one long word, so one passage (one [UNK] token): the test stays about
    reply sizes, not encoding (3000 words would be ~15 passages a document). A query hit also
    carries its passage's text (here the whole text), which counts against the limit."""
    c = d.client(timeout_ms=300000)
    for b in range(4):
        ok(c.call("add", documents=[{"id": "t%d-%d" % (b, i), "text": ("topic%dword%d" % (i % 7, i)) * 1000,
                                     "metadata": {"m": "x" * 16000}} for i in range(25)]))
    check(ok(c.call("stats"))["limits"].get("max_reply_bytes") == 8 << 20, "max_reply_bytes in stats")
    base = rss_kb(d.proc.pid)
    with open("/proc/%d/clear_refs" % d.proc.pid, "w") as f:
        f.write("5")
    err(c.call("pairs", n=4950, per_doc_k=99, include=["text", "metadata"]), "too_large", "pairs reply")
    err(c.call("get", ids=["t%d-%d" % (i % 4, (i // 4) % 25) for i in range(4000)]), "too_large", "get reply")
    ok(c.call("get", ids=["t0-0", "t1-1"]), "a small get")
    # vectors are 4 bytes a float in memory and up to 16 in JSON: 3000 of them are 4.6 MB read
    # and ~15 MB of reply, refused before the reply is built (its message gives the advice)
    e = err(c.call("get", ids=["t0-%d" % (i % 25) for i in range(3000)], include=["vector"]),
            "too_large", "get of 3000 vectors")
    check("ask for fewer ids" in e["error"]["message"], "refused before the reply was built: %r" % e["error"])
    # query: the index stops reading documents at max_reply_bytes (300 x 44 KB = 13 MB here)
    for b in range(4, 12):
        ok(c.call("add", documents=[{"id": "t%d-%d" % (b, i), "text": ("topic%dword%d" % (i % 7, i)) * 1000,
                                     "metadata": {"m": "x" * 16000}} for i in range(25)]))
    r = c.call("query", text="topic 3", k=300)
    check(r.get("ok") is False and r["error"]["code"] == "too_large" and "smaller k" in r["error"]["message"],
          "query of 300 large documents: %r" % (r.get("error") or "%d results" % len(r.get("results", []))))
    check(len(ok(c.call("query", text="topic 3", k=150))["results"]) == 150, "query of 150 fits")
    with open("/proc/%d/status" % d.proc.pid) as f:
        hwm = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")][0]
    check_rss(hwm - base < 64 * 1024, "peak RSS +%d KiB for refused replies" % (hwm - base))
    c.close()


def test_watchdog_long_reindex():
    """A reindex is long by design (it re-encodes every text: about 40 min for 100k documents on a
    loaded 2-CPU machine). Under systemd (WatchdogSec=30s) a request busy for longer than
    watchdog_stall_sec withholds WATCHDOG=1 and systemd kills sbertd, so a big enough reindex can
    never finish. While it makes progress the pings must go on: here watchdog_stall_sec = 2 and
    a reindex lasting well past it must not stop them for more than 3 s. How long a reindex of n
    texts takes depends on the machine (1200 texts took 2.6 to 3.4 s here and 2.9 s on CI), so the
    collection doubles until one reindex lasts at least 4 s. Under a sanitizer the stall limit,
    the gap allowed and the 4 s are multiplied by SBERT_TEST_TIMEOUT_SCALE: progress is reported
    every 64 texts, which took 1.1 s under ASan here (0.16 s in Release)."""
    import socket
    tmp = tempfile.mkdtemp(prefix="sbertd-wd-")
    ns = os.path.join(tmp, "notify.sock")
    so = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    so.bind(ns)
    so.settimeout(0.2)
    pings = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                if b"WATCHDOG=1" in so.recv(4096):
                    pings.append(time.time())
            except socket.timeout:
                pass

    reader = threading.Thread(target=read)
    reader.start()
    stall = int(round(2 * h.TIMEOUT_SCALE))
    # no embedding cache: it would serve every text the adds encoded, and no reindex would last
    d = h.Daemon(MODEL, config="watchdog_stall_sec = %d\nembedding_cache_mb = 0\n" % stall,
                 env={"NOTIFY_SOCKET": ns, "WATCHDOG_USEC": "1000000"})
    try:
        d.start()
        c = d.client(timeout_ms=600000)
        n = 0
        for attempt in range(4):
            target = 1200 << attempt
            while n < target:
                ok(c.call("add", documents=[{"text": "sentence %d of batch %d about topic %d" % (i, n // 400, i % 13)}
                                            for i in range(n, n + 400)]))
                n += 400
            t0 = time.time()
            ok(c.call("reindex", req_id="r%d" % attempt))
            t1 = time.time()
            during = [t0] + [t for t in pings if t0 <= t <= t1] + [t1]
            gap = max(b - a for a, b in zip(during, during[1:]))
            print("  reindex of %d texts %.1f s, %d pings, longest gap %.1f s"
                  % (n, t1 - t0, len(during) - 2, gap), flush=True)
            if t1 - t0 >= 2 * stall:
                break
        else:
            raise Skip("a reindex of %d texts took %.1f s, too short to tell a stalled watchdog" % (n, t1 - t0))
        check(gap <= stall + 1, "no WATCHDOG=1 for %.1f s during a reindex that was making progress" % gap)
        c.close()
        check(d.stop() == 0, "exit status")
    finally:
        stop.set()
        reader.join()
        so.close()
        d.cleanup()
        subprocess.run(["rm", "-rf", tmp])


LIMITS = """max_message_size = 65536
max_batch = 16
max_text_bytes = 3000
max_query_text_bytes = 2000
max_k = 5
max_pairs = 10
max_matrix = 20
max_metadata_bytes = 100
"""


def test_limits_at_and_over(d):
    """Each configured limit: exactly at it works, one over gets the documented error."""
    c = d.client()
    lim = ok(c.call("stats"))["limits"]
    check(lim["max_message_size"] == 65536 and lim["max_batch"] == 16 and lim["max_k"] == 5
          and lim["max_text_bytes"] == 3000 and lim["max_query_text_bytes"] == 2000
          and lim["max_pairs"] == 10 and lim["max_matrix"] == 20
          and lim["max_metadata_bytes"] == 100, "limits in force: %r" % lim)
    base = b'{"v":1,"op":"health"}'
    ok(json.loads(c.send_raw(base + b" " * (65536 - len(base)))), "message of max_message_size")
    err(json.loads(c.send_raw(base + b" " * (65537 - len(base)))), "too_large", "max_message_size + 1")

    ids = ["b%d" % i for i in range(17)]
    ok(c.call("add", documents=[{"id": i, "text": "batch item " + i} for i in ids[:16]]), "16 docs")
    err(c.call("add", documents=[{"id": i, "text": "x"} for i in ids]), "too_large", "17 docs")
    check(ok(c.call("health"))["documents"] == 16, "a refused batch stored something")
    ok(c.call("get", ids=ids[:16]))
    err(c.call("get", ids=ids), "too_large", "get 17")
    err(c.call("delete", ids=ids), "too_large", "delete 17")
    ok(c.call("encode", texts=ids[:16]))
    err(c.call("encode", texts=ids), "too_large", "encode 17")
    err(c.call("similarity", a=ids, b=["x"]), "too_large", "similarity 17 x 1")
    err(c.call("pairs", texts=ids), "too_large", "pairs 17 texts")
    check(len(ok(c.call("query", texts=ids[:16], k=1))["results"]) == 16, "query 16 texts")
    err(c.call("query", texts=ids), "too_large", "query 17 texts")
    # 3 decimals: 17 vectors fit in max_message_size, so max_batch is what refuses them
    vec = [round(x, 3) for x in ok(c.call("encode", texts=["x"]))["embeddings"][0]]
    check(len(ok(c.call("query", vectors=[vec] * 16, k=1))["results"]) == 16, "query 16 vectors")
    e = err(c.call("query", vectors=[vec] * 17), "too_large", "query 17 vectors")
    check("max_batch" in e["error"]["message"], "query 17 vectors: %r" % e)
    err(c.call("query", texts=["q" * 2001]), "text_too_long", "2001-byte query in a batch")

    ok(c.call("encode", texts=["é" * 1000]), "2000-byte text")
    err(c.call("encode", texts=["é" * 1000 + "a"]), "text_too_long", "2001-byte text")
    err(c.call("query", text="q" * 2001), "text_too_long", "2001-byte query")
    # a document's text has its own bound (max_text_bytes), above the query texts'
    ok(c.call("add", documents=[{"id": "t3000", "text": "é" * 1500}]), "3000-byte document")
    e = err(c.call("add", documents=[{"id": "t3001", "text": "é" * 1500 + "a"}]),
            "text_too_long", "3001-byte document")
    check("max_text_bytes" in e["error"]["message"], "3001-byte document: %r" % e)
    ok(c.call("delete", ids=["t3000"]))

    check(len(ok(c.call("query", text="batch item", k=5))["results"]) == 5, "k = max_k")
    err(c.call("query", text="batch item", k=6), "bad_k", "k = max_k + 1")
    ok(c.call("pairs", n=3, per_doc_k=5), "per_doc_k = max_k")
    err(c.call("pairs", n=3, per_doc_k=6), "bad_k", "per_doc_k = max_k + 1")

    check(len(ok(c.call("pairs", texts=ids[:8], n=10))["pairs"]) == 10, "n = max_pairs")
    err(c.call("pairs", texts=ids[:8], n=11), "too_large", "n = max_pairs + 1")
    p0 = ok(c.call("pairs", texts=ids[:8], n=0, min_score=-1))["pairs"]
    check(len(p0) == 10, "n = 0 is capped at max_pairs: %d pairs" % len(p0))

    m = ok(c.call("similarity", a=ids[:4], b=ids[:5]))["matrix"]
    check(len(m) == 4 and len(m[0]) == 5, "4 x 5 matrix")
    err(c.call("similarity", a=ids[:3], b=ids[:7]), "too_large", "3 x 7 matrix")

    meta = {"k": "v" * (100 - len('{"k":""}'))}
    check(len(json.dumps(meta, separators=(",", ":"))) == 100, "metadata size")
    ok(c.call("add", documents=[{"id": "m", "text": "x", "metadata": meta}]), "100-byte metadata")
    meta["k"] += "v"
    err(c.call("add", documents=[{"id": "m", "text": "x", "metadata": meta}]), "bad_metadata", "101 bytes")

    # fixed limits: ids of 512 bytes, req_id of 128
    ok(c.call("add", documents=[{"id": "é" * 256, "text": "x"}]), "512-byte id")
    err(c.call("add", documents=[{"id": "é" * 256 + "x", "text": "x"}]), "bad_id", "513-byte id")
    ok(c.call("health", req_id="r" * 128), "128-byte req_id")
    err(c.call("health", req_id="r" * 129), "bad_request", "129-byte req_id")
    c.close()


def test_truncation(d):
    """A text over max_seq_length (256 tokens with [CLS] and [SEP]) is encoded from its first 254
    word pieces, as sentence-transformers does, and every reply that encodes says which; a
    document's text is encoded as passages instead, none truncated."""
    c = d.client()
    w = lambda n: " ".join(["word"] * n)  # noqa: E731  ("word" is one word piece)
    e = ok(c.call("encode", texts=[w(254), w(255), w(1000), w(200)]))
    check(e["truncated"] == [1, 2], "encode truncated: %r" % e["truncated"])
    emb = e["embeddings"]
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    check(dot(emb[0], emb[1]) > 0.99999 and dot(emb[0], emb[2]) > 0.99999,
          "a truncated text is not encoded as its first 254 tokens")
    check(dot(emb[0], emb[3]) < 0.99999, "the check cannot tell 200 tokens from 254")
    # a document is not truncated: the long one is cut between words into two passages
    a = ok(c.call("add", documents=[{"id": "short", "text": w(10)}, {"id": "long", "text": w(400)}]))
    check(a["truncated"] == [], "add truncated: %r" % a)
    st = ok(c.call("stats"))
    check(st["documents"] == 2 and st["passages"] == 3, "passages: %r" % st["passages"])
    check(ok(c.call("get", ids=["long"]))["documents"][0]["text"] == w(400), "the whole text is stored")
    check(ok(c.call("query", text=w(300), k=1))["truncated"] is True, "query truncated")
    check(ok(c.call("query", text=w(254), k=1))["truncated"] is False, "query not truncated")
    p = ok(c.call("pairs", texts=[w(3), w(300)], n=1))
    check(p["truncated"] == [1], "pairs truncated: %r" % p)
    c.close()


def test_big_documents(d):
    """Documents at the raised limits (issue 12): a document of exactly max_text_bytes (64 MiB)
    is stored whole and searched by its passages, one byte more gets text_too_long, and a single
    10 MB word is accepted. The big document's sentences are 64 KiB apart (layout white space),
    so it is a few dozen passages of the model's full window: prose of 64 MiB would take hours
    to encode here, and the limits, not the encoder, are under test."""
    c = d.client(timeout_ms=600000)
    limit = ok(c.call("stats"))["limits"]["max_text_bytes"]
    check(limit == 64 << 20, "max_text_bytes default %d, expected 64 MiB" % limit)
    gap = " " * 65535 + "\n"
    words = "river lamp window coffee garden bridge market story".split()
    parts, size, i = [], 0, 0
    while size < limit - 200:
        sent = "%s number %d stands by the %s." % (words[i % 8].capitalize(), i, words[(i * 3) % 8])
        parts.append(sent + gap)
        size += len(sent) + len(gap)
        i += 1
    text = "".join(parts)
    text = text[:limit - 10].rstrip() + " The end."
    text += "." * (limit - len(text))
    check(len(text.encode()) == limit, "the document is %d bytes" % len(text.encode()))
    r = ok(c.call("add", documents=[{"id": "huge", "text": text, "metadata": {"k": 1}}]),
           "a document of max_text_bytes")
    check(r["truncated"] == [], "the 64 MiB document: truncated %r" % r["truncated"])
    st = ok(c.call("stats"))
    check(st["documents"] == 1 and 10 <= st["passages"] == st["index"]["count"],
          "the 64 MiB document: %d documents, %d passages" % (st["documents"], st["passages"]))
    q = ok(c.call("query", text="Coffee number 77 stands by the window.", k=1, include=[]),
           "query")["results"]
    raw = text.encode()
    check(q and q[0]["id"] == "huge" and
          raw[q[0]["passage"]["start"]:q[0]["passage"]["end"]].decode() == q[0]["passage"]["text"],
          "a passage of the 64 MiB document: %r" % [(x["id"], x["passage"]["start"]) for x in q])
    g = ok(c.call("get", ids=["huge"]), "get of the 64 MiB document")["documents"][0]
    check(g["text"] == text, "the 64 MiB document is not stored whole")
    e = err(c.call("add", documents=[{"id": "over", "text": text + "x"}]), "text_too_long",
            "max_text_bytes + 1")
    check("max_text_bytes" in e["error"]["message"] and e["error"].get("index") == 0,
          "max_text_bytes + 1: %r" % e)
    word = "a" * (10 << 20)
    r = ok(c.call("add", documents=[{"id": "word", "text": word}]), "one 10 MB word")
    st = ok(c.call("stats"))
    check(st["documents"] == 2 and st["passages"] == st["index"]["count"],
          "after the 10 MB word: %r" % ((st["documents"], st["passages"]),))
    q = ok(c.call("query", text="aaaa", k=2, filter={"k": {"$ne": 1}}, include=[]),
           "query")["results"]
    check([x["id"] for x in q] == ["word"], "the 10 MB word's document: %r" % q)
    ok(c.call("delete", ids=["huge", "word"]), "delete")
    st = ok(c.call("stats"))
    check(st["documents"] == 0 and st["passages"] == 0 and st["index"]["count"] == 0,
          "after the deletes: %r" % ((st["documents"], st["passages"]),))
    check(d.alive(), "sbertd died")
    c.close()


def mount_tmpfs(path, size):
    check(os.geteuid() == 0, "this test mounts a tmpfs and needs root (CI runs as root)")
    os.makedirs(path, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs", path],
                   check=True)


def test_disk_full(d):
    """The data directory on a 20 MB tmpfs: adds until the disk is full get no_space, the daemon
    keeps serving, every acknowledged document survives a restart, and after space is freed
    (deletes, then a bigger tmpfs) adds work again."""
    mnt = d.data
    mount_tmpfs(mnt, "20m")
    try:
        d.start()
        c = d.client()
        pad = "p" * 60000  # metadata fills the disk without much to encode
        acked, full = [], None
        for b in range(100):
            docs = [{"id": "f%d-%d" % (b, i), "text": "filler %d %d" % (b, i), "metadata": {"pad": pad}}
                    for i in range(40)]
            r = c.call("add", documents=docs, req_id="fill-%d" % b)
            if not r["ok"]:
                full = r
                break
            acked += [x["id"] for x in docs]
        check(full is not None, "20 MB tmpfs never filled")
        err(full, "no_space", "add on a full disk")
        print("  disk full after %d documents: %s" % (len(acked), full["error"]["message"]), flush=True)
        # still serving: reads, and a tiny write gets a clear answer either way
        check(ok(c.call("health"))["documents"] == len(acked), "documents after the failed add")
        ok(c.call("query", text="filler 3 7", k=3))
        r = c.call("add", documents=[{"id": "tiny", "text": "tiny"}])
        check(r["ok"] or r["error"]["code"] == "no_space", "tiny add on a full disk: %r" % r)
        if r["ok"]:
            acked.append("tiny")
        c.close()
        check(d.stop() == 0, "exit status after SIGTERM on a full disk")
        d.log.close()

        d.start()
        c = d.client()
        check(ok(c.call("health"))["documents"] == len(acked), "documents after restart")
        for i in range(0, len(acked), 256):
            g = ok(c.call("get", ids=acked[i:i + 256]))["documents"]
            check(all(x["found"] and x["metadata"] == {"pad": pad} for x in g if x["id"] != "tiny"),
                  "an acknowledged document is missing or damaged after restart")
        # free space: delete half, then the same adds work again (LMDB reuses the freed pages)
        half = acked[: len(acked) // 2]
        for i in range(0, len(half), 256):
            ok(c.call("delete", ids=half[i:i + 256]), "delete on a full disk")
        # LMDB reuses the pages a delete freed only once no reader holds a snapshot from before
        # it: a read the daemon's background work began earlier keeps them for a moment, and an
        # add in that moment meets the full disk again (no_space, nothing lost). So the add is
        # retried until such readers are gone.
        deadline = time.time() + 60 * h.TIMEOUT_SCALE
        while True:
            r = c.call("add", documents=[{"id": "after-delete-%d" % i, "text": "again",
                                          "metadata": {"pad": pad}} for i in range(20)])
            if r["ok"] or time.time() > deadline:
                break
            err(r, "no_space", "add after deleting half, while older readers hold the freed pages")
            time.sleep(0.5)
        ok(r, "add after deleting half")
        c.close()
        subprocess.run(["mount", "-o", "remount,size=60m", mnt], check=True)
        c = d.client()
        ok(c.call("add", documents=[{"id": "after-grow-%d" % i, "text": "more", "metadata": {"pad": pad}}
                                    for i in range(200)]), "add after the remount")
        check(ok(c.call("health"))["documents"] == len(acked) - len(half) + 220, "final count")
        c.close()
        check(d.stop() == 0, "exit status after SIGTERM")
    finally:
        if d.proc and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        subprocess.run(["umount", "-l", mnt])


def test_map_limit(d):
    """A store whose LMDB map cannot grow: map_size = 1M, and once the daemon is warm (OpenBLAS
    has its per-thread buffers: under an address-space limit OpenBLAS 0.3.21 retries a failed
    buffer allocation forever, so the encoder must not need a new one) its address space is
    capped at 48 MiB above what it uses (prlimit RLIMIT_AS), so a doubling of the map fails.
    The failing add gets no_space, the daemon keeps serving, and after a restart without the cap
    every acknowledged document is there and adds work again."""
    import resource
    c = d.client(timeout_ms=60000)
    pad = "p" * 60000
    acked = []
    for w in range(3):  # warm: the writer's and the encoder's OpenBLAS buffers, the map at 8 MiB
        docs = [{"id": "w%d-%d" % (w, i), "text": "warm %d" % i, "metadata": {"pad": pad}} for i in range(20)]
        ok(c.call("add", documents=docs))
        acked += [x["id"] for x in docs]
        ok(c.call("query", text="warm up", k=2))
    if h.SANITIZER == "address":
        # the warm-up's adds (the map growing from 1M) ran; the cap cannot be set
        c.close()
        raise Skip("RLIMIT_AS cap: ASan reserves terabytes of address space (shadow memory)")
    with open("/proc/%d/status" % d.proc.pid) as f:
        vm = [int(line.split()[1]) for line in f if line.startswith("VmSize:")][0]
    cap = (vm + 48 * 1024) * 1024
    resource.prlimit(d.proc.pid, resource.RLIMIT_AS, (cap, cap))
    full = None
    for b in range(100):
        docs = [{"id": "m%d-%d" % (b, i), "text": "map %d" % i, "metadata": {"pad": pad}} for i in range(20)]
        r = c.call("add", documents=docs)
        if not r["ok"]:
            full = r
            break
        acked += [x["id"] for x in docs]
    check(full is not None, "the map never hit the cap")
    print("  map full after %d documents: %s" % (len(acked), full["error"]), flush=True)
    err(full, "no_space", "add when the map cannot grow")
    check(ok(c.call("health"))["documents"] == len(acked), "documents after the failed add")
    g = ok(c.call("get", ids=acked[:5]))["documents"]
    check(all(x["found"] for x in g), "get after the failed add")
    ok(c.call("query", text="map 3", k=3), "query after the failed add")
    c.close()
    check(d.stop() == 0, "exit status after SIGTERM")
    d.log.close()
    d.start()
    c = d.client()
    check(ok(c.call("health"))["documents"] == len(acked), "documents after restart")
    for i in range(0, len(acked), 256):
        check(all(x["found"] for x in ok(c.call("get", ids=acked[i:i + 256]))["documents"]),
              "an acknowledged document is missing after restart")
    ok(c.call("add", documents=[{"id": "after", "text": "after the cap", "metadata": {"pad": pad}}]))
    c.close()


def nofile_hard():
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)


def low_nofile():
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, nofile_hard()))


def daemon_sockets(pid):
    """The sockets (socket:[inode]) open in process pid."""
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def test_idle_connections(d):
    """Started with a soft open-files limit of 64 (hard 4096 or less), sbertd raises it to the hard
    limit, so 300 idle client connections (one descriptor each in the daemon) do not lock out the
    next client; raw garbage and bad SP handshakes on the socket are dropped by nanomsg."""
    import resource
    import socket
    import struct
    soft, hard = resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE)
    want = nofile_hard()
    check(want >= 400, "the hard open-files limit %d leaves no room for this test" % want)
    check((soft, hard) == (want, want), "open files limit %r, expected raised to %r"
          % ((soft, hard), (want, want)))
    path = d.url[6:]
    # the daemon's sockets before the junk connections (whose sockets it may still hold below)
    base = daemon_sockets(d.proc.pid)
    for junk in [b"GET / HTTP/1.0\r\n\r\n", b"\x00SP\x00\x00\x10\x00\x00", b"\xff" * 10000,
                 b"\x00SP\x00\x00\x31\x00\x00\x01" + struct.pack(">Q", 2 ** 63) + b"x",
                 b"\x00SP\x00\x00\x31\x00\x00\x01" + struct.pack(">Q", 100 << 20) + b"partial"]:
        so = socket.socket(socket.AF_UNIX)
        so.connect(path)
        so.sendall(junk)
        time.sleep(0.1)
        so.close()
    idle = [d.client(timeout_ms=10000) for _ in range(300)]
    try:
        # nn_connect returns before the connection exists: wait until the daemon holds a
        # descriptor for each (no fixed sleep: how long that takes depends on the machine)
        deadline = time.time() + 120 * h.TIMEOUT_SCALE
        while len(daemon_sockets(d.proc.pid) - base) < 300 and time.time() < deadline:
            time.sleep(0.05)
        held = len(daemon_sockets(d.proc.pid) - base)
        check(held >= 300, "the daemon holds %d new sockets for 300 idle connections" % held)
        c = d.client(timeout_ms=30000)
        check(ok(c.call("health"))["status"] == "serving", "health beside 300 idle connections")
        c.close()
    finally:
        for x in idle:
            x.close()


def free_tcp_port():
    import socket
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        return so.getsockname()[1]


def test_tcp_listen_rules():
    """tcp is refused, with a message naming allow_remote and before the store is created, on
    every non-loopback form nanomsg accepts (wildcard, interface, IPv6 any, a LAN address);
    loopback (127/8, ::1) serves over tcp; allow_remote = yes lets 0.0.0.0 serve."""
    exe = h.find_sbertd()
    port = free_tcp_port()
    for url in ["tcp://*:%d", "tcp://0.0.0.0:%d", "tcp://[::]:%d", "tcp://192.168.1.10:%d",
                "tcp://lo;127.0.0.1:%d", "tcp://eth0:%d", "tcp://[::ffff:0.0.0.0]:%d",
                "tcp://0:%d"]:
        url = url % port
        tmp = tempfile.mkdtemp(prefix="sbertd-tcp-")
        try:
            p = subprocess.run([exe, "--model", MODEL, "--data", tmp + "/data", "--listen", url],
                               capture_output=True, timeout=60)
            check(p.returncode != 0, "sbertd accepted %s" % url)
            check(b"allow_remote" in p.stderr, "%s: no clear message: %r" % (url, p.stderr))
            check(not os.path.exists(tmp + "/data"), "%s: store created before the refusal" % url)
        finally:
            subprocess.run(["rm", "-rf", tmp])
    serve_tcp([("tcp://127.0.0.1:%d" % port, ""), ("tcp://0.0.0.0:%d" % port, "allow_remote = yes\n")])


def serve_tcp(cases):
    for url, extra in cases:
        d = h.Daemon(MODEL, config=extra, extra=["--listen", url])  # beside the ipc one
        try:
            d.start()
            connect = url.replace("0.0.0.0", "127.0.0.1")
            c = h.Client(connect, timeout_ms=30000, ipv4only=0 if "[" in url else 1)
            check(ok(c.call("health"))["status"] == "serving", "health over %s" % url)
            c.close()
            check(d.stop() == 0, "exit status")
        finally:
            d.cleanup()


HTTP_PORT = free_tcp_port()


def http_raw(data, read_timeout=30):
    """Sends raw bytes to the daemon's HTTP port; returns (status or None, body bytes). A server
    may answer a request it refuses (413 for a Content-Length past max_message_size) and close
    before the body is all sent, as HTTP/1.1 allows (RFC 9112 §9.6): the send then fails with
    EPIPE or ECONNRESET and the reply already sent is still read."""
    import socket
    with socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=read_timeout) as so:
        try:
            so.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        try:
            while True:
                chunk = so.recv(65536)
                if not chunk:
                    break
                buf += chunk
                head, sep, body = buf.partition(b"\r\n\r\n")
                m = re.search(rb"content-length: *(\d+)", head, re.I)
                if sep and m and len(body) >= int(m.group(1)):
                    break
        except (socket.timeout, ConnectionResetError):
            pass
    m = re.match(rb"HTTP/1\.[01] (\d+)", buf)
    return (int(m.group(1)) if m else None), buf.partition(b"\r\n\r\n")[2]


def http_post(path, body, extra=b""):
    return http_raw(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Connection: close\r\n%sContent-Length: %d\r\n\r\n" % (path, extra, len(body))
                    + body)


def test_http_hostile(d):
    """The HTTP API (http = 127.0.0.1:PORT) under the hostile catalogue: every case as a POST body
    gets a protocol error reply with an HTTP error status; a 1 GB Content-Length is refused before
    a byte of body; a chunked body past the limit is refused; a garbage request line and a
    slowloris client cost nothing; the daemon keeps serving HTTP and nanomsg, its store intact."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "keep", "text": "A document that must survive"}]))
    for name, raw, code, index in hostile_inputs():
        status, body = http_post(b"/v1/query", raw)
        check(status is not None and status >= 400, "%s: HTTP status %r" % (name, status))
        try:
            r = json.loads(body)
            check(r.get("ok") is False and r["error"]["code"], "%s: not an error reply: %r" % (name, body[:200]))
        except ValueError:
            check(False, "%s: the reply is not JSON: %r" % (name, body[:200]))
        check(d.alive(), "sbertd died on HTTP %r:\n%s" % (name, d.read_log()[-3000:]))
    # Content-Length far past max_message_size: 413 without the body being sent
    status, _ = http_raw(b"POST /v1/add HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 1000000000\r\n\r\n")
    check(status == 413, "1 GB Content-Length: %r" % status)
    # a chunked body three times max_message_size (1 MiB here): refused or cut, never taken
    chunk = b"x" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(48)) + b"0\r\n\r\n"
    status, _ = http_raw(b"POST /v1/add HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + body)
    check(status in (413, None), "oversized chunked body: %r" % status)
    status, _ = http_raw(b"GARBAGE \x00\xff\r\n\r\n")
    check(status is None or status >= 400, "garbage request line: %r" % status)
    # slowloris: headers trickle in; another client is served meanwhile, and the slow one is cut
    import socket
    slow = socket.create_connection(("127.0.0.1", HTTP_PORT), timeout=60)
    slow.sendall(b"POST /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    status, body = http_raw(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    check(status == 200 and json.loads(body)["status"] == "serving", "health beside a slow client")
    cut = False
    for _ in range(40):
        try:
            slow.sendall(b"X-Slow: 1\r\n")
        except OSError:
            cut = True
            break
        time.sleep(1)
    slow.close()
    check(cut, "a client that never finishes its headers is cut off")
    check(d.alive(), "sbertd alive after the HTTP catalogue")
    got = ok(c.call("get", ids=["keep"]))["documents"][0]
    check(got["found"] and got["text"] == "A document that must survive", "the store is intact")
    c.close()



def test_tcp_ipv6_loopback():
    """tcp://[::1] passes the loopback check, so it must also serve. nanomsg sockets are IPv4-only
    until NN_IPV4ONLY is set to 0 (else bind fails with ENODEV, "No such device")."""
    serve_tcp([("tcp://[::1]:%d" % free_tcp_port(), "")])


TOKEN = "correct horse battery staple"


def test_auth_everywhere(d):
    """With auth_token set, no request without the right token runs: every op without a token or
    with a wrong one (a prefix, a longer string, another type, 10 KB) is refused with
    unauthorized (or bad_request for a token that is not a short string) and nothing is stored;
    the hostile catalogue without a token gets only error replies. With the token, all works."""
    c = d.client()
    ops = [("add", {"documents": [{"id": "x", "text": "intruder"}]}), ("delete", {"ids": ["s0"]}),
           ("get", {"ids": ["s0"]}), ("query", {"text": "cat"}), ("encode", {"texts": ["a"]}),
           ("similarity", {"a": "x", "b": "y"}), ("pairs", {"n": 1}), ("stats", {}),
           ("health", {}), ("backup", {"dir": os.path.join(d.tmp, "stolen")}), ("reindex", {})]
    ok(c.call("add", token=TOKEN, documents=[{"id": "s%d" % i, "text": x} for i, x in enumerate(SENTENCES)]))
    for op, m in ops:
        for tok in (None, "", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), " " + TOKEN):
            mm = dict(m)
            if tok is not None:
                mm["token"] = tok
            r = c.call(op, **mm)
            check(not r["ok"] and r["error"]["code"] in ("unauthorized", "bad_request"),
                  "%s with token %r: %r" % (op, tok, r))
        for tok in (1, ["x"], {"t": TOKEN}, "t" * 10240):
            r = c.call(op, token=tok, **m)
            check(not r["ok"] and r["error"]["code"] in ("unauthorized", "bad_request"),
                  "%s with token %r: %r" % (op, str(tok)[:20], r))
    for name, raw, _code, _index in hostile_inputs():
        r = json.loads(c.send_raw(raw))
        check(r["ok"] is False, "%s without a token: %r" % (name, r))
    check(not os.path.exists(os.path.join(d.tmp, "stolen")), "a backup ran without the token")
    st = ok(c.call("stats", token=TOKEN))
    check(st["documents"] == 8, "a refused request changed the store: %r" % st["documents"])
    got = ok(c.call("get", token=TOKEN, ids=["s0", "x"]))["documents"]
    check(got[0]["found"] and not got[1]["found"], "get: %r" % got)
    c.close()


FLOOD = "max_message_size = 4M\nmax_inflight_bytes = 8M\nmax_concurrent = 1024\n"
FLOOD_CLIENTS = 24


def test_flood_memory_bounded(d):
    """24 clients send 4 MiB adds at once, twice each: busy replies are fine, and the daemon's
    peak RSS over its warmed-up baseline stays within what the limits promise: nanomsg holds at
    most one received message per connection before sbertd sees it (clients x message size), and
    the requests sbertd admits are bounded by max_inflight_bytes (8 MiB here), counted 4 times for
    the parsed request and its copies, plus 48 MiB of slack (allocator, encoder scratch, LMDB
    pages). Measured: +118..136 MiB; with max_inflight_bytes = 1G instead: +345 MiB. Without
    max_inflight_bytes all 24 would be parsed at once: about 24 x 4 x 4 MiB more."""
    c = d.client()
    ok(c.call("add", documents=[{"text": t} for t in SENTENCES]))
    # metadata makes the size: the test is about memory, not encoding time
    docs = [{"id": "flood-%d" % i, "text": "flood document %d" % i, "metadata": {"pad": "p" * 65000}} for i in range(62)]
    raw = json.dumps({"v": 1, "op": "add", "documents": docs}).encode()
    check(3 << 20 < len(raw) <= 4 << 20, "request size %d" % len(raw))
    # warm-up: one such add alone (allocator arenas, LMDB pages), then reset the peak
    ok(json.loads(c.send_raw(raw)), "a lone max-size add")
    base = rss_kb(d.proc.pid)
    with open("/proc/%d/clear_refs" % d.proc.pid, "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    codes, errs = {}, []
    lock = threading.Lock()
    go = threading.Barrier(FLOOD_CLIENTS)

    def flood():
        cl = d.client(timeout_ms=600000)
        try:
            go.wait()
            for _ in range(2):
                r = json.loads(cl.send_raw(raw))
                code = "ok" if r["ok"] else r["error"]["code"]
                with lock:
                    codes[code] = codes.get(code, 0) + 1
        except Exception as e:
            errs.append(str(e))
        finally:
            cl.close()

    ts = [threading.Thread(target=flood) for _ in range(FLOOD_CLIENTS)]
    for x in ts:
        x.start()
    for x in ts:
        x.join(900)
    with open("/proc/%d/status" % d.proc.pid) as f:
        hwm = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")][0]
    bound_kb = (FLOOD_CLIENTS * len(raw) + 4 * (8 << 20) + (48 << 20)) // 1024
    print("  replies %r; VmRSS before %d KiB, peak %d KiB (+%d KiB, bound %d KiB)"
          % (codes, base, hwm, hwm - base, bound_kb), flush=True)
    check(not errs, "flood clients: %r" % errs)
    check(set(codes) <= {"ok", "busy"}, "replies other than ok/busy: %r" % codes)
    check(codes.get("ok", 0) >= 1, "no flood add succeeded")
    check_rss(hwm - base < bound_kb, "peak RSS %d KiB over the baseline, bound %d KiB" % (hwm - base, bound_kb))
    check(ok(c.call("health"))["documents"] == 8 + 62, "documents after the flood")
    c.close()


# ---- list, count, delete by filter (issue 11) -------------------------------------------------

def test_delete_all_while_querying(d):
    """A delete by filter of every document (20,000, so 20 chunks) while clients query, count and
    list: every reply is a correct answer (no error, never a duplicate in a listing, only ids
    that were stored), and afterwards nothing is left, in the store or the vector index."""
    c = d.client()
    n = 20000
    for at in range(0, n, 1000):
        docs = [{"id": "x%05d" % i, "text": "t", "metadata": {"i": i},
                 "vector": [1.0 if k == i % DIM else 0.0 for k in range(DIM)]}
                for i in range(at, at + 1000)]
        ok(c.call("add", documents=docs))
    stored = {"x%05d" % i for i in range(n)}
    stop = threading.Event()
    errors = []
    seen = {"query": 0, "list": 0}

    def reader(kind):
        r = d.client()
        try:
            while not stop.is_set():
                if kind == "query":
                    v = [0.0] * DIM
                    v[seen["query"] % DIM] = 1.0
                    for x in ok(r.call("query", vector=v, k=10))["results"]:
                        check(x["id"] in stored, "query returned %r" % x["id"])
                    ok(r.call("count", filter={"i": {"$lt": 100}}))
                else:
                    got, cursor = [], None
                    while True:
                        m = {"limit": 500, "include": []}
                        if cursor:
                            m["cursor"] = cursor
                        page = ok(r.call("list", **m))
                        got += [x["id"] for x in page["documents"]]
                        cursor = page.get("cursor")
                        if not cursor:
                            break
                    check(len(got) == len(set(got)) and got == sorted(got),
                          "a listing during the delete repeated or reordered ids")
                seen[kind] += 1
        except Exception as e:
            errors.append(e)
        finally:
            r.close()
    threads = [threading.Thread(target=reader, args=(k,)) for k in ("query", "query", "list")]
    for th_ in threads:
        th_.start()
    try:
        everything = {"$or": [{"i": {"$exists": True}}, {"i": {"$exists": False}}]}
        r = ok(c.call("delete", req_id="wipe", filter=everything))
    finally:
        stop.set()
        for th_ in threads:
            th_.join()
    check(not errors, "readers: %r" % errors[:3])
    check(r["deleted"] == n, "deleted %r" % r)
    st = ok(c.call("stats"))
    check(ok(c.call("count"))["count"] == 0 and st["index"]["count"] == 0,
          "documents left after deleting everything: %r" % st["index"])
    check(ok(c.call("query", vector=[1.0] + [0.0] * (DIM - 1), k=5))["results"] == [],
          "the vector index still answers with deleted documents")
    check(ok(c.call("list"))["documents"] == [], "list after deleting everything")
    check(ok(c.call("delete", filter=everything))["deleted"] == 0, "a second delete")
    c.close()


def test_list_reply_bounded(d):
    """max_reply_bytes = 100K: list pages end before the reply would exceed it (a cursor goes
    on), every document is listed once; a document alone larger than the bound is too_large,
    and a page without its text passes it."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "b%02d" % i, "text": "y" * 30000} for i in range(20)]))
    pages, got, cursor = 0, [], None
    while True:
        m = {"limit": 100}
        if cursor:
            m["cursor"] = cursor
        page = ok(c.call("list", **m))
        check(len(page["documents"]) <= 3, "a page of %d documents of 30 KB" %
              len(page["documents"]))
        got += [x["id"] for x in page["documents"]]
        pages += 1
        cursor = page.get("cursor")
        if not cursor:
            break
    check(got == ["b%02d" % i for i in range(20)] and pages >= 7, "pages %d: %r" % (pages, got))
    ok(c.call("add", documents=[{"id": "big", "text": "z" * 60000,
                                 "metadata": {"m": "w" * 60000}}]))
    err(c.call("list", cursor=cursor_after("b19")), "too_large", "a document over the bound")
    page = ok(c.call("list", cursor=cursor_after("b19"), include=[]))
    check(page["documents"] == [{"id": "big"}], "without text: %r" % page)
    c.close()


def cursor_after(doc_id):
    """The cursor list gives after doc_id (PROTOCOL.md: base64url of version 1 and the id)."""
    return base64.urlsafe_b64encode(b"\x01" + doc_id.encode()).rstrip(b"=").decode()


# ---- runner ---------------------------------------------------------------------------------

TESTS = [
    # issue 11: a delete by filter of every document while queries run; list's reply bound
    ("delete_all_while_querying", test_delete_all_while_querying, {"explicit": True}),
    ("list_reply_bounded", test_list_reply_bounded,
     {"config": "max_reply_bytes = 100K\n", "explicit": True}),
    # one malloc arena: with one per worker thread, each worker's first large request grows RSS
    # by what glibc then keeps for reuse (workers x ~11 MiB here), which is no leak
    ("hostile_catalogue", test_hostile_catalogue, {"env": {"MALLOC_ARENA_MAX": "1"}}),
    ("escaped_controls_are_text", test_escaped_controls_are_text, {}),
    ("concurrent_same_id", test_concurrent_same_id, {}),
    ("limits_at_and_over", test_limits_at_and_over, {"config": LIMITS}),
    ("truncation", test_truncation, {}),
    ("big_documents", test_big_documents, {}),
    # The store alone on the full disk: with the embedding cache in the same 20 MB the first add
    # after the deletes got no_space in about half the runs (not understood yet: see issue 12's
    # note); the cache's own failures are faults_ecache's.
    ("disk_full", test_disk_full, {"nostart": True, "config": "embedding_cache_mb = 0\n"}),
    ("flood_memory_bounded", test_flood_memory_bounded, {"config": FLOOD}),
    ("idle_connections", test_idle_connections, {"preexec": low_nofile}),
    ("tcp_listen_rules", test_tcp_listen_rules, None),
    # registered on its own (daemon_hostile_tcp_ipv6)
    ("tcp_ipv6_loopback", test_tcp_ipv6_loopback, {"explicit": True, "own_daemons": True}),
    ("auth_everywhere", test_auth_everywhere, {"config": "auth_token = %s\n" % TOKEN}),
    ("strict_json", test_strict_json, {}),
    ("http_hostile", test_http_hostile,
     {"config": "http = 127.0.0.1:%d\nmax_message_size = 1M\n" % HTTP_PORT}),
    # registered on its own: a long reindex withholds the watchdog (daemon/server.c)
    ("watchdog_long_reindex", test_watchdog_long_reindex, {"explicit": True, "own_daemons": True}),
    # registered on its own: replies are not bounded yet (max_reply_bytes does not exist)
    ("reply_bounded", test_reply_bounded, {"config": "max_reply_bytes = 8M\n", "explicit": True}),
    # registered on its own (it caps the daemon's address space)
    ("map_limit", test_map_limit, {"config": "map_size = 1M\n", "explicit": True}),
]


def main():
    global MODEL
    MODEL = sys.argv[1]
    t.MODEL, t.SEEDS = sys.argv[1], sys.argv[2]
    check(os.path.isdir(MODEL), "model directory %s is missing" % MODEL)
    only = set(sys.argv[3:])
    failed = skipped = ran = 0
    for name, fn, opts in TESTS:
        if (only and name not in only) or (not only and opts and opts.get("explicit")):
            continue
        ran += 1
        t0 = time.time()
        if opts is None or opts.get("own_daemons"):
            try:
                fn()
                print("PASS %s (%.1f s)" % (name, time.time() - t0), flush=True)
            except Skip as e:
                skipped += 1
                print("SKIP %s: %s" % (name, e), flush=True)
            except Exception:
                failed += 1
                print("FAIL %s" % name, flush=True)
                traceback.print_exc()
            continue
        d = h.Daemon(MODEL, config=opts.get("config"), env=opts.get("env"),
                     preexec=opts.get("preexec"))
        try:
            if not opts.get("nostart"):
                d.start()
            skip = None
            try:
                fn(d)
            except Skip as e:
                skip = e
            if d.alive():
                rc = d.stop()
                check(rc == 0, "exit status %d after SIGTERM" % rc)
            if skip:
                skipped += 1
                print("SKIP %s: %s" % (name, skip), flush=True)
            else:
                print("PASS %s (%.1f s)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
            print("---- sbertd log (tail) ----\n" + d.read_log()[-4000:], flush=True)
        finally:
            d.cleanup()
    print("%d failed, %d skipped" % (failed, skipped))
    if failed:
        return 1
    return 77 if skipped == ran else 0  # 77: ctest's SKIP_RETURN_CODE, when nothing was checked


if __name__ == "__main__":
    sys.exit(main())
