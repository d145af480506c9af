#!/usr/bin/env python3
"""Collections (issue 11) against a real sbertd: collections answer independently, the default
collection is what a store from before collections holds, restart keeps them, drop frees the
directory, and a kill -9 right after a create or during a drop leaves every collection whole or
gone, with no leftovers after the restart.

    SBERTD=build/daemon/sbertd test_collections.py MODEL_DIR [CASE...]
"""
import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sbertd_harness as h  # noqa: E402

MODEL = None
DIM = 384

FLAT_DOCS = [("f%d" % i, t) for i, t in enumerate([
    "The cat sits outside", "A man is playing guitar", "I love pasta",
    "The new movie is awesome", "The cat plays in the garden"])]
HNSW_DOCS = [("h%d" % i, t) for i, t in enumerate([
    "A woman watches TV", "The new movie is so great", "Do you like pizza?",
    "A man is playing a flute", "Stock markets fell sharply today"])]


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def ok(reply, what=""):
    check(reply.get("ok") is True, "%s: expected ok, got %r" % (what, reply))
    return reply


def err(reply, code, what=""):
    check(reply.get("ok") is False and reply["error"]["code"] == code,
          "%s: expected %s, got %r" % (what, code, reply))
    return reply


def ids_of(reply):
    return [x["id"] for x in reply["results"]]


def leftovers(d):
    parent = os.path.join(d.data, "collections")
    if not os.path.isdir(parent):
        return []
    return [n for n in os.listdir(parent) if n.startswith(".tmp-") or n.startswith(".trash-")]


def unit_vectors(n, seed):
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        v = [rnd.gauss(0, 1) for _ in range(DIM)]
        s = math.sqrt(sum(x * x for x in v))
        out.append([x / s for x in v])
    return out


def add_vectors(c, coll, n, prefix, seed, batch=500):
    vs = unit_vectors(n, seed)
    for i in range(0, n, batch):
        docs = [{"id": "%s%d" % (prefix, j), "text": "doc %d" % j, "vector": vs[j],
                 "metadata": {"n": j}} for j in range(i, min(n, i + batch))]
        ok(c.call("add", collection=coll, documents=docs), "add vectors")


