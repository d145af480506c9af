#!/usr/bin/env python3
"""bench/e2e — sbertd end to end: ingest rate and query latency (standard library + ctypes).

1. Texts: tatoeba sentences + WordNet glosses from the shared corpus, deduplicated, shuffled with
   a fixed seed, the first --n of them.
2. The store: sbertd starts on a copy of the cached store of the other --n - --ingest-n texts
   (--store, default bench/out/e2e-store-N-I: built on the first run by adding them untimed and
   taking a `backup`; keyed by the texts, the seed and the model's sha256), so the timed ingest
   goes into a store already that large.
3. Ingest, --rounds times: `sbert-encode` alone on the first --ingest-n texts (its model load
   subtracted: an empty-input run is timed and taken off), then `sbertctl add --file` of the same
   texts into the running sbertd with the same encoder threads and texts per encoder call (model
   already loaded; the figure includes reading the file, batching, the socket, the LMDB commits
   and the vector index), and a last `sbert-encode` run after the last round. Daemon overhead =
   fastest daemon run / fastest sbert-encode run - 1; each round's own pair is listed too. Each
   round adds the texts again under new ids, so queries run against --n + (rounds - 1) x
   --ingest-n documents.
4. Queries: ten-word tatoeba sentences, top-10 against the whole collection, sent through nanomsg
   REQ sockets (libnanomsg via ctypes) by 1 and by 16 concurrent clients, each with its own
   socket; every request's latency from send to reply. Also `sbertctl query` as a process (exec,
   connect, request, print) from one client.

Prints a table and writes it as markdown to bench/out/e2e.md. Run through bench/e2e/run.sh, which
unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE so that OpenBLAS picks its kernel itself.
"""
import argparse
import ctypes
import ctypes.util
import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# ---- nanomsg through ctypes -------------------------------------------------------------------

AF_SP, NN_REQ, NN_SOL_SOCKET = 1, 48, 0
NN_RCVTIMEO, NN_SNDTIMEO, NN_RCVMAXSIZE, NN_REQ_RESEND_IVL = 5, 4, 16, 1
NN_MSG = ctypes.c_size_t(-1).value

_nn = ctypes.CDLL(ctypes.util.find_library("nanomsg") or "libnanomsg.so.5", use_errno=True)
_nn.nn_recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_nn.nn_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
_nn.nn_freemsg.argtypes = [ctypes.c_void_p]
_nn.nn_strerror.restype = ctypes.c_char_p


class Req:
    """One REQ socket; ctypes releases the GIL in nn_send/nn_recv, so threads overlap."""

    def __init__(self, url, timeout_ms=120000):
        self.s = _nn.nn_socket(AF_SP, NN_REQ)
        if self.s < 0:
            raise OSError(self._err())
        for level, opt, val in ((NN_SOL_SOCKET, NN_RCVMAXSIZE, 256 << 20),
                                (NN_SOL_SOCKET, NN_RCVTIMEO, timeout_ms),
                                (NN_SOL_SOCKET, NN_SNDTIMEO, timeout_ms),
                                (NN_REQ, NN_REQ_RESEND_IVL, 2 * timeout_ms)):
            v = ctypes.c_int(val)
            if _nn.nn_setsockopt(self.s, level, opt, ctypes.byref(v), 4) < 0:
                raise OSError(self._err())
        if _nn.nn_connect(self.s, url.encode()) < 0:
            raise OSError(self._err())

    @staticmethod
    def _err():
        return _nn.nn_strerror(_nn.nn_errno()).decode()

    def call(self, obj):
        data = json.dumps(obj).encode()
        if _nn.nn_send(self.s, data, len(data), 0) < 0:
            raise OSError("send: " + self._err())
        buf = ctypes.c_void_p()
        n = _nn.nn_recv(self.s, ctypes.byref(buf), NN_MSG, 0)
        if n < 0:
            raise OSError("recv: " + self._err())
        try:
            return json.loads(ctypes.string_at(buf, n))
        finally:
            _nn.nn_freemsg(buf)

    def close(self):
        _nn.nn_close(self.s)


# ---- helpers ----------------------------------------------------------------------------------

def openblas_core():
    try:
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        return "%s (%s)" % (lib.openblas_get_corename().decode(),
                            lib.openblas_get_config().decode().strip())
    except (OSError, AttributeError) as e:
        return "unknown (%s)" % e


