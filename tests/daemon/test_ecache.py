#!/usr/bin/env python3
"""The embedding cache (issue 12) on a real sbertd, its real LMDB cache file and the real model.

Usage: test_ecache.py MODEL_DIR [TEST...]   (SBERTD names the sbertd binary)

Each test starts the daemon on a fresh temporary data directory; the cache lives in
DATA/embedding-cache/ (daemon/ecache.h).
"""
import os
import random
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sbertd_harness as h  # noqa: E402
from test_sbertd import check, ok  # noqa: E402

MODEL = None
TEXT = "Passages that did not change are never encoded twice."


def cache_stats(c):
    return ok(c.call("stats"))["embedding_cache"]


def vector_of(c, doc_id):
    docs = ok(c.call("get", ids=[doc_id], include=["vector"]))["documents"]
    check(len(docs) == 1 and "vector" in docs[0], "get %s: %r" % (doc_id, docs))
    return docs[0]["vector"]


def counts(reply):
    return reply.get("encoded"), reply.get("cached")


def cache_file(d):
    return os.path.join(d.data, "embedding-cache", "data.mdb")


def test_duplicates_and_readd(d):
    """A text added again under another id, repeated within one add, re-added after a delete, or
    re-encoded by the reindex op comes from the cache: the add reply counts it, stats counts the
    hit, and the stored vector is bit-identical to the first one."""
    c = d.client()
    st = cache_stats(c)
    check(st["enabled"] is True and st["entries"] == 0 and st["hits"] == 0, "fresh cache: %r" % st)
    r = ok(c.call("add", documents=[{"id": "a", "text": TEXT}]))
    check(counts(r) == (1, 0), "first add encodes: %r" % r)
    r = ok(c.call("add", documents=[{"id": "b", "text": TEXT}]))
    check(counts(r) == (0, 1), "the same text under another id is not encoded: %r" % r)
    st = cache_stats(c)
    check(st["hits"] == 1 and st["misses"] == 1 and st["entries"] == 1 and st["bytes"] > 0,
          "stats after one hit: %r" % st)
    check(vector_of(c, "a") == vector_of(c, "b"), "the cached vector is bit-identical")
    enc0 = ok(c.call("stats"))["encoder"]["texts"]
    # repeated within one add: encoded once
    r = ok(c.call("add", documents=[{"id": "c", "text": "twice in one add"},
                                     {"id": "d", "text": "twice in one add"},
                                     {"id": "e", "text": TEXT}]))
    check(counts(r) == (1, 2), "one add with a repeat and a cached text: %r" % r)
    check(ok(c.call("stats"))["encoder"]["texts"] == enc0 + 1, "the encoder saw one text")
    check(vector_of(c, "c") == vector_of(c, "d"), "a repeat gets the same vector")
    # precomputed vectors are neither encoded nor cached
    r = ok(c.call("add", documents=[{"id": "p", "text": "given", "vector": vector_of(c, "a")}]))
    check(counts(r) == (0, 0), "a precomputed vector: %r" % r)
    # a re-add after a delete
    ok(c.call("delete", ids=["a", "b", "e"]))
    r = ok(c.call("add", documents=[{"id": "a", "text": TEXT}]))
    check(counts(r) == (0, 1), "re-add after delete hits: %r" % r)
    # the reindex op re-encodes every stored text through the cache
    hits = cache_stats(c)["hits"]
    enc0 = ok(c.call("stats"))["encoder"]["texts"]
    ok(c.call("reindex"))
    docs = ok(c.call("stats"))["documents"]
    # every stored text but the one that came with its vector
    check(docs == 4 and cache_stats(c)["hits"] == hits + 3, "reindex hits: %r" % cache_stats(c))
    check(ok(c.call("stats"))["encoder"]["texts"] == enc0 + 1, "reindex encoded one text")
    # queries are not cached
    m = cache_stats(c)["misses"]
    ok(c.call("query", text=TEXT, k=1))
    ok(c.call("encode", texts=[TEXT]))
    check(cache_stats(c)["misses"] == m and cache_stats(c)["hits"] == hits + 3,
          "queries and encode do not touch the cache")
    c.close()


