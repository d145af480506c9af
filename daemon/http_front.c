/*
 * http_front.c — the HTTP API (http/'s sbert_http, PROTOCOL.md section 6) on sbertd's own request
 * path, and the Prometheus metrics it and the textfile writer serve (server.h).
 *
 * An HTTP request becomes a struct request like a nanomsg message: admitted by the same rules
 * (shutting down, too large, max_concurrent, max_inflight_bytes), parsed, run and counted by the
 * same threads. Its reply is handed back to the HTTP thread that waits for it instead of being
 * sent on the REP socket. /metrics is the stats op, run the same way and written in Prometheus's
 * text format (version 0.0.4).
 */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"
#include "sbert_http.h"

#include <errno.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct http_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    char *reply; /* malloc'd; NULL when out of memory */
    size_t len;
};

void sbertd_http_deliver(struct request *r, const char *buf, size_t len)
{
    struct http_wait *w = r->http;
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, buf, len);
        copy[len] = '\0';
    }
    pthread_mutex_lock(&w->mu);
    w->reply = copy;
    w->len = copy ? len : 0;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* One protocol request through the server; blocks until its reply. Returns 0 with *reply
 * malloc'd, or -1 (out of memory). */
static int run_request(struct sbertd *d, const char *json, size_t len, char **reply,
                       size_t *reply_len)
{
    struct http_wait w = {.done = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    struct request *r = calloc(1, sizeof *r);
    char *body = malloc(len ? len : 1);
    if (!r || !body) {
        free(r);
        free(body);
        return -1;
    }
    memcpy(body, json, len);
    r->body = body;
    r->len = len;
    r->http = &w;
    sbertd_receiver_admit(d, r); /* r belongs to the server now: it frees it after the reply */
    pthread_mutex_lock(&w.mu);
    while (!w.done)
        pthread_cond_wait(&w.cv, &w.mu);
    pthread_mutex_unlock(&w.mu);
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    if (!w.reply) return -1;
    *reply = w.reply;
    *reply_len = w.len;
    return 0;
}

static int http_handle(const char *json, size_t len, char **reply, size_t *reply_len, void *user)
{
    return run_request(user, json, len, reply, reply_len);
}

/* ---- metrics ------------------------------------------------------------------------------- */

struct text {
    char *p;
    size_t n, cap;
    int oom;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct text *t, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !t->oom; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) {
            t->oom = 1;
            return;
        }
        if (t->p && t->n + (size_t)w < t->cap) {
            t->n += (size_t)w;
            return;
        }
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->n + (size_t)w + 1)
            cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->oom = 1;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

static double num(const cJSON *o, const char *path)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%s", path);
    const cJSON *j = o;
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && j; k = strtok_r(NULL, ".", &save))
        j = cJSON_GetObjectItemCaseSensitive(j, k);
    return cJSON_IsNumber(j) ? j->valuedouble : 0.0;
}

static void gauge(struct text *t, const char *name, const char *help, double v)
{
    put(t, "# HELP %s %s\n# TYPE %s gauge\n%s %.17g\n", name, help, name, name, v);
}

static void counter(struct text *t, const char *name, const char *help, double v)
{
    put(t, "# HELP %s %s\n# TYPE %s counter\n%s %.17g\n", name, help, name, name, v);
}

