/*
 * sbert_index.h — the sbertd document store: LMDB is the source of truth, a FAISS vector index is
 * derived from it. This is the index module's one public header; the daemon uses nothing else.
 *
 * A store is a directory:
 *   store.mdb, store.mdb-lock   the LMDB environment (MDB_NOSUBDIR): documents, id map, meta
 *                               record, change log, remembered writes (req_id)
 *   index.snap                  a snapshot of the vector index (rebuilt from store.mdb when
 *                               missing, damaged or of another index spec)
 *   LOCK                        flock()ed by the process that has the store open
 *   reindex.mdb                 exists only while sbert_index_reindex() runs; removed at open
 *
 * Documents: a client id (UTF-8, 1..SBERT_INDEX_ID_MAX bytes, no NUL), a text, a metadata JSON
 * object (or none) and its passages: byte ranges of the text (one, the whole text, for a text
 * that fits the model), each with an embedding of dim float32, and the document vector: the
 * whole text's embedding, truncated to the model's window (a one-passage document's is its
 * passage's). The vector index holds every passage; a query ranks documents by their passages
 * and document vector (sbert_index_query_params). Embeddings are L2-normalised on the way in, so
 * every passage score is a cosine similarity (inner product of unit vectors).
 *
 * Durability: every write call (put, delete, patch, reindex; a delete by filter: each of its
 * chunks) is one LMDB write transaction committed with fsync before the call returns 0; a batch
 * is all or nothing, including after a crash or kill -9 at any moment. The vector index is never
 * a source of truth: after open it holds exactly the live documents of store.mdb.
 *
 * Thread safety: every function may be called from any thread on the same handle, except
 * sbert_index_close(), which must be the only call in progress. Writes (put, delete, patch,
 * snapshot, backup, reindex; a delete by filter per chunk) are serialised internally by a mutex,
 * in call order per thread. Reads (get, count, iterate, list, query, pairs, stats) run
 * concurrently with each other and with one write in progress; a reader sees each write batch
 * (each chunk of a delete by filter) entirely or not at all. Readers wait only briefly: while
 * the LMDB map is grown (all transactions must be closed for mdb_env_set_mapsize) and while
 * a finished reindex switches over. Compiled filters (sbert_index_filter) are immutable and may
 * be shared by any number of threads.
 *
 * Errors: functions that can fail return 0 (SBERT_INDEX_OK) or a negative SBERT_INDEX_E* code;
 * sbert_index_strerror() names it. Functions whose failure needs detail (which item, which file,
 * which model, the LMDB/FAISS/errno text) also take errbuf/errlen: when errbuf is not NULL and
 * errlen > 0 a NUL-terminated sentence is written there on failure. This library never prints
 * and never exits; it logs through the callback in sbert_index_params.
 *
 * Ownership: pointers passed in are borrowed for the duration of the call unless said otherwise.
 * Results (sbert_index_results, sbert_index_pairs) are allocated by the library and owned by the
 * caller, who frees them with the matching *_free function; they stay valid after the store is
 * closed.
 */
#ifndef SBERT_INDEX_H
#define SBERT_INDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the on-disk store format written in the meta record. */
#define SBERT_INDEX_FORMAT_VERSION 1

/* Longest client id, in bytes. */
#define SBERT_INDEX_ID_MAX 512

/* Remembered writes (sbert_index_write_req): the longest req_id in bytes, and the default window
 * kept (sbert_index_params req_keep, req_keep_seconds): the newest SBERT_INDEX_REQ_KEEP entries
 * younger than SBERT_INDEX_REQ_KEEP_SECONDS. */
#define SBERT_INDEX_REQ_ID_MAX 128
#define SBERT_INDEX_REQ_KEEP 10000
#define SBERT_INDEX_REQ_KEEP_SECONDS (24 * 3600)

/* Generated ids: 36 characters, UUID version 7 layout ("0193a6b2-7c1e-7xxx-yxxx-xxxxxxxxxxxx",
 * lowercase hex): time-ordered, so byte order is insertion order. Size with the NUL. */
#define SBERT_INDEX_GEN_ID_SIZE 37

/* Filter limits: a filter deeper or larger than these is refused by the compiler. */
#define SBERT_INDEX_FILTER_MAX_DEPTH 32
#define SBERT_INDEX_FILTER_MAX_NODES 1024
#define SBERT_INDEX_FILTER_MAX_BYTES 65536

