#!/usr/bin/env python3
"""optable_doc.py — fails when proto/PROTOCOL.md and proto/'s op table disagree.

    optable_doc.py --dump PATH/optable_test --doc proto/PROTOCOL.md

The table comes from `optable_test --json` (the C table as data); the document is read as a
reader would: section 2's table of common members, section 4's headings ("### NAME — SUMMARY",
"(write)" for writes), each op's member table ("member | type | required | meaning") or "No
members.", the "collection mode only" members, the write list of section 2's req_id, the ops of
section 4's `include` sentence, the max_batch row of section 3, and every request example of
section 4 (its op, its members, their types, the required ones). Every disagreement is printed;
the exit status is 1 when there is one.
"""
import argparse
import json
import re
import subprocess
import sys

REQUIRED = {"yes": "required", "no": "optional", "one of": "one_of",
            "when configured": "configured"}


def section(doc, number):
    """The text of '## <number>. ...' up to the next '## '."""
    m = re.search(r"^## %d\. .*?$(.*?)(?=^## |\Z)" % number, doc, re.M | re.S)
    if not m:
        sys.exit("optable_doc: PROTOCOL.md has no section %d" % number)
    return m.group(1)


def member_table(text):
    """{name: (type, required-column, meaning)} of the first '| member | type | required |'
    table in text, in order; None when there is none."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:3] == ["member", "type", "required"]:
            rows = {}
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                cells = [c.strip() for c in row.strip().strip("|").split("|")]
                name = cells[0].strip("`")
                if name in rows:
                    rows[name] = None  # reported as a duplicate by the caller
                rows[name] = (cells[1], cells[2], cells[3] if len(cells) > 3 else "")
            return rows
    return None


def presence(m):
    if m["one_of"]:
        return "one_of"
    if "configured" in m["flags"]:
        return "configured"
    return "required" if m["required"] else "optional"


class Checker:
    def __init__(self):
        self.problems = []

    def bad(self, fmt, *args):
        self.problems.append(fmt % args)

    def members(self, where, doc_rows, table_members):
        """Compares a document member table with the table's members of one op/envelope."""
        names = [m["name"] for m in table_members]
        if len(set(names)) != len(names):
            self.bad("%s: the table names a member twice: %s", where, names)
        tab = {m["name"]: m for m in table_members}
        for name in doc_rows:
            if name not in tab:
                self.bad("%s: PROTOCOL.md lists member `%s`, the table does not", where, name)
        for name, m in tab.items():
            if name not in doc_rows:
                self.bad("%s: the table has member `%s`, PROTOCOL.md does not", where, name)
                continue
            if doc_rows[name] is None:
                self.bad("%s: PROTOCOL.md lists member `%s` twice", where, name)
                continue
            dtype, dreq, meaning = doc_rows[name]
            if dtype != m["type"]:
                self.bad("%s.%s: type is '%s' in PROTOCOL.md, '%s' in the table", where, name,
                         dtype, m["type"])
            want = REQUIRED.get(dreq)
            if want is None:
                self.bad("%s.%s: PROTOCOL.md's required column says '%s' (yes, no, one of or "
                         "when configured)", where, name, dreq)
            elif want != presence(m):
                self.bad("%s.%s: required is '%s' in PROTOCOL.md, %s in the table", where, name,
                         dreq, presence(m))
            coll = meaning.startswith("collection mode only")
            if coll != ("collection" in m["flags"]):
                self.bad("%s.%s: 'collection mode only' %s in PROTOCOL.md but the flag is %s in "
                         "the table", where, name, "said" if coll else "not said",
                         "set" if "collection" in m["flags"] else "not set")
            if "?" in m["flags"]:
                self.bad("%s.%s: a flag optable_test does not name", where, name)
        if [n for n in names if n in doc_rows] != [n for n in doc_rows if n in tab]:
            self.bad("%s: members in another order than PROTOCOL.md's: table %s, document %s",
                     where, names, list(doc_rows))


def type_ok(t, x):
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
    is_num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    is_str = lambda v: isinstance(v, str)
    each = lambda v, f: isinstance(v, list) and all(f(e) for e in v)
    return {
        "string": is_str,
        "int": lambda v: is_int(v) or (isinstance(v, float) and v.is_integer()),
        "number": is_num,
        "bool": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "array of strings": lambda v: each(v, is_str),
        "array of numbers": lambda v: each(v, is_num),
        "array of objects": lambda v: each(v, lambda e: isinstance(e, dict)),
        "string or array of strings": lambda v: is_str(v) or each(v, is_str),
        "array of arrays of numbers": lambda v: each(v, lambda e: each(e, is_num)),
    }[t](x)


