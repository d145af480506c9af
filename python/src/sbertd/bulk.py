"""Bulk encoding on a cluster: a callable class for Ray Data's map_batches (and anything else
that hands out batches as dicts of columns or pandas DataFrames), plus the writer that loads
the vectors into sbertd.

    ds = ray.data.read_text("texts.txt")                       # a column "text"
    ds = ds.map_batches(EncodeBatches, fn_constructor_kwargs={"model_dir": MODEL},
                        concurrency=8, batch_size=1024)         # one Encoder per actor
    write_to_sbertd(sbertd.Client(), ds.iter_batches(batch_size=1024))

See python/README.md for the whole recipe.
"""
import numpy as np

from .encoder import Encoder


class EncodeBatches:
    """Adds an "embedding" column (n x dim float32, sbert-encode's numbers) to each batch, from
    its text column. Constructed once per worker: the model is loaded once and reused."""

    def __init__(self, model_dir, threads=1, text_column="text", output_column="embedding",
                 library=None):
        self.encoder = Encoder(model_dir, threads=threads, library=library)
        self.text_column, self.output_column = text_column, output_column

    def __call__(self, batch):
        texts = [t.decode() if isinstance(t, bytes) else str(t) for t in batch[self.text_column]]
        vecs = self.encoder.encode(texts)
        if hasattr(batch, "assign"):  # a pandas DataFrame: one array per row
            return batch.assign(**{self.output_column: list(vecs)})
        batch = dict(batch)
        batch[self.output_column] = vecs
        return batch


def write_to_sbertd(client, batches, text_column="text", id_column="id",
                    metadata_column=None, embedding_column="embedding"):
    """Adds every batch (dicts of columns, or DataFrames) to sbertd with its precomputed vectors;
    returns the number of documents written. Each batch is one or more add requests, each
    durable and applied once (a retried request keeps its req_id)."""
    n = 0
    for b in batches:
        texts = [str(t) for t in b[text_column]]
        ids = None if id_column is None else [str(i) for i in b[id_column]]
        metas = None if metadata_column is None else list(b[metadata_column])
        vecs = np.stack(list(b[embedding_column])).astype(np.float32, copy=False)
        client.add(texts, ids=ids, metadatas=metas, embeddings=vecs)
        n += len(texts)
    return n
