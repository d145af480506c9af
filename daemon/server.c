/* server.c — sbertd's sockets, threads and queues (see server.h for who does what). */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

uint64_t sbertd_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- queues ---------------------------------------------------------------------------------- */

static void queue_init(struct queue *q)
{
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
}

static void queue_destroy(struct queue *q)
{
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

static void queue_push(struct queue *q, struct request *r)
{
    pthread_mutex_lock(&q->mu);
    r->next = NULL;
    if (q->tail)
        q->tail->next = r;
    else
        q->head = r;
    q->tail = r;
    q->n++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* Takes the first request, waiting for one; NULL once the queue is closed and empty. */
static struct request *queue_pop(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->closed)
        pthread_cond_wait(&q->cv, &q->mu);
    struct request *r = q->head;
    if (r) {
        q->head = r->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
    }
    pthread_mutex_unlock(&q->mu);
    return r;
}

/* Takes the first request only if it runs op (without waiting). */
static struct request *queue_pop_if(struct queue *q, const struct op *op)
{
    pthread_mutex_lock(&q->mu);
    struct request *r = q->head;
    if (r && r->op == op) {
        q->head = r->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
    } else
        r = NULL;
    pthread_mutex_unlock(&q->mu);
    return r;
}

static void queue_close(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* ---- statistics ------------------------------------------------------------------------------ */

/* Buckets 5% apart from 1 us: bucket b holds latencies in [1.05^b, 1.05^(b+1)) us. */
static int lat_bucket(double us)
{
    if (us < 1)
        return 0;
    int b = (int)(log(us) / log(1.05));
    return b >= SBERTD_LAT_BUCKETS ? SBERTD_LAT_BUCKETS - 1 : b;
}

static void stats_record(struct sbertd *d, int op_index, uint64_t us, int failed)
{
    if (op_index < 0)
        return;
    pthread_mutex_lock(&d->stats_mu);
    struct op_stats *s = &d->stats[op_index];
    s->count++;
    s->errors += failed ? 1 : 0;
    double ms = (double)us / 1000.0;
    if (ms > s->max_ms)
        s->max_ms = ms;
    s->hist[lat_bucket((double)us)]++;
    pthread_mutex_unlock(&d->stats_mu);
}

/* ---- the req_id reply cache (writer thread only) --------------------------------------------- */

#define CACHE_SIZE 4096
#define CACHE_TTL_US (600ull * 1000000ull)

struct cache_entry {
    char *req_id;
    uint64_t hash;
    uint64_t t_us;
    char *reply; /* the serialised reply */
    size_t len;
};

struct reply_cache {
    struct cache_entry e[CACHE_SIZE];
    size_t next;
};

static struct cache_entry *cache_find(struct reply_cache *c, const char *req_id)
{
    uint64_t now = sbertd_now_us();
    for (size_t i = 0; i < CACHE_SIZE; i++) {
        struct cache_entry *e = &c->e[i];
        if (e->req_id && now - e->t_us < CACHE_TTL_US && strcmp(e->req_id, req_id) == 0)
            return e;
    }
    return NULL;
}

static void cache_put(struct reply_cache *c, const char *req_id, uint64_t hash, const char *reply,
                      size_t len)
{
    struct cache_entry *e = &c->e[c->next];
    c->next = (c->next + 1) % CACHE_SIZE;
    free(e->req_id);
    free(e->reply);
    e->req_id = strdup(req_id);
    e->reply = malloc(len + 1);
    if (!e->req_id || !e->reply) {
        free(e->req_id);
        free(e->reply);
        memset(e, 0, sizeof *e);
        return; /* a lost cache entry only costs idempotency for that req_id */
    }
    memcpy(e->reply, reply, len + 1);
    e->len = len;
    e->hash = hash;
    e->t_us = sbertd_now_us();
}

static void cache_free(struct reply_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < CACHE_SIZE; i++) {
        free(c->e[i].req_id);
        free(c->e[i].reply);
    }
    free(c);
}

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- replies --------------------------------------------------------------------------------- */

static void request_free(struct request *r)
{
    if (!r)
        return;
    if (r->prep_free)
        r->prep_free(r->prep);
    sbert_proto_request_clear(&r->req);
    free(r->req_id_copy);
    if (r->body)
        nn_freemsg(r->body);
    if (r->control)
        nn_freemsg(r->control);
    free(r);
}

static void send_raw(struct sbertd *d, struct request *r, const char *buf, size_t len)
{
    struct nn_iovec iov = {(void *)buf, len};
    struct nn_msghdr h;
    memset(&h, 0, sizeof h);
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = &r->control;
    h.msg_controllen = NN_MSG;
    if (nn_sendmsg(d->sock, &h, 0) >= 0)
        r->control = NULL; /* nanomsg took the header */
    else
        sbertd_log(LOG_WARNING, "reply to a %s request not sent: %s",
                   r->op ? r->op->name : "malformed", nn_strerror(nn_errno()));
}

/* The reply of last resort when even building the error reply fails. */
static const char oom_reply[] =
    "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";

static void finish_with_text(struct sbertd *d, struct request *r, const char *text, size_t len,
                             int failed, const char *code)
{
    send_raw(d, r, text, len);
    uint64_t us = sbertd_now_us() - r->t0_us;
    stats_record(d, r->op_index, us, failed);
    atomic_fetch_add(&d->total, 1);
    if (failed)
        atomic_fetch_add(&d->total_errors, 1);
    if (sbertd_log_enabled(LOG_DEBUG)) {
        char phases[200] = "";
        if (r->t_run_us) {
            /* a write that went through the pipeline: where its time went */
            uint64_t now = us + r->t0_us;
            snprintf(phases, sizeof phases,
                     " (parse %.1f, wait %.1f, stage %.1f, wait %.1f, run %.1f ms)",
                     (double)(r->t_valid_us - r->t0_us) / 1000.0,
                     (double)(r->t_stage_us - r->t_valid_us) / 1000.0,
                     (double)(r->t_staged_us - r->t_stage_us) / 1000.0,
                     (double)(r->t_run_us - r->t_staged_us) / 1000.0,
                     (double)(now - r->t_run_us) / 1000.0);
        }
        sbertd_log(LOG_DEBUG, "op %s%s%s: %s, %zu bytes in, %zu out, %.3f ms%s",
                   r->op ? r->op->name : "?", r->req.req_id ? " req_id " : "",
                   r->req.req_id ? r->req.req_id : "", failed ? code : "ok", r->len, len,
                   (double)us / 1000.0, phases);
    }
    atomic_fetch_sub(&d->in_flight, 1);
    atomic_fetch_sub(&d->inflight_bytes, r->len);
    request_free(r);
}

void sbertd_finish(struct sbertd *d, struct request *r, cJSON *reply,
                   const struct sbert_proto_error *err)
{
    const char *req_id = r->req.req_id ? r->req.req_id : r->req_id_copy;
    int failed = reply == NULL;
    cJSON *msg = reply ? reply : sbert_proto_reply_error(err, req_id);
    char *text = NULL;
    size_t len = 0;
    if (!msg || sbert_proto_print(msg, &text, &len)) {
        cJSON_Delete(msg);
        finish_with_text(d, r, oom_reply, sizeof oom_reply - 1, 1, "internal");
        return;
    }
    cJSON_Delete(msg);
    /* Reads estimate their size as they build it and refuse early (ops.c); this is the exact
     * bound. A write's reply is sent whatever its size: the write has committed. */
    uint64_t max_reply = atomic_load(&d->max_reply_bytes);
    if (!failed && r->op && !r->op->is_write && len > max_reply) {
        free(text);
        struct sbert_proto_error big;
        sbert_proto_error_set(&big, SBERT_PROTO_ETOO_LARGE, -1,
                              "the reply would be %zu bytes, more than max_reply_bytes (%llu)",
                              len, (unsigned long long)max_reply);
        sbertd_finish(d, r, NULL, &big);
        return;
    }
    if (!failed && r->op && r->op->is_write && r->req.req_id && d->cache)
        cache_put(d->cache, r->req.req_id, r->hash, text, len);
    finish_with_text(d, r, text, len, failed, failed ? sbert_proto_code_name(err->code) : "ok");
    free(text);
}

/* ---- shared batches -------------------------------------------------------------------------- */

static void batch_queue_init(struct batch_queue *q)
{
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    pthread_cond_init(&q->done_cv, NULL);
}

/* Queues j and waits until the batch thread has served it. */
static void batch_wait(struct batch_queue *q, struct batch_job *j)
{
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
    pthread_cond_signal(&q->cv);
    while (!j->done)
        pthread_cond_wait(&q->done_cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
}

/* The batch thread's next batch: every waiting job, in order, whose weights fit in max_weight
 * (at least one job). Blocks while none waits; NULL once the queue is stopped and empty. */
static struct batch_job *batch_take(struct batch_queue *q, size_t max_weight)
{
    pthread_mutex_lock(&q->mu);
    while (!q->head && !q->stop)
        pthread_cond_wait(&q->cv, &q->mu);
    struct batch_job *batch = q->head, *last = batch;
    if (batch) {
        size_t total = batch->weight;
        while (last->next && total + last->next->weight <= max_weight) {
            last = last->next;
            total += last->weight;
        }
        q->head = last->next;
        if (!q->head)
            q->tail = NULL;
        last->next = NULL;
    }
    pthread_mutex_unlock(&q->mu);
    return batch;
}

/* Hands every job of batch back to its waiter. */
static void batch_done(struct batch_queue *q, struct batch_job *batch)
{
    pthread_mutex_lock(&q->mu);
    while (batch) {
        struct batch_job *next = batch->next;
        batch->done = 1; /* the job belongs to its waiter from here on */
        batch = next;
    }
    pthread_cond_broadcast(&q->done_cv);
    pthread_mutex_unlock(&q->mu);
}

/* Makes batch_take() return NULL once the queue is empty. */
static void batch_queue_stop(struct batch_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

/* ---- shared encoding ------------------------------------------------------------------------- */

/* A read request's texts waiting for the encoder thread (weight: its n texts). */
struct enc_job {
    struct batch_job b;
    const char *const *texts;
    const size_t *lens;
    size_t n;
    float *out;
    int *truncated;
    int rc;
};

#define ENC_JOB(bj) ((struct enc_job *)(bj))

/* Requests with more texts than this encode in their own thread: they gain nothing from sharing
 * a batch and would delay the small ones. */
#define SHARED_MAX_TEXTS 32
/* The most texts the encoder thread puts in one sbert_encode() call. */
#define SHARED_BATCH_TEXTS 128

static int encode_direct(struct sbertd *d, const char *const *texts, const size_t *lens, size_t n,
                         float *out, int *truncated)
{
    struct sbert_encode_params p = sbert_encode_default_params();
    p.n_threads = d->cfg.encode_threads;
    size_t bad = 0;
    return sbert_encode(d->model, texts, lens, n, out, &p, truncated, &bad);
}

static void *encoder_main(void *arg)
{
    struct sbertd *d = arg;
    size_t dim = (size_t)d->info->dim;
    const char **texts = malloc(SHARED_BATCH_TEXTS * sizeof *texts);
    size_t *lens = malloc(SHARED_BATCH_TEXTS * sizeof *lens);
    int *trunc = malloc(SHARED_BATCH_TEXTS * sizeof *trunc);
    float *out = malloc(SHARED_BATCH_TEXTS * dim * sizeof *out);
    struct batch_job *batch;
    while ((batch = batch_take(&d->enc_q, SHARED_BATCH_TEXTS))) {
        size_t total = 0;
        for (struct batch_job *b = batch; b; b = b->next)
            total += b->weight;
        int rc = (texts && lens && trunc && out) ? 0 : SBERT_ENOMEM;
        if (!rc) {
            size_t at = 0;
            for (struct batch_job *b = batch; b; b = b->next) {
                struct enc_job *j = ENC_JOB(b);
                memcpy(texts + at, j->texts, j->n * sizeof *texts);
                memcpy(lens + at, j->lens, j->n * sizeof *lens);
                at += j->n;
            }
            uint64_t t0 = sbertd_now_us();
            rc = encode_direct(d, texts, lens, total, out, trunc);
            sbertd_log(LOG_DEBUG, "encode: %zu texts in one call, %.1f ms", total,
                       (double)(sbertd_now_us() - t0) / 1000.0);
        }
        size_t at = 0;
        for (struct batch_job *b = batch; b; b = b->next) {
            struct enc_job *j = ENC_JOB(b);
            /* one job's failure (it cannot be bad UTF-8: proto checked the message) fails the
             * batch; each job then encodes alone so only the guilty one sees the error */
            if (rc)
                j->rc = encode_direct(d, j->texts, j->lens, j->n, j->out, j->truncated);
            else {
                memcpy(j->out, out + at * dim, j->n * dim * sizeof *out);
                if (j->truncated)
                    memcpy(j->truncated, trunc + at, j->n * sizeof *trunc);
                j->rc = 0;
            }
            at += j->n;
        }
        batch_done(&d->enc_q, batch);
    }
    free(texts);
    free(lens);
    free(trunc);
    free(out);
    return NULL;
}

int sbertd_encode(struct sbertd *d, const char *const *texts, const size_t *lens, size_t n,
                  float *out, int *truncated, int shared, struct sbert_proto_error *err)
{
    int rc;
    sbertd_log(LOG_DEBUG, "encode: %zu texts", n);
    if (!shared || n > SHARED_MAX_TEXTS) {
        rc = encode_direct(d, texts, lens, n, out, truncated);
    } else {
        struct enc_job j = {.b.weight = n, .texts = texts, .lens = lens, .n = n, .out = out,
                            .truncated = truncated};
        batch_wait(&d->enc_q, &j.b);
        rc = j.rc;
    }
    if (rc == SBERT_EUTF8)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_UTF8, -1, "a text is not valid UTF-8");
    if (rc)
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "encoding failed: %s",
                                     sbert_strerror(rc));
    return 0;
}

/* ---- shared vector search -------------------------------------------------------------------- */

/* An unfiltered query waiting for the searcher thread (weight 1). */
struct search_job {
    struct batch_job b;
    const float *vector;
    const struct sbert_index_query_params *params;
    struct sbert_index_results *res;
    int rc;
};

#define SEARCH_JOB(bj) ((struct search_job *)(bj))

/* The most queries the searcher puts in one sbert_index_query_many() call. */
#define SHARED_SEARCH_QUERIES 64

static void *searcher_main(void *arg)
{
    struct sbertd *d = arg;
    size_t dim = (size_t)d->info->dim;
    float *vecs = malloc(SHARED_SEARCH_QUERIES * dim * sizeof *vecs);
    struct sbert_index_query_params *params = malloc(SHARED_SEARCH_QUERIES * sizeof *params);
    struct sbert_index_results **res = malloc(SHARED_SEARCH_QUERIES * sizeof *res);
    int *rcs = malloc(SHARED_SEARCH_QUERIES * sizeof *rcs);
    struct batch_job *batch;
    while ((batch = batch_take(&d->search_q, SHARED_SEARCH_QUERIES))) {
        if (vecs && params && res && rcs) {
            size_t n = 0;
            for (struct batch_job *b = batch; b; b = b->next, n++) {
                memcpy(vecs + n * dim, SEARCH_JOB(b)->vector, dim * sizeof *vecs);
                params[n] = *SEARCH_JOB(b)->params;
            }
            uint64_t t0 = sbertd_now_us();
            sbert_index_query_many(d->index, vecs, n, params, res, rcs);
            sbertd_log(LOG_DEBUG, "search: %zu queries in one call, %.1f ms", n,
                       (double)(sbertd_now_us() - t0) / 1000.0);
            n = 0;
            for (struct batch_job *b = batch; b; b = b->next, n++) {
                SEARCH_JOB(b)->res = res[n];
                SEARCH_JOB(b)->rc = rcs[n];
            }
        } else {
            for (struct batch_job *b = batch; b; b = b->next) {
                struct search_job *j = SEARCH_JOB(b);
                j->rc = sbert_index_query(d->index, j->vector, j->params, &j->res);
            }
        }
        batch_done(&d->search_q, batch);
    }
    free(vecs);
    free(params);
    free(res);
    free(rcs);
    return NULL;
}

int sbertd_query(struct sbertd *d, const float *vector,
                 const struct sbert_index_query_params *params, struct sbert_index_results **out)
{
    /* A filtered query is searched on its own anyway (sbert_index_query_many), and a selective
     * filter can make that slow: it runs here rather than delay the shared batch. */
    if (params->filter)
        return sbert_index_query(d->index, vector, params, out);
    struct search_job j = {.b.weight = 1, .vector = vector, .params = params};
    batch_wait(&d->search_q, &j.b);
    *out = j.res;
    return j.rc;
}

/* ---- index errors ---------------------------------------------------------------------------- */

static const struct {
    int index_rc;
    int proto_code;
} index_errors[] = {
    {SBERT_INDEX_ENOMEM, SBERT_PROTO_EINTERNAL},     {SBERT_INDEX_EINVAL, SBERT_PROTO_EBAD_REQUEST},
    {SBERT_INDEX_EIO, SBERT_PROTO_EIO_ERROR},        {SBERT_INDEX_ENOSPC, SBERT_PROTO_ENO_SPACE},
    {SBERT_INDEX_EMODEL, SBERT_PROTO_EINTERNAL},     {SBERT_INDEX_EFORMAT, SBERT_PROTO_EIO_ERROR},
    {SBERT_INDEX_ENOTFOUND, SBERT_PROTO_EBAD_ID},    {SBERT_INDEX_EFILTER, SBERT_PROTO_EBAD_FILTER},
    {SBERT_INDEX_EID, SBERT_PROTO_EBAD_ID},          {SBERT_INDEX_EMETADATA, SBERT_PROTO_EBAD_METADATA},
    {SBERT_INDEX_EVINDEX, SBERT_PROTO_EINTERNAL},    {SBERT_INDEX_ELOCKED, SBERT_PROTO_EIO_ERROR},
    {SBERT_INDEX_ECALLBACK, SBERT_PROTO_EINTERNAL},  {SBERT_INDEX_EEXIST, SBERT_PROTO_EEXISTS},
    {SBERT_INDEX_ESPEC, SBERT_PROTO_EBAD_REQUEST},   {SBERT_INDEX_ETEXT, SBERT_PROTO_EBAD_UTF8},
};

int sbertd_index_error(int rc, const char *msg, long index, struct sbert_proto_error *err)
{
    int code = SBERT_PROTO_EINTERNAL;
    for (size_t i = 0; i < sizeof index_errors / sizeof index_errors[0]; i++)
        if (index_errors[i].index_rc == rc)
            code = index_errors[i].proto_code;
    return sbert_proto_error_set(err, code, index, "%s%s%s", sbert_index_strerror(rc),
                                 msg && *msg ? ": " : "", msg ? msg : "");
}

/* ---- dispatch -------------------------------------------------------------------------------- */

/* Compares without an early exit, so the time taken does not tell how much of a guess was right. */
static int token_equal(const char *given, const char *want)
{
    size_t lg = strlen(given), lw = strlen(want);
    unsigned char diff = (unsigned char)(lg != lw);
    for (size_t i = 0; i < lw; i++)
        diff |= (unsigned char)(want[i] ^ (i < lg ? given[i] : 0));
    return diff == 0;
}

static int validate(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    int rc = sbert_proto_request_parse(r->body, r->len, &r->req, &r->req_id_copy, err);
    if (rc)
        return rc;
    if (d->cfg.auth_token[0] && (!r->req.token || !token_equal(r->req.token, d->cfg.auth_token)))
        return sbert_proto_error_set(err, SBERT_PROTO_EUNAUTHORIZED, -1,
                                     r->req.token ? "wrong token" : "this daemon requires a token");
    for (size_t i = 0; i < sbertd_n_ops; i++)
        if (strcmp(sbertd_ops[i].name, r->req.op) == 0) {
            r->op = &sbertd_ops[i];
            r->op_index = (int)i;
        }
    if (!r->op)
        return sbert_proto_error_set(err, SBERT_PROTO_EUNKNOWN_OP, -1, "unknown op \"%.64s\"",
                                     r->req.op);
    rc = sbert_proto_check_members(r->req.root, r->op->members, 1, err);
    if (rc)
        return rc;
    if (r->op->list) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(r->req.root, r->op->list);
        if (cJSON_IsArray(l) && (uint64_t)cJSON_GetArraySize(l) > atomic_load(&d->max_batch))
            return sbert_proto_error_set(err, SBERT_PROTO_ETOO_LARGE, -1,
                                         "\"%s\" has %d items, more than max_batch (%llu)",
                                         r->op->list, cJSON_GetArraySize(l),
                                         (unsigned long long)atomic_load(&d->max_batch));
    }
    return r->op->prepare ? r->op->prepare(d, r, err) : 0;
}

