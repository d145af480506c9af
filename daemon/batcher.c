/* batcher.c — the shared encoder and searcher (server.h): small read requests that arrive
 * together share one sbert_encode() call, unfiltered queries one sbert_index_query_many() call.
 * Every encode and every query search of the daemon goes through here (op.h). */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>

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
    uint64_t tokens = 0, t0 = sbertd_now_us();
    p.n_threads = d->cfg.encode_threads;
    p.n_tokens = &tokens;
    size_t bad = 0;
    int rc = sbert_encode(d->model, texts, lens, n, out, &p, truncated, &bad);
    if (!rc) {
        atomic_fetch_add(&d->enc_us, sbertd_now_us() - t0);
        atomic_fetch_add(&d->enc_texts, n);
        atomic_fetch_add(&d->enc_tokens, tokens);
    }
    return rc;
}

/* Encodes one batch of jobs in one call (texts, lens, trunc, out: scratch for
 * SHARED_BATCH_TEXTS texts, NULL when it could not be allocated) and gives each job its rows. */
static void encode_batch(struct sbertd *d, struct batch_job *batch, const char **texts,
                         size_t *lens, int *trunc, float *out)
{
    size_t dim = (size_t)d->info->dim, total = 0;
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
            if (j->truncated) memcpy(j->truncated, trunc + at, j->n * sizeof *trunc);
            j->rc = 0;
        }
        at += j->n;
    }
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
        encode_batch(d, batch, texts, lens, trunc, out);
        batch_done(&d->enc_q, batch);
    }
    free(texts);
    free(lens);
    free(trunc);
    free(out);
    return NULL;
}

static int encode_error(int rc, struct sbert_proto_error *err)
{
    if (rc == SBERT_EUTF8)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_UTF8, -1, "a text is not valid UTF-8");
    if (rc)
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "encoding failed: %s",
                                     sbert_strerror(rc));
    return 0;
}

/* ---- the writes' encode, through the embedding cache ----------------------------------------- */

static const uint8_t *key_at(const uint8_t *keys, size_t i)
{
    return keys + i * SBERTD_ECACHE_KEY_BYTES;
}

/* qsort_r order of text indices: by key, then by index (the first of equal texts first). */
static int by_key(const void *a, const void *b, void *keys)
{
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = memcmp(key_at(keys, i), key_at(keys, j), SBERTD_ECACHE_KEY_BYTES);
    return c ? c : (i > j) - (i < j);
}

/* The scratch of one cached encode. */
struct cenc {
    uint8_t *keys;      /* n keys */
    int *found, *trunc; /* n flags; found: 1 from the cache, 2 encoded here, 0 a repeat */
    size_t *order;      /* the misses, sorted by key (equal texts together) */
    const char **mt;    /* the distinct misses' texts, lens, keys, rows */
    size_t *ml, *mi;
    uint8_t *mk;
    float *mrows;
    int *mtrunc;
};

static void cenc_free(struct cenc *s)
{
    free(s->keys);
    free(s->found);
    free(s->trunc);
    free(s->order);
    free(s->mt);
    free(s->ml);
    free(s->mi);
    free(s->mk);
    free(s->mrows);
    free(s->mtrunc);
}

