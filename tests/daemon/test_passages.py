#!/usr/bin/env python3
"""Documents and passages (issue 12) through a real sbertd: a document longer than the model's
window is stored once and searched by its passages.

Usage: test_passages.py MODEL_DIR [TEST...]   (SBERTD names the sbertd binary)

Passage offsets are bytes of the document's UTF-8 text: text.encode()[start:end].
"""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sbertd_harness as h  # noqa: E402

MODEL = None

# Filler of one topic (a council's budget), with UTF-8 of 2, 3 and 4 bytes a character.
SUBJECTS = ["The committee", "The café council", "The naïve treasurer", "The board in 東京",
            "The über-auditor", "The district office ☕", "The revenue panel", "The mayor"]
VERBS = ["reviewed", "discussed", "postponed", "approved", "questioned", "amended"]
OBJECTS = ["the quarterly budget report", "the revenue forecast", "the policy draft",
           "the meeting minutes", "the spending plan for 2027", "the tax schedule"]
TAILS = ["for the northern district.", "before the annual meeting.", "after a long debate.",
         "with few changes.", "at the request of the council.", "without a vote. 𝄞"]

DEEP = "The lighthouse keeper feeds his orange cat fresh sardines every Tuesday at dawn."
DEEP_Q = "What does the lighthouse keeper feed his cat?"
OTHER = "The astronaut repaired the broken telescope with duct tape and chewing gum."
OTHER_Q = "How did the astronaut fix the telescope?"


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def ok(reply, what=""):
    check(reply.get("v") == 1 and reply.get("ok") is True, "%s: expected ok, got %r" % (
        what, {k: (v if k != "results" else "...") for k, v in reply.items()}))
    return reply


def filler(rng, sentences):
    out = []
    for i in range(sentences):
        out.append("%s %s %s %s" % (rng.choice(SUBJECTS), rng.choice(VERBS), rng.choice(OBJECTS),
                                    rng.choice(TAILS)))
        if i % 12 == 11:
            out.append("\n\n")
    return " ".join(out)


def long_doc(rng, secret, before=200, after=200):
    """Several thousand words of filler with secret placed deep inside."""
    return filler(rng, before) + " " + secret + " " + filler(rng, after)


def check_passages(text, hit, what):
    """hit's passage is exactly its bytes of text, and its fields are sound."""
    p = hit["passage"]
    b = text.encode()
    check(0 <= p["start"] <= p["end"] <= len(b), "%s: passage %r outside the text" % (
        what, (p["start"], p["end"])))
    check(b[p["start"]:p["end"]].decode() == p["text"],
          "%s: passage text is not text[start:end] (bytes %d..%d)" % (what, p["start"], p["end"]))
    check(-1.0 <= p["score"] <= 1.0, "%s: passage score %r" % (what, p["score"]))


def counts(c):
    st = ok(c.call("stats"), "stats")
    check(st["index"]["count"] == st["passages"],
          "the vector index holds %d entries, the store %d passages" % (st["index"]["count"],
                                                                         st["passages"]))
    check(st["passages"] >= st["documents"], "fewer passages than documents: %r" % (
        (st["passages"], st["documents"]),))
    return st["documents"], st["passages"]


def add_collection(c, rng):
    """Filler documents (long and short), a long one with DEEP inside; returns id -> text."""
    docs = {"long": long_doc(rng, DEEP)}
    for i in range(4):
        docs["filler%d" % i] = filler(rng, 300)
    docs["short0"] = "I love pasta"
    docs["short1"] = "A man is playing guitar"
    ok(c.call("add", documents=[{"id": k, "text": t, "metadata": {"kind": k[:4], "n": i}}
                                for i, (k, t) in enumerate(docs.items())]), "add")
    return docs