static void run_one(struct sbertd *d, struct request *r)
{
    struct sbert_proto_error err = {0};
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

struct worker_arg {
    struct sbertd *d;
    int index;
};

/* The calling thread's slot in busy_since (workers, then writer, then committer); -1 elsewhere. */
static _Thread_local int busy_slot = -1;

void sbertd_server_progress(struct sbertd *d)
{
    if (busy_slot >= 0)
        atomic_store(&d->busy_since[busy_slot], sbertd_now_us());
}

static void *worker_main(void *arg)
{
    struct worker_arg *wa = arg;
    struct sbertd *d = wa->d;
    int w = wa->index;
    free(wa);
    busy_slot = w;
    struct request *r;
    while ((r = queue_pop(&d->work))) {
        atomic_store(&d->busy_since[w], sbertd_now_us());
        struct sbert_proto_error err = {0};
        r->op_index = -1;
        if (validate(d, r, &err)) {
            atomic_store(&d->busy_op[w], r->op_index);
            sbertd_finish(d, r, NULL, &err);
        } else if (r->op->is_write) {
            r->t_valid_us = sbertd_now_us();
            queue_push(&d->writes, r);
        } else {
            atomic_store(&d->busy_op[w], r->op_index);
            run_one(d, r);
        }
        atomic_store(&d->busy_since[w], 0);
    }
    return NULL;
}

/* Answers a repeated write from the cache, or else from the replies the store remembers (add and
 * delete, written with their batch: these survive a crash); returns 1 when r was finished here. */
static int answer_repeat(struct sbertd *d, struct request *r)
{
    if (!r->req.req_id)
        return 0;
    struct cache_entry *e = cache_find(d->cache, r->req.req_id);
    uint64_t hash = 0;
    char *stored = NULL;
    size_t len = 0;
    const char *where = "the reply cache";
    if (e) {
        hash = e->hash;
    } else {
        int rc = sbert_index_req_find(d->index, r->req.req_id, strlen(r->req.req_id), &hash,
                                      &stored, &len);
        if (rc == SBERT_INDEX_ENOTFOUND)
            return 0;
        if (rc) {
            /* without the lookup a retry could execute twice: refuse rather than guess */
            struct sbert_proto_error err;
            sbert_proto_error_set(&err, SBERT_PROTO_EINTERNAL, -1,
                                  "req_id lookup in the store failed: %s",
                                  sbert_index_strerror(rc));
            sbertd_finish(d, r, NULL, &err);
            return 1;
        }
        where = "the store's remembered replies";
    }
    if (hash != r->hash) {
        struct sbert_proto_error err;
        sbert_proto_error_set(&err, SBERT_PROTO_EREQ_ID_REUSED, -1,
                              "req_id \"%.64s\" was used by a different request in the last "
                              "%d %s",
                              r->req.req_id, e ? 10 : SBERT_INDEX_REQ_KEEP_SECONDS / 3600,
                              e ? "minutes" : "hours");
        free(stored);
        sbertd_finish(d, r, NULL, &err);
        return 1;
    }
    sbertd_log(LOG_INFO, "repeated %s req_id %s answered from %s", r->op->name, r->req.req_id,
               where);
    if (e)
        finish_with_text(d, r, e->reply, e->len, 0, "ok");
    else
        finish_with_text(d, r, stored, len, 0, "ok");
    free(stored);
    return 1;
}

/* The most consecutive queued writes of one op that the writer stages together. */
#define STAGE_GROUP_MAX 64

/* The write pipeline's first stage (server.h): stages consecutive queued requests of an op with a
 * stage_group (one encode for several adds) and hands every write on to the committer in the
 * order it came. It holds no lock while it works. */
static void *writer_main(void *arg)
{
    struct sbertd *d = arg;
    int w = d->n_workers;
    busy_slot = w;
    struct request *r;
    while ((r = queue_pop(&d->writes))) {
        uint64_t t = sbertd_now_us();
        atomic_store(&d->busy_since[w], t);
        atomic_store(&d->busy_op[w], r->op_index);
        struct request *group[STAGE_GROUP_MAX];
        size_t n = 0;
        group[n++] = r;
        if (r->op->stage_group) {
            struct request *next;
            while (n < STAGE_GROUP_MAX && (next = queue_pop_if(&d->writes, r->op)))
                group[n++] = next;
            for (size_t i = 0; i < n; i++)
                group[i]->t_stage_us = t;
            r->op->stage_group(d, group, n);
        } else {
            r->t_stage_us = t;
        }
        t = sbertd_now_us();
        for (size_t i = 0; i < n; i++) {
            group[i]->t_staged_us = t;
            queue_push(&d->commits, group[i]);
        }
        atomic_store(&d->busy_since[w], 0);
    }
    queue_close(&d->commits);
    return NULL;
}

/* The second stage: runs the writes one at a time, in arrival order, each answered after its
 * commit. A repeated req_id is looked up only here, so a re-sent write that arrives while its
 * first copy is still in the pipeline finds that copy's reply. */
static void *committer_main(void *arg)
{
    struct sbertd *d = arg;
    int w = d->n_workers + 1;
    busy_slot = w;
    struct request *r;
    while ((r = queue_pop(&d->commits))) {
        r->t_run_us = sbertd_now_us();
        atomic_store(&d->busy_since[w], r->t_run_us);
        atomic_store(&d->busy_op[w], r->op_index);
        if (!answer_repeat(d, r))
            run_one(d, r);
        atomic_store(&d->busy_since[w], 0);
    }
    return NULL;
}

/* ---- receiving ------------------------------------------------------------------------------- */

static void refuse(struct sbertd *d, struct request *r, int code, const char *msg)
{
    struct sbert_proto_error err;
    sbert_proto_error_set(&err, code, -1, "%s", msg);
    r->op_index = -1;
    sbertd_finish(d, r, NULL, &err);
}

static void *receiver_main(void *arg)
{
    struct sbertd *d = arg;
    for (;;) {
        void *body = NULL, *control = NULL;
        struct nn_iovec iov = {&body, NN_MSG};
        struct nn_msghdr h;
        memset(&h, 0, sizeof h);
        h.msg_iov = &iov;
        h.msg_iovlen = 1;
        h.msg_control = &control;
        h.msg_controllen = NN_MSG;
        int rc = nn_recvmsg(d->sock, &h, 0);
        if (rc < 0) {
            int e = nn_errno();
            if (e == ETIMEDOUT || e == EAGAIN || e == EINTR) {
                if (atomic_load(&d->stopping) && atomic_load(&d->in_flight) == 0)
                    break;
                continue;
            }
            if (e == EBADF || e == ETERM)
                break;
            sbertd_log(LOG_ERR, "receive failed: %s", nn_strerror(e));
            continue;
        }
        struct request *r = calloc(1, sizeof *r);
        if (!r) {
            nn_freemsg(body);
            if (control)
                nn_freemsg(control);
            sbertd_log(LOG_ERR, "out of memory: a request was dropped");
            continue;
        }
        r->body = body;
        r->len = (size_t)rc;
        r->control = control;
        r->t0_us = sbertd_now_us();
        r->op_index = -1;
        r->hash = fnv1a(body, r->len);
        uint64_t inflight = atomic_fetch_add(&d->in_flight, 1);
        uint64_t bytes = atomic_fetch_add(&d->inflight_bytes, r->len) + r->len;
        char msg[160];
        if (atomic_load(&d->stopping)) {
            refuse(d, r, SBERT_PROTO_ESHUTTING_DOWN, "the daemon is shutting down");
        } else if (r->len > atomic_load(&d->max_message_size)) {
            snprintf(msg, sizeof msg, "the message has %zu bytes, more than max_message_size (%llu)",
                     r->len, (unsigned long long)atomic_load(&d->max_message_size));
            refuse(d, r, SBERT_PROTO_ETOO_LARGE, msg);
        } else if (inflight >= atomic_load(&d->max_concurrent)) {
            snprintf(msg, sizeof msg, "%llu requests are in progress (max_concurrent); retry later",
                     (unsigned long long)inflight);
            refuse(d, r, SBERT_PROTO_EBUSY, msg);
        } else if (inflight > 0 && bytes > atomic_load(&d->max_inflight_bytes)) {
            /* parsed requests take a few times their size: this bounds the daemon's memory
             * under a flood of large ones (one request is always let through) */
            snprintf(msg, sizeof msg, "%llu bytes of requests are in progress "
                     "(max_inflight_bytes); retry later", (unsigned long long)(bytes - r->len));
            refuse(d, r, SBERT_PROTO_EBUSY, msg);
        }
        else
            queue_push(&d->work, r);
    }
    atomic_store(&d->receiver_alive, 0);
    return NULL;
}

/* ---- start and stop -------------------------------------------------------------------------- */

static int bind_all(struct sbertd *d)
{
    for (int i = 0; i < d->cfg.n_listen; i++) {
        const char *url = d->cfg.listen[i];
        int ipc = strncmp(url, "ipc://", 6) == 0;
        /* the socket file is created by bind: create it 0660 rather than chmod a window later */
        mode_t old = ipc ? umask(0117) : 0;
        d->eps[i] = nn_bind(d->sock, url);
        int e = nn_errno();
        if (ipc)
            umask(old);
        if (d->eps[i] < 0) {
            sbertd_log(LOG_ERR, "cannot listen on %s: %s", url, nn_strerror(e));
            return -1;
        }
        if (ipc && chmod(url + 6, 0660) != 0) {
            sbertd_log(LOG_ERR, "cannot set mode 0660 on %s: %s", url + 6, strerror(errno));
            return -1;
        }
        sbertd_log(LOG_INFO, "listening on %s", url);
    }
    return 0;
}

int sbertd_server_start(struct sbertd *d)
{
    queue_init(&d->work);
    queue_init(&d->writes);
    queue_init(&d->commits);
    batch_queue_init(&d->enc_q);
    batch_queue_init(&d->search_q);
    pthread_mutex_init(&d->stats_mu, NULL);
    d->stats = calloc(sbertd_n_ops, sizeof *d->stats);
    d->cache = calloc(1, sizeof *d->cache);
    d->n_workers = d->cfg.threads;
    d->workers = calloc((size_t)d->n_workers, sizeof *d->workers);
    d->busy_since = calloc((size_t)d->n_workers + 2, sizeof *d->busy_since);
    d->busy_op = calloc((size_t)d->n_workers + 2, sizeof *d->busy_op);
    if (!d->stats || !d->cache || !d->workers || !d->busy_since || !d->busy_op) {
        sbertd_log(LOG_ERR, "out of memory");
        return -1;
    }
    d->sock = nn_socket(AF_SP_RAW, NN_REP);
    if (d->sock < 0) {
        sbertd_log(LOG_ERR, "nn_socket: %s", nn_strerror(nn_errno()));
        return -1;
    }
    /* nanomsg drops a message above NN_RCVMAXSIZE without a word (default 1 MiB): accept up to
     * twice max_message_size so that the band in between gets a too_large reply */
    uint64_t lim = 2 * d->cfg.max_message_size;
    int rcvmax = lim > INT_MAX ? INT_MAX : (int)lim;
    int rcvtimeo = 200;  /* the receiver wakes to notice a shutdown */
    int sndtimeo = 5000; /* a client that stops reading must not hold a worker forever */
    int ipv4only = 0;    /* nanomsg's default (1) cannot bind tcp://[::1], a loopback address */
    if (nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &rcvmax, sizeof rcvmax) ||
        nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_IPV4ONLY, &ipv4only, sizeof ipv4only) ||
        nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo) ||
        nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &sndtimeo, sizeof sndtimeo)) {
        sbertd_log(LOG_ERR, "nn_setsockopt: %s", nn_strerror(nn_errno()));
        return -1;
    }
    if (bind_all(d))
        return -1;
    atomic_store(&d->receiver_alive, 1);
    if (pthread_create(&d->encoder, NULL, encoder_main, d) ||
        pthread_create(&d->searcher, NULL, searcher_main, d) ||
        pthread_create(&d->committer, NULL, committer_main, d) ||
        pthread_create(&d->writer, NULL, writer_main, d)) {
        sbertd_log(LOG_ERR, "cannot start threads");
        return -1;
    }
    for (int i = 0; i < d->n_workers; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa || pthread_create(&d->workers[i], NULL, worker_main, wa ? (wa->d = d, wa->index = i, wa) : NULL)) {
            sbertd_log(LOG_ERR, "cannot start worker threads");
            return -1;
        }
    }
    if (pthread_create(&d->receiver, NULL, receiver_main, d)) {
        sbertd_log(LOG_ERR, "cannot start the receiver thread");
        return -1;
    }
    return 0;
}

