#!/usr/bin/env python3
"""bench/load — sbertd under a mixed load: C concurrent clients (each its own REQ socket) send
add, query and delete requests for S seconds against a store of D documents.

The store of D documents (Tatoeba sentences + WordNet glosses, deduplicated, shuffled with a fixed
seed; ids "doc-N") is built once through sbertd and cached in bench/out/load-store-D/ (git-ignored).
Every run works on a copy of it, so runs start from the same state.

Per client, per step, an operation is drawn with the weights of --mix:
  query   a ten-word Tatoeba sentence, k = --k; ok means exactly k results;
  add     --add-batch new documents (texts beyond the first D, ids "load-C-N");
  delete  the ids of one earlier add of this client; ok means every id existed.
A reply that is not ok (busy included) or breaks these checks is an error, listed in the report.

Reports per op: count, errors, client-side latency p50/p99/max (ms) and ops/s; the daemon's own
stats percentiles; documents and RSS (VmRSS of sbertd) after warm-up and at the end; whether the
daemon exits 0 on SIGTERM. Writes bench/out/load.md.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
sys.path.insert(0, os.path.join(ROOT, "bench", "e2e"))
import sbertd_harness as h  # noqa: E402
from e2e import load_texts, openblas_core, pct  # noqa: E402


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def start_daemon(a, data, url, logpath):
    cmd = [a.sbertd, "--model", a.model, "--data", data, "--listen", url]
    if a.threads:
        cmd += ["--threads", str(a.threads)]
    if a.encode_threads:
        cmd += ["--set", "encode_threads=%d" % a.encode_threads]
    log = open(logpath, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 900
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit("sbertd exited with %d at start (log %s)" % (proc.returncode, logpath))
        if os.path.exists(url[6:]):
            c = h.Client(url, timeout_ms=5000)
            try:
                if c.call("health").get("ok"):
                    return proc
            except h.Timeout:
                pass
            finally:
                c.close()
        time.sleep(0.5)
    proc.kill()
    sys.exit("sbertd did not answer health (log %s)" % logpath)


def stop_daemon(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(300)
    except subprocess.TimeoutExpired:
        proc.kill()
        return None


def build_store(a, texts, store):
    """Adds texts[:D] with ids doc-0.. through a daemon on store.tmp, then renames it to store."""
    tmp = store + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    url = "ipc://" + os.path.join(tmp, "s.sock")
    print("building the %d-document store in %s (once) ..." % (a.docs, store), flush=True)
    proc = start_daemon(a, os.path.join(tmp, "data"), url, os.path.join(tmp, "build.log"))
    c = h.Client(url, timeout_ms=600000)
    t0 = time.time()
    try:
        for i in range(0, a.docs, 256):
            docs = [{"id": "doc-%d" % j, "text": texts[j]} for j in range(i, min(i + 256, a.docs))]
            r = c.call("add", documents=docs, req_id="build-%d" % i)
            if not r.get("ok"):
                sys.exit("store build: add failed: %r" % r)
            if (i // 256) % 40 == 0:
                el = time.time() - t0
                print("  %d / %d (%.0f s, %.0f docs/s)" % (i + len(docs), a.docs, el,
                                                           (i + len(docs)) / max(el, 1e-9)),
                      flush=True)
        n = c.call("health")["documents"]
    finally:
        c.close()
        rc = stop_daemon(proc)
    if n != a.docs or rc != 0:
        sys.exit("store build: %d documents, exit status %r" % (n, rc))
    os.remove(os.path.join(tmp, "build.log"))
    os.rename(tmp, store)
    print("  built in %.0f s" % (time.time() - t0), flush=True)


class Stats:
    def __init__(self):
        self.lat = {"query": [], "add": [], "delete": []}
        self.errors = []
        self.lock = threading.Lock()


def client_loop(ci, a, url, queries, extra, deadline, st, start):
    rnd = random.Random(a.seed * 1000 + ci)
    ops, weights = zip(*a.mix)
    c = h.Client(url, timeout_ms=120000)
    pending = []  # ids of this client's earlier adds, each list one add
    n_add = 0
    lat = {"query": [], "add": [], "delete": []}
    errs = []
    start.wait()
    stop_at = deadline[0]
    try:
        while time.time() < stop_at:
            op = rnd.choices(ops, weights)[0]
            if op == "delete" and not pending:
                op = "query"
            if op == "query":
                msg = {"text": rnd.choice(queries), "k": a.k}
            elif op == "add":
                ids = ["load-%d-%d" % (ci, n_add + j) for j in range(a.add_batch)]
                docs = [{"id": i, "text": extra[(ci * 7919 + n_add + j) % len(extra)],
                         "metadata": {"client": ci}} for j, i in enumerate(ids)]
                n_add += a.add_batch
                msg = {"documents": docs, "req_id": "c%d-a%d" % (ci, n_add)}
            else:
                ids = pending.pop(rnd.randrange(len(pending)))
                msg = {"ids": ids, "req_id": "c%d-d%s" % (ci, ids[0])}
            t0 = time.perf_counter()
            try:
                r = c.call(op, **msg)
            except (h.Timeout, OSError) as e:
                errs.append("%s: %s" % (op, e))
                continue
            ms = (time.perf_counter() - t0) * 1000
            lat[op].append(ms)
            if not r.get("ok"):
                errs.append("%s: %s" % (op, r.get("error")))
            elif op == "query" and len(r["results"]) != a.k:
                errs.append("query: %d results" % len(r["results"]))
            elif op == "add":
                pending.append(ids)
            elif op == "delete" and not all(r["existed"]):
                errs.append("delete: existed %r" % r["existed"])
    finally:
        c.close()
        with st.lock:
            for k, v in lat.items():
                st.lat[k].extend(v)
            st.errors.extend("client %d: %s" % (ci, e) for e in errs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models/all-MiniLM-L6-v2"))
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"),
                    help="the shared data folder (corpus/)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--docs", type=int, default=100000, help="documents in the store")
    ap.add_argument("--mix", default="query:6,add:3,delete:1",
                    help="op weights (query, add, delete)")
    ap.add_argument("--add-batch", type=int, default=4, help="documents per add")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="sbertd --threads (0: its default)")
    ap.add_argument("--encode-threads", type=int, default=0, help="0: sbertd's default")
    ap.add_argument("--store", default=None, help="cached store (default bench/out/load-store-D)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench/out/load.md"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--build-store-only", action="store_true", help="build the cached store, no run")
    a = ap.parse_args()
    a.mix = [(k, float(w)) for k, w in (x.split(":") for x in a.mix.split(","))]
    a.sbertd = os.path.join(a.build, "daemon/sbertd")
    for p in (a.sbertd, a.model):
        if not os.path.exists(p):
            sys.exit("missing %s" % p)
    os.environ["SBERTD"] = a.sbertd
    store = a.store or os.path.join(ROOT, "bench/out/load-store-%d" % a.docs)

    texts, queries = load_texts(a.data, a.docs + 20000, a.seed)
    extra = texts[a.docs:]
    if not os.path.isdir(store):
        build_store(a, texts, store)
    if a.build_store_only:
        return 0

    tmp = tempfile.mkdtemp(prefix="sbload-", dir="/tmp")
    try:
        shutil.copytree(os.path.join(store, "data"), os.path.join(tmp, "data"))
        url = "ipc://" + os.path.join(tmp, "s.sock")
        logpath = os.path.join(tmp, "sbertd.log")
        proc = start_daemon(a, os.path.join(tmp, "data"), url, logpath)
        c = h.Client(url, timeout_ms=120000)
        docs0 = c.call("health")["documents"]
        for q in queries[:32]:  # warm-up: model, index and store pages in memory
            c.call("query", text=q, k=a.k)
        rss0 = rss_kb(proc.pid)
        st = Stats()
        start = threading.Barrier(a.clients + 1)
        deadline = [0.0]
        ts = [threading.Thread(target=client_loop,
                               args=(ci, a, url, queries, extra, deadline, st, start))
              for ci in range(a.clients)]
        for t in ts:
            t.start()
        time.sleep(1)  # every client connects before the clock starts
        deadline[0] = time.time() + a.seconds
        t0 = time.perf_counter()
        start.wait()
        rss_peak = rss0
        while any(t.is_alive() for t in ts):
            rss_peak = max(rss_peak, rss_kb(proc.pid))
            time.sleep(0.5)
        wall = time.perf_counter() - t0
        alive = proc.poll() is None
        stats = c.call("stats") if alive else {}
        docs1 = stats.get("documents")
        rss1 = rss_kb(proc.pid) if alive else -1
        c.close()
        rc = stop_daemon(proc) if alive else proc.returncode
        report(a, st, wall, docs0, docs1, rss0, rss_peak, rss1, stats, rc, alive, logpath)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if st.errors or not alive or rc != 0 else 0


def report(a, st, wall, docs0, docs1, rss0, rss_peak, rss1, stats, rc, alive, logpath):
    load = open("/proc/loadavg").read().split()[:3]
    lines = ["# bench/load — sbertd under mixed load", "",
             "Machine: %d CPUs visible, load average before the run's end %s; OpenBLAS core: %s; "
             "%d clients for %.0f s, mix %s, %d documents per add, k %d; store of %d documents "
             "(Flat)." % (os.cpu_count(), " ".join(load), openblas_core(), a.clients, a.seconds,
                          ",".join("%s:%g" % m for m in a.mix), a.add_batch, a.k, a.docs), "",
             "| op | count | errors | p50 ms | p99 ms | max ms | ops/s | daemon p50 ms | daemon p99 ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    errs_by = {}
    for e in st.errors:
        op = e.split(": ", 2)[1] if ": " in e else "?"
        errs_by[op] = errs_by.get(op, 0) + 1
    def ms(v):
        return "%.1f" % v if isinstance(v, (int, float)) else ""

    for op in ("query", "add", "delete"):
        xs = st.lat[op]
        d = (stats.get("ops") or {}).get(op) or {}
        if not xs:
            lines.append("| %s | 0 | %d | | | | | | |" % (op, errs_by.get(op, 0)))
            continue
        lines.append("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f | %s | %s |" % (
            op, len(xs), errs_by.get(op, 0), pct(xs, 50), pct(xs, 99), max(xs), len(xs) / wall,
            ms(d.get("p50_ms")), ms(d.get("p99_ms"))))
    total = sum(len(x) for x in st.lat.values())
    lines += ["", "Total: %d requests in %.1f s (%.1f/s), %d errors. Documents %d before, %s after." % (
        total, wall, total / wall, len(st.errors), docs0, docs1),
        "sbertd RSS: %.1f MiB after warm-up, peak %.1f MiB during the run, %.1f MiB at the end "
        "(sampled every 0.5 s from /proc/PID/status VmRSS)." % (rss0 / 1024, rss_peak / 1024,
                                                               rss1 / 1024),
        "sbertd %s; exit status after SIGTERM: %r." % ("alive after the run" if alive else
                                                       "DIED during the run (log %s)" % logpath, rc)]
    if st.errors:
        lines += ["", "Errors (first 20):", ""] + ["- %s" % e for e in st.errors[:20]]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(text)




if __name__ == "__main__":
    sys.exit(main())
