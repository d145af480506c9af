"""faults_daemon.py — sbertd end to end under injected faults (issue 17).

Starts sbertd_faults (sbertd linked with tests/faults' wrappers; SBERTD names it) on a temporary
store and drives its fault control FIFO (SBERT_FAULTS_CTL, faults.c). For each op and each family
(allocations, LMDB calls), call N of the family fails while the daemon handles one request, for
N = 1, 2, ... up to the number of calls the request makes: every call when it makes at most
2 * SPAN, else the first SPAN and SPAN more spread over the rest, which bounds CI's time. Checks:
  - a reply comes (no hang) and is a version-1 message;
  - it is ok, or an error with a server-side code (internal, io_error, no_space), never one that
    blames the client's request;
  - with faults off the same request (same req_id) then succeeds, and the daemon keeps serving;
  - at the end SIGTERM stops it with exit status 0, and every document acknowledged is there.

  faults_daemon.py <model dir> [op...]      (every op, or the ones named)
"""
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
import sbertd_harness as h  # noqa: E402

SPAN = 25
SERVER_CODES = {"internal", "io_error", "no_space"}


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Faults:
    """The control FIFO of faults.c."""

    def __init__(self, path):
        self.path = path
        self.seq = 0
        os.mkfifo(path)
        self.fd = None

    def command(self, line):
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY)  # waits for the daemon's control thread
        self.seq += 1
        os.write(self.fd, ("%d %s\n" % (self.seq, line)).encode())
        deadline = time.time() + 60 * h.TIMEOUT_SCALE
        while time.time() < deadline:
            try:
                with open(self.path + ".ack") as f:
                    parts = f.read().split()
                if len(parts) == 3 and int(parts[0]) == self.seq:
                    return int(parts[1]), int(parts[2])
            except (OSError, ValueError):
                pass
            time.sleep(0.002)
        raise AssertionError("no acknowledgement of %r" % line)


def requests(tmp):
    """(name, builder) for every op: builder(tag) returns the request's members."""
    docs = [{"id": "fd-%d" % i, "text": "document number %d about cats" % i,
             "metadata": {"lang": "en", "n": i}} for i in range(3)]
    return [
        ("health", lambda tag: {}),
        ("stats", lambda tag: {}),
        ("add", lambda tag: {"documents": [dict(d, id=d["id"] + "-" + tag) for d in docs]}),
        ("get", lambda tag: {"ids": ["base-0", "base-1", "missing"],
                             "include": ["text", "metadata", "vector"]}),
        ("query", lambda tag: {"text": "a cat", "k": 3, "filter": {"lang": "en"},
                               "include": ["text", "metadata"]}),
        ("similarity", lambda tag: {"a": "A man plays guitar", "b": "Someone plays music"}),
        ("encode", lambda tag: {"texts": ["cat", "dog"]}),
        ("pairs", lambda tag: {"texts": ["cat", "dog", "a cat"], "n": 2}),
        ("delete", lambda tag: {"ids": ["fd-0-" + tag, "missing"]}),
        ("backup", lambda tag: {"dir": os.path.join(tmp, "backup-" + tag)}),
    ]


def attempt(c, faults, op, members, family, n):
    """Request op with call n of family failing; returns whether call n was reached."""
    faults.command("arm %s %d" % (family, n))
    reply = c.call(op, **members)
    calls, fired = faults.command("off")
    check(reply.get("v") == 1 and isinstance(reply.get("ok"), bool),
          "%s/%s/%d: not a version-1 reply: %r" % (op, family, n, reply))
    if not reply["ok"]:
        code = reply.get("error", {}).get("code")
        check(fired > 0, "%s/%s/%d: failed with no fault: %r" % (op, family, n, reply))
        check(code in SERVER_CODES,
              "%s/%s/%d: answered %r to a sound request" % (op, family, n, reply["error"]))
    again = c.call(op, **members)
    if op == "backup" and not again.get("ok") and again["error"]["code"] == "exists":
        # not a write: the retry runs again, and finds the backup the failed attempt wrote
        # before its reply could be built
        again = {"ok": all(os.path.exists(os.path.join(members["dir"], f))
                           for f in ("store.mdb", "index.snap"))}
    check(again.get("ok") is True,
          "%s/%s/%d: the retry with faults off failed: %r" % (op, family, n, again))
    return fired > 0


def main():
    model = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="sbertd-faults-")
    ctl = os.path.join(tmp, "faults.ctl")
    faults = Faults(ctl)
    d = h.Daemon(model, tmp=tmp, env={"SBERT_FAULTS_CTL": ctl})
    total = 0
    try:
        d.start()
        c = d.client(timeout_ms=20000)
        base = [{"id": "base-%d" % i, "text": "base text %d" % i, "metadata": {"lang": "en"}}
                for i in range(4)]
        check(c.call("add", documents=base).get("ok") is True, "seeding")
        acked = [x["id"] for x in base]
        only = set(sys.argv[2:])
        for op, build in requests(tmp):
            if only and op not in only:
                continue
            for family in ("alloc", "lmdb"):
                # how many calls of the family one such request makes (faults armed at a call
                # never reached)
                faults.command("arm %s %d" % (family, 1 << 60))
                members = build("count-" + family)
                members["req_id"] = "%s-%s-count" % (op, family)
                check(c.call(op, **members).get("ok") is True, "%s: counting run" % op)
                calls, _ = faults.command("off")
                points = list(range(1, calls + 1)) if calls <= 2 * SPAN else (
                    list(range(1, SPAN + 1)) +
                    [SPAN + i * (calls - SPAN) // SPAN for i in range(1, SPAN + 1)])
                reached = 0
                for n in points:
                    members = build("%s-%d" % (family, n))
                    members["req_id"] = "%s-%s-%d" % (op, family, n)
                    if attempt(c, faults, op, members, family, n):
                        reached += 1
                    if op == "add":
                        acked += [x["id"] for x in members["documents"]]
                    check(d.alive(), "%s/%s/%d: sbertd died:\n%s" % (op, family, n,
                                                                    d.read_log()[-3000:]))
                print("%s/%s: %d calls, %d injection points" % (op, family, calls, reached),
                      flush=True)
                total += reached
        # every add was acknowledged by its retry at the latest; deletes removed fd-0-*
        live = [i for i in acked if not i.startswith("fd-0-")]
        for i in range(0, len(live), 100):
            got = c.call("get", ids=live[i:i + 100])
            docs = got.get("documents", [])
            check(got.get("ok") is True and len(docs) == len(live[i:i + 100]) and
                  all(x.get("found") is True for x in docs),
                  "acknowledged documents missing: %s" % json.dumps(got)[:2000])
        c.close()
        rc = d.stop()
        check(rc == 0, "exit status %d after SIGTERM:\n%s" % (rc, d.read_log()[-3000:]))
        print("daemon: %d injection points" % total)
        return 0
    except Exception as e:  # noqa: BLE001 (the report is the test's output)
        log = d.read_log()
        at = log.find("ERROR: AddressSanitizer")
        print("FAIL: %s\n--- sbertd log ---\n%s" % (e, log[at:at + 12000] if at >= 0 else
                                                      log[-4000:]), flush=True)
        return 1
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