def examples(text):
    """The JSON objects of the ```json blocks of text (those that parse: replies may elide)."""
    out = []
    dec = json.JSONDecoder()
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        pos = 0
        while True:
            start = block.find("{", pos)
            if start < 0:
                break
            try:
                obj, end = dec.raw_decode(block, start)
                out.append(obj)
                pos = end
            except ValueError:
                nl = block.find("\n", start)
                pos = len(block) if nl < 0 else nl + 1
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True, help="optable_test (run with --json)")
    ap.add_argument("--doc", required=True, help="proto/PROTOCOL.md")
    args = ap.parse_args()
    table = json.loads(subprocess.run([args.dump, "--json"], check=True, capture_output=True,
                                      text=True).stdout)
    with open(args.doc, encoding="utf-8") as f:
        doc = f.read()
    c = Checker()
    ops = {o["name"]: o for o in table["ops"]}
    env = {m["name"]: m for m in table["envelope"]}

    # section 2: the members common to every request, and which ops write
    s2 = section(doc, 2)
    rows = member_table(s2)
    if rows is None:
        c.bad("section 2: no member table")
    else:
        c.members("section 2", rows, table["envelope"])
    m = re.search(r"For write operations \(([^)]*)\)", s2)
    if not m:
        c.bad("section 2: no 'For write operations (...)' list")
    else:
        doc_w = re.findall(r"`([a-z_]+)`", m.group(1))
        tab_w = [o["name"] for o in table["ops"] if o["writes"]]
        if doc_w != tab_w:
            c.bad("section 2 lists the write operations %s, the table %s", doc_w, tab_w)

    # section 3: the lists max_batch bounds
    m = re.search(r"^\| `max_batch` *\|[^|]*\|([^\n]*)\|$", section(doc, 3), re.M)
    if not m:
        c.bad("section 3: no max_batch row")
    else:
        doc_b = set(tuple(x.split(".")) for x in re.findall(r"`([a-z_]+\.[a-z_]+)`", m.group(1)))
        for op in re.findall(r"each `([a-z_]+)` list", m.group(1)):
            doc_b |= {(op, mm["name"]) for mm in ops.get(op, {}).get("members", [])
                      if "array" in mm["type"]}
        tab_b = {(o["name"], mm["name"]) for o in table["ops"] for mm in o["members"]
                 if "batch" in mm["flags"]}
        for x in sorted(doc_b - tab_b):
            c.bad("section 3: max_batch bounds %s.%s, the table has no batch flag on it", *x)
        for x in sorted(tab_b - doc_b):
            c.bad("the table flags %s.%s as bounded by max_batch, section 3 does not say so", *x)

    # section 4: headings, member tables, examples
    s4 = section(doc, 4)
    m = re.search(r"`include` \(in ([^)]*)\)", s4)
    if not m:
        c.bad("section 4: no '`include` (in ...)' sentence")
    else:
        doc_i = re.findall(r"`([a-z_]+)`", m.group(1))
        tab_i = [o["name"] for o in table["ops"] if any(x["name"] == "include"
                                                          for x in o["members"])]
        if doc_i != tab_i:
            c.bad("section 4 says `include` is in %s, the table has it in %s", doc_i, tab_i)
    parts = re.split(r"^### (.*)$", s4, flags=re.M)
    heads = []
    for head, body in zip(parts[1::2], parts[2::2]):
        hm = re.fullmatch(r"([a-z_]+) — (.*?)( \(write\))?", head.strip())
        if not hm:
            c.bad("section 4: heading '%s' is not 'NAME — SUMMARY [(write)]'", head)
            continue
        name, summary, write = hm.group(1), hm.group(2), bool(hm.group(3))
        heads.append(name)
        o = ops.get(name)
        if o is None:
            c.bad("section 4 documents op `%s`, the table does not have it", name)
            continue
        if write != o["writes"]:
            c.bad("%s: %s in PROTOCOL.md, writes = %d in the table", name,
                  "(write)" if write else "no (write)", o["writes"])
        if summary != o["summary"]:
            c.bad("%s: summary '%s' in PROTOCOL.md, '%s' in the table", name, summary,
                  o["summary"])
        rows = member_table(body)
        if rows is None:
            if not re.search(r"^No members\.", body, re.M):
                c.bad("%s: neither a member table nor 'No members.' in PROTOCOL.md", name)
            rows = {}
        elif re.search(r"^No members\.", body, re.M):
            c.bad("%s: PROTOCOL.md has both a member table and 'No members.'", name)
        c.members(name, rows, o["members"])
        groups = {mm["one_of"] for mm in o["members"] if mm["one_of"]}
        if len(groups) > 1:
            c.bad("%s: %d 'one of' groups; PROTOCOL.md's column can only say one", name,
                  len(groups))

        # the request examples of this op's section
        reqs = [x for x in examples(body) if isinstance(x, dict) and "op" in x]
        if not any(x.get("op") == name for x in reqs):
            c.bad("%s: no request example in PROTOCOL.md", name)
        for x in reqs:
            ex = ops.get(x["op"])
            if ex is None:
                c.bad("%s: an example sends op `%s`, which the table does not have", name,
                      x["op"])
                continue
            defined = {mm["name"]: mm for mm in ex["members"]}
            defined.update(env)
            for k, v in x.items():
                if k not in defined:
                    c.bad("%s: an example sends member `%s`, which %s does not define", name, k,
                          x["op"])
                elif not type_ok(defined[k]["type"], v):
                    c.bad("%s: an example's `%s` (%s) is not of type '%s'", name, k,
                          json.dumps(v)[:40], defined[k]["type"])
            for mm in list(ex["members"]) + list(table["envelope"]):
                if mm["required"] and mm["name"] not in x:
                    c.bad("%s: an example lacks required member `%s`", name, mm["name"])
            for g in {mm["one_of"] for mm in ex["members"] if mm["one_of"]}:
                have = [mm["name"] for mm in ex["members"] if mm["one_of"] == g and
                        mm["name"] in x]
                if len(have) != 1:
                    c.bad("%s: an example has %s of a 'one of' group", name, have or "none")
    if heads != [o["name"] for o in table["ops"]]:
        c.bad("section 4's ops %s, the table's %s (names and order)", heads,
              [o["name"] for o in table["ops"]])

    for p in c.problems:
        print("optable_doc: " + p)
    if c.problems:
        print("optable_doc: %d disagreements between %s and the op table" % (len(c.problems),
                                                                             args.doc))
        return 1
    print("optable_doc: PROTOCOL.md and the op table agree (%d ops, %d members)" % (
        len(ops), sum(len(o["members"]) for o in table["ops"]) + len(env)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