def load_texts(data_dir, n, seed):
    texts, seen = [], set()

    def add(t):
        t = " ".join(t.split())
        if t and t not in seen:
            seen.add(t)
            texts.append(t)

    with gzip.open(os.path.join(data_dir, "corpus/tatoeba_en_sentences.txt.gz"), "rt",
                   encoding="utf-8") as f:
        tatoeba = [l.strip() for l in f if l.strip()]
    for t in tatoeba:
        add(t)
    for part in ("part1", "part2"):
        with gzip.open(os.path.join(data_dir, "corpus/wordnet30_glosses.%s.tsv.gz" % part), "rt",
                       encoding="utf-8") as f:
            next(f)  # header
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) >= 3:
                    add(cols[2])
    random.Random(seed).shuffle(texts)
    if len(texts) < n:
        sys.exit("only %d distinct texts in the corpus, asked for %d" % (len(texts), n))
    queries = [t for t in tatoeba if len(t.split()) == 10]
    random.Random(seed + 1).shuffle(queries)
    return texts[:n], queries


def pct(xs, p):
    xs = sorted(xs)
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def wait_health(url, proc, timeout_s=300):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit("sbertd exited with %d during start-up" % proc.returncode)
        if os.path.exists(url[len("ipc://"):]):
            r = Req(url, 5000)
            try:
                if r.call({"v": 1, "op": "health"}).get("ok"):
                    return
            except OSError:
                pass
            finally:
                r.close()
        time.sleep(0.5)
    sys.exit("sbertd did not become healthy in %d s" % timeout_s)


def query_run(url, queries, n_clients, per_client, k):
    """n_clients threads, each with its own socket, each sending per_client queries in turn.
    Returns (latencies in ms, wall seconds)."""
    lat, errors = [], []
    lock = threading.Lock()
    start = threading.Barrier(n_clients + 1)

    def client(ci):
        r = Req(url)
        mine = []
        try:
            start.wait()
            for j in range(per_client):
                q = queries[(ci * per_client + j) % len(queries)]
                t0 = time.perf_counter()
                rep = r.call({"v": 1, "op": "query", "text": q, "k": k})
                mine.append((time.perf_counter() - t0) * 1000)
                if not rep.get("ok") or len(rep.get("results", [])) != k:
                    errors.append(rep)
                    return
        except OSError as e:
            errors.append(str(e))
        finally:
            r.close()
            with lock:
                lat.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit("query errors: %r" % errors[:3])
    return lat, wall


