/*
 * search.c — sbert_index_search: the keyword (BM25, keyword.c) and dense (vindex) rankings, their
 * fusion (reciprocal rank or weighted), maximal marginal relevance, and the results.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "internal.h"

#define DEFAULT_CANDIDATES 100
/* MMR compares each pick with every remaining candidate (k x pool x dim multiply-adds): the pool
 * is the best this many of the ranking, so a request cannot ask for seconds of work. */
#define MMR_POOL 1000
/* ---- the search ------------------------------------------------------------------------------ */

/* A candidate of either ranking. */
struct cand {
    uint64_t label;
    float dense, keyword; /* NAN: not known yet */
    uint32_t dense_rank, keyword_rank;
    double fused;
};

struct search {
    sbert_index *idx;
    const struct sbert_index_search_params *p;
    MDB_txn *txn;
    index_bm25 *bm; /* NULL in dense mode */
    float *qvec;    /* the normalised query vector, NULL without one */
    struct cand *c;
    size_t n, cap;
    /* label + 1 (0: a free slot) -> its position in c, open addressing over twice c's capacity;
     * valid until c is sorted */
    uint64_t *hkey;
    size_t *hpos;
};

static size_t cand_slot(const struct search *s, uint64_t key)
{
    size_t mask = 2 * s->cap - 1, j = (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 17) & mask;
    while (s->hkey[j] && s->hkey[j] != key)
        j = (j + 1) & mask;
    return j;
}

/* Doubles c and rebuilds the label index over it. */
static int cand_grow(struct search *s)
{
    size_t cap = s->cap ? 2 * s->cap : 64;
    struct cand *nc = realloc(s->c, cap * sizeof *nc);
    if (!nc) return -1;
    s->c = nc;
    uint64_t *hk = calloc(2 * cap, sizeof *hk);
    size_t *hp = malloc(2 * cap * sizeof *hp);
    if (!hk || !hp) {
        free(hk);
        free(hp);
        return -1;
    }
    free(s->hkey);
    free(s->hpos);
    s->hkey = hk;
    s->hpos = hp;
    s->cap = cap;
    for (size_t i = 0; i < s->n; i++) {
        size_t j = cand_slot(s, s->c[i].label + 1);
        s->hkey[j] = s->c[i].label + 1;
        s->hpos[j] = i;
    }
    return 0;
}

/* The candidate of label, or NULL. */
static const struct cand *cand_lookup(const struct search *s, uint64_t label)
{
    if (!s->cap) return NULL;
    size_t j = cand_slot(s, label + 1);
    return s->hkey[j] ? &s->c[s->hpos[j]] : NULL;
}

/* The candidate of label, added when new; NULL when out of memory. */
static struct cand *cand_find(struct search *s, uint64_t label)
{
    if (s->cap) {
        size_t j = cand_slot(s, label + 1);
        if (s->hkey[j]) return &s->c[s->hpos[j]];
    }
    if (s->n == s->cap && cand_grow(s)) return NULL;
    size_t j = cand_slot(s, label + 1);
    s->hkey[j] = label + 1;
    s->hpos[j] = s->n;
    s->c[s->n] = (struct cand){.label = label, .dense = NAN, .keyword = NAN};
    return &s->c[s->n++];
}

/* Rebuilds the label index after c was reordered. */
static void cand_reindex(struct search *s)
{
    memset(s->hkey, 0, 2 * s->cap * sizeof *s->hkey);
    for (size_t i = 0; i < s->n; i++) {
        size_t j = cand_slot(s, s->c[i].label + 1);
        s->hkey[j] = s->c[i].label + 1;
        s->hpos[j] = i;
    }
}

/* Dense score first, then label (insertion order). */
static int cand_dense_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->dense != y->dense) return x->dense > y->dense ? -1 : 1;
    return (x->label > y->label) - (x->label < y->label);
}

/* A stored document's score for the query: its passages' cosines combined as a query's document
 * score (lead_weight; one of another dimension is a damaged store). */
