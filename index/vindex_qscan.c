/*
 * vindex_qscan.c — the int8 copy of a Flat index and its search (see vindex_qscan.h): storage,
 * quantisation, the scalar reference kernel, kernel choice, and the scan split over threads
 * followed by the exact re-rank.
 */
#define _GNU_SOURCE
#include "vindex_qscan.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbert_util.h"

/* Default re-rank: QSCAN_RERANK_MULT * k candidates, at least QSCAN_RERANK_FLOOR (chosen by
 * recall@10 on real embeddings, see vindex.h). */
#define QSCAN_RERANK_MULT 10
#define QSCAN_RERANK_FLOOR 100
/* Rows whose dot products one kernel call computes (an int32 buffer on the stack). */
#define QSCAN_BLOCK 256

/* ------------------------------------------------------------------------------------------ */
/* kernels                                                                                    */

void qscan_dots_scalar(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out)
{
    for (size_t i = 0; i < n; i++, x += d) {
        int32_t s = 0;
        for (size_t j = 0; j < d; j++)
            s += (int32_t)q[j] * (int32_t)x[j];
        out[i] = s;
    }
}

static const char *const isa_names[QSCAN_NISA] = {"scalar", "avx2", "avx512vnni"};

const char *qscan_isa_name(int isa)
{
    return isa >= 0 && isa < QSCAN_NISA ? isa_names[isa] : NULL;
}

/* __builtin_cpu_supports also checks that the OS saves the vector state (XCR0). */
int qscan_isa_available(int isa)
{
    switch (isa) {
    case QSCAN_SCALAR:
        return 1;
#if defined(__x86_64__)
    case QSCAN_AVX2:
        return __builtin_cpu_supports("avx2");
    case QSCAN_AVX512VNNI:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vnni");
#endif
    default:
        return 0;
    }
}

qscan_dots_fn qscan_dots_get(int isa)
{
    switch (isa) {
    case QSCAN_SCALAR:
        return qscan_dots_scalar;
#if defined(__x86_64__)
    case QSCAN_AVX2:
        return qscan_dots_avx2;
    case QSCAN_AVX512VNNI:
        return qscan_dots_avx512vnni;
#endif
    default:
        return NULL;
    }
}

int qscan_isa_select(char *errbuf, size_t errlen)
{
    const char *force = getenv("SBERT_SCAN_ISA");
    if (force && *force) {
        int isa = -1;
        for (int i = 0; i < QSCAN_NISA; i++)
            if (strcmp(force, isa_names[i]) == 0) isa = i;
        if (isa < 0 || !qscan_isa_available(isa))
            return sbert_util_errf(errbuf, errlen, VINDEX_EINVAL, "SBERT_SCAN_ISA=%s: %s", force,
                                   isa < 0 ? "unknown kernel (scalar, avx2, avx512vnni)"
                                           : "this CPU cannot run that kernel");
        return isa;
    }
    for (int i = QSCAN_NISA - 1; i > 0; i--)
        if (qscan_isa_available(i)) return i;
    return QSCAN_SCALAR;
}

/* ------------------------------------------------------------------------------------------ */
/* the copy                                                                                   */

float qscan_quantise(const float *x, size_t d, int8_t *codes)
{
    float m = 0;
    for (size_t j = 0; j < d; j++)
        m = fmaxf(m, fabsf(x[j]));
    if (!(m > 0) || !isfinite(m)) {
        memset(codes, 0, d);
        return 0;
    }
    const float inv = 127.0f / m;
    for (size_t j = 0; j < d; j++) {
        float c = rintf(x[j] * inv);
        codes[j] = (int8_t)(c > 127 ? 127 : c < -127 ? -127 : c);
    }
    return m / 127.0f;
}

