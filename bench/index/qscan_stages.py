#!/usr/bin/env python3
"""Recall@10 of cheaper first stages than the int8 scan, for a Flat index of 1M vectors on two
cores (where an int8 scan reads 384 MB a query): each stage scores every vector from a smaller
code, keeps the best C, and those C are re-ranked with the exact fp32 inner product.

    bench/index/qscan_stages.py VECTORS.f32 [N] [NQ] [STAGE,...]   (numpy; e.g. the project's .venv)

Codes, per vector (dim 384), with the float query (asymmetric: the query is not quantised):
  binary  sign bits (48 bytes): score = q . sign(x)
  bin-qL  the same bits against the query quantised to integers in [-L, L] (one scale, rounded
          as index/vindex_qscan.c does): L 127 is the int8 query, L 15 the binary stage's
          (QSCAN_BITS_QMAX: two of its vpshufb table entries, sums of 4 codes, add in a byte)
STAGE: a comma-separated list of the codes above (default binary,bin-q127,bin-q31,bin-q15,int4,
int8).
  int4    symmetric 4-bit, one scale (196 bytes): score = q . round(7 x / max|x|) * scale
  int8    as index/vindex_qscan.c (388 bytes), for comparison
VECTORS.f32 as bench/index/qscan_bench.c: the last NQ rows are the queries; the documents are the
first rows, completed to N with normalised sums of two real rows (the same rule as qscan_bench,
but another random draw). Prints recall@10 against the exact top 10 for each code and C.
"""
import sys

import numpy as np

DIM = 384


def main():
    path = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1000000
    nq = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    allv = np.fromfile(path, dtype=np.float32).reshape(-1, DIM)
    q = allv[-nq:]
    real = allv[:-nq][:n]
    rng = np.random.default_rng(7)
    extra = n - len(real)
    x = np.empty((n, DIM), dtype=np.float32)
    x[:len(real)] = real
    for at in range(0, extra, 100000):
        m = min(100000, extra - at)
        s = real[rng.integers(0, len(real), m)] + real[rng.integers(0, len(real), m)]
        x[len(real) + at:len(real) + at + m] = s / np.linalg.norm(s, axis=1, keepdims=True)
    print("documents %d (%d real), queries %d" % (n, len(real), nq), flush=True)
    exact = np.empty((nq, n), dtype=np.float32)
    for at in range(0, n, 100000):
        exact[:, at:at + 100000] = q @ x[at:at + 100000].T
    truth = np.argpartition(-exact, 10, axis=1)[:, :10]

    def quant(v, levels):
        m = np.abs(v).max(axis=1, keepdims=True)
        return np.round(v * (levels / m))

    def codes(kind, chunk):
        if kind == "binary" or kind.startswith("bin-q"):
            return np.where(chunk >= 0, 1.0, -1.0).astype(np.float32)
        levels = 7.0 if kind == "int4" else 127.0
        m = np.abs(chunk).max(axis=1, keepdims=True)
        return np.round(chunk * (levels / m)) * (m / levels)

    stages = sys.argv[4].split(",") if len(sys.argv) > 4 else [
        "binary", "bin-q127", "bin-q31", "bin-q15", "int4", "int8"]
    for kind in stages:
        qk = quant(q, float(kind[5:])) if kind.startswith("bin-q") else q
        approx = np.empty((nq, n), dtype=np.float32)
        for at in range(0, n, 100000):
            approx[:, at:at + 100000] = qk @ codes(kind, x[at:at + 100000]).T
        for c in (100, 500, 1000, 2000, 5000):
            cand = np.argpartition(-approx, c, axis=1)[:, :c]
            hit = 0
            for i in range(nq):
                sc = exact[i, cand[i]]
                top = cand[i][np.argsort(-sc)[:10]]
                hit += len(set(top.tolist()) & set(truth[i].tolist()))
            print("%-6s C %5d  recall@10 %.4f" % (kind, c, hit / (nq * 10.0)), flush=True)


if __name__ == "__main__":
    main()
