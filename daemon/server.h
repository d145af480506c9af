/*
 * server.h — sbertd's server internals, private to the server's files: main.c (start-up, signals,
 * reload), server.c (workers, dispatch, start and stop, liveness), queue.c, receiver.c (sockets,
 * framing, auth), batcher.c (the shared encoder and searcher), pipeline.c (writer and committer),
 * reply.c (replies, statistics, the req_id reply cache) and service.c (op.h for the handlers).
 * The op handlers (ops*.c) see none of this: only op.h.
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
#include "ecache.h"
#include "op.h"
#include "queue.h"
#include "sbert.h"
#include "sbert_index.h"
#include "sbert_proto.h"

struct http_wait; /* http_front.c: an HTTP caller waiting for this request's reply */

struct request {
    struct request *next;
    struct http_wait *http; /* NULL: the request came over nanomsg */
    void *body;             /* nanomsg message (nn_freemsg), or malloc'd for an HTTP request */
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
    sbert_index *store; /* the collection it names, while it runs (sbertd_collection_enter) */
};

struct collection; /* collections.c */

struct sbertd {
    struct sbertd_config cfg; /* read-only after start except the live-reloadable limits */
    sbert_model *model;
    const struct sbert_model_info *info;
    sbert_index *index; /* the collection "default" (also colls[0]) */
    struct sbert_index_model identity;
    /* the collections (collections.c): held shared by every request that names one while it
     * runs, exclusively by create and drop */
    pthread_rwlock_t coll_lock;
    struct collection *colls; /* n_colls: "default" first, then by name */
    size_t n_colls;
    int sock;
    int eps[SBERTD_MAX_LISTEN];
    uint64_t start_us;

    /* the live-reloadable limits (SIGHUP), by enum sbertd_limit */
    _Atomic uint64_t limits[SBERTD_N_LIMITS];

    atomic_int stopping;
    atomic_int receiver_alive;
    _Atomic uint64_t in_flight;
    _Atomic uint64_t inflight_bytes;
    _Atomic uint64_t total, total_errors;
    /* every sbert_encode() call's texts, tokens and microseconds (batcher.c) */
    _Atomic uint64_t enc_texts, enc_tokens, enc_us;
    /* the embedding cache of the writes' encodes (batcher.c), NULL when off or unopenable; opened
     * before and closed after every server thread */
    sbertd_ecache *ecache;

    struct queue work, writes, commits;
    pthread_t receiver, writer, committer, encoder, searcher, *workers;
    int n_workers;
    /* per worker, then the writer (index n_workers) and the committer (n_workers + 1): when its
     * request started (0: idle) */
    _Atomic uint64_t *busy_since;
    _Atomic int *busy_op;

    struct batch_queue enc_q, search_q;

    pthread_mutex_t stats_mu;
    struct op_stats *stats; /* sbertd_n_ops entries (reply.c) */

    /* committer-only: the req_id reply cache (reply.c) */
    struct reply_cache *cache;

    /* http_front.c */
    struct sbert_http *http;
    pthread_t textfile;
    int textfile_running;
    pthread_mutex_t textfile_mu;
    pthread_cond_t textfile_cv;
};

uint64_t sbertd_now_us(void);

/* ---- service.c (besides op.h) ------------------------------------------------------------- */

/* Where configuration c keeps the live limit which. */
uint64_t *sbertd_config_limit(struct sbertd_config *c, enum sbertd_limit which);

/* ---- collections.c (besides op.h) ---------------------------------------------------------- */

/* Makes d->index the collection "default" and opens every other one in DATA/collections/,
 * removing what a create or drop interrupted by a crash left behind. Before any server thread
 * starts. Returns 0 or -1 (logged). */
int sbertd_collections_open(struct sbertd *d);

/* Closes every collection but "default" (after every server thread stopped). */
void sbertd_collections_close(struct sbertd *d);

/* Resolves the collection r names when its op has a "collection" member: takes the collection
 * lock shared and sets r->store. Returns 1 (lock held: call sbertd_collection_leave once r is
 * finished), 0 (the op names none; no lock), or a SBERT_PROTO_E* code with err set (no lock). */
int sbertd_collection_enter(struct sbertd *d, struct request *r, struct sbert_proto_error *err);

/* Releases what sbertd_collection_enter took when it returned 1. */
void sbertd_collection_leave(struct sbertd *d);

/* At validation: refuses at once a request whose collection is not a name or does not exist,
 * rather than after a write's encode (sbertd_collection_enter decides when it runs). Returns 0
 * or a SBERT_PROTO_E* code with err set. */
int sbertd_collection_check(struct sbertd *d, struct request *r, struct sbert_proto_error *err);

/* ---- server.c: start, stop, workers, liveness ---------------------------------------------- */

/* Starts the server: socket, binds, threads. Returns 0, or -1 (logged) with every thread it had
 * started stopped and the socket closed. */
int sbertd_server_start(struct sbertd *d);

/* Stops accepting, finishes every queued and running request, joins the threads, closes the
 * socket. */
void sbertd_server_stop(struct sbertd *d);

