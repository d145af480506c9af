#!/usr/bin/env python3
"""What the keyword index costs and how fast hybrid search is (issue 13), in one run.

    bench/keyword/bench_keyword.py [--docs 100000] [--queries 300] [--build build] [--model DIR]

Needs the build (daemon/sbertd, encoder/libsbert.so.1) and the checkout's .venv
(scripts/python-env.sh). Not run by CI. Documents: Tatoeba sentences and WordNet glosses
(shared/data/corpus), shuffled with a fixed seed; their vectors are encoded once with
sbertd.Encoder (the time is printed: it is what the daemon would spend encoding them).

1. Ingest: two daemons on fresh stores take the same documents with precomputed vectors, 1,000 a
   request: keyword_language = english (the default) and off (no keyword index). The difference
   is the keyword index's cost; it is also given against a full ingest (encoding + the rest).
2. Size: stats keyword.bytes (postings and the term tree) per document, and the store files.
3. Queries (ten-word Tatoeba sentences that are not documents, one client, k = 10): p50 and p99
   of dense, keyword and hybrid (RRF over 100 candidates a ranking), each query sent by text, so
   dense and hybrid both encode it.

Prints the CPU model and the encoder kernel; run it through bench/keyword/run.sh, which unsets
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE.
"""
import argparse
import gzip
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
sys.path.insert(0, os.path.join(ROOT, "bench", "common"))
import numpy as np  # noqa: E402
import sbertd_harness as harness  # noqa: E402
from machine import cpu_model  # noqa: E402

import sbertd  # noqa: E402


def corpus(shared):
    with gzip.open(os.path.join(shared, "data", "corpus", "tatoeba_en_sentences.txt.gz"), "rt",
                   encoding="utf-8") as f:
        tatoeba = f.read().splitlines()
    glosses = []
    for part in ("part1", "part2"):
        with gzip.open(os.path.join(shared, "data", "corpus", "wordnet30_glosses.%s.tsv.gz" % part), "rt",
                       encoding="utf-8") as f:
            next(f)
            glosses += [line.rstrip("\n").split("\t")[2] for line in f if line.count("\t") >= 2]
    return tatoeba, glosses


def ingest(model, texts, ids, vecs, config):
    d = harness.Daemon(model, config=config).start(timeout=600)
    c = sbertd.Client(d.url, timeout=600)
    t0 = time.perf_counter()
    for i in range(0, len(texts), 1000):
        c.add(texts[i:i + 1000], ids=ids[i:i + 1000], embeddings=vecs[i:i + 1000])
    took = time.perf_counter() - t0
    return d, c, took


def latency(call, items):
    lat = []
    for x in items:
        t0 = time.perf_counter()
        call(x)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    return lat[len(lat) // 2] * 1e3, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--shared", default=os.environ.get("SBERT_SHARED_DIR", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    os.environ.setdefault("SBERTD", os.path.join(a.build, "daemon", "sbertd"))
    os.environ.setdefault("SBERTD_LIBRARY", os.path.join(a.build, "encoder", "libsbert.so.1"))
    print("CPU: %s; OPENBLAS_CORETYPE=%s" % (cpu_model(), os.environ.get("OPENBLAS_CORETYPE", "(unset)")))
    tatoeba, glosses = corpus(a.shared)
    rng = random.Random(13)
    pool = tatoeba + glosses
    rng.shuffle(pool)
    texts = list(dict.fromkeys(pool))[:a.docs]
    in_corpus = set(texts)
    queries = [t for t in tatoeba if len(t.split()) == 10 and t not in in_corpus][:a.queries]
    ids = ["d%06d" % i for i in range(len(texts))]
    enc = sbertd.Encoder(a.model, threads=os.cpu_count())
    t0 = time.perf_counter()
    vecs = np.concatenate([enc.encode(texts[i:i + 4096]) for i in range(0, len(texts), 4096)])
    encode_s = time.perf_counter() - t0
    print("%d documents (median %d characters), %d queries; encoding them took %.1f s (%d threads)"
          % (len(texts), sorted(len(t) for t in texts)[len(texts) // 2], len(queries), encode_s, os.cpu_count()))

    d_off, c_off, t_off = ingest(a.model, texts, ids, vecs, "keyword_language = off\n")
    off_bytes = os.path.getsize(os.path.join(d_off.data, "store.mdb"))
    c_off.close()
    d_off.stop()
    d_off.cleanup()
    d, c, t_on = ingest(a.model, texts, ids, vecs, None)
    on_bytes = os.path.getsize(os.path.join(d.data, "store.mdb"))
    st = c.stats()
    kw = st["keyword"]
    print("\ningest with precomputed vectors (1,000 a request): keyword index off %.1f s, on %.1f s: +%.1f s"
          % (t_off, t_on, t_on - t_off))
    print("  as a share of a full ingest (encoding %.1f s + the rest with the keyword index off): +%.1f%%"
          % (encode_s, 100 * (t_on - t_off) / (encode_s + t_off)))
    print("keyword index: %d documents, %d postings, %.1f MB (%.0f bytes a document); store file %.1f MB "
          "without, %.1f MB with" % (kw["documents"], kw["postings"], kw["bytes"] / 1e6,
                                     kw["bytes"] / max(1, kw["documents"]), off_bytes / 1e6, on_bytes / 1e6))

    print("\n%-34s %8s %8s" % ("query (by text, k = 10, 1 client)", "p50 ms", "p99 ms"))
    for name, members in (("dense", {}), ("keyword (BM25)", {"mode": "keyword"}),
                          ("hybrid (RRF, 100 candidates each)", {"mode": "hybrid"})):
        p50, p99 = latency(lambda q: c.call("query", text=q, k=10, include=[], **members), queries)
        print("%-34s %8.2f %8.2f" % (name, p50, p99))
    c.close()
    d.stop()
    d.cleanup()


if __name__ == "__main__":
    main()