def main():
    tmp = tempfile.mkdtemp(prefix="sbe2e-", dir="/tmp")
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp):
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(root, "build"))
    ap.add_argument("--model", default=os.path.join(root, "models/all-MiniLM-L6-v2"))
    ap.add_argument("--data", default=os.path.join(root, "..", "shared", "data"))
    ap.add_argument("--n", type=int, default=110000, help="texts to index (>= 100k for the table)")
    ap.add_argument("--ingest-n", type=int, default=20000,
                    help="texts of the timed ingest comparison (the first of the --n)")
    ap.add_argument("--threads", type=int, default=2, help="encoder threads, both sides")
    ap.add_argument("--batch", type=int, default=128, help="sbertctl add batch size")
    ap.add_argument("--queries", type=int, default=400, help="queries per concurrency level")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--index", default=None, help="sbertd --index SPEC (default: sbertd's)")
    ap.add_argument("--out", default=os.path.join(root, "bench/out/e2e.md"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--rounds", type=int, default=1,
                    help="timed ingest rounds, sbert-encode runs between and around them")
    ap.add_argument("--in-flight", type=int, default=None,
                    help="sbertctl add --in-flight N (default: sbertctl's)")
    ap.add_argument("--store", default=None,
                    help="cached store of the untimed texts (default bench/out/e2e-store-N-I)")
    a = ap.parse_args()

    encode = os.path.join(a.build, "encoder/sbert-encode")
    sbertd = os.path.join(a.build, "daemon/sbertd")
    sbertctl = os.path.join(a.build, "client/sbertctl")
    for p in (encode, sbertd, sbertctl, a.model):
        if not os.path.exists(p):
            sys.exit("missing %s (build first: cmake --build %s)" % (p, a.build))
    env_note = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    if any(env_note.values()):
        print("warning: %r is set: OpenBLAS will not pick its own kernel (use run.sh)" % env_note)
    core = openblas_core()

    texts, queries = load_texts(a.data, a.n, a.seed)
    n_cmp = min(a.ingest_n, len(texts))
    textfile = os.path.join(tmp, "texts.txt")
    with open(textfile, "w", encoding="utf-8") as f:
        f.write("\n".join(texts[:n_cmp]) + "\n")
    restfile = os.path.join(tmp, "rest.txt")
    with open(restfile, "w", encoding="utf-8") as f:
        f.write("\n".join(texts[n_cmp:]) + "\n")
    n_tokens_note = ""

    # -- sbert-encode alone --
    def timed_encode(path):
        t0 = time.perf_counter()
        with open(path, "rb") as fin:
            p = subprocess.run([encode, "--model", a.model, "--format", "f32", "--batch", str(a.batch),
                                "--threads", str(a.threads), "--stats"], stdin=fin,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            sys.exit("sbert-encode failed: %s" % p.stderr)
        return time.perf_counter() - t0, p.stderr.strip()

    empty = os.path.join(tmp, "empty.txt")
    open(empty, "w").close()
    t_load, _ = timed_encode(empty)
    print("sbert-encode: model load + start-up %.2f s; encoding %d texts ..." % (t_load, n_cmp),
          flush=True)
    t_enc_total, enc_stats = timed_encode(textfile)
    t_enc = t_enc_total - t_load
    n_tokens_note = enc_stats.splitlines()[-1] if enc_stats else ""
    print("  %.1f s (%.0f texts/s)  %s" % (t_enc, n_cmp / t_enc, n_tokens_note), flush=True)

    # -- the store of the untimed texts: cached, or built now --
    with open(os.path.join(a.model, "model.safetensors"), "rb") as f:
        model_sha = hashlib.sha256(f.read()).hexdigest()
    key = {"n": a.n, "ingest_n": n_cmp, "seed": a.seed, "model_sha256": model_sha,
           "texts_sha256": hashlib.sha256("\n".join(texts[n_cmp:]).encode()).hexdigest(),
           "index": a.index}
    store = a.store or os.path.join(root, "bench/out/e2e-store-%d-%d" % (a.n, n_cmp))
    stamp = os.path.join(store, "stamp.json")
    data = os.path.join(tmp, "data")
    cached = False
    try:
        with open(stamp) as f:
            cached = json.load(f) == key
    except (OSError, ValueError):
        pass
    if cached:
        print("store: a copy of %s (%d documents)" % (store, len(texts) - n_cmp), flush=True)
        shutil.copytree(os.path.join(store, "data"), data)
    else:
        os.makedirs(data)

    url = "ipc://" + os.path.join(tmp, "sbertd.sock")
    # no embedding cache: every round adds the same texts again, and the comparison with
    # sbert-encode is of encoding them
    cmd = [sbertd, "--model", a.model, "--data", data, "--listen", url,
           "--set", "encode_threads=%d" % a.threads, "--set", "embedding_cache_mb=0"]
    if a.index:
        cmd += ["--index", a.index]
    log = open(os.path.join(tmp, "sbertd.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    add_cmd = [sbertctl, "--socket", url, "--timeout", "600", "add", "--batch", str(a.batch),
               "--no-progress"]
    if a.in_flight:
        add_cmd += ["--in-flight", str(a.in_flight)]
    try:
        wait_health(url, proc)
        if not cached and n_cmp < len(texts):
            print("building the store: adding %d texts (untimed, once; cached in %s) ..."
                  % (len(texts) - n_cmp, store), flush=True)
            p = subprocess.run(add_cmd + ["--file", restfile], capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit("ingest failed (%d): %s" % (p.returncode, p.stderr))
            shutil.rmtree(store, ignore_errors=True)
            os.makedirs(store)
            r = Req(url)
            rep = r.call({"v": 1, "op": "backup", "dir": os.path.join(store, "data")})
            r.close()
            if not rep.get("ok"):
                sys.exit("backup of the store failed: %r" % rep)
            with open(stamp, "w") as f:
                json.dump(key, f)

        # E D E D ... E: each daemon round between two sbert-encode runs
        t_encs, t_ings = [t_enc], []
        for rnd in range(a.rounds):
            print("round %d: sbertctl add --file (batch %d) into sbertd ..." % (rnd + 1, a.batch),
                  flush=True)
            t0 = time.perf_counter()
            p = subprocess.run(add_cmd + ["--file", textfile], capture_output=True, text=True)
            t_ings.append(time.perf_counter() - t0)
            if p.returncode != 0:
                sys.exit("ingest failed (%d): %s" % (p.returncode, p.stderr))
            print("  %.1f s (%.0f texts/s): %s" % (t_ings[-1], n_cmp / t_ings[-1],
                                                   p.stdout.strip()), flush=True)
            t_encs.append(timed_encode(textfile)[0] - t_load)
            print("  sbert-encode again: %.1f s (%.0f texts/s)" % (t_encs[-1], n_cmp / t_encs[-1]),
                  flush=True)
        # the fastest of each: drift in the machine's load cannot flatter the daemon
        t_enc, t_ing = min(t_encs), min(t_ings)
        overhead = t_ing / t_enc - 1
        per_round = [t_ings[i] / min(t_encs[i], t_encs[i + 1]) - 1 for i in range(a.rounds)]

        r = Req(url)
        stats = r.call({"v": 1, "op": "stats"})
        r.close()

        # warm-up: page the index and the model in
        query_run(url, queries, 1, 20, a.k)
        rows = []
        for nc in (1, 16):
            per = max(1, a.queries // nc)
            lat, wall = query_run(url, queries, nc, per, a.k)
            rows.append((nc, len(lat), statistics.median(lat), pct(lat, 99), len(lat) / wall))
            print("  %2d client(s): %d queries p50 %.2f ms p99 %.2f ms %.1f q/s" % rows[-1],
                  flush=True)

        # The daemon's own view of the same queries (receipt to reply handed to nanomsg), which
        # separates time inside sbertd from the transport and client.
        r = Req(url)
        after = r.call({"v": 1, "op": "stats"})
        r.close()
        dq = ((after.get("ops") or {}).get("query") or {})

        cli_lat = []
        for q in queries[:30]:
            t0 = time.perf_counter()
            p = subprocess.run([sbertctl, "--socket", url, "query", "-k", str(a.k), q],
                               capture_output=True, text=True)
            cli_lat.append((time.perf_counter() - t0) * 1000)
            if p.returncode != 0:
                sys.exit("sbertctl query failed: %s" % p.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    docs = None
    for key in ("documents", "count", "n_documents"):
        if isinstance(stats.get(key), int):
            docs = stats[key]
    index_type = (stats.get("index") or {}).get("spec") or a.index or "sbertd default"

    lines = []
    lines.append("# bench/e2e — sbertd end to end\n")
    lines.append("Machine: %d CPUs visible, load average %s at the end (other jobs share it); encoder "
                 "threads %d on both sides; OpenBLAS core: %s; index: %s; documents indexed: %s."
                 "\n" % (os.cpu_count(), " ".join("%.1f" % x for x in os.getloadavg()), a.threads,
                         core, index_type,
                         docs if docs is not None else len(texts)))
    lines.append("## Ingest (%d texts: tatoeba + WordNet glosses, shuffled; %d texts per encoder "
                 "call on both sides)\n" % (n_cmp, a.batch))
    lines.append("| path | seconds | texts/s |")
    lines.append("|---|---:|---:|")
    lines.append("| sbert-encode alone (model load %.2f s subtracted; fastest of %d runs: %s s) "
                 "| %.1f | %.0f |" % (t_load, len(t_encs), ", ".join("%.1f" % x for x in t_encs),
                                      t_enc, n_cmp / t_enc))
    lines.append("| sbertctl add --file%s → sbertd (batch %d; encode + LMDB + index; into a store "
                 "of %d documents; fastest of %d: %s s) | %.1f | %.0f |"
                 % (" --in-flight %d" % a.in_flight if a.in_flight else "", a.batch,
                    len(texts) - n_cmp, len(t_ings), ", ".join("%.1f" % x for x in t_ings), t_ing,
                    n_cmp / t_ing))
    lines.append("| **daemon overhead** (target < 10%%; each round against the faster run beside "
                 "it: %s) | | **%+.1f%%** |\n"
                 % (", ".join("%+.1f%%" % (x * 100) for x in per_round), overhead * 100))
    lines.append("## Query latency (ten-word tatoeba sentences, top-%d, end to end over ipc)\n"
                 % a.k)
    lines.append("| clients | queries | p50 ms | p99 ms | queries/s |")
    lines.append("|---:|---:|---:|---:|---:|")
    for nc, nq, p50, p99, qps in rows:
        lines.append("| %d | %d | %.2f | %.2f | %.1f |" % (nc, nq, p50, p99, qps))
    lines.append("| 1 (`sbertctl query` process: exec + connect + print) | %d | %.2f | %.2f | |"
                 % (len(cli_lat), statistics.median(cli_lat), pct(cli_lat, 99)))
    if dq:
        lines.append("| all of the above, inside sbertd (`stats` ops.query; max %.2f ms) | %d | %.2f "
                     "| %.2f | |" % (dq.get("max_ms", 0), dq.get("count", 0), dq.get("p50_ms", 0),
                                    dq.get("p99_ms", 0)))
    lines.append("")
    md = "\n".join(lines)
    print()
    print(md)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write(md)
    print("written to %s" % a.out)


if __name__ == "__main__":
    main()