void sbertd_server_stop(struct sbertd *d)
{
    atomic_store(&d->stopping, 1);
    /* the receiver answers newcomers with shutting_down until every request in flight is done */
    pthread_join(d->receiver, NULL);
    queue_close(&d->work);
    for (int i = 0; i < d->n_workers; i++)
        pthread_join(d->workers[i], NULL);
    queue_close(&d->writes);
    pthread_join(d->writer, NULL); /* it closes commits when it has handed on its last write */
    pthread_join(d->committer, NULL);
    batch_queue_stop(&d->enc_q);
    pthread_join(d->encoder, NULL);
    batch_queue_stop(&d->search_q);
    pthread_join(d->searcher, NULL);
    /* nanomsg sends asynchronously and 1.1.5 has no working NN_LINGER: give the last replies a
     * moment to leave before the socket is closed */
    usleep(200 * 1000);
    for (int i = 0; i < d->cfg.n_listen; i++)
        if (d->eps[i] >= 0 && strncmp(d->cfg.listen[i], "ipc://", 6) == 0)
            unlink(d->cfg.listen[i] + 6);
    nn_close(d->sock);
    queue_destroy(&d->work);
    queue_destroy(&d->writes);
    queue_destroy(&d->commits);
    cache_free(d->cache);
    d->cache = NULL;
}

void sbertd_server_free(struct sbertd *d)
{
    free(d->stats);
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
                     op >= 0 && (size_t)op < sbertd_n_ops ? sbertd_ops[op].name : "?");
            return 0;
        }
    }
    return 1;
}
