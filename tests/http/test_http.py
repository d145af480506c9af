#!/usr/bin/env python3
"""test_http.py — sbert_http (http/, PROTOCOL.md section 6) served by http_testserver (a fake
daemon behind the real library) and driven with Python requests, curl and raw sockets: every
route, op from the path, v/op filled in, op mismatch, token, the loopback rule, the socket handed
over (systemd), 413 from Content-Length and from chunked bodies, malformed JSON, the status table,
slowloris, keep-alive, 16 concurrent clients, /openapi.json against the op table, /metrics.

    test_http.py --server build/tests/http/http_testserver --optable build/tests/proto/optable_test
"""
import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

import requests

AP = argparse.ArgumentParser()
AP.add_argument("--server", required=True)
AP.add_argument("--optable", required=True)
ARGS = AP.parse_args()
SCALE = float(os.environ.get("SBERT_TEST_TIMEOUT_SCALE") or 1)
TIMEOUT = 10 * SCALE
JSON = {"Content-Type": "application/json"}
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)


class Server:
    """http_testserver on a free loopback port; stopped by closing its stdin."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([ARGS.server, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            err = self.proc.stderr.read()
            raise RuntimeError("http_testserver did not start: %r %s" % (line, err))
        self.port = int(line.split()[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=30 * SCALE)
        self.proc.stderr.read()
        check(rc == 0, "http_testserver exits 0 after stop (got %s)" % rc)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def start_fails(*args):
    p = subprocess.run([ARGS.server, *args], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stderr


def curl(*args):
    """Runs curl; returns (status, body)."""
    p = subprocess.run(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time",
                        str(int(TIMEOUT)), *args], capture_output=True, text=True)
    body, _, status = p.stdout.rpartition("\n")
    return int(status or 0), body


def raw(port, data, read_timeout=None):
    """Sends bytes on a fresh connection and returns everything read until the server closes or
    the timeout passes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout or TIMEOUT)
    s.sendall(data)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


TABLE = json.loads(subprocess.run([ARGS.optable, "--json"], check=True, capture_output=True,
                                  text=True).stdout)
OPS = [o["name"] for o in TABLE["ops"]]


