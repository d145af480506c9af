"""Typed exceptions: one class per error code of sbertd's protocol (proto/PROTOCOL.md section 5),
all under SbertdError, plus the client's own (timeout, unreachable, not a v1 reply).

Every exception carries ``code`` (the daemon's code name, e.g. ``"bad_k"``), ``message`` (the
daemon's sentence), ``index`` (the position of the offending item of a list, or None) and
``reply`` (the whole reply, a dict, when there was one). A code this module does not know (the
protocol may add codes within version 1) raises SbertdError itself with that code.
"""


class SbertdError(Exception):
    """Base of every error this package raises about sbertd."""

    code = "error"

    def __init__(self, message, code=None, index=None, reply=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.index = index
        self.reply = reply

    def __str__(self):
        where = "" if self.index is None else " (item %d)" % self.index
        return "%s: %s%s" % (self.code, self.message, where)


# ---- transport (the client's, not the daemon's) -----------------------------------------------

class Timeout(SbertdError, TimeoutError):
    """No reply within the timeout (after the retries, if any)."""

    code = "timeout"


class Unreachable(SbertdError, ConnectionError):
    """The endpoint cannot be reached (no socket file, connection refused, bad URL)."""

    code = "unreachable"


class ProtocolError(SbertdError):
    """The reply is not a version-1 sbertd reply (is the endpoint sbertd?)."""

    code = "protocol"


class UnsupportedOperation(SbertdError):
    """The daemon does not have this operation (an older sbertd): raised as its subclass
    UnknownOp when the daemon answers ``unknown_op``."""

    code = "unsupported"


# ---- the daemon's codes (PROTOCOL.md section 5) -----------------------------------------------

class BadJson(SbertdError):
    code = "bad_json"


class BadUtf8(SbertdError):
    code = "bad_utf8"


class BadVersion(SbertdError):
    code = "bad_version"


class UnknownOp(UnsupportedOperation):
    code = "unknown_op"


class Unauthorized(SbertdError):
    code = "unauthorized"


class BadRequest(SbertdError):
    code = "bad_request"


class TooLarge(SbertdError):
    code = "too_large"


class EmptyText(SbertdError):
    code = "empty_text"


class TextTooLong(SbertdError):
    code = "text_too_long"


class BadK(SbertdError):
    code = "bad_k"


class BadScore(SbertdError):
    code = "bad_score"


class BadFilter(SbertdError):
    code = "bad_filter"


class BadVector(SbertdError):
    code = "bad_vector"


class BadId(SbertdError):
    code = "bad_id"


class BadMetadata(SbertdError):
    code = "bad_metadata"


class ReqIdReused(SbertdError):
    code = "req_id_reused"


class Exists(SbertdError):
    code = "exists"


class NoSpace(SbertdError):
    code = "no_space"


class IoError(SbertdError):
    code = "io_error"


class Busy(SbertdError):
    code = "busy"


class ShuttingDown(SbertdError):
    code = "shutting_down"


class Internal(SbertdError):
    code = "internal"


class NoCollection(SbertdError):
    code = "no_collection"


#: code name -> exception class, for every code of PROTOCOL.md section 5.
BY_CODE = {c.code: c for c in (
    BadJson, BadUtf8, BadVersion, UnknownOp, Unauthorized, BadRequest, TooLarge, EmptyText,
    TextTooLong, BadK, BadScore, BadFilter, BadVector, BadId, BadMetadata, ReqIdReused, Exists,
    NoSpace, IoError, Busy, ShuttingDown, Internal, NoCollection)}


def from_reply(reply):
    """The exception for an error reply ({"ok": false, "error": {...}})."""
    e = reply.get("error") if isinstance(reply.get("error"), dict) else {}
    code = e.get("code") if isinstance(e.get("code"), str) else "error"
    cls = BY_CODE.get(code, SbertdError)
    return cls(str(e.get("message", "")), code=code, index=e.get("index"), reply=reply)
