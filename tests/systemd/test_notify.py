#!/usr/bin/env python3
"""tests/systemd/test_notify.py — the real sbertd as systemd would run it, without systemd.

  test_notify.py notify   SBERTD MODEL_DIR
  test_notify.py syscalls SBERTD MODEL_DIR

notify:
What systemd would see, without systemd: NOTIFY_SOCKET names an AF_UNIX datagram socket bound
here, WATCHDOG_USEC asks for a watchdog. Checks, in one daemon life:
  - STATUS= arrives during start-up and READY=1 (with MAINPID = the daemon's pid) arrives only
    when the ipc socket exists with mode 0660 and answers a health request at once;
  - WATCHDOG=1 pings arrive repeatedly;
  - SIGHUP after the config file's log_level changed from info to debug: RELOADING=1 then
    READY=1, no debug ("<7>") line before, debug lines after, the change logged;
  - SIGTERM while large encode requests are in flight: STOPPING=1, every in-flight request gets
    its full reply (at least one of them after STOPPING=1 was received), exit status 0.
Then a second life on the same data: two SIGTERMs in a row still give exit status 0, and a
third life still has the document added in the first.

Where the kernel has PR_SET_MDWE (Linux >= 6.3) sbertd runs under it, the kernel's form of the
unit's MemoryDenyWriteExecute=yes.

syscalls: one life of sbertd under strace -f (start-up, every kind of request, a SIGHUP reload,
a backup, the watchdog, SIGTERM): every system call it makes must be allowed by the unit's
SystemCallFilter= lines (read from systemd/sbertd.service.in, groups expanded with
systemd-analyze syscall-filter), so the filter never turns a call sbertd needs into EPERM.

Python stdlib only (nanomsg through ctypes).
"""
import ctypes
import ctypes.util
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
        print("FAIL:", msg, file=sys.stderr, flush=True)
    return cond


def fatal(msg):
    print("FAIL:", msg, file=sys.stderr, flush=True)
    sys.exit(1)


# ---- nanomsg REQ client (ctypes) --------------------------------------------------------------

AF_SP, NN_REQ, NN_SOL_SOCKET, NN_LINGER, NN_SNDTIMEO, NN_RCVTIMEO, NN_RCVMAXSIZE = 1, 48, 0, 1, 4, 5, 16
NN_REQ_RESEND_IVL = 1  # option level NN_REQ
NN_MSG = ctypes.c_size_t(-1).value

_nn = ctypes.CDLL(ctypes.util.find_library("nanomsg") or "libnanomsg.so.5", use_errno=True)
_nn.nn_recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_nn.nn_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
_nn.nn_freemsg.argtypes = [ctypes.c_void_p]
_nn.nn_strerror.restype = ctypes.c_char_p


def nn_err():
    return _nn.nn_strerror(_nn.nn_errno()).decode()


class Req:
    def __init__(self, url, timeout_ms):
        self.s = _nn.nn_socket(AF_SP, NN_REQ)
        if self.s < 0:
            fatal("nn_socket: " + nn_err())
        for opt, val in ((NN_RCVTIMEO, timeout_ms), (NN_SNDTIMEO, 5000), (NN_RCVMAXSIZE, -1), (NN_LINGER, 0)):
            v = ctypes.c_int(val)
            _nn.nn_setsockopt(self.s, NN_SOL_SOCKET, opt, ctypes.byref(v), 4)
        # A REQ socket re-sends an unanswered request after NN_REQ_RESEND_IVL (60 s); a re-send
        # of a slow request during shutdown would get shutting_down in place of the real reply.
        v = ctypes.c_int(3600 * 1000)
        _nn.nn_setsockopt(self.s, NN_REQ, NN_REQ_RESEND_IVL, ctypes.byref(v), 4)
        if _nn.nn_connect(self.s, url.encode()) < 0:
            fatal("nn_connect: " + nn_err())

    def call(self, obj):
        """Sends obj as JSON; returns the decoded reply or None (with the error) on timeout."""
        data = json.dumps(obj).encode()
        if _nn.nn_send(self.s, data, len(data), 0) < 0:
            return None, "send: " + nn_err()
        buf = ctypes.c_void_p()
        n = _nn.nn_recv(self.s, ctypes.byref(buf), NN_MSG, 0)
        if n < 0:
            return None, "recv: " + nn_err()
        raw = ctypes.string_at(buf, n)
        _nn.nn_freemsg(buf)
        try:
            return json.loads(raw), None
        except ValueError as e:
            return None, "reply is not JSON: %s: %r" % (e, raw[:200])

    def close(self):
        _nn.nn_close(self.s)


