#!/usr/bin/env python3
"""test_http_page.py — the search page (http/search.html, GET /) in headless Chromium against
http_testserver's fake daemon: the page loads with ?q=..., runs POST /v1/query with fetch(), and
the DOM after its script ran must hold one row per hit (score, id, text, metadata, and the passage
of the hit that has one); with a collection the fake refuses the query and the page must show the
error's code. A screenshot of the results is saved (--out) for a person to look at.

    test_http_page.py --server build/tests/http/http_testserver --out DIR
Needs Debian's chromium (scripts/setup.sh installs it).
"""
import argparse
import html.parser
import os
import shutil
import subprocess
import sys
import tempfile

AP = argparse.ArgumentParser()
AP.add_argument("--server", required=True)
AP.add_argument("--out", required=True)
ARGS = AP.parse_args()
SCALE = float(os.environ.get("SBERT_TEST_TIMEOUT_SCALE") or 1)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    sys.exit("test_http_page.py: chromium is not installed (scripts/setup.sh installs it)")
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)


class Rows(html.parser.HTMLParser):
    """Collects the cells of <tr class="hit"> rows, the error box and body's data-state."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell, self.in_row, self.error, self.in_error = [], None, False, "", False
        self.state = None
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self.state = a.get("data-state")
        if tag == "tr" and a.get("class") == "hit":
            self.in_row = True
            self.rows.append({})
        elif self.in_row and tag == "td":
            self.cell = a.get("class") or "text"
            self.rows[-1][self.cell] = ""
        elif self.in_row and tag == "div" and a.get("class") == "passage":
            self.cell = "passage"
            self.rows[-1]["passage"] = ""
        if a.get("id") == "error":
            self.in_error = True

    def handle_endtag(self, tag):
        if tag == "tr":
            self.in_row = False
        if tag == "td":
            self.cell = None
        if tag == "div" and self.cell == "passage":
            self.cell = "text"
        if tag == "div" and self.in_error:
            self.in_error = False

    def handle_data(self, data):
        if self.in_row and self.cell:
            self.rows[-1][self.cell] += data
        if self.in_error:
            self.error += data


def chromium(profile, *args):
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--user-data-dir=" + profile,
           # virtual time runs the page's fetch() to completion before the DOM or the
           # screenshot is taken
           "--virtual-time-budget=%d" % int(10000 * SCALE), "--window-size=1200,640", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120 * SCALE)


os.makedirs(ARGS.out, exist_ok=True)
srv = subprocess.Popen([ARGS.server], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
try:
    port = int(srv.stdout.readline().split()[1])
    base = "http://127.0.0.1:%d/" % port
    with tempfile.TemporaryDirectory(prefix="sbert-chromium-") as profile:
        p = chromium(profile, "--dump-dom", base + "?q=A%20cat%20is%20outdoors&k=3")
        rows = Rows()
        rows.feed(p.stdout)
        check(rows.state == "done", "the query ran (data-state %r); chromium stderr tail: %s" % (
            rows.state, p.stderr[-500:]))
        check([r.get("id") for r in rows.rows] == ["cat", "report-7", "c2"],
              "three result rows by id: %s" % rows.rows)
        if len(rows.rows) == 3:
            check(rows.rows[0]["score"].startswith("0.7123"), "score shown: %r" % rows.rows[0])
            check(rows.rows[0]["text"] == "The cat sits outside", "text shown")
            check('"lang":"en"' in rows.rows[0]["meta"], "metadata shown")
            check(rows.rows[1].get("passage", "").startswith("Revenue grew"),
                  "passage shown: %r" % rows.rows[1])
            check("passage" not in rows.rows[0], "no passage where the hit has none")
            check(rows.rows[2]["text"] == "Le chat joue dans le jardin <b>&amp;</b>",
                  "text shown as text, not HTML: %r" % rows.rows[2]["text"])

        # the collection is sent; the fake daemon refuses it as sbertd does until collections
        # exist, and the page shows the error's code
        p = chromium(profile, "--dump-dom", base + "?q=cat&collection=papers")
        rows = Rows()
        rows.feed(p.stdout)
        check(rows.state == "error" and "bad_request" in rows.error and "collection" in rows.error,
              "error shown: state %r, %r" % (rows.state, rows.error))
        check(not rows.rows, "no rows on an error")

        shot = os.path.join(ARGS.out, "search.png")
        if os.path.exists(shot):
            os.unlink(shot)
        p = chromium(profile, "--screenshot=" + shot, base + "?q=A%20cat%20is%20outdoors&k=3")
        check(os.path.exists(shot) and os.path.getsize(shot) > 10000,
              "screenshot written: %s" % p.stderr[-300:])
        print("screenshot:", shot)
finally:
    srv.stdin.close()
    srv.wait(timeout=30)
if FAILURES:
    print("test_http_page.py: %d failures" % len(FAILURES))
    sys.exit(1)
print("test_http_page.py: ok")
