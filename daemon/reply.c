/* reply.c — how every request ends: its reply sent, its latency counted, and a write's reply
 * kept under its req_id for a retry (server.h). */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- statistics ------------------------------------------------------------------------------ */

#define LAT_BUCKETS 480

struct op_stats {
    uint64_t count, errors;
    double max_ms;
    uint32_t hist[LAT_BUCKETS];
};

/* Buckets 5% apart from 1 us: bucket b holds latencies in [1.05^b, 1.05^(b+1)) us. */
static int lat_bucket(double us)
{
    if (us < 1) return 0;
    int b = (int)(log(us) / log(1.05));
    return b >= LAT_BUCKETS ? LAT_BUCKETS - 1 : b;
}

static void stats_record(struct sbertd *d, int op_index, uint64_t us, int failed)
{
    if (op_index < 0) return;
    pthread_mutex_lock(&d->stats_mu);
    struct op_stats *s = &d->stats[op_index];
    s->count++;
    s->errors += failed ? 1 : 0;
    double ms = (double)us / 1000.0;
    if (ms > s->max_ms) s->max_ms = ms;
    s->hist[lat_bucket((double)us)]++;
    pthread_mutex_unlock(&d->stats_mu);
}

static double percentile_ms(const struct op_stats *s, double p)
{
    if (s->count == 0) return 0;
    uint64_t want = (uint64_t)ceil(p * (double)s->count), cum = 0;
    for (int b = 0; b < LAT_BUCKETS; b++) {
        cum += s->hist[b];
        if (cum >= want && cum > 0) {
            double us = pow(1.05, b + 0.5);
            double ms = us / 1000.0;
            return ms > s->max_ms ? s->max_ms : ms;
        }
    }
    return s->max_ms;
}

int sbertd_op_stats_each(struct sbertd *d,
                         int (*fn)(void *user, const char *op, const struct sbertd_op_figures *f),
                         void *user)
{
    int rc = 0;
    pthread_mutex_lock(&d->stats_mu);
    for (size_t i = 0; i < sbertd_n_ops && !rc; i++) {
        const struct op_stats *s = &d->stats[i];
        if (s->count == 0) continue;
        struct sbertd_op_figures f = {s->count,
                                      s->errors,
                                      percentile_ms(s, 0.50),
                                      percentile_ms(s, 0.90),
                                      percentile_ms(s, 0.99),
                                      s->max_ms};
        rc = fn(user, sbertd_op_at(i)->name, &f);
    }
    pthread_mutex_unlock(&d->stats_mu);
    return rc;
}

/* ---- the req_id reply cache (committer only) ------------------------------------------------- */

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

int sbertd_cache_find(struct sbertd *d, const char *req_id, uint64_t *hash, const char **reply,
                      size_t *len)
{
    uint64_t now = sbertd_now_us();
    for (size_t i = 0; i < CACHE_SIZE; i++) {
        const struct cache_entry *e = &d->cache->e[i];
        if (e->req_id && now - e->t_us < CACHE_TTL_US && strcmp(e->req_id, req_id) == 0) {
            *hash = e->hash;
            *reply = e->reply;
            *len = e->len;
            return 1;
        }
    }
    return 0;
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

/* ---- life ------------------------------------------------------------------------------------ */

int sbertd_reply_init(struct sbertd *d)
{
    pthread_mutex_init(&d->stats_mu, NULL);
    d->stats = calloc(sbertd_n_ops, sizeof *d->stats);
    d->cache = calloc(1, sizeof *d->cache);
    return d->stats && d->cache ? 0 : -1;
}

void sbertd_reply_cache_free(struct sbertd *d)
{
    struct reply_cache *c = d->cache;
    d->cache = NULL;
    if (!c) return;
    for (size_t i = 0; i < CACHE_SIZE; i++) {
        free(c->e[i].req_id);
        free(c->e[i].reply);
    }
    free(c);
}

void sbertd_reply_stats_free(struct sbertd *d)
{
    free(d->stats);
    d->stats = NULL;
}

/* ---- replies --------------------------------------------------------------------------------- */

/* The reply of last resort when even building the error reply fails. */
static const char oom_reply[] =
    "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";

/* The debug log's line for a finished request: where a pipelined write's time went. */
static void log_finished(const struct request *r, size_t len, uint64_t us, int failed,
                         const char *code)
{
    char phases[200] = "";
    if (r->t_run_us) {
        /* a write that went through the pipeline: where its time went */
        uint64_t now = us + r->t0_us;
        snprintf(
            phases, sizeof phases, " (parse %.1f, wait %.1f, stage %.1f, wait %.1f, run %.1f ms)",
            (double)(r->t_valid_us - r->t0_us) / 1000.0,
            (double)(r->t_stage_us - r->t_valid_us) / 1000.0,
            (double)(r->t_staged_us - r->t_stage_us) / 1000.0,
            (double)(r->t_run_us - r->t_staged_us) / 1000.0, (double)(now - r->t_run_us) / 1000.0);
    }
    sbertd_log(LOG_DEBUG, "op %s%s%s: %s, %zu bytes in, %zu out, %.3f ms%s",
               r->op ? r->op->name : "?", r->req.req_id ? " req_id " : "",
               r->req.req_id ? r->req.req_id : "", failed ? code : "ok", r->len, len,
               (double)us / 1000.0, phases);
}

void sbertd_finish_text(struct sbertd *d, struct request *r, const char *text, size_t len,
                        int failed, const char *code)
{
    sbertd_receiver_send(d, r, text, len);
    uint64_t us = sbertd_now_us() - r->t0_us;
    stats_record(d, r->op_index, us, failed);
    atomic_fetch_add(&d->total, 1);
    if (failed) atomic_fetch_add(&d->total_errors, 1);
    if (sbertd_log_enabled(LOG_DEBUG)) log_finished(r, len, us, failed, code);
    atomic_fetch_sub(&d->in_flight, 1);
    atomic_fetch_sub(&d->inflight_bytes, r->len);
    sbertd_request_free(r);
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
        sbertd_finish_text(d, r, oom_reply, sizeof oom_reply - 1, 1, "internal");
        return;
    }
    cJSON_Delete(msg);
    /* Reads estimate their size as they build it and refuse early (ops_common.c); this is the
     * exact bound. A write's reply is sent whatever its size: the write has committed. */
    uint64_t max_reply = sbertd_limit(d, SBERTD_LIMIT_MAX_REPLY_BYTES);
    if (!failed && r->op && !r->op->is_write && len > max_reply) {
        free(text);
        struct sbert_proto_error big;
        sbert_proto_error_set(&big, SBERT_PROTO_ETOO_LARGE, -1,
                              "the reply would be %zu bytes, more than max_reply_bytes (%llu)", len,
                              (unsigned long long)max_reply);
        sbertd_finish(d, r, NULL, &big);
        return;
    }
    if (!failed && r->op && r->op->is_write && r->req.req_id && d->cache)
        cache_put(d->cache, r->req.req_id, r->hash, text, len);
    sbertd_finish_text(d, r, text, len, failed, failed ? sbert_proto_code_name(err->code) : "ok");
    free(text);
}
