#!/usr/bin/env python3
"""Builds bench/longdoc's document set from the manual pages installed on this machine (issue 12).

    bench/longdoc/build_set.py OUT.jsonl [N]

Sections 1, 3, 5, 7 and 8 (Google Cloud SDK's ~16,000 generated gcloud pages left out, so that one
product does not make up the set), taken in the order of a SHA-256 of their path (a fixed sample),
rendered by man(1) and col(1). Each kept page gives one line {"id", "query", "text"}:
  query  the NAME line's description ("ls - list directory contents" gives "list directory
         contents"): what a user who does not know the command's name would ask;
  text   the rendered page without its NAME section, header and footer lines and table rules:
         a long technical document whose beginning says what it is about.
Pages whose description is shorter than 3 words, whose text is under 800 characters, or whose
description another page shares (an ambiguous query) are left out. N (default 1500) pages are
kept. Standard library only.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

SECTIONS = ("man1", "man3", "man5", "man7", "man8")


def pages():
    files = []
    for sec in SECTIONS:
        d = os.path.join("/usr/share/man", sec)
        if not os.path.isdir(d):
            continue
        for f in os.listdir(d):
            p = os.path.join(d, f)
            if os.path.isfile(p) and not os.path.islink(p) and not f.startswith("gcloud"):
                files.append(p)
    return sorted(files, key=lambda p: hashlib.sha256(p.encode()).hexdigest())


def render(path):
    # A very wide MANWIDTH keeps each paragraph on one line, so passages split on sentences, not
    # on the terminal's line breaks.
    env = dict(os.environ, MANWIDTH="100000", MAN_KEEP_FORMATTING="0")
    try:
        r = subprocess.run(["man", "-l", path], capture_output=True, timeout=30, env=env)
        t = subprocess.run(["col", "-bx"], input=r.stdout, capture_output=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return path, ""
    return path, t.decode("utf-8", "replace")


def parse(path, rendered):
    lines = rendered.split("\n")
    if len(lines) < 5:
        return None
    text = "\n".join(lines[1:-2])  # the header and footer lines
    m = re.search(r"^NAME\n(.*?)\n\n(?=[A-Z])", text, re.S | re.M)
    if not m:
        return None
    name = " ".join(m.group(1).split())
    if " - " not in name:
        return None
    query = name.split(" - ", 1)[1].strip()
    body = text[:m.start()] + text[m.end():]
    body = re.sub(r"[\u2500-\u257f]+", " ", body)  # tbl's box rules
    body = re.sub(r"[ \t]+", " ", body)
    body = re.sub(r" *\n *", "\n", body)
    body = re.sub(r"\n\n+", "\n\n", body).strip()
    if len(query.split()) < 3 or len(body) < 800 or "\ufffd" in body:
        return None
    return {"id": os.path.basename(path), "query": query, "text": body}


def main():
    out, n = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    files = pages()
    docs, count = [], {}
    with ThreadPoolExecutor(os.cpu_count() or 2) as ex:
        for i in range(0, len(files), 256):
            if len(docs) >= n * 1.2:
                break
            for path, rendered in ex.map(render, files[i:i + 256]):
                d = parse(path, rendered)
                if d:
                    docs.append(d)
                    count[d["query"].lower()] = count.get(d["query"].lower(), 0) + 1
    keep = [d for d in docs if count[d["query"].lower()] == 1][:n]
    with open(out, "w") as f:
        for d in keep:
            f.write(json.dumps(d) + "\n")
    lens = sorted(len(d["text"]) for d in keep)
    print("%d pages; characters median %d, p90 %d, max %d" % (len(keep), lens[len(lens) // 2],
                                                             lens[int(len(lens) * 0.9)], lens[-1]))


if __name__ == "__main__":
    main()