static int cand_cosine(struct search *s, const struct store_record *r, float *out)
{
    return index_doc_score(r, s->qvec, (size_t)s->idx->meta.dim, s->p->q.lead_weight, out, NULL,
                           NULL);
}

/* Whether a stored document passes the filter (and, with a vector, min_score); sets its dense
 * score when it is not known (a document of the dense ranking keeps the vector index's score,
 * which already passed min_score). 0: no, 1: yes, < 0: an error. */
static int cand_accept(struct search *s, const struct store_record *r, struct cand *c)
{
    const struct sbert_index_query_params *qp = &s->p->q;
    if (qp->filter) {
        int m =
            filter_match_doc(qp->filter, r->meta, r->meta ? r->meta_len : 0, r->text, r->text_len);
        if (m != 1) return m < 0 && m != SBERT_INDEX_EMETADATA ? m : 0;
    }
    if (!s->qvec || c->dense_rank) return 1;
    int rc = cand_cosine(s, r, &c->dense);
    if (rc) return rc;
    return c->dense >= qp->min_score;
}

/* The keyword ranking's first `want` documents that pass the filter, as candidates. */
static int keyword_candidates(struct search *s, size_t want)
{
    struct index_hit *h;
    size_t nh;
    int rc = index_bm25_rank(s->bm, &h, &nh);
    uint32_t rank = 0;
    for (size_t i = 0; i < nh && !rc && rank < want; i++) {
        struct store_record r;
        int g = store_record_get(s->idx->st, s->txn, h[i].label, &r);
        if (g == SBERT_INDEX_ENOTFOUND) continue;
        if (g) {
            rc = store_error(g, "keyword search", NULL, 0);
            break;
        }
        const struct cand *old = cand_lookup(s, h[i].label);
        struct cand probe = old ? *old : (struct cand){.label = h[i].label, .dense = NAN};
        int a = cand_accept(s, &r, &probe);
        if (a < 0) rc = a;
        if (a != 1) continue;
        struct cand *c = cand_find(s, h[i].label);
        if (!c) {
            rc = SBERT_INDEX_ENOMEM;
            break;
        }
        c->dense = probe.dense;
        c->keyword = (float)h[i].score;
        c->keyword_rank = ++rank;
    }
    free(h);
    return rc;
}

/* The vector ranking's first `want` documents that pass the filter and min_score. */
static int dense_candidates(struct search *s, size_t want)
{
    int64_t *labels = malloc(want * sizeof *labels);
    float *scores = malloc(want * sizeof *scores);
    int rc = labels && scores ? 0 : SBERT_INDEX_ENOMEM;
    struct qfilter qf;
    qfilter_init(&qf, s->idx, s->p->q.filter);
    struct vindex_filter vf = {.keep = qfilter_keep, .user = &qf};
    char err[256];
    if (!rc) {
        int sr = vindex_search(s->idx->vi, s->qvec, 1, want, s->p->q.filter ? &vf : NULL, labels,
                               scores, err, sizeof err);
        if (sr) {
            ilog(s->idx, SBERT_INDEX_LOG_ERROR, "vector search failed: %s", err);
            rc = index_vindex_code(sr);
        } else if (atomic_load(&qf.failed))
            rc = SBERT_INDEX_EIO;
    }
    qfilter_end(&qf);
    /* the passages' documents, each once, scored as documents (the query's lead_weight), then
     * ranked by that score */
    size_t nd = 0;
    for (size_t i = 0; i < want && !rc; i++) {
        if (labels[i] < 0) continue;
        uint64_t doc;
        struct store_record r;
        int g = store_record_owner(s->idx->st, s->txn, (uint64_t)labels[i], &doc, &r);
        if (g == SBERT_INDEX_ENOTFOUND) continue;
        if (g) {
            rc = store_error(g, "search", NULL, 0);
            break;
        }
        if (cand_lookup(s, doc)) continue;
        float sc;
        if ((rc = cand_cosine(s, &r, &sc))) break;
        if (sc < s->p->q.min_score) continue;
        struct cand *c = cand_find(s, doc);
        if (!c) {
            rc = SBERT_INDEX_ENOMEM;
            break;
        }
        c->dense = sc;
        c->dense_rank = 1;
        nd++;
    }
    if (!rc && nd) {
        /* the dense candidates are the last nd added: rank them by their document score */
        struct cand *d = s->c + s->n - nd;
        qsort(d, nd, sizeof *d, cand_dense_cmp);
        for (size_t i = 0; i < nd; i++)
            d[i].dense_rank = (uint32_t)(i + 1);
        cand_reindex(s);
    }
    free(labels);
    free(scores);
    return rc;
}

