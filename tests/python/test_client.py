"""sbertd.Client against a real sbertd: every call, every error code mapped to its class,
retries that reuse the req_id, timeouts, endpoint discovery, tokens, threads."""
import json
import os
import re
import tempfile
import threading

import numpy as np
import pynng
import pytest

import sbertd
from conftest import ROOT, start_daemon

SENTENCES = ['The cat sits outside', 'A man is playing guitar', 'I love pasta',
             'The new movie is awesome', 'The cat plays in the garden', 'A woman watches TV',
             'The new movie is so great', 'Do you like pizza?']


@pytest.fixture
def client(daemon):
    with sbertd.Client(daemon.url, timeout=60) as c:
        yield c


def test_documents(client):
    ids = client.add(SENTENCES[:4], ids=["cat", None, "pasta", "movie"],
                     metadatas=[{"year": 2020}, None, {"year": 2024, "lang": "en"}, None])
    assert ids[0] == "cat" and ids[2] == "pasta" and ids[3] == "movie"
    assert isinstance(ids[1], str) and len(ids[1]) == 36  # generated (UUIDv7 layout)
    docs = client.get(["cat", "nope", "pasta"])
    assert docs[1] is None
    assert docs[0].text == SENTENCES[0] and docs[0].metadata == {"year": 2020}
    assert docs[2]["metadata"] == {"year": 2024, "lang": "en"}
    # upsert replaces text and metadata
    assert client.upsert("The cat sleeps inside", ids=["cat"], metadatas=[{"year": 2021}]) == [
        "cat"]
    d = client.get("cat", include=["text", "metadata", "vector"])[0]
    assert d.text == "The cat sleeps inside" and d.metadata == {"year": 2021}
    assert d.vector.dtype == np.float32 and d.vector.shape == (384,)
    np.testing.assert_allclose(d.vector, client.encode("The cat sleeps inside"), atol=1e-6)
    assert client.stats()["documents"] == 4 and client.health()["documents"] == 4
    assert client.delete(["cat", "never"]) == 1
    assert client.get(["cat"]) == [None]
    assert client.health()["status"] == "serving"


def test_query(client):
    client.add(SENTENCES, ids=["s%d" % i for i in range(8)],
               metadatas=[{"i": i, "even": i % 2 == 0} for i in range(8)])
    hits = client.query("A film I really enjoyed", k=2)
    assert [h.id for h in hits] == ["s6", "s3"]
    assert hits[0].score > hits[1].score > 0.4
    assert hits[0].text == SENTENCES[6] and hits[0].metadata == {"i": 6, "even": True}
    many = client.query(["A film I really enjoyed", "Someone eats pizza"], k=1)
    assert [[h.id for h in hs] for hs in many] == [["s6"], ["s7"]]
    # filter, min_score, include, by vector
    hits = client.query("A film I really enjoyed", k=8, filter={"even": True})
    assert {h.id for h in hits} <= {"s0", "s2", "s4", "s6"} and hits[0].id == "s6"
    hits = client.query("A film I really enjoyed", k=8, min_score=0.5)
    assert [h.id for h in hits] == ["s6", "s3"]
    hits = client.query("A film I really enjoyed", k=1, include=["vector"])
    assert hits[0].text is None and hits[0].vector.shape == (384,)
    v = client.encode("A film I really enjoyed")
    by_vec = client.query(vector=v, k=2)
    assert [h.id for h in by_vec] == ["s6", "s3"]
    assert abs(by_vec[0].score - client.query("A film I really enjoyed", k=1)[0].score) < 1e-5
    assert [[h.id for h in hs] for hs in client.query(vector=np.stack([v, v]), k=1)] == [
        ["s6"], ["s6"]]


def test_query_passages(client):
    """A long document's hits carry its best passage (byte offsets into its UTF-8 text);
    passages_per_document and group="passage" (PROTOCOL.md, query)."""
    filler = " ".join("The café board reviewed budget item %d for the district." % i
                      for i in range(400))
    deep = "The lighthouse keeper feeds his orange cat fresh sardines every Tuesday."
    text = filler + " " + deep + " " + filler
    client.add([text, "I love pasta"], ids=["long", "short"])
    hits = client.query("What does the lighthouse keeper feed his cat?", k=2)
    assert hits[0].id == "long" and isinstance(hits[0].passage, sbertd.Passage)
    p = hits[0].passage
    assert deep in p.text and text.encode()[p.start:p.end].decode() == p.text
    assert hits[0].passages is None
    hits = client.query("What does the lighthouse keeper feed his cat?", k=1,
                        passages_per_document=2, include=[])
    assert hits[0].text is None and len(hits[0].passages) == 2
    assert hits[0].passages[0] == hits[0].passage
    hits = client.query("What does the lighthouse keeper feed his cat?", k=3, group="passage")
    assert [h.id for h in hits].count("long") >= 2
    assert all(abs(h.score - h.passage.score) < 1e-6 for h in hits)