int qscan_reserve(struct qscan *q, size_t d, size_t want)
{
    if (want <= q->cap) return 0;
    size_t cap = q->cap ? q->cap : 1024;
    while (cap < want)
        cap *= 2;
    int8_t *c = realloc(q->codes, cap * d);
    if (!c) return VINDEX_ENOMEM;
    q->codes = c;
    float *s = realloc(q->scale, cap * sizeof *s);
    if (!s) return VINDEX_ENOMEM; /* codes grew, cap did not: still consistent */
    q->scale = s;
    q->cap = cap;
    return 0;
}

void qscan_append(struct qscan *q, size_t d, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++, q->n++)
        q->scale[q->n] = qscan_quantise(x + i * d, d, q->codes + q->n * d);
}

void qscan_swap_remove(struct qscan *q, size_t d, size_t pos)
{
    size_t last = q->n - 1;
    if (pos != last) {
        memcpy(q->codes + pos * d, q->codes + last * d, d);
        q->scale[pos] = q->scale[last];
    }
    q->n = last;
}

int qscan_rebuild(struct qscan *q, size_t d, const float *x, size_t n)
{
    q->n = 0;
    if (qscan_reserve(q, d, n) != 0) {
        qscan_free(q);
        return VINDEX_ENOMEM;
    }
    qscan_append(q, d, x, n);
    return 0;
}

void qscan_free(struct qscan *q)
{
    free(q->codes);
    free(q->scale);
    memset(q, 0, sizeof *q);
}

size_t qscan_memory_bytes(const struct qscan *q, size_t d)
{
    return q->cap * (d + sizeof(float));
}

size_t qscan_rerank_for(size_t k, size_t rerank)
{
    size_t r = rerank ? rerank : QSCAN_RERANK_MULT * k;
    if (!rerank && r < QSCAN_RERANK_FLOOR) r = QSCAN_RERANK_FLOOR;
    return r < k ? k : r;
}

/* ------------------------------------------------------------------------------------------ */
/* candidate heaps: a min-heap of the best cap entries, ordered by (score, then lower position
 * first), a total order, so the set kept does not depend on how the rows were split            */

struct cand {
    float s;
    int64_t pos;
};

/* a is worse than b */
static int worse(struct cand a, struct cand b)
{
    return a.s < b.s || (a.s == b.s && a.pos > b.pos);
}

struct heap {
    struct cand *c;
    size_t n, cap;
};

static void heap_sift_down(struct heap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && worse(h->c[l], h->c[m])) m = l;
        if (r < h->n && worse(h->c[r], h->c[m])) m = r;
        if (m == i) return;
        struct cand t = h->c[i];
        h->c[i] = h->c[m];
        h->c[m] = t;
        i = m;
    }
}