def test_survives_restart(d):
    """The cache outlives the daemon: after a clean stop, and after kill -9 (same boot: the kernel
    kept the unsynced pages), the text is not encoded again."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "a", "text": TEXT}]))
    v = vector_of(c, "a")
    c.close()
    check(d.stop() == 0, "clean stop")
    for how in ("sigterm", "kill"):
        d.start()
        c = d.client()
        st = cache_stats(c)
        check(st["entries"] >= 1, "%s: entries kept: %r" % (how, st))
        r = ok(c.call("add", documents=[{"id": "r-" + how, "text": TEXT}]))
        check(counts(r) == (0, 1), "%s: hit after restart: %r" % (how, r))
        check(vector_of(c, "r-" + how) == v, "%s: same vector" % how)
        ok(c.call("add", documents=[{"id": "k-" + how, "text": "added before " + how}]))
        c.close()
        if how == "sigterm":
            check(d.stop() == 0, "clean stop")
        else:
            d.proc.kill()
            d.proc.wait()
            d.log.close()
    d.start()
    c = d.client()
    r = ok(c.call("add", documents=[{"id": "z", "text": "added before kill"}]))
    check(counts(r) == (0, 1), "a write before kill -9 is kept: %r" % r)
    c.close()


def test_corrupt_entry(d):
    """Bytes overwritten inside a cached vector: the entry fails its check, is logged, dropped and
    encoded again; the vector stored is the encoder's, never the damaged one."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "a", "text": TEXT}]))
    v = vector_of(c, "a")
    c.close()
    check(d.stop() == 0, "clean stop")
    blob = open(cache_file(d), "rb").read()
    # the store's copy may differ from the encoder's row in its last bits: the first two floats
    # find that row in the cache file
    at = blob.find(struct.pack("<2f", *v[:2]))
    check(at > 0 and blob.find(struct.pack("<2f", *v[:2]), at + 1) < 0,
          "the vector's bytes are once in the cache file")
    with open(cache_file(d), "r+b") as f:
        f.seek(at + 40)
        f.write(b"\x7f\x00\x13\x37" * 4)
    d.start()
    c = d.client()
    r = ok(c.call("add", documents=[{"id": "b", "text": TEXT}]))
    check(counts(r) == (1, 0), "a damaged entry is a miss: %r" % r)
    w = vector_of(c, "b")
    check(max(abs(x - y) for x, y in zip(v, w)) < 1e-6, "b has the encoder's vector")
    check("failed their check" in d.read_log(), "the damage is logged")
    r = ok(c.call("add", documents=[{"id": "c", "text": TEXT}]))
    check(counts(r) == (0, 1) and vector_of(c, "c") == w, "encoded again, then cached: %r" % r)
    c.close()