def test_passages_found_deep(d):
    """A long document gets several passages; its deep content is found; offsets round-trip."""
    c = d.client()
    rng = random.Random(1)
    n0 = counts(c)
    check(n0 == (0, 0), "a fresh store is not empty: %r" % (n0,))
    docs = add_collection(c, rng)
    ndocs, npass = counts(c)
    check(ndocs == len(docs), "documents %d, added %d" % (ndocs, len(docs)))
    check(npass >= ndocs + 4 * 5, "only %d passages for %d documents, 5 of several thousand "
          "words" % (npass, ndocs))
    check(len(docs["long"].split()) > 3000, "the long document is not long")
    r = ok(c.call("query", text=DEEP_Q, k=3), "query")["results"]
    check(r and r[0]["id"] == "long", "the deep answer was not found first: %r" % (
        [(x["id"], x["score"]) for x in r],))
    top = r[0]
    check(DEEP in top["passage"]["text"], "the best passage does not hold the answer: %r" % (
        top["passage"]["text"][:200],))
    deep_at = docs["long"].encode().index(DEEP.encode())
    check(deep_at > 5000 and top["passage"]["start"] > 0,
          "the answer is not beyond the first window (byte %d)" % deep_at)
    check(top["text"] == docs["long"] and top["metadata"]["kind"] == "long",
          "the hit's document text and metadata (the default include)")
    # document score = 0.3 * lead + 0.7 * best: below the best passage's score here
    check(top["score"] <= top["passage"]["score"] + 1e-6,
          "document score %r above its best passage's %r" % (top["score"],
                                                             top["passage"]["score"]))
    for x in ok(c.call("query", text="budget report of the council", k=8), "query")["results"]:
        check_passages(docs[x["id"]], x, x["id"])
    # a short text is one passage: the whole text, scored as the document
    s = ok(c.call("query", text="I love pasta", k=1), "query")["results"][0]
    check(s["id"] == "short0" and s["passage"]["start"] == 0 and
          s["passage"]["end"] == len("I love pasta") and
          abs(s["passage"]["score"] - s["score"]) < 1e-6, "a short document's passage: %r" % s)
    # include without text: no document text, the passage text is still there
    r = ok(c.call("query", text=DEEP_Q, k=1, include=["metadata"]), "query")["results"][0]
    check("text" not in r and DEEP in r["passage"]["text"], "include without text: %r" % (
        sorted(r),))
    # a filter over multi-passage documents: only matching documents, their own passages
    r = ok(c.call("query", text=DEEP_Q, k=10, filter={"kind": "fill"}), "filtered")["results"]
    check(len(r) == 4 and all(x["id"].startswith("filler") for x in r),
          "filter kind=fill: %r" % [x["id"] for x in r])
    for x in r:
        check_passages(docs[x["id"]], x, "filtered " + x["id"])
    r = ok(c.call("query", text=DEEP_Q, k=10, filter={"kind": "long"}), "filtered")["results"]
    check([x["id"] for x in r] == ["long"] and DEEP in r[0]["passage"]["text"],
          "filter kind=long: %r" % [x["id"] for x in r])
    c.close()


def test_upsert_and_delete(d):
    """An upsert replaces all of a long document's passages; a delete removes them all."""
    c = d.client()
    rng = random.Random(2)
    docs = add_collection(c, rng)
    nd, np_all = counts(c)
    ok(c.call("delete", ids=["long"]), "delete")
    nd1, np_without = counts(c)
    n_long = np_all - np_without
    check(nd1 == nd - 1 and n_long > 3, "delete of the long document: %d -> %d documents, "
          "%d passages removed" % (nd, nd1, n_long))
    r = ok(c.call("query", text=DEEP_Q, k=10), "query")["results"]
    check("long" not in [x["id"] for x in r], "a deleted document is found")
    check(all(DEEP not in x["passage"]["text"] for x in r), "a deleted passage is found")
    ok(c.call("add", documents=[{"id": "long", "text": docs["long"]}]), "add again")
    check(counts(c) == (nd, np_all), "the same document added again: other counts")
    # upsert: another long text under the same id, its answer elsewhere
    new = long_doc(rng, OTHER, 300, 100)
    rep = ok(c.call("add", documents=[{"id": "long", "text": new}]), "upsert")
    check(rep["replaced"] == [True], "upsert: replaced %r" % rep["replaced"])
    nd2, np2 = counts(c)
    check(nd2 == nd, "upsert changed the document count")
    for x in ok(c.call("query", text=DEEP_Q, k=10), "query")["results"]:
        check(DEEP not in x["passage"]["text"], "the replaced document's passage is still "
              "found: %s" % x["id"])
        check_passages(new if x["id"] == "long" else docs[x["id"]], x, x["id"])
    r = ok(c.call("query", text=OTHER_Q, k=1), "query")["results"][0]
    check(r["id"] == "long" and OTHER in r["passage"]["text"], "the new content is not found")
    check_passages(new, r, "upserted")
    g = ok(c.call("get", ids=["long"]), "get")["documents"][0]
    check(g["text"] == new, "get after upsert: the old text")
    ok(c.call("delete", ids=["long"]), "delete")
    check(counts(c) == (nd - 1, np_without), "after the delete: %r, expected %r" % (
        counts(c), (nd - 1, np_without)))
    c.close()


