#!/usr/bin/env python3
"""bench_manage.py — sbertd's data management ops on a real daemon: count (with and without a
filter), list (every page, with and without a filter), delete by filter, and query latency while
the delete runs. No peers: these ops have no counterpart measured here; the figures are for
comparing sbertd commits on one machine.

Usage: bench_manage.py MODEL_DIR [-n 100000] [--sbertd PATH]   (or $SBERTD)

Documents carry precomputed unit vectors (two non-zero components: cheap JSON, the store holds
384 floats regardless), so nothing is encoded; metadata {"src": "s0".."s9", "n": i}. Prints the
CPU model, the load average before and after, and one table.
"""
import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "daemon"))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
import sbertd_harness as h  # noqa: E402
from machine import cpu_model, loadavg  # noqa: E402

DIM = 384




def fs_type(path):
    """The file system type holding path (/proc/mounts' longest matching mount point): fsync
    costs nothing on tmpfs, so the delete's figures depend on it."""
    best, kind = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            _, mnt, typ = line.split()[:3]
            if path.startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, typ
    return "%s (%s)" % (kind, best)


def vec(rng):
    v = [0] * DIM
    a, b = rng.sample(range(DIM), 2)
    v[a], v[b] = 0.6, 0.8
    return v


def ok(r, what):
    if not r.get("ok"):
        raise SystemExit("%s failed: %r" % (what, r))
    return r


def timed(fn, repeat=3):
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def list_all(c, **m):
    n, pages, cursor = 0, 0, None
    while True:
        req = dict(m)
        if cursor:
            req["cursor"] = cursor
        r = ok(c.call("list", **req), "list")
        n += len(r["documents"])
        pages += 1
        cursor = r.get("cursor")
        if not cursor:
            return n, pages


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("-n", type=int, default=100000)
    ap.add_argument("--sbertd")
    ap.add_argument("--workdir", help="where the store goes (default: $TMPDIR)")
    a = ap.parse_args()
    if a.sbertd:
        os.environ["SBERTD"] = a.sbertd
    rng = random.Random(7)
    print("CPU: %s (%d online), load average before: %s" % (cpu_model(), os.cpu_count(),
                                                           loadavg()), flush=True)
    d = h.Daemon(a.model, config="max_k = 1000\n", tmp=a.workdir and tempfile.mkdtemp(
        prefix="bench-manage-", dir=a.workdir))
    d.start()
    rows = []
    try:
        c = d.client(timeout_ms=600000)
        t0 = time.perf_counter()
        for at in range(0, a.n, 1000):
            docs = [{"id": "d%07d" % i, "text": "document number %d" % i,
                     "metadata": {"src": "s%d" % (i % 10), "n": i}, "vector": vec(rng)}
                    for i in range(at, min(a.n, at + 1000))]
            ok(c.call("add", documents=docs), "add")
        rows.append(("add (precomputed vectors, batches of 1000)", a.n,
                     time.perf_counter() - t0))
        t, r = timed(lambda: ok(c.call("count"), "count")["count"])
        rows.append(("count, no filter", r, t))
        # a count with a filter reads every document: its rate is of documents examined
        t, r = timed(lambda: ok(c.call("count", filter={"src": "s3"}), "count")["count"])
        rows.append(("count, filter src = s3 (%d match)" % r, a.n, t))
        t, r = timed(lambda: ok(c.call("count", filter={"n": {"$gte": a.n // 2},
                                                        "src": {"$in": ["s1", "s2"]}}),
                                "count")["count"])
        rows.append(("count, filter n >= N/2, src in [s1,s2] (%d match)" % r, a.n, t))
        for limit in (100, 1000):
            t, (n, pages) = timed(lambda: list_all(c, limit=limit), repeat=1)
            rows.append(("list all, limit %d, text+metadata (%d pages)" % (limit, pages), n, t))
        t, (n, pages) = timed(lambda: list_all(c, limit=1000, include=[]), repeat=1)
        rows.append(("list all, limit 1000, ids only (%d pages)" % pages, n, t))
        t, (n, pages) = timed(lambda: list_all(c, limit=1000, filter={"src": "s3"}), repeat=1)
        rows.append(("list, filter src = s3, limit 1000 (%d pages)" % pages, n, t))

        # query latency alone, then while a delete by filter of 10% runs
        q = d.client()
        lat_alone = []
        for _ in range(200):
            t0 = time.perf_counter()
            ok(q.call("query", vector=vec(rng), k=10, include=[]), "query")
            lat_alone.append(time.perf_counter() - t0)
        lat_during, stop = [], threading.Event()

        def querier():
            while not stop.is_set():
                t0 = time.perf_counter()
                ok(q.call("query", vector=vec(rng), k=10, include=[]), "query")
                lat_during.append(time.perf_counter() - t0)
        th = threading.Thread(target=querier)
        th.start()
        t0 = time.perf_counter()
        r = ok(c.call("delete", req_id="bench-del", filter={"src": "s5"}), "delete")
        t_del = time.perf_counter() - t0
        stop.set()
        th.join()
        q.close()
        rows.append(("delete by filter src = s5 (10%, chunks of 1000)", r["deleted"], t_del))
        t0 = time.perf_counter()
        r = ok(c.call("delete", req_id="bench-del-2",
                      filter={"src": {"$in": ["s0", "s1", "s2", "s3"]}}), "delete")
        rows.append(("delete by filter src in [s0..s3] (40%)", r["deleted"],
                     time.perf_counter() - t0))
        c.close()
    finally:
        data = d.data
        d.cleanup()

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")
    print("\ndata directory on: %s" % fs_type(os.path.dirname(data)))
    print("\n%-52s %10s %10s %14s" % ("operation", "documents", "seconds", "documents/s"))
    for name, n, t in rows:
        print("%-52s %10d %10.3f %14.0f" % (name, n, t, n / t if t else 0))
    print("\nquery (vector, k=10) latency, ms: alone p50 %.2f p99 %.2f (n %d); during the 10%% "
          "delete by filter p50 %.2f p99 %.2f (n %d)" % (
              pct(lat_alone, .5), pct(lat_alone, .99), len(lat_alone), pct(lat_during, .5),
              pct(lat_during, .99), len(lat_during)))
    print("load average after: %s" % loadavg())


if __name__ == "__main__":
    main()
