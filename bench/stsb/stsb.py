"""bench/stsb: Spearman x100 of cosine similarity on STS Benchmark (test and dev) for sbertd
(through sbert-encode) and sentence-transformers, in the same run, on the same pairs. Run it
through bench/stsb/run.sh. MTEB's published figures for all-MiniLM-L6-v2: test 82.03, dev 86.72.

Each side encodes the split's distinct sentences once; a pair's score is the cosine of its two
embeddings; Spearman's rho against the gold scores, x100."""

import argparse
import csv
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import benchlib  # noqa: E402

PUBLISHED = {"test": 82.03, "dev": 86.72}
TOLERANCE = 0.05


def read_pairs(path):
    """(scores, sentence1s, sentence2s) from a `score<TAB>s1<TAB>s2` file with a header line.
    The file has no quoting, so csv runs with QUOTE_NONE."""
    scores, s1, s2 = [], [], []
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows)
        if header[:3] != ["score", "sentence1", "sentence2"]:
            raise SystemExit(f"stsb: unexpected header in {path}: {header}")
        for row in rows:
            if len(row) < 3:
                raise SystemExit(f"stsb: short row in {path}: {row}")
            scores.append(float(row[0]))
            s1.append(row[1])
            s2.append(row[2])
    return np.asarray(scores), s1, s2


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=benchlib.DEFAULT_MODEL)
    ap.add_argument("--shared", default=benchlib.DEFAULT_SHARED)
    ap.add_argument("--sbert-encode", default=os.environ.get("SBERT_ENCODE") or None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=os.path.join(benchlib.OUT_DIR, "stsb.md"))
    args = ap.parse_args()

    from scipy.stats import spearmanr

    binary = args.sbert_encode if args.sbert_encode and os.path.isfile(args.sbert_encode) else None
    st = benchlib.load_st(args.model)
    lines = []

    def say(s=""):
        print(s, flush=True)
        lines.append(s)

    say(f"# bench/stsb — {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, "
        f"model {os.path.basename(os.path.normpath(args.model))}")
    say()
    say("Spearman x100 of cosine similarity vs gold scores (MTEB's published figure beside it; "
        f"sbertd's figure should be within {TOLERANCE} of it)")
    say()
    say("| split | pairs | sbertd | sentence-transformers | published | sbertd - published | "
        "max abs(cos sbertd - cos ST) |")
    say("|---|---:|---:|---:|---:|---:|---:|")
    failed = []
    notes = []
    for split in ("test", "dev"):
        gold, s1, s2 = read_pairs(benchlib.shared_file(args.shared, "stsb",
                                                       f"sts-{split}.pairs.tsv"))
        uniq = sorted(set(s1) | set(s2))
        pos = {s: i for i, s in enumerate(uniq)}
        i1 = np.asarray([pos[s] for s in s1])
        i2 = np.asarray([pos[s] for s in s2])

        def pair_cos(emb):
            return benchlib.cosines(emb[i1], emb[i2])

        st_cos = pair_cos(st.encode(uniq, batch_size=args.batch, show_progress_bar=False))
        st_rho = spearmanr(st_cos, gold).statistic * 100
        rho, diff, cdiff = None, None, None
        if binary:
            try:
                run = benchlib.run_sbert_encode(binary, args.model, uniq, args.batch, args.threads)
                ours = pair_cos(run.emb)
                rho = spearmanr(ours, gold).statistic * 100
                diff = rho - PUBLISHED[split]
                cdiff = float(np.abs(ours - st_cos).max())
                if abs(diff) > TOLERANCE:
                    failed.append(split)
            except (RuntimeError, ValueError, OSError) as e:
                notes.append(f"sbertd on {split}: {e}")
        say(f"| {split} | {len(gold)} | {'n/a' if rho is None else f'{rho:.3f}'} | {st_rho:.3f} | "
            f"{PUBLISHED[split]:.2f} | {'n/a' if diff is None else f'{diff:+.3f}'} | "
            f"{'n/a' if cdiff is None else f'{cdiff:.1e}'} |")
    if not binary:
        notes.append("sbert-encode not available"
                     + (f" ({args.sbert_encode} missing)" if args.sbert_encode else ""))
    for n in notes:
        say()
        say(f"sbertd missing: {n}")
    if failed:
        say()
        say(f"sbertd is off the published figure by more than {TOLERANCE} on: "
            f"{', '.join(failed)}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"\nwrote {os.path.relpath(args.out, benchlib.ROOT)}")
    sys.exit(1 if failed or (binary and notes) else 0)


if __name__ == "__main__":
    main()
