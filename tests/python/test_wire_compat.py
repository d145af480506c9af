"""nng (pynng's bundled library) and nanomsg (sbertd's and sbertctl's) speak the same SP REQ/REP
wire protocol, both ways, over ipc and tcp: the premise of the Python client (issue 15)."""
import json
import os
import socket
import subprocess
import tempfile
import threading

import pynng
import pytest

import sbertd
from conftest import start_daemon


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture(scope="module")
def both(model_dir):
    """sbertd listening on an ipc socket and on a loopback tcp port."""
    tcp = "tcp://127.0.0.1:%d" % free_tcp_port()
    d = start_daemon(model_dir, extra=["--listen", tcp])
    yield d, tcp
    rc = d.stop()
    d.cleanup()
    assert rc == 0


def test_versions_reported():
    # for the record in the test log: which nng pynng bundles
    v = pynng.ffi.string(pynng.lib.nng_version()).decode()
    print("pynng", pynng.__version__, "nng", v)
    assert v.count(".") == 2


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_pynng_req_to_sbertd(both, transport):
    d, tcp = both
    url = d.url if transport == "ipc" else tcp
    # the bare nng socket first: no client code in between
    with pynng.Req0(recv_timeout=30000, send_timeout=30000) as s:
        s.dial(url, block=True)
        s.send(b'{"v":1,"op":"health"}')
        r = json.loads(s.recv())
        assert r["ok"] is True and r["status"] == "serving"
        # and an error reply, and a request with a trailing NUL as nanomsg C clients send
        s.send(b'{"v":1,"op":"nope"}')
        assert json.loads(s.recv())["error"]["code"] == "unknown_op"
        s.send(b'{"v":1,"op":"health"}\0')
        assert json.loads(s.recv())["ok"] is True
    with sbertd.Client(url) as c:
        ids = c.add(["The cat sits outside via " + transport], ids=["cat-" + transport])
        assert ids == ["cat-" + transport]
        hits = c.query("A cat is outdoors", k=1, filter=None)
        assert hits[0].id.startswith("cat-")
        # a large reply (beyond nanomsg's and nng's 1 MiB default receive limit) arrives whole
        emb = c.encode(["x" * 100] * 600)
        assert emb.shape == (600, 384)


def rep_server(url, handler, ready, stop, seen):
    with pynng.Rep0(recv_timeout=200) as s:
        s.listen(url)
        ready.set()
        while not stop.is_set():
            try:
                raw = s.recv()
            except pynng.Timeout:
                continue
            seen.append(raw)
            s.send(handler(raw))


def fake_sbertd(raw):
    """Answers as sbertd would (PROTOCOL.md section 4) for health and add."""
    req = json.loads(raw.rstrip(b"\0"))
    base = {"v": 1, "ok": True}
    if "req_id" in req:
        base["req_id"] = req["req_id"]
    if req.get("op") == "health":
        base.update(status="serving", uptime_s=1.5, documents=42)
    elif req.get("op") == "add":
        docs = req["documents"]
        base.update(ids=[d.get("id", "gen-%d" % i) for i, d in enumerate(docs)],
                    replaced=[False] * len(docs), truncated=[])
    else:
        base = {"v": 1, "ok": False, "error": {"code": "unknown_op", "message": "fake"}}
    return json.dumps(base).encode()


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_sbertctl_to_pynng_rep(sbertctl, transport):
    tmp = tempfile.mkdtemp(prefix="sbertd-py-")
    url = ("ipc://" + os.path.join(tmp, "fake.sock") if transport == "ipc"
           else "tcp://127.0.0.1:%d" % free_tcp_port())
    ready, stop, seen = threading.Event(), threading.Event(), []
    t = threading.Thread(target=rep_server, args=(url, fake_sbertd, ready, stop, seen))
    t.start()
    try:
        assert ready.wait(10)
        run = lambda *a: subprocess.run([sbertctl, "--socket", url, "--timeout", "30"] + list(a),
                                        capture_output=True, text=True, timeout=60)
        r = run("health")
        assert r.returncode == 0, r.stderr
        assert "serving, 42 documents" in r.stdout
        r = run("--json", "health")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["documents"] == 42
        r = run("add", "hello from sbertctl")
        assert r.returncode == 0, r.stderr
        assert "gen-0" in r.stdout
        req = json.loads(seen[-1].rstrip(b"\0"))
        assert req["op"] == "add" and req["req_id"] and req["documents"][0]["text"] == \
            "hello from sbertctl"
        assert [json.loads(x.rstrip(b"\0"))["op"] for x in seen] == ["health", "health", "add"]
    finally:
        stop.set()
        t.join()