enum {
    SBERT_INDEX_OK = 0,
    SBERT_INDEX_ENOMEM = -1,     /* allocation failed */
    SBERT_INDEX_EINVAL = -2,     /* a bad argument (NULL pointer, k == 0, NaN in a vector, ...) */
    SBERT_INDEX_EIO = -3,        /* a file system or LMDB error; errbuf has the system's text */
    SBERT_INDEX_ENOSPC = -4,     /* the disk is full; nothing of the failed call was stored */
    SBERT_INDEX_EMODEL = -5,     /* the store was built with another model; errbuf names both */
    SBERT_INDEX_EFORMAT = -6,    /* store.mdb is not a store of a known format version */
    SBERT_INDEX_ENOTFOUND = -7,  /* no document with that id */
    SBERT_INDEX_EFILTER = -8,    /* a filter does not compile; errbuf names the bad part */
    SBERT_INDEX_EID = -9,        /* an id is empty, longer than SBERT_INDEX_ID_MAX or not UTF-8 */
    SBERT_INDEX_EMETADATA = -10, /* metadata is not a JSON object */
    SBERT_INDEX_EVINDEX = -11,   /* the vector index (FAISS) failed; errbuf has its text */
    SBERT_INDEX_ELOCKED = -12,   /* another process has the store open */
    SBERT_INDEX_ECALLBACK = -13, /* a caller's callback returned an error (reindex encode) */
    SBERT_INDEX_EEXIST = -14,    /* a backup target exists and is not an empty directory */
    SBERT_INDEX_ESPEC = -15,     /* the index spec (FAISS factory string) is not accepted */
    SBERT_INDEX_ETEXT = -16,     /* a text is not valid UTF-8 */
    SBERT_INDEX_ETOOBIG = -17,   /* a result would exceed the caller's byte bound */
};

/* Returns a static string describing err; never NULL. */
const char *sbert_index_strerror(int err);

/* Log levels: the same values as the encoder's SBERT_LOG_*. */
enum {
    SBERT_INDEX_LOG_ERROR = 0,
    SBERT_INDEX_LOG_WARN = 1,
    SBERT_INDEX_LOG_INFO = 2,
    SBERT_INDEX_LOG_DEBUG = 3
};

/* A log sink. msg is valid only during the call. Called from any thread that calls into the
 * library and from its snapshot thread, so it must be thread-safe. */
typedef void (*sbert_index_log_fn)(int level, const char *msg, void *user);

/* Pooling values: the same as the encoder's SBERT_POOL_*. */
enum { SBERT_INDEX_POOL_MEAN = 0, SBERT_INDEX_POOL_CLS = 1, SBERT_INDEX_POOL_MAX = 2 };

/*
 * The identity of the model whose embeddings a store holds. Two identities are the same model
 * when weights_sha256, dim, pooling, normalize and max_seq_length are all equal; name is for
 * messages only (a renamed directory is the same model).
 */
struct sbert_index_model {
    const char *name;           /* e.g. "all-MiniLM-L6-v2"; at most 255 bytes */
    const char *weights_sha256; /* 64 lowercase hex digits */
    int dim;                    /* 1..65536 */
    int pooling;                /* SBERT_INDEX_POOL_* */
    int normalize;              /* 0 or 1 */
    int max_seq_length;
    int precision; /* the encoder's arithmetic: SBERT_INDEX_PRECISION_* (0: fp32).
                      Vectors of two precisions are close, not equal: a store of one
                      refuses the other like another model (reindex to switch) */
};

enum { SBERT_INDEX_PRECISION_FP32 = 0, SBERT_INDEX_PRECISION_INT8 = 1 };

/*
 * Encodes n texts into out (n * dim floats, row i for texts[i]) with the model given to
 * sbert_index_reindex(). lens[i] is the byte length of texts[i] (texts are also NUL-terminated).
 * Returns 0, or any non-zero value to abort the reindex (which then returns
 * SBERT_INDEX_ECALLBACK and changes nothing). Called from the thread that called reindex.
 */
typedef int (*sbert_index_encode_fn)(const char *const *texts, const size_t *lens, size_t n,
                                     float *out, void *user);

struct sbert_index_params {
    /* Required: the model the caller encodes with. A new store records it; an existing store
     * with another identity is refused with SBERT_INDEX_EMODEL (see reindex_on_open). */
    struct sbert_index_model model;

    /* FAISS factory string, e.g. "Flat", "HNSW32,Flat", "IVF1024,SQ8", "IVF1024,PQ16np".
     * NULL: the spec recorded in the store, or "Flat" for a new store. A spec other than the
     * recorded one is recorded and the vector index is rebuilt from the stored vectors. */
    const char *index_spec;
    int ef_search; /* HNSW search depth; 0: the vector index's default */
    int nprobe;    /* IVF lists probed per query; 0: the vector index's default */

    size_t map_size; /* initial LMDB map size in bytes; 0: 1 GiB. It grows by itself. */

    /* The keyword (BM25) index's language: a Snowball algorithm name or ISO code ("english",
     * "en", "german", ...) or "none" (case folding only; sbert_text.h). NULL: "english". A store
     * indexed with another language (or none yet: a store from before keyword indexes) has its
     * keyword index built again at open, from the stored texts (phase "keyword"). "off": no
     * keyword index (a store's existing one is dropped; keyword and hybrid searches fail with
     * SBERT_INDEX_EINVAL). Copied. */
    const char *keyword_language;

    /* A snapshot of the vector index is written at close, and by a background thread when
     * snapshot_changes write operations (documents put or deleted) or snapshot_seconds have
     * passed since the last one, whichever comes first, if anything changed.
     * 0: the defaults (100000 changes, 300 s); UINT64_MAX / UINT32_MAX: never by that rule. */
    uint64_t snapshot_changes;
    uint32_t snapshot_seconds;

