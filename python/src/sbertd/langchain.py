"""LangChain integration (langchain-core): SbertdVectorStore, a VectorStore over sbertd.Client,
and SbertdEmbeddings, the model as an Embeddings (through the daemon or an in-process Encoder).

    from sbertd.langchain import SbertdVectorStore
    store = SbertdVectorStore.from_texts(["The cat sits outside", "I love pasta"], None)
    store.similarity_search("A cat is outdoors", k=1)
    retriever = store.as_retriever(search_kwargs={"k": 3})

With embedding=None (the default) the daemon encodes texts and queries with its own model. With
an Embeddings object, the store computes vectors with it and sends them (add's "vector", query's
"vector"): the daemon checks their dimension and norm, so it must be the daemon's model — e.g.
SbertdEmbeddings(encoder=sbertd.Encoder(model_dir)), which spares the daemon the encoding work.
Scores are cosine similarities (higher is closer); filters are sbertd's (docs/filters.md, the
Chroma-like {"year": {"$gte": 2020}}).
"""
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from .client import Client


class SbertdEmbeddings(Embeddings):
    """The sbertd model as a LangChain Embeddings: through a daemon (client=) or in this process
    (encoder=, an sbertd.Encoder)."""

    def __init__(self, client: Optional[Client] = None, encoder=None):
        if (client is None) == (encoder is None):
            raise ValueError("give one of client= and encoder=")
        self.client, self.encoder = client, encoder

    def _encode(self, texts):
        src = self.encoder if self.encoder is not None else self.client
        return src.encode(list(texts))

    def embed_documents(self, texts: List[str]) -> List[List[float]]:
        return [] if not texts else self._encode(texts).tolist()

    def embed_query(self, text: str) -> List[float]:
        return self._encode([text])[0].tolist()


def _doc(id, text, metadata):
    return Document(page_content=text or "", metadata=metadata or {}, id=id)


class SbertdVectorStore(VectorStore):
    """A LangChain VectorStore whose documents live in sbertd.

    client: an sbertd.Client (else one is made from socket=/token=/timeout=, with sbertctl's
    endpoint discovery). embedding: None (the daemon encodes) or an Embeddings of the daemon's
    model. collection: passed to the daemon with every call, for a daemon with collections.
    """

    def __init__(self, client: Optional[Client] = None, embedding: Optional[Embeddings] = None,
                 collection: Optional[str] = None, **client_kwargs: Any):
        self.client = client if client is not None else Client(**client_kwargs)
        self._embedding = embedding
        self.collection = collection

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding if self._embedding is not None else SbertdEmbeddings(self.client)

    # ---- writing ---------------------------------------------------------------------------

    def add_texts(self, texts: Iterable[str], metadatas: Optional[List[dict]] = None, *,
                  ids: Optional[List[Optional[str]]] = None, **kwargs: Any) -> List[str]:
        texts = list(texts)
        if not texts:
            return []
        vecs = None
        if self._embedding is not None:
            vecs = np.asarray(self._embedding.embed_documents(texts), dtype=np.float32)
        return self.client.add(texts, ids=ids, metadatas=metadatas, embeddings=vecs,
                               collection=self.collection)

    def delete(self, ids: Optional[List[str]] = None, **kwargs: Any) -> Optional[bool]:
        if ids is None:
            raise ValueError("sbertd deletes by id: give ids")
        if ids:
            self.client.delete(list(ids), collection=self.collection)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> List[Document]:
        if not ids:
            return []
        docs = self.client.get(list(ids), collection=self.collection)
        return [_doc(d.id, d.text, d.metadata) for d in docs if d is not None]

    # ---- searching -------------------------------------------------------------------------

    def _search(self, query=None, vector=None, k=4, filter=None, min_score=None,
                include=("text", "metadata")):
        if query is not None and self._embedding is not None:
            vector = self._embedding.embed_query(query)
            query = None
        return self.client.query(query, vector=vector, k=k, filter=filter, min_score=min_score,
                                 include=include, collection=self.collection)

    def similarity_search_with_score(self, query: str, k: int = 4,
                                     filter: Optional[dict] = None, **kwargs: Any
                                     ) -> List[Tuple[Document, float]]:
        hits = self._search(query=query, k=k, filter=filter, min_score=kwargs.get("min_score"))
        return [(_doc(h.id, h.text, h.metadata), h.score) for h in hits]

    def similarity_search(self, query: str, k: int = 4, filter: Optional[dict] = None,
                          **kwargs: Any) -> List[Document]:
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector_with_score(self, embedding: List[float], k: int = 4,
                                               filter: Optional[dict] = None, **kwargs: Any
                                               ) -> List[Tuple[Document, float]]:
        hits = self._search(vector=list(embedding), k=k, filter=filter,
                            min_score=kwargs.get("min_score"))
        return [(_doc(h.id, h.text, h.metadata), h.score) for h in hits]

    def similarity_search_by_vector(self, embedding: List[float], k: int = 4,
                                    filter: Optional[dict] = None, **kwargs: Any
                                    ) -> List[Document]:
        return [d for d, _ in self.similarity_search_by_vector_with_score(embedding, k, filter,
                                                                           **kwargs)]

    def _select_relevance_score_fn(self):
        # cosine similarity in [-1, 1] to LangChain's relevance in [0, 1]
        return lambda score: (score + 1.0) / 2.0

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                      lambda_mult: float = 0.5, filter: Optional[dict] = None,
                                      **kwargs: Any) -> List[Document]:
        qv = np.asarray(self.embeddings.embed_query(query), dtype=np.float32)
        return self.max_marginal_relevance_search_by_vector(qv, k, fetch_k, lambda_mult, filter)

    def max_marginal_relevance_search_by_vector(self, embedding, k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5,
                                                filter: Optional[dict] = None, **kwargs: Any
                                                ) -> List[Document]:
        hits = self._search(vector=list(np.asarray(embedding, dtype=np.float32).tolist()),
                            k=fetch_k, filter=filter, include=("text", "metadata", "vector"))
        if not hits:
            return []
        picked = maximal_marginal_relevance(np.asarray(embedding, dtype=np.float32),
                                            [h.vector for h in hits], lambda_mult=lambda_mult,
                                            k=k)
        return [_doc(hits[i].id, hits[i].text, hits[i].metadata) for i in picked]

    # ---- construction ----------------------------------------------------------------------

    @classmethod
    def from_texts(cls, texts: List[str], embedding: Optional[Embeddings] = None,
                   metadatas: Optional[List[dict]] = None, *,
                   ids: Optional[List[str]] = None, client: Optional[Client] = None,
                   collection: Optional[str] = None, **client_kwargs: Any
                   ) -> "SbertdVectorStore":
        store = cls(client=client, embedding=embedding, collection=collection, **client_kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store