def answers(c):
    """The answers of a few queries, for comparison across restarts."""
    out = []
    for q in (DEEP_Q, OTHER_Q, "budget report of the council", "I love pasta"):
        r = ok(c.call("query", text=q, k=5, include=["metadata"]), "query")["results"]
        out.append([(x["id"], round(x["score"], 5), x["passage"]["start"], x["passage"]["end"],
                     round(x["passage"]["score"], 5)) for x in r])
    return out


def test_restart_replay_rebuild(d):
    """Snapshot + change log replay after a kill -9, and a rebuild without the snapshot, give the
    same answers and counts (tests/store/test_passages.c verifies such a store)."""
    c = d.client()
    rng = random.Random(3)
    docs = add_collection(c, rng)
    c.close()
    check(d.stop() == 0, "SIGTERM")
    check(os.path.exists(os.path.join(d.data, "index.snap")), "no snapshot at a clean stop")
    d.start()
    c = d.client()
    # changes after the snapshot, replayed from the log at the next start: an upsert of a long
    # document, a delete of another, a new long one
    ok(c.call("add", documents=[{"id": "long", "text": long_doc(rng, OTHER, 100, 250)},
                                {"id": "long2", "text": long_doc(rng, DEEP, 250, 50)}]), "add")
    ok(c.call("delete", ids=["filler1"]), "delete")
    want, want_counts = answers(c), counts(c)
    c.close()
    d.proc.kill()
    d.proc.wait()
    d.log.close()
    d.start()
    c = d.client()
    check(counts(c) == want_counts, "counts after the replay: %r, before %r" % (counts(c),
                                                                             want_counts))
    check(answers(c) == want, "answers after the replay differ")
    c.close()
    check(d.stop() == 0, "SIGTERM")
    os.unlink(os.path.join(d.data, "index.snap"))
    d.start()
    c = d.client()
    check(counts(c) == want_counts, "counts after the rebuild")
    check(answers(c) == want, "answers after the rebuild differ")
    c.close()
    check(d.stop() == 0, "SIGTERM")
    d.start()