/* Frees what sbertd_server_start() allocated; after sbertd_server_stop(). */
void sbertd_server_free(struct sbertd *d);

/* Liveness for the watchdog (sd.h's sbertd_sd_alive_fn). */
int sbertd_server_alive(void *ctx, char *why, size_t whylen);

/* Makes the calling thread the owner of busy slot `slot` (sbertd_server_progress). */
void sbertd_server_bind_slot(int slot);

/* Called by a long request while it makes progress: restarts the busy clock that
 * sbertd_server_alive() compares with watchdog_stall_sec for the calling server thread. A no-op
 * on any other thread (start-up). */
void sbertd_server_progress(struct sbertd *d);

/* Runs r's op (r validated) and finishes r with its reply or its error: resolves the collection
 * it names (sbertd_collection_enter) in the calling thread, and answers a write's repeated req_id
 * (sbertd_pipeline_answer_repeat) before running it. */
void sbertd_run_one(struct sbertd *d, struct request *r);

/* ---- receiver.c: sockets, framing, auth --------------------------------------------------------
 */

/* Opens the raw REP socket and binds every listen URL. Returns 0 or -1 (logged). */
int sbertd_receiver_open(struct sbertd *d);

/* The receiver thread (arg: the struct sbertd). */
void *sbertd_receiver_main(void *arg);

/* Queues r (body and len set) for the workers, or refuses it with a reply (shutting down, too
 * large, too many in flight): the one admission of nanomsg and HTTP requests alike. */
void sbertd_receiver_admit(struct sbertd *d, struct request *r);

/* Sends buf as r's reply (nanomsg copies it; an HTTP request's caller gets a copy); a failure is
 * logged, not returned. */
void sbertd_receiver_send(struct sbertd *d, struct request *r, const char *buf, size_t len);

/* Frees r and everything it holds (message, routing header, parse tree, prep). */
void sbertd_request_free(struct request *r);

/* 1 when the daemon needs no token or token is the right one. */
int sbertd_receiver_authorized(const struct sbertd *d, const char *token);

/* Removes the ipc socket files and closes the socket; after every reply is sent. */
void sbertd_receiver_close(struct sbertd *d);

/* ---- http_front.c: the HTTP API (http/) and /metrics -------------------------------------------
 */

/* Starts the HTTP API when cfg.http is set and the metrics textfile writer when
 * cfg.metrics_textfile is. Returns 0 or -1 (logged). */
int sbertd_http_start(struct sbertd *d);

/* Stops them; while the workers still answer (it waits for HTTP requests in progress). */
void sbertd_http_stop(struct sbertd *d);

/* Hands buf to r's HTTP caller (a copy); from sbertd_receiver_send. */
void sbertd_http_deliver(struct request *r, const char *buf, size_t len);

/* ---- batcher.c: the shared encoder and searcher (op.h: sbertd_encode, sbertd_query) --------- */

/* Starts the encoder and searcher threads. Returns 0 or -1. */
int sbertd_batcher_start(struct sbertd *d);

/* Stops them after their queues drain; after every request that encodes or queries is done. */
void sbertd_batcher_stop(struct sbertd *d);

/* ---- pipeline.c: the writer and the committer --------------------------------------------------
 */

/* Starts the two write threads. Returns 0 or -1. */
int sbertd_pipeline_start(struct sbertd *d);

/* Hands a validated write to the writer (which owns r from here on). */
void sbertd_pipeline_submit(struct sbertd *d, struct request *r);

/* Lets both stages finish every queued write and joins them; after the workers are joined. */
void sbertd_pipeline_stop(struct sbertd *d);

/* Answers a repeated write (r->store resolved) from the reply cache or the store's remembered
 * replies; returns 1 when r was finished here. Committer only. */
int sbertd_pipeline_answer_repeat(struct sbertd *d, struct request *r);

/* ---- reply.c: replies, statistics, the reply cache ------------------------------------------ */

/* Allocates the statistics and the reply cache. Returns 0 or -1 (out of memory). */
int sbertd_reply_init(struct sbertd *d);

/* Frees the reply cache (after the committer stopped) and the statistics (at the end). */
void sbertd_reply_cache_free(struct sbertd *d);
void sbertd_reply_stats_free(struct sbertd *d);

/* Sends reply (or, when reply is NULL, the error in err) for r, records its statistics, and
 * frees r. Every request ends here or in sbertd_finish_text exactly once. */
void sbertd_finish(struct sbertd *d, struct request *r, cJSON *reply,
                   const struct sbert_proto_error *err);

/* As sbertd_finish, with the reply already printed (text, len bytes); code names the error
 * (failed) or is "ok". */
void sbertd_finish_text(struct sbertd *d, struct request *r, const char *text, size_t len,
                        int failed, const char *code);

/* The reply cache (committer only): 1 and the entry's hash and reply (valid until the next
 * sbertd_cache_put) when req_id was answered in the last 10 minutes, else 0. */
int sbertd_cache_find(struct sbertd *d, const char *req_id, uint64_t *hash, const char **reply,
                      size_t *len);

#endif