/* Min-max normalisation of one ranking's scores over its candidates (field: 0 dense, 1 keyword);
 * a candidate outside the ranking counts 0. */
static void fuse_weighted(struct search *s, int field, double weight)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < s->n; i++) {
        struct cand *c = &s->c[i];
        if (!(field ? c->keyword_rank : c->dense_rank)) continue;
        double v = field ? c->keyword : c->dense;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    for (size_t i = 0; i < s->n; i++) {
        struct cand *c = &s->c[i];
        if (!(field ? c->keyword_rank : c->dense_rank)) continue;
        double v = field ? c->keyword : c->dense;
        c->fused += weight * (hi > lo ? (v - lo) / (hi - lo) : 1.0);
    }
}

static void fuse(struct search *s)
{
    const struct sbert_index_search_params *p = s->p;
    double rk = p->rrf_k > 0 ? p->rrf_k : 60.0;
    for (size_t i = 0; i < s->n; i++) {
        struct cand *c = &s->c[i];
        c->fused = 0;
        if (p->mode == SBERT_INDEX_MODE_KEYWORD)
            c->fused = c->keyword;
        else if (p->mode == SBERT_INDEX_MODE_DENSE)
            c->fused = c->dense;
        else if (p->fusion == SBERT_INDEX_FUSION_RRF)
            c->fused = (c->dense_rank ? 1.0 / (rk + c->dense_rank) : 0.0) +
                       (c->keyword_rank ? 1.0 / (rk + c->keyword_rank) : 0.0);
    }
    if (p->mode == SBERT_INDEX_MODE_HYBRID && p->fusion == SBERT_INDEX_FUSION_WEIGHTED) {
        fuse_weighted(s, 0, p->weight);
        fuse_weighted(s, 1, 1.0 - p->weight);
    }
}

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    if (x->fused != y->fused) return x->fused > y->fused ? -1 : 1;
    return (x->label > y->label) - (x->label < y->label);
}

/* The first k fused candidates still stored, filled as the caller asked. */
static int search_fill(struct search *s, struct sbert_index_results **out)
{
    const struct sbert_index_query_params *qp = &s->p->q;
    struct sbert_index_results *res = calloc(1, sizeof *res);
    if (!res || !(res->docs = calloc(qp->k, sizeof *res->docs))) {
        free(res);
        return SBERT_INDEX_ENOMEM;
    }
    res->dim = s->idx->meta.dim;
    size_t bytes = 0, max_bytes = qp->max_bytes ? qp->max_bytes : SIZE_MAX;
    int rc = 0;
    for (size_t i = 0; i < s->n && res->n < qp->k && !rc; i++) {
        struct cand *c = &s->c[i];
        struct store_record r;
        int g = store_record_get(s->idx->st, s->txn, c->label, &r);
        if (g == SBERT_INDEX_ENOTFOUND) continue; /* deleted after the vector search */
        if (g) {
            rc = store_error(g, "search", NULL, 0);
            break;
        }
        double kw = c->keyword_rank ? c->keyword : 0;
        if (s->bm && !c->keyword_rank && (rc = index_bm25_doc(s->bm, r.text, r.text_len, &kw)))
            break;
        if ((bytes += index_doc_bytes(&r, qp->include)) > max_bytes) {
            rc = SBERT_INDEX_ETOOBIG;
            break;
        }
        struct sbert_index_doc *d = &res->docs[res->n++];
        if ((rc = index_doc_fill(d, &r, qp->include))) break;
        d->score = (float)c->fused;
        d->dense_score = s->qvec ? c->dense : NAN;
        d->keyword_score = (float)kw;
        d->dense_rank = c->dense_rank;
        d->keyword_rank = c->keyword_rank;
    }
    if (rc) {
        sbert_index_results_free(res);
        return rc;
    }
    *out = res;
    return 0;
}

