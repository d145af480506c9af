"""The sbertd client: sbertd's own protocol (proto/PROTOCOL.md) over nng's REQ socket (pynng).

nng speaks the same SP wire protocol as the nanomsg library sbertd is built on (REQ/REP over
ipc:// and tcp://), which tests/python/test_wire_compat.py checks both ways.
"""
import json
import os
import socket as _socket
import stat
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import pynng

from . import errors

#: The endpoints sbertctl tries when neither an argument nor SBERTD_SOCKET names one.
CHECKOUT_SOCKET_PATH = "./var/sbertd.sock"
SYSTEM_SOCKET_PATH = "/run/sbertd/sbertd.sock"

#: Write operations: they carry a req_id, so that a retried one is applied once.
WRITE_OPS = frozenset(("add", "delete", "backup", "reindex", "patch", "create_collection",
                       "drop_collection"))

#: sbertd's default max_batch: longer lists are sent in several requests.
DEFAULT_BATCH = 4096

BUSY_RETRIES = 5
BUSY_FIRST_PAUSE = 0.1


def resolve_endpoint(socket=None):
    """The endpoint URL, by sbertctl's rules: the argument, else $SBERTD_SOCKET, else
    ipc://./var/sbertd.sock when that socket exists (a checkout's scripts/run.sh), else
    ipc:///run/sbertd/sbertd.sock when it exists (the installed service), else
    ipc://./var/sbertd.sock."""
    if socket:
        return socket
    env = os.environ.get("SBERTD_SOCKET")
    if env:
        return env
    if not os.path.exists(CHECKOUT_SOCKET_PATH) and os.path.exists(SYSTEM_SOCKET_PATH):
        return "ipc://" + SYSTEM_SOCKET_PATH
    return "ipc://" + CHECKOUT_SOCKET_PATH


def _probe(url, timeout):
    """Fails fast with sbertctl's messages when the endpoint plainly cannot be reached (nng's own
    dialer would otherwise keep retrying in the background and every call would time out)."""
    if url.startswith("ipc://"):
        path = url[6:]
        try:
            st = os.stat(path)
        except OSError as e:
            raise errors.Unreachable("cannot reach sbertd at %s: %s (is sbertd running? set "
                                     "socket= or SBERTD_SOCKET)" % (url, e.strerror)) from None
        if not stat.S_ISSOCK(st.st_mode):
            raise errors.Unreachable("cannot reach sbertd at %s: not a socket" % url)
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.connect(path)
        except OSError as e:
            raise errors.Unreachable("cannot reach sbertd at %s: %s (a stale socket file? is "
                                     "sbertd running?)" % (url, e.strerror)) from None
        finally:
            s.close()
    elif url.startswith("tcp://"):
        hostport = url[6:]
        host, sep, port = hostport.rpartition(":")
        if not sep or not port.isdigit():
            raise errors.Unreachable("%s: expected tcp://HOST:PORT" % url)
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            _socket.create_connection((host, int(port)), timeout=timeout).close()
        except OSError as e:
            raise errors.Unreachable("cannot reach sbertd at %s: %s" % (url, e)) from None
    elif "://" not in url:
        raise errors.Unreachable("%s: not an endpoint URL (expected ipc://PATH or "
                                 "tcp://HOST:PORT)" % url)


@dataclass
class Passage:
    """A passage of a document hit: its bytes text.encode()[start:end] of the document's UTF-8
    text (offsets are bytes, not characters), that text, and its cosine with the query."""
    start: int
    end: int
    text: str
    score: float

    def __getitem__(self, key):
        return getattr(self, key)


@dataclass
class Hit:
    """One query result: a stored document and its score (in dense mode the document's score
    from its passages: PROTOCOL.md, query; BM25 in keyword mode; the fused score in hybrid mode).
    A dense hit carries passage, its best passage (with group="passage" the hit is that
    passage), and passages, its best passages when passages_per_document was given. Keyword and
    hybrid hits carry dense_score (None when unknown), keyword_score and their 1-based rank in
    each ranking (None when not among its candidates), and no passage."""
    id: str
    score: float
    text: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None
    vector: Optional[np.ndarray] = field(default=None, repr=False)
    dense_score: Optional[float] = None
    keyword_score: Optional[float] = None
    dense_rank: Optional[int] = None
    keyword_rank: Optional[int] = None
    passage: Optional[Passage] = None
    passages: Optional[List[Passage]] = None

    def __getitem__(self, key):  # hit["id"] as well as hit.id
        return getattr(self, key)