    /* Remembered writes (sbert_index_write_req) kept: the newest req_keep records younger than
     * req_keep_seconds. 0: the defaults (SBERT_INDEX_REQ_KEEP, SBERT_INDEX_REQ_KEEP_SECONDS). */
    uint64_t req_keep;
    uint32_t req_keep_seconds;

    /* When set and the store's model differs from model, open re-encodes every stored text with
     * this callback (as sbert_index_reindex() would) instead of failing with EMODEL. */
    sbert_index_encode_fn reindex_on_open;
    void *reindex_user;

    sbert_index_log_fn log; /* NULL: no logging */
    void *log_user;

    /* Progress of long work, NULL: none. Called from the thread doing it, at least every 4096
     * documents, during a rebuild of the vector index (phase "rebuild", also inside open), a
     * reindex (phase "reindex", also reindex_on_open) and a change log replay at open (phase
     * "replay"): done and total count documents (changes for "replay"; total 0 when unknown).
     * phase is a static string. Must be cheap and must not call into the library. */
    void (*progress)(void *user, const char *phase, uint64_t done, uint64_t total);
    void *progress_user;
};

/* Returns the defaults: a zeroed model (which the caller must fill in), index_spec NULL, all
 * numbers 0 (the defaults above), no reindex, no logging. */
struct sbert_index_params sbert_index_default_params(void);

typedef struct sbert_index sbert_index;

/*
 * Opens the store in directory dir, creating the directory (mode 0700) and a new store when
 * there is none. Steps: lock dir/LOCK (ELOCKED if another process holds it); open store.mdb;
 * check the format version (EFORMAT) and the model identity (EMODEL, with errbuf naming the
 * stored and the given model, their sha256 prefixes and dims); remove a leftover reindex.mdb;
 * load index.snap and apply the changes recorded after it, or rebuild the vector index from the
 * stored vectors when the snapshot is missing, damaged, of another spec or older than the change
 * log covers (logged at WARN, never re-encoded).
 * On success returns 0 and *out owns the store (close with sbert_index_close()).
 * On failure returns a negative code, sets *out to NULL and leaves the files as they were.
 */
int sbert_index_open(const char *dir, const struct sbert_index_params *params, sbert_index **out,
                     char *errbuf, size_t errlen);

/* Writes a snapshot (when anything changed since the last one), stops the snapshot thread and
 * closes the store. NULL is allowed. No other call on idx may be in progress. A failed final
 * snapshot is logged (ERROR) and costs only a replay at the next open: no data is lost. */
void sbert_index_close(sbert_index *idx);

/* ---- writes ---------------------------------------------------------------------------------- */

/*
 * One document of a put batch. The caller fills the inputs; put fills the outputs.
 */
struct sbert_index_put_item {
    const char *id; /* in: the client id (id_len bytes), or NULL to generate one */
    size_t id_len;
    const char *text; /* in: UTF-8, text_len bytes (empty allowed) */
    size_t text_len;
    const char *metadata; /* in: a JSON object (metadata_len bytes), or NULL for none */
    size_t metadata_len;
    const float *vector;    /* in: dim floats per passage (n_passages rows, passage order), finite;
                               each L2-normalised before it is stored */
    int dim;                /* in: vector's length, checked against the store's (EMODEL when they
                               differ, e.g. a reindex to another dim ran meanwhile); 0: unchecked */
    size_t n_passages;      /* in: the text's passages; 0: one, the whole text */
    const size_t *passages; /* in: 2 * n_passages byte offsets {start, end} into the text
                               (start <= end <= text_len, both below 2^32), or NULL when
                               n_passages is 0 */
    /* in, for n_passages > 1 (else unused: the one passage's vector is the document's): dim
     * floats, finite, the document vector (the whole text encoded, which the encoder truncates to
     * its window): get's, pairs' and MMR's vector and the score's lead; normalised before it is
     * stored */
    const float *doc_vector;
    char gen_id[SBERT_INDEX_GEN_ID_SIZE]; /* out: the generated id when id was NULL, else "" */
    int replaced; /* out: 1 when a document with this id existed and was replaced */
};

/*
 * Upserts n documents in one durable transaction: a new id is added, an existing id has its text,
 * metadata and vector replaced. When an id appears twice in the batch the later item wins.
 * Metadata is stored re-serialised (compact JSON); NULL metadata is stored as none (get returns
 * NULL, and filters see an empty object).
 * Returns 0 when every item is stored and durable. On failure nothing of the batch is stored;
 * *bad_index (may be NULL) names the offending item for EID, EMETADATA, ETEXT and EINVAL, and
 * errbuf says why. ENOSPC: the disk is full, the store is intact.
 */
int sbert_index_put(sbert_index *idx, struct sbert_index_put_item *items, size_t n,
                    size_t *bad_index, char *errbuf, size_t errlen);

/*
 * Deletes the documents with the given ids (ids[i] of lens[i] bytes) in one durable
 * transaction; ids that do not exist are not an error. existed (may be NULL) receives n flags,
 * 1 where the id existed; *n_deleted (may be NULL) the number of documents deleted.
 */
int sbert_index_delete(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                       int *existed, size_t *n_deleted, char *errbuf, size_t errlen);

