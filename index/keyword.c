/*
 * keyword.c — the keyword index's coordinator side: its check and build at open, BM25 scoring
 * (sbert_index_search's keyword ranking) and the hybrid search that fuses it with the vector
 * index's ranking. The postings themselves are store_kw.c's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "internal.h"
#include "sbert_text.h"

#define KW_BUILD_CHUNK 1024 /* documents per write transaction of a build */
#define DEFAULT_CANDIDATES 100

/* ---- open: check, build ---------------------------------------------------------------------- */

struct kw_build {
    sbert_index *idx;
    store *s;
    MDB_txn *txn;
    uint64_t next, done, total;
    int reset, end;
};

static int kw_build_doc(uint64_t label, const struct store_record *r, void *user)
{
    struct kw_build *b = user;
    b->done++;
    return store_kw_add(b->s, b->txn, label, r->text, r->text_len);
}

/* One chunk of the build in one write transaction (the first also empties the index, marked
 * incomplete with version 0); the last marks the index complete. A crash in between leaves an
 * incomplete index, built again at the next open. */
static int kw_build_fn(store *s, MDB_txn *txn, void *user)
{
    struct kw_build *b = user;
    struct kw_build c = *b; /* the transaction may run again: nothing of b changes until the end */
    c.s = s;
    c.txn = txn;
    int rc = 0;
    if (c.reset && (rc = store_kw_reset(s, txn, 0))) return rc;
    if ((rc = store_docs_scan(s, txn, &c.next, KW_BUILD_CHUNK, kw_build_doc, &c, &c.end)))
        return rc;
    if (c.end) {
        struct store_kw_stats st;
        if ((rc = store_kw_stats_get(s, txn, &st))) return rc;
        st.version = STORE_KW_VERSION;
        if ((rc = store_kw_stats_put(s, txn, &st))) return rc;
    }
    c.reset = 0;
    *b = c;
    return 0;
}

/* Whether the store's keyword index is complete and made by this analyzer. */
static int kw_current(sbert_index *idx, int *current, struct store_kw_stats *st)
{
    MDB_txn *txn;
    int rc = store_read_begin(idx->st, &txn);
    if (rc) return store_error(rc, "reading the keyword index", NULL, 0);
    rc = store_kw_stats_get(idx->st, txn, st);
    store_read_end(idx->st, txn);
    *current = rc == 0 && st->version == STORE_KW_VERSION &&
               strcmp(st->language, store_kw_language(idx->st)) == 0;
    return rc == SBERT_INDEX_ENOTFOUND ? 0 : rc;
}

static int kw_drop_fn(store *s, MDB_txn *txn, void *user)
{
    (void)user;
    return store_kw_drop(s, txn);
}

int index_keyword_open(sbert_index *idx, char *errbuf, size_t errlen)
{
    if (strcmp(idx->kw_language, "off") == 0) {
        int current = 0;
        struct store_kw_stats st;
        MDB_txn *txn;
        int rc = store_read_begin(idx->st, &txn);
        if (rc) return store_error(rc, "reading the keyword index", errbuf, errlen);
        current = store_kw_stats_get(idx->st, txn, &st) == 0;
        store_read_end(idx->st, txn);
        if (!current) return 0;
        ilog(idx, SBERT_INDEX_LOG_INFO, "keyword_language = off: dropping the keyword index");
        return store_write(idx->st, kw_drop_fn, NULL, errbuf, errlen);
    }
    int rc = store_kw_setup(idx->st, idx->kw_language);
    if (rc == SBERT_INDEX_EINVAL)
        return sbert_util_errf(errbuf, errlen, rc,
                               "keyword language \"%s\": no Snowball stemmer of that name (and "
                               "not \"none\")",
                               idx->kw_language);
    if (rc) return rc;
    int current = 0;
    struct store_kw_stats st;
    if ((rc = kw_current(idx, &current, &st))) return rc;
    if (current) return 0;
    struct kw_build b = {.idx = idx, .reset = 1, .next = 0};
    uint64_t total = 0;
    if ((rc = sbert_index_count(idx, &total))) return rc;
    ilog(idx, SBERT_INDEX_LOG_INFO, "building the keyword index (%s) of %llu documents%s",
         store_kw_language(idx->st), (unsigned long long)total,
         st.language[0] ? " (it was built differently)" : "");
    while (!b.end) {
        if ((rc = store_write(idx->st, kw_build_fn, &b, errbuf, errlen))) return rc;
        if (idx->params.progress)
            idx->params.progress(idx->params.progress_user, "keyword", b.done, total);
    }
    return 0;
}

