"""Test harness for sbertd: a raw nanomsg REQ client (ctypes over libnanomsg, stdlib only) and a
helper that starts the real daemon on a temporary data directory and ipc socket.

Used by tests/daemon/*.py (and available to other test folders). Every call has a receive
timeout: a daemon that does not answer fails the test instead of hanging it.

Under a sanitizer sbertd is slower (ASan ~2-4x, TSan 5-15x): scripts/test.sh exports
SBERT_TEST_TIMEOUT_SCALE (4 under ASan, 10 under TSan), by which every client timeout and the
daemon's start and stop waits are multiplied, and SBERT_TEST_SANITIZER (address, thread) for
tests that skip what a sanitizer makes meaningless. A client whose timeout is the expected
outcome (a dropped message) passes scale=False: its wait stays short.
"""
import ctypes
import ctypes.util
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import traceback

AF_SP = 1
NN_REQ = 3 * 16
NN_SOL_SOCKET = 0
NN_SNDTIMEO = 4
NN_RCVTIMEO = 5
NN_RCVMAXSIZE = 16
NN_IPV4ONLY = 14
NN_REQ_RESEND_IVL = 1
NN_MSG = ctypes.c_size_t(-1).value
ETIMEDOUT = 110

TIMEOUT_SCALE = float(os.environ.get("SBERT_TEST_TIMEOUT_SCALE") or 1)
SANITIZER = os.environ.get("SBERT_TEST_SANITIZER", "")

_lib = ctypes.CDLL(ctypes.util.find_library("nanomsg") or "libnanomsg.so.5", use_errno=True)
_lib.nn_socket.argtypes = [ctypes.c_int, ctypes.c_int]
_lib.nn_connect.argtypes = [ctypes.c_int, ctypes.c_char_p]
_lib.nn_setsockopt.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                               ctypes.c_size_t]
_lib.nn_send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_lib.nn_recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_lib.nn_freemsg.argtypes = [ctypes.c_void_p]
_lib.nn_close.argtypes = [ctypes.c_int]
_lib.nn_errno.restype = ctypes.c_int
_lib.nn_strerror.restype = ctypes.c_char_p
_lib.nn_strerror.argtypes = [ctypes.c_int]


class Timeout(Exception):
    """No reply within the receive timeout."""


class Client:
    """One REQ socket. send_raw() sends bytes and returns the reply bytes. timeout_ms is
    multiplied by TIMEOUT_SCALE unless scale is False."""

    def __init__(self, url, timeout_ms=30000, rcvmax=-1, ipv4only=1, scale=True):
        if scale:
            timeout_ms = int(timeout_ms * TIMEOUT_SCALE)
        self.sock = _lib.nn_socket(AF_SP, NN_REQ)
        assert self.sock >= 0, "nn_socket failed"
        for opt, val in ((NN_RCVTIMEO, timeout_ms), (NN_SNDTIMEO, timeout_ms),
                         (NN_RCVMAXSIZE, rcvmax), (NN_IPV4ONLY, ipv4only)):
            v = ctypes.c_int(val)
            assert _lib.nn_setsockopt(self.sock, NN_SOL_SOCKET, opt, ctypes.byref(v), 4) == 0
        # a REQ socket re-sends an unanswered request after 60 s by default: never in a test
        v = ctypes.c_int(3600 * 1000)
        assert _lib.nn_setsockopt(self.sock, NN_REQ, NN_REQ_RESEND_IVL, ctypes.byref(v), 4) == 0
        assert _lib.nn_connect(self.sock, url.encode()) >= 0, "nn_connect failed"

    def send_raw(self, data):
        buf = ctypes.create_string_buffer(data, len(data))
        if _lib.nn_send(self.sock, buf, len(data), 0) < 0:
            e = _lib.nn_errno()
            if e == ETIMEDOUT:
                raise Timeout("send timed out")
            raise OSError(e, _lib.nn_strerror(e).decode())
        p = ctypes.c_void_p()
        n = _lib.nn_recv(self.sock, ctypes.byref(p), NN_MSG, 0)
        if n < 0:
            e = _lib.nn_errno()
            if e == ETIMEDOUT:
                raise Timeout("no reply")
            raise OSError(e, _lib.nn_strerror(e).decode())
        out = ctypes.string_at(p, n)
        _lib.nn_freemsg(p)
        return out

    def call(self, op, **members):
        msg = {"v": 1, "op": op}
        msg.update(members)
        return json.loads(self.send_raw(json.dumps(msg).encode()))

    def close(self):
        _lib.nn_close(self.sock)