/* The stats reply as Prometheus text. */
static void render(struct text *t, const cJSON *st)
{
    gauge(t, "sbertd_up", "1 while sbertd answers", 1);
    gauge(t, "sbertd_uptime_seconds", "seconds since start", num(st, "uptime_s"));
    put(t,
        "# HELP sbertd_documents documents stored, per collection\n"
        "# TYPE sbertd_documents gauge\nsbertd_documents{collection=\"default\"} %.17g\n",
        num(st, "documents"));
    gauge(t, "sbertd_index_vectors", "live entries of the vector index", num(st, "index.count"));
    double snap = num(st, "index.snapshot_time");
    gauge(t, "sbertd_index_snapshot_age_seconds",
          "seconds since the vector index was last snapshotted (0: never)",
          snap > 0 ? difftime(time(NULL), (time_t)snap) : 0);
    gauge(t, "sbertd_lmdb_map_size_bytes", "size of the LMDB map", num(st, "memory.map_size"));
    gauge(t, "sbertd_lmdb_map_used_bytes", "bytes of the LMDB map in use",
          num(st, "memory.map_used"));
    gauge(t, "sbertd_index_bytes", "memory of the vector index", num(st, "memory.index_bytes"));
    gauge(t, "sbertd_keyword_index_bytes", "size of the keyword index in the store (0: off)",
          num(st, "keyword.bytes"));
    gauge(t, "sbertd_resident_memory_bytes", "resident set size of sbertd",
          num(st, "memory.rss_bytes"));
    gauge(t, "sbertd_requests_in_progress", "requests received and not yet answered",
          num(st, "requests.in_progress"));
    /* counters: rate(tokens) / rate(seconds) is the encoder's tokens/s while it works */
    counter(t, "sbertd_encode_texts_total", "texts encoded", num(st, "encoder.texts"));
    counter(t, "sbertd_encode_tokens_total", "tokens encoded ([CLS] and [SEP] included)",
            num(st, "encoder.tokens"));
    counter(t, "sbertd_encode_seconds_total", "seconds the encoder spent encoding",
            num(st, "encoder.seconds"));
    /* rate(hits) / (rate(hits) + rate(misses)) is the cache's hit ratio */
    counter(t, "sbertd_embedding_cache_hits_total",
            "documents' texts whose vector came from the embedding cache",
            num(st, "embedding_cache.hits"));
    counter(t, "sbertd_embedding_cache_misses_total",
            "documents' texts the embedding cache did not have (encoded)",
            num(st, "embedding_cache.misses"));
    counter(t, "sbertd_embedding_cache_evictions_total",
            "entries evicted from the embedding cache to keep it under embedding_cache_mb",
            num(st, "embedding_cache.evictions"));
    gauge(t, "sbertd_embedding_cache_bytes", "bytes of the embedding cache's entries",
          num(st, "embedding_cache.bytes"));
    const cJSON *ops = cJSON_GetObjectItemCaseSensitive(st, "ops"), *op;
    put(t, "# HELP sbertd_requests_total requests answered, per op\n"
           "# TYPE sbertd_requests_total counter\n");
    cJSON_ArrayForEach(op, ops)
        put(t, "sbertd_requests_total{op=\"%s\"} %.17g\n", op->string, num(op, "count"));
    put(t, "# HELP sbertd_request_errors_total error replies, per op\n"
           "# TYPE sbertd_request_errors_total counter\n");
    cJSON_ArrayForEach(op, ops)
        put(t, "sbertd_request_errors_total{op=\"%s\"} %.17g\n", op->string, num(op, "errors"));
    /* the daemon keeps a log-scale histogram per op and reports quantiles of it: a summary */
    put(t, "# HELP sbertd_request_duration_seconds time from receipt to reply, per op\n"
           "# TYPE sbertd_request_duration_seconds summary\n");
    cJSON_ArrayForEach(op, ops)
    {
        static const char *const q[][2] = {
            {"0.5", "p50_ms"}, {"0.9", "p90_ms"}, {"0.99", "p99_ms"}};
        for (int i = 0; i < 3; i++)
            put(t, "sbertd_request_duration_seconds{op=\"%s\",quantile=\"%s\"} %.9g\n", op->string,
                q[i][0], num(op, q[i][1]) / 1000.0);
        put(t, "sbertd_request_duration_seconds_count{op=\"%s\"} %.17g\n", op->string,
            num(op, "count"));
    }
    put(t, "# HELP sbertd_request_duration_max_seconds slowest request, per op\n"
           "# TYPE sbertd_request_duration_max_seconds gauge\n");
    cJSON_ArrayForEach(op, ops) put(t, "sbertd_request_duration_max_seconds{op=\"%s\"} %.9g\n",
                                    op->string, num(op, "max_ms") / 1000.0);
}

/* The metrics text (malloc'd), from a stats request run like any other. */
static int metrics_text(struct sbertd *d, char **out)
{
    cJSON *req =
        sbert_proto_request_new("stats", NULL, d->cfg.auth_token[0] ? d->cfg.auth_token : NULL);
    char *json = req ? cJSON_PrintUnformatted(req) : NULL;
    cJSON_Delete(req);
    char *reply = NULL;
    size_t len;
    int rc = json ? run_request(d, json, strlen(json), &reply, &len) : -1;
    free(json);
    if (rc) return -1;
    cJSON *st = cJSON_ParseWithLength(reply, len);
    free(reply);
    if (!st) return -1;
    struct text t = {0};
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "ok")))
        render(&t, st);
    else
        gauge(&t, "sbertd_up", "1 while sbertd answers", 0);
    cJSON_Delete(st);
    if (t.oom) {
        free(t.p);
        return -1;
    }
    *out = t.p;
    return 0;
}

