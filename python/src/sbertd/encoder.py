"""sbertd.Encoder: the sbertd C encoder (libsbert.so.1, encoder/include/sbert_c.h) in this process, over
ctypes: the same numbers as sbert-encode and the daemon, without a daemon.

The library is found through, in order: the library= argument, $SBERTD_LIBRARY, then the
system's library path (libsbert.so.1, as `cmake --install` puts it in PREFIX/lib).
"""
import ctypes
import ctypes.util
import os
import threading

import numpy as np

from .errors import SbertdError

ABI_VERSION = 1

_libs = {}
_libs_lock = threading.Lock()


class EncoderError(SbertdError):
    """The C encoder failed: ``code`` is its name for the error (sbert_c_strerror), ``errno``
    the negative SBERT_C_E* number, ``index`` the text at fault (invalid UTF-8)."""

    code = "encoder"

    def __init__(self, message, errno=None, index=None):
        super().__init__(message, index=index)
        self.errno = errno


def _load(path):
    with _libs_lock:
        if path in _libs:
            return _libs[path]
        lib = ctypes.CDLL(path)
        lib.sbert_c_abi_version.restype = ctypes.c_int
        lib.sbert_c_abi_version.argtypes = []
        v = lib.sbert_c_abi_version()
        if v != ABI_VERSION:
            raise OSError("%s has C ABI version %d, this package speaks %d" % (path, v,
                                                                            ABI_VERSION))
        lib.sbert_c_strerror.restype = ctypes.c_char_p
        lib.sbert_c_strerror.argtypes = [ctypes.c_int]
        lib.sbert_c_encoder_create.restype = ctypes.c_int
        lib.sbert_c_encoder_create.argtypes = [ctypes.c_char_p, ctypes.c_int,
                                               ctypes.POINTER(ctypes.c_void_p),
                                               ctypes.c_char_p, ctypes.c_size_t]
        lib.sbert_c_encoder_free.restype = None
        lib.sbert_c_encoder_free.argtypes = [ctypes.c_void_p]
        lib.sbert_c_encoder_dim.restype = ctypes.c_int
        lib.sbert_c_encoder_dim.argtypes = [ctypes.c_void_p]
        lib.sbert_c_encoder_max_seq_length.restype = ctypes.c_int
        lib.sbert_c_encoder_max_seq_length.argtypes = [ctypes.c_void_p]
        lib.sbert_c_encoder_encode.restype = ctypes.c_int
        lib.sbert_c_encoder_encode.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                               ctypes.POINTER(ctypes.c_size_t), ctypes.c_size_t,
                                               ctypes.c_void_p, ctypes.POINTER(ctypes.c_int),
                                               ctypes.POINTER(ctypes.c_size_t)]
        _libs[path] = lib
        return lib


def find_library(library=None):
    """The path (or soname) of libsbert to load: library, $SBERTD_LIBRARY, or the system's."""
    path = library or os.environ.get("SBERTD_LIBRARY") or ctypes.util.find_library("sbert")
    if not path:
        raise OSError("libsbert.so.1 (sbertd's encoder library) not found: build it (cmake "
                      "target sbert_shared) and set SBERTD_LIBRARY to its path, or install it "
                      "(cmake --install)")
    return path


class Encoder:
    """A sentence-transformers model directory loaded by sbertd's C encoder.

    threads: the threads each encode() call uses (default 1, as sbert-encode's). The encoder
    is thread-safe, and ctypes releases the GIL during a call, so Python threads can encode at
    once. The model's weights are memory-mapped read-only.
    """

    def __init__(self, model_dir, threads=None, library=None):
        self.library = find_library(library)
        self._lib = _load(self.library)
        self.model_dir = os.fspath(model_dir)
        self._h = ctypes.c_void_p()
        err = ctypes.create_string_buffer(512)
        rc = self._lib.sbert_c_encoder_create(self.model_dir.encode(), int(threads or 0),
                                              ctypes.byref(self._h), err, len(err))
        if rc:
            raise EncoderError("%s: %s" % (self._lib.sbert_c_strerror(rc).decode(),
                                           err.value.decode(errors="replace")), errno=rc)
        self.dim = self._lib.sbert_c_encoder_dim(self._h)
        self.max_seq_length = self._lib.sbert_c_encoder_max_seq_length(self._h)

    def close(self):
        if self._h:
            self._lib.sbert_c_encoder_free(self._h)
            self._h = ctypes.c_void_p()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def encode(self, texts, return_truncated=False):
        """model.encode(texts): a float32 array, len(texts) x dim (dim for one string).
        With return_truncated, also a bool array saying which texts were cut to max_seq_length
        tokens. Texts are str (encoded as UTF-8) or UTF-8 bytes."""
        if not self._h:
            raise ValueError("the encoder is closed")
        one = isinstance(texts, (str, bytes))
        items = [texts] if one else list(texts)
        raw = [t.encode() if isinstance(t, str) else bytes(t) for t in items]
        n = len(raw)
        out = np.empty((n, self.dim), dtype=np.float32)
        trunc = (ctypes.c_int * max(n, 1))()
        if n:
            ptrs = (ctypes.c_char_p * n)(*raw)
            lens = (ctypes.c_size_t * n)(*map(len, raw))
            bad = ctypes.c_size_t(0)
            rc = self._lib.sbert_c_encoder_encode(self._h, ptrs, lens, n,
                                                  out.ctypes.data_as(ctypes.c_void_p), trunc,
                                                  ctypes.byref(bad))
            if rc:
                idx = bad.value if rc == -5 else None
                raise EncoderError(self._lib.sbert_c_strerror(rc).decode(), errno=rc,
                                   index=idx)
        res = out[0] if one else out
        if return_truncated:
            t = np.array(trunc[:n], dtype=bool)
            return res, (t[0] if one else t)
        return res
