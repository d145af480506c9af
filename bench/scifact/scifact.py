#!/usr/bin/env python3
"""SciFact through a real sbertd: dense, keyword (BM25) and hybrid retrieval quality, bm25s in the
same run, and what the keyword index costs (issue 13).

    bench/scifact/scifact.py [--build build] [--model DIR] [--shared DIR] [--store DIR]

1. sbertd starts on a fresh data directory (or --store, a copy of a store this script left in
   bench/out/scifact-store from an earlier run, so the 5,183 abstracts are encoded once) and gets
   the corpus as `title + " " + text` (MTEB's convention), 64 documents a request; sbertd splits
   the 3,681 abstracts longer than the model's window into passages.
2. The 300 test queries run in every mode with k = 100: nDCG@10, MRR@10, recall@10 and recall@100
   over qrels/test.tsv (BEIR's definitions; a query without hits scores 0), and query latency p50.
   --lead-weights W1,W2,...: the dense row again with sbertd restarted with each lead_weight (a
   document's score from its first and its best passage) on the same store.
3. bm25s (PyPI, with PyStemmer's English stemmer and its English stop words: the reference of
   the issue) runs on the same texts and queries, when it is installed in the running Python.
4. The keyword index's cost: the time of building it from the stored texts (sbertd restarted with
   another keyword_language rebuilds it at open; the log line's time is read) against the time of
   ingesting the corpus, and its size (the LMDB file with and without, via the stats of the
   store's map use before and after the rebuild is not separable, so the size is measured as the
   growth of map_used when the index is built over an empty keyword index: see the output).

Prints the CPU model and the encoder's kernel. OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are left as the
caller set them; bench/scifact/run.sh unsets both.
"""
import argparse
import gzip
import json
import math
import os
import re
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
sys.path.insert(0, os.path.join(ROOT, "bench", "common"))
import sbertd_harness as harness  # noqa: E402
from machine import cpu_model  # noqa: E402


def load(shared):
    base = os.path.join(shared, "data", "scifact")
    corpus = {}
    with gzip.open(os.path.join(base, "corpus.jsonl.gz"), "rt") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = (d.get("title", "") + " " + d["text"]).strip()
    queries = {}
    with open(os.path.join(base, "queries.test.jsonl")) as f:
        for line in f:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    qrels = {}
    with open(os.path.join(base, "qrels", "test.tsv")) as f:
        next(f)
        for line in f:
            qid, did, s = line.split("\t")
            if int(s) > 0:
                qrels.setdefault(qid, {})[did] = int(s)
    queries = {q: t for q, t in queries.items() if q in qrels}
    return corpus, queries, qrels