# ---- the notify socket ------------------------------------------------------------------------

class Notify:
    """Collects every datagram the daemon sends, in order, with its arrival time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []  # (monotonic time, {key: value})
        self.cv = threading.Condition()
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            fields = dict(l.split("=", 1) for l in data.decode().split("\n") if "=" in l)
            with self.cv:
                self.msgs.append((time.monotonic(), fields))
                self.cv.notify_all()

    def wait_for(self, pred, start, timeout, proc=None):
        """Index of the first message at or after index start with pred(fields); None on
        timeout or when proc exits first."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i in range(start, len(self.msgs)):
                    if pred(self.msgs[i][1]):
                        return i
                if time.monotonic() > deadline or (proc and proc.poll() is not None):
                    return None
                self.cv.wait(0.2)

    def count(self):
        with self.cv:
            return len(self.msgs)

    def close(self):
        self.stop = True
        self.t.join()
        self.sock.close()


def mdwe_available():
    pid = os.fork()
    if pid == 0:
        os._exit(0 if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0 else 1)
    return os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 0


MDWE_EXEC = ("import ctypes,os,sys\n"
             "assert ctypes.CDLL(None).prctl(65,1,0,0,0)==0\n"
             "os.execv(sys.argv[1],sys.argv[1:])\n")


class Daemon:
    def __init__(self, sbertd, model, tmp, life, notify_path, mdwe, wrap=(), listen=()):
        self.url = "ipc://%s/s.sock" % tmp
        self.sock_path = tmp + "/s.sock"
        self.log_path = "%s/sbertd-%d.log" % (tmp, life)
        self.log = open(self.log_path, "w")
        env = dict(os.environ, NOTIFY_SOCKET=notify_path, WATCHDOG_USEC="1000000")
        env.pop("WATCHDOG_PID", None)
        cmd = [sbertd, "--config", tmp + "/sbertd.conf", "--model", model, "--data", tmp + "/data",
               "--listen", self.url]
        for url in listen:
            cmd += ["--listen", url]
        if mdwe:
            cmd = [sys.executable, "-c", MDWE_EXEC] + cmd
        cmd = list(wrap) + cmd
        print("+", " ".join(cmd), file=sys.stderr, flush=True)
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)

    def log_text(self):
        self.log.flush()
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_conf(tmp, level):
    with open(tmp + "/sbertd.conf", "w") as f:
        f.write("# written by tests/systemd/test_notify.py\nlog_level = %s\n" % level)


