/*
 * keyword.c — the keyword index's coordinator side: its check and build at open, its statistics,
 * and BM25 (index_bm25, internal.h) for search.c. The postings themselves are store_kw.c's.
 */
#define _GNU_SOURCE /* qsort_r */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "internal.h"
#include "kw_terms.h"
#include "sbert_text.h"

#define KW_BUILD_CHUNK 1024 /* documents per write transaction of a build */

/* ---- open: check, build ---------------------------------------------------------------------- */

/* The build's position (changed only after a chunk's transaction committed) and one chunk's
 * outcome (reset at each run of the transaction: store_write may run it again from scratch when
 * the map grows, even after its commit failed). */
struct kw_build {
    uint64_t next, done;
    int reset, end;
    struct kw_chunk {
        store *s;
        MDB_txn *txn;
        uint64_t next, done;
        int end;
    } out;
};

static int kw_build_doc(uint64_t label, const struct store_record *r, void *user)
{
    struct kw_chunk *c = user;
    c->done++;
    return store_kw_add(c->s, c->txn, label, r->text, r->text_len);
}

/* One chunk of the build in one write transaction (the first also empties the index, marked
 * incomplete with version 0); the last marks the index complete and current with the store's
 * change number. A crash in between leaves an incomplete index, built again at the next open. */
static int kw_build_fn(store *s, MDB_txn *txn, void *user)
{
    const struct kw_build *b = user;
    struct kw_chunk *c = &((struct kw_build *)user)->out;
    *c = (struct kw_chunk){.s = s, .txn = txn, .next = b->next};
    int rc = 0;
    if (b->reset && (rc = store_kw_reset(s, txn, 0))) return rc;
    if ((rc = store_docs_scan(s, txn, &c->next, KW_BUILD_CHUNK, kw_build_doc, c, &c->end)))
        return rc;
    if (c->end) rc = store_kw_complete(s, txn);
    return rc;
}

/* Whether the store's keyword index is complete and made by this analyzer. A missing or
 * undecodable record is not current (the index is derived: it is built again). */
static int kw_current(sbert_index *idx, int *current, struct store_kw_stats *st, char *errbuf,
                      size_t errlen)
{
    MDB_txn *txn;
    int rc = store_read_begin(idx->st, &txn);
    if (rc) return store_error(rc, "reading the keyword index", errbuf, errlen);
    rc = store_kw_stats_get(idx->st, txn, st);
    store_read_end(idx->st, txn);
    *current = rc == 0 && st->version == STORE_KW_VERSION &&
               strcmp(st->language, store_kw_language(idx->st)) == 0 &&
               st->change == idx->meta.change;
    if (rc == SBERT_INDEX_ENOTFOUND || rc == SBERT_INDEX_EFORMAT) {
        st->language[0] = '\0';
        return 0;
    }
    return rc ? store_error(rc, "reading the keyword index", errbuf, errlen) : 0;
}

static int kw_reset_fn(store *s, MDB_txn *txn, void *user)
{
    (void)user;
    return store_kw_reset(s, txn, STORE_KW_VERSION);
}

static int kw_drop_fn(store *s, MDB_txn *txn, void *user)
{
    (void)user;
    return store_kw_drop(s, txn);
}

