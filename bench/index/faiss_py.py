"""bench/index/faiss_py.py — the faiss-cpu (PyPI) side of bench/index, and the data and table.

  faiss_py.py data OUTDIR N NQ [KIND]   vectors, queries and exact top-10 (float32/int64); KIND is
                                        clustered (default) or random, see make_vectors()
  faiss_py.py run OUTDIR N NQ SPEC EF NPROBE LAT_QUERIES TRAIN_N
                                        the same measurements as bench_index.c, one key=value line
  faiss_py.py table RESULTS.txt OUT.md  one table of all lines, printed and written
  faiss_py.py order OUT.i64 N           a fixed random permutation of 0..N-1 (the delete order)
  faiss_py.py delete OUTDIR N ORDER.i64 SINGLES BATCHES BATCH
                                        bench_index.c's delete figures for IndexIDMap2(IndexFlatIP)
                                        (no concurrent part: a faiss-cpu index has no lock)
  faiss_py.py deltable RESULTS.txt OUT.md  the delete table
"""
import os
import sys
import time

import numpy as np

DIM, K = 384, 10


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# Clustered data: NC centres uniform on the sphere; a point is normalise(centre + SIGMA * P g)
# with g ~ N(0, I_R) and P a fixed random R x 384 map whose rows have norm 1/sqrt(R),
# so within a cluster the points vary in an R-dimensional subspace. Sentence embeddings have
# both traits (topics, and a low intrinsic dimension); on isotropic random unit vectors in
# dim 384 the 10 nearest neighbours are barely nearer than the rest and recall@10 of any ANN
# index is near zero, which says nothing about the index. Queries come from the same law.
NC, R, SIGMA = 1000, 24, 0.6


def make_vectors(rng, kind, n, centres, proj):
    if kind == "random":
        b = rng.standard_normal((n, DIM), dtype=np.float32)
    else:
        g = rng.standard_normal((n, R), dtype=np.float32)
        b = centres[rng.integers(0, NC, n)] + SIGMA * (g @ proj)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    return b