def first_life(d, n):
    # Start-up: STATUS= on the way, READY=1 only when the socket answers.
    ready = n.wait_for(lambda m: m.get("READY") == "1", 0, 300, d.proc)
    if not check(ready is not None, "no READY=1 (daemon exit status %s); log:\n%s"
                 % (d.proc.poll(), d.log_text()[-3000:])):
        return
    r = Req(d.url, 60000)  # a hang guard: the add below is the first encode and commit
    reply, err = r.call({"v": 1, "op": "health"})
    check(reply is not None and reply.get("ok") is True and reply.get("v") == 1,
          "health right after READY=1: %r %s" % (reply, err))
    st = os.stat(d.sock_path) if os.path.exists(d.sock_path) else None
    check(st and stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660,
          "ipc socket mode %s, want 0660" % (oct(stat.S_IMODE(st.st_mode)) if st else "missing"))
    with n.cv:
        before = [m for _, m in n.msgs[:ready + 1]]
    check(any("STATUS" in m for m in before), "no STATUS= during start-up: %r" % before)
    check(before[-1].get("MAINPID") == str(d.proc.pid),
          "READY=1 came with MAINPID=%r, daemon pid %d" % (before[-1].get("MAINPID"), d.proc.pid))
    check(not any(m.get("READY") == "1" for m in before[:-1]), "more than one READY=1 at start-up")

    # Watchdog: pings keep coming while the daemon is healthy.
    i = ready
    for k in range(3):
        i = n.wait_for(lambda m: m.get("WATCHDOG") == "1", i + 1, 30, d.proc)
        if not check(i is not None, "WATCHDOG=1 ping %d missing with WATCHDOG_USEC=1000000" % k):
            break

    # A document for the restart check, and requests at log level info: no debug lines yet.
    reply, err = r.call({"v": 1, "op": "add", "req_id": "svc-1",
                         "documents": [{"id": "svc-doc", "text": "A man is eating food."}]})
    check(reply is not None and reply.get("ok") is True, "add: %r %s" % (reply, err))
    # A long job while serving (the reindex op) reports on STATUS=: done/total at most once a
    # second while it runs, and its end.
    mark = n.count()
    reply, err = r.call({"v": 1, "op": "reindex"})
    check(reply is not None and reply.get("ok") is True, "reindex: %r %s" % (reply, err))
    check(n.wait_for(lambda m: m.get("STATUS") == "serving; reindex of 1 documents done", mark, 30,
                     d.proc) is not None, "no STATUS= for the reindex op")
    r.call({"v": 1, "op": "health"})
    log_before = d.log_text()
    check(not re.search(r"^<7>", log_before, re.M), "debug lines logged at log_level info")

    # SIGHUP: RELOADING=1, then READY=1; the new level is in force and the change is logged.
    write_conf(d.tmp, "debug")
    mark = n.count()
    d.proc.send_signal(signal.SIGHUP)
    rel = n.wait_for(lambda m: m.get("RELOADING") == "1", mark, 30, d.proc)
    check(rel is not None, "no RELOADING=1 after SIGHUP")
    again = n.wait_for(lambda m: m.get("READY") == "1", mark if rel is None else rel + 1, 30, d.proc)
    check(again is not None, "no READY=1 after the reload")
    for _ in range(3):
        reply, err = r.call({"v": 1, "op": "health"})
        check(reply is not None and reply.get("ok") is True, "health after SIGHUP: %r %s" % (reply, err))
    new = d.log_text()[len(log_before):]
    check(re.search(r"^<7>", new, re.M), "no debug line after SIGHUP set log_level = debug:\n" + new[-2000:])
    check(re.search(r"log_level.*info.*debug", new), "the log_level change is not logged:\n" + new[-2000:])
    r.close()

    # SIGTERM with large requests in flight: all answered in full, STOPPING=1, exit 0. SIGTERM
    # goes once stats counts both requests in the daemon (in_progress includes the stats request
    # itself). When both were answered before stats saw them, they were too short for this
    # machine: the pair is sent again, twice as large. Nothing waits a fixed time or asserts on
    # one.
    def sentence(i):
        return "sentence %d of the shutdown test about sbertd, its watchdog and its signals" % i

    def client(slot, texts):
        c = Req(d.url, 300000)
        rep, e = c.call({"v": 1, "op": "encode", "texts": texts})
        results[slot] = (rep, e, time.monotonic())
        c.close()

    probe = Req(d.url, 60000)
    in_daemon = False
    count = 128
    while not in_daemon and count < 4096:  # max_batch (4096) bounds an encode
        count *= 2
        texts = [sentence(i) for i in range(count)]
        results = [None, None]
        threads = [threading.Thread(target=client, args=(s, texts)) for s in range(2)]
        for t in threads:
            t.start()
        while not in_daemon and any(t.is_alive() for t in threads):
            reply, err = probe.call({"v": 1, "op": "stats"})
            if not check(reply is not None and reply.get("ok") is True, "stats: %r %s" % (reply, err)):
                count = 4096
                break
            in_daemon = reply["requests"]["in_progress"] >= 3 and all(r is None for r in results)
        if not in_daemon:
            for t in threads:
                t.join(330)
    probe.close()
    if not check(in_daemon, "two encodes of %d texts were never in the daemon together" % count):
        return
    print("in flight at SIGTERM: 2 encodes of %d texts" % count, flush=True)
    mark = n.count()
    d.proc.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(330)
    stopping = n.wait_for(lambda m: m.get("STOPPING") == "1", mark, 120, None)
    try:
        code = d.proc.wait(120)
    except subprocess.TimeoutExpired:
        code = None
    check(code == 0, "exit status %r after SIGTERM, want 0; log:\n%s" % (code, d.log_text()[-3000:]))
    check(stopping is not None, "no STOPPING=1 after SIGTERM")
    for slot, res in enumerate(results):
        rep, e, _ = res if res else (None, "no result", 0)
        ok = rep is not None and rep.get("ok") is True and len(rep.get("embeddings", [])) == len(texts)
        check(ok, "in-flight encode %d not answered in full: %s %s" % (slot, e, str(rep)[:300]))
    if stopping is not None and all(res and res[0] for res in results):
        # informative only: stats saw both in the daemon just before SIGTERM, so each is
        # answered whether it finished during the drain or in the instant before the signal
        print("replies after STOPPING=1: %d of 2"
              % sum(res[2] > n.msgs[stopping][0] for res in results), flush=True)


