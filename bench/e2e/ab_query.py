#!/usr/bin/env python3
"""Query latency of two sbertd builds, interleaved so that both see the same machine load.

    bench/e2e/ab_query.py BUILD_A BUILD_B [--store DIR] [--queries 400]

Each build's sbertd starts on its own copy of the same store (default: the cached store of
bench/e2e, bench/out/e2e-store-20000-4000); every query (ten-word Tatoeba sentences by text, then
their vectors) is sent to both daemons one after the other, the order swapped every query. On a
shared machine, where e2e.py's rows move by 20% between runs, this separates a change of the
query path from the load. Prints p50/p90 per build. Run with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE
unset (bench/e2e/run.sh's rule).
"""
import argparse
import gzip
import os
import random
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
import sbertd_harness as h  # noqa: E402


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs=2)
    ap.add_argument("--store", default=os.path.join(ROOT, "bench", "out", "e2e-store-20000-4000"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--queries", type=int, default=400)
    a = ap.parse_args()
    ds = []
    for b in a.builds:
        os.environ["SBERTD"] = os.path.join(b, "daemon", "sbertd")
        d = h.Daemon(a.model)
        shutil.copytree(a.store, d.data)
        ds.append(d.start(timeout=300))
    try:
        with gzip.open(os.path.join(a.shared, "data", "corpus", "tatoeba_en_sentences.txt.gz"), "rt") as f:
            qs = [t for t in f.read().splitlines() if len(t.split()) == 10]
        random.Random(5).shuffle(qs)
        qs = qs[:a.queries]
        cs = [d.client() for d in ds]
        vecs = cs[0].call("encode", texts=qs[:a.queries // 2])["embeddings"]
        for form, items in (("text", qs), ("vector", vecs)):
            lat = [[], []]
            for i, x in enumerate(items):
                for j in ((0, 1) if i % 2 == 0 else (1, 0)):
                    t0 = time.perf_counter()
                    r = cs[j].call("query", k=10, **{form: x})
                    lat[j].append(time.perf_counter() - t0)
                    assert r.get("ok"), r
            for j, b in enumerate(a.builds):
                print("%-40s by %-6s p50 %7.2f ms  p90 %7.2f ms  (%d queries)"
                      % (b, form, statistics.median(lat[j]) * 1e3, pct(lat[j], 0.9), len(lat[j])))
        with open("/proc/loadavg") as f:
            print("load average: %s" % " ".join(f.read().split()[:3]))
    finally:
        for d in ds:
            d.stop()
            d.cleanup()


if __name__ == "__main__":
    main()