/*
 * Idempotent writes. A client that retries a write after a crash (the write committed, its reply
 * was lost) must get the first reply instead of a second execution. The *_req variants of put and
 * delete record req_id -> (hash, reply) in the same durable transaction as the write itself, so
 * the record exists exactly when the write committed; sbert_index_req_find() looks it up.
 * The store keeps the newest params.req_keep records younger than params.req_keep_seconds (older
 * ones are pruned by the writes that add records, and never found); a reindex starts without
 * any. A record of a req_id already recorded replaces it.
 */
struct sbert_index_write_req {
    const char *req_id; /* 1..SBERT_INDEX_REQ_ID_MAX bytes, any bytes */
    size_t req_id_len;
    uint64_t hash; /* the caller's fingerprint of the request, returned by req_find */
    /* Builds the reply to remember, called inside the write transaction once the call's outputs
     * are final (put: every item's gen_id and replaced; delete: existed and *n_deleted, which
     * must then not be NULL), before the commit; it may be called again when the transaction is
     * retried (map growth), and must not call into the library. Sets *reply to a malloc'd buffer
     * of *len bytes that the library frees. Returns 0, or non-zero to abort the write (which
     * then returns SBERT_INDEX_ECALLBACK and stores nothing). */
    int (*reply)(void *user, char **reply, size_t *len);
    void *user;
};

/* sbert_index_put / sbert_index_delete that also record req (NULL: none, as the plain calls). */
int sbert_index_put_req(sbert_index *idx, struct sbert_index_put_item *items, size_t n,
                        const struct sbert_index_write_req *req, size_t *bad_index, char *errbuf,
                        size_t errlen);
int sbert_index_delete_req(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                           int *existed, size_t *n_deleted, const struct sbert_index_write_req *req,
                           char *errbuf, size_t errlen);

/*
 * Looks up the write recorded under req_id (len bytes). Returns 0 with *hash and *reply (a
 * malloc'd copy of *reply_len bytes plus a NUL, owned by the caller: free()), or
 * SBERT_INDEX_ENOTFOUND when none is recorded within the window, or another error code.
 */
int sbert_index_req_find(sbert_index *idx, const char *req_id, size_t len, uint64_t *hash,
                         char **reply, size_t *reply_len);

/* ---- reads ----------------------------------------------------------------------------------- */

/* include flags: which optional fields results carry. id and score are always there. */
enum {
    SBERT_INDEX_INCLUDE_TEXT = 1u << 0,
    SBERT_INDEX_INCLUDE_METADATA = 1u << 1,
    SBERT_INDEX_INCLUDE_VECTOR = 1u << 2,
    SBERT_INDEX_INCLUDE_ALL = 7u
};

/* A passage of a query hit: its bytes text[start..end) of the document, its cosine with the query
 * and a NUL-terminated copy of its text. */
struct sbert_index_passage {
    size_t start, end;
    float score;
    char *text;
    size_t text_len;
};

/* A document in a result. Strings are NUL-terminated (and carry their length); fields not asked
 * for are NULL with length 0. */
struct sbert_index_doc {
    char *id;
    size_t id_len;
    int found;   /* get: 0 when the id does not exist (then only id is set); else 1 */
    float score; /* query: cosine similarity; get/iterate: 0 */
    char *text;
    size_t text_len;
    char *metadata; /* compact JSON object, or NULL when the document has none */
    size_t metadata_len;
    float *vector; /* dim floats (the stored, normalised document vector: of the whole text,
                      truncated to the model's window, also when the document has several
                      passages) */
    /* sbert_index_search in keyword or hybrid mode: the hit's cosine similarity (NAN when the
     * search had no vector), its BM25 score (0 when it holds no query term), and its rank in the
     * dense and keyword candidate lists (1 = first; 0 = not in that list) */
    float dense_score, keyword_score;
    uint32_t dense_rank, keyword_rank;
    /* sbert_index_query (and a search's dense mode): the document's best passages, best first
     * (at most passages_per_doc); get, iterate, list, keyword and hybrid searches: none */
    struct sbert_index_passage *passages;
    size_t n_passages;
};

struct sbert_index_results {
    size_t n;
    int dim;
    struct sbert_index_doc *docs;
};

/* Frees results and everything in it. NULL is allowed. */
void sbert_index_results_free(struct sbert_index_results *r);

/*
 * Looks up n ids. *out receives n docs in the order of ids, found = 0 for the missing ones, and
 * is owned by the caller (sbert_index_results_free()). All lookups see the same store state.
 */
int sbert_index_get(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                    unsigned include, struct sbert_index_results **out);

/*
 * sbert_index_get with a bound on the result's size: when the bytes of the results' ids, texts,
 * metadata and vectors (4 bytes a float) would exceed max_bytes, stops at that point, frees what
 * it read and returns SBERT_INDEX_ETOOBIG, so the memory it takes stays near max_bytes however
 * large the documents or n are. max_bytes = SIZE_MAX: unbounded (sbert_index_get).
 */
int sbert_index_get_max(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                        unsigned include, size_t max_bytes, struct sbert_index_results **out);

/* Sets *count to the number of documents. */
int sbert_index_count(sbert_index *idx, uint64_t *count);