int index_keyword_stats(sbert_index *idx, struct sbert_index_stats *st)
{
    const char *lang = store_kw_language(idx->st);
    if (!lang) return 0;
    MDB_txn *txn;
    int rc = store_read_begin(idx->st, &txn);
    if (rc) return store_error(rc, "stats", NULL, 0);
    struct store_kw_stats ks;
    rc = store_kw_stats_get(idx->st, txn, &ks);
    if (!rc) rc = store_kw_size(idx->st, txn, &st->keyword_postings, &st->keyword_bytes);
    store_read_end(idx->st, txn);
    if (rc) return rc < 0 ? rc : store_error(rc, "stats", NULL, 0);
    snprintf(st->keyword_language, sizeof st->keyword_language, "%s", lang);
    st->keyword_docs = ks.docs;
    return 0;
}

/* ---- BM25 -------------------------------------------------------------------------------------
 */

/* The query's distinct terms with their counts, and each one's document frequency. */
struct kw_query {
    char *buf;
    size_t len, cap;
    struct kw_qterm {
        size_t at, len;
        uint32_t qtf;
        uint64_t df;
    } * t;
    size_t n, cap_t;
};

static int kw_qterm_add(const char *term, size_t len, uint32_t position, void *user)
{
    (void)position;
    struct kw_query *q = user;
    if (len > STORE_KW_MAX_TERM) len = STORE_KW_MAX_TERM;
    for (size_t i = 0; i < q->n; i++)
        if (q->t[i].len == len && memcmp(q->buf + q->t[i].at, term, len) == 0) {
            q->t[i].qtf++;
            return 0;
        }
    if (q->n == q->cap_t) {
        size_t cap = q->cap_t ? 2 * q->cap_t : 16;
        struct kw_qterm *nt = realloc(q->t, cap * sizeof *nt);
        if (!nt) return SBERT_INDEX_ENOMEM;
        q->t = nt;
        q->cap_t = cap;
    }
    if (q->len + len > q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 256;
        while (cap < q->len + len)
            cap *= 2;
        char *nb = realloc(q->buf, cap);
        if (!nb) return SBERT_INDEX_ENOMEM;
        q->buf = nb;
        q->cap = cap;
    }
    memcpy(q->buf + q->len, term, len);
    q->t[q->n] = (struct kw_qterm){.at = q->len, .len = len, .qtf = 1};
    q->len += len;
    q->n++;
    return 0;
}

static void kw_query_free(struct kw_query *q)
{
    free(q->buf);
    free(q->t);
}

/* label -> accumulated score, open addressing (label + 1 as the key: 0 marks a free slot). */
struct kw_map {
    uint64_t *key;
    double *score;
    size_t cap, n;
};

static uint64_t kw_hash(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static int kw_map_grow(struct kw_map *m)
{
    size_t cap = m->cap ? 2 * m->cap : 1024;
    uint64_t *key = calloc(cap, sizeof *key);
    double *score = malloc(cap * sizeof *score);
    if (!key || !score) {
        free(key);
        free(score);
        return SBERT_INDEX_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->key[i]) continue;
        size_t j = kw_hash(m->key[i]) & (cap - 1);
        while (key[j])
            j = (j + 1) & (cap - 1);
        key[j] = m->key[i];
        score[j] = m->score[i];
    }
    free(m->key);
    free(m->score);
    m->key = key;
    m->score = score;
    m->cap = cap;
    return 0;
}

static int kw_map_add(struct kw_map *m, uint64_t label, double s)
{
    if (2 * (m->n + 1) > m->cap && kw_map_grow(m)) return SBERT_INDEX_ENOMEM;
    uint64_t k = label + 1;
    size_t j = kw_hash(k) & (m->cap - 1);
    while (m->key[j] && m->key[j] != k)
        j = (j + 1) & (m->cap - 1);
    if (!m->key[j]) {
        m->key[j] = k;
        m->score[j] = 0;
        m->n++;
    }
    m->score[j] += s;
    return 0;
}

static void kw_map_free(struct kw_map *m)
{
    free(m->key);
    free(m->score);
}

struct bm25 {
    double k1, b, avgdl, n_docs;
};

static double bm25_idf(const struct bm25 *p, uint64_t df)
{
    return log(1.0 + (p->n_docs - (double)df + 0.5) / ((double)df + 0.5));
}

