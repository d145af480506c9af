/*
 * pairs.c — paraphrase mining (sbert_index_pairs): every stored document (that the filter
 * accepts) is searched for its nearest neighbours, batch by batch; the best pairs are kept in the
 * one top-k pair heap (sbert_util_topk), deduplicated, then rescored exactly and named by id.
 * A document of several passages takes part by its document vector (its whole text truncated to
 * the model's window, which says what the document is about): the query and the exact score. The
 * vector index holds passages, so a hit counts on a document's first passage only.
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "internal.h"

/* ---- the set of pairs seen ------------------------------------------------------------------- */

/* Set of (a, b) pairs seen: open addressing, never shrinks. */
struct pair_set {
    struct sbert_util_pair *slots; /* a == UINT64_MAX: empty */
    size_t cap, n;
};

static uint64_t pair_hash(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull) * 0xc2b2ae3d27d4eb4full;
    return h ^ (h >> 31);
}

static int pair_set_grow(struct pair_set *s)
{
    size_t cap = s->cap ? 2 * s->cap : 1024;
    struct sbert_util_pair *ns = malloc(cap * sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < cap; i++)
        ns[i].a = UINT64_MAX;
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i].a == UINT64_MAX) continue;
        size_t h = pair_hash(s->slots[i].a, s->slots[i].b) & (cap - 1);
        while (ns[h].a != UINT64_MAX)
            h = (h + 1) & (cap - 1);
        ns[h] = s->slots[i];
    }
    free(s->slots);
    s->slots = ns;
    s->cap = cap;
    return 0;
}

/* Returns 1 when inserted, 0 when present, -1 on allocation failure. */
static int pair_set_add(struct pair_set *s, uint64_t a, uint64_t b)
{
    if (2 * (s->n + 1) > s->cap && pair_set_grow(s)) return -1;
    size_t h = pair_hash(a, b) & (s->cap - 1);
    while (s->slots[h].a != UINT64_MAX) {
        if (s->slots[h].a == a && s->slots[h].b == b) return 0;
        h = (h + 1) & (s->cap - 1);
    }
    s->slots[h].a = a;
    s->slots[h].b = b;
    s->n++;
    return 1;
}

/* ---- results --------------------------------------------------------------------------------- */

void sbert_index_pairs_free(struct sbert_index_pairs *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->pairs[i].a);
        free(p->pairs[i].b);
    }
    free(p->pairs);
    free(p);
}

/* Exact cosine of two stored unit vectors, summed in double in a fixed order (symmetric). Not
 * sbert_util_cosine: stored vectors are already unit length and may be unaligned. */
static float dot_exact(const float *x, const float *y, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++) {
        float a, b;
        memcpy(&a, x + i, sizeof a);
        memcpy(&b, y + i, sizeof b);
        s += (double)a * b;
    }
    return (float)s;
}

/* Names the kept pairs (sorted best first) by their ids into a new result. */
static int pairs_name(sbert_index *idx, MDB_txn *txn, const struct sbert_util_topk *keep,
                      struct sbert_index_pairs **out)
{
    struct sbert_index_pairs *p = calloc(1, sizeof *p);
    if (!p || (keep->n && !(p->pairs = calloc(keep->n, sizeof *p->pairs)))) {
        free(p);
        return SBERT_INDEX_ENOMEM;
    }
    for (size_t i = 0; i < keep->n; i++) {
        struct store_record ra, rb;
        if (store_record_get(idx->st, txn, keep->v[i].a, &ra) ||
            store_record_get(idx->st, txn, keep->v[i].b, &rb))
            continue;
        struct sbert_index_pair *q = &p->pairs[p->n];
        q->a = index_dup_bytes(ra.id, ra.id_len);
        q->b = index_dup_bytes(rb.id, rb.id_len);
        q->score = keep->v[i].score;
        p->n++;
        if (!q->a || !q->b) {
            sbert_index_pairs_free(p);
            return SBERT_INDEX_ENOMEM;
        }
    }
    *out = p;
    return 0;
}

/* Turns the kept labels into ids with exact scores, best first. */
static int pairs_finish(sbert_index *idx, struct sbert_util_topk *keep, float min_score,
                        struct sbert_index_pairs **out)
{
    MDB_txn *txn;
    int rc = store_read_begin(idx->st, &txn);
    if (rc) return rc;
    size_t dim = (size_t)idx->meta.dim, m = 0;
    for (size_t i = 0; i < keep->n; i++) {
        struct store_record ra, rb;
        if (store_record_get(idx->st, txn, keep->v[i].a, &ra) ||
            store_record_get(idx->st, txn, keep->v[i].b, &rb))
            continue;
        keep->v[i].score = dot_exact(ra.doc_vector, rb.doc_vector, dim);
        if (keep->v[i].score >= min_score) keep->v[m++] = keep->v[i];
    }
    keep->n = m;
    sbert_util_topk_sort(keep);
    rc = pairs_name(idx, txn, keep, out);
    store_read_end(idx->st, txn);
    return rc;
}

/* ---- mining ---------------------------------------------------------------------------------- */

/* One batch: the query documents, the hits of their search, and the scan's position. */
struct pairs_batch {
    const struct sbert_index_pairs_params *params;
    size_t cap, kq, dim, nq;
    int64_t *qlabels; /* cap */
    float *qvecs;     /* cap * dim */
    int64_t *labels;  /* cap * kq */
    float *scores;    /* cap * kq */
    uint64_t next;
};

