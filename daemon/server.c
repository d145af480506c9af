/* server.c — sbertd's workers (validate and dispatch), start and stop of every thread, and the
 * liveness check the watchdog asks (see server.h for who does what). */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t sbertd_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- busy clocks ----------------------------------------------------------------------------- */

/* The calling thread's slot in busy_since (workers, then writer, then committer); -1 elsewhere. */
static _Thread_local int busy_slot = -1;

void sbertd_server_bind_slot(int slot)
{
    busy_slot = slot;
}

void sbertd_server_progress(struct sbertd *d)
{
    if (busy_slot >= 0) atomic_store(&d->busy_since[busy_slot], sbertd_now_us());
}

/* ---- dispatch -------------------------------------------------------------------------------- */

static int validate(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    int rc = sbert_proto_request_parse(r->body, r->len, &r->req, &r->req_id_copy, err);
    if (rc) return rc;
    if (!sbertd_receiver_authorized(d, r->req.token))
        return sbert_proto_error_set(err, SBERT_PROTO_EUNAUTHORIZED, -1,
                                     r->req.token ? "wrong token" : "this daemon requires a token");
    r->op = sbertd_op_find(r->req.op);
    if (!r->op)
        return sbert_proto_error_set(err, SBERT_PROTO_EUNKNOWN_OP, -1, "unknown op \"%.64s\"",
                                     r->req.op);
    r->op_index = r->op->index;
    rc = sbert_proto_op_check_members(r->op->proto, r->req.root, err);
    if (!rc) rc = sbertd_collection_check(d, r, err);
    if (rc) return rc;
    if (r->op->list) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(r->req.root, r->op->list);
        uint64_t max_batch = sbertd_limit(d, SBERTD_LIMIT_MAX_BATCH);
        if (cJSON_IsArray(l) && (uint64_t)cJSON_GetArraySize(l) > max_batch)
            return sbert_proto_error_set(
                err, SBERT_PROTO_ETOO_LARGE, -1, "\"%s\" has %d items, more than max_batch (%llu)",
                r->op->list, cJSON_GetArraySize(l), (unsigned long long)max_batch);
    }
    return r->op->prepare ? r->op->prepare(d, r, err) : 0;
}

/* Runs r's op with its collection resolved, and finishes r. */
static void run_resolved(struct sbertd *d, struct request *r)
{
    struct sbert_proto_error err = {0};
    if (r->op->is_write && sbertd_pipeline_answer_repeat(d, r)) return;
    cJSON *reply = sbert_proto_reply_new(r->req.req_id);
    if (!reply) {
        sbert_proto_error_set(&err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
        sbertd_finish(d, r, NULL, &err);
        return;
    }
    if (r->op->run(d, r, reply, &err)) {
        cJSON_Delete(reply);
        sbertd_finish(d, r, NULL, &err);
        return;
    }
    sbertd_finish(d, r, reply, NULL);
}

void sbertd_run_one(struct sbertd *d, struct request *r)
{
    /* resolved here, in the thread that runs the op (a worker, or the committer for a write),
     * and not at validation: a write queued behind a drop then finds its collection gone instead
     * of holding it open while the drop waits for it */
    struct sbert_proto_error err = {0};
    int held = sbertd_collection_enter(d, r, &err);
    if (held < 0) {
        sbertd_finish(d, r, NULL, &err);
        return;
    }
    run_resolved(d, r);
    if (held) sbertd_collection_leave(d);
}

struct worker_arg {
    struct sbertd *d;
    int index;
};

static void *worker_main(void *arg)
{
    struct worker_arg *wa = arg;
    struct sbertd *d = wa->d;
    int w = wa->index;
    free(wa);
    sbertd_server_bind_slot(w);
    struct request *r;
    while ((r = queue_pop(&d->work))) {
        atomic_store(&d->busy_since[w], sbertd_now_us());
        struct sbert_proto_error err = {0};
        r->op_index = -1;
        if (validate(d, r, &err)) {
            atomic_store(&d->busy_op[w], r->op_index);
            sbertd_finish(d, r, NULL, &err);
        } else if (r->op->is_write) {
            sbertd_pipeline_submit(d, r);
        } else {
            atomic_store(&d->busy_op[w], r->op_index);
            sbertd_run_one(d, r);
        }
        atomic_store(&d->busy_since[w], 0);
    }
    return NULL;
}

/* ---- start and stop -------------------------------------------------------------------------- */

/* Starts the workers; returns how many started (all of them, or fewer when it failed). */
static int start_workers(struct sbertd *d)
{
    for (int i = 0; i < d->n_workers; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa) return i;
        wa->d = d;
        wa->index = i;
        if (pthread_create(&d->workers[i], NULL, worker_main, wa)) {
            free(wa);
            return i;
        }
    }
    return d->n_workers;
}

