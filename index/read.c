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
    for (size_t i = 0; i < d->n_passages; i++)
        free(d->passages[i].text);
    free(d->passages);
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
        memcpy(d->vector, r->doc_vector, r->dim * sizeof(float));
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

/* The exact cosine of the unit query q with the stored unit vector at v (maybe unaligned). */
static float vector_score(const void *at, const float *q, size_t dim)
{
    const unsigned char *v = at;
    double s = 0;
    for (size_t j = 0; j < dim; j++) {
        float x;
        memcpy(&x, v + j * sizeof x, sizeof x);
        s += (double)x * q[j];
    }
    return (float)s;
}

/* The exact cosine of the unit query q with passage i of r. */
static float passage_score(const struct store_record *r, size_t i, const float *q, size_t dim)
{
    return vector_score((const unsigned char *)r->vector + i * dim * sizeof(float), q, dim);
}

int index_doc_score(const struct store_record *r, const float *q, size_t dim, float lead_weight,
                    float *score, size_t *best, float *best_score)
{
    if (r->dim != dim) return SBERT_INDEX_EFORMAT;
    float top = passage_score(r, 0, q, dim);
    float lead = r->doc_vector == r->vector ? top : vector_score(r->doc_vector, q, dim);
    size_t arg = 0;
    for (size_t i = 1; i < r->n_passages; i++) {
        float x = passage_score(r, i, q, dim);
        if (x > top) {
            top = x;
            arg = i;
        }
    }
    *score = lead_weight * lead + (1 - lead_weight) * top;
    if (best) *best = arg;
    if (best_score) *best_score = top;
    return 0;
}

/* Adds to d passage i of r scored score, with its text, counting the text into *bytes. */
static int passage_add(struct sbert_index_doc *d, const struct store_record *r, size_t i,
                       float score)
{
    struct sbert_index_passage *ps = &d->passages[d->n_passages];
    size_t a, b;
    store_record_span(r, i, &a, &b);
    ps->start = a;
    ps->end = b;
    ps->score = score;
    ps->text_len = b - a;
    if (!(ps->text = index_dup_bytes(r->text + a, b - a))) return SBERT_INDEX_ENOMEM;
    d->n_passages++;
    return 0;
}

/* The bytes of the passages idx[0..n) of r. */
static size_t passages_bytes(const struct store_record *r, const size_t *idx, size_t n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t a, b;
        store_record_span(r, idx[i], &a, &b);
        bytes += b - a;
    }
    return bytes;
}

/* A candidate of a query: a document (label) or, grouping passages, a passage (label + i). */
struct qcand {
    uint64_t label;
    uint32_t passage;
    float score;
};

/* A candidate in the order of the results: score, then id. */
struct qorder {
    float score;
    const char *id;
    size_t id_len, at;
};

static int qorder_cmp(const void *a, const void *b)
{
    const struct qorder *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
    int c = memcmp(x->id, y->id, n);
    if (c) return c;
    if (x->id_len != y->id_len) return (x->id_len > y->id_len) - (x->id_len < y->id_len);
    return (x->at > y->at) - (x->at < y->at);
}

static int qcand_label_cmp(const void *a, const void *b)
{
    const struct qcand *x = a, *y = b;
    return (x->label > y->label) - (x->label < y->label);
}

/* One query's state: the normalised vector, its parameters, and its search's buffers. */
struct qrun {
    sbert_index *idx;
    MDB_txn *txn;
    const float *q;
    const struct sbert_index_query_params *p;
    size_t dim;
    const int64_t *labels; /* the search's hits, width of them */
    const float *scores;
    size_t width;
    int64_t *own_labels; /* a widened search's buffers (owned) */
    float *own_scores;
};

/* Searches q->p's query again with width hits into q's own buffers (with its filter). */
static int qrun_search(struct qrun *q, size_t width)
{
    int64_t *l = realloc(q->own_labels, width * sizeof *l);
    if (l) q->own_labels = l;
    float *sc = l ? realloc(q->own_scores, width * sizeof *sc) : NULL;
    if (!sc) return SBERT_INDEX_ENOMEM;
    q->own_scores = sc;
    struct qfilter qf;
    qfilter_init(&qf, q->idx, q->p->filter);
    struct vindex_filter vf = {.keep = qfilter_keep, .user = &qf};
    char err[256];
    int rc = vindex_search(q->idx->vi, q->q, 1, width, q->p->filter ? &vf : NULL, q->own_labels,
                           q->own_scores, err, sizeof err);
    if (rc) {
        ilog(q->idx, SBERT_INDEX_LOG_ERROR, "vector search failed: %s", err);
        rc = index_vindex_code(rc);
    } else if (atomic_load(&qf.failed))
        rc = atomic_load(&qf.failed);
    qfilter_end(&qf);
    q->labels = q->own_labels;
    q->scores = q->own_scores;
    q->width = width;
    return rc;
}