def test_routes_and_mapping():
    with Server("--max-body", "65536") as s:
        # GET /v1/health and POST /v1/health
        r = requests.get(s.url + "/v1/health", timeout=TIMEOUT)
        check(r.status_code == 200 and r.json() == {"v": 1, "ok": True, "status": "serving",
                                                    "uptime_s": 1.5, "documents": 3},
              "GET /v1/health: %s %s" % (r.status_code, r.text))
        check(r.headers["Content-Type"] == "application/json", "health content type")
        r = requests.post(s.url + "/v1/health", json={}, timeout=TIMEOUT)
        check(r.status_code == 200 and r.json()["status"] == "serving", "POST /v1/health")
        # op and v filled in from the path; the reply body is exactly the handler's reply
        r = requests.post(s.url + "/v1/stats", json={"req_id": "c-1"}, timeout=TIMEOUT)
        rec = json.loads(r.json()["received"])
        check(r.status_code == 200 and rec == {"v": 1, "op": "stats", "req_id": "c-1"},
              "stats: op and v filled: %s" % r.text)
        check(r.json()["req_id"] == "c-1", "req_id echoed")
        r = requests.post(s.url + "/v1/stats", data=b"", headers=JSON, timeout=TIMEOUT)
        check(r.status_code == 200 and json.loads(r.json()["received"]) == {"v": 1, "op": "stats"},
              "empty body is {}")
        r = requests.post(s.url + "/v1/stats", json={"v": 1, "op": "stats"}, timeout=TIMEOUT)
        check(r.status_code == 200, "op and v given, agreeing")
        # the body's bytes reach the daemon untouched (numbers as written)
        body = b'{"k": 1e400, "x": "\\u00e9"}'
        r = requests.post(s.url + "/v1/stats", data=body, headers=JSON, timeout=TIMEOUT)
        check(r.status_code == 200 and r.json()["received"] ==
              '{"v":1,"op":"stats","k": 1e400, "x": "\\u00e9"}', "body spliced: %s" % r.text)
        # op mismatch
        r = requests.post(s.url + "/v1/query", json={"op": "delete", "ids": ["x"]},
                          timeout=TIMEOUT)
        check(r.status_code == 400 and r.json()["error"]["code"] == "bad_request",
              "op mismatch refused: %s" % r.text)
        # query with fixed results
        r = requests.post(s.url + "/v1/query", json={"text": "cat", "k": 3}, timeout=TIMEOUT)
        check(r.status_code == 200 and [h["id"] for h in r.json()["results"]] ==
              ["cat", "report-7", "c2"], "query results")
        # every op of the table answers on POST /v1/<op> (the fake: add fails -> 500)
        for op in OPS:
            body = {"texts": ["bad_request"]} if op == "encode" else {}
            r = requests.post(s.url + "/v1/" + op, json=body, timeout=TIMEOUT)
            want = {"add": 500, "encode": 400}.get(op, 200)
            check(r.status_code == want and "ok" in r.json(),
                  "POST /v1/%s: %s %s" % (op, r.status_code, r.text))
        # malformed JSON, not an object, bad UTF-8, trailing data (the daemon's parser)
        for body, code in ((b'{"text":', "bad_json"), (b"[1,2]", "bad_json"),
                           (b'{"a":"\xff"}', "bad_utf8"), (b"{} x", "bad_json"),
                           (b'{"v":2}', "bad_version")):
            r = requests.post(s.url + "/v1/stats", data=body, headers=JSON, timeout=TIMEOUT)
            check(r.status_code == 400 and r.json()["error"]["code"] == code,
                  "malformed %r: %s %s" % (body, r.status_code, r.text))
        # the status table, through real replies
        for code, status in (("busy", 503), ("no_space", 507), ("too_large", 413),
                             ("unauthorized", 401), ("unknown_op", 404), ("bad_k", 400),
                             ("internal", 500), ("io_error", 500), ("exists", 409),
                             ("req_id_reused", 409), ("shutting_down", 503),
                             ("no_collection", 404),
                             ("new_code", 500)):
            r = requests.post(s.url + "/v1/encode", json={"texts": [code]}, timeout=TIMEOUT)
            check(r.status_code == status, "code %s -> %s (got %s)" % (code, status,
                                                                        r.status_code))
            if code == "busy":
                check(r.headers.get("Retry-After") == "1", "busy has Retry-After")
        # unknown route, unknown op, wrong method, content type, Host
        r = requests.get(s.url + "/nope", timeout=TIMEOUT)
        check(r.status_code == 404 and r.json()["error"]["code"] == "unknown_op", "404 route")
        r = requests.post(s.url + "/v1/HEALTH", json={}, timeout=TIMEOUT)
        check(r.status_code == 404, "404 unknown op (names are exact)")
        r = requests.get(s.url + "/v1/query", timeout=TIMEOUT)
        check(r.status_code == 405 and r.headers.get("Allow") == "POST", "405 with Allow")
        r = requests.put(s.url + "/v1/health", timeout=TIMEOUT)
        check(r.status_code == 405 and r.headers.get("Allow") == "GET, HEAD, POST", "405 health")
        r = requests.post(s.url + "/", timeout=TIMEOUT)
        check(r.status_code == 405 and r.headers.get("Allow") == "GET, HEAD", "405 page")
        r = requests.post(s.url + "/v1/stats", data="{}",
                          headers={"Content-Type": "text/plain"}, timeout=TIMEOUT)
        check(r.status_code == 415, "415 without application/json: %s" % r.status_code)
        r = requests.post(s.url + "/v1/stats", data="{}",
                          headers={"Content-Type": "application/json; charset=utf-8"},
                          timeout=TIMEOUT)
        check(r.status_code == 200, "application/json with charset")
        r = requests.get(s.url + "/v1/health", headers={"Host": "rebound.example:8780"},
                         timeout=TIMEOUT)
        check(r.status_code == 403, "403 for a non-loopback Host: %s" % r.status_code)
        r = requests.get(s.url + "/v1/health", headers={"Host": "localhost"}, timeout=TIMEOUT)
        check(r.status_code == 200, "Host localhost")
        # HEAD
        r = requests.head(s.url + "/openapi.json", timeout=TIMEOUT)
        check(r.status_code == 200 and r.content == b"", "HEAD /openapi.json")
        # the same through curl
        st, body = curl(s.url + "/v1/health")
        check(st == 200 and json.loads(body)["status"] == "serving", "curl health")
        st, body = curl("-H", "Content-Type: application/json", "-d", '{"text":"x","k":2}',
                        s.url + "/v1/query")
        check(st == 200 and len(json.loads(body)["results"]) == 3, "curl query")
        for op in OPS:
            st, body = curl("-H", "Content-Type: application/json", "-d", "{}",
                            s.url + "/v1/" + op)
            check(st in (200, 400, 500) and "\"ok\"" in body, "curl /v1/%s: %s" % (op, st))
        st, body = curl("-X", "DELETE", s.url + "/v1/query")
        check(st == 405, "curl 405")

        # /openapi.json: every op of the table with its members, the error shape, bearer auth
        r = requests.get(s.url + "/openapi.json", timeout=TIMEOUT)
        doc = r.json()
        check(doc["openapi"].startswith("3."), "openapi version")
        for o in TABLE["ops"]:
            p = doc["paths"].get("/v1/" + o["name"])
            check(p is not None and "post" in p, "openapi has /v1/%s" % o["name"])
            if not p:
                continue
            schema = p["post"]["requestBody"]["content"]["application/json"]["schema"]
            for m in o["members"]:
                check(m["name"] in schema["properties"], "openapi %s.%s" % (o["name"], m["name"]))
                check(schema["properties"][m["name"]].get("x-sbert-type") == m["type"],
                      "openapi type of %s.%s" % (o["name"], m["name"]))
            req = {m["name"] for m in o["members"] if m["required"]}
            check(set(schema.get("required", [])) == req, "openapi required of %s" % o["name"])
        check(set(p[len("/v1/"):] for p in doc["paths"] if p.startswith("/v1/")) == set(OPS),
              "openapi lists exactly the table's ops")
        check("get" in doc["paths"]["/v1/health"], "openapi GET /v1/health")
        check(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer",
              "openapi bearer")
        check("error" in doc["components"]["schemas"]["ErrorReply"]["properties"],
              "openapi error shape")
        # /metrics passes through
        r = requests.get(s.url + "/metrics", timeout=TIMEOUT)
        check(r.status_code == 200 and r.headers["Content-Type"].startswith(
            "text/plain; version=0.0.4") and 'sbertd_requests_total{op="query"} 3' in r.text,
            "metrics: %s %r" % (r.status_code, r.headers.get("Content-Type")))
        # the page
        r = requests.get(s.url + "/", timeout=TIMEOUT)
        check(r.status_code == 200 and r.headers["Content-Type"].startswith("text/html") and
              "/v1/query" in r.text and "<script>" in r.text and "http://" not in r.text.replace(
                  "http://www.w3.org", ""), "page served, self-contained")