struct sbert_index_search_params sbert_index_search_default_params(void)
{
    struct sbert_index_search_params p = {.q = sbert_index_query_default_params(),
                                          .mode = SBERT_INDEX_MODE_DENSE,
                                          .fusion = SBERT_INDEX_FUSION_RRF,
                                          .weight = 0.5f};
    return p;
}

static int search_check(sbert_index *idx, const struct sbert_index_search_params *p)
{
    int m = p->mode;
    if (m != SBERT_INDEX_MODE_DENSE && m != SBERT_INDEX_MODE_KEYWORD &&
        m != SBERT_INDEX_MODE_HYBRID)
        return SBERT_INDEX_EINVAL;
    if (m != SBERT_INDEX_MODE_DENSE && (!p->text || !store_kw_language(idx->st)))
        return SBERT_INDEX_EINVAL;
    if (m != SBERT_INDEX_MODE_KEYWORD && !p->vector) return SBERT_INDEX_EINVAL;
    if (p->q.k < 1 || p->q.k > MAX_K || isnan(p->q.min_score) || p->candidates > MAX_K ||
        !(p->weight >= 0 && p->weight <= 1) || !(p->q.lead_weight >= 0 && p->q.lead_weight <= 1) ||
        !(p->diversity >= 0 && p->diversity <= 1) || !(p->bm25_k1 >= 0 && isfinite(p->bm25_k1)) ||
        !(p->bm25_b >= 0 && p->bm25_b <= 1) || isnan(p->rrf_k) || p->rrf_k < 0 ||
        (p->fusion != SBERT_INDEX_FUSION_RRF && p->fusion != SBERT_INDEX_FUSION_WEIGHTED))
        return SBERT_INDEX_EINVAL;
    if (p->vector && p->q.dim && p->q.dim != idx->meta.dim) return SBERT_INDEX_EMODEL;
    return 0;
}

/* Maximal marginal relevance over the candidates (sorted by the mode's score): picks, k times,
 * the one maximising (1 - diversity) * relevance - diversity * (its highest cosine with those
 * already picked), relevance being the mode's score min-max normalised over the candidates, and
 * moves the picks to the front in that order. Candidates deleted since the search are dropped,
 * and so are those past the first MMR_POOL. */
static int mmr(struct search *s)
{
    size_t n = s->n < MMR_POOL ? s->n : MMR_POOL, dim = (size_t)s->idx->meta.dim, k = s->p->q.k,
           live = 0;
    double lam = 1.0 - s->p->diversity;
    float *vec = malloc((n ? n : 1) * dim * sizeof *vec);
    double *best = malloc((n ? n : 1) * sizeof *best);
    int rc = vec && best ? 0 : SBERT_INDEX_ENOMEM;
    for (size_t i = 0; i < n && !rc; i++) {
        struct store_record r;
        int g = store_record_get(s->idx->st, s->txn, s->c[i].label, &r);
        if (g == SBERT_INDEX_ENOTFOUND) continue;
        if (g) {
            rc = store_error(g, "search", NULL, 0);
            break;
        }
        if (r.dim != dim) {
            rc = SBERT_INDEX_EFORMAT; /* a damaged record */
            break;
        }
        memcpy(vec + live * dim, r.doc_vector, dim * sizeof *vec);
        s->c[live++] = s->c[i];
    }
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < live; i++) {
        lo = s->c[i].fused < lo ? s->c[i].fused : lo;
        hi = s->c[i].fused > hi ? s->c[i].fused : hi;
        best[i] = -INFINITY; /* no pick yet: no redundancy */
    }
    size_t picked = 0;
    for (; !rc && picked < k && picked < live; picked++) {
        size_t arg = picked;
        double top = -INFINITY;
        for (size_t i = picked; i < live; i++) {
            double rel = hi > lo ? (s->c[i].fused - lo) / (hi - lo) : 1.0;
            double red = best[i] == -INFINITY ? 0.0 : best[i];
            double v = lam * rel - (1.0 - lam) * red;
            if (v > top) {
                top = v;
                arg = i;
            }
        }
        /* the pick moves to position `picked`, with its vector and redundancy */
        struct cand tc = s->c[arg];
        s->c[arg] = s->c[picked];
        s->c[picked] = tc;
        double tb = best[arg];
        best[arg] = best[picked];
        best[picked] = tb;
        for (size_t j = 0; j < dim; j++) {
            float t = vec[arg * dim + j];
            vec[arg * dim + j] = vec[picked * dim + j];
            vec[picked * dim + j] = t;
        }
        for (size_t i = picked + 1; i < live; i++) {
            double c = sbert_util_cosine(vec + i * dim, vec + picked * dim, dim);
            if (c > best[i]) best[i] = c;
        }
    }
    s->n = live;
    free(vec);
    free(best);
    return rc;
}