int index_keyword_open(sbert_index *idx, char *errbuf, size_t errlen)
{
    if (strcmp(idx->kw_language, "off") == 0) {
        struct store_kw_stats st;
        MDB_txn *txn;
        int rc = store_read_begin(idx->st, &txn);
        if (rc) return store_error(rc, "reading the keyword index", errbuf, errlen);
        rc = store_kw_stats_get(idx->st, txn, &st);
        store_read_end(idx->st, txn);
        if (rc == SBERT_INDEX_ENOTFOUND) return 0; /* none to drop */
        if (rc && rc != SBERT_INDEX_EFORMAT)
            return store_error(rc, "reading the keyword index", errbuf, errlen);
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
    if ((rc = kw_current(idx, &current, &st, errbuf, errlen))) return rc;
    if (current) return 0;
    struct kw_build b = {.reset = 1};
    uint64_t total = 0;
    if ((rc = sbert_index_count(idx, &total))) return rc;
    if (total == 0) /* a new store: an empty index, complete */
        return store_write(idx->st, kw_reset_fn, NULL, errbuf, errlen);
    ilog(idx, SBERT_INDEX_LOG_INFO, "building the keyword index (%s) of %llu documents%s",
         store_kw_language(idx->st), (unsigned long long)total,
         st.language[0] ? " (it was built differently)" : "");
    while (!b.end) {
        if ((rc = store_write(idx->st, kw_build_fn, &b, errbuf, errlen))) return rc;
        b.next = b.out.next; /* committed: the chunk counts */
        b.done += b.out.done;
        b.end = b.out.end;
        b.reset = 0;
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
    if (rc) return store_error(rc, "stats", NULL, 0); /* ours as they are, LMDB's converted */
    snprintf(st->keyword_language, sizeof st->keyword_language, "%s", lang);
    st->keyword_docs = ks.docs;
    return 0;
}

/* ---- BM25 -------------------------------------------------------------------------------------
 */

/* A query's distinct terms sorted by their bytes (for bsearch), each with its count in the query
 * and its document frequency: at most KW_MAX_QUERY_TERMS of them (those that occur first) from
 * the first KW_MAX_OCCURRENCES terms of the text. The bounds keep one query's work linear in the
 * collection: a 64 KB query of distinct words would otherwise read the postings of thousands of
 * terms and compare every term of every hit's text with each of them. */
#define KW_MAX_OCCURRENCES 16384
#define KW_MAX_QUERY_TERMS 1024

struct kw_query {
    struct kw_terms occ; /* the occurrences; t's terms point into occ.buf */
    struct kw_qterm {
        struct kw_term term; /* its first occurrence */
        uint32_t qtf;
        uint64_t df;
    } * t;
    size_t n;
};

static int kw_qterm_bytes(const void *a, const void *b, void *occ)
{
    const struct kw_qterm *x = a, *y = b;
    const struct kw_terms *k = occ;
    return kw_terms_cmp(k, &x->term, k->buf + y->term.at, y->term.len);
}

static int kw_qterm_first(const void *a, const void *b)
{
    const struct kw_qterm *x = a, *y = b;
    return (x->term.first > y->term.first) - (x->term.first < y->term.first);
}

/* Analyses text into q's distinct terms (see struct kw_query). Returns 0 or SBERT_INDEX_ENOMEM;
 * kw_query_free(q) either way. */
static int kw_query_build(sbert_analyzer *an, const char *text, size_t len, struct kw_query *q)
{
    memset(q, 0, sizeof *q);
    int rc = kw_terms_collect(an, text, len, KW_MAX_OCCURRENCES, &q->occ);
    if (rc || !q->occ.n) return rc;
    if (!(q->t = malloc(q->occ.n * sizeof *q->t))) return SBERT_INDEX_ENOMEM;
    /* the occurrences come sorted, equal terms adjacent and in text order */
    for (size_t i = 0; i < q->occ.n; i++) {
        const struct kw_term *o = &q->occ.t[i];
        if (q->n && kw_terms_cmp(&q->occ, &q->t[q->n - 1].term, q->occ.buf + o->at, o->len) == 0)
            q->t[q->n - 1].qtf++;
        else
            q->t[q->n++] = (struct kw_qterm){.term = *o, .qtf = 1};
    }
    if (q->n > KW_MAX_QUERY_TERMS) {
        qsort(q->t, q->n, sizeof *q->t, kw_qterm_first);
        q->n = KW_MAX_QUERY_TERMS;
        qsort_r(q->t, q->n, sizeof *q->t, kw_qterm_bytes, &q->occ);
    }
    return 0;
}

/* The index of term in q's distinct terms, or -1. */
static long kw_query_find(const struct kw_query *q, const char *term, size_t len)
{
    size_t lo = 0, hi = q->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = kw_terms_cmp(&q->occ, &q->t[mid].term, term, len);
        if (c == 0) return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static void kw_query_free(struct kw_query *q)
{
    kw_terms_free(&q->occ);
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

/* A query's terms, the collection's statistics and an analyzer of the store's language. */
struct index_bm25 {
    sbert_index *idx;
    MDB_txn *txn;
    sbert_analyzer *an;
    struct kw_query q;
    struct bm25 p;
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

static int hit_cmp(const void *a, const void *b)
{
    const struct index_hit *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return (x->label > y->label) - (x->label < y->label);
}

int index_bm25_rank(index_bm25 *b, struct index_hit **hits, size_t *n)
{
    sbert_index *idx = b->idx;
    MDB_txn *txn = b->txn;
    struct kw_query *q = &b->q;
    const struct bm25 *p = &b->p;
    struct kw_map m = {0};
    int rc = 0;
    for (size_t i = 0; i < q->n && !rc; i++) {
        struct kw_accum a = {.map = &m, .p = p, .w = -(double)q->t[i].qtf, .df = &q->t[i].df};
        q->t[i].df = 0;
        rc = store_kw_postings(idx->st, txn, q->occ.buf + q->t[i].term.at, q->t[i].term.len,
                               kw_accum_posting, &a);
    }
    *hits = NULL;
    *n = 0;
    if (!rc && m.n && !(*hits = malloc(m.n * sizeof **hits))) rc = SBERT_INDEX_ENOMEM;
    if (!rc) {
        for (size_t i = 0; i < m.cap; i++)
            if (m.key[i]) (*hits)[(*n)++] = (struct index_hit){m.key[i] - 1, m.score[i]};
        if (*n) qsort(*hits, *n, sizeof **hits, hit_cmp); /* *hits is NULL for none */
    }
    kw_map_free(&m);
    return rc ? store_error(rc, "keyword search", NULL, 0) : 0;
}

/* ---- one document's BM25, for a hit that is not among the keyword candidates ---------------- */

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
    long i = kw_query_find(d->q, term, len);
    if (i >= 0) d->tf[i]++;
    return 0;
}

int index_bm25_doc(index_bm25 *b, const char *text, size_t len, double *score)
{
    sbert_analyzer *an = b->an;
    const struct kw_query *q = &b->q;
    const struct bm25 *p = &b->p;
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

/* ---- the handle ------------------------------------------------------------------------------ */

int index_bm25_new(sbert_index *idx, MDB_txn *txn, const char *text, size_t len, float k1, float b,
                   index_bm25 **out)
{
    *out = NULL;
    const char *lang = store_kw_language(idx->st);
    if (!lang) return SBERT_INDEX_EINVAL;
    index_bm25 *q = calloc(1, sizeof *q);
    if (!q) return SBERT_INDEX_ENOMEM;
    q->idx = idx;
    q->txn = txn;
    int rc = sbert_analyzer_new(lang, &q->an) ? SBERT_INDEX_ENOMEM : 0;
    if (!rc) rc = kw_query_build(q->an, text, len, &q->q);
    struct store_kw_stats st;
    if (!rc && (rc = store_kw_stats_get(idx->st, txn, &st)))
        rc = store_error(rc, "keyword search", NULL, 0); /* ours as they are, LMDB's converted */
    if (rc) {
        index_bm25_free(q);
        return rc;
    }
    q->p = (struct bm25){.k1 = k1 > 0 ? k1 : 1.5, /* 0: the defaults (search_check bounds them) */
                         .b = b > 0 ? b : 0.75,
                         .n_docs = (double)st.docs,
                         .avgdl = st.docs ? (double)st.terms / (double)st.docs : 0};
    *out = q;
    return 0;
}

void index_bm25_free(index_bm25 *q)
{
    if (!q) return;
    sbert_analyzer_free(q->an);
    kw_query_free(&q->q);
    free(q);
}
