"""Distributed bulk encoding (issue 15): Ray Data map_batches with sbertd.Encoder on a local
2-worker Ray cluster encodes 20,000 texts bit-identically to sbert-encode; the vectors go into a
real sbertd with add(..., embeddings=...), which then answers queries over them."""
import gzip
import os
import random
import subprocess

import numpy as np
import pytest

import sbertd
from sbertd.bulk import EncodeBatches, write_to_sbertd
from conftest import start_daemon

N = int(os.environ.get("SBERT_TEST_RAY_TEXTS") or 20000)  # fewer only to debug by hand
BATCH = 1000  # rows per map_batches call; big batches take sbert-encode's code path exactly


@pytest.fixture(scope="module")
def texts(shared_dir):
    with gzip.open(os.path.join(shared_dir, "data", "corpus", "tatoeba_en_sentences.txt.gz"),
                   "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    random.Random(15).shuffle(lines)  # the file is sorted short to long
    out = lines[:N]
    assert len(out) == N and all(out)
    return out


def test_ray_bulk_encode_into_sbertd(texts, model_dir, sbert_encode, tmp_path):
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # the reference: sbert-encode over the same texts in the same calls (1000 texts, one
    # thread: the encoder's bits depend on how a call's texts are shared among its threads)
    r = subprocess.run([sbert_encode, "--model", model_dir, "--format", "f32", "--batch",
                        str(BATCH), "--threads", "1"],
                       input="".join(t + "\n" for t in texts).encode(), capture_output=True,
                       check=True, timeout=1800)
    ref = np.frombuffer(r.stdout, dtype=np.float32).reshape(N, 384)

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=None, ignore_reinit_error=True)
    d = start_daemon(model_dir)
    try:
        ds = ray.data.from_items([{"id": "t%05d" % i, "text": t} for i, t in enumerate(texts)],
                                 override_num_blocks=max(1, N // (5 * BATCH)))
        ds = ds.map_batches(EncodeBatches, batch_format="numpy", batch_size=BATCH,
                            concurrency=2, num_cpus=1,
                            fn_constructor_kwargs={"model_dir": model_dir,
                                                   "library": os.environ["SBERTD_LIBRARY"]})
        got = np.zeros((N, 384), dtype=np.float32)
        seen = np.zeros(N, dtype=bool)

        def batches():
            for b in ds.iter_batches(batch_size=4096, batch_format="numpy"):
                idx = np.array([int(i[1:]) for i in b["id"]])
                got[idx] = np.stack(list(b["embedding"]))
                seen[idx] = True
                yield b
        with sbertd.Client(d.url, timeout=120) as c:
            assert write_to_sbertd(c, batches()) == N
            assert seen.all()
            diff = np.abs(got - ref).max(axis=1)
            assert np.array_equal(got, ref), "%d rows differ from sbert-encode, by up to %g" % (
                int((diff > 0).sum()), diff.max())
            assert c.health()["documents"] == N
            st = c.stats()
            assert st["index"]["count"] == N
            # the daemon serves them: each sampled text finds itself (or a text that encodes to
            # the very same vector, e.g. differing only in case)
            rng = random.Random(7)
            for i in rng.sample(range(N), 25):
                hit = c.query(texts[i], k=1)[0]
                j = int(hit.id[1:])
                assert hit.score > 0.9999
                assert j == i or np.abs(ref[j] - ref[i]).max() < 1e-6, (texts[i], hit)
            stored = c.get(["t%05d" % i for i in range(0, N, 997)], include=["vector"])
            for doc in stored:
                np.testing.assert_allclose(doc.vector, ref[int(doc.id[1:])], atol=1e-6)
            # and a precomputed query vector from the same Encoder ranks the same
            with sbertd.Encoder(model_dir) as e:
                qv = e.encode(["Where is the train station?"])
            by_vec = c.query(vector=qv[0], k=5)
            by_text = c.query("Where is the train station?", k=5)
            # the same ranking up to float rounding (near-ties among 20,000 texts may swap)
            np.testing.assert_allclose([h.score for h in by_vec], [h.score for h in by_text],
                                       atol=1e-5)
            assert by_vec[0].score > 0.7
    finally:
        ray.shutdown()
        rc = d.stop()
        d.cleanup()
        assert rc == 0