int sbertd_encode_docs(struct sbertd *d, const char *const *texts, const size_t *lens, size_t n,
                       float *out, int *truncated, int *cached, struct sbert_proto_error *err)
{
    if (cached) memset(cached, 0, n * sizeof *cached);
    if (!d->ecache || n == 0) {
        sbertd_log(LOG_DEBUG, "encode: %zu texts", n);
        return encode_error(encode_direct(d, texts, lens, n, out, truncated), err);
    }
    size_t dim = (size_t)d->info->dim;
    struct cenc s = {0};
    if (!(s.keys = calloc(n, SBERTD_ECACHE_KEY_BYTES)) || !(s.found = calloc(n, sizeof *s.found)) ||
        !(s.trunc = calloc(n, sizeof *s.trunc)) || !(s.order = malloc(n * sizeof *s.order)) ||
        !(s.mt = malloc(n * sizeof *s.mt)) || !(s.ml = malloc(n * sizeof *s.ml)) ||
        !(s.mi = malloc(n * sizeof *s.mi)) || !(s.mk = malloc(n * SBERTD_ECACHE_KEY_BYTES)) ||
        !(s.mrows = malloc(n * dim * sizeof *s.mrows)) ||
        !(s.mtrunc = malloc(n * sizeof *s.mtrunc))) {
        cenc_free(&s);
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        sbertd_ecache_key(d->ecache, texts[i], lens ? lens[i] : strlen(texts[i]),
                          s.keys + i * SBERTD_ECACHE_KEY_BYTES);
    sbertd_ecache_get(d->ecache, s.keys, n, out, s.trunc, s.found);
    size_t n_miss = 0, n_enc = 0;
    for (size_t i = 0; i < n; i++)
        if (!s.found[i]) s.order[n_miss++] = i;
    qsort_r(s.order, n_miss, sizeof *s.order, by_key, s.keys);
    /* a text repeated in the call is encoded once: the first of equal keys, in text order */
    for (size_t j = 0; j < n_miss; j++) {
        size_t i = s.order[j];
        if (j &&
            memcmp(key_at(s.keys, s.order[j - 1]), key_at(s.keys, i), SBERTD_ECACHE_KEY_BYTES) == 0)
            continue;
        s.mt[n_enc] = texts[i];
        s.ml[n_enc] = lens ? lens[i] : strlen(texts[i]);
        s.mi[n_enc] = i;
        memcpy(s.mk + n_enc * SBERTD_ECACHE_KEY_BYTES, key_at(s.keys, i), SBERTD_ECACHE_KEY_BYTES);
        n_enc++;
    }
    sbertd_log(LOG_DEBUG, "encode: %zu texts, %zu from the cache, %zu repeated, %zu to encode", n,
               n - n_miss, n_miss - n_enc, n_enc);
    int rc = n_enc ? encode_direct(d, s.mt, s.ml, n_enc, s.mrows, s.mtrunc) : 0;
    if (!rc && n_enc) sbertd_ecache_put(d->ecache, s.mk, n_enc, s.mrows, s.mtrunc);
    /* the rows of the distinct misses, then of their repeats (which follow them in order) */
    for (size_t j = 0, m = 0; !rc && j < n_miss; j++) {
        size_t i = s.order[j];
        if (m < n_enc && s.mi[m] == i) {
            memcpy(out + i * dim, s.mrows + m * dim, dim * sizeof *out);
            s.trunc[i] = s.mtrunc[m];
            s.found[i] = 2;
            m++;
        } else {
            size_t first = s.mi[m - 1];
            memcpy(out + i * dim, out + first * dim, dim * sizeof *out);
            s.trunc[i] = s.trunc[first];
        }
    }
    if (!rc && truncated) memcpy(truncated, s.trunc, n * sizeof *truncated);
    for (size_t i = 0; !rc && cached && i < n; i++)
        cached[i] = s.found[i] != 2;
    cenc_free(&s);
    return encode_error(rc, err);
}

int sbertd_encode(struct sbertd *d, const char *const *texts, const size_t *lens, size_t n,
                  float *out, int *truncated, int shared, struct sbert_proto_error *err)
{
    int rc;
    if (!shared) return sbertd_encode_docs(d, texts, lens, n, out, truncated, NULL, err);
    sbertd_log(LOG_DEBUG, "encode: %zu texts", n);
    if (n > SHARED_MAX_TEXTS) {
        rc = encode_direct(d, texts, lens, n, out, truncated);
    } else {
        struct enc_job j = {.b.weight = n,
                            .texts = texts,
                            .lens = lens,
                            .n = n,
                            .out = out,
                            .truncated = truncated};
        batch_wait(&d->enc_q, &j.b);
        rc = j.rc;
    }
    return encode_error(rc, err);
}

/* Pieces of 64 texts (well under a second each) so that the watchdog, which withholds its ping
 * from a request busy past watchdog_stall_sec, sees a long reindex moving. */
#define REINDEX_PIECE 64

int sbertd_reindex_encode(const char *const *texts, const size_t *lens, size_t n, float *out,
                          void *user)
{
    struct sbertd *d = user;
    size_t dim = (size_t)d->info->dim;
    for (size_t i = 0; i < n; i += REINDEX_PIECE) {
        size_t k = n - i < REINDEX_PIECE ? n - i : REINDEX_PIECE;
        struct sbert_proto_error err;
        /* not shared: a reindex runs alone in the committer (or at start-up, before the encoder
         * thread exists), and its pieces would only delay the queries' small batches */
        int rc =
            sbertd_encode(d, texts + i, lens ? lens + i : NULL, k, out + i * dim, NULL, 0, &err);
        if (rc) return rc; /* the index reports the reindex as aborted by its callback */
        sbertd_server_progress(d);
    }
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

/* Searches one batch of jobs in one call (vecs, params, res, rcs: scratch for
 * SHARED_SEARCH_QUERIES queries, NULL when it could not be allocated: each then searches alone). */
static void search_batch(struct sbertd *d, struct batch_job *batch, float *vecs,
                         struct sbert_index_query_params *params, struct sbert_index_results **res,
                         int *rcs)
{
    size_t dim = (size_t)d->info->dim;
    if (!vecs || !params || !res || !rcs) {
        for (struct batch_job *b = batch; b; b = b->next) {
            struct search_job *j = SEARCH_JOB(b);
            j->rc = sbert_index_query(d->index, j->vector, j->params, &j->res);
        }
        return;
    }
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
}

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
        search_batch(d, batch, vecs, params, res, rcs);
        batch_done(&d->search_q, batch);
    }
    free(vecs);
    free(params);
    free(res);
    free(rcs);
    return NULL;
}

