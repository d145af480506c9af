#!/usr/bin/env python3
"""Long documents through a real sbertd: passages against truncation (issue 12).

    bench/longdoc/longdoc.py [--build build] [--baseline BUILD] [--set FILE] [--lead-weights LIST]

1. The set (build_set.py: manual pages installed here; built into bench/out/longdoc-set.jsonl
   when --set names no file) is added to sbertd, 8 documents a request, and the store kept in
   bench/out/longdoc-store for the next run.
2. Two query sets, k = 10:
     "describe": each page's NAME description asks for its page (a known item whose beginning
                 says what it is about: where truncation is strong and naive best-window scoring
                 loses);
     "deep":     for each page of at least 6,000 characters, one sentence (8-40 words) that
                 starts beyond its first 3,000 characters and beyond 40% of the page (so beyond
                 the first 256 tokens), chosen with a fixed seed: content only passages reach.
   MRR@10 and recall@10 for each --lead-weights value (sbertd restarted with that lead_weight
   on the same store), and for deep also how often the returned passage holds the sentence.
3. --baseline BUILD runs the same queries against that build's sbertd on its own store: a build
   from before passages, whose documents are their first 256 tokens (truncation).

Prints the CPU model and the encoder's kernel; bench/longdoc/run.sh unsets OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE.
"""
import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "daemon"))
sys.path.insert(0, os.path.join(ROOT, "bench", "common"))
import sbertd_harness as harness  # noqa: E402
from machine import cpu_model  # noqa: E402

OUT = os.path.join(ROOT, "bench", "out")


def load_set(path):
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "longdoc", "build_set.py"), path],
                       check=True)
    return [json.loads(line) for line in open(path)]


def deep_queries(docs):
    rnd = random.Random(12)
    out = []
    for d in docs:
        t = d["text"]
        if len(t) < 6000:
            continue
        floor = max(3000, int(0.4 * len(t)))
        sents = []
        for m in re.finditer(r"[^.!?\n]+[.!?]", t[floor:]):
            s = " ".join(m.group(0).split())
            if 8 <= len(s.split()) <= 40 and s not in t[:floor]:
                sents.append(s)
        if sents:
            out.append((rnd.choice(sents), d["id"]))
    return out


def run_queries(c, queries, **members):
    """queries: [(text, relevant id)]. MRR@10, recall@10, share of hits whose passage holds the
    query (None when results carry no passage), p50 ms."""
    rr, hit, held, lat = [], [], [], []
    for text, rel in queries:
        t0 = time.perf_counter()
        r = c.call("query", text=text, k=10, include=[], **members)
        lat.append(time.perf_counter() - t0)
        assert r.get("ok"), r
        ids = [h["id"] for h in r["results"]]
        rank = ids.index(rel) + 1 if rel in ids else 0
        rr.append(1.0 / rank if rank else 0.0)
        hit.append(1.0 if rank else 0.0)
        if rank and "passage" in r["results"][rank - 1]:
            held.append(1.0 if text in " ".join(r["results"][rank - 1]["passage"]["text"].split()) else 0.0)
    n = len(queries)
    return (sum(rr) / n, sum(hit) / n, (sum(held) / len(held)) if held else None,
            statistics.median(lat) * 1e3)


def ingest(d, docs, store):
    if os.path.isdir(store):
        shutil.copytree(store, d.data)
        d.start(timeout=1800)
        return None, d.client(timeout_ms=1800000)
    d.start(timeout=600)
    c = d.client(timeout_ms=1800000)
    t0 = time.perf_counter()
    for i in range(0, len(docs), 8):
        r = c.call("add", documents=[{"id": x["id"], "text": x["text"]} for x in docs[i:i + 8]])
        assert r.get("ok"), r
    took = time.perf_counter() - t0
    os.makedirs(os.path.dirname(store), exist_ok=True)
    r = c.call("backup", dir=os.path.abspath(store))
    assert r.get("ok"), r
    return took, c


