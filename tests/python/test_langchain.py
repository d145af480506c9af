"""sbertd.langchain.SbertdVectorStore: LangChain's standard vector-store tests (langchain-tests),
with the daemon encoding and with vectors from an in-process Encoder, and the documented
VectorStore contract (from_texts, as_retriever, scores, filters, by vector, MMR)."""
import os

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_tests.integration_tests.vectorstores import VectorStoreIntegrationTests

import sbertd
from sbertd.langchain import SbertdEmbeddings, SbertdVectorStore
from conftest import start_daemon


@pytest.fixture(scope="module")
def lc_daemon(model_dir):
    d = start_daemon(model_dir)
    yield d
    rc = d.stop()
    d.cleanup()
    assert rc == 0


class TrackingStore(SbertdVectorStore):
    """Remembers what it added, so that a test can leave the shared daemon empty."""

    def add_texts(self, texts, metadatas=None, *, ids=None, **kwargs):
        out = super().add_texts(texts, metadatas, ids=ids, **kwargs)
        self.added = getattr(self, "added", set()) | set(out)
        return out


def empty_store(daemon, embedding):
    client = sbertd.Client(daemon.url)
    assert client.health()["documents"] == 0, "the store is not empty"
    store = TrackingStore(client, embedding=embedding)
    return store


def clean(store):
    store.delete(sorted(getattr(store, "added", ())))
    assert store.client.health()["documents"] == 0
    store.client.close()


class TestDaemonEncodes(VectorStoreIntegrationTests):
    """embedding=None: the daemon encodes texts and queries."""

    @pytest.fixture
    def vectorstore(self, lc_daemon):
        store = empty_store(lc_daemon, None)
        try:
            yield store
        finally:
            clean(store)


class TestEncoderVectors(VectorStoreIntegrationTests):
    """Vectors computed in this process by sbertd.Encoder and sent with the texts."""

    @staticmethod
    def get_embeddings():
        # the standard suite's DeterministicFakeEmbedding(6) is not the daemon's model: the
        # daemon refuses vectors of another dimension (bad_vector), as it should
        return SbertdEmbeddings(encoder=sbertd.Encoder(os.environ["SBERT_MODEL_DIR"]))

    @pytest.fixture
    def vectorstore(self, lc_daemon):
        store = empty_store(lc_daemon, self.get_embeddings())
        try:
            yield store
        finally:
            clean(store)


TEXTS = ['The cat sits outside', 'A man is playing guitar', 'I love pasta',
         'The new movie is awesome', 'The cat plays in the garden', 'Do you like pizza?']


def test_contract(lc_daemon):
    client = sbertd.Client(lc_daemon.url)
    store = SbertdVectorStore.from_texts(
        TEXTS, None, metadatas=[{"i": i, "animal": "cat" in t} for i, t in enumerate(TEXTS)],
        ids=["t%d" % i for i in range(len(TEXTS))], client=client)
    try:
        docs = store.similarity_search("A cat is outdoors", k=2)
        assert [d.id for d in docs] == ["t0", "t4"]
        assert docs[0] == Document(id="t0", page_content=TEXTS[0],
                                   metadata={"i": 0, "animal": True})
        scored = store.similarity_search_with_score("A cat is outdoors", k=3)
        assert [d.id for d, _ in scored] == ["t0", "t4", scored[2][0].id]
        assert scored[0][1] > scored[1][1] > scored[2][1]
        np.testing.assert_allclose(
            scored[0][1], client.similarity("A cat is outdoors", TEXTS[0]), atol=1e-5)
        rel = store.similarity_search_with_relevance_scores("A cat is outdoors", k=1)
        assert 0.5 < rel[0][1] <= 1
        got = store.similarity_search_with_score("Italian food", k=6, filter={"animal": False},
                                                 min_score=0.2)
        assert got and all(d.metadata["animal"] is False and sc >= 0.2 for d, sc in got)
        assert len(got) < 4 and got[0][0].id in ("t2", "t5")
        v = store.embeddings.embed_query("A film I really enjoyed")
        assert len(v) == 384
        assert store.similarity_search_by_vector(v, k=1)[0].id == "t3"
        retriever = store.as_retriever(search_kwargs={"k": 1})
        assert [d.id for d in retriever.invoke("Someone eats pizza")] == ["t5"]
        # MMR: the second pick is not the near-duplicate of the first
        mmr = store.max_marginal_relevance_search("cats", k=2, fetch_k=6, lambda_mult=0.3)
        assert mmr[0].id in ("t0", "t4") and {d.id for d in mmr} != {"t0", "t4"}
        assert store.get_by_ids(["t1", "missing"]) == [
            Document(id="t1", page_content=TEXTS[1], metadata={"i": 1, "animal": False})]
        store.delete(["t1"])
        assert store.get_by_ids(["t1"]) == []
        with pytest.raises(ValueError):
            store.delete()
    finally:
        client.delete(["t%d" % i for i in range(len(TEXTS))])
        client.close()