/* Stops what runs after the socket was opened, in this order: the receiver (which answers
 * newcomers with shutting_down until every request in flight is done), the first `workers`
 * workers, the pipeline and the batcher when started; then closes the socket. Used by
 * sbertd_server_stop and by a start that failed half way, so that no thread is left serving a
 * request while the caller frees the model and the store. */
static void stop_threads(struct sbertd *d, int receiver, int workers, int pipeline, int batcher)
{
    atomic_store(&d->stopping, 1);
    if (receiver) pthread_join(d->receiver, NULL);
    queue_close(&d->work);
    for (int i = 0; i < workers; i++)
        pthread_join(d->workers[i], NULL);
    if (pipeline) sbertd_pipeline_stop(d);
    if (batcher) sbertd_batcher_stop(d);
    /* nanomsg sends asynchronously and 1.1.5 has no working NN_LINGER: give the last replies a
     * moment to leave before the socket is closed */
    if (receiver) usleep(200 * 1000);
    sbertd_receiver_close(d);
    queue_destroy(&d->work);
}

int sbertd_server_start(struct sbertd *d)
{
    queue_init(&d->work);
    d->n_workers = d->cfg.threads;
    d->workers = calloc((size_t)d->n_workers, sizeof *d->workers);
    d->busy_since = calloc((size_t)d->n_workers + 2, sizeof *d->busy_since);
    d->busy_op = calloc((size_t)d->n_workers + 2, sizeof *d->busy_op);
    if (sbertd_reply_init(d) || !d->workers || !d->busy_since || !d->busy_op) {
        sbertd_log(LOG_ERR, "out of memory");
        return -1;
    }
    if (sbertd_receiver_open(d)) return -1;
    atomic_store(&d->receiver_alive, 1);
    if (sbertd_batcher_start(d)) {
        sbertd_log(LOG_ERR, "cannot start threads");
        stop_threads(d, 0, 0, 0, 0);
        return -1;
    }
    if (sbertd_pipeline_start(d)) {
        sbertd_log(LOG_ERR, "cannot start threads");
        stop_threads(d, 0, 0, 0, 1);
        return -1;
    }
    int started = start_workers(d);
    if (started < d->n_workers) {
        sbertd_log(LOG_ERR, "cannot start worker threads");
        stop_threads(d, 0, started, 1, 1);
        return -1;
    }
    /* HTTP before the receiver: a daemon whose HTTP address is refused or taken must not have
     * answered anyone on its socket (a client would take it for a daemon that serves) */
    if (sbertd_http_start(d)) {
        /* the workers must stop before the caller frees the model and the store they use (a
         * request answered after the store was closed was a use after free, ASan in
         * daemon_http's refused-address start) */
        sbertd_http_stop(d);
        stop_threads(d, 0, d->n_workers, 1, 1);
        return -1;
    }
    if (pthread_create(&d->receiver, NULL, sbertd_receiver_main, d)) {
        sbertd_log(LOG_ERR, "cannot start the receiver thread");
        sbertd_http_stop(d);
        stop_threads(d, 0, d->n_workers, 1, 1);
        return -1;
    }
    return 0;
}

void sbertd_server_stop(struct sbertd *d)
{
    atomic_store(&d->stopping, 1);
    /* HTTP callers wait for their replies: the workers still run, and newcomers are refused */
    sbertd_http_stop(d);
    stop_threads(d, 1, d->n_workers, 1, 1);
    sbertd_reply_cache_free(d);
}

void sbertd_server_free(struct sbertd *d)
{
    sbertd_reply_stats_free(d);
    free(d->workers);
    free((void *)d->busy_since);
    free((void *)d->busy_op);
}

int sbertd_server_alive(void *ctx, char *why, size_t whylen)
{
    struct sbertd *d = ctx;
    if (!atomic_load(&d->receiver_alive) && !atomic_load(&d->stopping)) {
        snprintf(why, whylen, "the receiver thread has stopped");
        return 0;
    }
    uint64_t now = sbertd_now_us(), limit = d->cfg.watchdog_stall_sec * 1000000u;
    static const char *const stage[] = {"writer", "committer"};
    for (int i = 0; i <= d->n_workers + 1; i++) {
        uint64_t t = atomic_load(&d->busy_since[i]);
        if (t && now > t && now - t > limit) {
            int op = atomic_load(&d->busy_op[i]);
            snprintf(why, whylen, "%s %d busy for %llu s on op %s",
                     i >= d->n_workers ? stage[i - d->n_workers] : "worker", i,
                     (unsigned long long)((now - t) / 1000000u),
                     op >= 0 && (size_t)op < sbertd_n_ops ? sbertd_op_at((size_t)op)->name : "?");
            return 0;
        }
    }
    return 1;
}