def test_group_and_passages_per_document(d):
    """group: "passage" returns passages as hits; passages_per_document returns a document's best
    passages."""
    c = d.client()
    rng = random.Random(4)
    docs = add_collection(c, rng)
    ok(c.call("add", documents=[{"id": "long2", "text": long_doc(rng, DEEP, 100, 300)}]), "add")
    docs["long2"] = None
    r = ok(c.call("query", text=DEEP_Q, k=6, group="passage", include=["metadata"]),
           "group passage")["results"]
    check(len(r) == 6, "group passage: %d hits" % len(r))
    check({x["id"] for x in r[:2]} == {"long", "long2"} and
          all(DEEP in x["passage"]["text"] for x in r[:2]),
          "the two passages holding the answer come first: %r" % [(x["id"], x["score"])
                                                                   for x in r])
    for i, x in enumerate(r):
        check(abs(x["score"] - x["passage"]["score"]) < 1e-6 and "text" not in x,
              "a passage hit scores its passage: %r" % x)
        check(i == 0 or r[i - 1]["score"] >= x["score"], "passage hits not best first")
    ids = [(x["id"], x["passage"]["start"]) for x in r]
    check(len(set(ids)) == len(ids), "a passage returned twice: %r" % ids)
    check(len({x["id"] for x in r}) < len(r), "no document gave two passage hits: %r" % ids)
    for x in r:
        if x["id"] != "long2":
            check_passages(docs[x["id"]], x, "passage hit " + x["id"])
    # passages_per_document: the best n, best first, the first being "passage"
    r = ok(c.call("query", text=DEEP_Q, k=2, passages_per_document=3), "per document")["results"]
    for x in r:
        ps = x["passages"]
        check(len(ps) == 3 and ps[0] == x["passage"], "passages: %r" % [p["start"] for p in ps])
        check(ps[0]["score"] >= ps[1]["score"] >= ps[2]["score"], "passages not best first")
        check(len({p["start"] for p in ps}) == 3, "a passage repeated")
        if x["id"] != "long2":
            for p in ps:
                check_passages(docs[x["id"]], dict(x, passage=p), "passages of " + x["id"])
    r = ok(c.call("query", text="I love pasta", k=1, passages_per_document=5),
           "one passage")["results"][0]
    check(r["id"] == "short0" and len(r["passages"]) == 1, "a one-passage document: %r" % r)
    # the default (no member) has no "passages"; group "document" is the default
    r = ok(c.call("query", text=DEEP_Q, k=2, group="document"), "group document")["results"]
    check(all("passages" not in x for x in r) and r[0]["id"] in ("long", "long2"),
          "group document: %r" % [sorted(x) for x in r])
    c.close()


def test_document_vector(d):
    """A document of several passages also stores its document vector: the whole text encoded,
    which the encoder truncates to its window as `encode` does. get returns it, the score leads
    with it, and the add reply counts its encode without calling the document truncated."""
    c = d.client()
    rng = random.Random(5)
    text = long_doc(rng, DEEP, 40, 40)
    _, np0 = counts(c)
    rep = ok(c.call("add", documents=[{"id": "long", "text": text},
                                      {"id": "short", "text": "I love pasta"}]), "add")
    _, np1 = counts(c)
    n_long = np1 - np0 - 1
    check(n_long > 3, "the long document has %d passages" % n_long)
    check(rep["encoded"] + rep["cached"] == n_long + 1 + 1,
          "encoded + cached %r: %d passages, the long text's document vector and the short text"
          % ((rep["encoded"], rep["cached"]), n_long))
    check(rep["truncated"] == [], "the document vector's cut made a document truncated: %r" % (
        rep["truncated"],))
    enc = ok(c.call("encode", texts=[text, DEEP_Q]), "encode")
    check(enc["truncated"] == [0], "encode of the long text is not truncated: %r" % (
        enc["truncated"],))
    want, q = enc["embeddings"]
    g = ok(c.call("get", ids=["long"], include=["vector"]), "get")["documents"][0]["vector"]
    check(max(abs(a - b) for a, b in zip(want, g)) < 1e-6,
          "get's vector is not the encode of the document's text")
    r = ok(c.call("query", text=DEEP_Q, k=1, include=[]), "query")["results"][0]
    lead = sum(a * b for a, b in zip(g, q))
    check(r["id"] == "long" and abs(r["score"] - (0.3 * lead + 0.7 * r["passage"]["score"])) < 1e-5,
          "score %r, want 0.3 * %r + 0.7 * %r" % (r["score"], lead, r["passage"]["score"]))
    # the same text again: every text of it comes from the cache
    rep = ok(c.call("add", documents=[{"id": "long2", "text": text}]), "add again")
    check((rep["encoded"], rep["cached"]) == (0, n_long + 1), "a repeat: %r" % (
        (rep["encoded"], rep["cached"]),))
    c.close()


TESTS = [
    ("passages_found_deep", test_passages_found_deep),
    ("document_vector", test_document_vector),
    ("group_and_passages_per_document", test_group_and_passages_per_document),
    ("upsert_and_delete", test_upsert_and_delete),
    ("restart_replay_rebuild", test_restart_replay_rebuild),
]


def main():
    global MODEL
    MODEL = sys.argv[1]
    return h.run_cases(MODEL, [(name, fn, None) for name, fn in TESTS], set(sys.argv[2:]))


if __name__ == "__main__":
    sys.exit(main())