static double bm25_tf(const struct bm25 *p, uint32_t tf, uint32_t dl)
{
    double norm = p->avgdl > 0 ? (1.0 - p->b + p->b * (double)dl / p->avgdl) : 1.0;
    return (double)tf / ((double)tf + p->k1 * norm);
}

struct kw_accum {
    struct kw_map *map;
    const struct bm25 *p;
    double w;     /* idf * the term's count in the query */
    uint64_t *df; /* the term's document frequency, set from its postings */
};

static int kw_accum_posting(uint64_t label, uint32_t tf, uint32_t dl, uint64_t df, void *user)
{
    struct kw_accum *a = user;
    if (a->w < 0) a->w = -a->w * bm25_idf(a->p, df); /* first posting: df is known */
    *a->df = df;
    return kw_map_add(a->map, label, a->w * bm25_tf(a->p, tf, dl));
}

/* A scored label. */
struct hit {
    uint64_t label;
    double score;
};

static int hit_cmp(const void *a, const void *b)
{
    const struct hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->label > y->label) - (x->label < y->label);
}

/* Scores every document holding a query term; *hits (sorted, best first) is the caller's. */
static int bm25_rank(sbert_index *idx, MDB_txn *txn, struct kw_query *q, const struct bm25 *p,
                     struct hit **hits, size_t *n)
{
    struct kw_map m = {0};
    int rc = 0;
    for (size_t i = 0; i < q->n && !rc; i++) {
        struct kw_accum a = {.map = &m, .p = p, .w = -(double)q->t[i].qtf, .df = &q->t[i].df};
        q->t[i].df = 0;
        rc =
            store_kw_postings(idx->st, txn, q->buf + q->t[i].at, q->t[i].len, kw_accum_posting, &a);
    }
    *hits = NULL;
    *n = 0;
    if (!rc && m.n && !(*hits = malloc(m.n * sizeof **hits))) rc = SBERT_INDEX_ENOMEM;
    if (!rc) {
        for (size_t i = 0; i < m.cap; i++)
            if (m.key[i]) (*hits)[(*n)++] = (struct hit){m.key[i] - 1, m.score[i]};
        qsort(*hits, *n, sizeof **hits, hit_cmp);
    }
    kw_map_free(&m);
    return rc < 0 ? rc : rc ? store_error(rc, "keyword search", NULL, 0) : 0;
}

/* ---- one document's BM25, for a dense hit that is not among the keyword candidates ---------- */

struct kw_doc_score {
    const struct kw_query *q;
    uint32_t *tf;
    uint32_t dl;
};

static int kw_doc_term(const char *term, size_t len, uint32_t position, void *user)
{
    (void)position;
    struct kw_doc_score *d = user;
    if (len > STORE_KW_MAX_TERM) len = STORE_KW_MAX_TERM;
    d->dl++;
    for (size_t i = 0; i < d->q->n; i++)
        if (d->q->t[i].len == len && memcmp(d->q->buf + d->q->t[i].at, term, len) == 0) d->tf[i]++;
    return 0;
}

static int bm25_doc(sbert_analyzer *an, const struct kw_query *q, const struct bm25 *p,
                    const char *text, size_t len, double *score)
{
    struct kw_doc_score d = {.q = q, .tf = calloc(q->n ? q->n : 1, sizeof *d.tf)};
    if (!d.tf) return SBERT_INDEX_ENOMEM;
    int rc = sbert_analyzer_run(an, text, len, kw_doc_term, &d);
    *score = 0;
    for (size_t i = 0; i < q->n && !rc; i++)
        if (d.tf[i] && q->t[i].df)
            *score += q->t[i].qtf * bm25_idf(p, q->t[i].df) * bm25_tf(p, d.tf[i], d.dl);
    free(d.tf);
    return rc ? SBERT_INDEX_ENOMEM : 0;
}

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
    sbert_analyzer *an;
    struct kw_query q;
    struct bm25 bm;
    float *qvec; /* the normalised query vector, NULL without one */
    struct cand *c;
    size_t n, cap;
};

static struct cand *cand_find(struct search *s, uint64_t label)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->c[i].label == label) return &s->c[i];
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        struct cand *nc = realloc(s->c, cap * sizeof *nc);
        if (!nc) return NULL;
        s->c = nc;
        s->cap = cap;
    }
    s->c[s->n] = (struct cand){.label = label, .dense = NAN, .keyword = NAN};
    return &s->c[s->n++];
}

/* Whether a stored document passes the filter (and, with a vector, min_score); sets its dense
 * score. 0: no, 1: yes, < 0: an error. */