def metrics(run, qrels):
    """run: qid -> ranked doc ids. BEIR's nDCG@10 (gain = relevance, log2 discount), MRR@10,
    recall@10 and recall@100, averaged over the judged queries."""
    nd, mrr, r10, r100 = [], [], [], []
    for qid, rel in qrels.items():
        ranked = run.get(qid, [])
        dcg = sum(rel.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
        ideal = sorted(rel.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
        nd.append(dcg / idcg if idcg else 0.0)
        rr = 0.0
        for i, d in enumerate(ranked[:10]):
            if d in rel:
                rr = 1.0 / (i + 1)
                break
        mrr.append(rr)
        r10.append(len(set(ranked[:10]) & set(rel)) / len(rel))
        r100.append(len(set(ranked[:100]) & set(rel)) / len(rel))
    n = len(qrels)
    return 100 * sum(nd) / n, sum(mrr) / n, sum(r10) / n, sum(r100) / n


def run_bm25s(corpus, queries):
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return None
    ids = list(corpus)
    stemmer = Stemmer.Stemmer("english")
    tok = bm25s.tokenize([corpus[i] for i in ids], stopwords="en", stemmer=stemmer, show_progress=False)
    model = bm25s.BM25()
    model.index(tok, show_progress=False)
    qids = list(queries)
    qtok = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer, show_progress=False)
    res, _ = model.retrieve(qtok, k=100, show_progress=False)
    return {q: [ids[j] for j in res[i]] for i, q in enumerate(qids)}, bm25s.__version__


def daemon_run(c, queries, **members):
    run, lat = {}, []
    for qid, text in queries.items():
        t0 = time.perf_counter()
        r = c.call("query", text=text, k=100, include=[], **members)
        lat.append(time.perf_counter() - t0)
        assert r.get("ok"), r
        run[qid] = [h["id"] for h in r["results"]]
    return run, statistics.median(lat) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--shared", default=os.environ.get("SBERT_SHARED_DIR", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--store", default=os.path.join(ROOT, "bench", "out", "scifact-store"))
    ap.add_argument("--fresh", action="store_true", help="ingest again even when --store exists")
    ap.add_argument("--lead-weights", default="",
                    help="comma-separated lead_weight values for extra dense rows")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                    help="the daemon's encoder (int8 keeps its store apart: --store gets -int8)")
    args = ap.parse_args()
    config = "precision = %s\n" % args.precision
    if args.precision != "fp32" and args.store == ap.get_default("store"):
        args.store += "-" + args.precision
    os.environ["SBERTD"] = os.path.join(args.build, "daemon", "sbertd")
    corpus, queries, qrels = load(args.shared)
    print("CPU: %s; OPENBLAS_CORETYPE=%s" % (cpu_model(), os.environ.get("OPENBLAS_CORETYPE", "(unset)")))
    print("SciFact: %d documents, %d test queries with judgements" % (len(corpus), len(queries)))

    d = harness.Daemon(args.model, config=config)
    have_store = os.path.isdir(args.store) and not args.fresh
    if have_store:
        shutil.copytree(args.store, d.data)
    d.start(timeout=600)
    c = d.client(timeout_ms=600000)
    stats = c.call("stats")
    print("encoder: %s %s" % (stats["model"]["precision"], stats["model"].get("int8_kernel", "(OpenBLAS sgemm)")))
    ingest_s = None
    if not have_store:
        ids = list(corpus)
        t0 = time.perf_counter()
        for i in range(0, len(ids), 64):
            r = c.call("add", documents=[{"id": x, "text": corpus[x]} for x in ids[i:i + 64]])
            assert r.get("ok"), r
        ingest_s = time.perf_counter() - t0
        print("ingest: %d documents in %.1f s through sbertd (encoding, LMDB, vector and keyword index)"
              % (len(ids), ingest_s))
        os.makedirs(os.path.dirname(args.store), exist_ok=True)
        shutil.rmtree(args.store, ignore_errors=True)
        r = c.call("backup", dir=os.path.abspath(args.store))
        assert r.get("ok"), r

    st = c.call("stats")
    print("store: %d documents, %d passages" % (st["documents"], st.get("passages", st["documents"])))
    rows = []
    for name, members in [("dense", {}),
                          ("keyword (BM25)", {"mode": "keyword"}),
                          ("hybrid, RRF", {"mode": "hybrid"}),
                          ("hybrid, weighted 0.5", {"mode": "hybrid", "fusion": "weighted", "weight": 0.5}),
                          ("hybrid, weighted 0.3", {"mode": "hybrid", "fusion": "weighted", "weight": 0.3})]:
        run, p50 = daemon_run(c, queries, **members)
        rows.append(("sbertd " + name, metrics(run, qrels), p50))
    for w in [float(x) for x in args.lead_weights.split(",") if x]:
        c.close()
        d.stop()
        d.config = config + "lead_weight = %g\n" % w
        d.start(timeout=600)
        c = d.client(timeout_ms=600000)
        run, p50 = daemon_run(c, queries)
        rows.append(("sbertd dense, lead_weight %g" % w, metrics(run, qrels), p50))
    if args.lead_weights:
        c.close()
        d.stop()
        d.config = config
        d.start(timeout=600)
        c = d.client(timeout_ms=600000)
    ref = run_bm25s(corpus, queries)
    if ref:
        rows.append(("bm25s %s (PyStemmer english, stop words en)" % ref[1], metrics(ref[0], qrels), None))
    print("\n%-46s %8s %7s %9s %10s %9s" % ("system", "nDCG@10", "MRR@10", "recall@10", "recall@100", "p50 ms"))
    for name, (nd, mrr, r10, r100), p50 in rows:
        print("%-46s %8.2f %7.3f %9.3f %10.3f %9s" % (name, nd, mrr, r10, r100,
                                                       "%.2f" % p50 if p50 is not None else "-"))

    # the keyword index's cost: rebuilt from the stored texts at open under another language
    c.close()
    before = os.path.getsize(os.path.join(d.data, "store.mdb"))
    d.stop()
    d.config = config + "keyword_language = none\n"
    t0 = time.perf_counter()
    d.start(timeout=600)
    restart_s = time.perf_counter() - t0
    m = re.findall(r"building the keyword index", d.read_log())
    c = d.client(timeout_ms=600000)
    st = c.call("stats")
    print("\nkeyword index rebuilt at open (language none): restart took %.1f s (%d build%s logged); "
          "store file %d bytes before, map in use %d bytes after; %d documents"
          % (restart_s, len(m), "" if len(m) == 1 else "s", before, st["memory"]["map_used"], st["documents"]))
    if ingest_s:
        print("ingest of the corpus took %.1f s: the whole restart is %.1f%% of it" % (ingest_s, 100 * restart_s / ingest_s))
    c.close()
    d.stop()
    d.cleanup()


if __name__ == "__main__":
    main()