def test_keyword_and_hybrid_query(model_dir):
    """mode= reaches the daemon and the hits carry both scores and ranks: "pizza" is in one
    sentence only, so BM25 finds just it; hybrid ranks the movie sentences first for a film
    query; diversity keeps one of the two near-identical movie sentences out of the top 2."""
    d = start_daemon(model_dir)
    try:
        with sbertd.Client(d.url, timeout=60) as client:
            client.add(SENTENCES, ids=["s%d" % i for i in range(8)])
            hits = client.query("pizza", mode="keyword")
            assert [h.text for h in hits] == ["Do you like pizza?"]
            assert hits[0].keyword_rank == 1 and hits[0].dense_score is None and hits[0].keyword_score > 0
            hits = client.query("A film I really enjoyed", k=2, mode="hybrid")
            assert {h.text for h in hits} == {"The new movie is awesome", "The new movie is so great"}
            assert all(h.dense_rank is not None and h.dense_score is not None for h in hits)
            batch = client.query(["pizza", "A film I really enjoyed"], k=2, mode="hybrid")
            assert [h.id for h in batch[1]] == [h.id for h in hits]
            div = client.query("A film I really enjoyed", k=2, diversity=0.9)
            assert sum(h.text.startswith("The new movie") for h in div) == 1
    finally:
        assert d.stop() == 0
        d.cleanup()


def test_batch_query(model_dir):
    """Lists of texts or vectors go as batch queries (batch_size 3 here: 7 texts in 3
    requests), each list equal to the single query's; with max_reply_bytes = 8192 a batch of
    3 queries of k = 8 is too large and is sent again in halves."""
    d = start_daemon(model_dir, config="max_reply_bytes = 8192\n")
    try:
        with sbertd.Client(d.url, timeout=60, batch_size=3) as client:
            # ~400 bytes a result: 8 are ~3.2 KB, three queries' ~9.6 KB
            client.add(SENTENCES, ids=["s%d" % i for i in range(8)],
                       metadatas=[{"pad": "p" * 300}] * 8)
            texts = ["A film I really enjoyed", "Someone eats pizza", "a pet", "music", "TV",
                     "the garden", "great"]
            singles = [client.query(t, k=8) for t in texts]
            with pytest.raises(sbertd.TooLarge):
                client.call("query", texts=texts[:3], k=8)
            for got in (client.query(texts, k=8), client.query(texts=texts, k=8),
                        client.query(vectors=[client.encode(t) for t in texts], k=8)):
                assert len(got) == len(texts)
                for hs, want in zip(got, singles):
                    assert [h.id for h in hs] == [h.id for h in want]
                    assert all(abs(a.score - b.score) <= 1e-6 for a, b in zip(hs, want))
            with pytest.raises(ValueError):
                client.query(vectors=client.encode("one"))
    finally:
        assert d.stop() == 0
        d.cleanup()


def test_model_ops(client):
    e = client.encode(SENTENCES)
    assert e.shape == (8, 384) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert client.encode("one").shape == (384,)
    s = client.similarity("The new movie is awesome", "The new movie is so great")
    assert abs(s - 0.8939) < 5e-5  # the seed article's table
    m = client.similarity(["I love pasta"], ["Do you like pizza?", "A woman watches TV"])
    assert m.shape == (1, 2) and abs(m[0, 0] - 0.5096) < 5e-5
    np.testing.assert_allclose(m[0, 0], float(e[2] @ e[7]), atol=1e-5)
    pairs = client.pairs(texts=SENTENCES, n=3)
    assert [(p["a"]["text"], p["b"]["text"]) for p in pairs][0] == (
        'The new movie is awesome', 'The new movie is so great')
    client.add(SENTENCES)
    top = client.pairs(n=1)
    assert abs(top[0]["score"] - 0.8939) < 5e-5


