#!/usr/bin/env python3
"""Crash-safety harness for sbertd: SIGKILL at chosen moments, restart, check nothing acknowledged
was lost. Used by tests/reliability (CI size) and bench/soak/run.sh (100 kills).

Usage: crashkit.py MODEL_DIR [--kills N] [--phases LIST] [--seed S] [--workdir DIR] [--keep]
       (SBERTD names the sbertd binary)

One round: writers (--writers, 2 by default, on disjoint ids: sbertd groups concurrent adds into
one encode, then one transaction each) stream requests into a real sbertd (adds of new ids,
upserts of earlier ids, deletes, each add batch tagged {"batch": B} in its documents' metadata)
and record every reply.
A watcher reads the daemon's debug log and sends SIGKILL when the phase's marker appears (plus a
small random delay), or at a random moment. The daemon restarts on the same data directory and the
checker asserts:
  - every acknowledged document is present with its text and metadata, deleted ids stay deleted,
    and no other document exists (stats.documents equals the documents found);
  - each writer's request in flight at the kill is applied entirely or not at all (no half
    batch);
  - each vector equals, bit for bit, what get returned at the previous check (within 1e-5 of a
    fresh encode of the text for documents new since, or after a reindex, which re-encodes in
    other batches);
  - the vector index holds exactly the store's live ids: stats index.count equals documents and a
    query for k = all returns every live id; a filter on the batch tag finds the batch whole;
  - a query for a document's own text finds it first (score ~1);
  - the keyword index holds exactly the live documents (stats keyword.documents; a keyword query
    for a document's text finds it and no deleted document).
Phases: encode, commit, snapshot (snapshot_changes is small), random, reindex, backup (the backup
left by the kill is ignored; a new backup must succeed and open as a working store), ivf (a fresh
store with IVF8,Flat: training starts at 312 vectors), delfilter (a fresh store, killed during a
delete by filter: each chunk is applied whole or not, the deleted ones are the first chunks, no
other document is lost, the vector index agrees with the store, and the retry with the same
req_id deletes the rest).

Exit status 0 when every check passed; the report is printed either way.
"""
import argparse
import ctypes
import json
import os
import random
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "daemon"))
import sbertd_harness as h  # noqa: E402

NN_RCVFD = 11
NN_DONTWAIT = 1
EAGAIN = 11

PHASES = ["encode", "commit", "snapshot", "random", "recovery", "reindex", "backup", "ivf", "hnsw",
          "delfilter", "bigdoc"]
# phase -> (marker in the daemon's debug log that starts it, SIGKILL delay range in seconds after
# it, markers that show the phase ended before the kill: such a kill counts as "missed"). The
# commit's end is not logged: whether the batch in flight was applied tells instead.
MARKERS = {
    "encode": ("<7>encode: ", (0.0, 0.15), ["index: commit: "]),
    "commit": ("index: commit: ", (0.0, 0.03), []),
    "snapshot": ("index: snapshot: writing", (0.0, 0.002), ["snapshot written at"]),
    "backup": ("index: backup: copying", (0.0, 0.0005), ["backup written to"]),
    "ivf": ("training on", (0.0, 0.005), ["trained on"]),
    # while the restarted daemon opens its store (replay after the snapshot, or a rebuild)
    "recovery": ("<6>model ", (0.0, 0.004), ["ready: "]),
}
REINDEX_MARKERS = [("index: reindex: encoding", (0.0, 0.1), ["reindex: switching"]),
                   ("index: reindex: switching", (0.0, 0.002), ["reindexed "])]
IVF_CONF = "index = IVF8,Flat\nnprobe = 8\n"  # trains at 39 * 8 = 312 vectors
# "delfilter": a fresh store of DELF_DOCS documents (precomputed vectors: no encoding), a delete by
# filter of the DELF_MATCH of them tagged "x", killed after one of its chunks (of DELF_CHUNK
# documents, PROTOCOL.md) committed. Labels follow the add order, and the chunks the label order,
# so what the kill leaves deleted must be the first k * DELF_CHUNK tagged documents.
DELF_DOCS, DELF_MATCH, DELF_CHUNK = 6000, 4500, 1000
DELF_MARKER = ("commit: delete by filter of", (0.0, 0.02))
# "bigdoc": a fresh store of BIG_SMALL short documents, then one document of BIG_BYTES, killed
# while it is split and encoded (a timer) or committed (the commit's log line): after the restart
# it is wholly there, every passage searchable, or absent. Its sentences are far apart (runs of
# layout white space, as text extracted from a PDF can have), so that it is a few dozen passages
# of the model's full window, which encode in seconds (plain prose of 2 MiB is ~2,000 passages:
# minutes of encoding on a small machine).
BIG_BYTES, BIG_SMALL = 2 << 20, 10
BIG_CONF = "max_text_bytes = 4M\nmax_message_size = 8M\n"
IVF_TRAIN_AT = 312
# "hnsw": a store of its own with HNSW (deletes are tombstones, rebuilt from the stored vectors
# now and then), killed at one of encode/commit/snapshot/random. efSearch above the collection's
# size, so that a query for k = all still returns every live id.
HNSW_CONF = "index = HNSW32,Flat\nef_search = 4000\n"
VEC_TOL = 1e-5
WORDS = ("cat dog garden movie guitar pasta pizza river mountain city train music book window "
         "coffee rain winter summer market story bridge forest ocean street lamp letter friend "
         "café naïve über ☕ 東京 data search daemon vector index night morning road child").split()


class Failure(Exception):
    """A crash-safety check failed."""


def check(cond, what):
    if not cond:
        raise Failure(what)


# ---- a REQ client whose wait can be abandoned ------------------------------------------------

