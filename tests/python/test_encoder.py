"""sbertd.Encoder (libsbert.so.1 through ctypes): the same bits as sbert-encode."""
import json
import os
import subprocess
import threading

import numpy as np
import pytest

import sbertd


@pytest.fixture(scope="module")
def golden_texts(golden_dir):
    with open(os.path.join(golden_dir, "embeddings.jsonl")) as f:
        head = json.loads(f.readline())
        texts = [json.loads(line) for line in f]
    assert len(texts) == head["count"]
    return head, texts


def run_sbert_encode(exe, model_dir, texts, *args):
    """sbert-encode's f32 rows for texts (one per line: none may hold a line break)."""
    data = "".join(t + "\n" for t in texts).encode()
    r = subprocess.run([exe, "--model", model_dir, "--format", "f32"] + list(args), input=data,
                       capture_output=True, check=True, timeout=900)
    return np.frombuffer(r.stdout, dtype=np.float32).reshape(len(texts), -1)


def test_bit_identical_to_sbert_encode(model_dir, sbert_encode, golden_dir, golden_texts):
    head, texts = golden_texts
    # sbert-encode reads lines; 6 golden texts hold a line break and cannot be given to it
    lines = [t for t in texts if "\n" not in t and "\r" not in t]
    assert len(lines) > 700
    ref = run_sbert_encode(sbert_encode, model_dir, lines)
    with sbertd.Encoder(model_dir) as e:
        assert (e.dim, e.max_seq_length) == (384, 256)
        # the same calls as sbert-encode's (its default --batch 32, one thread): the same bits
        by32 = np.concatenate([e.encode(lines[i:i + 32]) for i in range(0, len(lines), 32)])
        assert by32.dtype == np.float32 and by32.shape == ref.shape
        assert np.array_equal(by32, ref), "max difference %g" % np.abs(by32 - ref).max()
        # in one call: the passes hold other texts together, equal to float rounding (sbert.h)
        np.testing.assert_allclose(e.encode(lines), ref, atol=1e-6)
        # and sentence-transformers' goldens (all 787 texts), to float rounding
        gold = np.fromfile(os.path.join(golden_dir, "embeddings.f32"), dtype=np.float32)
        gold = gold.reshape(head["count"], head["dim"])
        allv = e.encode(texts)
        cos = np.sum(allv * gold, axis=1) / np.linalg.norm(gold, axis=1)
        assert cos.min() > 1 - 1e-5


def test_threads_and_api(model_dir):
    texts = ["The cat sits outside", "", "I love pasta", "x " * 400]
    one = sbertd.Encoder(model_dir, threads=1)
    two = sbertd.Encoder(model_dir, threads=2)
    a = one.encode(texts)
    np.testing.assert_allclose(two.encode(texts), a, atol=1e-6)
    v, trunc = one.encode(texts, return_truncated=True)
    assert trunc.tolist() == [False, False, False, True]
    assert one.encode("I love pasta").shape == (384,)
    # alone, a text runs on another code path: equal to float rounding (sbert.h)
    np.testing.assert_allclose(one.encode([b"I love pasta"])[0], a[2], atol=1e-6)
    assert one.encode([]).shape == (0, 384)
    # concurrent calls on one encoder (the GIL is released during a call)
    out = [None] * 4

    def work(i):
        out[i] = one.encode(texts)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for o in out:
        np.testing.assert_allclose(o, a, atol=1e-6)
    with pytest.raises(sbertd.encoder.EncoderError) as ei:
        one.encode([b"ok", b"bad \xc3\x28 byte"])
    assert ei.value.index == 1 and "UTF-8" in str(ei.value)
    one.close()
    with pytest.raises(ValueError):
        one.encode(["closed"])
    two.close()


def test_load_errors(tmp_path):
    with pytest.raises(sbertd.encoder.EncoderError) as ei:
        sbertd.Encoder(str(tmp_path / "nonexistent"))
    assert "nonexistent" in str(ei.value)
    with pytest.raises(OSError):
        sbertd.Encoder(str(tmp_path), library=str(tmp_path / "libnothing.so"))