/*
 * Calls cb for each document in id order (bytewise), starting after the id `after` (after_len
 * bytes; NULL: from the first). doc is borrowed: valid only during the call. cb returns 0 to go
 * on, anything else to stop (iterate then returns 0). Documents are read in chunks of separate
 * read transactions, so a long iteration does not hold back writes or map growth; a document
 * written meanwhile may or may not be seen, and none is seen twice. cb may call read functions
 * of idx but not write functions (they would wait for nothing, but the order is unspecified).
 */
typedef int (*sbert_index_iter_fn)(const struct sbert_index_doc *doc, void *user);
int sbert_index_iterate(sbert_index *idx, const char *after, size_t after_len, unsigned include,
                        sbert_index_iter_fn cb, void *user);

/* ---- filters --------------------------------------------------------------------------------- */

/*
 * A compiled metadata filter (docs/filters.md is the language reference). In short, a filter is
 * a JSON object whose keys are combined with AND:
 *   {"field": value}                      equality (value: string, number, bool)
 *   {"field": {"$eq"|"$ne": value}}
 *   {"field": {"$gt"|"$gte"|"$lt"|"$lte": number}}
 *   {"field": {"$in"|"$nin": [value, ...]}}
 *   {"$and": [filter, ...]}, {"$or": [filter, ...]}
 * A field names a top-level metadata key. A comparison with a missing field or a value of another
 * type is false, except $ne and $nin, which are true.
 */
typedef struct sbert_index_filter sbert_index_filter;

/*
 * Compiles the filter in json (len bytes). On success returns 0 and *out owns the filter (free
 * with sbert_index_filter_free()). On failure returns SBERT_INDEX_EFILTER (or ENOMEM), sets *out
 * to NULL and writes into errbuf what is wrong and where, e.g.
 * "$and[1].year: $gt needs a number, got string". Filters deeper than
 * SBERT_INDEX_FILTER_MAX_DEPTH, with more than SBERT_INDEX_FILTER_MAX_NODES nodes or longer than
 * SBERT_INDEX_FILTER_MAX_BYTES are refused before any recursion.
 */
int sbert_index_filter_compile(const char *json, size_t len, sbert_index_filter **out, char *errbuf,
                               size_t errlen);

/* Frees f. NULL is allowed. */
void sbert_index_filter_free(sbert_index_filter *f);

/* Evaluates f against a metadata JSON object (len bytes; NULL or empty: no metadata).
 * Returns 1 (match), 0 (no match) or SBERT_INDEX_EMETADATA when metadata is not a JSON object. */
int sbert_index_filter_match(const sbert_index_filter *f, const char *metadata, size_t len);

/* ---- data management: count, list, delete by filter, patch --------------------------------- */

/*
 * Sets *count to the number of documents filter accepts (NULL: every document, as
 * sbert_index_count). The documents are read in chunks of separate read transactions, as
 * sbert_index_iterate does, so a long count does not hold back writes or map growth: a document
 * written meanwhile may or may not be counted, none is counted twice.
 */
int sbert_index_count_filter(sbert_index *idx, const sbert_index_filter *filter, uint64_t *count);

/* One page of sbert_index_list. */
struct sbert_index_list_params {
    const char *after; /* resume after this id (after_len bytes), as a previous page's next;
                          NULL: from the first document */
    size_t after_len;
    const sbert_index_filter *filter; /* NULL: every document */
    unsigned include;                 /* SBERT_INDEX_INCLUDE_* */
    size_t limit;                     /* documents in the page at most, >= 1 */
    size_t max_scan;                  /* documents examined at most (those the filter refuses
                                         count too), >= limit */
    size_t max_bytes;                 /* bound on the page's ids, texts, metadata and vectors
                                         (4 bytes a float), as sbert_index_get_max; 0: none */
};

/*
 * One page of the documents in id order (bytewise; the order of sbert_index_iterate), read in one
 * read transaction: those after p->after that p->filter accepts, at most p->limit of them, having
 * examined at most p->max_scan documents. The page ends early, before the document that would
 * take it past p->max_bytes; when that is its first document, returns SBERT_INDEX_ETOOBIG.
 * On success *out (owned by the caller, sbert_index_results_free) holds the page's documents, and
 * *next a malloc'd copy (owned by the caller, free) of the id to pass as the next page's after,
 * of *next_len bytes, or NULL when the page reached the last document. With a filter a page may
 * be empty and still have a next (max_scan documents examined, none accepted). An after id that
 * was deleted meanwhile is still a valid position: pages resume after the place it had.
 */
int sbert_index_list(sbert_index *idx, const struct sbert_index_list_params *p,
                     struct sbert_index_results **out, char **next, size_t *next_len);

/* A delete by filter (sbert_index_delete_filter). */
struct sbert_index_delete_filter_params {
    const sbert_index_filter *filter; /* required */
    size_t chunk;                     /* documents deleted per transaction at most; 0: 1000 */
    /* Remembered in the transaction of the last chunk, once *n_deleted is the total: its reply
     * callback reads the total there. NULL: nothing remembered. */
    const struct sbert_index_write_req *req;
    /* Called after each committed chunk with the total deleted so far (may be NULL). Must not
     * call into the library. */
    void (*progress)(void *user, uint64_t deleted);
    void *progress_user;
};