class PollClient(h.Client):
    """A REQ socket that waits for its reply in select() slices, so that the writer can give up
    on a request the moment the daemon is killed (and close the socket: a REQ socket would resend
    the request to the restarted daemon)."""

    def __init__(self, url):
        super().__init__(url, timeout_ms=200)
        fd = ctypes.c_int(-1)
        sz = ctypes.c_size_t(ctypes.sizeof(fd))
        h._lib.nn_getsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                         ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)]
        rc = h._lib.nn_getsockopt(self.sock, h.NN_SOL_SOCKET, NN_RCVFD, ctypes.byref(fd),
                                  ctypes.byref(sz))
        assert rc == 0, "NN_RCVFD"
        self.rcvfd = fd.value

    def call_abandonable(self, msg, gone, limit_s=300):
        """Returns the reply object, or None when gone() became true first."""
        data = json.dumps(msg).encode()
        buf = ctypes.create_string_buffer(data, len(data))
        while h._lib.nn_send(self.sock, buf, len(data), 0) < 0:
            e = h._lib.nn_errno()
            if e != h.ETIMEDOUT:
                raise OSError(e, h._lib.nn_strerror(e).decode())
            if gone():
                return None
        deadline = time.time() + limit_s
        while True:
            if gone():
                return None
            if time.time() > deadline:
                raise Failure("no reply to %s within %d s" % (msg["op"], limit_s))
            r, _, _ = select.select([self.rcvfd], [], [], 0.02)
            if not r:
                continue
            p = ctypes.c_void_p()
            n = h._lib.nn_recv(self.sock, ctypes.byref(p), h.NN_MSG, NN_DONTWAIT)
            if n < 0:
                e = h._lib.nn_errno()
                if e in (EAGAIN, h.ETIMEDOUT):
                    continue
                raise OSError(e, h._lib.nn_strerror(e).decode())
            out = ctypes.string_at(p, n)
            h._lib.nn_freemsg(p)
            return json.loads(out)


# ---- the daemon, its log watched -------------------------------------------------------------

class WatchedDaemon:
    """sbertd with stderr read line by line: the log file is written as it comes, and an armed
    marker sends SIGKILL after a delay."""

    def __init__(self, exe, model, tmp, data, conf):
        self.exe, self.model, self.tmp, self.data = exe, model, tmp, data
        self.url = "ipc://" + os.path.join(tmp, "s.sock")
        self.conf = conf
        self.log_path = os.path.join(tmp, "sbertd.log")
        self.proc = None
        self.lock = threading.Lock()
        self.armed = None
        self.killed = threading.Event()
        self.kill_note = None

    def start(self, timeout=300, arm=None):
        """Starts sbertd and returns the seconds until health answered. With arm (marker, delay),
        the marker is armed before the process starts; a kill during start returns None."""
        conf_path = os.path.join(self.tmp, "sbertd.conf")
        with open(conf_path, "w") as f:
            f.write(self.conf)
        args = [self.exe, "--model", self.model, "--data", self.data, "--listen", self.url,
                "--threads", "4", "--log-level", "debug", "--config", conf_path]
        self.killed.clear()
        self.kill_note = None
        self.armed = arm
        self.post = None
        log = open(self.log_path, "ab")
        log.write(b"==== start %s\n" % time.strftime("%H:%M:%S").encode())
        log.flush()
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, args=(self.proc, log), daemon=True)
        self.reader.start()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.reader.join(5)
                if self.killed.is_set():
                    return None
                raise Failure("sbertd exited with %d at start:\n%s" % (self.proc.returncode,
                                                                       self.log_tail()))
            if os.path.exists(self.url[6:]):
                c = h.Client(self.url, timeout_ms=2000)
                try:
                    if c.call("health").get("ok"):
                        return time.monotonic() - t0
                except h.Timeout:
                    pass
                finally:
                    c.close()
            time.sleep(0.02)
        raise Failure("sbertd did not answer health within %d s:\n%s" % (timeout, self.log_tail()))

    def _read(self, proc, log):
        for line in proc.stderr:
            log.write(line)
            with self.lock:
                if self.post is not None:
                    self.post.append(line.decode(errors="replace"))
                armed = self.armed
                if armed and armed[0].encode() in line:
                    self.post = []
                    self.armed = None
                else:
                    armed = None
            if armed:
                log.flush()
                time.sleep(armed[1])
                self.kill("marker %r + %.1f ms" % (armed[0], armed[1] * 1000))
        log.close()

    def arm(self, marker, delay):
        with self.lock:
            self.armed = (marker, delay)

    def disarm(self):
        with self.lock:
            self.armed = None

    def kill(self, note):
        with self.lock:
            if self.killed.is_set() or self.proc.poll() is not None:
                return
            self.kill_note = note
            os.kill(self.proc.pid, signal.SIGKILL)
            self.killed.set()

    def wait_dead(self):
        self.proc.wait()
        self.reader.join(10)

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("sbertd did not stop within 120 s of SIGTERM")
            self.reader.join(10)
        return self.proc.returncode

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


# ---- the model of what the daemon acknowledged ---------------------------------------------

class Model:
    """One writer's acknowledged state; its ids, texts, batch tags and req_ids carry its prefix,
    so writers never touch each other's documents."""

    def __init__(self, rng, prefix="a"):
        self.rng = rng
        self.p = prefix
        self.docs = {}        # id -> (text, metadata): the acknowledged state
        self.vecs = {}        # id -> vector seen at the last check (exact)
        self.universe = set()  # every id ever sent
        self.pending = None   # the write request in flight at the kill
        self.serial = 0
        self.batch = 0
        self.acked = 0        # write requests acknowledged
        self.reindexed = False  # a reindex may have re-encoded since the last check
        self.retry = None     # (request, state before it): resent with its req_id after a check
        self.retried = 0

    def text(self):
        self.serial += 1
        n = self.rng.randint(4, 40)
        body = " ".join(self.rng.choice(WORDS) for _ in range(n))
        return "%s (note %s%d)" % (body, self.p, self.serial)

    def new_id(self):
        self.serial += 1
        r = self.rng.random()
        if r < 0.05:
            return "%sü-%d-" % (self.p, self.serial) + "x" * self.rng.randint(100, 400)
        if r < 0.15:
            return "%s文档-%d" % (self.p, self.serial)
        return "%s%d" % (self.p, self.serial)

    def next_op(self):
        live = sorted(self.docs)
        # Past 2000 live documents a writer deletes more than it adds: long soaks stay within
        # max_k (the query for k = all) and their checks stay quick.
        big = len(live) > 2000
        if live and self.rng.random() < (0.6 if big else 0.2):
            ids = self.rng.sample(live, min(len(live), self.rng.randint(1, 60 if big else 8)))
            ids.append("%s-never-%d" % (self.p, self.rng.randint(0, 10**9)))
            self.universe.update(ids)
            self.batch += 1
            return {"v": 1, "op": "delete", "req_id": "%s-d%d" % (self.p, self.batch), "ids": ids}
        self.batch += 1
        n = self.rng.randint(8, 40)
        ids = []
        n_up = min(len(live), int(n * self.rng.uniform(0, 0.4)))
        ids += self.rng.sample(live, n_up)
        while len(ids) < n:
            ids.append(self.new_id())
        self.rng.shuffle(ids)
        docs = []
        for i, did in enumerate(ids):
            meta = {"batch": "%s%d" % (self.p, self.batch), "i": i,
                    "tag": self.rng.choice(["a", "b", "ç"]),
                    "n": self.rng.randint(-1000, 1000)}
            if self.rng.random() < 0.1:
                meta["nested"] = {"k": [1, 2, {"x": "y"}]}
            docs.append({"id": did, "text": self.text(), "metadata": meta})
        self.universe.update(ids)
        return {"v": 1, "op": "add", "req_id": "%s-b%d" % (self.p, self.batch), "documents": docs}

    @staticmethod
    def applied(state, op):
        s = dict(state)
        if op["op"] == "add":
            for d in op["documents"]:
                s[d["id"]] = (d["text"], d["metadata"])
        else:
            for i in op["ids"]:
                s.pop(i, None)
        return s

    def ack(self, op, reply):
        check(reply.get("ok") is True, "%s refused: %r" % (op["op"], reply))
        if op["op"] == "add":
            ids = [d["id"] for d in op["documents"]]
            check(reply["ids"] == ids, "add: ids %r" % reply["ids"])
            check(reply["replaced"] == [i in self.docs for i in ids],
                  "add: replaced %r disagrees with the acknowledged state" % reply["replaced"])
            for d in op["documents"]:
                self.vecs.pop(d["id"], None)
        else:
            check(reply["existed"] == [i in self.docs for i in op["ids"]],
                  "delete: existed %r disagrees with the acknowledged state" % reply["existed"])
        self.docs = self.applied(self.docs, op)
        self.acked += 1