def data(out, n, nq, kind):
    import faiss
    if kind not in ("clustered", "random"):
        sys.exit(f"unknown data kind {kind}")
    rng = np.random.default_rng(12345)
    centres = rng.standard_normal((NC, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    proj = rng.standard_normal((R, DIM), dtype=np.float32)
    proj /= np.linalg.norm(proj, axis=1, keepdims=True) * np.sqrt(R)
    os.makedirs(out, exist_ok=True)
    x = np.empty((n, DIM), dtype=np.float32)
    for i in range(0, n, 100000):
        b = make_vectors(rng, kind, min(100000, n - i), centres, proj)
        x[i:i + len(b)] = b
    q = make_vectors(rng, kind, nq, centres, proj)
    x.tofile(f"{out}/vectors.f32")
    q.tofile(f"{out}/queries.f32")
    flat = faiss.IndexFlatIP(DIM)
    flat.add(x)
    _, gt = flat.search(q, K)
    gt.astype(np.int64).tofile(f"{out}/gt.i64")


def run(out, n, nq, spec, ef, nprobe, nlat, train_n):
    import faiss
    x = np.fromfile(f"{out}/vectors.f32", dtype=np.float32, count=n * DIM).reshape(n, DIM)
    q = np.fromfile(f"{out}/queries.f32", dtype=np.float32, count=nq * DIM).reshape(nq, DIM)
    gt = np.fromfile(f"{out}/gt.i64", dtype=np.int64, count=nq * K).reshape(nq, K)
    r0 = rss()
    t0 = time.perf_counter()
    idx = faiss.index_factory(DIM, spec, faiss.METRIC_INNER_PRODUCT)
    if spec.startswith("HNSW"):
        idx.hnsw.efConstruction = 40
        idx.hnsw.efSearch = ef
    if spec.startswith("IVF"):
        idx.train(x[:train_n])
        faiss.extract_index_ivf(idx).nprobe = nprobe
    for i in range(0, n, 10000):
        idx.add(x[i:i + 10000])
    t_add = time.perf_counter() - t0
    r1 = rss()
    lat = []
    for i in range(min(nlat, nq)):
        t = time.perf_counter()
        idx.search(q[i:i + 1], K)
        lat.append(time.perf_counter() - t)
    lat.sort()
    _, res = idx.search(q, K)
    hit = sum(len(set(res[i]) & set(gt[i])) for i in range(nq))
    path = f"{out}/py.snap"
    t = time.perf_counter()
    faiss.write_index(idx, path)
    t_write = time.perf_counter() - t
    size = os.path.getsize(path)
    del idx
    t = time.perf_counter()
    idx = faiss.read_index(path)
    t_load = time.perf_counter() - t
    assert idx.ntotal == n
    os.unlink(path)
    print(f"impl=faiss-cpu-{faiss.__version__} spec={spec} n={n} add_s={t_add:.2f} "
          f"add_per_s={n / t_add:.0f} rss_per_vec={(r1 - r0) / n:.1f} est_per_vec=nan "
          f"snap_write_s={t_write:.2f} snap_bytes={size} snap_load_s={t_load:.2f} "
          f"rebuild_s={t_add:.2f} p50_ms={lat[len(lat) // 2] * 1e3:.3f} "
          f"p99_ms={lat[min(int(len(lat) * 0.99), len(lat) - 1)] * 1e3:.3f} "
          f"recall10={hit / (nq * K):.4f}")


def order(out, n):
    np.random.default_rng(4242).permutation(n).astype(np.int64).tofile(out)


def delete(out, n, order_path, singles, nb, b):
    import faiss
    x = np.fromfile(f"{out}/vectors.f32", dtype=np.float32, count=n * DIM).reshape(n, DIM)
    order = np.fromfile(order_path, dtype=np.int64, count=n)
    idx = faiss.IndexIDMap2(faiss.IndexFlatIP(DIM))
    for i in range(0, n, 10000):
        idx.add_with_ids(x[i:i + 10000], np.arange(i, min(i + 10000, n), dtype=np.int64))

    def timed(labels, size):
        lat = []
        for i in range(0, len(labels), size):
            batch = np.ascontiguousarray(labels[i:i + size])
            t = time.perf_counter()
            got = idx.remove_ids(batch)
            lat.append(time.perf_counter() - t)
            assert got == len(batch), (got, len(batch))
        return sorted(lat)

    l1 = timed(order[:singles], 1)
    lb = timed(order[singles:singles + nb * b], b)
    assert idx.ntotal == n - singles - nb * b

    def p(a, q):
        return a[min(int(q * len(a)), len(a) - 1)] * 1e3 if a else float("nan")

    print(f"impl=faiss-cpu-{faiss.__version__} op=delete n={n} singles={singles} "
          f"single_p50_ms={p(l1, .5):.3f} single_p99_ms={p(l1, .99):.3f} "
          f"single_max_ms={p(l1, 1):.3f} single_mean_ms={np.mean(l1) * 1e3:.3f} batches={nb} "
          f"batch={b} batch_p50_ms={p(lb, .5):.3f} batch_max_ms={p(lb, 1):.3f} "
          f"batch_mean_ms={np.mean(lb) * 1e3:.3f}")


def deltable(results, out_md):
    head = ["impl", "n", "1-label deletes", "p50 ms", "p99 ms", "max ms", "batches x labels",
            "p50 ms", "max ms", "idle query ms", "query p50 / max ms (deletes running)",
            "delete p50 / max ms (queries running)", "query 1 ms into a delete p50 / max ms",
            "that delete p50 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    with open(results) as f:
        for r in f:
            r = r.strip()
            if r.startswith("#"):
                notes.append(r.lstrip("# "))
            elif r.startswith("impl="):
                kv = dict(x.split("=", 1) for x in r.split())
                g = lambda k: kv.get(k, "-")
                lines.append("| " + " | ".join([
                    g("impl"), g("n"), g("singles"), g("single_p50_ms"), g("single_p99_ms"),
                    g("single_max_ms"), f"{g('batches')} x {g('batch')}", g("batch_p50_ms"),
                    g("batch_max_ms"), g("query_idle_p50_ms"),
                    f"{g('conc_query_p50_ms')} / {g('conc_query_max_ms')}",
                    f"{g('conc_delete_p50_ms')} / {g('conc_delete_max_ms')}",
                    f"{g('late_query_p50_ms')} / {g('late_query_max_ms')}",
                    g("late_delete_p50_ms")]) + " |")
    text = "\n".join(notes + [""] + lines) + "\n"
    print(text)
    with open(out_md, "w") as f:
        f.write(text)


def table(results, out_md):
    rows = []
    with open(results) as f:
        for line in f:
            if line.startswith(("impl=", "#")):
                rows.append(line.strip())
    head = ["impl", "spec", "n", "add/s", "B/vec (RSS)", "B/vec (est)", "snap MB",
            "snap write s", "snap load s", "rebuild s", "p50 ms", "p99 ms", "recall@10"]
    keys = ["impl", "spec", "n", "add_per_s", "rss_per_vec", "est_per_vec", "snap_bytes",
            "snap_write_s", "snap_load_s", "rebuild_s", "p50_ms", "p99_ms", "recall10"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for r in rows:
        if r.startswith("#"):
            notes.append(r.lstrip("# "))
            continue
        kv = dict(p.split("=", 1) for p in r.split())
        kv["snap_bytes"] = f"{int(kv['snap_bytes']) / 1e6:.0f}"
        lines.append("| " + " | ".join(kv.get(k, "") for k in keys) + " |")
    text = "\n".join(notes + [""] + lines) + "\n"
    print(text)
    with open(out_md, "w") as f:
        f.write(text)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "data":
        data(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
             sys.argv[5] if len(sys.argv) > 5 else "clustered")
    elif cmd == "run":
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]),
            int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9]))
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3])
    elif cmd == "order":
        order(sys.argv[2], int(sys.argv[3]))
    elif cmd == "delete":
        delete(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]), int(sys.argv[6]),
               int(sys.argv[7]))
    elif cmd == "deltable":
        deltable(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")