/* The distinct documents of the search's hits into c (width entries), *n of them, sorted by
 * label. Hits of passages deleted since the search are left out. */
static int qrun_docs(struct qrun *q, struct qcand *c, size_t *n)
{
    size_t m = 0;
    for (size_t i = 0; i < q->width; i++) {
        if (q->labels[i] < 0) continue;
        uint64_t doc;
        struct store_record r;
        int g = store_record_owner(q->idx->st, q->txn, (uint64_t)q->labels[i], &doc, &r);
        if (g == SBERT_INDEX_ENOTFOUND) continue;
        if (g) return store_error(g, "query", NULL, 0);
        c[m++] = (struct qcand){.label = doc};
    }
    if (m) qsort(c, m, sizeof *c, qcand_label_cmp);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (u == 0 || c[u - 1].label != c[i].label) c[u++] = c[i];
    *n = u;
    return 0;
}

/* Fills hit d from r: the document's fields, its score and its best passages (all of r's
 * passages scored; passage: the one hit when grouping passages). */
static int qrun_hit(struct qrun *q, const struct store_record *r, const struct qcand *c,
                    size_t *bytes, size_t max_bytes, struct sbert_index_doc *d)
{
    const struct sbert_index_query_params *p = q->p;
    size_t want = p->group_passages ? 1 : p->passages_per_doc ? p->passages_per_doc : 1;
    if (want > r->n_passages) want = r->n_passages;
    size_t *top = malloc(want * sizeof *top);
    float *tops = malloc(want * sizeof *tops);
    int rc = top && tops ? 0 : SBERT_INDEX_ENOMEM;
    size_t nt = 0;
    if (!rc && p->group_passages) {
        top[0] = c->passage;
        tops[0] = c->score;
        nt = 1;
    }
    /* the best `want` passages, by insertion into a sorted list (want is small) */
    for (size_t i = 0; !rc && !p->group_passages && i < r->n_passages; i++) {
        float x = passage_score(r, i, q->q, q->dim);
        if (nt == want && !(x > tops[nt - 1])) continue;
        size_t j = nt < want ? nt++ : nt - 1;
        for (; j > 0 && x > tops[j - 1]; j--) {
            top[j] = top[j - 1];
            tops[j] = tops[j - 1];
        }
        top[j] = i;
        tops[j] = x;
    }
    /* counted before the copy, as in sbert_index_get_max */
    if (!rc && (*bytes += index_doc_bytes(r, p->include) + passages_bytes(r, top, nt)) > max_bytes)
        rc = SBERT_INDEX_ETOOBIG;
    if (!rc) rc = index_doc_fill(d, r, p->include);
    if (!rc && !(d->passages = calloc(nt, sizeof *d->passages))) rc = SBERT_INDEX_ENOMEM;
    for (size_t i = 0; !rc && i < nt; i++)
        rc = passage_add(d, r, top[i], tops[i]);
    d->score = c->score;
    free(top);
    free(tops);
    return rc;
}

/* The candidates of a search grouped to documents and scored exactly: c (width entries) gets
 * those that reach min_score, *n of them. The search is widened while it found fewer than k
 * documents and more passages exist. */