/*
 * Deletes every document that filter accepts among those stored when the call began (a document
 * put meanwhile, an upsert included, is left alone), in chunks: each chunk of at most p->chunk
 * documents is one durable write transaction, applied to the vector index after its commit, and
 * each transaction examines a bounded number of documents, so a chunk is whole or absent after a
 * crash and other writes wait at most one chunk. Writes of other threads may run between chunks.
 * *n_deleted receives the number of documents deleted by this call, also on failure (the chunks
 * committed before it). A call interrupted (crash, error) before its last chunk has not recorded
 * p->req: a retry runs again and deletes what still matches.
 */
int sbert_index_delete_filter(sbert_index *idx, const struct sbert_index_delete_filter_params *p,
                              uint64_t *n_deleted, char *errbuf, size_t errlen);

/* One document of a patch. */
struct sbert_index_patch_item {
    const char *id; /* id_len bytes */
    size_t id_len;
    const char *set; /* a JSON object (set_len bytes) whose members replace or add top-level
                        metadata keys, or NULL */
    size_t set_len;
    const char *const *unset; /* n_unset NUL-terminated top-level keys to remove */
    size_t n_unset;
    int found; /* out: 1 when the document exists (and was patched) */
};

/*
 * Updates the metadata of n documents in one durable transaction, without touching their text or
 * vector: for each item, removes the keys of unset, then sets the members of set. A document
 * whose metadata becomes an empty object has none afterwards. Items whose id does not exist are
 * not an error (found = 0); an id patched twice in the batch gets both patches in order. The
 * patched document's record is rewritten (a new internal label, as an upsert), the vector index
 * gets the same vector under it, so query scores do not change.
 * Returns 0 when every found document is patched and durable; on failure nothing is changed and
 * *bad_index (may be NULL) names the item for EID, EMETADATA (set is not an object, or the
 * metadata would exceed max_metadata_bytes, 0: no bound) and EINVAL. req as for put (NULL: none);
 * its reply callback runs once every item's found is final.
 */
int sbert_index_patch_req(sbert_index *idx, struct sbert_index_patch_item *items, size_t n,
                          size_t max_metadata_bytes, const struct sbert_index_write_req *req,
                          size_t *bad_index, char *errbuf, size_t errlen);

/* ---- queries --------------------------------------------------------------------------------- */

struct sbert_index_query_params {
    size_t k;                         /* 1..10000 */
    float min_score;                  /* hits below are dropped; -2 (or less): no minimum */
    const sbert_index_filter *filter; /* NULL: every document */
    unsigned include;                 /* SBERT_INDEX_INCLUDE_* */
    int dim;                          /* the query vector's length, checked against the store's
                                         (EMODEL when they differ); 0: unchecked */
    size_t max_bytes;                 /* bound on the results' ids, texts, metadata, vectors
                                         (4 bytes a float) and passage texts, counted as they are
                                         read: over it the query stops and fails with ETOOBIG, as
                                         sbert_index_get_max(); 0: unbounded */
    /* A document's score: lead_weight * (its document vector's cosine) + (1 - lead_weight) *
     * (its best passage's cosine), both exact from the stored vectors; in [0, 1]. A one-passage
     * document scores its cosine. */
    float lead_weight;
    size_t passages_per_doc; /* best passages returned per document hit (at most 1000); 0: 1 */
    int group_passages;      /* 1: the hits are passages (score: the passage's cosine, the
                                passage in passages[0]), at most k of them; 0: documents */
};

/* Returns {k = 10, min_score = -2, filter = NULL, include = 0, dim = 0, max_bytes = 0,
 * lead_weight = 0.3, passages_per_doc = 1, group_passages = 0}. */
struct sbert_index_query_params sbert_index_query_default_params(void);

/*
 * Finds the k documents most similar to vector (dim floats; normalised here) among those the
 * filter accepts, best first (ties by id), each with its best passages. The vector index is
 * searched for passages; their documents are the candidates (the search is widened while fewer
 * than k distinct documents came back and more passages exist), scored exactly (lead_weight),
 * and min_score applies to that score. When at least k documents match the filter and reach
 * min_score, exactly k are returned, however selective the filter (an approximate index falls
 * back to exact search over the matches). Deleted documents are never returned.
 * *out is owned by the caller (sbert_index_results_free()).
 */
int sbert_index_query(sbert_index *idx, const float *vector,
                      const struct sbert_index_query_params *params,
                      struct sbert_index_results **out);

/*
 * nq queries at once: vectors holds nq rows of dim floats, params nq entries. The queries without
 * a filter share one vector search, so concurrent queries over a Flat index read the stored
 * vectors once rather than nq times (FAISS computes their scores as one matrix product); those
 * with a filter are searched one by one. Each query gets what sbert_index_query() would give it,
 * except that the shared search looks for the largest k of the group, so documents tied in score
 * at a smaller k's boundary, and an approximate index's near misses, may differ.
 * out[i] and rcs[i] receive query i's results (owned by the caller) or its error (out[i] NULL):
 * EINVAL, EMODEL or ETOOBIG concern that query alone; a store or search failure fails all of
 * them. Returns 0 when every query succeeded, else the first query's error.
 */
