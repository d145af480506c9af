#!/usr/bin/env python3
"""Query latency over HTTP against nanomsg and against Chroma's HTTP server, on the same
documents, with 1 and 16 clients, in one run (issue 16).

    bench/http/bench_http.py [--docs 100000] [--queries 2000] [--build build] [--model DIR]

Needs the build (daemon/sbertd, encoder/libsbert.so.1), the checkout's .venv
(scripts/python-env.sh) and, for the Chroma rows, `pip install chromadb` in it (its `chroma run`
server); left out, with a note, when missing. Not run by CI.

Rows, per query, k = 10, the same query vectors everywhere (encoded once with sbertd.Encoder, so
no row pays for encoding; Chroma's own embedder would fetch a model from a hub):
- sbertd nanomsg: the Python client (pynng REQ) sends {"op":"query","vector":...}.
- sbertd HTTP: POST /v1/query with the same body over one keep-alive connection per client
  (requests.Session), the daemon's http = 127.0.0.1:PORT.
- chroma HTTP: chromadb.HttpClient against `chroma run` (HNSW, cosine) on loopback.
sbertd's index is Flat (exact); Chroma's is HNSW. Each client runs in its own thread; p50 and
p99 are over every query of the run, queries/s is the total.
"""
import argparse
import gzip
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
import numpy as np  # noqa: E402
import requests  # noqa: E402
import sbertd_harness as harness  # noqa: E402

import sbertd  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_clients(make, items, clients):
    """make() gives each client thread its own call(item); returns (p50 ms, p99 ms, qps)."""
    lat, lock, it = [], threading.Lock(), iter(items)

    def worker():
        call, mine = make(), []
        while True:
            with lock:
                x = next(it, None)
            if x is None:
                break
            t0 = time.perf_counter()
            call(x)
            mine.append(time.perf_counter() - t0)
        with lock:
            lat.extend(mine)

    t0 = time.perf_counter()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return lat[len(lat) // 2] * 1e3, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3, len(lat) / wall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=100000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--shared", default=os.environ.get("SBERT_SHARED_DIR", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    a = ap.parse_args()
    os.environ.setdefault("SBERTD", os.path.join(a.build, "daemon", "sbertd"))
    os.environ.setdefault("SBERTD_LIBRARY", os.path.join(a.build, "encoder", "libsbert.so.1"))
    with gzip.open(os.path.join(a.shared, "data", "corpus", "tatoeba_en_sentences.txt.gz"), "rt",
                   encoding="utf-8") as f:
        texts = f.read().splitlines()
    random.Random(16).shuffle(texts)
    texts = texts[:a.docs]
    ids = ["d%06d" % i for i in range(len(texts))]
    enc = sbertd.Encoder(a.model, threads=os.cpu_count())
    t0 = time.time()
    vecs = np.concatenate([enc.encode(texts[i:i + 4096]) for i in range(0, len(texts), 4096)])
    qvecs = enc.encode([texts[random.Random(1).randrange(len(texts))] for _ in range(a.queries)])
    print("encoded %d documents and %d queries in %.0f s" % (len(texts), a.queries, time.time() - t0),
          file=sys.stderr)
    rows = []
    port = free_port()
    d = harness.Daemon(a.model, extra=["--set", "http=127.0.0.1:%d" % port]).start()
    base = "http://127.0.0.1:%d/v1/query" % port
    try:
        c = sbertd.Client(d.url, timeout=600)
        for i in range(0, len(texts), 4096):
            c.add(texts[i:i + 4096], ids=ids[i:i + 4096], embeddings=vecs[i:i + 4096])
        c.close()

        def nano():
            cl = sbertd.Client(d.url, timeout=600)
            return lambda i: cl.query(vector=qvecs[i], k=10)

        def http():
            s = requests.Session()
            h = {"Content-Type": "application/json"}
            return lambda i: s.post(base, data=json.dumps({"vector": qvecs[i].tolist(), "k": 10}),
                                    headers=h).raise_for_status()

        for clients in (1, 16):
            n = a.queries if clients > 1 else a.queries // 2
            rows.append(("sbertd nanomsg (Python client)", clients, *run_clients(nano, range(n), clients)))
            rows.append(("sbertd HTTP (requests, keep-alive)", clients, *run_clients(http, range(n), clients)))
    finally:
        d.stop()
        d.cleanup()

    chroma = shutil.which("chroma", path=os.path.dirname(sys.executable))
    if not chroma:
        print("note: chromadb is not installed: no Chroma rows (pip install chromadb)", file=sys.stderr)
    else:
        import chromadb
        tmp = tempfile.mkdtemp(prefix="bench-chroma-")
        cport = free_port()
        srv = subprocess.Popen([chroma, "run", "--path", tmp, "--host", "127.0.0.1", "--port", str(cport)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    cc = chromadb.HttpClient(host="127.0.0.1", port=cport)
                    cc.heartbeat()
                    break
                except Exception:
                    time.sleep(0.1)
            col = cc.create_collection("bench", metadata={"hnsw:space": "cosine"}, embedding_function=None)
            for i in range(0, len(texts), 5000):
                col.add(ids=ids[i:i + 5000], embeddings=vecs[i:i + 5000], documents=texts[i:i + 5000])

            def chroma_client():
                cl = chromadb.HttpClient(host="127.0.0.1", port=cport).get_collection("bench")
                return lambda i: cl.query(query_embeddings=[qvecs[i]], n_results=10)

            for clients in (1, 16):
                n = a.queries if clients > 1 else a.queries // 2
                rows.append(("chroma %s HTTP (chroma run)" % chromadb.__version__, clients,
                             *run_clients(chroma_client, range(n), clients)))
        finally:
            srv.terminate()
            srv.wait()
            shutil.rmtree(tmp, ignore_errors=True)

    print("\n%d documents, k = 10, query by vector; sbertd Flat, Chroma HNSW\n" % len(texts))
    print("%-40s %7s %9s %9s %10s" % ("path", "clients", "p50 ms", "p99 ms", "queries/s"))
    for name, clients, p50, p99, qps in sorted(rows, key=lambda r: (r[1], r[0])):
        print("%-40s %7d %9.2f %9.2f %10.0f" % (name, clients, p50, p99, qps))


if __name__ == "__main__":
    main()
