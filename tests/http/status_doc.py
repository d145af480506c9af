#!/usr/bin/env python3
"""status_doc.py — PROTOCOL.md section 6's table of HTTP statuses agrees with http/status.c:
every wire code appears in exactly one row, with the status the code gives.

    status_doc.py --dump build/tests/http/http_route_test --doc proto/PROTOCOL.md
"""
import argparse
import re
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--dump", required=True)
ap.add_argument("--doc", required=True)
args = ap.parse_args()
code_status = {}
for line in subprocess.run([args.dump, "--status-table"], check=True, capture_output=True,
                           text=True).stdout.splitlines():
    name, status = line.split()
    code_status[name] = int(status)
doc = open(args.doc, encoding="utf-8").read()
m = re.search(r"^## 6\. .*?$(.*?)(?=^## |\Z)", doc, re.M | re.S)
if not m:
    sys.exit("status_doc: PROTOCOL.md has no section 6")
documented = {}
for row in re.findall(r"^\|([^|\n]*`[a-z0-9_]+`[^|\n]*)\| *(\d{3}) [^|\n]*\|$", m.group(1), re.M):
    for name in re.findall(r"`([a-z0-9_]+)`", row[0]):
        if name in documented:
            print("status_doc: %s is in two rows" % name)
            sys.exit(1)
        documented[name] = int(row[1])
bad = 0
for name, status in code_status.items():
    if documented.get(name) != status:
        print("status_doc: %s is %s in http/status.c, %s in PROTOCOL.md section 6" % (
            name, status, documented.get(name)))
        bad = 1
for name in set(documented) - set(code_status):
    print("status_doc: PROTOCOL.md section 6 names %s, which is no wire code" % name)
    bad = 1
if bad:
    sys.exit(1)
print("status_doc: %d codes agree" % len(code_status))