# ---- the writer -------------------------------------------------------------------------------

class Writer(threading.Thread):
    def __init__(self, daemon, model):
        super().__init__(daemon=True)
        self.d, self.m = daemon, model
        self.stop = threading.Event()
        self.done = 0
        self.error = None
        self.progress = threading.Condition()

    def run(self):
        c = PollClient(self.d.url)
        try:
            while not self.stop.is_set() and not self.d.killed.is_set():
                op = self.m.next_op()
                self.m.pending = op
                reply = c.call_abandonable(op, self.d.killed.is_set)
                if reply is None:
                    return  # killed: op stays pending, applied or not
                self.m.pending = None
                self.m.ack(op, reply)
                with self.progress:
                    self.done += 1
                    self.progress.notify_all()
        except Exception as e:  # reported by the round
            self.error = e
        finally:
            c.close()

    def wait_done(self, n, timeout=120):
        with self.progress:
            end = time.time() + timeout
            while self.done < n and self.error is None and not self.d.killed.is_set():
                if time.time() > end:
                    raise Failure("writer made no progress: %d of %d batches" % (self.done, n))
                self.progress.wait(0.1)


# ---- checks -------------------------------------------------------------------------------------

class Checker:
    """Checks a daemon against the models of its writers (disjoint ids, one model each)."""

    def __init__(self, models):
        self.ms = models
        self.m = models[0]
        self.ref = {}  # text -> fresh encode
        self.max_diff_exact = 0.0
        self.max_diff_encode = 0.0
        self.docs_checked = 0
        self.outcomes = {}  # phase -> {"applied": n, "not applied": n, "no write in flight": n}

    def get_all(self, c, ids):
        found = {}
        ids = sorted(ids)
        for i in range(0, len(ids), 1000):
            r = c.call("get", ids=ids[i:i + 1000], include=["text", "metadata", "vector"])
            check(r.get("ok"), "get failed: %r" % r)
            for d in r["documents"]:
                if d["found"]:
                    found[d["id"]] = d
        return found

    def encode_refs(self, c, texts):
        need = sorted({t for t in texts if t not in self.ref})
        for i in range(0, len(need), 64):
            r = c.call("encode", texts=need[i:i + 64])
            check(r.get("ok"), "encode failed: %r" % r)
            for t, v in zip(need[i:i + 64], r["embeddings"]):
                self.ref[t] = v

    def resolve(self, m, state, phase):
        """The request in flight at the kill: applied whole or not at all."""
        without = m.docs
        outcome = "no write in flight"
        if m.pending is not None:
            m.retry = (m.pending, m.docs)
            with_ = Model.applied(m.docs, m.pending)
            if state == with_ and with_ != without:
                outcome = "applied"
                m.docs = with_
                if m.pending["op"] == "add":
                    for d in m.pending["documents"]:
                        m.vecs.pop(d["id"], None)
            elif state == without:
                outcome = "not applied"
            else:
                raise Failure("the %s in flight at the kill is neither fully applied nor "
                              "absent: %s" % (m.pending["op"], self.diff(state, without, with_)))
        if phase:
            self.outcomes.setdefault(phase, {}).setdefault(outcome, 0)
            self.outcomes[phase][outcome] += 1
        m.pending = None

    def retry(self, c):
        """Each writer resends its request in flight at the kill with the same req_id, as a
        client that lost the reply does. The reply must be the first execution's (replaced /
        existed as of the state before it) whether or not the batch had been committed; an
        execution repeated after the restart would say replaced/existed for its own documents."""
        for m in self.ms:
            if m.retry is None:
                continue
            op, before = m.retry
            m.retry = None
            r = c.call(op["op"], **{k: v for k, v in op.items() if k not in ("v", "op")})
            check(r.get("ok"), "retry of %s %s: %r" % (op["op"], op["req_id"], r))
            if op["op"] == "add":
                ids = [d["id"] for d in op["documents"]]
                check(r["ids"] == ids and r["replaced"] == [i in before for i in ids],
                      "retry of %s after the restart: replaced %r, the first execution's would "
                      "be %r (executed twice?)" % (op["req_id"], r["replaced"],
                                                   [i in before for i in ids]))
            else:
                check(r["existed"] == [i in before for i in op["ids"]],
                      "retry of %s after the restart: existed %r, the first execution's would "
                      "be %r (executed twice?)" % (op["req_id"], r["existed"],
                                                   [i in before for i in op["ids"]]))
            if Model.applied(m.docs, op) != m.docs:
                m.docs = Model.applied(m.docs, op)
                for d in op.get("documents", []):
                    m.vecs.pop(d["id"], None)
            m.retried += 1

    def verify(self, c, phase=None, resolve=True):
        """Checks the daemon behind c against the models; resolves the pending requests."""
        found = self.get_all(c, set().union(*(m.universe for m in self.ms)))
        live, owner = {}, {}
        for m in self.ms:
            state = {i: (d["text"], d["metadata"]) for i, d in found.items() if i in m.universe}
            if resolve:
                self.resolve(m, state, phase)
            check(state == m.docs, "store differs from the acknowledged state: %s"
                  % self.diff(state, m.docs))
            live.update(m.docs)
            owner.update((i, m) for i in m.docs)
        st = c.call("stats")
        check(st.get("ok"), "stats: %r" % st)
        check(st["documents"] == len(live),
              "stats.documents %d, acknowledged live documents %d (documents outside the writers' "
              "ids?)" % (st["documents"], len(live)))
        # the writers' texts all fit the model's window: one passage each
        check(st["index"]["count"] == st["passages"] == st["documents"],
              "vector index holds %d entries, store %d documents of %d passages" % (
                  st["index"]["count"], st["documents"], st["passages"]))
        # vectors
        reindexed = any(m.reindexed for m in self.ms)
        self.encode_refs(c, [t for t, _ in live.values()])
        for i, d in found.items():
            v = d["vector"]
            check(len(v) == 384, "%s: vector of %d" % (i, len(v)))
            vecs = owner[i].vecs
            old = vecs.get(i)
            if old is not None and not reindexed:
                diff = max(abs(a - b) for a, b in zip(v, old))
                self.max_diff_exact = max(self.max_diff_exact, diff)
                check(v == old, "%s: vector changed across the restart (max diff %g)" % (i, diff))
            ref = self.ref[d["text"]]
            diff = max(abs(a - b) for a, b in zip(v, ref))
            self.max_diff_encode = max(self.max_diff_encode, diff)
            check(diff <= VEC_TOL, "%s: stored vector differs from encode(text) by %g" % (i, diff))
            vecs[i] = v
        for m in self.ms:
            m.reindexed = False
        self.docs_checked += len(found)
        if not live:
            return
        # the index holds exactly the live ids
        rng = self.m.rng
        anyv = next(iter(found.values()))["vector"]
        q = c.call("query", vector=anyv, k=len(live), min_score=-1, include=[])
        check(q.get("ok"), "query: %r" % q)
        got = [r["id"] for r in q["results"]]
        check(len(got) == len(set(got)), "query over all returned an id twice")
        check(set(got) == set(live), "query over all: %d ids, missing %r, extra %r"
              % (len(got), sorted(set(live) - set(got))[:5], sorted(set(got) - set(live))[:5]))
        # the keyword index is written in the documents' transactions: it holds exactly the live
        # documents, and a keyword query for a document's text (every text has the term "note")
        # finds it and nothing deleted
        kw = st.get("keyword")
        check(kw is not None and kw["documents"] == st["documents"],
              "keyword index holds %r documents, store %d" % (kw and kw["documents"], st["documents"]))
        some = rng.choice(sorted(live))
        q = c.call("query", text=live[some][0], mode="keyword", k=min(len(live), 10000), include=[])
        check(q.get("ok"), "keyword query: %r" % q)
        got = [r["id"] for r in q["results"]]
        check(some in got and set(got) <= set(live),
              "keyword query for %r's text: found it %s, ids not live %r"
              % (some, some in got, sorted(set(got) - set(live))[:5]))
        # batch tags through the metadata filter: each batch whole
        batches = {}
        for i, (_, meta) in live.items():
            batches.setdefault(meta["batch"], set()).add(i)
        for b in rng.sample(sorted(batches), min(3, len(batches))):
            q = c.call("query", vector=anyv, k=len(live), min_score=-1, include=[],
                       filter={"batch": b})
            check(q.get("ok"), "filtered query: %r" % q)
            check({r["id"] for r in q["results"]} == batches[b],
                  "filter batch=%s finds %d documents, expected %d" % (b, len(q["results"]),
                                                                       len(batches[b])))
        for i in rng.sample(sorted(live), min(3, len(live))):
            q = c.call("query", text=live[i][0], k=3, include=["text"])
            check(q.get("ok") and q["results"], "query text: %r" % q)
            top = q["results"][0]
            check(top["id"] == i and top["score"] > 0.999,
                  "query for %s's own text found %s (%.4f)" % (i, top["id"], top["score"]))

    @staticmethod
    def diff(state, *cands):
        out = []
        for k, cand in enumerate(cands):
            missing = sorted(set(cand) - set(state))
            extra = sorted(set(state) - set(cand))
            changed = sorted(i for i in set(cand) & set(state) if cand[i] != state[i])
            out.append("vs candidate %d: %d missing %r, %d extra %r, %d changed %r"
                       % (k, len(missing), missing[:5], len(extra), extra[:5], len(changed),
                          changed[:5]))
        return "; ".join(out)


