/*
 * read.c — the reads of sbert_index.h: get, count, iterate, and the vector queries (query,
 * query_many), with the result structs they fill. Every read holds swap shared (internal.h) and
 * sees each write batch entirely or not at all.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* ---- results --------------------------------------------------------------------------------- */

void index_doc_clear(struct sbert_index_doc *d)
{
    free(d->id);
    free(d->text);
    free(d->metadata);
    free(d->vector);
}

void sbert_index_results_free(struct sbert_index_results *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->n; i++)
        index_doc_clear(&r->docs[i]);
    free(r->docs);
    free(r);
}

int index_doc_fill(struct sbert_index_doc *d, const struct store_record *r, unsigned include)
{
    d->found = 1;
    d->id = index_dup_bytes(r->id, r->id_len);
    d->id_len = r->id_len;
    if (!d->id) return SBERT_INDEX_ENOMEM;
    if (include & SBERT_INDEX_INCLUDE_TEXT) {
        if (!(d->text = index_dup_bytes(r->text, r->text_len))) return SBERT_INDEX_ENOMEM;
        d->text_len = r->text_len;
    }
    if ((include & SBERT_INDEX_INCLUDE_METADATA) && r->meta) {
        if (!(d->metadata = index_dup_bytes(r->meta, r->meta_len))) return SBERT_INDEX_ENOMEM;
        d->metadata_len = r->meta_len;
    }
    if (include & SBERT_INDEX_INCLUDE_VECTOR) {
        if (!(d->vector = malloc(r->dim * sizeof(float)))) return SBERT_INDEX_ENOMEM;
        memcpy(d->vector, r->vector, r->dim * sizeof(float));
    }
    return 0;
}

size_t index_doc_bytes(const struct store_record *r, unsigned include)
{
    size_t bytes = r->id_len;
    if (include & SBERT_INDEX_INCLUDE_TEXT) bytes += r->text_len;
    if ((include & SBERT_INDEX_INCLUDE_METADATA) && r->meta) bytes += r->meta_len;
    if (include & SBERT_INDEX_INCLUDE_VECTOR) bytes += (size_t)r->dim * sizeof(float);
    return bytes;
}

static struct sbert_index_results *results_new(size_t n, int dim)
{
    struct sbert_index_results *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->dim = dim;
    if (n && !(r->docs = calloc(n, sizeof *r->docs))) {
        free(r);
        return NULL;
    }
    return r;
}

int index_read_enter(sbert_index *idx)
{
    pthread_rwlock_rdlock(&idx->swap);
    if (idx->broken) {
        pthread_rwlock_unlock(&idx->swap);
        return SBERT_INDEX_EIO;
    }
    return 0;
}

/* ---- get, count ------------------------------------------------------------------------------ */

/* Fills d with ids[i]'s document (or found = 0), counting its bytes into *bytes. */
static int get_one(sbert_index *idx, MDB_txn *txn, const char *id, size_t len, unsigned include,
                   size_t max_bytes, size_t *bytes, struct sbert_index_doc *d)
{
    uint64_t label;
    struct store_record r;
    int rc = 0;
    int lr = len && len <= SBERT_INDEX_ID_MAX ? store_id_lookup(idx->st, txn, id, len, &label)
                                              : SBERT_INDEX_ENOTFOUND;
    if (lr == 0) lr = store_record_get(idx->st, txn, label, &r);
    if (lr == 0 && (r.id_len != len || memcmp(r.id, id, len) != 0)) lr = SBERT_INDEX_ENOTFOUND;
    if (lr == SBERT_INDEX_ENOTFOUND) {
        d->found = 0;
        d->id = index_dup_bytes(id, len);
        d->id_len = len;
        if (!d->id) rc = SBERT_INDEX_ENOMEM;
    } else if (lr)
        rc = store_error(lr, "get", NULL, 0);
    else {
        /* counted before the copy: the bound holds for the memory too */
        *bytes += index_doc_bytes(&r, include);
        rc = *bytes > max_bytes ? SBERT_INDEX_ETOOBIG : index_doc_fill(d, &r, include);
    }
    if (!rc && !d->found && (*bytes += len) > max_bytes) rc = SBERT_INDEX_ETOOBIG;
    return rc;
}

int sbert_index_get(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                    unsigned include, struct sbert_index_results **out)
{
    return sbert_index_get_max(idx, ids, lens, n, include, SIZE_MAX, out);
}