int sbert_index_query_many(sbert_index *idx, const float *vectors, size_t nq,
                           const struct sbert_index_query_params *params,
                           struct sbert_index_results **out, int *rcs);

/* ---- keyword and hybrid search ------------------------------------------------------------- */

enum {
    SBERT_INDEX_MODE_DENSE = 0,   /* sbert_index_query */
    SBERT_INDEX_MODE_KEYWORD = 1, /* BM25 over the keyword index */
    SBERT_INDEX_MODE_HYBRID = 2   /* both rankings, fused */
};
enum {
    SBERT_INDEX_FUSION_RRF = 0,     /* reciprocal-rank fusion: sum of 1 / (rrf_k + rank) */
    SBERT_INDEX_FUSION_WEIGHTED = 1 /* weight * dense + (1 - weight) * BM25, each min-max
                                       normalised over its candidates */
};

struct sbert_index_search_params {
    /* k, filter, include, dim and max_bytes as for sbert_index_query; min_score applies to the
     * dense score (cosine) in every mode, so keyword mode needs a vector to use it */
    struct sbert_index_query_params q;
    int mode;         /* SBERT_INDEX_MODE_* (dense with diversity > 0 goes through here) */
    const char *text; /* the query text (keyword, hybrid), text_len bytes */
    size_t text_len;
    const float *vector; /* the query's vector (dense, hybrid; keyword: optional, for
                            dense_score and min_score) */
    size_t candidates;   /* hybrid, diversity: hits taken from each ranking; 0: max(k, 100) */
    int fusion;          /* SBERT_INDEX_FUSION_* */
    float rrf_k;         /* RRF's constant; 0: 60 */
    float weight;        /* weighted fusion: the dense side's weight in [0, 1] */
    /* Maximal marginal relevance, in [0, 1]: 0 (the default) keeps the ranking; above 0 the k
     * hits are picked one by one from the candidates (hybrid's, or max(k, 100) of a dense or
     * keyword ranking; the best 1000 of them at most) by (1 - diversity) * relevance - diversity *
     * (the highest cosine with a hit already picked), relevance being the mode's score min-max
     * normalised over the candidates; the hits keep the mode's scores and come in pick order. */
    float diversity;
    float bm25_k1, bm25_b; /* k1 finite >= 0, b in [0, 1]; 0: 1.5 and 0.75 (bm25s's and
                              Lucene's defaults) */
};

/* Returns the defaults: dense mode, sbert_index_query_default_params(), RRF, weight 0.5. */
struct sbert_index_search_params sbert_index_search_default_params(void);

/*
 * Searches in params->mode. BM25 is Lucene's: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), a term
 * scores idf * tf / (tf + k1 * (1 - b + b * dl / avgdl)) per occurrence in the query, with N and
 * avgdl over the documents indexed (sbert_text.h's analysis, in the store's language). Hits come
 * best first by score — BM25 (keyword), the fused score (hybrid), cosine (dense) — ties by
 * insertion order, with dense_score, keyword_score and ranks set (keyword and hybrid). A keyword
 * search matches documents that hold at least one query term; a query with no term (all stop
 * words) finds nothing; a query of more than 1024 distinct terms keeps the 1024 that occur first
 * (of its first 16384 terms). EINVAL: a missing text or vector for the mode, or bad parameters.
 */
int sbert_index_search(sbert_index *idx, const struct sbert_index_search_params *params,
                       struct sbert_index_results **out);

/* ---- paraphrase mining ----------------------------------------------------------------------- */

struct sbert_index_pairs_params {
    size_t top_n;     /* keep the best top_n pairs; 0: no limit (then min_score should be set) */
    float min_score;  /* drop pairs below; -2 (or less): no minimum */
    size_t per_doc_k; /* neighbours looked at per document; 0: 100 (as sentence-transformers'
                         paraphrase_mining top_k) */
    const sbert_index_filter *filter; /* only documents the filter accepts; NULL: all */
};

/* Returns {top_n = 100, min_score = -2, per_doc_k = 0, filter = NULL}. */
struct sbert_index_pairs_params sbert_index_pairs_default_params(void);

struct sbert_index_pair {
    char *a, *b; /* ids, NUL-terminated; a is the document written first (an upsert counts as a
                    new write: internal labels are never reused) */
    float score;
};

struct sbert_index_pairs {
    size_t n;
    struct sbert_index_pair *pairs; /* best first; ties by (a, b) in write order. Scores are
                                       exact cosines recomputed from the stored vectors */
};

/* Frees p and everything in it. NULL is allowed. */
void sbert_index_pairs_free(struct sbert_index_pairs *p);

/*
 * Paraphrase mining over the collection: the most similar pairs of distinct documents, each pair
 * once. Runs a batch k-NN search (per_doc_k + 1 neighbours) of every stored vector through the
 * vector index and merges (a,b)/(b,a), never building the n x n matrix: memory is
 * O(n * per_doc_k) at most. Exact for a Flat index when per_doc_k >= the number of documents - 1
 * or top_n pairs are all within every document's per_doc_k neighbours (as in
 * sentence-transformers). Time is that of n searches (for Flat, n^2 * dim multiply-adds through
 * BLAS: measured here 1.0 s for 5,000 x 384 with one OpenMP thread). Queries go on meanwhile;
 * writes are not blocked. *out is owned by the caller (sbert_index_pairs_free()).
 */