def test_bodies():
    with Server("--max-body", "65536") as s:
        # Content-Length over the limit: 413 at once, before any body byte is sent
        t = raw(s.port, b"POST /v1/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                        b"application/json\r\nContent-Length: 1000000000\r\n\r\n")
        check(t.startswith(b"HTTP/1.1 413") and b'"too_large"' in t,
              "413 from Content-Length without the body: %r" % t[:80])
        r = requests.post(s.url + "/v1/stats", data=b'{"x":"' + b"a" * 70000 + b'"}',
                          headers=JSON, timeout=TIMEOUT)
        check(r.status_code == 413 and r.json()["error"]["code"] == "too_large", "413 requests")
        # exactly at the limit works
        body = b'{"x":"' + b"a" * (65536 - 8) + b'"}'
        r = requests.post(s.url + "/v1/stats", data=body, headers=JSON, timeout=TIMEOUT)
        check(r.status_code == 200 and r.json()["received_len"] == 65536 + len('"v":1,"op":"stats",'),
              "a body of exactly max_body_bytes: %s" % r.status_code)

        # chunked bodies (a generator makes requests send Transfer-Encoding: chunked)
        def chunks(parts):
            yield from parts

        r = requests.post(s.url + "/v1/stats", data=chunks([b'{"req_id":', b'"ch-1"}']),
                          headers=JSON, timeout=TIMEOUT)
        check(r.status_code == 200 and json.loads(r.json()["received"])["req_id"] == "ch-1",
              "small chunked body")
        r = requests.post(s.url + "/v1/stats",
                          data=chunks([b'{"x":"'] + [b"a" * 8192] * 10 + [b'"}']), headers=JSON,
                          timeout=TIMEOUT)
        check(r.status_code == 413, "oversized chunked body: 413 (got %s)" % r.status_code)
        # far over the limit (past 2 x max): cut off without a reply, the server goes on
        try:
            r = requests.post(s.url + "/v1/stats", data=chunks([b'{"x":"'] + [b"a" * 65536] * 64),
                              headers=JSON, timeout=TIMEOUT)
            check(r.status_code == 413, "huge chunked: 413 or closed (got %s)" % r.status_code)
        except requests.exceptions.ConnectionError:
            pass
        r = requests.get(s.url + "/v1/health", timeout=TIMEOUT)
        check(r.status_code == 200, "serving after oversized bodies")
        # curl's chunked upload too
        st, body = curl("-H", "Content-Type: application/json", "-H",
                        "Transfer-Encoding: chunked", "-d", '{"req_id":"c"}', s.url + "/v1/stats")
        check(st == 200, "curl chunked")


def test_large_body():
    with Server() as s:  # the default limit, 64 MiB: a body past the 1 MiB reserved up front
        body = b'{"x":"' + b"a" * (3 << 20) + b'"}'
        r = requests.post(s.url + "/v1/stats", data=body, headers=JSON, timeout=TIMEOUT * 3)
        check(r.status_code == 200 and r.json()["received_len"] == len(body) + len(
            '"v":1,"op":"stats",'), "a 3 MiB body: %s" % r.status_code)


def test_token():
    with Server("--token", "s3cret") as s:
        r = requests.post(s.url + "/v1/query", json={"text": "x"}, timeout=TIMEOUT)
        check(r.status_code == 401 and r.json()["error"]["code"] == "unauthorized" and
              r.headers.get("WWW-Authenticate", "").startswith("Bearer"), "401 without token")
        r = requests.post(s.url + "/v1/query", json={"text": "x"},
                          headers={"Authorization": "Bearer wrong"}, timeout=TIMEOUT)
        check(r.status_code == 401, "401 wrong token")
        r = requests.post(s.url + "/v1/query", json={"text": "x"},
                          headers={"Authorization": "Bearer s3cre"}, timeout=TIMEOUT)
        check(r.status_code == 401, "401 prefix of the token")
        r = requests.post(s.url + "/v1/query", json={"text": "x"},
                          headers={"Authorization": "Bearer s3cret"}, timeout=TIMEOUT)
        check(r.status_code == 200, "token accepted (and handed to the daemon): %s" % r.text)
        r = requests.get(s.url + "/metrics", timeout=TIMEOUT)
        check(r.status_code == 401, "metrics need the token")
        r = requests.get(s.url + "/metrics", headers={"Authorization": "Bearer s3cret"},
                         timeout=TIMEOUT)
        check(r.status_code == 200, "metrics with the token")
        check(requests.get(s.url + "/nope", timeout=TIMEOUT).status_code == 401,
              "an unknown path without the token is 401")
        check(requests.get(s.url + "/nope", headers={"Authorization": "Bearer s3cret"},
                           timeout=TIMEOUT).status_code == 404, "and 404 with it")
        for path in ("/", "/openapi.json"):
            check(requests.get(s.url + path, timeout=TIMEOUT).status_code == 200,
                  "%s needs no token" % path)
        st, _ = curl("-H", "Authorization: Bearer s3cret", s.url + "/v1/health")
        check(st == 200, "curl with token")
        st, _ = curl(s.url + "/v1/health")
        check(st == 401, "curl without token")


def test_binding():
    rc, err = start_fails("--address", "0.0.0.0:0")
    check(rc == 2 and "loopback" in err, "0.0.0.0 refused without allow_remote: %s" % err)
    rc, err = start_fails("--address", "[::]:0")
    check(rc == 2 and "loopback" in err, ":: refused without allow_remote: %s" % err)
    rc, err = start_fails("--address", "nonsense")
    check(rc == 2, "a malformed address is refused")
    with Server("--address", "0.0.0.0:0", "--allow-remote") as s:
        r = requests.get(s.url + "/v1/health", headers={"Host": "search.example"},
                         timeout=TIMEOUT)
        check(r.status_code == 200, "allow_remote: any address, any Host")
    with Server("--address", "localhost:0") as s:
        check(requests.get(s.url + "/v1/health", timeout=TIMEOUT).status_code == 200,
              "localhost:0")
    if socket.has_ipv6:
        try:
            probe = socket.socket(socket.AF_INET6)
            probe.bind(("::1", 0))
            probe.close()
            v6 = True
        except OSError:
            v6 = False
        if v6:
            with Server("--address", "[::1]:0") as s:
                r = requests.get("http://[::1]:%d/v1/health" % s.port, timeout=TIMEOUT)
                check(r.status_code == 200, "[::1]:0 serves, Host [::1] is loopback")
    with Server("--no-metrics") as s:
        check(requests.get(s.url + "/metrics", timeout=TIMEOUT).status_code == 404,
              "no metrics callback: 404")
    with Server("--fd") as s:  # a socket handed over, as systemd does
        check(requests.get(s.url + "/v1/health", timeout=TIMEOUT).status_code == 200,
              "listen_fd")


def test_slowloris_keepalive_concurrency():
    with Server("--timeout", "30", "--deadline", "2") as s:
        # a client that trickles its headers one byte every 0.3 s is cut off by the header
        # deadline (it never goes idle long enough for the idle timeout); meanwhile others are
        # served
        slow = socket.create_connection(("127.0.0.1", s.port), timeout=TIMEOUT)
        head = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 200
        sent, cut = 0, False
        start = time.monotonic()
        served_meanwhile = 0
        while sent < len(head) and time.monotonic() - start < 30 * SCALE:
            try:
                slow.send(head[sent:sent + 1])
                sent += 1
            except OSError:
                cut = True
                break
            slow.setblocking(False)
            try:
                if slow.recv(1) == b"":
                    cut = True
                    break
            except BlockingIOError:
                pass
            except OSError:
                cut = True
                break
            slow.setblocking(True)
            served_meanwhile += requests.get(s.url + "/v1/health",
                                             timeout=TIMEOUT).status_code == 200
            time.sleep(0.3)
        slow.close()
        check(cut and sent < len(head), "slowloris cut off (after %d of %d bytes)" % (
            sent, len(head)))
        check(served_meanwhile >= 2, "others served during the slowloris (%d)" % served_meanwhile)

        # keep-alive: several requests on one connection
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=TIMEOUT)
        socks = set()
        for i in range(5):
            c.request("POST", "/v1/stats", body=json.dumps({"req_id": "k%d" % i}),
                      headers=JSON)
            r = c.getresponse()
            body = json.loads(r.read())
            check(r.status == 200 and body["req_id"] == "k%d" % i, "keep-alive request %d" % i)
            socks.add(id(c.sock))
            check(c.sock is not None, "connection kept open after request %d" % i)
        check(len(socks) == 1, "one connection for 5 requests")
        c.close()

        # 16 concurrent clients, each with its own kept-alive connection
        errors = []

        def client(n):
            with requests.Session() as sess:
                for i in range(10):
                    try:
                        r = sess.post(s.url + "/v1/query", json={"text": "slow", "req_id":
                                                                 "%d-%d" % (n, i)},
                                      timeout=TIMEOUT)
                        if r.status_code != 200 or r.json()["req_id"] != "%d-%d" % (n, i):
                            errors.append((n, i, r.status_code))
                    except Exception as e:  # noqa: BLE001 - collected and reported
                        errors.append((n, i, repr(e)))

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, "16 concurrent clients: %s" % errors[:3])
        r = requests.post(s.url + "/v1/stats", json={}, timeout=TIMEOUT)
        check(r.json()["max_inflight"] >= 8,
              "requests ran concurrently (max %s at once)" % r.json()["max_inflight"])


def test_thread_pool():
    with Server("--threads", "4") as s:
        errors = []

        def client(n):
            with requests.Session() as sess:
                for i in range(5):
                    r = sess.post(s.url + "/v1/query", json={"text": "slow"}, timeout=TIMEOUT)
                    if r.status_code != 200:
                        errors.append(r.status_code)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, "thread pool: 16 clients served")


for t in (test_routes_and_mapping, test_bodies, test_large_body, test_token, test_binding,
          test_slowloris_keepalive_concurrency, test_thread_pool):
    print("--", t.__name__, flush=True)
    try:
        t()
    except Exception as e:  # noqa: BLE001 - a crash of one test is a failure, the rest still run
        import traceback
        traceback.print_exc()
        FAILURES.append("%s raised %r" % (t.__name__, e))
if FAILURES:
    print("test_http.py: %d failures" % len(FAILURES))
    sys.exit(1)
print("test_http.py: ok")