int sbert_index_get_max(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                        unsigned include, size_t max_bytes, struct sbert_index_results **out)
{
    if (out) *out = NULL;
    if (!idx || !out || (n && (!ids || !lens))) return SBERT_INDEX_EINVAL;
    int rc = index_read_enter(idx);
    if (rc) return rc;
    struct sbert_index_results *res = results_new(n, idx->meta.dim);
    MDB_txn *txn = NULL;
    if (!res) {
        rc = SBERT_INDEX_ENOMEM;
        goto done;
    }
    res->n = n;
    if ((rc = store_read_begin(idx->st, &txn))) goto done;
    size_t bytes = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = ids[i] ? get_one(idx, txn, ids[i], lens[i], include, max_bytes, &bytes, &res->docs[i])
                    : SBERT_INDEX_EINVAL;
    store_read_end(idx->st, txn);
done:
    pthread_rwlock_unlock(&idx->swap);
    if (rc) {
        sbert_index_results_free(res);
        return rc;
    }
    *out = res;
    return 0;
}

int sbert_index_count(sbert_index *idx, uint64_t *count)
{
    if (!idx || !count) return SBERT_INDEX_EINVAL;
    int rc = index_read_enter(idx);
    if (rc) return rc;
    MDB_txn *txn;
    if ((rc = store_read_begin(idx->st, &txn)) == 0) {
        if ((rc = store_doc_count(idx->st, txn, count))) rc = store_error(rc, "count", NULL, 0);
        store_read_end(idx->st, txn);
    }
    pthread_rwlock_unlock(&idx->swap);
    return rc;
}

/* ---- iterate --------------------------------------------------------------------------------- */

struct iter_chunk {
    struct sbert_index_doc *docs; /* CHUNK */
    size_t n;
    unsigned include;
};

static int iter_take(uint64_t label, const struct store_record *r, void *user)
{
    (void)label;
    struct iter_chunk *c = user;
    struct sbert_index_doc *d = &c->docs[c->n++];
    memset(d, 0, sizeof *d);
    return index_doc_fill(d, r, c->include);
}

/* Reads the next chunk of documents after key into c, under swap and one read transaction. */
static int iter_read(sbert_index *idx, unsigned char *key, size_t *key_len, struct iter_chunk *c,
                     int *end)
{
    int rc = index_read_enter(idx);
    if (rc) return rc;
    MDB_txn *txn;
    if ((rc = store_read_begin(idx->st, &txn)) == 0) {
        rc = store_ids_scan(idx->st, txn, key, key_len, CHUNK, iter_take, c, end);
        store_read_end(idx->st, txn);
    }
    pthread_rwlock_unlock(&idx->swap);
    return rc;
}

int sbert_index_iterate(sbert_index *idx, const char *after, size_t after_len, unsigned include,
                        sbert_index_iter_fn cb, void *user)
{
    if (!idx || !cb || (after_len && !after) || after_len > SBERT_INDEX_ID_MAX)
        return SBERT_INDEX_EINVAL;
    unsigned char key[STORE_KEY_MAX];
    size_t key_len = 0;
    struct iter_chunk c = {.docs = calloc(CHUNK, sizeof *c.docs), .include = include};
    if (!c.docs) return SBERT_INDEX_ENOMEM;
    int rc = 0;
    if (after != NULL && after_len > 0) {
        /* The key layout needs the store (its key size limit). */
        if ((rc = index_read_enter(idx))) {
            free(c.docs);
            return rc;
        }
        key_len = store_id_key(idx->st, after, after_len, key);
        pthread_rwlock_unlock(&idx->swap);
    }
    for (;;) {
        int end = 0;
        c.n = 0;
        /* A chunk per read transaction: a reindex may switch stores between chunks. */
        rc = iter_read(idx, key, &key_len, &c, &end);
        if (rc && rc != SBERT_INDEX_ENOMEM) rc = store_error(rc, "iterate", NULL, 0);
        /* The chunk read so far is delivered even when the scan hit the end. */
        int quit = rc != 0;
        for (size_t i = 0; i < c.n; i++) {
            if (!quit && cb(&c.docs[i], user)) quit = 1;
            index_doc_clear(&c.docs[i]);
        }
        if (rc || quit || end || c.n < CHUNK) break;
    }
    free(c.docs);
    return rc;
}