static int qrun_rank_docs(struct qrun *q, struct qcand **cp, size_t *n)
{
    const struct sbert_index_query_params *p = q->p;
    size_t total = vindex_count(q->idx->vi), m = 0;
    int rc;
    struct qcand *c = *cp;
    for (;;) {
        if ((rc = qrun_docs(q, c, &m))) return rc;
        /* a full search (its last hit is a passage) could have missed documents */
        if (m >= p->k || q->width >= total || q->width >= MAX_WIDTH || q->labels[q->width - 1] < 0)
            break;
        size_t w = q->width * 4 < MAX_WIDTH ? q->width * 4 : MAX_WIDTH;
        struct qcand *g = realloc(c, w * sizeof *g);
        if (!g) return SBERT_INDEX_ENOMEM;
        *cp = c = g;
        if ((rc = qrun_search(q, w))) return rc;
    }
    size_t kept = 0;
    for (size_t i = 0; i < m; i++) {
        struct store_record r;
        uint64_t doc = c[i].label;
        int g = store_record_get(q->idx->st, q->txn, doc, &r);
        if (g) return store_error(g, "query", NULL, 0);
        float sc;
        if ((rc = index_doc_score(&r, q->q, q->dim, p->lead_weight, &sc, NULL, NULL))) return rc;
        if (sc < p->min_score) continue;
        c[kept++] = (struct qcand){.label = doc, .score = sc};
    }
    *n = kept;
    return 0;
}

/* The passage hits of a search, best first, that reach min_score: c gets them, *n of them. */
static int qrun_rank_passages(struct qrun *q, struct qcand *c, size_t *n)
{
    size_t m = 0;
    for (size_t i = 0; i < q->width; i++) {
        if (q->labels[i] < 0 || q->scores[i] < q->p->min_score) continue;
        uint64_t doc;
        struct store_record r;
        int g = store_record_owner(q->idx->st, q->txn, (uint64_t)q->labels[i], &doc, &r);
        if (g == SBERT_INDEX_ENOTFOUND) continue;
        if (g) return store_error(g, "query", NULL, 0);
        c[m++] = (struct qcand){.label = doc,
                                .passage = (uint32_t)((uint64_t)q->labels[i] - doc),
                                .score = q->scores[i]};
    }
    *n = m;
    return 0;
}

/* Fills *out with the hits of one query, from the search's labels/scores[0..width) (-1: none),
 * as sbert_index_query documents, counting their bytes against max_bytes. */
static int query_fill(sbert_index *idx, MDB_txn *txn, const float *qv, const int64_t *labels,
                      const float *scores, size_t width, const struct sbert_index_query_params *p,
                      struct sbert_index_results **out)
{
    struct qrun q = {.idx = idx,
                     .txn = txn,
                     .q = qv,
                     .p = p,
                     .dim = (size_t)idx->meta.dim,
                     .labels = labels,
                     .scores = scores,
                     .width = width};
    struct qcand *c = malloc((width ? width : 1) * sizeof *c);
    struct sbert_index_results *res = results_new(p->k, idx->meta.dim);
    size_t n = 0, bytes = 0, max_bytes = p->max_bytes ? p->max_bytes : SIZE_MAX;
    int rc = c && res ? 0 : SBERT_INDEX_ENOMEM;
    if (!rc) rc = p->group_passages ? qrun_rank_passages(&q, c, &n) : qrun_rank_docs(&q, &c, &n);
    size_t hits = 0;
    if (!rc) {
        struct qorder *ord = malloc((n ? n : 1) * sizeof *ord);
        /* scores first, then ties by id: the order needs the ids, so every candidate's id is
         * read (cheap), and only the first k are filled */
        for (size_t i = 0; !rc && ord && i < n; i++) {
            struct store_record r;
            int g = store_record_get(idx->st, txn, c[i].label, &r);
            if (g) {
                rc = store_error(g, "query", NULL, 0);
                break;
            }
            /* the id is borrowed from the map while txn is open */
            ord[i] = (struct qorder){.score = c[i].score, .id = r.id, .id_len = r.id_len, .at = i};
        }
        if (!ord) rc = SBERT_INDEX_ENOMEM;
        if (!rc && n) qsort(ord, n, sizeof *ord, qorder_cmp);
        for (size_t i = 0; !rc && i < n && hits < p->k; i++) {
            const struct qcand *ci = &c[ord[i].at];
            struct store_record r;
            int g = store_record_get(idx->st, txn, ci->label, &r);
            if (g) {
                rc = store_error(g, "query", NULL, 0);
                break;
            }
            rc = qrun_hit(&q, &r, ci, &bytes, max_bytes, &res->docs[hits]);
            hits++;
        }
        free(ord);
    }
    free(c);
    free(q.own_labels);
    free(q.own_scores);
    if (res) res->n = hits;
    if (rc) {
        sbert_index_results_free(res);
        return rc;
    }
    *out = res;
    return 0;
}

