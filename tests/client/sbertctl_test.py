#!/usr/bin/env python3
"""Integration tests of sbertctl against a real sbertd (standard library only).

  sbertctl_test.py offline --sbertctl PATH [--optable PATH]
      usage errors (exit 2) and an unreachable daemon (exit 3); needs no daemon and no model.
      With --optable (tests/proto's optable_test), every subcommand's request, caught by a fake
      daemon, is checked against proto/'s op table.
  sbertctl_test.py daemon --sbertctl PATH --sbertd PATH --model DIR --shared DIR
      starts sbertd on a temporary data directory and ipc socket and drives every subcommand
      through sbertctl, including the seed article's two examples.

Every check raises on failure; the process exits non-zero when any check failed.
"""
import argparse
import ctypes
import json
import math
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "proto"))
import sbertd_harness  # noqa: E402  (the raw nanomsg client)
import optable_doc  # noqa: E402  (the op table's JSON types)

# The seed article's eight sentences and the ten pairs it prints (all-MiniLM-L6-v2, scores to
# four decimals): /work/shared/seeds/000_b0c12c129953b08e.txt, second example.
SEED_SENTENCES = [
    "The cat sits outside",
    "A man is playing guitar",
    "I love pasta",
    "The new movie is awesome",
    "The cat plays in the garden",
    "A woman watches TV",
    "The new movie is so great",
    "Do you like pizza?",
]
SEED_PAIRS = [
    ("The new movie is awesome", "The new movie is so great", 0.8939),
    ("The cat sits outside", "The cat plays in the garden", 0.6788),
    ("I love pasta", "Do you like pizza?", 0.5096),
    ("I love pasta", "The new movie is so great", 0.2560),
    ("I love pasta", "The new movie is awesome", 0.2440),
    ("A man is playing guitar", "The cat plays in the garden", 0.2105),
    ("The new movie is awesome", "Do you like pizza?", 0.1969),
    ("The new movie is so great", "Do you like pizza?", 0.1692),
    ("The cat sits outside", "A woman watches TV", 0.1310),
    ("The cat plays in the garden", "Do you like pizza?", 0.0900),
]
TOL = 1e-4

failures = []


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Ctl:
    def __init__(self, exe, socket_url=None, env=None):
        self.exe = exe
        self.socket_url = socket_url
        self.env = dict(os.environ if env is None else env)
        self.env.pop("SBERTD_SOCKET", None)
        self.env.pop("SBERTD_TOKEN", None)

    def run(self, *args, stdin=None, socket_url=None, expect=0, timeout=300):
        cmd = [self.exe]
        url = socket_url or self.socket_url
        if url:
            cmd += ["--socket", url]
        cmd += list(args)
        p = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=self.env,
                           timeout=timeout)
        if expect is not None and p.returncode != expect:
            raise AssertionError("%s: exit %d, expected %d\nstdout: %s\nstderr: %s" % (
                " ".join(cmd), p.returncode, expect, p.stdout[-2000:], p.stderr[-2000:]))
        return p

    def json(self, *args, **kw):
        p = self.run("--json", *args, **kw)
        try:
            return json.loads(p.stdout)
        except ValueError:
            raise AssertionError("%s: stdout is not one JSON document: %r" % (args, p.stdout))


def table_rows(text):
    """Rows of an sbertctl table (header dropped), cells split on runs of two or more spaces."""
    lines = [l for l in text.splitlines() if l.strip()]
    return [re.split(r"\s{2,}", l.strip()) for l in lines[1:]]


def same_pair(a, b, x, y):
    return (a, b) == (x, y) or (a, b) == (y, x)


def check_seed_pairs(got, where):
    """got: [(a, b, score)] in sbertctl's order. The pairs, their order and scores must match."""
    check(len(got) == 10, "%s: %d pairs, expected 10: %r" % (where, len(got), got))
    for i, ((a, b, s), (ea, eb, es)) in enumerate(zip(got, SEED_PAIRS)):
        check(same_pair(a, b, ea, eb),
              "%s: pair %d is (%s | %s), expected (%s | %s)" % (where, i + 1, a, b, ea, eb))
        check(abs(s - es) <= TOL + 5e-9,
              "%s: pair %d (%s | %s) score %.6f, expected %.4f" % (where, i + 1, a, b, s, es))


def check_pairs_output(ctl, args, where):
    # The table: A, B, SCORE with four decimals.
    p = ctl.run("pairs", "-n", "10", *args)
    rows = table_rows(p.stdout)
    header = p.stdout.splitlines()[0].split()
    check(header == ["A", "B", "SCORE"], "%s: table header %r" % (where, header))
    for r in rows:
        check(len(r) == 3 and re.fullmatch(r"-?\d\.\d{4}", r[2]),
              "%s: row %r is not A, B, a four-decimal score" % (where, r))
    check_seed_pairs([(r[0], r[1], float(r[2])) for r in rows], where + " (table)")
    # --json: {"pairs":[{"a":{"id","text"},"b":{"id","text"},"score"}]}
    doc = ctl.json("pairs", "-n", "10", *args)
    check(set(doc) == {"pairs"}, "%s: --json keys %r" % (where, list(doc)))
    got = []
    for pr in doc["pairs"]:
        check(set(pr) == {"a", "b", "score"}, "%s: pair keys %r" % (where, list(pr)))
        for side in ("a", "b"):
            check(set(pr[side]) == {"id", "text"}, "%s: side keys %r" % (where, pr[side]))
        got.append((pr["a"]["text"], pr["b"]["text"], pr["score"]))
    check_seed_pairs(got, where + " (--json)")
    return doc


# ---- offline ----------------------------------------------------------------------------------

class FakeDaemon:
    """A REP socket on url that keeps every request it receives and answers each with an
    `internal` error, so that sbertctl sends one request and exits 1."""
    NN_REP = 3 * 16 + 1
    REPLY = b'{"v":1,"ok":false,"error":{"code":"internal","message":"fake daemon"}}'

    def __init__(self, url):
        lib = sbertd_harness._lib
        lib.nn_bind.argtypes = [ctypes.c_int, ctypes.c_char_p]
        self.lib, self.requests, self.stop = lib, [], False
        self.sock = lib.nn_socket(sbertd_harness.AF_SP, self.NN_REP)
        v = ctypes.c_int(100)
        assert lib.nn_setsockopt(self.sock, sbertd_harness.NN_SOL_SOCKET,
                                 sbertd_harness.NN_RCVTIMEO, ctypes.byref(v), 4) == 0
        assert lib.nn_bind(self.sock, url.encode()) >= 0, "nn_bind %s failed" % url
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stop:
            p = ctypes.c_void_p()
            n = self.lib.nn_recv(self.sock, ctypes.byref(p), sbertd_harness.NN_MSG, 0)
            if n < 0:
                continue
            self.requests.append(ctypes.string_at(p, n))
            self.lib.nn_freemsg(p)
            buf = ctypes.create_string_buffer(self.REPLY, len(self.REPLY))
            self.lib.nn_send(self.sock, buf, len(self.REPLY), 0)

    def close(self):
        self.stop = True
        self.thread.join()
        self.lib.nn_close(self.sock)