int sbertd_query(struct sbertd *d, sbert_index *store, const float *vector,
                 const struct sbert_index_query_params *params, struct sbert_index_results **out)
{
    /* A filtered query is searched on its own anyway (sbert_index_query_many), and a selective
     * filter can make that slow: it runs here rather than delay the shared batch. The shared
     * batches search the default collection; another collection's queries search here too. */
    if (params->filter || store != d->index) return sbert_index_query(store, vector, params, out);
    struct search_job j = {.b.weight = 1, .vector = vector, .params = params};
    batch_wait(&d->search_q, &j.b);
    *out = j.res;
    return j.rc;
}

/* Filtered queries of a batch per sbert_index_query_many() call. The index searches them one by
 * one anyway, and a selective filter over a large store can take a second each: in pieces, the
 * watchdog (which withholds its ping from a request busy past watchdog_stall_sec) sees a batch of
 * thousands moving, as a reindex. */
#define FILTERED_PIECE 16

int sbertd_query_many(struct sbertd *d, sbert_index *store, const float *vectors, size_t n,
                      const struct sbert_index_query_params *params,
                      struct sbert_index_results **out, int *rcs)
{
    uint64_t t0 = sbertd_now_us();
    int filtered = 0;
    for (size_t i = 0; i < n; i++)
        filtered |= params[i].filter != NULL;
    size_t piece = filtered ? FILTERED_PIECE : n, dim = (size_t)d->info->dim;
    int first = 0;
    for (size_t i = 0; i < n; i += piece) {
        size_t m = n - i < piece ? n - i : piece;
        int rc = sbert_index_query_many(store, vectors + i * dim, m, params + i, out + i, rcs + i);
        if (rc && !first) first = rc;
        sbertd_server_progress(d);
    }
    sbertd_log(LOG_DEBUG, "search: a batch of %zu %squeries, %.1f ms", n,
               filtered ? "filtered " : "", (double)(sbertd_now_us() - t0) / 1000.0);
    return first;
}

/* ---- start and stop -------------------------------------------------------------------------- */

int sbertd_batcher_start(struct sbertd *d)
{
    batch_queue_init(&d->enc_q);
    batch_queue_init(&d->search_q);
    if (pthread_create(&d->encoder, NULL, encoder_main, d)) return -1;
    if (pthread_create(&d->searcher, NULL, searcher_main, d)) return -1;
    return 0;
}

void sbertd_batcher_stop(struct sbertd *d)
{
    batch_queue_stop(&d->enc_q);
    pthread_join(d->encoder, NULL);
    batch_queue_stop(&d->search_q);
    pthread_join(d->searcher, NULL);
}