def test_batches_over_max_batch(model_dir):
    d = start_daemon(model_dir, config="max_batch = 16\n")
    try:
        with sbertd.Client(d.url, batch_size=16) as c:
            texts = ["text number %d" % i for i in range(40)]
            ids = c.add(texts, ids=[str(i) for i in range(40)])
            assert ids == [str(i) for i in range(40)]
            assert c.encode(texts).shape == (40, 384)
            assert [x.text for x in c.get(ids)] == texts
            assert c.delete(ids) == 40
            with pytest.raises(sbertd.TooLarge) as ei:
                c.call("encode", texts=texts)
            assert ei.value.code == "too_large" and "max_batch" in ei.value.message
    finally:
        assert d.stop() == 0
        d.cleanup()


def test_count_list_patch_delete_filter(client):
    """count, list (scan), patch and delete by filter against the daemon; the collection member
    is passed as given (a collection that does not exist is NoCollection)."""
    ids = client.add(["alpha one", "beta two", "gamma three", "delta four"], ids=list("abcd"),
                     metadatas=[{"g": 1}, {"g": 2}, {"g": 1}, None])
    assert client.count() == 4 and client.count(filter={"g": 1}) == 2
    page = client.list(limit=3)
    assert [d["id"] for d in page["documents"]] == ["a", "b", "c"] and "cursor" in page
    assert [d.id for d in client.scan(page_size=1)] == ids
    assert [d.id for d in client.scan(filter={"g": 1}, page_size=1)] == ["a", "c"]
    assert client.patch("d", set={"g": 1, "new": True}) is True
    assert client.patch("nope", set={"g": 1}) is False
    assert client.patch_many([{"id": "a", "unset": ["g"]}, {"id": "b", "set": {"x": 1}}]) == [
        True, True]
    assert client.get(["d"])[0].metadata == {"g": 1, "new": True}
    with pytest.raises(sbertd.BadFilter):
        client.delete(filter={})
    with pytest.raises(ValueError):
        client.delete(["a"], filter={"g": 1})
    assert client.delete(filter={"g": 1}) == 2
    assert client.count() == 2 and [d.id for d in client.scan()] == ["a", "b"]
    with pytest.raises(sbertd.NoCollection) as ei:
        client.add(["x"], collection="notes")
    assert "notes" in ei.value.message


def test_collections(client, daemon):
    """create, list, describe and drop collections; documents and queries per collection, by
    argument and by the client's default collection."""
    client.add(["The cat sits outside"], ids=["d"])
    assert client.create_collection("papers", index="HNSW32,Flat")["index"] == "HNSW32,Flat"
    with pytest.raises(sbertd.Exists):
        client.create_collection("papers")
    with pytest.raises(sbertd.BadRequest):
        client.create_collection("../x")
    client.add(SENTENCES, ids=["p%d" % i for i in range(len(SENTENCES))], collection="papers")
    assert [c["name"] for c in client.list_collections()] == ["default", "papers"]
    d = client.describe_collection("papers")
    assert d["documents"] == len(SENTENCES) and d["index"] == "HNSW32,Flat" and d["bytes"] > 0
    with sbertd.Client(daemon.url, timeout=60, collection="papers") as pc:
        assert pc.count() == len(SENTENCES)
        assert pc.query("pizza", k=1)[0].id == "p7"
        assert [d is not None for d in pc.get(["d", "p0"])] == [False, True]
    assert client.count() == 1 and client.query("pizza", k=5)[0].id == "d"
    assert client.drop_collection("papers") == len(SENTENCES)
    with pytest.raises(sbertd.NoCollection):
        client.describe_collection("papers")
    with pytest.raises(sbertd.NoCollection):
        client.count(collection="papers")


def protocol_codes():
    text = open(os.path.join(ROOT, "proto", "PROTOCOL.md")).read()
    sec = text[text.index("## 5. Error codes"):]
    sec = sec[:sec.find("\n## ", 1)] if "\n## " in sec[1:] else sec  # section 5 alone
    return re.findall(r"^\| `([a-z_0-9]+)`", sec, re.M)