def test_corrupt_pages(d):
    """Random bytes written over every page of the cache file but LMDB's two meta pages (branch,
    leaf and free-list pages alike): the daemon keeps serving, and every text added again gets the
    encoder's vector, from the cache only where its entry passed its check."""
    c = d.client()
    docs = [{"id": "t%d" % i, "text": "page damage text %d" % i} for i in range(300)]
    ok(c.call("add", documents=docs))
    want = {x["id"]: x["vector"] for x in ok(c.call("get", ids=[x["id"] for x in docs],
                                                   include=["vector"]))["documents"]}
    c.close()
    check(d.stop() == 0, "clean stop")
    size = os.path.getsize(cache_file(d))
    rng = random.Random(12)
    with open(cache_file(d), "r+b") as f:
        for page in range(2, size // 4096):
            f.seek(page * 4096 + rng.randrange(0, 4096 - 64))
            f.write(bytes(rng.randrange(256) for _ in range(64)))
    d.start()
    c = d.client()
    r = ok(c.call("add", documents=[{"id": "n" + x["id"], "text": x["text"]} for x in docs]))
    check(r["encoded"] + r["cached"] == 300, "counts: %r" % r)
    got = ok(c.call("get", ids=["n" + x["id"] for x in docs], include=["vector"]))["documents"]
    for g in got:
        w = want[g["id"][1:]]
        check(max(abs(a - b) for a, b in zip(w, g["vector"])) < 1e-6,
              "%s: the encoder's vector (%d cached)" % (g["id"], r["cached"]))
    ok(c.call("health"))
    c.close()


def test_corrupt_file(d):
    """A cache file LMDB cannot read (its meta pages overwritten) or a state file from another
    boot with unsynced writes: the daemon starts, logs, discards the cache and works with a fresh
    one."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "a", "text": TEXT}]))
    v = vector_of(c, "a")
    c.close()
    check(d.stop() == 0, "clean stop")
    with open(cache_file(d), "r+b") as f:
        f.write(os.urandom(8192))
    d.start()
    c = d.client()
    check(cache_stats(c)["entries"] == 0, "a fresh cache")
    r = ok(c.call("add", documents=[{"id": "b", "text": TEXT}]))
    check(counts(r) == (1, 0), "encoded: %r" % r)
    check(max(abs(x - y) for x, y in zip(v, vector_of(c, "b"))) < 1e-6, "the encoder's vector")
    check("discarding it and starting empty" in d.read_log(), "the discard is logged")
    c.close()
    check(d.stop() == 0, "clean stop")
    # a machine crash: dirty state written on another boot
    with open(os.path.join(d.data, "embedding-cache", "state"), "w") as f:
        f.write("dirty 00000000-0000-0000-0000-000000000000\n")
    d.start()
    c = d.client()
    check(cache_stats(c)["entries"] == 0, "a dirty cache of another boot is discarded")
    check("restarted while it had unsynced writes" in d.read_log(), "logged")
    c.close()


def test_precision_not_shared(d):
    """int8 vectors are not fp32 ones: the same data directory reopened with precision = int8
    (the store re-encoded at start) encodes the text again instead of reusing the fp32 entry."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "a", "text": TEXT}]))
    v32 = vector_of(c, "a")
    c.close()
    check(d.stop() == 0, "clean stop")
    d8 = h.Daemon(d.model, tmp=d.tmp,
                  extra=["--set", "precision=int8", "--set", "reindex_on_model_change=yes"])
    d8.start()
    try:
        c = d8.client()
        st = cache_stats(c)
        check(st["hits"] == 0, "the start-up re-encode found no int8 entry: %r" % st)
        r = ok(c.call("add", documents=[{"id": "b", "text": TEXT}]))
        check(counts(r) == (0, 1), "the int8 re-encode of a was cached: %r" % r)
        v8 = vector_of(c, "b")
        check(v8 != v32, "an int8 vector, not the fp32 one")
        c.close()
    finally:
        check(d8.stop() == 0, "clean stop")


def test_size_bound(d):
    """embedding_cache_mb = 1: many adds stay under 1 MiB, the oldest entries are evicted (and
    counted), the newest still hit."""
    c = d.client()
    n = 0
    for batch in range(6):
        docs = [{"id": "t%d" % (n + i), "text": "bounded cache text number %d" % (n + i)}
                for i in range(200)]
        n += len(docs)
        ok(c.call("add", documents=docs))
        st = cache_stats(c)
        check(st["bytes"] <= st["max_bytes"] == 1 << 20, "bound holds: %r" % st)
    st = cache_stats(c)
    per = st["bytes"] / st["entries"]
    check(st["evictions"] > 0 and st["entries"] + st["evictions"] == n,
          "evictions counted: %r" % st)
    check(st["entries"] * per <= 1 << 20 and st["entries"] > 400, "entries: %r" % st)
    # the file stops growing: evicted pages are reused (each add here is a fifth of the cache,
    # so LMDB's copy-on-write keeps more spare pages than with a large cache)
    size = os.path.getsize(cache_file(d))
    check(size <= 4 << 20, "the cache file takes %d bytes for a 1 MiB bound" % size)
    r = ok(c.call("add", documents=[{"id": "new", "text": "bounded cache text number %d" % (n - 1)}]))
    check(counts(r) == (0, 1), "the newest entry hits: %r" % r)
    r = ok(c.call("add", documents=[{"id": "old", "text": "bounded cache text number 0"}]))
    check(counts(r) == (1, 0), "the oldest was evicted: %r" % r)
    c.close()


def test_unopenable(d):
    """A cache directory that cannot be made (a file in its place) or a cache turned off: the
    daemon logs it and serves without a cache."""
    os.makedirs(d.data, exist_ok=True)
    with open(os.path.join(d.data, "embedding-cache"), "w") as f:
        f.write("not a directory\n")
    d.start()
    c = d.client()
    check(cache_stats(c)["enabled"] is False, "no cache")
    r = ok(c.call("add", documents=[{"id": "a", "text": TEXT}, {"id": "b", "text": TEXT}]))
    check(counts(r) == (2, 0), "without a cache every text is encoded: %r" % r)
    check("running without it" in d.read_log(), "logged")
    c.close()
    check(d.stop() == 0, "clean stop")
    os.unlink(os.path.join(d.data, "embedding-cache"))
    d0 = h.Daemon(d.model, tmp=d.tmp, extra=["--set", "embedding_cache_mb=0"])
    d0.start()
    try:
        c = d0.client()
        check(cache_stats(c)["enabled"] is False, "off")
        check(not os.path.exists(os.path.join(d.data, "embedding-cache")), "no cache directory")
        c.close()
    finally:
        check(d0.stop() == 0, "clean stop")


TESTS = [
    ("duplicates_and_readd", test_duplicates_and_readd, {}),
    ("survives_restart", test_survives_restart, {}),
    ("corrupt_entry", test_corrupt_entry, {}),
    ("corrupt_pages", test_corrupt_pages, {}),
    ("corrupt_file", test_corrupt_file, {}),
    ("precision_not_shared", test_precision_not_shared, {}),
    ("size_bound", test_size_bound, {"config": "embedding_cache_mb = 1\n"}),
    ("unopenable", test_unopenable, {"nostart": True}),
]


def main():
    global MODEL
    MODEL = sys.argv[1]
    check(os.path.isdir(MODEL), "model directory %s is missing" % MODEL)
    return h.run_cases(MODEL, TESTS, set(sys.argv[2:]))


if __name__ == "__main__":
    sys.exit(main())