static int pairs_take(uint64_t label, const struct store_record *r, void *user)
{
    struct pairs_batch *b = user;
    const sbert_index_filter *f = b->params->filter;
    if (f && filter_match_doc(f, r->meta, r->meta ? r->meta_len : 0, r->text, r->text_len) != 1)
        return 0;
    b->qlabels[b->nq] = (int64_t)label;
    memcpy(b->qvecs + b->nq * b->dim, r->doc_vector, b->dim * sizeof(float));
    return ++b->nq == b->cap ? STORE_SCAN_STOP : 0;
}

/* Reads the next batch of query vectors (the next stored documents the filter accepts) and
 * searches them, within one read transaction. *end: the scan reached the last document. */
static int pairs_search(sbert_index *idx, struct pairs_batch *b, int *end)
{
    MDB_txn *txn;
    int rc = store_read_begin(idx->st, &txn);
    if (rc) return rc;
    b->nq = 0;
    rc = store_docs_scan(idx->st, txn, &b->next, SIZE_MAX, pairs_take, b, end);
    if (rc) {
        store_read_end(idx->st, txn);
        return store_error(rc, "pairs", NULL, 0);
    }
    if (b->nq) {
        const sbert_index_filter *f = b->params->filter;
        struct qfilter qf;
        qfilter_init(&qf, idx, f);
        struct vindex_filter vf = {.keep = qfilter_keep, .user = &qf};
        char err[256];
        rc = vindex_search(idx->vi, b->qvecs, b->nq, b->kq, f ? &vf : NULL, b->labels, b->scores,
                           err, sizeof err);
        int failed = atomic_load(&qf.failed);
        qfilter_end(&qf);
        if (rc) ilog(idx, SBERT_INDEX_LOG_ERROR, "pairs: vector search failed: %s", err);
        if (rc || failed) rc = rc ? index_vindex_code(rc) : failed;
        /* only first passages (the labels that key a record) stay */
        for (size_t i = 0; rc == 0 && i < b->nq * b->kq; i++) {
            struct store_record r;
            if (b->labels[i] < 0) continue;
            int g = store_record_get(idx->st, txn, (uint64_t)b->labels[i], &r);
            if (g == SBERT_INDEX_ENOTFOUND)
                b->labels[i] = -1;
            else if (g)
                rc = store_error(g, "pairs", NULL, 0);
        }
    }
    store_read_end(idx->st, txn);
    return rc;
}

/* Offers the batch's hits to keep, each pair once. */
static int pairs_offer(const struct pairs_batch *b, struct pair_set *seen,
                       struct sbert_util_topk *keep)
{
    for (size_t i = 0; i < b->nq; i++)
        for (size_t j = 0; j < b->kq; j++) {
            int64_t l = b->labels[i * b->kq + j], ql = b->qlabels[i];
            float s = b->scores[i * b->kq + j];
            if (l < 0 || l == ql || s < b->params->min_score - 1e-4f) continue;
            struct sbert_util_pair p = {
                .a = (uint64_t)(l < ql ? l : ql), .b = (uint64_t)(l < ql ? ql : l), .score = s};
            /* A pair that would not be kept is not remembered as seen either. */
            if (keep->limit && keep->n == keep->limit && !sbert_util_pair_before(&p, &keep->v[0]))
                continue;
            int added = pair_set_add(seen, p.a, p.b);
            if (added < 0 || (added && sbert_util_topk_add(keep, &p))) return SBERT_INDEX_ENOMEM;
        }
    return 0;
}

int sbert_index_pairs(sbert_index *idx, const struct sbert_index_pairs_params *params,
                      struct sbert_index_pairs **out)
{
    if (out) *out = NULL;
    if (!idx || !params || !out || isnan(params->min_score)) return SBERT_INDEX_EINVAL;
    int rc = index_read_enter(idx);
    if (rc) return rc;
    size_t kq = (params->per_doc_k ? params->per_doc_k : DEFAULT_PER_DOC_K) + 1;
    if (kq > MAX_K + 1) kq = MAX_K + 1;
    struct pairs_batch b = {.params = params, .cap = CHUNK, .kq = kq, .dim = (size_t)idx->meta.dim};
    b.qlabels = malloc(b.cap * sizeof *b.qlabels);
    b.qvecs = malloc(b.cap * b.dim * sizeof *b.qvecs);
    b.labels = malloc(b.cap * kq * sizeof *b.labels);
    b.scores = malloc(b.cap * kq * sizeof *b.scores);
    struct pair_set seen = {0};
    struct sbert_util_topk keep;
    sbert_util_topk_init(&keep, params->top_n);
    if (!b.qlabels || !b.qvecs || !b.labels || !b.scores) rc = SBERT_INDEX_ENOMEM;
    for (int end = 0; rc == 0;) {
        if ((rc = pairs_search(idx, &b, &end)) || (rc = pairs_offer(&b, &seen, &keep))) break;
        if (end || b.nq == 0) {
            rc = pairs_finish(idx, &keep, params->min_score, out);
            break;
        }
    }
    pthread_rwlock_unlock(&idx->swap);
    free(b.qlabels);
    free(b.qvecs);
    free(b.labels);
    free(b.scores);
    free(seen.slots);
    sbert_util_topk_free(&keep);
    return rc;
}