def test_one_class_per_code():
    codes = protocol_codes()
    assert len(codes) >= 22
    assert sorted(codes) == sorted(sbertd.BY_CODE), "PROTOCOL.md section 5 and errors.py differ"
    for code in codes:
        cls = sbertd.BY_CODE[code]
        assert issubclass(cls, sbertd.SbertdError) and cls.code == code
        e = sbertd.errors.from_reply({"v": 1, "ok": False, "error": {
            "code": code, "message": "m", "index": 3}})
        assert type(e) is cls and e.index == 3 and e.message == "m"
    e = sbertd.errors.from_reply({"v": 1, "ok": False, "error": {"code": "new_code",
                                                                 "message": "m"}})
    assert type(e) is sbertd.SbertdError and e.code == "new_code"


def test_errors_from_the_daemon(model_dir):
    d = start_daemon(model_dir, config="max_text_bytes = 1000\n")
    tmp = tempfile.mkdtemp(prefix="sbertd-py-")
    open(os.path.join(tmp, "x"), "w").close()
    try:
        c = sbertd.Client(d.url, retries=0)
        cases = [
            (lambda: c.send_raw(b'{"v":1,'), sbertd.BadJson),
            (lambda: c.send_raw(b'{"v":1,"op":"health","x":"\xc3\x28"}'), sbertd.BadUtf8),
            (lambda: c.send_raw(b'{"v":2,"op":"health"}'), sbertd.BadVersion),
            (lambda: c.call("nope"), sbertd.UnknownOp),
            (lambda: c.call("health", bogus=1), sbertd.BadRequest),
            (lambda: c.query("x", k=0), sbertd.BadK),
            (lambda: c.query("x", min_score=2), sbertd.BadScore),
            (lambda: c.query("x", filter={"a": {"$nope": 1}}), sbertd.BadFilter),
            (lambda: c.query(vector=[0.0] * 384), sbertd.BadVector),
            (lambda: c.add(["a"], embeddings=np.ones((1, 384))), sbertd.BadVector),
            (lambda: c.add(["a", ""]), sbertd.EmptyText),
            (lambda: c.add(["a" * 1001]), sbertd.TextTooLong),
            (lambda: c.add(["a"], ids=["x" * 600]), sbertd.BadId),
            (lambda: c.add(["a"], metadatas=["not an object"]), sbertd.BadMetadata),
            (lambda: c.call("similarity", a=["a"] * 1100, b=["b"] * 1000), sbertd.TooLarge),
            (lambda: c.backup(tmp), sbertd.Exists),
        ]
        for f, cls in cases:
            with pytest.raises(cls) as ei:
                f()
            assert ei.value.code == cls.code and ei.value.message, cls
        with pytest.raises(sbertd.EmptyText) as ei:
            c.add(["a", ""])
        assert ei.value.index == 1
        c.add(["first"], req_id="same")
        with pytest.raises(sbertd.ReqIdReused):
            c.add(["second"], req_id="same")
        c.close()
    finally:
        assert d.stop() == 0
        d.cleanup()


def test_token(model_dir, monkeypatch):
    d = start_daemon(model_dir, config="auth_token = s3cret\n")
    try:
        monkeypatch.delenv("SBERTD_TOKEN", raising=False)
        with sbertd.Client(d.url) as c:
            with pytest.raises(sbertd.Unauthorized):
                c.health()
        with sbertd.Client(d.url, token="s3cret") as c:
            assert c.health()["status"] == "serving"
        monkeypatch.setenv("SBERTD_TOKEN", "s3cret")
        with sbertd.Client(d.url) as c:
            assert c.add(["with a token from the environment"])
    finally:
        assert d.stop() == 0
        d.cleanup()


def test_discovery(monkeypatch, tmp_path):
    monkeypatch.setenv("SBERTD_SOCKET", "tcp://127.0.0.1:5557")
    assert sbertd.resolve_endpoint() == "tcp://127.0.0.1:5557"
    assert sbertd.resolve_endpoint("ipc:///x.sock") == "ipc:///x.sock"
    monkeypatch.delenv("SBERTD_SOCKET")
    monkeypatch.chdir(tmp_path)
    expect = ("ipc:///run/sbertd/sbertd.sock" if os.path.exists("/run/sbertd/sbertd.sock")
              else "ipc://./var/sbertd.sock")
    assert sbertd.resolve_endpoint() == expect
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "sbertd.sock").touch()
    assert sbertd.resolve_endpoint() == "ipc://./var/sbertd.sock"
    with pytest.raises(sbertd.Unreachable) as ei:
        sbertd.Client()  # a plain file, not a socket
    assert "not a socket" in str(ei.value)
    with pytest.raises(sbertd.Unreachable) as ei:
        sbertd.Client("ipc://" + str(tmp_path / "none.sock"))
    assert "is sbertd running?" in str(ei.value)
    with pytest.raises(sbertd.Unreachable):
        sbertd.Client("nonsense")