# ---- rounds -------------------------------------------------------------------------------------

class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.exe = h.find_sbertd()
        self.work = args.workdir or tempfile.mkdtemp(prefix="sbertd-crash-")
        os.makedirs(self.work, exist_ok=True)
        self.restarts = []
        self.kills = {}   # phase -> {"hit": n, "missed": n}
        self.stores = 0
        self.persist = {}  # "main", "hnsw" -> (daemon, models, checker), kept across rounds
        self.current = None  # the daemon of the round in progress
        self.ops_checked = 0
        self.last = None
        self.tmp_seen = 0   # snapshot temporaries found after a kill
        self.tmp_kept = 0   # ... still there once the daemon restarted
        self.tmp_planted = 0  # of tmp_seen: planted after no kill landed in a snapshot write

    def conf(self, extra=""):
        # Snapshots every 2 or so batches, so that kills land in snapshots and restarts replay
        # the changes after the last one. max_k covers the whole collection: a query for
        # k = all checks the index's ids.
        # A 1 MiB initial map: LMDB's map grows (doubling) under the writers now and then.
        return ("snapshot_changes = 48\nsnapshot_seconds = 5\nmax_k = 10000\nmap_size = 1M\n"
                + extra)

    def new_store(self, name, extra="", writers=1):
        tmp = os.path.join(self.work, name)
        os.makedirs(tmp, exist_ok=True)
        d = WatchedDaemon(self.exe, self.args.model, tmp, os.path.join(tmp, "data"),
                          self.conf(extra))
        ms = [Model(random.Random(self.rng.random()), "abcdefgh"[k]) for k in range(writers)]
        self.stores += 1
        return d, ms, Checker(ms)

    def note_kill(self, phase, hit, d):
        self.last = d.kill_note
        k = self.kills.setdefault(phase, {"hit": 0, "missed": 0})
        k["hit" if hit else "missed"] += 1

    @staticmethod
    def ended_early(d, ends):
        """After wait_dead(): 1 when a line written between the marker and the kill shows that
        the phase had already ended."""
        return any(e in line for line in (d.post or []) for e in ends)

    def restart_and_verify(self, d, chk, phase):
        if phase == "recovery":
            # a first restart killed while it opens the store, then the one checked
            marker, (lo, hi), ends = MARKERS[phase]
            t = d.start(arm=(marker, self.rng.uniform(lo, hi)))
            if t is None:
                d.wait_dead()
                self.note_kill(phase, not self.ended_early(d, ends), d)
            else:
                d.disarm()
                self.note_kill(phase, False, d)
                d.kill("recovery: served before the marker's delay ran out")
                d.wait_dead()
        before = self.leftovers(d)
        self.restarts.append(d.start())
        after = self.leftovers(d)
        self.tmp_seen += len(before)
        self.tmp_kept += len(after)
        if self.args.check_leftovers:
            check(not after, "after the restart, temporary files left by the killed daemon are "
                  "still in the data directory: %s" % ", ".join(after))
        c = h.Client(d.url, timeout_ms=120000)
        try:
            chk.verify(c, phase)
            chk.retry(c)
            check(not os.path.exists(os.path.join(d.data, "reindex.mdb")),
                  "reindex.mdb left behind after restart")
        finally:
            c.close()

    def plant_leftover(self):
        """No kill landed inside a snapshot write. The kill comes 0-2 ms after this harness reads
        the marker line, so a machine that writes a snapshot faster than that is missed every
        time. What such a kill leaves is made instead: the main store's daemon is SIGKILLed, a
        temporary with vindex_snapshot_write's name (index.snap.tmp.XXXXXX) is put beside the
        snapshot, and the restart must remove it."""
        d, _, chk = self.main
        d.kill("SIGKILL, then a snapshot temporary planted")
        d.wait_dead()
        with open(os.path.join(d.data, "index.snap.tmp.pLaNt0"), "wb") as f:
            f.write(os.urandom(65536))
        self.tmp_planted += 1
        print("no kill landed inside a snapshot write; planted a snapshot temporary instead",
              flush=True)
        self.restart_and_verify(d, chk, None)

    @staticmethod
    def leftovers(d):
        """Snapshot temporaries (vindex_snapshot_write's index.snap.tmp.XXXXXX) in the data dir."""
        try:
            return sorted(n for n in os.listdir(d.data) if n.startswith("index.snap.tmp."))
        except FileNotFoundError:
            return []

    @property
    def main(self):
        return self.persist.get("main")

    def round(self, phase):
        if phase == "ivf":
            return self.round_ivf()
        if phase == "delfilter":
            return self.round_delfilter()
        if phase == "bigdoc":
            return self.round_bigdoc()
        name = "hnsw" if phase == "hnsw" else "main"
        if name not in self.persist:
            d, ms, chk = self.new_store(name, HNSW_CONF if name == "hnsw" else "",
                                        writers=self.args.writers)
            self.restarts.append(d.start())
            self.persist[name] = (d, ms, chk)
        d, ms, chk = self.persist[name]
        self.current = d
        kind = phase
        if phase == "hnsw":
            kind = self.rng.choice(["encode", "commit", "snapshot", "random"])
        ws = [Writer(d, m) for m in ms]
        for w in ws:
            w.start()
        ws[0].wait_done(self.rng.randint(1, 4))
        side = None
        hit = True
        ends = []
        if phase == "recovery":
            t = self.rng.uniform(0.0, 1.0)
            threading.Timer(t, d.kill, args=("random after %.0f ms" % (t * 1000),)).start()
        elif kind in ("encode", "commit", "snapshot"):
            marker, (lo, hi), ends = MARKERS[kind]
            d.arm(marker, self.rng.uniform(lo, hi))
        elif kind == "random":
            t = self.rng.uniform(0.0, 2.0)
            threading.Timer(t, d.kill, args=("random after %.0f ms" % (t * 1000),)).start()
        elif phase == "reindex":
            marker, (lo, hi), ends = self.rng.choice(REINDEX_MARKERS)
            d.arm(marker, self.rng.uniform(lo, hi))
            side = self.side_op(d, {"v": 1, "op": "reindex", "req_id": "r%d" % len(self.restarts)})
            for m in ms:
                m.reindexed = True
        elif phase == "backup":
            marker, (lo, hi), ends = MARKERS[phase]
            d.arm(marker, self.rng.uniform(lo, hi))
            bdir = os.path.join(self.work, "backup-%d" % len(self.restarts))
            side = self.side_op(d, {"v": 1, "op": "backup", "dir": bdir})
        if not d.killed.wait(60):
            hit = False
            d.disarm()
            d.kill("phase %s not reached in 60 s" % phase)
        for w in ws:
            w.join(30)
            check(not w.is_alive(), "writer did not stop after the kill")
            if w.error:
                raise w.error
        if side:
            side.join(30)
            if side.error:
                raise side.error
            if side.reply is not None:
                # the side op finished before the kill: its marker came too early to count
                hit = hit and not side.reply.get("ok")
        d.wait_dead()
        hit = hit and not self.ended_early(d, ends)
        self.note_kill("random" if phase == "recovery" else phase, hit, d)
        self.restart_and_verify(d, chk, phase)
        if phase == "backup":
            self.check_backup(d, ms, chk)

    def side_op(self, d, msg):
        t = threading.Thread(daemon=True)
        t.reply, t.error = None, None

        def run():
            c = PollClient(d.url)
            try:
                t.reply = c.call_abandonable(msg, d.killed.is_set)
            except Exception as e:
                t.error = e
            finally:
                c.close()
        t.run = run
        t.start()
        return t

    def check_backup(self, d, ms, chk):
        """After a kill during backup: a new backup works and opens as a working store."""
        bdir = os.path.join(self.work, "backup-ok-%d" % len(self.restarts))
        c = h.Client(d.url, timeout_ms=120000)
        try:
            r = c.call("backup", dir=bdir)
        finally:
            c.close()
        check(r.get("ok") and r["documents"] == sum(len(m.docs) for m in ms),
              "backup after the kill: %r" % r)
        tmp = os.path.join(self.work, "open-backup-%d" % len(self.restarts))
        os.makedirs(tmp)
        b = WatchedDaemon(self.exe, self.args.model, tmp, bdir, self.conf())
        b.start()
        bc = h.Client(b.url, timeout_ms=120000)
        try:
            saved = [dict(m.vecs) for m in ms]
            chk.verify(bc, resolve=False)
            # (documents a retry wrote since the last check have no saved vector yet)
            check(all(m.vecs.get(i) == v for m, sv in zip(ms, saved) for i, v in sv.items()),
                  "the backup's vectors differ from the store's")
            self.ops_checked += 1
        finally:
            bc.close()
            b.stop()
        shutil.rmtree(bdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)

    def round_ivf(self):
        """A fresh IVF8,Flat store, killed when training starts; after restart it trains."""
        n = self.kills.get("ivf", {"hit": 0, "missed": 0})
        d, (m,), chk = self.new_store("ivf-%d" % (n["hit"] + n["missed"]), IVF_CONF)
        self.current = d
        self.restarts.append(d.start())
        marker, (lo, hi), ends = MARKERS["ivf"]
        d.arm(marker, self.rng.uniform(lo, hi))
        w = Writer(d, m)
        w.start()
        hit = d.killed.wait(120)
        if not hit:
            d.disarm()
            d.kill("ivf training not reached in 120 s")
        w.join(30)
        if w.error:
            raise w.error
        d.wait_dead()
        hit = hit and not self.ended_early(d, ends)
        self.note_kill("ivf", hit, d)
        self.restart_and_verify(d, chk, "ivf")
        c = h.Client(d.url, timeout_ms=120000)
        try:
            end = time.time() + 120
            while True:
                st = c.call("stats")
                if st["index"]["trained"] or len(m.docs) < IVF_TRAIN_AT:
                    break
                check(time.time() < end, "IVF not trained 120 s after the restart")
                time.sleep(0.2)
            chk.verify(c, resolve=False)
        finally:
            c.close()
        d.stop()
        self.ivf_done = getattr(self, "ivf_done", []) + [chk]
        if not self.args.keep:
            shutil.rmtree(d.tmp, ignore_errors=True)

    def round_delfilter(self):
        """A fresh store, a delete by filter of DELF_MATCH documents killed after a chunk."""
        n = self.kills.get("delfilter", {"hit": 0, "missed": 0})
        d, _, chk = self.new_store("delf-%d" % (n["hit"] + n["missed"]))
        self.current = d
        self.restarts.append(d.start())
        dim = 384
        ids = ["f%05d" % i for i in range(DELF_DOCS)]
        tagged = set(self.rng.sample(range(DELF_DOCS), DELF_MATCH))
        c = h.Client(d.url, timeout_ms=120000)
        try:
            for at in range(0, DELF_DOCS, 500):
                docs = [{"id": ids[i], "text": "t%d" % i,
                         "metadata": {"tag": "x" if i in tagged else "y", "i": i},
                         "vector": [1.0 if k == i % dim else 0.0 for k in range(dim)]}
                        for i in range(at, at + 500)]
                check(c.call("add", documents=docs).get("ok"), "delfilter: add failed")
        finally:
            c.close()
        order = [ids[i] for i in sorted(tagged)]  # the tagged ids in add (= label) order
        req = {"v": 1, "op": "delete", "req_id": "wipe-x", "filter": {"tag": "x"}}
        d.arm(DELF_MARKER[0], self.rng.uniform(*DELF_MARKER[1]))
        side = self.side_op(d, req)
        if not d.killed.wait(60):
            d.disarm()
            d.kill("delete by filter not reached in 60 s")
        side.join(30)
        if side.error:
            raise side.error
        d.wait_dead()
        # hit: the kill came before the delete's reply (the retry then deletes the rest)
        self.note_kill("delfilter", side.reply is None, d)
        self.restarts.append(d.start())
        c = h.Client(d.url, timeout_ms=120000)
        try:
            found = chk.get_all(c, ids)
            gone = [i for i in order if i not in found]
            untagged = [ids[i] for i in range(DELF_DOCS) if i not in tagged]
            check(all(i in found for i in untagged), "delfilter: an untagged document was lost")
            check(gone == order[:len(gone)] and (len(gone) % DELF_CHUNK == 0 or
                                                  len(gone) == len(order)),
                  "delfilter: %d tagged documents deleted, not whole chunks of %d in label order"
                  % (len(gone), DELF_CHUNK))
            self.outcomes_delf = getattr(self, "outcomes_delf", []) + [len(gone) // DELF_CHUNK]
            for i, doc in found.items():
                check(doc["metadata"]["tag"] == ("x" if int(i[1:]) in tagged else "y"),
                      "delfilter: %s changed" % i)
            self.store_agrees(c, set(found))
            r = c.call("delete", **{k: v for k, v in req.items() if k not in ("v", "op")})
            check(r.get("ok"), "delfilter: the retry failed: %r" % r)
            if side.reply is None:
                check(r["deleted"] == len(order) - len(gone),
                      "delfilter: the retry deleted %d, %d remained" % (r["deleted"],
                                                                        len(order) - len(gone)))
            else:
                check(r == side.reply, "delfilter: a retry of a finished delete got %r, the "
                      "first reply was %r" % (r, side.reply))
            self.store_agrees(c, set(untagged))
            self.ops_checked += 1
        finally:
            c.close()
        check(d.stop() == 0, "delfilter: sbertd exit status at SIGTERM")
        if not self.args.keep:
            shutil.rmtree(d.tmp, ignore_errors=True)

    def round_bigdoc(self):
        """A fresh store, a multi-megabyte document's add killed during its encode or commit."""
        n = self.kills.get("bigdoc", {"hit": 0, "missed": 0})
        d, _, chk = self.new_store("big-%d" % (n["hit"] + n["missed"]), BIG_CONF)
        self.current = d
        self.restarts.append(d.start())
        small = {"b%d" % i: "short note %d about %s" % (i, self.rng.choice(WORDS))
                 for i in range(BIG_SMALL)}
        c = h.Client(d.url, timeout_ms=120000)
        try:
            check(c.call("add", documents=[{"id": k, "text": t} for k, t in small.items()])
                  .get("ok"), "bigdoc: add of the short documents failed")
        finally:
            c.close()
        tag = self.rng.randint(0, 10**6)
        end = "The last line names the zebra quartz lantern %d." % tag
        parts, size = [], 0
        while size < BIG_BYTES:
            sent = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(5, 14)))
            pad = (" " * 79 + "\n") * self.rng.randint(20, 30)
            parts.append(sent.capitalize() + "." + pad)
            size += len(parts[-1].encode()) + 1
        big = " ".join(parts) + " " + end
        req = {"v": 1, "op": "add", "req_id": "big-%d" % tag,
               "documents": [{"id": "big", "text": big, "metadata": {"tag": tag}}]}
        if self.rng.random() < 0.5:
            d.arm("index: commit: ", self.rng.uniform(0.0, 0.1))
            how = "commit"
        else:
            t = self.rng.uniform(0.2, 6.0)
            threading.Timer(t, d.kill, args=("bigdoc: %.0f ms after the send" % (t * 1000),)
                            ).start()
            how = "timer"
        side = self.side_op(d, req)
        if not d.killed.wait(600):
            d.disarm()
            d.kill("bigdoc: the add's commit not reached in 600 s")
        side.join(60)
        if side.error:
            raise side.error
        d.wait_dead()
        self.note_kill("bigdoc", side.reply is None, d)
        self.restarts.append(d.start())
        c = h.Client(d.url, timeout_ms=300000, rcvmax=64 << 20)
        try:
            got = c.call("get", ids=["big"] + sorted(small), include=["text", "metadata"])
            check(got.get("ok"), "bigdoc: get: %r" % {k: v for k, v in got.items()
                                                      if k != "documents"})
            docs = got["documents"]
            check(all(x["found"] and x["text"] == small[x["id"]] for x in docs[1:]),
                  "bigdoc: a short document changed or was lost")
            st = c.call("stats")
            check(st["index"]["count"] == st["passages"],
                  "bigdoc: vector index %d entries, store %d passages" % (st["index"]["count"],
                                                                          st["passages"]))
            if docs[0]["found"]:
                check(docs[0]["text"] == big and docs[0]["metadata"] == {"tag": tag},
                      "bigdoc: the document is there but not whole (%d of %d bytes)" % (
                          len(docs[0]["text"].encode()), len(big.encode())))
                check(st["documents"] == BIG_SMALL + 1 and st["passages"] >= BIG_SMALL + 10,
                      "bigdoc: %d documents of %d passages" % (st["documents"], st["passages"]))
                # its best passage for the last line's words is the last passage
                q = c.call("query", text=end, k=1, include=[], filter={"tag": tag})
                check(q.get("ok") and q["results"] and q["results"][0]["id"] == "big" and
                      end in q["results"][0]["passage"]["text"],
                      "bigdoc: the document's last passage is not found: %r" % q)
                outcome = "whole"
            else:
                check(st["documents"] == BIG_SMALL and st["passages"] == BIG_SMALL,
                      "bigdoc: absent, yet %d documents of %d passages" % (st["documents"],
                                                                           st["passages"]))
                outcome = "absent"
            check(side.reply is None or side.reply.get("ok") is (outcome == "whole"),
                  "bigdoc: acknowledged %r, found %s" % (side.reply, outcome))
            self.outcomes_big = getattr(self, "outcomes_big", []) + ["%s/%s" % (how, outcome)]
            self.ops_checked += 1
        finally:
            c.close()
        check(d.stop() == 0, "bigdoc: sbertd exit status at SIGTERM")
        if not self.args.keep:
            shutil.rmtree(d.tmp, ignore_errors=True)

    @staticmethod
    def store_agrees(c, live):
        """The store holds exactly live, and so does the vector index (a query for k = all)."""
        st = c.call("stats")
        check(st["documents"] == len(live) and st["index"]["count"] == len(live) and
              st["passages"] == len(live),
              "store %d documents (%d passages), vector index %d, expected %d" % (
                  st["documents"], st["passages"], st["index"]["count"], len(live)))
        got = set()
        for k in range(384):
            q = c.call("query", vector=[1.0 if j == k else 0.0 for j in range(384)],
                       k=min(10000, len(live)) or 1, min_score=0.5, include=[])
            check(q.get("ok"), "query: %r" % q)
            got.update(x["id"] for x in q["results"])
        check(got == live, "the vector index: missing %r, extra %r" % (
            sorted(live - got)[:5], sorted(got - live)[:5]))

    def run(self, phases):
        t0 = time.time()
        for i, phase in enumerate(phases):
            self.round(phase)
            print("kill %d/%d: %-8s ok (%s)" % (i + 1, len(phases), phase,
                                                 self.last), flush=True)
            if self.args.check_leftovers and self.tmp_seen >= 2:
                break  # two kills inside a snapshot write were checked: enough
        if self.args.check_leftovers and self.tmp_seen == 0 and self.main:
            self.plant_leftover()
        if self.args.check_leftovers:
            check(self.tmp_seen > 0, "no kill of %d landed inside a snapshot write: nothing was "
                  "checked" % len(phases))
        for d, _, chk in self.persist.values():
            self.current = d
            c = h.Client(d.url, timeout_ms=120000)
            try:
                chk.verify(c, resolve=False)  # once more, after the last restart settled
            finally:
                c.close()
            rc = d.stop()
            check(rc == 0, "sbertd exited with %d at SIGTERM" % rc)
        return time.time() - t0

    def log_count(self, what):
        return (self.main[0].log_tail(10**7) if self.main else "").count(what)

    def kernel(self):
        d = self.main[0] if self.main else self.current
        for line in (d.log_tail(10**6) if d else "").splitlines():
            if "OpenBLAS core " in line:
                return line.split("OpenBLAS core ")[1].strip()
        return "?"

    def report(self, wall, failed=None):
        checkers = [p[2] for p in self.persist.values()] + getattr(self, "ivf_done", [])
        acked = sum(m.acked for c in checkers for m in c.ms)
        live = sum(len(m.docs) for c in checkers for m in c.ms)
        lines = ["", "crash soak report (seed %d, %s)" % (self.args.seed, time.strftime("%F %T")),
                 "%-10s %5s %7s  %s" % ("phase", "kills", "missed",
                                        "in-flight write after restart (per writer)")]
        for p in PHASES:
            if p not in self.kills:
                continue
            k = self.kills[p]
            outc = {}
            for c in checkers:
                for o, n in c.outcomes.get(p, {}).items():
                    outc[o] = outc.get(o, 0) + n
            lines.append("%-10s %5d %7d  %s" % (p, k["hit"] + k["missed"], k["missed"],
                                               ", ".join("%s %d" % kv
                                                         for kv in sorted(outc.items()))))
        total = sum(k["hit"] + k["missed"] for k in self.kills.values())
        rs = sorted(self.restarts)
        lines += [
            "kills: %d   stores: %d   acknowledged write requests: %d   live documents at end: %d"
            % (total, self.stores, acked, live),
            "document checks (text, metadata, vector, index membership) after restarts: %d"
            % sum(c.docs_checked for c in checkers),
            ("FAILED: %s" % failed) if failed else
            "losses: 0   half batches: 0   index/store mismatches: 0   (checked after each restart)",
            "requests in flight at a kill resent with their req_id after the restart: %d (each "
            "answered as its first execution)" % sum(m.retried for c in checkers for m in c.ms),
            "backups opened as stores after a kill during backup, delete-by-filter rounds "
            "checked: %d" % self.ops_checked,
            "delete by filter: whole chunks applied when killed: %r" % getattr(
                self, "outcomes_delf", []),
            "multi-megabyte document (kill / found after restart): %r" % getattr(
                self, "outcomes_big", []),
            "snapshot temporaries left by kills: %d (planted: %d), still present after the "
            "restart: %d" % (self.tmp_seen, self.tmp_planted, self.tmp_kept),
            "vectors: max |diff| across restarts %.3g (must be 0), vs encode(text) %.3g (tol %g)"
            % (max([c.max_diff_exact for c in checkers] or [0]),
               max([c.max_diff_encode for c in checkers] or [0]), VEC_TOL),
            "restart to health: n %d  p50 %.2f s  max %.2f s" % (
                len(rs), statistics.median(rs) if rs else 0, rs[-1] if rs else 0),
            "LMDB map growths (from 1 MiB), main store: %d" % self.log_count("grown to"),
            "wall %.0f s   OpenBLAS kernel: %s" % (wall, self.kernel())]
        return "\n".join(lines)


def selftest(args):
    """The checker must catch each fault injected behind the model's back: a lost document, a
    half-applied batch, changed metadata, a changed vector, a document nobody acknowledged."""
    s = Soak(args)
    d, ms, chk = s.new_store("selftest")
    m = ms[0]
    s.persist["main"] = (d, ms, chk)
    s.restarts.append(d.start())
    s.round("random")
    c = h.Client(d.url, timeout_ms=120000)
    caught = []

    def expect_failure(name, words):
        try:
            chk.verify(c, resolve=False)
        except Failure as e:
            check(words in str(e), "%s: caught, but as %r" % (name, str(e)))
            caught.append(name)
            return
        raise Failure("the checker missed an injected fault: %s" % name)

    def call(op, **kw):
        r = c.call(op, **kw)
        check(r.get("ok"), "%s: %r" % (op, r))
        return r

    try:
        chk.verify(c, resolve=False)  # every vector known, the retried request's included
        check(len(m.docs) >= 4, "too few documents for the self-test")
        ids = sorted(m.docs)
        victim = ids[0]
        call("delete", ids=[victim])
        expect_failure("lost document", "store differs")
        m.docs.pop(victim)

        op = m.next_op()
        while op["op"] != "add" or len(op["documents"]) < 2:
            op = m.next_op()
        m.pending = op
        call("add", documents=op["documents"][:1])
        try:
            chk.verify(c, phase="selftest")
            raise Failure("the checker missed an injected fault: half batch")
        except Failure as e:
            check("neither fully applied nor absent" in str(e), "half batch caught as %r" % e)
            caught.append("half batch")
        m.pending = None
        m.docs = Model.applied(m.docs, {"op": "add", "documents": op["documents"][:1]})
        m.vecs.pop(op["documents"][0]["id"], None)

        other = ids[1]
        text, meta = m.docs[other]
        call("add", documents=[{"id": other, "text": text, "metadata": dict(meta, tag="zz")}])
        expect_failure("changed metadata", "store differs")
        m.docs[other] = (text, dict(meta, tag="zz"))
        m.vecs.pop(other, None)  # re-encoded alone: equal to encode(text), not to the old bits

        third = ids[2]
        m.vecs[third] = [x + 1e-6 for x in m.vecs[third]]
        expect_failure("changed vector", "vector changed across the restart")
        m.vecs.pop(third)

        call("add", documents=[{"id": "stranger", "text": "nobody acknowledged me"}])
        expect_failure("unacknowledged document", "stats.documents")
        call("delete", ids=["stranger"])

        chk.verify(c, resolve=False)  # repaired: passes again
    finally:
        c.close()
        d.stop()
    print("self-test: the checker caught %s" % ", ".join(caught))
    if not args.keep:
        shutil.rmtree(s.work, ignore_errors=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--phases", default="encode,commit,snapshot,random")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--writers", type=int, default=2,
                    help="concurrent writers on disjoint ids (sbertd groups concurrent adds into "
                         "one encode, then one transaction each)")
    ap.add_argument("--workdir")
    ap.add_argument("--keep", action="store_true", help="keep the data directories")
    ap.add_argument("--check-leftovers", action="store_true",
                    help="fail when a restart keeps the snapshot temporaries a kill left behind")
    ap.add_argument("--selftest", action="store_true",
                    help="inject faults behind the checker's back and require it to catch each")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randint(0, 2**31)
    phases = args.phases.split(",")
    for p in phases:
        if p not in PHASES:
            ap.error("unknown phase %r (known: %s)" % (p, ",".join(PHASES)))
    if not os.path.isdir(args.model):
        ap.error("model directory %s missing" % args.model)
    if args.selftest:
        try:
            return selftest(args)
        except Failure as e:
            print("FAIL: %s" % e)
            return 1
    s = Soak(args)
    rng = random.Random(args.seed ^ 0x5eed)
    order = [phases[i % len(phases)] for i in range(args.kills)]
    if len(phases) > 1:
        rng.shuffle(order)
    wall_t0 = time.time()
    try:
        wall = s.run(order)
    except Failure as e:
        d = s.current
        print("FAIL: %s" % e, flush=True)
        print("seed %d; data kept in %s" % (args.seed, s.work))
        if d:
            print("last kill: %s\n---- log tail\n%s" % (d.kill_note, d.log_tail()))
        print(s.report(time.time() - wall_t0, failed=str(e)[:200]))
        for p in s.persist.values():
            if p[0].proc.poll() is None:
                p[0].proc.kill()
        return 1
    print(s.report(wall))
    if not args.keep:
        shutil.rmtree(s.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