def test_independent(d):
    """A store from before collections (documents added with no collection member) is the
    default collection; a Flat and an HNSW32,Flat collection hold different documents and answer
    query, get, count, list, delete by filter, patch and keyword queries independently; the
    default collection is unchanged for clients that send no collection."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "d0", "text": "The cat sits outside",
                                 "metadata": {"src": "old"}}]))
    d.stop()
    d.start()  # the store was written before any collection existed
    c = d.client()
    lc = ok(c.call("list_collections"))["collections"]
    check([x["name"] for x in lc] == ["default"] and lc[0]["documents"] == 1,
          "a store from before is the default collection: %r" % lc)
    check(ok(c.call("count", collection="default"))["count"] == 1, "default by name")
    r = ok(c.call("create_collection", name="flat", index="Flat"))
    check(r["name"] == "flat" and r["index"] == "Flat", "create reply %r" % r)
    ok(c.call("create_collection", name="hnsw", index="HNSW32,Flat", ef_search=64))
    err(c.call("create_collection", name="flat"), "exists", "create of an existing name")
    for coll, docs in (("flat", FLAT_DOCS), ("hnsw", HNSW_DOCS)):
        ok(c.call("add", collection=coll, documents=[
            {"id": i, "text": t, "metadata": {"coll": coll, "k": n}}
            for n, (i, t) in enumerate(docs)]))
    # the same id in two collections names two documents
    ok(c.call("add", collection="hnsw", documents=[{"id": "f0", "text": "Pizza with cheese"}]))
    # query: each collection only sees its own documents
    q = ok(c.call("query", collection="flat", text="A cat in the garden", k=10))
    check(set(ids_of(q)) == {i for i, _ in FLAT_DOCS}, "flat query %r" % ids_of(q))
    check(ids_of(q)[0] in ("f0", "f4"), "flat ranks a cat first: %r" % ids_of(q))
    q = ok(c.call("query", collection="hnsw", text="pizza", k=10))
    check(set(ids_of(q)) == {i for i, _ in HNSW_DOCS} | {"f0"}, "hnsw query %r" % ids_of(q))
    check(ids_of(q)[0] in ("h2", "f0"), "hnsw ranks pizza first: %r" % ids_of(q))
    q = ok(c.call("query", text="A cat in the garden", k=10))
    check(ids_of(q) == ["d0"], "default query without collection: %r" % ids_of(q))
    q = ok(c.call("query", collection="hnsw", texts=["pizza", "flute"], k=1))
    check([ids_of({"results": x})[0] for x in q["results"]][1] == "h3", "batch query %r" % q)
    # get
    g = ok(c.call("get", collection="hnsw", ids=["f0", "h1"]))["documents"]
    check(g[0]["text"] == "Pizza with cheese" and g[1]["found"], "hnsw get %r" % g)
    g = ok(c.call("get", collection="flat", ids=["f0", "h1"]))["documents"]
    check(g[0]["text"] == "The cat sits outside" and not g[1]["found"], "flat get %r" % g)
    # count, list
    check(ok(c.call("count", collection="flat"))["count"] == 5, "flat count")
    check(ok(c.call("count", collection="hnsw"))["count"] == 6, "hnsw count")
    check(ok(c.call("count"))["count"] == 1, "default count")
    lst = ok(c.call("list", collection="hnsw", limit=100, include=[]))["documents"]
    check([x["id"] for x in lst] == ["f0", "h0", "h1", "h2", "h3", "h4"], "hnsw list %r" % lst)
    # a cursor names a position (an id), not a collection: one from flat lists hnsw after "f2"
    page = ok(c.call("list", collection="flat", limit=3, include=[]))
    check([x["id"] for x in page["documents"]] == ["f0", "f1", "f2"] and page["cursor"], "page")
    rest = ok(c.call("list", collection="hnsw", cursor=page["cursor"], include=[]))["documents"]
    check([x["id"] for x in rest] == ["h0", "h1", "h2", "h3", "h4"], "foreign cursor %r" % rest)
    # delete by filter and patch touch one collection only
    r = ok(c.call("delete", collection="flat", filter={"k": {"$gte": 3}}))
    check(r["deleted"] == 2, "delete by filter %r" % r)
    check(ok(c.call("count", collection="flat"))["count"] == 3, "flat after delete")
    check(ok(c.call("count", collection="hnsw"))["count"] == 6, "hnsw untouched by the delete")
    r = ok(c.call("patch", collection="hnsw", documents=[{"id": "h0", "set": {"seen": True}},
                                                          {"id": "f1", "set": {"seen": True}}]))
    check(r["found"] == [True, False], "patch sees hnsw's ids only: %r" % r)
    check(ok(c.call("count", collection="hnsw", filter={"seen": True}))["count"] == 1, "patched")
    check(ok(c.call("count", collection="flat", filter={"seen": True}))["count"] == 0, "flat")
    # keyword mode, and pairs, on a collection
    q = ok(c.call("query", collection="hnsw", text="flute", mode="keyword", k=3))
    check(ids_of(q) == ["h3"], "keyword query %r" % ids_of(q))
    q = ok(c.call("query", collection="flat", text="flute", mode="keyword", k=3))
    check(ids_of(q) == [], "keyword query of flat %r" % ids_of(q))
    p = ok(c.call("pairs", collection="flat", n=1))
    check(len(p["pairs"]) == 1, "pairs %r" % p)
    # delete by id
    r = ok(c.call("delete", collection="hnsw", ids=["f0"]))
    check(ok(c.call("get", collection="flat", ids=["f0"]))["documents"][0]["found"],
          "a delete in hnsw removed flat's f0")
    # list_collections, describe_collection, stats
    lc = {x["name"]: x for x in ok(c.call("list_collections"))["collections"]}
    check(sorted(lc) == ["default", "flat", "hnsw"], "list_collections %r" % lc)
    check(lc["hnsw"]["index"] == "HNSW32,Flat" and lc["hnsw"]["documents"] == 5 and
          lc["flat"]["dim"] == DIM and lc["flat"]["model"] == "all-MiniLM-L6-v2", "%r" % lc)
    ds = ok(c.call("describe_collection", name="hnsw"))
    check(ds["documents"] == 5 and ds["index"] == "HNSW32,Flat" and ds["ef_search"] == 64 and
          ds["trained"] is True and ds["keyword_language"] == "english" and ds["bytes"] > 0 and
          ds["dim"] == DIM, "describe %r" % ds)
    check(ok(c.call("stats"))["collections"] == 3, "stats counts the collections")
    check(ok(c.call("stats"))["documents"] == 1, "stats documents: the default collection's")
    # unknown collections
    err(c.call("query", collection="nope", text="x"), "no_collection", "query")
    err(c.call("add", collection="nope", documents=[{"text": "x"}]), "no_collection", "add")
    err(c.call("describe_collection", name="nope"), "no_collection", "describe")
    err(c.call("drop_collection", name="default"), "bad_request", "drop default")
    # a backup of one collection opens as a store of its documents
    bdir = os.path.join(d.tmp, "backup-hnsw")
    check(ok(c.call("backup", collection="hnsw", dir=bdir))["documents"] == 5, "backup")
    check(os.path.exists(os.path.join(bdir, "store.mdb")), "the backup has a store")
    # a reindex of one collection re-encodes its documents only
    check(ok(c.call("reindex", collection="hnsw"))["documents"] == 5, "reindex of hnsw")
    q = ok(c.call("query", collection="hnsw", text="flute", k=1))
    check(ids_of(q) == ["h3"], "hnsw after its reindex %r" % ids_of(q))
    check(ok(c.call("count", collection="flat"))["count"] == 3, "flat after hnsw's reindex")


def test_restart_and_drop(d):
    """Restart keeps every collection, its documents and settings; drop removes the directory
    and its space; drop + recreate gives an empty collection; a write to a dropped collection
    is no_collection."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "keep", "text": "The default collection's document"}]))
    ok(c.call("create_collection", name="a", index="HNSW32,Flat", keyword_language="none"))
    ok(c.call("create_collection", name="b-2_x"))
    add_vectors(c, "a", 1500, "v", 1)
    ok(c.call("add", collection="b-2_x", documents=[{"id": "one", "text": "A man plays guitar"}]))
    before = ok(c.call("query", collection="a", vector=unit_vectors(1, 7)[0], k=5))
    check(d.stop() == 0, "clean stop")
    d.start()
    c = d.client()
    lc = {x["name"]: x for x in ok(c.call("list_collections"))["collections"]}
    check(sorted(lc) == ["a", "b-2_x", "default"], "after restart %r" % lc)
    check(lc["a"]["documents"] == 1500 and lc["a"]["index"] == "HNSW32,Flat", "a %r" % lc["a"])
    check(ok(c.call("describe_collection", name="a"))["keyword_language"] == "none",
          "the keyword language is recorded")
    after = ok(c.call("query", collection="a", vector=unit_vectors(1, 7)[0], k=5))
    check(ids_of(after) == ids_of(before), "same answers after restart")
    check(ok(c.call("get", collection="b-2_x", ids=["one"]))["documents"][0]["found"], "b's doc")
    adir = os.path.join(d.data, "collections", "a")
    check(os.path.isdir(adir) and ok(c.call("describe_collection", name="a"))["bytes"] > 1500 * DIM * 4,
          "a's directory holds its vectors")
    r = ok(c.call("drop_collection", name="a"))
    check(r["documents"] == 1500, "drop reply %r" % r)
    check(not os.path.exists(adir), "the directory is gone after the drop")
    check(not leftovers(d), "no leftovers: %r" % leftovers(d))
    err(c.call("add", collection="a", documents=[{"text": "x"}]), "no_collection", "add after drop")
    err(c.call("drop_collection", name="a"), "no_collection", "a second drop")
    ok(c.call("create_collection", name="a"))
    check(ok(c.call("count", collection="a"))["count"] == 0, "recreated a is empty")
    check(ok(c.call("describe_collection", name="a"))["index"] == "Flat", "with the new spec")
    check(ok(c.call("count"))["count"] == 1, "the default collection is untouched")
    check(d.stop() == 0, "clean stop")
    d.start()
    c = d.client()
    check(sorted(x["name"] for x in ok(c.call("list_collections"))["collections"]) ==
          ["a", "b-2_x", "default"], "after the second restart")