/* ---- queries --------------------------------------------------------------------------------- */

static int doc_cmp(const void *a, const void *b)
{
    const struct sbert_index_doc *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
    int c = memcmp(x->id, y->id, n);
    if (c) return c;
    return (x->id_len > y->id_len) - (x->id_len < y->id_len);
}

/* Fills *out with the hits of one query, labels/scores[0..k) best first (-1: none), that reach
 * min_score and are still stored in txn, counting their bytes against max_bytes. */
static int query_fill(sbert_index *idx, MDB_txn *txn, const int64_t *labels, const float *scores,
                      const struct sbert_index_query_params *p, struct sbert_index_results **out)
{
    struct sbert_index_results *res = results_new(p->k, idx->meta.dim);
    if (!res) return SBERT_INDEX_ENOMEM;
    size_t n = 0, bytes = 0, max_bytes = p->max_bytes ? p->max_bytes : SIZE_MAX;
    int rc = 0;
    for (size_t i = 0; i < p->k && rc == 0; i++) {
        if (labels[i] < 0 || scores[i] < p->min_score) continue;
        struct store_record r;
        int gr = store_record_get(idx->st, txn, (uint64_t)labels[i], &r);
        if (gr == SBERT_INDEX_ENOTFOUND)
            continue; /* deleted after the search began: its delete is committed */
        if (gr) {
            rc = store_error(gr, "query", NULL, 0);
            break;
        }
        /* counted before the copy, as in sbert_index_get_max */
        if ((bytes += index_doc_bytes(&r, p->include)) > max_bytes) {
            rc = SBERT_INDEX_ETOOBIG;
            break;
        }
        res->docs[n].score = scores[i];
        rc = index_doc_fill(&res->docs[n], &r, p->include);
        n++;
    }
    res->n = n;
    if (rc) {
        sbert_index_results_free(res);
        return rc;
    }
    qsort(res->docs, n, sizeof *res->docs, doc_cmp);
    *out = res;
    return 0;
}

/* One filtered query: its own search, with the filter as the vindex keep callback. */
static int query_filtered(sbert_index *idx, MDB_txn *txn, const float *q,
                          const struct sbert_index_query_params *p, int64_t *labels, float *scores,
                          struct sbert_index_results **out)
{
    struct qfilter qf;
    qfilter_init(&qf, idx, p->filter);
    struct vindex_filter vf = {.keep = qfilter_keep, .user = &qf};
    char err[256];
    int rc = vindex_search(idx->vi, q, 1, p->k, &vf, labels, scores, err, sizeof err);
    if (rc) {
        ilog(idx, SBERT_INDEX_LOG_ERROR, "vector search failed: %s", err);
        rc = index_vindex_code(rc);
    } else if (atomic_load(&qf.failed))
        rc = atomic_load(&qf.failed);
    else
        rc = query_fill(idx, txn, labels, scores, p, out);
    qfilter_end(&qf);
    return rc;
}

/* Checks each query's parameters into rcs (entered: index_read_enter's code, applied to all);
 * counts the unfiltered ones (*ng) and the largest k of each kind. */
static void query_check(const struct sbert_index_query_params *params, size_t nq, size_t dim,
                        int entered, int *rcs, struct sbert_index_results **out, size_t *ng,
                        size_t *kmax, size_t *kf)
{
    *ng = *kmax = *kf = 0;
    for (size_t i = 0; i < nq; i++) {
        const struct sbert_index_query_params *p = &params[i];
        out[i] = NULL;
        rcs[i] = entered;
        if (!rcs[i] && (p->k < 1 || p->k > MAX_K || isnan(p->min_score)))
            rcs[i] = SBERT_INDEX_EINVAL;
        if (!rcs[i] && p->dim && (size_t)p->dim != dim) rcs[i] = SBERT_INDEX_EMODEL;
        if (!rcs[i] && !p->filter) {
            (*ng)++;
            if (p->k > *kmax) *kmax = p->k;
        } else if (!rcs[i] && p->k > *kf)
            *kf = p->k;
    }
}

/* The buffers of query_many: rows 0..ng) of q hold the unfiltered queries, packed for the shared
 * search (kmax hits each); row ng the filtered one being searched. */
struct query_bufs {
    float *q;
    size_t *row;
    int64_t *labels;
    float *scores;
    size_t ng, kmax, width;
};

