#!/usr/bin/env python3
"""A write retried with its req_id after sbertd was killed must not be applied twice.

Usage: test_req_id_crash.py MODEL_DIR   (SBERTD names the sbertd binary)

The crash soak shows that a batch in flight at a SIGKILL is sometimes committed although its
client never got the reply. Such a client retries with the same req_id (PROTOCOL.md section 2: a
repeat is answered with the remembered reply, without executing it again). With a reply cache in
memory only, the retry after the restart executed again and an add with generated ids stored its
documents twice; the store now keeps req_id -> reply in the batch's own transaction. Checked: the
retry gets the first reply (same ids) and no document is added.
"""
import os
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "daemon"))
import sbertd_harness as h  # noqa: E402


def main():
    model = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="sbertd-reqid-")
    d = h.Daemon(model, tmp=tmp)
    try:
        d.start()
        c = d.client()
        req = {"req_id": "retry-1", "documents": [{"text": "generated id, sent once"},
                                                   {"text": "and its neighbour"}]}
        first = c.call("add", **req)
        assert first.get("ok"), first
        c.close()
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.log.close()
        d.start()
        c = d.client()
        again = c.call("add", **req)
        docs = c.call("stats")["documents"]
        c.close()
        d.stop()
        assert again.get("ok"), again
        assert again["ids"] == first["ids"] and docs == 2, (
            "the retry after the restart was executed again: ids %r, then %r; %d documents "
            "stored for 2 sent" % (first["ids"], again["ids"], docs))
        print("ok: the retry got the first reply; 2 documents")
        return 0
    except AssertionError as e:
        print("FAIL: %s" % e)
        return 1
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