def find_sbertd():
    exe = os.environ.get("SBERTD")
    assert exe and os.access(exe, os.X_OK), "SBERTD must name the built sbertd"
    return exe


class Daemon:
    """A real sbertd on tmp/data and ipc://tmp/s.sock. start() waits until health answers."""

    def __init__(self, model, tmp=None, extra=(), config=None, env=None, preexec=None):
        self.exe = find_sbertd()
        self.model = model
        self.tmp = tmp or tempfile.mkdtemp(prefix="sbertd-test-")
        self.data = os.path.join(self.tmp, "data")
        self.url = "ipc://" + os.path.join(self.tmp, "s.sock")
        self.extra = list(extra)
        self.config = config
        self.env = env  # extra environment variables for the daemon, or None
        self.preexec = preexec  # called in the child before exec (e.g. to set rlimits), or None
        self.proc = None
        self.log_path = os.path.join(self.tmp, "sbertd.log")

    def start(self, timeout=120):
        """timeout (s) is multiplied by TIMEOUT_SCALE."""
        timeout *= TIMEOUT_SCALE
        args = [self.exe, "--model", self.model, "--data", self.data, "--listen", self.url,
                "--threads", "4"] + self.extra
        if self.config is not None:
            path = os.path.join(self.tmp, "sbertd.conf")
            with open(path, "w") as f:
                f.write(self.config)
            args += ["--config", path]
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, **self.env) if self.env else None
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env=env,
                                     preexec_fn=self.preexec)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("sbertd exited with %d:\n%s" % (self.proc.returncode,
                                                                     self.read_log()))
            if os.path.exists(self.url[6:]):
                c = Client(self.url, timeout_ms=2000)
                try:
                    # any version-1 reply means it serves (an auth_token daemon refuses health)
                    if c.call("health").get("v") == 1:
                        return self
                except Timeout:
                    pass
                finally:
                    c.close()
            time.sleep(0.1)
        raise AssertionError("sbertd did not answer health within %d s:\n%s" % (timeout,
                                                                                 self.read_log()))

    def client(self, timeout_ms=60000, rcvmax=-1, scale=True):
        return Client(self.url, timeout_ms=timeout_ms, rcvmax=rcvmax, scale=scale)

    def read_log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout=120):
        """SIGTERM; returns the exit status (asserting the daemon exits within timeout s, which
        is multiplied by TIMEOUT_SCALE)."""
        timeout *= TIMEOUT_SCALE
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError("sbertd did not exit within %d s of SIGTERM" % timeout)
        self.log.close()
        return rc

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_cases(model, cases, only=()):
    """Runs test cases, each on a fresh Daemon: cases are (name, fn, opts) with opts a dict (or
    None) of Daemon's config and env, and "nostart" for a case that starts its daemon itself.
    fn(d) raises on failure; a daemon still running afterwards must exit 0 on SIGTERM. Prints
    PASS/FAIL per case (with a failing daemon's log tail) and returns the process exit status."""
    failed = 0
    for name, fn, opts in cases:
        if only and name not in only:
            continue
        opts = opts or {}
        t0 = time.time()
        d = Daemon(model, config=opts.get("config"), env=opts.get("env"))
        try:
            if not opts.get("nostart"):
                d.start()
            fn(d)
            if d.alive():
                rc = d.stop()
                if rc != 0:
                    raise AssertionError("exit status %d after SIGTERM" % rc)
            print("PASS %s (%.1f s)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
            print("---- sbertd log (tail) ----\n" + d.read_log()[-4000:], flush=True)
        finally:
            d.cleanup()
    print("%d failed" % failed)
    return 1 if failed else 0