/* Searches the unfiltered queries together, then answers every query in order. */
static int query_run(sbert_index *idx, MDB_txn *txn, const float *vectors, size_t nq,
                     const struct sbert_index_query_params *params,
                     struct sbert_index_results **out, int *rcs, struct query_bufs *b)
{
    size_t dim = (size_t)idx->meta.dim, ng = b->ng, kmax = b->kmax, width = b->width;
    if (ng) {
        char err[256];
        int sr =
            vindex_search(idx->vi, b->q, ng, kmax, NULL, b->labels, b->scores, err, sizeof err);
        if (sr) {
            ilog(idx, SBERT_INDEX_LOG_ERROR, "vector search failed: %s", err);
            return index_vindex_code(sr);
        }
    }
    for (size_t i = 0; i < nq; i++) {
        if (rcs[i]) continue;
        if (!params[i].filter)
            rcs[i] = query_fill(idx, txn, b->labels + b->row[i] * kmax,
                                b->scores + b->row[i] * kmax, &params[i], &out[i]);
        else if (sbert_util_normalise_into(vectors + i * dim, dim, b->q + ng * dim))
            rcs[i] = SBERT_INDEX_EINVAL;
        else
            rcs[i] = query_filtered(idx, txn, b->q + ng * dim, &params[i], b->labels + ng * width,
                                    b->scores + ng * width, &out[i]);
        /* a broken store fails every query, as a failed search does */
        if (rcs[i] && rcs[i] != SBERT_INDEX_EINVAL && rcs[i] != SBERT_INDEX_ETOOBIG) return rcs[i];
    }
    return 0;
}

int sbert_index_query_many(sbert_index *idx, const float *vectors, size_t nq,
                           const struct sbert_index_query_params *params,
                           struct sbert_index_results **out, int *rcs)
{
    if (!idx || (nq && (!vectors || !params || !out || !rcs))) return SBERT_INDEX_EINVAL;
    if (nq == 0) return 0;
    int rc = index_read_enter(idx);
    size_t dim = (size_t)idx->meta.dim, kf;
    struct query_bufs b = {0};
    query_check(params, nq, dim, rc, rcs, out, &b.ng, &b.kmax, &kf);
    if (rc) return rc;
    b.width = b.kmax > kf ? b.kmax : kf;
    b.q = malloc((b.ng + 1) * dim * sizeof *b.q);
    b.row = malloc(nq * sizeof *b.row);
    b.labels = malloc((b.ng + 1) * b.width * sizeof *b.labels);
    b.scores = malloc((b.ng + 1) * b.width * sizeof *b.scores);
    MDB_txn *txn = NULL;
    if (!b.q || !b.row || !b.labels || !b.scores) {
        rc = SBERT_INDEX_ENOMEM;
        goto done;
    }
    size_t at = 0;
    for (size_t i = 0; i < nq; i++) {
        if (rcs[i] || params[i].filter) continue;
        if (sbert_util_normalise_into(vectors + i * dim, dim, b.q + at * dim)) {
            rcs[i] = SBERT_INDEX_EINVAL;
            continue;
        }
        b.row[i] = at++;
    }
    b.ng = at;
    /* The read transaction is opened first: it holds the store's lock shared, so the map cannot
     * be resized under the filter's transactions. */
    if ((rc = store_read_begin(idx->st, &txn)) == 0)
        rc = query_run(idx, txn, vectors, nq, params, out, rcs, &b);
done:
    if (txn) store_read_end(idx->st, txn);
    pthread_rwlock_unlock(&idx->swap);
    free(b.q);
    free(b.row);
    free(b.labels);
    free(b.scores);
    if (rc)
        for (size_t i = 0; i < nq; i++) {
            sbert_index_results_free(out[i]);
            out[i] = NULL;
            rcs[i] = rcs[i] == SBERT_INDEX_EINVAL || rcs[i] == SBERT_INDEX_EMODEL ? rcs[i] : rc;
        }
    for (size_t i = 0; i < nq; i++)
        if (rcs[i]) return rcs[i];
    return 0;
}

int sbert_index_query(sbert_index *idx, const float *vector,
                      const struct sbert_index_query_params *params,
                      struct sbert_index_results **out)
{
    if (out) *out = NULL;
    if (!idx || !vector || !params || !out) return SBERT_INDEX_EINVAL;
    int rc;
    sbert_index_query_many(idx, vector, 1, params, out, &rc);
    return rc;
}
