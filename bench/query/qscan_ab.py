#!/usr/bin/env python3
"""Query latency (and recall@10) by text through the daemon at N documents, one sbertd build, or
two interleaved (e.g. main's exact Flat scan against the int8 scan with exact re-rank,
index/vindex.h "Flat").

    bench/query/qscan_ab.py BUILD_A [BUILD_B] [--n 100000] [--precision int8|fp32]... [--store DIR]
                            [--build-only] [--queries 400]

Run it with the venv's python (numpy). The documents are Tatoeba sentences, stored with their
embeddings (sbert-encode --precision int8 of the last build, cached in
bench/out/qscan-tatoeba.f32) so that a store is built from vectors rather than encoded by the
daemon; only the queries are encoded by the daemons, with the precision of the row. The last
10,000 sentences are kept for queries, so up to 106,830 documents are real sentences; past them
(e.g. --n 1000000) each further document is two real ones, the texts joined by a space and the
vector the normalised sum of theirs (so it stays in the span of real embeddings), and the output
says how many. Queries: ten-word sentences that are not among the documents, k = 10, one at a
time, each sent to every daemon in turn (order swapped every query) so all see the same machine
load; then the same queries as vectors (the search alone, without the query's encode). recall@10
is against numpy's exact top 10 over the stored vectors for the daemon's own query vector (the
encode op's, which is what a query by text searches with). Prints the CPU model, the load, each
daemon's index.scan_kernel from stats and p50/p99 per build. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE
are unset here (bench/e2e's rule).
"""
import argparse
import gzip
import os
import random
import shutil
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
sys.path.insert(0, os.path.join(ROOT, "bench", "common"))
import machine  # noqa: E402
import sbertd_harness as h  # noqa: E402

DIM = 384
QUERY_RESERVE = 10000  # the last sentences, never documents


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
        enc = os.path.join(a.builds[-1], "encoder", "sbert-encode")
        print("encoding %d Tatoeba sentences into %s (int8, once)" % (len(texts), cache),
              flush=True)
        with open(cache + ".tmp", "wb") as out:
            subprocess.run([enc, "--model", a.model, "--format", "f32", "--precision", "int8",
                            "--threads", "2"], input="\n".join(texts).encode() + b"\n",
                           stdout=out, check=True)
        os.rename(cache + ".tmp", cache)
    return texts, cache


def documents(texts, cache, n):
    """The n documents: (texts, vectors [n x DIM] float32, how many are real sentences)."""
    real = np.fromfile(cache, dtype=np.float32).reshape(-1, DIM)
    nreal = min(n, len(texts) - QUERY_RESERVE)
    docs = list(texts[:nreal])
    vecs = np.empty((n, DIM), dtype=np.float32)
    vecs[:nreal] = real[:nreal]
    rng = np.random.default_rng(7)
    pairs = rng.integers(0, nreal, size=(n - nreal, 2))
    for i, (x, y) in enumerate(pairs):
        docs.append(texts[x] + " " + texts[y])
    s = real[pairs[:, 0]] + real[pairs[:, 1]]
    vecs[nreal:] = s / np.linalg.norm(s, axis=1, keepdims=True)
    return docs, vecs, nreal


def build_store(a, precision, docs, vecs):
    """A store of the documents with their vectors, made by BUILD_A's daemon; with --store, kept
    in (and taken again from) --store/PRECISION-N."""
    kept = a.store and os.path.join(a.store, "%s-%d" % (precision, len(docs)))
    os.environ["SBERTD"] = os.path.join(a.builds[0], "daemon", "sbertd")
    d = h.Daemon(a.model, config="precision = %s\n" % precision)
    if kept and os.path.isdir(kept):
        shutil.copytree(kept, d.data)
        return d
    d.start(timeout=300)
    c = d.client(timeout_ms=600000)
    for at in range(0, len(docs), 1000):
        m = min(1000, len(docs) - at)
        batch = [{"id": "t%d" % (at + i), "text": docs[at + i],
                  "vector": vecs[at + i].tolist()} for i in range(m)]
        r = c.call("add", documents=batch)
        assert r.get("ok"), r
    d.stop()
    if kept:
        shutil.copytree(d.data, kept + ".tmp")
        os.rename(kept + ".tmp", kept)
    return d


def exact_top10(vecs, qv):
    """Ids of the exact top 10 of each query vector over vecs (by inner product)."""
    out = []
    for at in range(0, len(qv), 50):
        s = np.asarray(qv[at:at + 50], dtype=np.float32) @ vecs.T
        top = np.argpartition(-s, 10, axis=1)[:, :10]
        out.extend({"t%d" % i for i in row} for row in top)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("builds", nargs="+", help="one or two sbertd build directories")
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--precision", action="append", choices=("int8", "fp32"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--shared", default=os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--store", help="keep the built stores here and take them again next time")
    ap.add_argument("--build-only", action="store_true", help="build (and --store) the stores, "
                    "then stop")
    a = ap.parse_args()
    a.builds = [os.path.abspath(b) for b in a.builds]
    if len(a.builds) > 2:
        ap.error("one or two builds")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(var, None)
    print("CPU: %s; load average at the start: %s" % (machine.cpu_model(), machine.loadavg()))
    texts, cache = texts_and_vectors(a)
    docs, vecs, nreal = documents(texts, cache, a.n)
    print("documents %d (%d real sentences, %d synthetic pairs)" % (a.n, nreal, a.n - nreal))
    held = set(texts[:nreal])
    qs = [t for t in texts[nreal:] if len(t.split()) == 10 and t not in held]
    random.Random(5).shuffle(qs)
    qs = qs[:a.queries]
    for precision in a.precision or ["int8", "fp32"]:
        t0 = time.time()
        src = build_store(a, precision, docs, vecs)
        print("%s store of %d documents ready in %.0f s" % (precision, a.n, time.time() - t0),
              flush=True)
        if a.build_only:
            src.cleanup()
            continue
        ds = []
        try:
            for b in a.builds:
                os.environ["SBERTD"] = os.path.join(b, "daemon", "sbertd")
                d = h.Daemon(a.model, config="precision = %s\n" % precision)
                shutil.copytree(src.data, d.data)
                ds.append(d.start(timeout=300))
            cs = [d.client() for d in ds]
            qv = cs[0].call("encode", texts=qs)["embeddings"]
            truth = exact_top10(vecs, qv)
            for form, items in (("text", qs), ("vector", qv)):
                lat = [[] for _ in a.builds]
                hit = [0 for _ in a.builds]
                for i, x in enumerate(items):
                    order = list(range(len(a.builds)))
                    for j in (order if i % 2 == 0 else order[::-1]):
                        t1 = time.perf_counter()
                        r = cs[j].call("query", k=10, **{form: x})
                        lat[j].append(time.perf_counter() - t1)
                        assert r.get("ok"), r
                        hit[j] += len({res["id"] for res in r["results"]} & truth[i])
                for j, b in enumerate(a.builds):
                    st = cs[j].call("stats")
                    print("%-5s %-28s docs %d  scan_kernel %-10s  by %-6s p50 %7.2f ms  p99 "
                          "%7.2f ms  recall@10 %.4f  (%d queries)"
                          % (precision, b, st["documents"],
                             st["index"].get("scan_kernel", "(exact)"), form, pct(lat[j], 0.5),
                             pct(lat[j], 0.99), hit[j] / (10.0 * len(items)), len(lat[j])))
            print("load average: %s" % machine.loadavg(), flush=True)
        finally:
            for d in ds:
                d.stop()
                d.cleanup()
            src.cleanup()


if __name__ == "__main__":
    main()