/* The width of a query's first search: k passages when every document has one, more when
 * documents have several (the search widens from there when that was not enough). */
static size_t query_width(sbert_index *idx, MDB_txn *txn, const struct sbert_index_query_params *p)
{
    uint64_t docs = 0;
    size_t passages = vindex_count(idx->vi);
    if (p->group_passages || store_doc_count(idx->st, txn, &docs) || passages <= docs) return p->k;
    return 2 * p->k;
}

/* One filtered query: its own search, with the filter as the vindex keep callback. */
static int query_filtered(sbert_index *idx, MDB_txn *txn, const float *q,
                          const struct sbert_index_query_params *p,
                          struct sbert_index_results **out)
{
    struct qrun r = {.idx = idx, .txn = txn, .q = q, .p = p, .dim = (size_t)idx->meta.dim};
    int rc = qrun_search(&r, query_width(idx, txn, p));
    if (!rc) rc = query_fill(idx, txn, q, r.labels, r.scores, r.width, p, out);
    free(r.own_labels);
    free(r.own_scores);
    return rc;
}

/* Checks each query's parameters into rcs (entered: index_read_enter's code, applied to all);
 * counts the unfiltered ones (*ng). */
static void query_check(const struct sbert_index_query_params *params, size_t nq, size_t dim,
                        int entered, int *rcs, struct sbert_index_results **out, size_t *ng)
{
    *ng = 0;
    for (size_t i = 0; i < nq; i++) {
        const struct sbert_index_query_params *p = &params[i];
        out[i] = NULL;
        rcs[i] = entered;
        if (!rcs[i] && (p->k < 1 || p->k > MAX_K || isnan(p->min_score) ||
                        !(p->lead_weight >= 0 && p->lead_weight <= 1) ||
                        p->passages_per_doc > MAX_PASSAGES_PER_DOC))
            rcs[i] = SBERT_INDEX_EINVAL;
        if (!rcs[i] && p->dim && (size_t)p->dim != dim) rcs[i] = SBERT_INDEX_EMODEL;
        if (!rcs[i] && !p->filter) (*ng)++;
    }
}

/* The buffers of query_many: rows 0..ng) of q hold the unfiltered queries, packed for the shared
 * search (kmax hits each); row ng the filtered one being searched. */
struct query_bufs {
    float *q;
    size_t *row;
    int64_t *labels;
    float *scores;
    size_t ng, kmax;
};

/* Searches the unfiltered queries together, then answers every query in order. */
static int query_run(sbert_index *idx, MDB_txn *txn, const float *vectors, size_t nq,
                     const struct sbert_index_query_params *params,
                     struct sbert_index_results **out, int *rcs, struct query_bufs *b)
{
    size_t dim = (size_t)idx->meta.dim, ng = b->ng, kmax = b->kmax;
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
            rcs[i] = query_fill(idx, txn, b->q + b->row[i] * dim, b->labels + b->row[i] * kmax,
                                b->scores + b->row[i] * kmax, kmax, &params[i], &out[i]);
        else if (sbert_util_normalise_into(vectors + i * dim, dim, b->q + ng * dim))
            rcs[i] = SBERT_INDEX_EINVAL;
        else
            rcs[i] = query_filtered(idx, txn, b->q + ng * dim, &params[i], &out[i]);
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
    size_t dim = (size_t)idx->meta.dim;
    struct query_bufs b = {0};
    query_check(params, nq, dim, rc, rcs, out, &b.ng);
    if (rc) return rc;
    /* The read transaction is opened first: it holds the store's lock shared, so the map cannot
     * be resized under the filter's transactions. */
    MDB_txn *txn = NULL;
    if ((rc = store_read_begin(idx->st, &txn))) goto done;
    for (size_t i = 0; i < nq; i++)
        if (!rcs[i] && !params[i].filter) {
            size_t w = query_width(idx, txn, &params[i]);
            if (w > b.kmax) b.kmax = w;
        }
    b.q = malloc((b.ng + 1) * dim * sizeof *b.q);
    b.row = malloc(nq * sizeof *b.row);
    b.labels = malloc((b.ng * b.kmax + 1) * sizeof *b.labels);
    b.scores = malloc((b.ng * b.kmax + 1) * sizeof *b.scores);
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