int sbert_index_pairs(sbert_index *idx, const struct sbert_index_pairs_params *params,
                      struct sbert_index_pairs **out);

/* ---- maintenance ----------------------------------------------------------------------------- */

/*
 * Writes a snapshot of the vector index now (write temp + fsync + rename + fsync dir) covering
 * every change committed so far, then trims the change log up to it. Queries go on meanwhile;
 * writes wait. Returns 0 also when nothing changed since the last snapshot (nothing written).
 */
int sbert_index_snapshot(sbert_index *idx, char *errbuf, size_t errlen);

/*
 * Hot backup into dir, which must not exist or be an empty directory (else EEXIST): a compacted
 * copy of store.mdb (mdb_env_copy2 with MDB_CP_COMPACT) and a snapshot of the vector index at
 * the same change, each fsynced. The result opens with sbert_index_open() as a working store.
 * Queries go on meanwhile; writes wait until the backup is done.
 */
int sbert_index_backup(sbert_index *idx, const char *dir, char *errbuf, size_t errlen);

/* What sbert_index_verify found in a store directory. */
struct sbert_index_verify_report {
    char model_name[256];
    char weights_sha256[65];
    char spec[128];
    int dim;
    uint64_t documents;       /* records, each with sound vectors and an id leading back to it */
    uint64_t passages;        /* their passages (vectors) */
    uint64_t change;          /* the store's last change number */
    int snapshot;             /* 1: index.snap loaded, checksums sound, of this store */
    uint64_t snapshot_change; /* the change it covers (the rest is replayed at open) */
    uint64_t snapshot_count;  /* its live entries (passages) */
};

/*
 * Checks the store in dir (a stopped store, or a backup) without the model: store.mdb opens and
 * has a meta record of a known format; every record decodes, its vector has the store's
 * dimension and finite values, and its id leads back to it; ids and records agree in number; an
 * index.snap, when present, loads with every block's checksum sound and belongs to this store.
 * Refused with SBERT_INDEX_ELOCKED while a process (a running sbertd) has the store open. Reads
 * only (LMDB may create its lock file beside store.mdb). Returns 0 with *out filled, or an
 * SBERT_INDEX_E* code (SBERT_INDEX_ENOTFOUND: no store.mdb; SBERT_INDEX_EFORMAT: damaged) with
 * errbuf saying what is wrong.
 */
int sbert_index_verify(const char *dir, struct sbert_index_verify_report *out, char *errbuf,
                       size_t errlen);

/*
 * Re-encodes every stored text with a new model: calls encode on batches of texts, writes the
 * new vectors and new_model's identity into a fresh environment dir/reindex.mdb, builds a new
 * vector index from them, then switches over atomically (rename over store.mdb). All or nothing:
 * a failure or a crash at any point leaves the old store as it was (a crash after the rename
 * leaves the new one, complete). new_model->dim may differ from the old dim. Writes wait for the
 * whole reindex; queries go on against the old data until the switch, then see the new.
 * After it returns 0, put and query take vectors of the new model.
 */
int sbert_index_reindex(sbert_index *idx, const struct sbert_index_model *new_model,
                        sbert_index_encode_fn encode, void *user, char *errbuf, size_t errlen);

struct sbert_index_stats {
    uint64_t count; /* documents */
    int dim;
    char model_name[256];
    char model_sha256[65];
    char index_spec[128];     /* the FAISS factory string in use */
    int index_trained;        /* 1 unless an IVF index is still searching exactly (untrained) */
    uint64_t map_size;        /* LMDB map size, bytes */
    uint64_t map_used;        /* bytes of the map in use (last page number * page size) */
    uint64_t change;          /* the store's change counter (one per document put or deleted) */
    uint64_t snapshot_change; /* the change the last snapshot covers (0: none) */
    int64_t snapshot_time;    /* Unix time of the last snapshot written or loaded (0: none) */
    uint64_t index_count;     /* live entries in the vector index, one per passage: after open,
                                 the documents' passages */
    uint64_t index_bytes;     /* the vector index's estimate of its memory use */
    char scan_kernel[16];     /* the kernel of a Flat index's int8 scan ("avx512vnni",
                                 "avxvnni", "avx2", "scalar") when its searches use it at the
                                 present count; "" when they scan exactly (index/vindex.h,
                                 "Flat") */
    /* the keyword index: its language ("" when keyword_language is "off"), the documents and
     * postings (term, document) in it, and its size in the store: the term tree's pages plus 16
     * bytes a posting (LMDB keeps a term's postings in pages of their own, packed) */
    char keyword_language[64];
    uint64_t keyword_docs, keyword_postings, keyword_bytes;
};

/* Fills *st. */
int sbert_index_stats(sbert_index *idx, struct sbert_index_stats *st);

#ifdef __cplusplus
}
#endif

#endif