def report(name, rows):
    print("\n%s" % name)
    print("  %-34s %7s %9s %16s %8s" % ("sbertd", "MRR@10", "recall@10", "passage holds it", "p50 ms"))
    for label, (mrr, rec, held, p50) in rows:
        print("  %-34s %7.3f %9.3f %16s %8.2f" % (label, mrr, rec, "-" if held is None else "%.3f" % held, p50))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--baseline", help="a build from before passages (truncation), run on the same set")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "all-MiniLM-L6-v2"))
    ap.add_argument("--set", default=os.path.join(OUT, "longdoc-set.jsonl"))
    ap.add_argument("--store", default=os.path.join(OUT, "longdoc-store"))
    ap.add_argument("--lead-weights", default="0,0.3,0.5,1")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                    help="the daemon's encoder (stores are kept apart by precision)")
    args = ap.parse_args()
    config = "precision = %s\n" % args.precision
    if args.precision != "fp32":
        args.store += "-" + args.precision
    docs = load_set(args.set)
    describe = [(d["query"], d["id"]) for d in docs]
    deep = deep_queries(docs)
    lens = sorted(len(d["text"]) for d in docs)
    print("CPU: %s; OPENBLAS_CORETYPE=%s" % (cpu_model(), os.environ.get("OPENBLAS_CORETYPE", "(unset)")))
    print("set: %d manual pages, characters median %d, p90 %d; %d describe queries, %d deep queries"
          % (len(docs), lens[len(lens) // 2], lens[int(0.9 * len(lens))], len(describe), len(deep)))

    rows_desc, rows_deep = [], []
    if args.baseline:
        os.environ["SBERTD"] = os.path.join(args.baseline, "daemon", "sbertd")
        d = harness.Daemon(args.model, config=config)
        took, c = ingest(d, docs, args.store + "-baseline")
        if took:
            print("baseline ingest: %.1f s" % took)
        rows_desc.append(("baseline (first 256 tokens)", run_queries(c, describe)))
        rows_deep.append(("baseline (first 256 tokens)", run_queries(c, deep)))
        c.close()
        d.stop()
        d.cleanup()

    os.environ["SBERTD"] = os.path.join(args.build, "daemon", "sbertd")
    d = harness.Daemon(args.model, config=config)
    took, c = ingest(d, docs, args.store)
    st = c.call("stats")
    print("encoder: %s %s; store: %s" % (st["model"]["precision"],
                                         st["model"].get("int8_kernel", "(OpenBLAS sgemm)"),
                                         json.dumps({k: st[k] for k in ("documents", "passages")
                                                     if k in st})))
    if took:
        enc = st.get("encoder", {})
        print("ingest: %.1f s through sbertd (splitting, encoding every passage, LMDB, indexes); "
              "of it %.1f s inside the encoder (%d passages, %d tokens): the rest of sbertd adds "
              "%.1f%% to what encoding the same passages costs" % (
                  took, enc.get("seconds", 0), enc.get("texts", 0), enc.get("tokens", 0),
                  100 * (took / enc["seconds"] - 1) if enc.get("seconds") else float("nan")))
    c.close()
    d.stop()
    for w in [float(x) for x in args.lead_weights.split(",")]:
        d.config = config + "lead_weight = %g\n" % w
        d.start(timeout=1800)
        c = d.client(timeout_ms=600000)
        label = "passages, lead_weight %g" % w
        rows_desc.append((label, run_queries(c, describe)))
        rows_deep.append((label, run_queries(c, deep)))
        if w == 0:
            rows_deep.append(("passages, group passage", run_queries(c, deep, group="passage")))
        c.close()
        d.stop()
    d.cleanup()
    report("describe (%d queries: a page's NAME description)" % len(describe), rows_desc)
    report("deep (%d queries: a sentence past the first 3,000 characters and 40%%)" % len(deep), rows_deep)


if __name__ == "__main__":
    main()