static int http_metrics(char **text, void *user)
{
    return metrics_text(user, text);
}

/* ---- the textfile (node_exporter's textfile collector: no port needed) ----------------------- */

#define TEXTFILE_PERIOD_S 15

static void textfile_write(struct sbertd *d)
{
    char *text;
    if (metrics_text(d, &text)) {
        sbertd_log(LOG_WARNING, "metrics: the stats could not be read");
        return;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", d->cfg.metrics_textfile);
    FILE *f = fopen(tmp, "w");
    int ok = f && fputs(text, f) >= 0;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && rename(tmp, d->cfg.metrics_textfile) == 0) {
        free(text);
        return;
    }
    sbertd_log(LOG_WARNING, "metrics: cannot write %s: %s", d->cfg.metrics_textfile,
               strerror(errno));
    unlink(tmp);
    free(text);
}

static void *textfile_main(void *arg)
{
    struct sbertd *d = arg;
    pthread_mutex_lock(&d->textfile_mu);
    while (d->textfile_running) {
        pthread_mutex_unlock(&d->textfile_mu);
        textfile_write(d);
        pthread_mutex_lock(&d->textfile_mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += TEXTFILE_PERIOD_S;
        while (d->textfile_running &&
               pthread_cond_timedwait(&d->textfile_cv, &d->textfile_mu, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&d->textfile_mu);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------------------ */

/* systemd socket activation (sbertd.socket, sd_listen_fds(3)): the first listening TCP socket
 * passed, or -1. nanomsg binds only by URL and cannot take a socket, so only the HTTP API is
 * socket-activated; the ipc and tcp endpoints are bound by sbertd itself. */
static int activated_socket(void)
{
    int n = sd_listen_fds(0);
    for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
        if (sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0) > 0) return fd;
    return -1;
}

static void http_log(int level, const char *msg, void *user)
{
    (void)user;
    sbertd_log(level, "http: %s", msg);
}

int sbertd_http_start(struct sbertd *d)
{
    if (d->cfg.http[0]) {
        struct sbert_http_params p = sbert_http_default_params();
        p.address = d->cfg.http;
        p.listen_fd = activated_socket();
        p.allow_remote = d->cfg.allow_remote;
        p.token = d->cfg.auth_token[0] ? d->cfg.auth_token : NULL;
        p.max_body_bytes = d->cfg.max_message_size;
        p.handle = http_handle;
        p.metrics = http_metrics;
        p.log = http_log;
        p.user = d;
        char err[512];
        if (sbert_http_start(&p, &d->http, err, sizeof err)) {
            sbertd_log(LOG_ERR, "http: cannot serve on %s: %s", d->cfg.http, err);
            return -1;
        }
        sbertd_log(LOG_INFO, "http: serving on %s (port %u%s)", d->cfg.http,
                   sbert_http_port(d->http), p.listen_fd >= 0 ? ", a socket systemd passed" : "");
    }
    if (d->cfg.metrics_textfile[0]) {
        pthread_mutex_init(&d->textfile_mu, NULL);
        pthread_cond_init(&d->textfile_cv, NULL);
        d->textfile_running = 1;
        if (pthread_create(&d->textfile, NULL, textfile_main, d)) {
            d->textfile_running = 0;
            sbertd_log(LOG_ERR, "metrics: cannot start the textfile thread");
            return -1;
        }
    }
    return 0;
}

void sbertd_http_stop(struct sbertd *d)
{
    if (d->http) {
        sbert_http_stop(d->http);
        d->http = NULL;
    }
    if (d->textfile_running) {
        pthread_mutex_lock(&d->textfile_mu);
        d->textfile_running = 0;
        pthread_cond_signal(&d->textfile_cv);
        pthread_mutex_unlock(&d->textfile_mu);
        pthread_join(d->textfile, NULL);
        pthread_cond_destroy(&d->textfile_cv);
        pthread_mutex_destroy(&d->textfile_mu);
    }
}