def second_life(d, n):
    ready = n.wait_for(lambda m: m.get("READY") == "1", 0, 300, d.proc)
    if not check(ready is not None, "second start: no READY=1; log:\n" + d.log_text()[-3000:]):
        return
    # Two SIGTERMs back to back: the second arrives during the shutdown of the first (after its
    # STOPPING=1, unless the daemon has exited by then).
    mark = n.count()
    d.proc.send_signal(signal.SIGTERM)
    n.wait_for(lambda m: m.get("STOPPING") == "1", mark, 120, d.proc)
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
    try:
        code = d.proc.wait(120)
    except subprocess.TimeoutExpired:
        code = None
    check(code == 0, "exit status %r after two SIGTERMs, want 0; log:\n%s" % (code, d.log_text()[-3000:]))


def third_life(d, n):
    ready = n.wait_for(lambda m: m.get("READY") == "1", 0, 300, d.proc)
    if not check(ready is not None, "third start: no READY=1; log:\n" + d.log_text()[-3000:]):
        return
    r = Req(d.url, 60000)
    reply, err = r.call({"v": 1, "op": "get", "ids": ["svc-doc"]})
    check(reply is not None and reply.get("ok") is True and "A man is eating food." in json.dumps(reply),
          "document added before the SIGTERM shutdown is gone: %r %s" % (reply, err))
    r.close()
    d.proc.send_signal(signal.SIGTERM)
    try:
        code = d.proc.wait(120)
    except subprocess.TimeoutExpired:
        code = None
    check(code == 0, "third life: exit status %r" % code)


