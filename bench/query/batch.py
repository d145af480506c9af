#!/usr/bin/env python3
"""bench/query/batch.py — a batch query of 64 texts against 64 single queries (issue 11).

One sbertd on a fresh store of --docs documents (tatoeba sentences and WordNet glosses from the
shared corpus; their vectors are random unit vectors given with add's "vector", so that filling
the store takes seconds: a Flat search costs the same whatever the vectors hold). Then, --rounds
times each, with the same --batch ten-word tatoeba sentences as queries (top --k, text and
metadata included):

  batch        one request {"texts": [64 texts]} (one encoder batch, one query_many)
  sequential   64 requests {"text": ...} one after another on one socket
  concurrent   64 requests {"text": ...} at once, one socket and thread each (the daemon's
               shared encoder and searcher batch them as they arrive)
  and the same three with "vectors"/"vector" (the encoder left out: the search alone).

Throughput is queries per second of the round's wall time (first send to last reply); the
table gives the median round and the batch's ratio to each way of sending singles (issue 11's
target: >= 3x the 64 single queries). Every round checks that each list of the batch names the
same ids as the single query. Prints the CPU model, the load average before and after, and the
encoder's kernel as sbertd logged it. Run through bench/query/run.sh, which unsets
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE so that OpenBLAS picks its kernel itself.
"""
import argparse
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from e2e import Req, load_texts, wait_health  # noqa: E402  (nanomsg via ctypes, the corpus)
from machine import cpu_model  # noqa: E402


def unit_vector(rng, dim):
    v = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    n = math.sqrt(sum(x * x for x in v))
    return [round(x / n, 6) for x in v]


def fill(url, texts, dim, seed, chunk=1000):
    rng = random.Random(seed)
    r = Req(url)
    try:
        for lo in range(0, len(texts), chunk):
            docs = [{"id": "d%d" % i, "text": texts[i], "metadata": {"n": i},
                     "vector": unit_vector(rng, dim)} for i in range(lo, min(len(texts), lo + chunk))]
            rep = r.call({"v": 1, "op": "add", "req_id": "fill-%d" % lo, "documents": docs})
            if not rep.get("ok"):
                sys.exit("add failed: %r" % rep)
    finally:
        r.close()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def ok_results(rep, what):
    if not rep.get("ok"):
        sys.exit("%s failed: %r" % (what, rep))
    return rep["results"]


def run_batch(sock, member, items, k):
    return ok_results(sock.call({"v": 1, "op": "query", member: items, "k": k}), "batch")


def run_sequential(sock, member, items, k):
    return [ok_results(sock.call({"v": 1, "op": "query", member: x, "k": k}), "single")
            for x in items]


def run_concurrent(socks, member, items, k):
    """One thread and socket per query, released together; returns the lists in order."""
    out = [None] * len(items)
    start = threading.Barrier(len(items) + 1)

    def one(i):
        start.wait()
        out[i] = socks[i].call({"v": 1, "op": "query", member: items[i], "k": k})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return wall, [ok_results(r, "concurrent single") for r in out]


def same_ids(a, b):
    return [[h["id"] for h in x] for x in a] == [[h["id"] for h in x] for x in b]


def main():
    root = os.path.abspath(os.path.join(HERE, "..", ".."))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(root, "build"))
    ap.add_argument("--model", default=os.path.join(root, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--data", default=os.path.join(os.path.dirname(root), "shared", "data"))
    ap.add_argument("--docs", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default=os.path.join(root, "bench", "out", "query-batch.md"))
    a = ap.parse_args()
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(k):
            print("warning: %s=%s is set: OpenBLAS will not pick its own kernel (use run.sh)"
                  % (k, os.environ[k]))
    sbertd = os.path.join(a.build, "daemon", "sbertd")
    texts, queries = load_texts(a.data, a.docs, a.seed)
    queries = queries[:a.batch]
    tmp = tempfile.mkdtemp(prefix="sbqb-", dir="/tmp")
    proc = None
    try:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        url = "ipc://" + os.path.join(tmp, "s.sock")
        log = open(os.path.join(tmp, "sbertd.log"), "w")
        proc = subprocess.Popen([sbertd, "--model", a.model, "--data", data, "--listen", url],
                                stdout=log, stderr=subprocess.STDOUT)
        wait_health(url, proc)
        r = Req(url)
        stats = r.call({"v": 1, "op": "stats"})
        dim = stats["dim"]
        t_fill, _ = timed(lambda: fill(url, texts, dim, a.seed))
        print("store: %d documents (random unit vectors) in %.1f s" % (len(texts), t_fill),
              flush=True)
        enc = r.call({"v": 1, "op": "encode", "texts": queries})
        if not enc.get("ok"):
            sys.exit("encode failed: %r" % enc)
        vectors = enc["embeddings"]
        socks = [Req(url) for _ in queries]
        load_before = os.getloadavg()
        walls = {}
        mismatches = 0
        for rnd in range(a.rounds):
            for member, items in (("texts", queries), ("vectors", vectors)):
                single = member[:-1]
                t, b = timed(lambda: run_batch(r, member, items, a.k))
                walls.setdefault((member, "batch"), []).append(t)
                t, s = timed(lambda: run_sequential(r, single, items, a.k))
                walls.setdefault((member, "sequential"), []).append(t)
                t, c = run_concurrent(socks, single, items, a.k)
                walls.setdefault((member, "concurrent"), []).append(t)
                mismatches += (not same_ids(b, s)) + (not same_ids(b, c))
            print("round %d of %d done" % (rnd + 1, a.rounds), flush=True)
        load_after = os.getloadavg()
        st = r.call({"v": 1, "op": "stats"})
        for s in socks:
            s.close()
        r.close()
        proc.send_signal(15)
        proc.wait(timeout=120)
        proc = None
        with open(os.path.join(tmp, "sbertd.log")) as f:
            m = re.search(r"encoder: loaded .*", f.read())
        encoder_line = m.group(0) if m else "not found in the log"
    finally:
        if proc:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    n = len(queries)
    rows = []
    for member in ("texts", "vectors"):
        med = {how: statistics.median(walls[(member, how)]) for how in
               ("batch", "sequential", "concurrent")}
        for how in ("batch", "sequential", "concurrent"):
            rows.append("| %s | %s | %.1f | %.0f | %s |" % (
                member if how == "batch" else "", how, med[how] * 1000, n / med[how],
                "%.2fx / %.2fx" % (med["sequential"] / med["batch"],
                                   med["concurrent"] / med["batch"]) if how == "batch" else ""))
    kernel = re.search(r"(OpenBLAS core \S+|int8 \S+)", encoder_line)
    md = "\n".join([
        "# A batch query of %d texts against %d single queries" % (n, n),
        "",
        "| queries as | sent | wall ms (median of %d) | queries/s | batch vs sequential / "
        "concurrent |" % a.rounds,
        "|---|---|---:|---:|---|",
    ] + rows + [
        "",
        "Store: %d documents, Flat index, k = %d (text and metadata included). CPU: %s, %d "
        "cores online; load average %.2f before and %.2f after the timed rounds (1 min). "
        "Encoder: %s; encode_threads %s, workers %s. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset "
        "by run.sh. Batch lists equal to the singles' (ids): %s." % (
            len(texts), a.k, cpu_model(), os.cpu_count(), load_before[0], load_after[0],
            kernel.group(1) if kernel else encoder_line, st["threads"]["encode"],
            st["threads"]["workers"],
            "all" if not mismatches else "%d rounds differ" % mismatches),
        "",
    ])
    print()
    print(md)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(md)
    print("written to %s" % a.out)


if __name__ == "__main__":
    main()
