#!/usr/bin/env python3
"""test_http_daemon.py — sbertd's HTTP API (http = HOST:PORT, PROTOCOL.md section 6) on a real
sbertd with the real model: every op through POST /v1/<op> with Python requests and curl, the same
answers as over nanomsg, GET /v1/health, /openapi.json, bearer tokens refused and accepted, a
non-loopback address refused without allow_remote, /metrics parsed by prometheus_client's text
parser, the node_exporter textfile, and a clean SIGTERM with HTTP clients connected.

  SBERTD=build/daemon/sbertd test_http_daemon.py MODEL_DIR
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import requests
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sbertd_harness import Daemon, TIMEOUT_SCALE  # noqa: E402

MODEL = sys.argv[1]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def port_of(d):
    deadline = time.time() + 30 * TIMEOUT_SCALE
    while time.time() < deadline:
        m = re.search(r"http: serving on \S+ \(port (\d+)\)", d.read_log())
        if m:
            return int(m.group(1))
        time.sleep(0.1)
    raise AssertionError("no http line in the log:\n" + d.read_log())


def post(base, op, body, token=None, **kw):
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = "Bearer " + token
    return requests.post("%s/v1/%s" % (base, op), data=json.dumps(body), headers=h,
                         timeout=120 * TIMEOUT_SCALE, **kw)


def every_op(d, base):
    r = post(base, "add", {"documents": [
        {"id": "cat", "text": "The cat sits outside", "metadata": {"kind": "pet"}},
        {"id": "car", "text": "A red sports car", "metadata": {"kind": "vehicle"}},
        {"id": "dog", "text": "A dog plays in the garden", "metadata": {"kind": "pet"}}]})
    check(r.status_code == 200 and r.json()["ids"] == ["cat", "car", "dog"], "add: %s" % r.text)
    # the same answer as over nanomsg
    q = {"text": "a kitten outdoors", "k": 2, "filter": {"kind": "pet"}}
    r = post(base, "query", q)
    c = d.client()
    try:
        direct = c.call("query", **q)
    finally:
        c.close()
    check(r.status_code == 200 and r.json()["results"] == direct["results"],
          "query over HTTP equals nanomsg: %s vs %s" % (r.text, direct))
    check(r.json()["results"][0]["id"] == "cat", "query finds the cat")
    # a batch query: one list per text, each the single query's
    r = post(base, "query", {"texts": ["a kitten outdoors", "a fast vehicle"], "k": 2})
    lists = r.json().get("results")
    check(r.status_code == 200 and len(lists) == 2 and lists[0][0]["id"] == "cat"
          and lists[1][0]["id"] == "car" and r.json()["truncated"] == [],
          "batch query over HTTP: %s" % r.text)
    spec_query = requests.get(base + "/openapi.json", timeout=30).json()["paths"]["/v1/query"]
    check("vectors" in json.dumps(spec_query), "openapi lists query's vectors: %s" % spec_query)
    r = post(base, "get", {"ids": ["dog", "nope"]})
    docs = r.json()["documents"]
    check(docs[0]["text"] == "A dog plays in the garden" and docs[1]["found"] is False,
          "get: %s" % r.text)
    r = post(base, "similarity", {"a": ["The cat sits outside"], "b": ["A cat is outdoors"]})
    check(r.status_code == 200 and r.json()["matrix"][0][0] > 0.7, "similarity: %s" % r.text)
    r = post(base, "encode", {"texts": ["hello world"]})
    check(r.status_code == 200 and len(r.json()["embeddings"][0]) == 384, "encode: %s" % r.text[:200])
    r = post(base, "pairs", {"n": 1})
    check(r.status_code == 200 and len(r.json()["pairs"]) == 1, "pairs: %s" % r.text)
    r = post(base, "stats", {})
    check(r.status_code == 200 and r.json()["documents"] == 3, "stats: %s" % r.text[:200])
    r = post(base, "count", {})
    check(r.status_code == 200 and r.json()["count"] == 3, "count: %s" % r.text)
    r = post(base, "list", {"limit": 2, "include": []})
    check(r.status_code == 200 and len(r.json()["documents"]) == 2 and r.json().get("cursor"),
          "list: %s" % r.text)
    r2 = post(base, "list", {"limit": 2, "include": [], "cursor": r.json()["cursor"]})
    check(r2.status_code == 200 and len(r2.json()["documents"]) == 1 and
          "cursor" not in r2.json(), "list's next page: %s" % r2.text)
    r = post(base, "patch", {"documents": [{"id": "dog", "set": {"seen": True}}]})
    check(r.status_code == 200 and r.json()["found"] == [True], "patch: %s" % r.text)
    r = post(base, "count", {"filter": {"seen": True}})
    check(r.status_code == 200 and r.json()["count"] == 1, "count after patch: %s" % r.text)
    r = post(base, "list", {"cursor": "!"})
    check(r.status_code == 400 and r.json()["error"]["code"] == "bad_request",
          "a forged cursor is 400: %s" % r.text)
    r = post(base, "delete", {"filter": {}})
    check(r.status_code == 400 and r.json()["error"]["code"] == "bad_filter",
          "delete with {} is 400: %s" % r.text)
    r = post(base, "delete", {"ids": ["car"]})
    check(r.status_code == 200, "delete: %s" % r.text)
    bdir = os.path.join(d.tmp, "http-backup")
    r = post(base, "backup", {"dir": bdir})
    check(r.status_code == 200 and os.path.exists(os.path.join(bdir, "store.mdb")), "backup: %s" % r.text)
    r = post(base, "reindex", {})
    check(r.status_code == 200, "reindex: %s" % r.text)
    r = requests.get(base + "/v1/health", timeout=30)
    check(r.status_code == 200 and r.json()["documents"] == 2, "GET health: %s" % r.text)
    # errors: the protocol's code with its HTTP status
    r = post(base, "query", {"text": "x", "k": 0})
    check(r.status_code == 400 and r.json()["error"]["code"] == "bad_k", "bad_k is 400: %s" % r.text)
    r = post(base, "get", {"ids": 5})
    check(r.status_code == 400, "a bad member is 400: %s" % r.text)
    r = requests.post(base + "/v1/nope", data="{}", headers={"Content-Type": "application/json"})
    check(r.status_code == 404, "unknown op is 404: %s" % r.text)
    r = requests.post(base + "/v1/query", data='{"text":', headers={"Content-Type": "application/json"})
    check(r.status_code == 400 and r.json()["error"]["code"] == "bad_json", "bad json: %s" % r.text)
    # curl, keep-alive across two requests on one connection
    out = subprocess.run(["curl", "-s", "-H", "Content-Type: application/json", "-d", '{"ids":["cat"]}',
                          base + "/v1/get", "--next", "-s", base + "/v1/health"],
                         capture_output=True, text=True, timeout=60)
    check('"found":true' in out.stdout and '"status":"serving"' in out.stdout, "curl: %r" % out.stdout)
    spec = requests.get(base + "/openapi.json", timeout=30).json()
    check("/v1/query" in spec.get("paths", {}), "openapi lists query")
    # metrics: Prometheus's own parser
    text = requests.get(base + "/metrics", timeout=30).text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    docs = [s.value for s in fams["sbertd_documents"].samples]
    check(docs == [2.0], "sbertd_documents: %r" % docs)
    q = [s for s in fams["sbertd_requests"].samples if s.labels.get("op") == "query"]
    check(q and q[0].value >= 2, "query requests counted: %r" % q)
    check("sbertd_request_duration_seconds" in fams and "sbertd_lmdb_map_used_bytes" in fams,
          "latency and LMDB metrics: %r" % sorted(fams))
    enc = {n: fams[n].samples[0].value for n in ("sbertd_encode_texts", "sbertd_encode_tokens",
                                                   "sbertd_encode_seconds")}
    check(enc["sbertd_encode_texts"] >= 4 and enc["sbertd_encode_tokens"] >= 2 * enc["sbertd_encode_texts"]
          and enc["sbertd_encode_seconds"] > 0, "encoder counters: %r" % enc)
    # exactly the tokens the model makes: "a cat sat" is [CLS] a cat sat [SEP]
    before = post(base, "stats", {}).json()["encoder"]
    check(post(base, "encode", {"texts": ["a cat sat"]}).status_code == 200, "encode")
    after = post(base, "stats", {}).json()["encoder"]
    check(after["texts"] - before["texts"] == 1 and after["tokens"] - before["tokens"] == 5,
          "encoder counters of one encode: %r -> %r" % (before, after))
    # the embedding cache's counters: the cat's text added again under another id is one more
    # hit and no more miss
    def cache_counters():
        fams = {f.name: f for f in text_string_to_metric_families(
            requests.get(base + "/metrics", timeout=30).text)}
        return [fams[n].samples[0].value for n in ("sbertd_embedding_cache_hits",
                                                    "sbertd_embedding_cache_misses")]
    before = cache_counters()
    r = post(base, "add", {"documents": [{"id": "cat-again", "text": "The cat sits outside"}]})
    check(r.status_code == 200 and r.json()["cached"] == 1 and r.json()["encoded"] == 0,
          "add of a cached text: %s" % r.text)
    after = cache_counters()
    check(before[1] >= 3 and after == [before[0] + 1, before[1]],
          "embedding cache counters (hits, misses): %r -> %r" % (before, after))


def main():
    tmp = tempfile.mkdtemp(prefix="sbertd-http-")
    prom = os.path.join(tmp, "sbertd.prom")
    d = Daemon(MODEL, tmp=tmp, extra=["--set", "http=127.0.0.1:0", "--set",
                                      "metrics_textfile=" + prom, "--log-level", "info"])
    d.start()
    try:
        base = "http://127.0.0.1:%d" % port_of(d)
        every_op(d, base)
        deadline = time.time() + 30
        while not os.path.exists(prom) and time.time() < deadline:
            time.sleep(0.2)
        with open(prom) as f:
            names = {f.name for f in text_string_to_metric_families(f.read())}
        check("sbertd_documents" in names, "the textfile holds the metrics: %r" % names)
        # SIGTERM with a client connected: a clean exit
        s = requests.Session()
        s.get(base + "/v1/health", timeout=30)
        rc = d.stop()
        check(rc == 0, "sbertd exits 0 on SIGTERM with HTTP clients: %r" % rc)
    finally:
        d.cleanup()

    # a token: refused without it, accepted with it, over HTTP as over nanomsg
    d = Daemon(MODEL, extra=["--set", "http=127.0.0.1:0", "--set", "auth_token=s3cret",
                             "--log-level", "info"])
    d.start()
    try:
        base = "http://127.0.0.1:%d" % port_of(d)
        r = post(base, "stats", {})
        check(r.status_code == 401 and r.json()["error"]["code"] == "unauthorized",
              "no token: 401: %s" % r.text)
        r = post(base, "stats", {}, token="wrong")
        check(r.status_code == 401, "a wrong token: 401")
        r = post(base, "stats", {}, token="s3cret")
        check(r.status_code == 200 and r.json()["ok"], "the token: 200: %s" % r.text[:200])
        check(d.stop() == 0, "clean stop")
    finally:
        d.cleanup()

    # systemd's LoadCredential=auth_token:FILE: the token comes from $CREDENTIALS_DIRECTORY
    creds = tempfile.mkdtemp(prefix="sbertd-creds-")
    with open(os.path.join(creds, "auth_token"), "w") as f:
        f.write("fr0m-credential\n")
    d = Daemon(MODEL, extra=["--set", "http=127.0.0.1:0", "--log-level", "info"],
               env={"CREDENTIALS_DIRECTORY": creds})
    d.start()
    try:
        base = "http://127.0.0.1:%d" % port_of(d)
        check(post(base, "stats", {}).status_code == 401, "the credential's token is required")
        r = post(base, "stats", {}, token="fr0m-credential")
        check(r.status_code == 200, "the credential's token (newline dropped) is accepted: %s" % r.text[:200])
        check(d.stop() == 0, "clean stop")
    finally:
        d.cleanup()

    # socket activation: systemd-socket-activate binds the port and passes the listening socket,
    # as sbertd.socket does; the daemon starts on the first connection and serves it on that socket
    import socket as _socket
    probe = _socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    tmp = tempfile.mkdtemp(prefix="sbertd-sa-")
    log = open(os.path.join(tmp, "log"), "wb")
    sa = subprocess.Popen(["systemd-socket-activate", "-l", "127.0.0.1:%d" % port,
                           os.environ["SBERTD"], "--model", MODEL, "--data", os.path.join(tmp, "data"),
                           "--listen", "ipc://" + os.path.join(tmp, "s.sock"),
                           "--set", "http=127.0.0.1:%d" % port, "--log-level", "info"],
                          stdout=log, stderr=log)
    try:
        deadline = time.time() + 60 * TIMEOUT_SCALE
        r = None
        while time.time() < deadline and r is None:
            try:
                r = requests.get("http://127.0.0.1:%d/v1/health" % port, timeout=120 * TIMEOUT_SCALE)
            except requests.ConnectionError:
                time.sleep(0.2)
        check(r is not None and r.status_code == 200 and r.json()["status"] == "serving",
              "socket-activated health: %r" % (r.text if r is not None else None))
        # the daemon logs its http line after the server started, so a request can be answered
        # before that line is written: wait for it
        text = ""
        while time.time() < deadline and "a socket systemd passed" not in text:
            with open(os.path.join(tmp, "log"), "rb") as f:
                text = f.read().decode(errors="replace")
            if "a socket systemd passed" not in text:
                time.sleep(0.1)
        check("a socket systemd passed" in text, "the daemon says it took the passed socket: %s" % text[-600:])
    finally:
        sa.terminate()
        try:
            sa.wait(timeout=60 * TIMEOUT_SCALE)
        except subprocess.TimeoutExpired:
            sa.kill()
        check(sa.returncode == 0, "socket-activated sbertd exits 0 on SIGTERM: %r" % sa.returncode)
        log.close()

    # a non-loopback address needs allow_remote: the daemon refuses to start
    d = Daemon(MODEL, extra=["--set", "http=0.0.0.0:0"])
    try:
        try:
            d.start(timeout=60)
            started = True
        except AssertionError:
            started = False
        check(not started and "allow_remote" in d.read_log(),
              "http on 0.0.0.0 without allow_remote is refused: %s" % d.read_log()[-400:])
    finally:
        d.cleanup()

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("test_http_daemon: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
