/*
 * op.h — what an op's handlers may reach of sbertd: the narrow service interface between the
 * op table (ops*.c) and the server (server.h and its files). Handlers see struct sbertd and
 * struct request only as opaque handles and call these functions; nothing else of the server.
 *
 * A handler runs in one server thread (see server.h): prepare in a worker, run in a worker (reads)
 * or in the committer (writes), stage_group in the writer. Every function here may be called from
 * any of them. Errors: SBERT_PROTO_E* codes with err filled (sbert_proto_error_set), as
 * sbert_proto.h's readers do.
 */
#ifndef SBERTD_OP_H
#define SBERTD_OP_H

#include <stddef.h>
#include <stdint.h>

#include "sbert.h"
#include "sbert_index.h"
#include "sbert_proto.h"

struct sbertd;  /* the server (opaque) */
struct request; /* one request, owned by the server thread that runs the handler (opaque) */

/* ---- the op table ------------------------------------------------------------------------------
 * proto's op table (sbert_proto_ops: PROTOCOL.md section 4) says what each op is called, which
 * members it takes and whether it writes; the daemon adds how it runs. ops.c joins the two. */

/* The daemon's side of one op. */
struct op_handlers {
    const char *list; /* the member bounded by max_batch, or NULL */
    /* Validates the request in a worker and keeps what the run needs with sbertd_req_set_prep
     * (may be NULL). */
    int (*prepare)(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
    /* Executes the request, adding its members to reply (which has v, ok, req_id). */
    int (*run)(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
    /* Writes only, optional: the writer's stage for n consecutive queued requests of this op,
     * which must not depend on or touch the store (it runs while earlier writes commit). Keeps
     * its results, or its errors, in each request's prep for run. */
    void (*stage_group)(struct sbertd *d, struct request **rs, size_t n);
};

/* One op as the daemon runs it: the protocol's row joined with the daemon's handlers. */
struct op {
    const char *name;                   /* the protocol's */
    int is_write;                       /* the protocol's "writes": through the write pipeline,
                                           idempotent by req_id */
    const struct sbert_proto_op *proto; /* its members */
    int index;                          /* in table order (the protocol's), 0 .. sbertd_n_ops-1 */
    const char *list;
    int (*prepare)(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
    int (*run)(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
    void (*stage_group)(struct sbertd *d, struct request **rs, size_t n);
};

/* The number of ops (the protocol's). */
extern const size_t sbertd_n_ops;

/* Builds the daemon's op table from the protocol's and checks that they agree: every op of the
 * protocol has a handler, every handler an op of the protocol, a list is one of its op's members
 * and only a write has a stage. Returns 0, or -1 with why. Called once at start-up, before any
 * thread starts and before any other function below. */
int sbertd_ops_init(char *why, size_t whylen);

/* Op i (0 <= i < sbertd_n_ops), in the protocol's order; valid for the daemon's life. */
const struct op *sbertd_op_at(size_t i);

/* The op called name, or NULL. */
const struct op *sbertd_op_find(const char *name);

/* ---- the request -------------------------------------------------------------------------------
 * Borrowed pointers stay valid until the request is finished (after the handler returns). */

/* The parsed message (sbert_proto_request.root). */
const cJSON *sbertd_req_root(const struct request *r);

/* The request's req_id, or NULL. */
const char *sbertd_req_id(const struct request *r);

/* FNV-1a of the message: tells a re-sent write from another one that reuses its req_id. */
uint64_t sbertd_req_hash(const struct request *r);

/* The state prepare kept for the later stages, or NULL. */
void *sbertd_req_prep(const struct request *r);

/* Gives prep to r, which frees it with prep_free (may be NULL) when r is finished. */
void sbertd_req_set_prep(struct request *r, void *prep, void (*prep_free)(void *));

/* ---- limits ------------------------------------------------------------------------------------
 * The live-reloadable limits (SIGHUP): read each where it is needed, never cached. */
enum sbertd_limit {
    SBERTD_LIMIT_MAX_MESSAGE_SIZE,
    SBERTD_LIMIT_MAX_BATCH,
    SBERTD_LIMIT_MAX_TEXT_BYTES,
    SBERTD_LIMIT_MAX_QUERY_TEXT_BYTES,
    SBERTD_LIMIT_MAX_K,
    SBERTD_LIMIT_MAX_PAIRS,
    SBERTD_LIMIT_MAX_MATRIX,
    SBERTD_LIMIT_MAX_METADATA_BYTES,
    SBERTD_LIMIT_MAX_CONCURRENT,
    SBERTD_LIMIT_MAX_INFLIGHT_BYTES,
    SBERTD_LIMIT_MAX_REPLY_BYTES,
    SBERTD_N_LIMITS
};

uint64_t sbertd_limit(const struct sbertd *d, enum sbertd_limit which);

/* The limit's configuration key ("max_batch"); a static string. */
const char *sbertd_limit_name(enum sbertd_limit which);

/* ---- the model and the store ---------------------------------------------------------------- */

/* The model's description; valid for the daemon's life. */
const struct sbert_model_info *sbertd_model_info(const struct sbertd *d);

/* The configured lead_weight of a document's query score (sbert_index_query_params). */
float sbertd_lead_weight(const struct sbertd *d);

/* Tells the watchdog that the calling request, however long it has run, is making progress (a
 * long batch calls it between its pieces). */
void sbertd_request_progress(struct sbertd *d);

/* 1 when store (a collection's, while a request that names it runs) keeps a keyword index (its
 * keyword_language is not "off"). */
int sbertd_keyword_enabled(struct sbertd *d, const sbert_index *store);

/* The model's identity, as a reindex records it; valid for the daemon's life. */
const struct sbert_index_model *sbertd_model_identity(const struct sbertd *d);

/* The default collection's store (thread-safe, sbert_index.h); valid for the daemon's life. */
sbert_index *sbertd_store(const struct sbertd *d);

/* ---- collections (collections.c) ---------------------------------------------------------------
 * A collection is a store of its own (its directory, vector index, snapshot, keyword index and
 * index spec): the daemon's data directory is the collection "default", the others live in
 * DATA/collections/NAME/. Every collection uses the daemon's model. */

/* The store of the collection r names (its "collection" member, default "default"), for an op
 * that has that member: the server resolves it before the op runs (the handlers' run) and keeps
 * it open until the request is finished. NULL for other ops. */
sbert_index *sbertd_req_store(const struct request *r);

/* Checks a collection name: 1..SBERTD_COLLECTION_NAME_MAX bytes of [A-Za-z0-9_-], not starting
 * with '-'. what names the member in the message. Returns 0 or SBERT_PROTO_EBAD_REQUEST. */
#define SBERTD_COLLECTION_NAME_MAX 64
int sbertd_collection_name_check(const char *name, const char *what, struct sbert_proto_error *err);

/* A collection's settings: recorded when it is created, used whenever it is opened. */
struct sbertd_collection_params {
    char index[128]; /* FAISS factory string */
    int ef_search, nprobe;
    char keyword_language[64];
};

/* The daemon's defaults for a new collection (its configuration's index, ef_search, nprobe and
 * keyword_language). */
void sbertd_collection_defaults(const struct sbertd *d, struct sbertd_collection_params *p);

/* Creates the empty collection name with p, durably (its directory is complete or absent after a
 * crash), and opens it. Runs in the committer. Returns 0, or SBERT_PROTO_EEXISTS (the name is
 * taken), SBERT_PROTO_EBAD_REQUEST (a spec or language the store refuses) or an I/O error. */
int sbertd_collection_create(struct sbertd *d, const char *name,
                             const struct sbertd_collection_params *p,
                             struct sbert_proto_error *err);

/* Drops the collection name (not "default"): closes it once no request uses it, removes it from
 * the table and its directory from the disk, durably. *documents gets how many it held. Returns
 * 0, SBERT_PROTO_ENO_COLLECTION, SBERT_PROTO_EBAD_REQUEST ("default") or an I/O error. */
int sbertd_collection_drop(struct sbertd *d, const char *name, uint64_t *documents,
                           struct sbert_proto_error *err);

/* One collection, as sbertd_collections_each shows it (valid during the call). */
struct sbertd_collection_view {
    const char *name;
    sbert_index *store;
    const char *dir;
    const struct sbertd_collection_params *params; /* NULL for "default": the configuration's */
};

/* Calls fn for every collection ("default" first, then by name), or only for the one called
 * only (when not NULL), while no collection can be created or dropped; stops at fn's first
 * non-zero return and returns it. Returns SBERT_PROTO_ENO_COLLECTION (err set) when only names
 * none. */
int sbertd_collections_each(struct sbertd *d, const char *only,
                            int (*fn)(void *user, const struct sbertd_collection_view *c),
                            void *user, struct sbert_proto_error *err);

/* The number of collections, "default" included. */
size_t sbertd_collections_count(struct sbertd *d);

/* Encodes n texts into out (n * dim floats); truncated (may be NULL) gets n flags. shared=1 is a
 * read request's encode (a query's): small jobs are batched with concurrent ones, nothing is
 * cached. shared=0 is a write's encode (documents, passages, a reindex), in the calling thread,
 * through the embedding cache: sbertd_encode_docs with cached NULL. lens may be NULL (strlen).
 * Returns 0 or a SBERT_PROTO_E* code with err filled. */
int sbertd_encode(struct sbertd *d, const char *const *texts, const size_t *lens, size_t n,
                  float *out, int *truncated, int shared, struct sbert_proto_error *err);

/* A write's encode of n texts, in the calling thread: texts whose vector the embedding cache
 * holds (same model, precision and text) are not encoded again, nor is a text repeated within
 * the call; the cache gets the vectors of the others. A cached vector is, bit for bit, the
 * one this model and precision made for that text when it was first encoded. cached (may be NULL)
 * gets n flags: 1 for a text that was not encoded by this call. Returns as sbertd_encode. */
int sbertd_encode_docs(struct sbertd *d, const char *const *texts, const size_t *lens, size_t n,
                       float *out, int *truncated, int *cached, struct sbert_proto_error *err);

/* ---- passages ------------------------------------------------------------------------------ */

/* The passage window: the model's max_seq_length less [CLS] and [SEP], in tokens. */
size_t sbertd_passage_window(const struct sbertd *d);

/* Splits text[0..len) into passages of at most the passage window's tokens (the model's
 * tokenizer counts), with the configured overlap (sbert_text.h's sbert_passages_split). On
 * success *out (NULL when the text holds only white space) owns *n passages, freed with free().
 * Returns 0 or a SBERT_PROTO_E* code with err filled. */
struct sbert_passage;
int sbertd_passages(struct sbertd *d, const char *text, size_t len, struct sbert_passage **out,
                    size_t *n, struct sbert_proto_error *err);

/* sbert_index_query() on store for a request: unfiltered queries of the default collection are
 * searched together with concurrent ones (the searcher thread), the others in the calling
 * thread. Returns an SBERT_INDEX_E* code; *out as sbert_index_query(). */
int sbertd_query(struct sbertd *d, sbert_index *store, const float *vector,
                 const struct sbert_index_query_params *params, struct sbert_index_results **out);

/* sbert_index_query_many() on store for the n queries of one batch query (vectors: n rows; params:
 * n entries), in the calling thread: a batch fills one vector search by itself, so it neither waits
 * for the searcher's shared batches nor delays them. Unfiltered queries go in one call (one read
 * snapshot); when some have a filter, in pieces of a few, telling the watchdog after each that
 * the request is making progress. Returns 0 or the first failed query's SBERT_INDEX_E* code;
 * out[i] and rcs[i] as sbert_index_query_many(). */
int sbertd_query_many(struct sbertd *d, sbert_index *store, const float *vectors, size_t n,
                      const struct sbert_index_query_params *params,
                      struct sbert_index_results **out, int *rcs);

/* The sbert_index_encode_fn of a reindex (the op, or at start-up after a model change; user is
 * the struct sbertd): encodes through sbertd_encode() in pieces, telling the watchdog after each
 * that the calling request is still making progress. */
int sbertd_reindex_encode(const char *const *texts, const size_t *lens, size_t n, float *out,
                          void *user);

/* Tells the watchdog that the calling thread's request is still making progress (a long write,
 * e.g. a delete by filter between its chunks). */
void sbertd_progress(struct sbertd *d);

/* ---- statistics --------------------------------------------------------------------------------
 */

struct sbertd_counters {
    double uptime_s;
    int stopping;         /* SIGTERM received: draining */
    uint64_t in_progress; /* requests received and not yet answered (the caller's included) */
    uint64_t total, errors;
    int workers, encode_threads;
    /* texts and tokens encoded since start, and the seconds the encoder spent on them */
    uint64_t encoded_texts, encoded_tokens;
    double encode_s;
    /* the embedding cache (all 0 when it is off): its entries now, the bytes they take and may
     * take, and the writes' texts found in it, not found, evicted since start */
    int cache_enabled;
    uint64_t cache_entries, cache_bytes, cache_max_bytes;
    uint64_t cache_hits, cache_misses, cache_evictions;
};

void sbertd_counters_get(const struct sbertd *d, struct sbertd_counters *out);

/* One op's latency figures since start (milliseconds). */
struct sbertd_op_figures {
    uint64_t count, errors;
    double p50_ms, p90_ms, p99_ms, max_ms;
};

/* Calls fn for every op that has answered a request, in table order, all under the statistics
 * lock (fn must not call into the server); stops at fn's first non-zero return and returns it,
 * else 0. */
int sbertd_op_stats_each(struct sbertd *d,
                         int (*fn)(void *user, const char *op, const struct sbertd_op_figures *f),
                         void *user);

#endif
