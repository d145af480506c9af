#!/usr/bin/env python3
"""Client overhead per query: sbertd's Python client against sbertctl and against Chroma's
Python client, on the same 100k documents, with 1 and 16 threads, in one run (issue 15).

    bench/python/bench_client.py [--docs 100000] [--queries 2000] [--model DIR] [--shared DIR]

Needs the build (build/daemon/sbertd, build/client/sbertctl, build/encoder/libsbert.so.1), the
checkout's .venv (scripts/python-env.sh) and, for the Chroma rows, `pip install chromadb` in it
(left out, with a note, when missing). Not run by CI.

What each row measures, per query, k = 10, over the same 100k Tatoeba sentences:
- sbertd health: the bare round trip of the Python client (nng REQ -> sbertd -> reply, JSON).
- sbertd query(vector): the client sends a precomputed query vector; sbertd searches its Flat
  index and returns ids, scores and texts — the same work as Chroma's query_embeddings.
- sbertd query(text): the daemon encodes the query too (the usual way to call it).
- sbertctl query: one process per query (exec, connect, encode, search, print): what a shell
  script pays.
- chroma query(embeddings): chromadb's in-process PersistentClient (HNSW, cosine), the same
  vectors (computed once with sbertd.Encoder: Chroma's default embedder downloads a model).
Threads share one client each (sbertd.Client is thread-safe: a context per call); the figures
are the mean latency seen by one caller and the total throughput.
"""
import argparse
import gzip
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
import numpy as np  # noqa: E402
import sbertd_harness as harness  # noqa: E402

import sbertd  # noqa: E402


def load_texts(shared, n):
    with gzip.open(os.path.join(shared, "data", "corpus", "tatoeba_en_sentences.txt.gz"), "rt",
                   encoding="utf-8") as f:
        lines = f.read().splitlines()
    random.Random(15).shuffle(lines)
    if n > len(lines):
        sys.exit("only %d texts in the corpus" % len(lines))
    return lines[:n]


def run_threads(fn, items, threads):
    """Calls fn(item) for every item from `threads` threads; returns (mean latency s, qps)."""
    lat = []
    lock = threading.Lock()
    it = iter(items)

    def worker():
        mine = []
        while True:
            with lock:
                x = next(it, None)
            if x is None:
                break
            t0 = time.perf_counter()
            fn(x)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)
    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    return sum(lat) / len(lat), len(lat) / wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--shared", default=os.environ.get("SBERT_SHARED_DIR",
                                                       os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--encode-threads", type=int, default=os.cpu_count())
    ap.add_argument("--index", default="Flat",
                    help="sbertd's index (Flat: exact; HNSW32,Flat compares like with like "
                         "with Chroma's HNSW)")
    a = ap.parse_args()
    os.environ.setdefault("SBERTD", os.path.join(a.build, "daemon", "sbertd"))
    os.environ.setdefault("SBERTD_LIBRARY", os.path.join(a.build, "encoder", "libsbert.so.1"))
    sbertctl = os.path.join(a.build, "client", "sbertctl")

    texts = load_texts(a.shared, a.docs)
    rng = random.Random(1)
    queries = [rng.choice(texts) for _ in range(a.queries)]
    enc = sbertd.Encoder(a.model, threads=a.encode_threads)
    t0 = time.time()
    vecs = np.concatenate([enc.encode(texts[i:i + 4096]) for i in range(0, len(texts), 4096)])
    qvecs = enc.encode(queries)
    print("encoded %d documents and %d queries in %.0f s (sbertd.Encoder, %d threads)"
          % (len(texts), len(queries), time.time() - t0, a.encode_threads), file=sys.stderr)
    ids = ["d%06d" % i for i in range(len(texts))]

    rows = []
    d = harness.Daemon(a.model, extra=["--index", a.index]).start()
    try:
        c = sbertd.Client(d.url, timeout=600)
        c.add(texts, ids=ids, embeddings=vecs)
        assert c.health()["documents"] == len(texts)
        for threads in (1, 16):
            n = a.queries if threads > 1 else a.queries // 2
            rows.append(("sbertd health (Python client)", threads,
                         *run_threads(lambda q: c.health(), range(n), threads)))
            rows.append(("sbertd query(vector) (Python client)", threads,
                         *run_threads(lambda i: c.query(vector=qvecs[i], k=10), range(n),
                                      threads)))
            rows.append(("sbertd query(text) (Python client)", threads,
                         *run_threads(lambda q: c.query(q, k=10), queries[:n], threads)))
            m = min(n, 200 if threads == 1 else 800)
            rows.append(("sbertctl query (a process per query)", threads,
                         *run_threads(lambda q: subprocess.run(
                             [sbertctl, "--socket", d.url, "query", "-k", "10", q],
                             stdout=subprocess.DEVNULL, check=True), queries[:m], threads)))
        c.close()
    finally:
        d.stop()
        d.cleanup()

    try:
        import chromadb
    except ImportError:
        chromadb = None
        print("note: chromadb is not installed: no Chroma rows (pip install chromadb)",
              file=sys.stderr)
    if chromadb is not None:
        tmp = tempfile.mkdtemp(prefix="bench-chroma-")
        try:
            cc = chromadb.PersistentClient(path=tmp)
            col = cc.create_collection("bench", metadata={"hnsw:space": "cosine"},
                                       embedding_function=None)
            step = 5000
            for i in range(0, len(texts), step):
                col.add(ids=ids[i:i + step], embeddings=vecs[i:i + step],
                        documents=texts[i:i + step])
            for threads in (1, 16):
                n = a.queries if threads > 1 else a.queries // 2
                rows.append(("chroma %s query(embeddings) (in-process)" % chromadb.__version__,
                             threads, *run_threads(
                                 lambda i: col.query(query_embeddings=[qvecs[i]], n_results=10),
                                 range(n), threads)))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    print("\n%d documents, k = 10, sbertd index %s, pynng %s (nng %s)\n" % (
        len(texts), a.index, __import__("pynng").__version__,
        __import__("pynng").ffi.string(__import__("pynng").lib.nng_version()).decode()))
    print("%-46s %7s %12s %10s" % ("client", "threads", "latency ms", "queries/s"))
    for name, threads, lat, qps in sorted(rows, key=lambda r: (r[1], r[0])):
        print("%-46s %7d %12.3f %10.0f" % (name, threads, lat * 1000, qps))


if __name__ == "__main__":
    main()
