#!/usr/bin/env python3
"""Query latency by text through the daemon at N documents, two sbertd builds interleaved (e.g.
main's exact Flat scan against the int8 scan with exact re-rank, index/vindex.h "Flat").

    bench/query/qscan_ab.py BUILD_A BUILD_B [--n 100000] [--precision int8|fp32]... [--queries 400]

The documents are the first N Tatoeba sentences, stored with their embeddings (sbert-encode
--precision int8 of BUILD_B, cached in bench/out/qscan-tatoeba.f32) so that a 100k store is built
in a minute rather than encoded by the daemon; only the queries are encoded by the daemons, with
the precision of the row. Queries: ten-word Tatoeba sentences that are not among the documents,
k = 10, one at a time, each sent to both daemons in turn (order swapped every query) so both see
the same machine load; then the same queries as vectors (the search alone, without the query's
encode). Prints the CPU model, the load, each daemon's index.scan_kernel from stats and p50/p99
per build. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are unset here (bench/e2e's rule).
"""
import argparse
import gzip
import os
import random
import shutil
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
sys.path.insert(0, os.path.join(ROOT, "bench", "common"))
import machine  # noqa: E402
import sbertd_harness as h  # noqa: E402

DIM = 384


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3


def texts_and_vectors(a):
    with gzip.open(os.path.join(a.shared, "data", "corpus", "tatoeba_en_sentences.txt.gz"),
                   "rt") as f:
        texts = [t.strip() for t in f.read().splitlines() if t.strip()]
    cache = os.path.join(ROOT, "bench", "out", "qscan-tatoeba.f32")
    if not os.path.exists(cache) or os.path.getsize(cache) != len(texts) * DIM * 4:
        os.makedirs(os.path.dirname(cache), exist_ok=True)
        enc = os.path.join(a.builds[1], "encoder", "sbert-encode")
        print("encoding %d Tatoeba sentences into %s (int8, once)" % (len(texts), cache),
              flush=True)
        with open(cache + ".tmp", "wb") as out:
            subprocess.run([enc, "--model", a.model, "--format", "f32", "--precision", "int8",
                            "--threads", "2"], input="\n".join(texts).encode() + b"\n",
                           stdout=out, check=True)
        os.rename(cache + ".tmp", cache)
    return texts, cache


def build_store(a, precision, texts, cache, n):
    """A store of the first n texts with their cached vectors, made by BUILD_A's daemon."""
    os.environ["SBERTD"] = os.path.join(a.builds[0], "daemon", "sbertd")
    d = h.Daemon(a.model, config="precision = %s\n" % precision)
    d.start(timeout=300)
    c = d.client(timeout_ms=600000)
    with open(cache, "rb") as f:
        for at in range(0, n, 1000):
            m = min(1000, n - at)
            raw = f.read(m * DIM * 4)
            vec = struct.unpack("<%df" % (m * DIM), raw)
            docs = [{"id": "t%d" % (at + i), "text": texts[at + i],
                     "vector": list(vec[i * DIM:(i + 1) * DIM])} for i in range(m)]
            r = c.call("add", documents=docs)
            assert r.get("ok"), r
    d.stop()
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs=2)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--precision", action="append", choices=("int8", "fp32"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--queries", type=int, default=400)
    a = ap.parse_args()
    a.builds = [os.path.abspath(b) for b in a.builds]
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(var, None)
    print("CPU: %s; load average at the start: %s" % (machine.cpu_model(), machine.loadavg()))
    texts, cache = texts_and_vectors(a)
    assert a.n < len(texts), "only %d texts" % len(texts)
    held = set(texts[:a.n])
    qs = [t for t in texts[a.n:] if len(t.split()) == 10 and t not in held]
    random.Random(5).shuffle(qs)
    qs = qs[:a.queries]
    for precision in a.precision or ["int8", "fp32"]:
        t0 = time.time()
        src = build_store(a, precision, texts, cache, a.n)
        print("%s store of %d documents built in %.0f s" % (precision, a.n, time.time() - t0),
              flush=True)
        ds = []
        try:
            for b in a.builds:
                os.environ["SBERTD"] = os.path.join(b, "daemon", "sbertd")
                d = h.Daemon(a.model, config="precision = %s\n" % precision)
                shutil.copytree(src.data, d.data)
                ds.append(d.start(timeout=300))
            cs = [d.client() for d in ds]
            vecs = cs[0].call("encode", texts=qs)["embeddings"]
            for form, items in (("text", qs), ("vector", vecs)):
                lat = [[], []]
                for i, x in enumerate(items):
                    for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                        t1 = time.perf_counter()
                        r = cs[j].call("query", k=10, **{form: x})
                        lat[j].append(time.perf_counter() - t1)
                        assert r.get("ok"), r
                for j, b in enumerate(a.builds):
                    st = cs[j].call("stats")
                    print("%-5s %-28s docs %d  scan_kernel %-10s  by %-6s p50 %7.2f ms  p99 "
                          "%7.2f ms  (%d queries)"
                          % (precision, b, st["documents"],
                             st["index"].get("scan_kernel", "(exact)"), form, pct(lat[j], 0.5),
                             pct(lat[j], 0.99), len(lat[j])))
            print("load average: %s" % machine.loadavg(), flush=True)
        finally:
            for d in ds:
                d.stop()
                d.cleanup()
            src.cleanup()


if __name__ == "__main__":
    main()