static int cand_accept(struct search *s, const struct store_record *r, struct cand *c)
{
    const struct sbert_index_query_params *qp = &s->p->q;
    if (qp->filter) {
        int m =
            filter_match_doc(qp->filter, r->meta, r->meta ? r->meta_len : 0, r->text, r->text_len);
        if (m != 1) return m < 0 && m != SBERT_INDEX_EMETADATA ? m : 0;
    }
    if (s->qvec && isnan(c->dense)) {
        float v[r->dim];
        memcpy(v, r->vector, sizeof v);
        c->dense = (float)sbert_util_cosine(v, s->qvec, r->dim);
    }
    if (s->qvec && c->dense < qp->min_score) return 0;
    return 1;
}

/* The keyword ranking's first `want` documents that pass the filter, as candidates. */
static int keyword_candidates(struct search *s, size_t want)
{
    struct hit *h;
    size_t nh;
    int rc = bm25_rank(s->idx, s->txn, &s->q, &s->bm, &h, &nh);
    uint32_t rank = 0;
    for (size_t i = 0; i < nh && !rc && rank < want; i++) {
        struct store_record r;
        int g = store_record_get(s->idx->st, s->txn, h[i].label, &r);
        if (g == SBERT_INDEX_ENOTFOUND) continue;
        if (g) {
            rc = store_error(g, "keyword search", NULL, 0);
            break;
        }
        struct cand probe = {.label = h[i].label, .dense = NAN};
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
    uint32_t rank = 0;
    for (size_t i = 0; i < want && !rc; i++) {
        if (labels[i] < 0 || scores[i] < s->p->q.min_score) continue;
        struct cand *c = cand_find(s, (uint64_t)labels[i]);
        if (!c) {
            rc = SBERT_INDEX_ENOMEM;
            break;
        }
        c->dense = scores[i];
        c->dense_rank = ++rank;
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
        if (!c->keyword_rank && (rc = bm25_doc(s->an, &s->q, &s->bm, r.text, r.text_len, &kw)))
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
        !(p->weight >= 0 && p->weight <= 1) || isnan(p->rrf_k) || p->rrf_k < 0 ||
        (p->fusion != SBERT_INDEX_FUSION_RRF && p->fusion != SBERT_INDEX_FUSION_WEIGHTED))
        return SBERT_INDEX_EINVAL;
    if (p->vector && p->q.dim && p->q.dim != idx->meta.dim) return SBERT_INDEX_EMODEL;
    return 0;
}

static int search_run(struct search *s, struct sbert_index_results **out)
{
    const struct sbert_index_search_params *p = s->p;
    int rc = sbert_analyzer_new(store_kw_language(s->idx->st), &s->an);
    if (rc) return SBERT_INDEX_ENOMEM;
    if ((rc = sbert_analyzer_run(s->an, p->text, p->text_len, kw_qterm_add, &s->q)))
        return rc == SBERT_TEXT_ENOMEM ? SBERT_INDEX_ENOMEM : rc;
    struct store_kw_stats st;
    if ((rc = store_kw_stats_get(s->idx->st, s->txn, &st)))
        return rc < 0 ? rc : store_error(rc, "keyword search", NULL, 0);
    s->bm = (struct bm25){.k1 = p->bm25_k1 > 0 ? p->bm25_k1 : 1.5,
                          .b = p->bm25_b > 0 ? p->bm25_b : 0.75,
                          .n_docs = (double)st.docs,
                          .avgdl = st.docs ? (double)st.terms / (double)st.docs : 0};
    size_t want = p->q.k;
    if (p->mode == SBERT_INDEX_MODE_HYBRID) {
        want = p->candidates ? p->candidates : DEFAULT_CANDIDATES;
        if (want < p->q.k) want = p->q.k;
        if ((rc = dense_candidates(s, want))) return rc;
    }
    if ((rc = keyword_candidates(s, want))) return rc;
    fuse(s);
    qsort(s->c, s->n, sizeof *s->c, cand_cmp);
    return search_fill(s, out);
}

int sbert_index_search(sbert_index *idx, const struct sbert_index_search_params *params,
                       struct sbert_index_results **out)
{
    if (out) *out = NULL;
    if (!idx || !params || !out) return SBERT_INDEX_EINVAL;
    if (params->mode == SBERT_INDEX_MODE_DENSE) {
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
    sbert_analyzer_free(s.an);
    kw_query_free(&s.q);
    free(s.qvec);
    free(s.c);
    return rc;
}