static int search_run(struct search *s, struct sbert_index_results **out)
{
    const struct sbert_index_search_params *p = s->p;
    int rc = 0;
    if (p->mode != SBERT_INDEX_MODE_DENSE &&
        (rc = index_bm25_new(s->idx, s->txn, p->text, p->text_len, p->bm25_k1, p->bm25_b, &s->bm)))
        return rc;
    size_t want = p->q.k;
    if (p->mode != SBERT_INDEX_MODE_KEYWORD || p->diversity > 0) {
        want = p->candidates ? p->candidates : DEFAULT_CANDIDATES;
        if (want < p->q.k) want = p->q.k;
    }
    if (p->mode != SBERT_INDEX_MODE_KEYWORD && (rc = dense_candidates(s, want))) return rc;
    if (p->mode != SBERT_INDEX_MODE_DENSE && (rc = keyword_candidates(s, want))) return rc;
    fuse(s);
    if (s->n) qsort(s->c, s->n, sizeof *s->c, cand_cmp); /* s->c is NULL for none */
    if (p->diversity > 0 && (rc = mmr(s))) return rc;
    return search_fill(s, out);
}

int sbert_index_search(sbert_index *idx, const struct sbert_index_search_params *params,
                       struct sbert_index_results **out)
{
    if (out) *out = NULL;
    if (!idx || !params || !out) return SBERT_INDEX_EINVAL;
    if (params->mode == SBERT_INDEX_MODE_DENSE && !(params->diversity > 0)) {
        if (!params->vector) return SBERT_INDEX_EINVAL;
        return sbert_index_query(idx, params->vector, &params->q, out);
    }
    int rc = index_read_enter(idx);
    if (rc) return rc;
    struct search s = {.idx = idx, .p = params};
    if ((rc = search_check(idx, params))) goto done;
    if (params->vector) {
        size_t dim = (size_t)idx->meta.dim;
        if (!(s.qvec = malloc(dim * sizeof *s.qvec))) {
            rc = SBERT_INDEX_ENOMEM;
            goto done;
        }
        if (sbert_util_normalise_into(params->vector, dim, s.qvec)) {
            rc = SBERT_INDEX_EINVAL;
            goto done;
        }
    }
    /* opened before the vector search: it holds the store's lock shared for the filter's
     * transactions (qfilter.c) */
    if ((rc = store_read_begin(idx->st, &s.txn))) {
        rc = store_error(rc, "search", NULL, 0);
        goto done;
    }
    rc = search_run(&s, out);
    store_read_end(idx->st, s.txn);
done:
    pthread_rwlock_unlock(&idx->swap);
    index_bm25_free(s.bm);
    free(s.qvec);
    free(s.c);
    free(s.hkey);
    free(s.hpos);
    return rc;
}