def test_discovery_finds_the_checkout_socket(daemon, monkeypatch, tmp_path):
    """From a directory whose var/sbertd.sock is a live sbertd, Client() finds it (as sbertctl
    run from a checkout does)."""
    (tmp_path / "var").mkdir()
    os.symlink(daemon.url[len("ipc://"):], tmp_path / "var" / "sbertd.sock")
    monkeypatch.delenv("SBERTD_SOCKET", raising=False)
    monkeypatch.chdir(tmp_path)
    with sbertd.Client() as c:
        assert c.url == "ipc://./var/sbertd.sock" and c.health()["status"] == "serving"


class LossyProxy:
    """A REP endpoint in front of sbertd that forwards each request and drops the first
    `drop` replies, as a lost reply or a timeout does; records what passed."""

    def __init__(self, upstream, url, drop=1):
        self.upstream, self.url, self.drop = upstream, url, drop
        self.requests, self.replies = [], []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.t = threading.Thread(target=self.run)
        self.t.start()
        assert self.ready.wait(10)

    def run(self):
        with pynng.Rep0(recv_timeout=100) as rep, pynng.Req0(recv_timeout=60000,
                                                           resend_time=-1) as up:
            rep.listen(self.url)
            up.dial(self.upstream, block=True)
            self.ready.set()
            while not self.stop.is_set():
                try:
                    req = rep.recv()
                except pynng.Timeout:
                    continue
                self.requests.append(req)
                up.send(req)
                reply = up.recv()
                self.replies.append(reply)
                if self.drop > 0:
                    self.drop -= 1  # executed by sbertd; the client never hears of it
                    continue
                rep.send(reply)

    def close(self):
        self.stop.set()
        self.t.join()


def test_retry_after_lost_reply_applies_once(daemon, tmp_path):
    proxy = LossyProxy(daemon.url, "ipc://" + str(tmp_path / "proxy.sock"), drop=1)
    try:
        with sbertd.Client(proxy.url, timeout=3, retries=5) as c:
            ids = c.add(["stored once, whatever the retries"])  # generated id: 1st run's
        # (a slow machine may time out more than once: every try is the same request)
        assert len(proxy.requests) >= 2 and len(set(proxy.requests)) == 1, \
            "the retry is not the same request (same req_id)"
        replies = [json.loads(r) for r in proxy.replies]
        assert all(r == replies[0] for r in replies), "the retry was executed again"
        assert ids == replies[0]["ids"]
        with sbertd.Client(daemon.url) as c:
            assert c.health()["documents"] == 1
            assert c.get(ids)[0].text == "stored once, whatever the retries"
    finally:
        proxy.close()


def test_timeout(tmp_path):
    """A server that never answers: Timeout after 1 + retries sends of the same request."""
    url = "ipc://" + str(tmp_path / "silent.sock")
    seen = []
    with pynng.Rep0(recv_timeout=100) as rep:
        rep.listen(url)
        stop = threading.Event()

        def sink():
            while not stop.is_set():
                try:
                    seen.append(rep.recv())
                except pynng.Timeout:
                    pass
        t = threading.Thread(target=sink)
        t.start()
        try:
            c = sbertd.Client(url, timeout=0.5, retries=2)
            with pytest.raises(sbertd.Timeout) as ei:
                c.delete(["a"])
            assert isinstance(ei.value, TimeoutError) and ei.value.code == "timeout"
            c.close()
            for _ in range(100):  # the sink may lag behind on a loaded machine
                if len(seen) >= 3:
                    break
                threading.Event().wait(0.1)
        finally:
            stop.set()
            t.join()
    assert len(seen) == 3 and len(set(seen)) == 1
    assert json.loads(seen[0])["req_id"]


def test_threads_share_one_client(client):
    """16 threads on one Client (one socket, a context each): every reply is its own."""
    client.add(SENTENCES, ids=["s%d" % i for i in range(8)])
    errors = []

    def worker(i):
        try:
            for _ in range(5):
                q = SENTENCES[i % 8]
                assert client.query(q, k=1)[0].id == "s%d" % (i % 8)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors
