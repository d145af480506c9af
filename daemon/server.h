/*
 * server.h — sbertd's internals shared by server.c (sockets, threads, queues), ops.c (the op
 * table and its handlers) and main.c (start-up and signals).
 *
 * Threads and who owns what:
 *   receiver   one thread: nn_recvmsg() on the raw REP socket, refuses what cannot be queued
 *              (too large, busy, shutting down) and queues the rest for the workers.
 *   workers    `threads` threads: parse and validate a request, run read ops (query, get, ...)
 *              concurrently, hand write ops (add, delete, backup, reindex) to the writer.
 *   writer     the first stage of the write pipeline, one thread: takes writes in arrival order
 *              and does the part that needs no store state (the adds' encode, several queued adds
 *              in one call), holding no lock, then passes each request on in the same order.
 *   committer  the second stage, one thread: runs the writes one at a time in that order (the
 *              LMDB commit, the vector index, the reply), so batch N commits and fsyncs while
 *              batch N+1 encodes. It owns the req_id reply cache: a repeated req_id is looked up
 *              here, after every earlier write has committed.
 *   encoder    one thread: encodes the texts of small read requests (queries, similarity, ...)
 *              that arrive together in one sbert_encode() call. Large read requests encode in
 *              their worker, adds in the writer, so a big batch never delays a query's encode.
 *   searcher   one thread: runs the vector searches of unfiltered queries that arrive together
 *              in one sbert_index_query_many() call, so a Flat index is read once for all of
 *              them. Filtered queries search in their worker.
 * A struct request belongs to exactly one thread at a time (the queue hands it over); the reply
 * is sent by the thread that finishes it.
 */
#ifndef SBERTD_SERVER_H
#define SBERTD_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sbert.h"
#include "sbert_index.h"
#include "sbert_proto.h"

struct sbertd;
struct request;

/* One operation of the protocol. The table in ops.c is the daemon's whole dispatch. */
struct op {
    const char *name;
    const char *const *members; /* the members the op defines (besides v, op, req_id, token) */
    const char *list;           /* the member bounded by max_batch, or NULL */
    int is_write;               /* serialised through the writer; idempotent by req_id */
    /* Validates the request in a worker and keeps what the run needs in r->prep (may be NULL). */
    int (*prepare)(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
    /* Executes the request, adding its members to reply (which has v, ok, req_id). */
    int (*run)(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
    /* Writes only, optional: the writer's stage for n consecutive queued requests of this op,
     * which must not depend on or touch the store (it runs while earlier writes commit). Keeps
     * its results, or its errors, in each request's prep for run. */
    void (*stage_group)(struct sbertd *d, struct request **rs, size_t n);
};

extern const struct op sbertd_ops[];
extern const size_t sbertd_n_ops;

struct request {
    struct request *next;
    void *body; /* nanomsg message (nn_freemsg) */
    size_t len;
    void *control; /* the raw REP routing header (nn_freemsg unless sent) */
    uint64_t t0_us;
    /* writes: when the request was validated, entered and left the writer's stage, and began to
     * run in the committer, for the debug log's breakdown of where its time went */
    uint64_t t_valid_us, t_stage_us, t_staged_us, t_run_us;
    uint64_t hash; /* FNV-1a of body: tells a re-sent write from a reused req_id */
    struct sbert_proto_request req;
    char *req_id_copy; /* req_id of a request that failed to parse as a whole */
    const struct op *op;
    int op_index;
    void *prep; /* the op's prepared state, freed with prep_free */
    void (*prep_free)(void *);
};

#define SBERTD_LAT_BUCKETS 480

struct op_stats {
    uint64_t count, errors;
    double max_ms;
    uint32_t hist[SBERTD_LAT_BUCKETS];
};

struct queue {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct request *head, *tail;
    size_t n;
    int closed;
};

/* Requests waiting for a thread that serves them in shared batches (the encoder, the searcher):
 * a waiter queues its job and sleeps until the thread has served the batch that holds it. A job
 * type embeds struct batch_job as its first member. */
struct batch_job {
    struct batch_job *next;
    size_t weight; /* what counts against a batch's limit (texts, queries) */
    int done;      /* set by the batch thread; the job is its waiter's again */
};

struct batch_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv, done_cv;
    struct batch_job *head, *tail;
    int stop;
};

struct sbertd {
    struct sbertd_config cfg; /* read-only after start except the live-reloadable limits */
    sbert_model *model;
    const struct sbert_model_info *info;
    sbert_index *index;
    struct sbert_index_model identity;
    int sock;
    int eps[SBERTD_MAX_LISTEN];
    uint64_t start_us;

    /* live-reloadable settings (SIGHUP) */
    _Atomic uint64_t max_message_size, max_batch, max_text_bytes, max_k, max_pairs, max_matrix,
        max_metadata_bytes, max_concurrent, max_inflight_bytes, max_reply_bytes;

    atomic_int stopping;
    atomic_int receiver_alive;
    _Atomic uint64_t in_flight;
    _Atomic uint64_t inflight_bytes;
    _Atomic uint64_t total, total_errors;

    struct queue work, writes, commits;
    pthread_t receiver, writer, committer, encoder, searcher, *workers;
    int n_workers;
    /* per worker, then the writer (index n_workers) and the committer (n_workers + 1): when its
     * request started (0: idle) */
    _Atomic uint64_t *busy_since;
    _Atomic int *busy_op;

    struct batch_queue enc_q, search_q;

    pthread_mutex_t stats_mu;
    struct op_stats *stats; /* sbertd_n_ops entries */

    /* committer-only: the req_id reply cache */
    struct reply_cache *cache;
};

uint64_t sbertd_now_us(void);

/* Starts the server: socket, binds, threads. Returns 0 or -1 (logged). */
int sbertd_server_start(struct sbertd *d);

/* Stops accepting, finishes every queued and running request, joins the threads, closes the
 * socket. */
void sbertd_server_stop(struct sbertd *d);

/* Frees what sbertd_server_start() allocated; after sbertd_server_stop(). */
void sbertd_server_free(struct sbertd *d);

/* Liveness for the watchdog (sd.h's sbertd_sd_alive_fn). */
int sbertd_server_alive(void *ctx, char *why, size_t whylen);

/* Sends reply (or, when reply is NULL, the error in err) for r, records its statistics, and
 * frees r. Every request ends here exactly once. */
void sbertd_finish(struct sbertd *d, struct request *r, cJSON *reply,
                   const struct sbert_proto_error *err);

/* Encodes n texts into out (n * dim floats), truncated (may be NULL) gets n flags. Small jobs
 * from read requests are batched with concurrent ones (shared=1); others run in the calling
 * thread. Returns 0 or a SBERT_PROTO_E* code with err filled. */
int sbertd_encode(struct sbertd *d, const char *const *texts, const size_t *lens, size_t n,
                  float *out, int *truncated, int shared, struct sbert_proto_error *err);

/* sbert_index_query() for a request: unfiltered queries are searched together with concurrent
 * ones (the searcher thread), filtered ones in the calling thread. Returns an SBERT_INDEX_E*
 * code; *out as sbert_index_query(). */
int sbertd_query(struct sbertd *d, const float *vector,
                 const struct sbert_index_query_params *params, struct sbert_index_results **out);

/* The sbert_index_encode_fn of a reindex (the op, or at start-up after a model change):
 * encodes with the daemon's model, in pieces, telling the watchdog after each that the request
 * is still making progress. user is the struct sbertd. */
int sbertd_reindex_encode(const char *const *texts, const size_t *lens, size_t n, float *out,
                          void *user);

/* Called by a long request while it makes progress: restarts the busy clock that
 * sbertd_server_alive() compares with watchdog_stall_sec for the calling server thread. A no-op
 * on any other thread (start-up). */
void sbertd_server_progress(struct sbertd *d);

/* Maps an index error to a protocol error (err gets the index's message). */
int sbertd_index_error(int rc, const char *msg, long index, struct sbert_proto_error *err);

#endif
