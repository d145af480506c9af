#!/usr/bin/env python3
"""bench_sync.py — `sbertctl sync` of a tree of files against a real sbertd (issue 12's target: a
sync of 10,000 files with nothing changed in at most 2 s; with 1% changed, only those encoded).

Usage: bench_sync.py MODEL_DIR [-n 10000] [--repeat 3] [--build build] [--cache-mb MB]

Makes n small text files (about 200 bytes, in 100 directories) under a temporary directory,
starts sbertd on a temporary store beside it, and times, as the wall time of the sbertctl
process: the first sync (every file encoded), a sync with nothing changed (median of --repeat),
one after 1% of the files were rewritten (and their counts from --json: encoded must be n/100),
one after 1% were deleted, and a sync of a copy of the tree (the same texts under another root:
with the embedding cache nothing is encoded, every text counts as cached). --cache-mb sets the
daemon's embedding_cache_mb (0: no cache; default: the daemon's). No peers: the figures are for comparing commits on one machine.
Prints the CPU model, the load average before and after, and the file system of the tree.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "manage"))
from bench_manage import cpu_model, fs_type, loadavg  # noqa: E402

WORDS = ("river stone garden market engine planet violin harbor lantern meadow copper signal "
         "thunder orchard canyon ribbon glacier compass timber falcon").split()


def text(i, edit=0):
    words = [WORDS[(i * 7 + k * (3 + edit)) % len(WORDS)] for k in range(30)]
    return "Document %d, version %d: %s.\n" % (i, edit, " ".join(words))


def path(root, i):
    return os.path.join(root, "d%02d" % (i % 100), "f%05d.txt" % i)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--build", default=os.path.join(HERE, "..", "..", "build"))
    ap.add_argument("--cache-mb", type=int, default=None)
    a = ap.parse_args()
    sbertd = os.path.join(a.build, "daemon", "sbertd")
    sbertctl = os.path.join(a.build, "client", "sbertctl")
    tmp = tempfile.mkdtemp(prefix="bsync-", dir="/tmp")
    root = os.path.join(tmp, "tree")
    url = "ipc://" + os.path.join(tmp, "s.sock")
    os.makedirs(os.path.join(tmp, "data"))
    for i in range(a.n):
        os.makedirs(os.path.dirname(path(root, i)), exist_ok=True)
        with open(path(root, i), "w") as f:
            f.write(text(i))
    log = open(os.path.join(tmp, "log"), "wb")
    extra = [] if a.cache_mb is None else ["--set", "embedding_cache_mb=%d" % a.cache_mb]
    d = subprocess.Popen([sbertd, "--model", a.model, "--data", os.path.join(tmp, "data"),
                          "--listen", url] + extra, stdout=log, stderr=subprocess.STDOUT)

    def sync(tree=root):
        t0 = time.perf_counter()
        p = subprocess.run([sbertctl, "--socket", url, "--json", "sync", tree],
                           capture_output=True, text=True)
        dt = time.perf_counter() - t0
        if p.returncode != 0:
            raise SystemExit("sync failed (%d): %s" % (p.returncode, p.stderr[-2000:]))
        return dt, json.loads(p.stdout)

    try:
        for _ in range(600):
            if subprocess.run([sbertctl, "--socket", url, "health"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        load0 = loadavg()
        rows = []
        dt, got = sync()
        rows.append(("first sync (all encoded)", dt, got))
        ts = []
        for _ in range(a.repeat):
            dt, got = sync()
            ts.append(dt)
        rows.append(("nothing changed (median of %d)" % a.repeat, statistics.median(ts), got))
        changed = range(0, a.n, 100)
        for i in changed:
            with open(path(root, i), "w") as f:
                f.write(text(i, 1))
        dt, got = sync()
        rows.append(("1%% changed (%d files)" % len(changed), dt, got))
        for i in range(50, a.n, 100):
            os.unlink(path(root, i))
        dt, got = sync()
        rows.append(("1%% deleted (%d files)" % len(range(50, a.n, 100)), dt, got))
        copy = os.path.join(tmp, "copy")
        shutil.copytree(root, copy)
        dt, got = sync(copy)
        rows.append(("a copy of the tree (new ids)", dt, got))
        load1 = loadavg()
    finally:
        d.send_signal(signal.SIGTERM)
        d.wait()
        log.close()
        fs = fs_type(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    print("CPU: %s (%d online); load average before %s, after %s; tree and store on %s; "
          "embedding_cache_mb %s" % (cpu_model(), os.cpu_count(), load0, load1, fs,
                                     "default" if a.cache_mb is None else a.cache_mb))
    print()
    print("| sync of %d files | wall s | indexed | encoded | cached | unchanged | deleted |" % a.n)
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, dt, g in rows:
        print("| %s | %.3f | %d | %d | %d | %d | %d |" % (name, dt, g["indexed"], g["encoded"],
                                                        g["cached"], g["unchanged"], g["deleted"]))


if __name__ == "__main__":
    main()