# One invocation per subcommand (and per request shape), each sending one request.
REQUEST_CASES = [
    ["add", "a text", "another"], ["add", "-m", '{"lang":"en"}', "a text"],
    ["query", "x"], ["query", "-k", "3", "--min-score", "0.2", "--filter", '{"a":1}', "x"],
    ["get", "id1"], ["delete", "id1", "id2"], ["similarity", "a", "b"], ["encode", "a", "b"],
    ["pairs"], ["pairs", "-n", "2", "--min-score", "0.1", "a", "b"], ["stats"], ["health"],
    ["backup", "/tmp/sbertctl-test-backup"], ["reindex"],
    ["delete", "--filter", '{"src":"x"}'], ["list"],
    ["list", "--filter", '{"a":1}', "--limit", "5", "--cursor", "AWNhdA"], ["count"],
    ["count", "--filter", '{"a":1}'], ["patch", "id1", "k=3", "--unset", "a,b"],
    ["patch", "id1", "--set", '{"x":[1]}'],
    ["-c", "papers", "query", "x"], ["--collection", "papers", "add", "a text"],
    ["collection", "create", "papers", "--index", "HNSW32,Flat", "--ef-search", "64"],
    ["collection", "list"], ["collection", "describe", "papers"],
    ["collection", "drop", "papers"],
]


def request_op(args):
    """The op that REQUEST_CASES' args send: the command's, or collection's sub-command's."""
    while args[0].startswith("-"):
        args = args[2:]  # a common option and its value
    if args[0] == "collection":
        return args[1] + "_collection" if args[1] != "list" else "list_collections"
    return args[0]


def offline_tests(ctl, tmp, optable=None):
    def t_usage():
        for args in (["bogus"], ["query"], ["query", "-k", "0", "x"], ["query", "-k", "x", "y"],
                     ["similarity", "one"], ["get"], ["delete"], ["add"],
                     ["add", "--format", "xml", "--file", "x"], ["add", "--nope", "x"],
                     ["add", "--file", "x.csv"], ["pairs", "only-one"],
                     ["query", "--min-score", "abc", "x"], ["health", "extra"],
                     ["--timeout", "0", "health"], ["query", "--filter", "{bad", "x"],
                     ["query", "--file", "q.txt", "x"],
                     ["delete", "a", "--filter", '{"k":1}'], ["delete", "--filter", "{bad"],
                     ["list", "--limit", "0"], ["list", "extra"], ["count", "--filter", "{"],
                     ["patch", "id1"], ["patch", "id1", "novalue"], ["patch", "id1", "--set", "[1]"],
                     ["patch"], ["sync"], ["sync", "a", "b"], ["index"]):
            p = ctl.run(*args, socket_url="ipc://" + os.path.join(tmp, "none.sock"), expect=2)
            check("usage" in p.stderr or "sbertctl:" in p.stderr,
                  "%r: no usage message: %r" % (args, p.stderr))
        p = ctl.run("--help")
        check("query" in p.stdout and "Exit status" in p.stdout, "--help lists commands")
        for cmd in ("add", "query", "get", "delete", "similarity", "encode", "pairs", "stats",
                    "health", "backup", "reindex", "list", "count", "patch", "index", "sync",
                    "collection"):
            p = ctl.run(cmd, "--help")
            check(p.stdout.startswith("usage: sbertctl " + cmd), "%s --help" % cmd)
        p = ctl.run("--version")
        check(p.stdout.startswith("sbertctl "), "--version")

    def t_unreachable():
        missing = "ipc://" + os.path.join(tmp, "missing.sock")
        p = ctl.run("health", socket_url=missing, expect=3)
        check(missing in p.stderr, "exit 3 message names the endpoint: %r" % p.stderr)
        # A socket file nobody listens on (a daemon that died): refused at once, exit 3.
        stale = os.path.join(tmp, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)
        s.close()
        # Told apart by the message, not by how long it took: a connect refused, not "no reply
        # from sbertd ... within" (the reply timeout).
        p = ctl.run("query", "x", socket_url="ipc://" + stale, expect=3)
        check("refused" in p.stderr and "no reply" not in p.stderr,
              "stale socket: refused at connect, not a reply timeout: %r" % p.stderr)
        # A tcp port with no listener.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        ctl.run("stats", socket_url="tcp://127.0.0.1:%d" % port, expect=3)
        # Something that accepts but never answers: the reply timeout, exit 3 naming it.
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mute = os.path.join(tmp, "mute.sock")
        srv.bind(mute)
        srv.listen(4)
        try:
            p = ctl.run("--timeout", "1", "health", socket_url="ipc://" + mute, expect=3)
            check("ipc://" + mute in p.stderr and "reply" in p.stderr,
                  "timeout message names the endpoint: %r" % p.stderr)
        finally:
            srv.close()
        # SBERTD_SOCKET is honoured.
        env = dict(ctl.env, SBERTD_SOCKET=missing)
        p = subprocess.run([ctl.exe, "health"], env=env, capture_output=True, text=True)
        check(p.returncode == 3 and missing in p.stderr, "SBERTD_SOCKET: %r" % p.stderr)

    def t_bad_file():
        # An input file that cannot be read is exit 1, named, before the daemon is contacted.
        missing = os.path.join(tmp, "no-such-file.txt")
        p = ctl.run("add", "--file", missing, socket_url="ipc://" + os.path.join(tmp, "m.sock"),
                    expect=1)
        check(missing in p.stderr, "missing file named: %r" % p.stderr)

    def t_requests_follow_optable():
        # What every subcommand sends, as a fake daemon receives it, against proto/'s op table
        # (optable_test --json): the op named like the command, only members the op (or section
        # 2) defines, each of its type, the required ones and one of each group present, and a
        # req_id on exactly the ops that write (so that a re-sent write is applied once).
        table = json.loads(subprocess.run([optable, "--json"], check=True, capture_output=True,
                                          text=True).stdout)
        ops = {o["name"]: o for o in table["ops"]}
        env = {m["name"]: m for m in table["envelope"]}
        url = "ipc://" + os.path.join(tmp, "fake.sock")
        fake = FakeDaemon(url)
        seen = set()
        try:
            for args in REQUEST_CASES:
                before = len(fake.requests)
                p = ctl.run("--token", "tok", *args, socket_url=url, expect=1)
                check("fake daemon" in p.stderr, "%r: the fake daemon's error: %r" % (args, p.stderr))
                check(len(fake.requests) == before + 1, "%r: one request" % args)
                req = json.loads(fake.requests[-1].rstrip(b"\0"))
                op = ops.get(req.get("op"))
                check(op is not None and req["op"] == request_op(args),
                      "%r sent op %r" % (args, req.get("op")))
                check(req.get("collection") == ("papers" if "papers" in args[:2] else None),
                      "%r: collection %r" % (args, req.get("collection")))
                seen.add(op["name"])
                defined = dict(env, **{m["name"]: m for m in op["members"]})
                for k, v in req.items():
                    check(k in defined, "%r: member %r is not in the op table" % (args, k))
                    check(optable_doc.type_ok(defined[k]["type"], v),
                          "%r: %s=%r is not of type %s" % (args, k, v, defined[k]["type"]))
                for m in defined.values():
                    check(not m["required"] or m["name"] in req,
                          "%r: required member %r missing" % (args, m["name"]))
                for g in {m["one_of"] for m in op["members"] if m["one_of"]}:
                    have = [m["name"] for m in op["members"] if m["one_of"] == g and m["name"] in req]
                    check(len(have) == 1, "%r: one of a group: %r" % (args, have))
                check(req.get("v") == 1 and req.get("token") == "tok", "%r: v and token" % args)
                check(("req_id" in req) == bool(op["writes"]),
                      "%r: req_id %s on an op that %s" % (args, "present" if "req_id" in req else
                                                          "absent", "writes" if op["writes"] else
                                                          "does not write"))
        finally:
            fake.close()
        check(seen == set(ops), "subcommands send every op: missing %s" % sorted(set(ops) - seen))

    tests = [t_usage, t_unreachable, t_bad_file]
    if optable:
        tests.append(t_requests_follow_optable)
    return tests