def kill9(d):
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.log.close()


def test_crash(d):
    """kill -9 right after create_collection's reply (and after an acknowledged add), and at
    several moments of a drop of a collection of many documents: after the restart every
    collection is whole (all acknowledged documents) or gone, with no .tmp/.trash leftovers."""
    c = d.client()
    ok(c.call("create_collection", name="fresh", index="HNSW32,Flat"))
    kill9(d)
    d.start()
    c = d.client()
    check(ok(c.call("count", collection="fresh"))["count"] == 0, "created collection survives")
    ok(c.call("add", collection="fresh", documents=[{"id": "x", "text": "acknowledged"}]))
    kill9(d)
    d.start()
    c = d.client()
    check(ok(c.call("get", collection="fresh", ids=["x"]))["documents"][0]["found"],
          "an acknowledged add survives")
    # kills during a create: the collection is complete (it opens, empty) or absent
    made = {"whole": 0, "gone": 0}
    for i, delay in enumerate((0.0, 0.005, 0.02, 0.05)):
        name = "mk%d" % i
        box = {}

        def create():
            cc = d.client(timeout_ms=5000, scale=False)
            try:
                box["r"] = cc.call("create_collection", name=name, index="HNSW32,Flat")
            except Exception as e:  # the daemon was killed: no reply
                box["e"] = e
            finally:
                cc.close()

        t = threading.Thread(target=create)
        t.start()
        time.sleep(delay)
        kill9(d)
        t.join()
        d.start()
        c = d.client()
        check(not leftovers(d), "leftovers after a killed create: %r" % leftovers(d))
        names = [x["name"] for x in ok(c.call("list_collections"))["collections"]]
        if name in names:
            check(ok(c.call("describe_collection", name=name))["index"] == "HNSW32,Flat" and
                  ok(c.call("count", collection=name))["count"] == 0, "a half-made collection")
            made["whole"] += 1
        else:
            check("r" not in box or not box["r"].get("ok"), "an acknowledged create was lost")
            check(not os.path.exists(os.path.join(d.data, "collections", name)), "a directory")
            made["gone"] += 1
    print("  creates killed: %(whole)d found whole, %(gone)d gone" % made, flush=True)
    n = 3000
    seen = {"whole": 0, "gone": 0}
    for i, delay in enumerate((0.0, 0.002, 0.01, 0.05, 0.2)):
        name = "big%d" % i
        ok(c.call("create_collection", name=name))
        add_vectors(c, name, n, "b", i)
        box = {}

        def drop():
            dc = d.client(timeout_ms=5000, scale=False)
            try:
                box["r"] = dc.call("drop_collection", name=name)
            except Exception as e:  # the daemon was killed: no reply
                box["e"] = e
            finally:
                dc.close()

        t = threading.Thread(target=drop)
        t.start()
        time.sleep(delay)
        kill9(d)
        t.join()
        d.start()
        c = d.client()
        check(not leftovers(d), "leftovers after the restart: %r" % leftovers(d))
        names = [x["name"] for x in ok(c.call("list_collections"))["collections"]]
        if name in names:
            check("r" not in box, "an acknowledged drop came back: %r" % box)
            check(ok(c.call("count", collection=name))["count"] == n, "a half-dropped collection")
            check(os.path.isdir(os.path.join(d.data, "collections", name)), "its directory")
            seen["whole"] += 1
            ok(c.call("drop_collection", name=name))
        else:
            check(not os.path.exists(os.path.join(d.data, "collections", name)), "a directory")
            seen["gone"] += 1
        check(ok(c.call("count", collection="fresh"))["count"] == 1, "fresh untouched")
    print("  drops killed: %(whole)d found whole, %(gone)d gone" % seen, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


HTTP_PORT = free_port()


def http_post(op, body):
    req = urllib.request.Request("http://127.0.0.1:%d/v1/%s" % (HTTP_PORT, op),
                                 data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_drop_under_load_and_clients(d):
    """A drop while queries and adds run on that collection and queries on another: every reply
    is ok or no_collection, none is lost, the other collection answers throughout; then the new
    ops over HTTP (/v1/<op>, no_collection is 404) and through sbertctl (-c, collection ...)."""
    c = d.client()
    ok(c.call("add", documents=[{"id": "keep", "text": "The cat sits outside"}]))
    ok(c.call("create_collection", name="busy"))
    add_vectors(c, "busy", 300, "b", 3)
    stop = threading.Event()
    seen = {"ok": 0, "no_collection": 0, "other": []}
    lock = threading.Lock()

    def worker(kind, i):
        wc = d.client()
        vec = unit_vectors(1, 100 + i)[0]
        n = 0
        while not stop.is_set():
            n += 1
            if kind == "default":
                r = wc.call("query", vector=vec, k=1)
                with lock:
                    if not (r.get("ok") and r["results"][0]["id"] == "keep"):
                        seen["other"].append(("default", r))
                continue
            if kind == "add":
                r = wc.call("add", collection="busy",
                            documents=[{"id": "w%d-%d" % (i, n), "text": "x", "vector": vec}])
            else:
                r = wc.call("query", collection="busy", vector=vec, k=3)
            with lock:
                if r.get("ok"):
                    seen["ok"] += 1
                elif r["error"]["code"] == "no_collection":
                    seen["no_collection"] += 1
                else:
                    seen["other"].append((kind, r))
        wc.close()

    threads = [threading.Thread(target=worker, args=(k, i)) for i, k in
               enumerate(["query", "query", "add", "default"])]
    for t in threads:
        t.start()
    time.sleep(0.5)
    r = ok(c.call("drop_collection", name="busy"))
    check(r["documents"] >= 300, "drop reply %r" % r)
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    check(not seen["other"], "replies neither ok nor no_collection: %r" % seen["other"][:3])
    check(seen["ok"] > 0 and seen["no_collection"] > 0, "both before and after: %r" % seen)
    check(not os.path.exists(os.path.join(d.data, "collections", "busy")), "busy's directory")
    check(ok(c.call("count"))["count"] == 1, "default untouched")

    # HTTP: every new op has its route
    st, r = http_post("create_collection", {"name": "web", "index": "HNSW32,Flat"})
    check(st == 200 and r["ok"], "HTTP create %s %r" % (st, r))
    st, r = http_post("add", {"collection": "web", "documents": [{"id": "p", "text": "pizza"}]})
    check(st == 200 and r["ok"], "HTTP add %s %r" % (st, r))
    st, r = http_post("list_collections", {})
    check(st == 200 and [x["name"] for x in r["collections"]] == ["default", "web"],
          "HTTP list_collections %s %r" % (st, r))
    st, r = http_post("describe_collection", {"name": "web"})
    check(st == 200 and r["documents"] == 1, "HTTP describe %s %r" % (st, r))
    st, r = http_post("query", {"collection": "nope", "text": "x"})
    check(st == 404 and r["error"]["code"] == "no_collection", "HTTP no_collection %s %r" % (st, r))
    st, r = http_post("drop_collection", {"name": "web"})
    check(st == 200 and r["documents"] == 1, "HTTP drop %s %r" % (st, r))

    # sbertctl
    ctl = os.environ.get("SBERTCTL")
    if not ctl:
        print("  SBERTCTL not set: sbertctl part skipped", flush=True)
        return

    def run(*args, expect=0):
        p = subprocess.run([ctl, "--socket", d.url] + list(args), capture_output=True, text=True,
                           timeout=120)
        check(p.returncode == expect, "sbertctl %s: exit %d, expected %d: %s%s" % (
            " ".join(args), p.returncode, expect, p.stdout, p.stderr))
        return p.stdout
    run("collection", "create", "notes", "--index", "HNSW32,Flat", "--ef-search", "40")
    run("-c", "notes", "add", "A man is playing guitar", "Do you like pizza?")
    check(run("--collection", "notes", "count").strip() == "2", "sbertctl -c count")
    check(run("count").strip() == "1", "sbertctl count without -c: default")
    out = run("query", "-c", "notes", "--json", "pizza")
    check(json.loads(out)["results"][0]["text"] == "Do you like pizza?", "sbertctl -c query")
    out = run("collection", "list")
    check("notes" in out and "HNSW32,Flat" in out and "default" in out, "collection list: " + out)
    d2 = json.loads(run("collection", "describe", "notes", "--json"))
    check(d2["documents"] == 2 and d2["ef_search"] == 40, "collection describe %r" % d2)
    run("-c", "nowhere", "count", expect=1)
    run("collection", "create", "notes", expect=1)
    run("collection", "drop", "default", expect=1)
    # index (sbertctl-files) passes the collection too
    src = os.path.join(d.tmp, "files")
    os.makedirs(src)
    for name, text in (("a.txt", "Cats sleep most of the day"), ("b.md", "# Pizza\n\nDough")):
        with open(os.path.join(src, name), "w") as f:
            f.write(text)
    run("-c", "notes", "index", src)
    check(run("-c", "notes", "count").strip() == "4", "index into a collection")
    check(run("count").strip() == "1", "index left default alone")
    check(json.loads(run("collection", "drop", "notes", "--json"))["documents"] == 4, "drop")
    run("-c", "notes", "count", expect=1)


TESTS = [
    ("independent", test_independent, None),
    ("restart_and_drop", test_restart_and_drop, None),
    ("crash", test_crash, None),
    ("drop_under_load_and_clients", test_drop_under_load_and_clients,
     "http = 127.0.0.1:%d\n" % HTTP_PORT),
]


def main():
    global MODEL
    MODEL = sys.argv[1]
    return h.run_cases(MODEL, [(name, fn, {"config": config}) for name, fn, config in TESTS],
                       set(sys.argv[2:]))


if __name__ == "__main__":
    sys.exit(main())