@dataclass
class Document:
    """A stored document, as get() returns it."""
    id: str
    text: Optional[str] = None
    metadata: Optional[Dict[str, Any]] = None
    vector: Optional[np.ndarray] = field(default=None, repr=False)

    def __getitem__(self, key):
        return getattr(self, key)


def _as_list(x):
    return [x] if isinstance(x, str) else list(x)


def _vector(v):
    return None if v is None else np.asarray(v, dtype=np.float32)


def _passage(p):
    return None if p is None else Passage(p["start"], p["end"], p["text"], p["score"])


def _hit(h):
    ps = h.get("passages")
    return Hit(h["id"], h["score"], h.get("text"), h.get("metadata"), _vector(h.get("vector")),
               h.get("dense_score"), h.get("keyword_score"), h.get("dense_rank"),
               h.get("keyword_rank"), _passage(h.get("passage")),
               None if ps is None else [_passage(p) for p in ps])


class Client:
    """A connection to sbertd.

    socket: the endpoint URL (ipc://PATH or tcp://HOST:PORT), found as sbertctl finds it when
    None (resolve_endpoint). token: the auth_token (default $SBERTD_TOKEN). timeout: seconds to
    wait for each reply. retries: how often a request that timed out is sent again — with the
    same req_id, so that the daemon answers a retried write from its reply cache instead of
    applying it twice (PROTOCOL.md section 2). A ``busy`` reply is retried too (the daemon ran
    nothing), up to 5 times with a doubling pause. collection: the default collection passed to
    the daemon with every operation that takes one (for a daemon that has collections).

    Thread-safe: every call opens its own nng context on the one socket, so threads share the
    connection and their requests are in flight at once.
    """

    def __init__(self, socket=None, token=None, timeout=30.0, retries=2, collection=None,
                 batch_size=DEFAULT_BATCH):
        self.url = resolve_endpoint(socket)
        self.token = token if token is not None else os.environ.get("SBERTD_TOKEN")
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.collection = collection
        self.batch_size = int(batch_size)
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = 0
        self._lock = threading.Lock()
        _probe(self.url, self.timeout)
        ms = max(1, int(self.timeout * 1000))
        # The REQ socket's own re-send (nng's resend_time, nanomsg's NN_REQ_RESEND_IVL) is off:
        # this client re-sends itself, on a timeout, with the same req_id.
        self._sock = pynng.Req0(recv_timeout=ms, send_timeout=ms, resend_time=-1,
                                recv_max_size=0)
        try:
            self._sock.dial(self.url, block=True)
        except pynng.NNGException as e:
            self._sock.close()
            raise errors.Unreachable("cannot reach sbertd at %s: %s" % (self.url, e)) from None

    # ---- plumbing --------------------------------------------------------------------------

    def close(self):
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def new_req_id(self):
        """A request id unique to this client and call (prefix-counter, as sbertctl makes)."""
        with self._lock:
            self._counter += 1
            return "%s-%d" % (self._prefix, self._counter)

    def _exchange(self, data, timeout):
        """One send and receive on a fresh context: a reply that arrives after we gave up goes
        to that closed context and is dropped by nng, never to a later call."""
        ctx = self._sock.new_context()
        try:
            if timeout is not None:
                ms = max(1, int(timeout * 1000))
                pynng.lib.nng_ctx_set_ms(ctx._context[0], b"recv-timeout", ms)
            ctx.send(data)
            return ctx.recv()
        finally:
            try:
                ctx.close()
            except pynng.NNGException:
                pass

    def call(self, op, timeout=None, req_id=None, **members):
        """Sends {"v": 1, "op": op, **members} and returns the reply (a dict) when it is ok;
        raises the SbertdError subclass of its code otherwise. Members whose value is None are
        left out. Writes get a req_id when none is given."""
        msg = {"v": 1, "op": op}
        if req_id is None and op in WRITE_OPS:
            req_id = self.new_req_id()
        if req_id is not None:
            msg["req_id"] = req_id
        if self.token:
            msg["token"] = self.token
        msg.update((k, v) for k, v in members.items() if v is not None)
        data = json.dumps(msg, ensure_ascii=False, allow_nan=False).encode()
        return self.send_raw(data, timeout=timeout, op=op)

    def send_raw(self, data, timeout=None, op=None):
        """Sends one message (bytes, as is) with call()'s retries and error mapping; returns the
        ok reply as a dict."""
        t = self.timeout if timeout is None else timeout
        pause = BUSY_FIRST_PAUSE
        busy = 0
        while True:
            raw = None
            for attempt in range(self.retries + 1):
                try:
                    raw = self._exchange(data, t)
                    break
                except pynng.Timeout:
                    if attempt == self.retries:
                        raise errors.Timeout(
                            "no reply from sbertd at %s within %.1f s (%d tries)"
                            % (self.url, t, attempt + 1)) from None
                except pynng.NNGException as e:
                    raise errors.Unreachable("%s: %s" % (self.url, e)) from None
            try:
                reply = json.loads(raw)
            except ValueError:
                reply = None
            if not isinstance(reply, dict) or reply.get("v") != 1 or "ok" not in reply:
                raise errors.ProtocolError("%s: not a protocol v1 reply (is this endpoint "
                                           "sbertd?)" % self.url)
            if reply["ok"] is True:
                return reply
            exc = errors.from_reply(reply)
            if isinstance(exc, errors.Busy) and busy < BUSY_RETRIES:
                busy += 1
                time.sleep(pause)
                pause *= 2
                continue
            if isinstance(exc, errors.UnknownOp) and op:
                exc.message = ("sbertd at %s does not have the operation %r (%s)"
                               % (self.url, op, exc.message))
            raise exc

    def _coll(self, collection):
        return collection if collection is not None else self.collection

    # ---- documents -------------------------------------------------------------------------

    def add(self, texts, ids=None, metadatas=None, embeddings=None, collection=None,
            req_id=None):
        """Stores texts (a string or a list) and returns their ids (generated where ids is None
        or an entry is None). An existing id is replaced (text, metadata and vector). embeddings
        (n x dim, e.g. from sbertd.Encoder) are stored instead of encoding the texts; the daemon
        checks their dimension and norm. More than batch_size documents go in several requests,
        each atomic and durable on its own; req_id is only for a single request."""
        texts = _as_list(texts)
        n = len(texts)
        if req_id is not None and n > self.batch_size:
            raise ValueError("req_id names one request: at most batch_size (%d) documents"
                             % self.batch_size)
        for name, v in (("ids", ids), ("metadatas", metadatas), ("embeddings", embeddings)):
            if v is not None and len(v) != n:
                raise ValueError("%s has %d entries for %d texts" % (name, len(v), n))
        if embeddings is not None:
            embeddings = np.asarray(embeddings, dtype=np.float32)
            if embeddings.ndim != 2:
                raise ValueError("embeddings must be n x dim")
        out = []
        for lo in range(0, n, self.batch_size):
            hi = min(n, lo + self.batch_size)
            docs = []
            for i in range(lo, hi):
                d = {"text": texts[i]}
                if ids is not None and ids[i] is not None:
                    d["id"] = str(ids[i])
                if metadatas is not None and metadatas[i] is not None:
                    d["metadata"] = metadatas[i]
                if embeddings is not None:
                    d["vector"] = embeddings[i].tolist()
                docs.append(d)
            r = self.call("add", documents=docs, collection=self._coll(collection),
                          req_id=req_id if hi - lo == n else None,
                          timeout=max(self.timeout, 120.0))
            out.extend(r["ids"])
        return out

    def upsert(self, texts, ids=None, metadatas=None, embeddings=None, collection=None):
        """The same as add(): sbertd's add inserts or replaces."""
        return self.add(texts, ids=ids, metadatas=metadatas, embeddings=embeddings,
                        collection=collection)

    def get(self, ids, include=("text", "metadata"), collection=None):
        """The documents with these ids, in order: a Document, or None where an id is not
        stored."""
        ids = [str(i) for i in _as_list(ids)]
        out = []
        for lo in range(0, len(ids), self.batch_size):
            r = self.call("get", ids=ids[lo:lo + self.batch_size], include=list(include),
                          collection=self._coll(collection))
            for d in r["documents"]:
                out.append(Document(d["id"], d.get("text"), d.get("metadata"),
                                    _vector(d.get("vector"))) if d.get("found") else None)
        return out

    def delete(self, ids=None, filter=None, collection=None):
        """Removes these ids (missing ones are not an error), or every document the filter
        accepts (the daemon refuses the empty filter {}); returns how many were deleted. A
        delete by filter is one request, which the daemon runs in chunks of one durable
        transaction each: it may take long, so it waits at least 600 s."""
        if (ids is None) == (filter is None):
            raise ValueError("give ids or filter=, not both")
        if filter is not None:
            return self.call("delete", filter=filter, collection=self._coll(collection),
                             timeout=max(self.timeout, 600.0))["deleted"]
        ids = [str(i) for i in _as_list(ids)]
        deleted = 0
        for lo in range(0, len(ids), self.batch_size):
            deleted += self.call("delete", ids=ids[lo:lo + self.batch_size],
                                 collection=self._coll(collection))["deleted"]
        return deleted

    def patch(self, id, set=None, unset=None, collection=None):
        """Changes one document's metadata without encoding it again: removes the keys of unset,
        then sets the keys of the dict set. Returns False when the id is not stored."""
        return self.patch_many([{"id": str(id), "set": set, "unset": unset}],
                               collection=collection)[0]

    def patch_many(self, patches, collection=None):
        """patch() for a list of {"id", "set"?, "unset"?} dicts, in one request (one durable
        transaction; at most max_batch); returns a found flag per patch."""
        docs = [{k: v for k, v in p.items() if v is not None} for p in patches]
        return self.call("patch", documents=docs, collection=self._coll(collection))["found"]

    def query(self, text_or_texts=None, k=10, filter=None, min_score=None,
              include=("text", "metadata"), vector=None, collection=None, texts=None,
              vectors=None, mode=None, fusion=None, weight=None, diversity=None,
              candidates=None, group=None, passages_per_document=None):
        """The k stored documents most similar to a text: a list of Hit, best first. Given a
        list of texts (or texts=), a list of such lists, one per text. vector= queries by an
        embedding instead of a text (one vector: a list of Hit; an n x dim array, or vectors=: a
        list of lists). Lists go as batch queries of up to batch_size items (PROTOCOL.md, query),
        each list equal to what a single query gives; a batch whose reply would exceed the
        daemon's max_reply_bytes is sent again in halves. mode="keyword" ranks by BM25,
        mode="hybrid" fuses BM25 with the vectors (fusion="rrf" or "weighted" with weight=),
        diversity= (0..1) picks hits by maximal marginal relevance; group="passage" makes the
        hits passages, passages_per_document=n gives each hit its best n passages; None: the
        daemon's defaults (PROTOCOL.md, query)."""
        if texts is not None:
            text_or_texts, texts = list(texts), None
        if vectors is not None:
            vector, vectors = np.asarray(vectors, dtype=np.float32), None
            if vector.ndim != 2:
                raise ValueError("vectors must be n x dim")
        if (text_or_texts is None) == (vector is None):
            raise ValueError("give a text (or texts) or vector=, not both")
        common = dict(k=k, filter=filter, min_score=min_score, include=list(include),
                      collection=self._coll(collection), mode=mode, fusion=fusion, weight=weight,
                      diversity=diversity, candidates=candidates, group=group,
                      passages_per_document=passages_per_document)
        if vector is not None:
            v = np.asarray(vector, dtype=np.float32)
            if v.ndim == 1:
                return self._query(vector=v.tolist(), **common)
            return self._query_batches("vectors", [row.tolist() for row in v], common)
        if isinstance(text_or_texts, str):
            return self._query(text=text_or_texts, **common)
        return self._query_batches("texts", list(text_or_texts), common)

    def _query_batches(self, member, items, common):
        out = []
        for lo in range(0, len(items), self.batch_size):
            out.extend(self._query_batch(member, items[lo:lo + self.batch_size], common))
        return out

    def _query_batch(self, member, items, common):
        try:
            r = self.call("query", **{member: items}, **common)
        except errors.TooLarge:
            if len(items) == 1:
                raise
            half = len(items) // 2
            return (self._query_batch(member, items[:half], common)
                    + self._query_batch(member, items[half:], common))
        return [[_hit(h) for h in hits] for hits in r["results"]]

    def _query(self, **members):
        return [_hit(h) for h in self.call("query", **members)["results"]]

    def count(self, filter=None, collection=None):
        """The number of documents, or of those the filter accepts (the daemon's count
        operation). Raises UnknownOp (an UnsupportedOperation) on a daemon without it;
        stats()["documents"] works on every daemon."""
        return self.call("count", filter=filter, collection=self._coll(collection),
                         timeout=max(self.timeout, 120.0))["count"]

    def list(self, collection=None, **members):
        """One page of the daemon's list operation, passed through (filter=, limit=, cursor=,
        include= as keyword arguments): the reply, {"documents": [...], "cursor": ...} with
        "cursor" only when more remain. Raises UnknownOp (an UnsupportedOperation) on a daemon
        without it. scan() walks every page."""
        return self.call("list", collection=self._coll(collection), **members)

    def scan(self, filter=None, include=("text", "metadata"), page_size=1000, collection=None):
        """Every document (or every one the filter accepts) in id order, a Document at a time,
        fetched page by page with list's cursor (which stays valid across writes: a document
        is never yielded twice)."""
        cursor = None
        while True:
            r = self.list(collection=collection, filter=filter, include=list(include),
                          limit=page_size, cursor=cursor)
            for d in r["documents"]:
                yield Document(d["id"], d.get("text"), d.get("metadata"),
                               _vector(d.get("vector")))
            cursor = r.get("cursor")
            if cursor is None:
                return

    # ---- the model -------------------------------------------------------------------------

    def encode(self, texts):
        """model.encode(): a float32 array, n x dim for a list, dim for one string."""
        one = isinstance(texts, str)
        texts = _as_list(texts)
        rows = []
        for lo in range(0, len(texts), self.batch_size):
            r = self.call("encode", texts=texts[lo:lo + self.batch_size],
                          timeout=max(self.timeout, 120.0))
            rows.append(np.asarray(r["embeddings"], dtype=np.float32).reshape(-1, r["dim"]))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        out = np.concatenate(rows)
        return out[0] if one else out

    def similarity(self, a, b):
        """Cosine similarity: a float for two strings, a len(a) x len(b) float32 matrix for two
        lists (util.cos_sim)."""
        if isinstance(a, str) and isinstance(b, str):
            return self.call("similarity", a=a, b=b)["score"]
        r = self.call("similarity", a=_as_list(a), b=_as_list(b))
        return np.asarray(r["matrix"], dtype=np.float32)

    def pairs(self, texts=None, n=None, min_score=None, filter=None, per_doc_k=None,
              include=None, collection=None):
        """Paraphrase mining, best pairs first: within texts when given, else over the stored
        documents. Returns the reply's list of {"a", "b", "score"}."""
        return self.call("pairs", texts=None if texts is None else list(texts), n=n,
                         min_score=min_score, filter=filter, per_doc_k=per_doc_k,
                         include=None if include is None else list(include),
                         collection=None if texts is not None else self._coll(collection),
                         timeout=max(self.timeout, 120.0))["pairs"]

    # ---- the daemon ------------------------------------------------------------------------

    def stats(self):
        return self.call("stats")

    def health(self):
        return self.call("health")

    def backup(self, dir, collection=None):
        return self.call("backup", dir=dir, collection=self._coll(collection),
                         timeout=max(self.timeout, 600.0))

    def reindex(self, collection=None):
        return self.call("reindex", collection=self._coll(collection),
                         timeout=max(self.timeout, 3600.0))

    # ---- collections -------------------------------------------------------------------------

    def create_collection(self, name, index=None, ef_search=None, nprobe=None,
                          keyword_language=None):
        """Creates the empty collection name (its own documents, vector index and keyword
        index); the options default to the daemon's settings. Raises Exists when it exists.
        Returns the reply ({"name", "index"})."""
        return self.call("create_collection", name=name, index=index, ef_search=ef_search,
                         nprobe=nprobe, keyword_language=keyword_language,
                         timeout=max(self.timeout, 120.0))

    def list_collections(self):
        """Every collection: a list of {"name", "documents", "index", "dim", "model"},
        "default" first."""
        return self.call("list_collections")["collections"]

    def describe_collection(self, name):
        """One collection's figures (documents, index, trained, dim, model, keyword_language,
        bytes on disk, snapshot_time, ...). Raises NoCollection for an unknown name."""
        r = self.call("describe_collection", name=name)
        return {k: v for k, v in r.items() if k not in ("v", "ok", "req_id")}

    def drop_collection(self, name):
        """Deletes the collection name and its documents (not "default"); returns how many
        documents it held. Raises NoCollection for an unknown name."""
        return self.call("drop_collection", name=name,
                         timeout=max(self.timeout, 600.0))["documents"]