# ---- with a daemon ----------------------------------------------------------------------------

class Daemon:
    def __init__(self, exe, model, data, url, log):
        self.cmd = [exe, "--model", model, "--data", data, "--listen", url]
        self.data = data
        self.url = url
        self.log = log
        self.proc = None

    def start(self, ctl, wait_s=180, extra=(), token=None):
        self.logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.cmd + list(extra), stdout=self.logf,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("sbertd exited with %d during start-up; log:\n%s" % (
                    self.proc.returncode, self.tail()))
            p = ctl.run("--timeout", "5", *(["--token", token] if token else []), "health",
                        expect=None)
            if p.returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError("sbertd did not answer health within %d s; log:\n%s" % (
            wait_s, self.tail()))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("sbertd did not stop within 60 s of SIGTERM")
            check(rc == 0, "sbertd exited %d after SIGTERM; log:\n%s" % (rc, self.tail()))
        if self.proc:
            self.logf.close()
        self.proc = None

    def tail(self):
        try:
            with open(self.log, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""


def daemon_tests(ctl, daemon, tmp):
    state = {}

    def t_health_stats():
        ctl.run("health")
        st = ctl.json("stats")
        check(isinstance(st, dict) and "v" not in st and "ok" not in st,
              "stats --json is the daemon's object: %r" % st)
        p = ctl.run("stats")
        check(len(table_rows(p.stdout)) >= 3, "stats table: %r" % p.stdout)

    def t_seed_add_and_pairs():
        doc = ctl.json("add", *SEED_SENTENCES)
        check(set(doc) == {"ids"} and len(doc["ids"]) == 8 and len(set(doc["ids"])) == 8,
              "add --json: %r" % doc)
        state["seed_ids"] = dict(zip(SEED_SENTENCES, doc["ids"]))
        d = check_pairs_output(ctl, [], "pairs in the collection")
        for pr in d["pairs"]:
            for side in ("a", "b"):
                check(pr[side]["id"] == state["seed_ids"][pr[side]["text"]],
                      "collection pair ids match the added ids: %r" % pr)

    def t_pairs_given_texts():
        d = check_pairs_output(ctl, SEED_SENTENCES, "pairs of given texts")
        # --min-score keeps the pairs at or above it.
        d = ctl.json("pairs", "--min-score", "0.5", *SEED_SENTENCES)
        scores = sorted((p["score"] for p in d["pairs"]), reverse=True)
        check(len(scores) == 3 and abs(scores[2] - 0.5096) <= TOL,
              "pairs --min-score 0.5: %r" % scores)

    def t_similarity():
        p = ctl.run("similarity", "The new movie is awesome", "The new movie is so great")
        check(re.fullmatch(r"0\.\d{4}\n", p.stdout) and abs(float(p.stdout) - 0.8939) <= TOL,
              "similarity table output %r" % p.stdout)
        d = ctl.json("similarity", "I love pasta", "Do you like pizza?")
        check(set(d) == {"score"} and abs(d["score"] - 0.5096) <= TOL, "similarity --json %r" % d)

    def t_encode():
        # The seed's first example: two sentences to vectors.
        texts = ["The quick brown fox jumps over the lazy dog",
                 "Dogs are a popular household pet around the world"]
        d = ctl.json("encode", *texts)
        e = d["embeddings"]
        check(set(d) == {"embeddings"} and len(e) == 2 and all(len(v) == 384 for v in e),
              "encode --json shape")
        for v in e:
            check(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4, "embeddings are unit length")
        cos = sum(x * y for x, y in zip(*e))
        s = ctl.json("similarity", *texts)["score"]
        check(abs(cos - s) < 1e-4, "encode's cosine %.6f vs similarity %.6f" % (cos, s))
        p = ctl.run("encode", *texts)
        check(p.stdout.startswith(texts[0] + "  (384 dimensions)\n["), "encode table %r" %
              p.stdout[:120])
        nums = re.findall(r"-?\d+\.\d+", p.stdout.split("\n", 1)[1].split("]")[0])
        check(len(nums) == 384 and abs(float(nums[0]) - e[0][0]) < 1e-7,
              "encode prints all 384 numbers of the first vector")
        # A reply over nanomsg's 1 MiB default NN_RCVMAXSIZE (which would drop it silently and
        # leave the client waiting) arrives whole: 400 vectors are about 1.7 MB of JSON.
        many = ["short text number %d" % i for i in range(400)]
        p = ctl.run("--json", "encode", *many)
        check(len(p.stdout) > (1 << 20), "the encode reply is over 1 MiB (%d bytes)" % len(p.stdout))
        check(len(json.loads(p.stdout)["embeddings"]) == 400, "400 embeddings")

    def t_query():
        d = ctl.json("query", "-k", "3", "A film that is really good")
        r = d["results"]
        check(set(d) == {"results"} and len(r) == 3, "query --json: %r" % d)
        for x in r:
            check(set(x) == {"id", "score", "text", "metadata", "passage"}, "result keys %r" % list(x))
            # a sentence is one passage: its whole text
            check(x["passage"]["text"] == x["text"] and x["passage"]["start"] == 0,
                  "passage %r" % x["passage"])
        check({r[0]["text"], r[1]["text"]} == {"The new movie is awesome",
                                               "The new movie is so great"},
              "the movie sentences rank first: %r" % r)
        check(r[0]["score"] >= r[1]["score"] >= r[2]["score"], "scores descend")
        p = ctl.run("query", "-k", "2", "A film that is really good")
        rows = table_rows(p.stdout)
        check(len(rows) == 2 and re.fullmatch(r"0\.\d{4}", rows[0][0]) and
              rows[0][1] == r[0]["id"] and rows[0][2] == r[0]["text"],
              "query table: %r" % p.stdout)
        d = ctl.json("query", "--min-score", "0.5", "-k", "8", "A film that is really good")
        check(all(x["score"] >= 0.5 for x in d["results"]) and len(d["results"]) < 8,
              "query --min-score: %r" % d)

    def t_query_modes():
        # --mode keyword ranks by BM25: "pizza" is a word of one seed sentence only; hybrid
        # fuses; --json hits carry both scores and ranks; --diversity reorders, never fails
        d = ctl.json("query", "--mode", "keyword", "-k", "3", "pizza")
        r = d["results"]
        check(len(r) == 1 and r[0]["text"] == "Do you like pizza?" and r[0]["keyword_rank"] == 1
              and r[0]["dense_score"] is None and r[0]["keyword_score"] > 0, "query --mode keyword: %r" % d)
        d = ctl.json("query", "-m", "hybrid", "-k", "2", "A film that is really good")
        check(all({"dense_score", "keyword_score", "dense_rank", "keyword_rank"} <= set(x)
                  for x in d["results"]) and d["results"][0]["text"].startswith("The new movie"),
              "query --mode hybrid: %r" % d)
        d = ctl.json("query", "--mode", "hybrid", "--fusion", "weighted", "--weight", "1", "-k", "2",
                     "A film that is really good")
        check(len(d["results"]) == 2, "weighted fusion: %r" % d)
        d = ctl.json("query", "--diversity", "0.9", "-k", "2", "A film that is really good")
        ids = [x["text"] for x in d["results"]]
        check(len(ids) == 2 and not (ids[0].startswith("The new movie") and ids[1].startswith("The new movie")),
              "--diversity 0.9 keeps one of the two movie sentences: %r" % ids)
        p = ctl.run("query", "--mode", "sparse", "x", expect=1)
        check("mode" in p.stderr, "a bad mode is the daemon's error: %r" % p.stderr)

    def t_query_file():
        # query --file: one query a line (a blank line skipped), answered in input order, each
        # as the single query; with max_batch = 5 and max_reply_bytes = 4096 the 12 queries go
        # in batches of 5, 5 and 2, and a batch whose reply is too large is sent again in halves.
        texts = ["A film that is really good", "pasta and pizza", "a pet outdoors",
                 "someone playing music", "television", "the garden", "a great movie",
                 "food", "guitar", "cats", "watching TV", "Italian cooking"]
        path = os.path.join(tmp, "queries.txt")
        with open(path, "w") as f:
            f.write("\n".join(texts[:3]) + "\n\n" + "\n".join(texts[3:]) + "\n")
        singles = [ctl.json("query", "-k", "8", t)["results"] for t in texts]
        daemon.stop()
        daemon.start(ctl, extra=["--set", "max_batch=5", "--set", "max_reply_bytes=4096"])
        try:
            p = ctl.run("--json", "query", "-k", "8", "--file", path)
            lines = p.stdout.splitlines()
            check(len(lines) == len(texts), "query --file --json: %d lines" % len(lines))
            for i, (line, t) in enumerate(zip(lines, texts)):
                d = json.loads(line)
                check(set(d) == {"query", "results"} and d["query"] == t,
                      "query --file line %d: %r" % (i, d))
                check([x["id"] for x in d["results"]] == [x["id"] for x in singles[i]] and
                      all(abs(x["score"] - y["score"]) <= 1e-6
                          for x, y in zip(d["results"], singles[i])),
                      "query --file: query %d differs from the single query" % i)
            errors = ctl.json("stats")["ops"]["query"]["errors"]
            check(errors >= 1, "no batch was too large, so no halving was tested (%d)" % errors)
            p = ctl.run("query", "-k", "2", "--file", "-", stdin="\n".join(texts[:2]) + "\n")
            out = p.stdout.split("\n\n")
            check(len(out) == 2 and out[0].startswith("query 1 (line 1): " + texts[0] + "\n") and
                  out[1].startswith("query 2 (line 2): " + texts[1] + "\n"),
                  "query --file - table: %r" % p.stdout)
            rows = table_rows(out[0].split("\n", 1)[1])
            check(len(rows) == 2 and rows[0][1] == singles[0][0]["id"],
                  "query --file table rows: %r" % rows)
            missing = os.path.join(tmp, "no-queries.txt")
            p = ctl.run("query", "--file", missing, expect=1)
            check(missing in p.stderr, "query --file of a missing file: %r" % p.stderr)
        finally:
            daemon.stop()
            daemon.start(ctl)

    def t_get_delete():
        sid = state["seed_ids"]["A woman watches TV"]
        d = ctl.json("get", sid)
        check(d["id"] == sid and d["text"] == "A woman watches TV", "get --json: %r" % d)
        p = ctl.run("get", sid)
        check("A woman watches TV" in p.stdout and sid in p.stdout, "get table: %r" % p.stdout)
        d = ctl.json("delete", sid, "no-such-id-xyz")
        check(d["deleted"] == [sid] and d["not_found"] == ["no-such-id-xyz"],
              "delete --json: %r" % d)
        p = ctl.run("get", sid, expect=1)
        check(p.stderr.strip(), "get of a deleted id prints the error")
        # Put it back so later checks see eight seed sentences.
        ctl.json("add", "A woman watches TV")

    def t_files():
        txt = os.path.join(tmp, "docs.txt")
        with open(txt, "w") as f:
            f.write("Tea is served hot in the morning.\r\n\nThe train leaves at noon.\n")
        d = ctl.json("add", "--file", txt)
        check(len(d["ids"]) == 2, "txt: two documents (blank line skipped): %r" % d)
        check(ctl.json("get", d["ids"][1])["text"] == "The train leaves at noon.", "txt text")

        jl = os.path.join(tmp, "docs.jsonl")
        with open(jl, "w") as f:
            f.write(json.dumps({"id": "j1", "text": "A red bicycle in the rain.",
                                "metadata": {"src": "jsonl", "n": 1}}) + "\n")
            f.write(json.dumps({"id": "j2", "text": "Snow covers the mountain village.",
                                "metadata": {"src": "jsonl", "n": 2}}) + "\n")
        d = ctl.json("add", "--file", jl)
        check(d["ids"] == ["j1", "j2"], "jsonl ids: %r" % d)
        g = ctl.json("get", "j1")
        check(g["metadata"] == {"src": "jsonl", "n": 1}, "jsonl metadata: %r" % g)

        csvp = os.path.join(tmp, "docs.csv")
        with open(csvp, "w", newline="") as f:
            f.write('key,body,src\r\nc1,"Bread, butter and jam.",csv\r\n'
                    'c2,"He said ""hello"" and\nleft.",csv\r\n')
        d = ctl.json("add", "--file", csvp, "--text-column", "body", "--id-column", "key")
        check(d["ids"] == ["c1", "c2"], "csv ids: %r" % d)
        g = ctl.json("get", "c2")
        check(g["text"] == 'He said "hello" and\nleft.' and g["metadata"] == {"src": "csv"},
              "csv quoting and metadata: %r" % g)

        # A filter selects by metadata.
        d = ctl.json("query", "-k", "5", "--filter", '{"src":"csv"}', "breakfast food")
        check(d["results"] and all(r["metadata"] == {"src": "csv"} for r in d["results"]) and
              d["results"][0]["id"] == "c1", "query --filter: %r" % d)

        # Standard input, in batches smaller than the input.
        lines = "".join("Stdin sentence number %d about topic %d.\n" % (i, i % 7)
                        for i in range(300))
        d = ctl.json("add", "--file", "-", "--batch", "64", stdin=lines)
        check(len(d["ids"]) == 300 and len(set(d["ids"])) == 300, "stdin: 300 ids")
        p = ctl.run("add", "--file", "-", "--format", "jsonl",
                    stdin='{"id":"s1","text":"From a pipe."}\n')
        check("added 1 document" in p.stdout, "add summary line: %r" % p.stdout)
        # Upsert: the same id replaces the text.
        ctl.run("add", "--file", "-", "--format", "jsonl",
                stdin='{"id":"s1","text":"From a pipe, replaced."}\n')
        check(ctl.json("get", "s1")["text"] == "From a pipe, replaced.", "upsert by id")
        state["n_docs"] = 8 + 2 + 2 + 2 + 300 + 1

    def t_bad_file():
        # A malformed record is exit 1 naming file and line, and nothing of the file is added.
        bad = os.path.join(tmp, "bad.jsonl")
        with open(bad, "w") as f:
            f.write('{"id": "bad1", "text": "fine"}\n{"txt": "typo"}\n')
        p = ctl.run("add", "--file", bad, expect=1)
        check(bad + ":2:" in p.stderr, "bad record named: %r" % p.stderr)
        ctl.run("get", "bad1", expect=1)

    def t_error_replies():
        # Exit 1: the daemon replies with an error, and sbertctl prints its message.
        p = ctl.run("get", "definitely-not-there", expect=1)
        check("definitely-not-there" in p.stderr or "not" in p.stderr.lower(),
              "get missing: %r" % p.stderr)
        p = ctl.run("add", "", expect=1)
        check(p.stderr.startswith("sbertctl: add: "), "empty text refused: %r" % p.stderr)
        p = ctl.run("query", "--filter", "[1,2]", "x", expect=1)
        check(p.stderr.startswith("sbertctl: query: "), "bad filter refused: %r" % p.stderr)
        p = ctl.run("--json", "query", "--filter", "[1,2]", "x", expect=1)
        err = json.loads(p.stdout)
        check(err.get("ok") is False and "code" in err.get("error", {}),
              "--json error reply printed: %r" % p.stdout)

    def t_stats_count():
        st = ctl.json("stats")
        flat = json.dumps(st)
        check(str(state["n_docs"]) in flat, "stats mentions %d documents: %s" % (
            state["n_docs"], flat[:400]))

    def t_backup_reindex():
        bdir = os.path.join(tmp, "backup1")
        ctl.run("backup", bdir)
        check(os.path.isdir(bdir) and os.listdir(bdir), "backup wrote files into %s" % bdir)
        ctl.run("reindex")
        check_pairs_output(ctl, SEED_SENTENCES, "pairs after reindex")
        d = ctl.json("query", "-k", "1", "The new movie is so great")
        check(d["results"][0]["text"] == "The new movie is so great" and
              d["results"][0]["score"] > 0.9999, "exact match after reindex: %r" % d)

    def t_backup_rotate():
        # Four backups in one second keep their order through pruning: the newest two stay, and
        # nothing else in the folder is touched (a look-alike without store.mdb, a plain folder).
        root = os.path.join(tmp, "rotated")
        os.makedirs(os.path.join(root, "keep-me"))
        os.makedirs(os.path.join(root, "sbertd-20000101T000000Z"))
        made, removed = [], []
        for _ in range(4):
            d = ctl.json("backup", "--rotate", "--keep", "2", root)
            made.append(os.path.basename(d["dir"]))
            removed += d["removed"]
        check(len(set(made)) == 4, "four distinct backup names: %r" % made)
        left = sorted(os.listdir(root))
        check(left == sorted(["keep-me", "sbertd-20000101T000000Z"] + made[2:]),
              "the newest two backups and the unrelated folders remain: %r (made %r)" % (left, made))
        check(removed == made[:2], "removed the oldest, oldest first: %r" % removed)
        for name in made[2:]:
            check(os.path.isfile(os.path.join(root, name, "store.mdb")), name + " holds store.mdb")
        ctl.run("backup", "--keep", "2", os.path.join(tmp, "norotate"), expect=2)

    def t_index():
        # A tree of every format, plus what must be skipped with a reason and never abort the
        # run: a binary file, a Latin-1 text, a FIFO, a symbolic link loop, hidden entries.
        root = os.path.join(tmp, "tree")
        os.makedirs(os.path.join(root, "sub"))
        os.makedirs(os.path.join(root, ".git"))
        files = {
            "note.txt": b"A plain text note about cats and dogs.\n",
            "sub/guide.md": b"# Garden Guide\n\nTomatoes need full sun and deep watering.\n",
            "sub/page.html": b"<html><head><title>Rocket Page</title><script>alert(1)</script>"
                             b"</head><body><p>Rockets carry satellites into orbit.</p></body></html>",
            "blob.bin": b"\x00\x01binary",
            "latin1.txt": b"caf\xe9 au lait\n",
            ".git/config": b"[core]\n",
        }
        for name, data in files.items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
        # the PDF the fuzz corpus holds (its first byte picks the fuzzer's format)
        with open(os.path.join(HERE, "..", "fuzz", "corpus", "fuzz_extract", "pdf_one"), "rb") as f:
            pdf = f.read()[1:]
        with open(os.path.join(root, "doc.pdf"), "wb") as f:
            f.write(pdf)
        os.mkfifo(os.path.join(root, "fifo"))
        os.symlink("..", os.path.join(root, "sub", "loop"))

        p = ctl.run("--json", "index", root)
        got = json.loads(p.stdout)
        check(got["indexed"] == 4 and got["skipped"] == 4 and got["failed"] == 0,
              "index: 4 indexed, 4 skipped: %r" % got)
        for name in ("blob.bin", "latin1.txt", "fifo", "sub/loop"):
            check(os.path.join(root, name) in p.stderr, "index names skipped %s: %r" % (name, p.stderr))
        check(".git" not in p.stderr, "hidden entries are not even reported")
        check("not valid UTF-8 at byte 3" in p.stderr, "the Latin-1 file's reason: %r" % p.stderr)
        d = ctl.json("get", "sub/page.html")
        m = d["metadata"]
        check(d["text"] == "Rockets carry satellites into orbit." and m["title"] == "Rocket Page" and
              m["format"] == "html" and m["path"] == "sub/page.html" and len(m["sha256"]) == 64,
              "html document and metadata: %r" % d)
        d = ctl.json("get", "doc.pdf")
        check(d["text"] == "Hello PDF world" and d["metadata"]["format"] == "pdf",
              "pdf document: %r" % d)
        q = ctl.json("query", "-k", "1", "spaceflight launches")
        check(q["results"][0]["id"] == "sub/page.html", "query finds the html page: %r" % q)
        # the filter language's text condition, $not, $in and $exists through the daemon
        q = ctl.json("query", "-k", "10", "--filter", '{"$text": {"$icontains": "TOMATOES"}}',
                     "anything")
        check([r["id"] for r in q["results"]] == ["sub/guide.md"], "$text $icontains: %r" % q)
        q = ctl.json("query", "-k", "10", "--filter",
                     '{"$not": {"format": {"$in": ["pdf", "html"]}}, "title": {"$exists": true}}',
                     "anything")
        check([r["id"] for r in q["results"]] == ["sub/guide.md"], "$not/$in/$exists: %r" % q)

        # again: nothing changed, nothing encoded; a touched file is read but not re-encoded; an
        # edited one is re-indexed
        got = json.loads(ctl.run("--json", "index", root).stdout)
        check(got["indexed"] == 0 and got["unchanged"] == 4, "second run: all unchanged: %r" % got)
        os.utime(os.path.join(root, "note.txt"))
        with open(os.path.join(root, "sub/guide.md"), "ab") as f:
            f.write(b"Water in the morning.\n")
        got = json.loads(ctl.run("--json", "index", root).stdout)
        check(got["indexed"] == 1 and got["unchanged"] == 3, "third run: one edited: %r" % got)
        check("morning" in ctl.json("get", "sub/guide.md")["text"], "the edit is stored")
        p = ctl.run("index", root)
        check(re.match(r"indexed 0 files, 0 passages \(0 encoded, 0 from cache\), skipped 8, deleted 0$",
                       p.stdout.strip()), "summary line: %r" % p.stdout)
        ctl.run("index", os.path.join(tmp, "no-such-dir"), expect=2)

    def sync_ids(root):
        """The ids and texts of the documents sync made from root."""
        p = ctl.run("--json", "list", "--all", "--filter", json.dumps({"root": root}))
        docs = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
        return {d["id"]: d["text"] for d in docs if "id" in d}

    def write(path, data):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)

    def t_sync():
        # sync makes the documents of a tree equal to its files; what cannot be read is kept,
        # other roots and plain adds are never touched
        root = os.path.realpath(os.path.join(tmp, "synctree"))
        other = os.path.realpath(os.path.join(tmp, "othertree"))
        files = {
            "a.txt": b"Apples grow on trees in the orchard.\n",
            "b.md": b"# Bees\n\nBees make honey from nectar.\n",
            "sub/c.html": b"<html><head><title>Comets</title></head><body><p>Comets have tails."
                          b"</p></body></html>",
            "d.txt": b"Dolphins swim in the sea.\n",
            "e.txt": b"Eagles fly high.\n",
            "h.txt": b"Horses run in the field.\n",
        }
        for name, data in files.items():
            write(os.path.join(root, name), data)
        write(os.path.join(other, "o.txt"), b"Owls hunt at night.\n")
        got = ctl.json("sync", root)
        check(got["indexed"] == 6 and got["deleted"] == 0 and got["skipped"] == 0,
              "first sync: %r" % got)
        got = ctl.json("sync", other)
        check(got["indexed"] == 1, "other root: %r" % got)
        plain = ctl.json("add", "a document added by hand")["ids"][0]
        m = ctl.json("get", "sub/c.html")["metadata"]
        check(m["root"] == root and m["path"] == "sub/c.html" and m["title"] == "Comets",
              "sync's metadata: %r" % m)
        check(sorted(sync_ids(root)) == sorted(files), "the store holds the tree")

        # edit one, add one, delete one; one becomes a FIFO, one invalid UTF-8, one a dangling
        # symbolic link: those three are reported and skipped, and their documents kept
        write(os.path.join(root, "a.txt"), b"Apples and pears grow in the orchard.\n")
        write(os.path.join(root, "f.txt"), b"Foxes live in dens.\n")
        os.unlink(os.path.join(root, "b.md"))
        os.unlink(os.path.join(root, "d.txt"))
        os.mkfifo(os.path.join(root, "d.txt"))
        write(os.path.join(root, "e.txt"), b"\xe9agles fly high.\n")
        os.unlink(os.path.join(root, "h.txt"))
        os.symlink("no-such-target", os.path.join(root, "h.txt"))
        p = ctl.run("--json", "sync", root)
        got = json.loads(p.stdout)
        check(got["indexed"] == 2 and got["deleted"] == 1 and got["skipped"] == 4 and
              got["unchanged"] == 1 and got["failed"] == 0, "second sync: %r" % got)
        for name in ("d.txt", "e.txt", "h.txt"):
            check(os.path.join(root, name) in p.stderr, "sync names skipped %s: %r" % (name, p.stderr))
        ids = sync_ids(root)
        check(sorted(ids) == ["a.txt", "d.txt", "e.txt", "f.txt", "h.txt", "sub/c.html"],
              "after the second sync: %r" % sorted(ids))
        check(ids["a.txt"].startswith("Apples and pears") and ids["e.txt"].startswith("Eagles") and
              ids["d.txt"].startswith("Dolphins") and ids["h.txt"].startswith("Horses"),
              "edited and kept texts: %r" % ids)
        check(list(sync_ids(other)) == ["o.txt"], "the other root is untouched")
        check(ctl.json("get", plain)["text"] == "a document added by hand", "the plain add stays")

        # nothing changed: nothing indexed, nothing deleted; the summary line
        p = ctl.run("sync", root)
        check(re.match(r"indexed 0 files, 0 passages \(0 encoded, 0 from cache\), skipped 6, "
                       r"deleted 0$", p.stdout.strip()), "third sync: %r" % p.stdout)
        # a whole subdirectory removed, and the gone files' documents with it
        shutil.rmtree(os.path.join(root, "sub"))
        for name in ("d.txt", "e.txt", "h.txt"):
            os.unlink(os.path.join(root, name))
        got = ctl.json("sync", root)
        check(got["indexed"] == 0 and got["deleted"] == 4, "after removing sub/: %r" % got)
        check(sorted(sync_ids(root)) == ["a.txt", "f.txt"], "only a.txt and f.txt remain")
        # a tree that holds nothing at all (an unmounted disk looks like this): nothing deleted
        moved = root + ".away"
        os.rename(root, moved)
        os.mkdir(root)
        p = ctl.run("sync", root, expect=1)
        check("holds no files" in p.stderr and sorted(sync_ids(root)) == ["a.txt", "f.txt"],
              "an empty tree deletes nothing: %r" % p.stderr)
        os.rmdir(root)
        os.rename(moved, root)
        ctl.run("sync", os.path.join(tmp, "no-such-dir"), expect=2)
        ctl.run("sync", os.path.join(root, "a.txt"), expect=2)

    def t_sync_cache_progress_notify():
        # Issue 12. A copy of a synced tree (the same texts under new ids) encodes nothing: the
        # daemon's embedding cache serves every text, and the summary counts them. On a terminal
        # the run draws one progress line (files/s, passages/s); not on a pipe. Under systemd
        # (NOTIFY_SOCKET, a unix datagram socket here) it sends STATUS= lines and READY=1.
        src = os.path.realpath(os.path.join(tmp, "cachetree"))
        for i in range(40):
            write(os.path.join(src, "d%02d" % (i // 10), "f%02d.txt" % i),
                  ("File %d talks about topic %d in its own words.\n" % (i, i * 7)).encode())
        got = ctl.json("sync", "--batch", "8", src)
        check(got["indexed"] == 40 and got["passages"] == 40 and
              got["encoded"] + got["cached"] == 40, "first sync: %r" % got)
        copy = os.path.realpath(os.path.join(tmp, "cachetree-copy"))
        shutil.copytree(src, copy)
        p = ctl.run("sync", "--batch", "8", copy)
        check(p.stdout.strip() == "indexed 40 files, 40 passages (0 encoded, 40 from cache), "
              "skipped 0, deleted 0", "a copy is served by the cache: %r" % p.stdout)
        check("files/s" not in p.stderr and "\r" not in p.stderr,
              "no progress line when stderr is not a terminal: %r" % p.stderr)

        # a terminal: the progress line (pty), with both rates
        write(os.path.join(copy, "new.txt"), b"A file added to the copy.\n")
        master, slave = pty.openpty()
        proc = subprocess.Popen([ctl.exe, "--socket", ctl.socket_url, "sync", copy],
                                stdout=subprocess.PIPE, stderr=slave, env=ctl.env)
        os.close(slave)
        out, tty = proc.communicate(timeout=300)[0], b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the child closed its end
                break
            if not chunk:
                break
            tty += chunk
        os.close(master)
        check(proc.returncode == 0, "sync on a terminal: exit %d" % proc.returncode)
        check(b"files/s" in tty and b"passages/s" in tty and b"\r" in tty,
              "progress line on a terminal: %r" % tty[-400:])
        check(out.decode().startswith("indexed 1 files, 1 passages (1 encoded, 0 from cache)"),
              "summary: %r" % out)

        # NOTIFY_SOCKET: STATUS= lines, the summary last, and READY=1 after the first round
        sock_path = os.path.join(tmp, "notify.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        srv.bind(sock_path)
        srv.settimeout(0.5)
        try:
            os.unlink(os.path.join(copy, "new.txt"))
            write(os.path.join(copy, "d00", "f00.txt"), b"An edited file.\n")
            env = dict(ctl.env, NOTIFY_SOCKET=sock_path)
            p = subprocess.run([ctl.exe, "--socket", ctl.socket_url, "sync", copy], env=env,
                               capture_output=True, text=True, timeout=300)
            check(p.returncode == 0, "sync under NOTIFY_SOCKET: %r" % p.stderr)
            msgs = []
            while True:
                try:
                    msgs.append(srv.recv(4096).decode())
                except socket.timeout:
                    break
        finally:
            srv.close()
            os.unlink(sock_path)
        status = [m[len("STATUS="):] for m in msgs if m.startswith("STATUS=")]
        check(status and status[0] == "sync %s: walking the tree" % copy, "first STATUS=: %r" % msgs)
        check(any(re.match(r"sync %s: \d+/40 files, 1 passages \(1 encoded, 0 from cache\), \d+ "
                           r"files/s, \d+ passages/s" % re.escape(copy), s) for s in status),
              "a progress STATUS=: %r" % msgs)
        check(status[-1] == "sync %s: indexed 1 files, 1 passages (1 encoded, 0 from cache), "
              "skipped 39, deleted 1" % copy, "the summary is the last STATUS=: %r" % msgs)
        check(msgs[-1] == "READY=1", "READY=1 after the round: %r" % msgs)

    def t_sync_watch():
        # sync --watch follows the tree: files created, changed, deleted, and in a new
        # subdirectory reach the store; SIGTERM ends it with status 0
        root = os.path.realpath(os.path.join(tmp, "watchtree"))
        write(os.path.join(root, "one.txt"), b"The first file.\n")
        write(os.path.join(root, "two.txt"), b"The second file.\n")
        cmd = [ctl.exe, "--socket", ctl.socket_url, "--json", "sync", "--watch", root]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=ctl.env)
        try:
            ready = select.select([proc.stdout], [], [], 300)[0]
            check(ready, "sync --watch printed its first round")
            first = json.loads(proc.stdout.readline())
            check(first["indexed"] == 2, "the first round: %r" % first)
            write(os.path.join(root, "three.txt"), b"The third file.\n")
            write(os.path.join(root, "one.txt"), b"The first file, edited.\n")
            os.unlink(os.path.join(root, "two.txt"))
            os.makedirs(os.path.join(root, "new"))
            write(os.path.join(root, "new", "deep.md"), b"# Deep\n\nA file in a new directory.\n")
            want = {"one.txt": "The first file, edited.", "three.txt": "The third file.",
                    "new/deep.md": "# Deep\n\nA file in a new directory."}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                got = {k: v.strip() for k, v in sync_ids(root).items()}
                if got == want:
                    break
                time.sleep(0.3)
            check(got == want, "the store follows the tree: %r" % got)
            check(proc.poll() is None, "sync --watch still runs")
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
            check(rc == 0, "sync --watch exits 0 on SIGTERM, not %d: %s" % (rc, proc.stderr.read()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def t_sync_killed():
        # sync killed (SIGKILL) in the middle of a run: the next run makes the store equal the tree
        root = os.path.realpath(os.path.join(tmp, "killtree"))
        for i in range(300):
            write(os.path.join(root, "d%02d" % (i % 10), "f%03d.txt" % i),
                  ("File number %d speaks of topic %d.\n" % (i, i * 7 % 13)).encode())
        # sbertctl execs sbertctl-files in its own process: the signal reaches the sync
        proc = subprocess.Popen([ctl.exe, "--socket", ctl.socket_url, "sync", "--batch", "4", root],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ctl.env)
        flt = json.dumps({"root": root})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if ctl.json("count", "--filter", flt)["count"] > 0:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # and half the files gone before the re-run
        want = {}
        for i in range(300):
            path = os.path.join(root, "d%02d" % (i % 10), "f%03d.txt" % i)
            if i % 2:
                os.unlink(path)
            else:
                with open(path) as f:
                    want["d%02d/f%03d.txt" % (i % 10, i)] = f.read().strip()
        got = ctl.json("sync", root)
        check(got["failed"] == 0, "the re-run: %r" % got)
        got = {k: v.strip() for k, v in sync_ids(root).items()}
        check(got == want, "after the kill and a re-run the store equals the tree: %d of %d, "
              "extra %r" % (len(got), len(want), sorted(set(got) - set(want))[:5]))
        check(ctl.json("sync", root)["indexed"] == 0, "and a further run changes nothing")

    def t_restore():
        # a backup, then a write after it; restore is refused while the daemon runs, and a damaged
        # backup changes nothing; a sound one comes back with the previous store kept aside
        bdir = os.path.join(tmp, "restore-src")
        ctl.run("backup", bdir)
        n_backup = ctl.json("stats")["documents"]
        ctl.run("add", "written after the backup")
        p = ctl.run("restore", "--data", daemon.data, bdir, expect=1)
        check("stop it first" in p.stderr, "restore refused while sbertd runs: %r" % p.stderr)
        daemon.stop()
        bad = os.path.join(tmp, "restore-bad")
        shutil.copytree(bdir, bad)
        with open(os.path.join(bad, "index.snap"), "r+b") as f:
            f.seek(100)
            b = f.read(1)
            f.seek(100)
            f.write(bytes([b[0] ^ 0xFF]))
        before = sorted(os.listdir(daemon.data))
        p = ctl.run("restore", "--data", daemon.data, bad, expect=1)
        check("not a sound backup, nothing was changed" in p.stderr, "damaged backup: %r" % p.stderr)
        check(sorted(os.listdir(daemon.data)) == before, "a refused restore leaves the store as it was")
        got = ctl.json("restore", "--data", daemon.data, bdir)
        check(got["documents"] == n_backup and got["snapshot"] is True and got["previous"] and
              os.path.isdir(got["previous"]), "restore's report: %r" % got)
        daemon.start(ctl)
        check(ctl.json("stats")["documents"] == n_backup, "the restored store serves the backup's documents")
        shutil.rmtree(got["previous"])

    def t_restart():
        daemon.stop()
        ctl.run("health", expect=3)
        daemon.start(ctl)
        check(ctl.json("get", "j2")["text"] == "Snow covers the mountain village.",
              "documents survive a restart")

    def t_pipelined_add():
        # add --file keeps several batches in flight (--in-flight) on separate connections. The
        # ids still come back in input order, and when an id repeats within the batches in
        # flight, the last line with it is the one stored.
        jl = os.path.join(tmp, "pipe.jsonl")
        lines = []
        for i in range(60):
            lines.append({"id": "pipe-%d" % ((i * 7) % 20),
                          "text": "Pipelined document number %d of sixty." % i})
        with open(jl, "w") as f:
            f.write("".join(json.dumps(x) + "\n" for x in lines))
        d = ctl.json("add", "--file", jl, "--batch", "2", "--in-flight", "4", timeout=600)
        check(d["ids"] == [x["id"] for x in lines], "jsonl ids in input order: %r" % d["ids"])
        last = {x["id"]: x["text"] for x in lines}
        cli = sbertd_harness.Client(ctl.socket_url)
        try:
            g = cli.call("get", ids=sorted(last))
            check(g.get("ok"), "get: %r" % g)
            for doc in g["documents"]:
                check(doc["found"] and doc["text"] == last[doc["id"]],
                      "the last line with id %s is stored: %r" % (doc["id"], doc))

            # Generated ids: each one is the document on the line at its position.
            txt = os.path.join(tmp, "pipe.txt")
            texts = ["Line %d of the pipelined text file." % i for i in range(50)]
            with open(txt, "w") as f:
                f.write("\n".join(texts) + "\n")
            d = ctl.json("add", "--file", txt, "--batch", "3", "--in-flight", "3", timeout=600)
            check(len(d["ids"]) == 50 and len(set(d["ids"])) == 50, "50 distinct ids: %r" % d)
            g = cli.call("get", ids=d["ids"])
            check([x.get("text") for x in g["documents"]] == texts,
                  "generated ids map to their lines in order: %r" % g["documents"][:3])
        finally:
            cli.close()
        ctl.run("add", "--file", txt, "--in-flight", "9", expect=2)

    def t_pipeline_same_id():
        # Writes from different connections at the same moment go through the daemon's write
        # pipeline (encode, then commit in order). Whichever commits second replaces the first:
        # its reply says replaced, and the store and the index then hold its text and vector.
        # A request sent twice with one req_id is applied once, even when both copies are in
        # the pipeline together.
        n_clients = 3
        clients = [sbertd_harness.Client(ctl.socket_url, timeout_ms=300000)
                   for _ in range(n_clients)]
        try:
            for rnd in range(8):
                doc_id = "race-%d" % rnd
                texts = ["Round %d, writer %d: %s" % (rnd, c, w) for c, w in
                         enumerate(("a lighthouse in the fog", "children playing football",
                                    "the stock market fell sharply"))]
                replies = [None] * n_clients
                barrier = threading.Barrier(n_clients)

                def send(c):
                    barrier.wait()
                    # a few more documents make each encode long enough for the others to queue
                    docs = [{"id": doc_id, "text": texts[c]}] + [
                        {"text": "Filler %d %d %d." % (rnd, c, j)} for j in range(20)]
                    replies[c] = clients[c].call("add", documents=docs)

                threads = [threading.Thread(target=send, args=(c,)) for c in range(n_clients)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                check(all(r and r.get("ok") for r in replies), "adds ok: %r" % replies)
                first = [c for c in range(n_clients) if not replies[c]["replaced"][0]]
                check(len(first) == 1, "exactly one add created %s: %r" % (doc_id, replies))
                g = clients[0].call("get", ids=[doc_id], include=["text", "vector"])
                stored = g["documents"][0]["text"]
                check(stored in texts, "stored text is one of the writers': %r" % stored)
                e = clients[0].call("encode", texts=[stored])["embeddings"][0]
                v = g["documents"][0]["vector"]
                cos = sum(x * y for x, y in zip(e, v))
                check(cos > 0.9999, "stored vector is the stored text's (cos %.6f)" % cos)
                q = clients[0].call("query", vector=e, k=1)
                check(q["results"][0]["id"] == doc_id and q["results"][0]["score"] > 0.9999,
                      "the index finds %s by its text's vector: %r" % (doc_id, q["results"]))

            body = json.dumps({"v": 1, "op": "add", "req_id": "pipe-twice",
                               "documents": [{"text": "Sent twice, stored once."}]}).encode()
            before = clients[0].call("stats")["documents"]
            out = [None, None]
            barrier = threading.Barrier(2)

            def twice(c):
                barrier.wait()
                out[c] = json.loads(clients[c].send_raw(body))

            threads = [threading.Thread(target=twice, args=(c,)) for c in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            check(out[0]["ok"] and out[0] == out[1], "both copies get one reply: %r" % out)
            after = clients[0].call("stats")["documents"]
            check(after == before + 1, "one document stored: %d -> %d" % (before, after))
        finally:
            for c in clients:
                c.close()

    def t_token():
        # With auth_token set, a request without the token is refused (exit 1); --token and
        # SBERTD_TOKEN supply it.
        daemon.stop()
        daemon.start(ctl, extra=["--set", "auth_token=s3cret"], token="s3cret")
        p = ctl.run("health", expect=1)
        check("unauthorized" in p.stderr, "no token: %r" % p.stderr)
        ctl.run("--token", "wrong", "health", expect=1)
        d = ctl.json("get", "j1", "--token", "s3cret")
        check(d["text"] == "A red bicycle in the rain.", "--token after the command: %r" % d)
        env = dict(ctl.env, SBERTD_TOKEN="s3cret")
        p = subprocess.run([ctl.exe, "--socket", ctl.socket_url, "health"], env=env,
                           capture_output=True, text=True)
        check(p.returncode == 0, "SBERTD_TOKEN: %r" % p.stderr)

    return [t_health_stats, t_seed_add_and_pairs, t_pairs_given_texts, t_similarity, t_encode,
            t_query, t_query_modes, t_query_file, t_get_delete, t_files, t_bad_file, t_error_replies, t_stats_count, t_backup_reindex,
            t_backup_rotate, t_index, t_sync, t_sync_cache_progress_notify, t_sync_watch, t_sync_killed, t_restore, t_restart, t_pipelined_add, t_pipeline_same_id, t_token]


def run_all(tests):
    for t in tests:
        name = t.__name__[2:]
        try:
            t()
            print("ok   %s" % name, flush=True)
        except Exception as e:  # a failed check or a crash of the harness: both fail the test
            failures.append(name)
            print("FAIL %s: %s" % (name, e), flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["offline", "daemon"])
    ap.add_argument("--sbertctl", required=True)
    ap.add_argument("--sbertd")
    ap.add_argument("--model")
    ap.add_argument("--shared")
    ap.add_argument("--optable", help="tests/proto's optable_test: check requests against it")
    a = ap.parse_args()
    # A short directory: ipc socket paths are limited to 107 bytes.
    tmp = tempfile.mkdtemp(prefix="sbctl-", dir="/tmp")
    try:
        if a.mode == "offline":
            run_all(offline_tests(Ctl(a.sbertctl), tmp, a.optable))
        else:
            for path, what in ((a.sbertd, "--sbertd"), (a.model, "--model")):
                if not path or not os.path.exists(path):
                    print("missing %s: %r" % (what, path), file=sys.stderr)
                    return 1
            url = "ipc://" + os.path.join(tmp, "sbertd.sock")
            data = os.path.join(tmp, "data")
            os.makedirs(data)
            ctl = Ctl(a.sbertctl, url)
            daemon = Daemon(a.sbertd, a.model, data, url, os.path.join(tmp, "sbertd.log"))
            try:
                daemon.start(ctl)
                run_all(daemon_tests(ctl, daemon, tmp))
            except Exception as e:
                failures.append("start-up")
                print("FAIL start-up: %s" % e, flush=True)
            finally:
                try:
                    daemon.stop()
                except AssertionError as e:
                    failures.append("shutdown")
                    print("FAIL shutdown: %s" % e, flush=True)
                if failures:
                    print("---- sbertd log (tail) ----\n" + daemon.tail())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d test(s) failed: %s" % (len(failures), ", ".join(failures)))
        return 1
    print("all passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