def syscall_group(name, seen=None):
    """The system calls of a seccomp filter group, nested groups expanded."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    r = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True)
    if r.returncode != 0:
        fatal("systemd-analyze syscall-filter %s: %s" % (name, r.stderr))
    calls = set()
    for line in r.stdout.splitlines()[1:]:
        word = line.split("#")[0].strip()
        if word.startswith("@"):
            calls |= syscall_group(word, seen)
        elif word:
            calls.add(word)
    return calls


def unit_filter():
    """The allow-list the unit's SystemCallFilter= lines build, applied in order as systemd
    does: the first line (not ~) is the list, a ~ line removes, a later plain line adds."""
    unit = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../systemd/sbertd.service.in")
    allowed = None
    with open(unit) as f:
        for line in f:
            if not line.startswith("SystemCallFilter="):
                continue
            value = line.split("=", 1)[1].strip()
            deny = value.startswith("~")
            calls = set()
            for word in value.lstrip("~").split():
                calls |= syscall_group(word) if word.startswith("@") else {word}
            if allowed is None:
                if deny:
                    fatal("the unit's SystemCallFilter= is a deny-list; this check expects an allow-list")
                allowed = calls
            elif deny:
                allowed -= calls
            else:
                allowed |= calls
    if not allowed:
        fatal("no SystemCallFilter= in " + unit)
    return allowed


def run_syscalls(sbertd, model):
    strace = shutil.which("strace")
    if not strace:
        fatal("strace is not installed (scripts/setup.sh installs it)")
    allowed = unit_filter()
    tmp = tempfile.mkdtemp(prefix="sbertd-syscalls-")
    write_conf(tmp, "info")
    n = Notify(tmp + "/notify")
    trace = tmp + "/strace.txt"
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    tcp = "tcp://127.0.0.1:%d" % probe.getsockname()[1]
    probe.close()
    d = Daemon(sbertd, model, tmp, 1, tmp + "/notify", False,
               wrap=(strace, "-f", "-qq", "-s", "0", "-e", "signal=none", "-o", trace), listen=(tcp,))
    d.tmp = tmp
    try:
        ready = n.wait_for(lambda m: m.get("READY") == "1", 0, 600, d.proc)
        if not check(ready is not None, "no READY=1 under strace; log:\n" + d.log_text()[-3000:]):
            return
        # Signals go to sbertd itself (MAINPID), not to strace, its parent here.
        pid = int(n.msgs[ready][1].get("MAINPID", "0"))
        if not check(pid > 0 and pid != d.proc.pid, "READY=1 without sbertd's MAINPID"):
            return
        r = Req(tcp, 60000)
        reply, err = r.call({"v": 1, "op": "health"})
        check(reply is not None and reply.get("ok") is True, "health over %s: %s" % (tcp, err))
        r.close()
        r = Req(d.url, 60000)
        for req in ({"v": 1, "op": "health"},
                    {"v": 1, "op": "add", "documents": [{"id": "a", "text": "A man is eating food.",
                                                         "metadata": {"lang": "en"}},
                                                        {"id": "b", "text": "A man is riding a horse."}]},
                    {"v": 1, "op": "query", "text": "Someone eats", "k": 2,
                     "include": ["text", "metadata", "vector"]},
                    {"v": 1, "op": "get", "ids": ["a"]},
                    {"v": 1, "op": "similarity", "a": "cat", "b": "dog"},
                    {"v": 1, "op": "encode", "texts": ["hello"]},
                    {"v": 1, "op": "pairs", "n": 1},
                    {"v": 1, "op": "stats"},
                    {"v": 1, "op": "backup", "dir": tmp + "/backup"},
                    {"v": 1, "op": "reindex"},
                    {"v": 1, "op": "delete", "ids": ["b"]},
                    {"v": 1, "op": "nonsense"}):
            reply, err = r.call(req)
            check(reply is not None, "%s under strace: %s" % (req["op"], err))
        r.close()
        write_conf(tmp, "debug")
        mark = n.count()
        os.kill(pid, signal.SIGHUP)
        check(n.wait_for(lambda m: m.get("READY") == "1", mark, 60, d.proc) is not None, "no reload")
        n.wait_for(lambda m: m.get("WATCHDOG") == "1", mark, 30, d.proc)
        os.kill(pid, signal.SIGTERM)
        try:
            code = d.proc.wait(300)
        except subprocess.TimeoutExpired:
            code = None
        check(code == 0, "exit status %r under strace (strace passes on sbertd's)" % code)
        with open(trace, errors="replace") as f:
            text = f.read()
        used = set(re.findall(r"^\d+\s+(?:<\.\.\. )?([a-z_0-9]+)[( ]", text, re.M))
        check(len(used) > 20, "strace trace has %d distinct calls" % len(used))
        families = set(re.findall(r"^\d+\s+socket(?:pair)?\((AF_[A-Z0-9]+)", text, re.M))
        print("socket families: " + " ".join(sorted(families)))
        check(families and families <= {"AF_UNIX", "AF_INET", "AF_INET6"},
              "socket families outside RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6: %r" % families)
        print("%d distinct system calls: %s" % (len(used), " ".join(sorted(used))))
        denied = sorted(used - allowed)
        check(not denied, "system calls the unit's SystemCallFilter= refuses: " + " ".join(denied))
    finally:
        d.kill()
        n.close()
        if not failures:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("notify", "syscalls"):
        sys.exit(__doc__)
    mode, sbertd, model = sys.argv[1:]
    if not os.access(sbertd, os.X_OK):
        fatal("sbertd is not built at %s (the daemon target)" % sbertd)
    if not os.path.isfile(os.path.join(model, "model.safetensors")):
        fatal("no model in %s (scripts/fetch-model.sh)" % model)
    if mode == "syscalls":
        run_syscalls(sbertd, model)
        if failures:
            print("%d check(s) failed" % len(failures), file=sys.stderr)
            return 1
        print("ok")
        return 0
    mdwe = mdwe_available()
    print("PR_SET_MDWE %s" % ("on: sbertd runs with W^X enforced by the kernel" if mdwe
                              else "not available on this kernel: sbertd runs without it"), flush=True)
    tmp = tempfile.mkdtemp(prefix="sbertd-notify-")
    write_conf(tmp, "info")
    for life, body in enumerate((first_life, second_life, third_life), 1):
        notify_path = "%s/notify-%d" % (tmp, life)
        n = Notify(notify_path)
        d = Daemon(sbertd, model, tmp, life, notify_path, mdwe)
        d.tmp = tmp
        try:
            body(d, n)
        finally:
            d.kill()
            n.close()
        if life == 1:
            write_conf(tmp, "info")
    if failures:
        print("%d check(s) failed; logs kept in %s" % (len(failures), tmp), file=sys.stderr)
        return 1
    shutil.rmtree(tmp, ignore_errors=True)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