static void heap_push(struct heap *h, struct cand x)
{
    if (h->n < h->cap) {
        size_t i = h->n++;
        h->c[i] = x;
        while (i > 0 && worse(h->c[i], h->c[(i - 1) / 2])) {
            struct cand t = h->c[i];
            h->c[i] = h->c[(i - 1) / 2];
            h->c[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (worse(h->c[0], x)) {
        h->c[0] = x;
        heap_sift_down(h, 0);
    }
}

/* Whether x would enter h (before the filter is asked). */
static int heap_wants(const struct heap *h, struct cand x)
{
    return h->n < h->cap || worse(h->c[0], x);
}

/* ------------------------------------------------------------------------------------------ */
/* the search                                                                                 */

struct part {
    const struct qscan_view *v;
    const int8_t *qc;
    const struct vindex_filter *f;
    size_t a, b; /* rows [a, b) */
    struct heap h;
};

static void scan_part(struct part *p)
{
    const struct qscan_view *v = p->v;
    const size_t d = v->d;
    int32_t dots[QSCAN_BLOCK];
    for (size_t i = p->a; i < p->b; i += QSCAN_BLOCK) {
        size_t m = p->b - i < QSCAN_BLOCK ? p->b - i : QSCAN_BLOCK;
        v->dots(p->qc, v->q->codes + i * d, m, d, dots);
        for (size_t j = 0; j < m; j++) {
            struct cand c = {(float)dots[j] * v->q->scale[i + j], (int64_t)(i + j)};
            if (!heap_wants(&p->h, c)) continue;
            if (p->f && p->f->keep && !p->f->keep(v->ids[i + j], p->f->user)) continue;
            heap_push(&p->h, c);
        }
    }
}

static void *scan_thread(void *arg)
{
    scan_part(arg);
    return NULL;
}

static int cmp_final(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    return worse(*a, *b) ? 1 : worse(*b, *a) ? -1 : 0;
}

/* One query: scan in parts (the caller's thread takes the first), merge the parts' candidates
 * into the best all->cap, score those exactly and keep the best k. */
static void search_one(const struct qscan_view *v, const float *query, int8_t *qc, size_t k,
                       const struct vindex_filter *f, struct part *parts, int nparts,
                       struct heap *all, int64_t *L, float *S)
{
    const size_t n = v->q->n;
    qscan_quantise(query, v->d, qc);
    const size_t per = (n + (size_t)nparts - 1) / (size_t)nparts;
    pthread_t th[QSCAN_THREADS_MAX];
    int started[QSCAN_THREADS_MAX] = {0};
    for (int t = 0; t < nparts; t++) {
        struct part *p = &parts[t];
        p->v = v;
        p->qc = qc;
        p->f = f;
        p->a = (size_t)t * per < n ? (size_t)t * per : n;
        p->b = p->a + per < n ? p->a + per : n;
        p->h.n = 0;
        /* A thread that cannot start leaves its part to the caller's thread. */
        if (t > 0) started[t] = pthread_create(&th[t], NULL, scan_thread, p) == 0;
    }
    scan_part(&parts[0]);
    for (int t = 1; t < nparts; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            scan_part(&parts[t]);
    }
    all->n = 0;
    for (int t = 0; t < nparts; t++)
        for (size_t j = 0; j < parts[t].h.n; j++)
            heap_push(all, parts[t].h.c[j]);
    /* Exact scores, best first. */
    for (size_t j = 0; j < all->n; j++) {
        struct cand *c = &all->c[j];
        c->s = v->ip(query, v->xb + (size_t)c->pos * v->d, v->d);
    }
    qsort(all->c, all->n, sizeof *all->c, cmp_final);
    for (size_t j = 0; j < k; j++) {
        L[j] = j < all->n ? v->ids[all->c[j].pos] : -1;
        S[j] = j < all->n ? all->c[j].s : -INFINITY;
    }
}

int qscan_search(const struct qscan_view *v, const float *queries, size_t nq, size_t k,
                 size_t rerank, const struct vindex_filter *filter, int64_t *out_labels,
                 float *out_scores)
{
    const size_t n = v->q->n, r = qscan_rerank_for(k, rerank);
    int nparts = (int)(n / QSCAN_PART_MIN);
    if (nparts > v->threads) nparts = v->threads;
    if (nparts > QSCAN_THREADS_MAX) nparts = QSCAN_THREADS_MAX;
    if (nparts < 1) nparts = 1;
    struct part parts[QSCAN_THREADS_MAX];
    memset(parts, 0, sizeof parts);
    struct heap all = {calloc(r, sizeof(struct cand)), 0, r};
    int8_t *qc = malloc(v->d);
    int rc = all.c && qc ? 0 : VINDEX_ENOMEM;
    for (int t = 0; rc == 0 && t < nparts; t++) {
        parts[t].h.cap = r;
        if (!(parts[t].h.c = malloc(r * sizeof(struct cand)))) rc = VINDEX_ENOMEM;
    }
    for (size_t qi = 0; rc == 0 && qi < nq; qi++)
        search_one(v, queries + qi * v->d, qc, k, filter, parts, nparts, &all, out_labels + qi * k,
                   out_scores + qi * k);
    for (int t = 0; t < nparts; t++)
        free(parts[t].h.c);
    free(all.c);
    free(qc);
    return rc;
}
