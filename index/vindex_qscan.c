/*
 * vindex_qscan.c — the int8 copy of a Flat index and its search (see vindex_qscan.h): storage,
 * quantisation, the scalar reference kernel, kernel choice, and the scan split over threads
 * followed by the exact re-rank.
 */
#define _GNU_SOURCE
#include "vindex_qscan.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbert_util.h"

/* Default re-rank: QSCAN_RERANK_MULT * k candidates, at least QSCAN_RERANK_FLOOR (chosen by
 * recall@10 on real embeddings, see vindex.h). */
#define QSCAN_RERANK_MULT 10
#define QSCAN_RERANK_FLOOR 100
/* The binary stage keeps QSCAN_BINARY_MULT * k candidates, at least QSCAN_BINARY_FLOOR (and at
 * least the int8 re-rank's count), for the exact re-rank (chosen by recall@10 at 1M, vindex.h). */
#define QSCAN_BINARY_MULT 100
#define QSCAN_BINARY_FLOOR 1000
/* Rows whose dot products one kernel call computes (an int32 buffer on the stack). */
#define QSCAN_BLOCK 256
/* Rows a worker claims at a time (3 MB of codes at dim 384). */
#define QSCAN_CHUNK 8192
/* a bit kernel's call starts at a block of the sign bits */
_Static_assert(QSCAN_BLOCK % QSCAN_BB == 0 && QSCAN_CHUNK % QSCAN_BLOCK == 0, "blocks");

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

void qscan_bits_lut(const int8_t *qb, size_t d, uint8_t *lut)
{
    const size_t noct = QSCAN_BOCT(d);
    for (size_t g = 0; g < 2 * noct; g++) {
        int c[4];
        for (size_t t = 0; t < 4; t++)
            c[t] = 4 * g + t < d ? qb[4 * g + t] : 0;
        const size_t o = g / 2;
        uint8_t *e = lut + 128 * (o / 2) + 64 * (g % 2) + 32 * (o % 2);
        for (int v = 0; v < 16; v++) {
            int s = QSCAN_BITS_BIAS;
            for (int t = 0; t < 4; t++)
                s += (v >> t) & 1 ? c[t] : 0;
            e[v] = e[v + 16] = (uint8_t)s;
        }
    }
}

void qscan_bits_scalar(const uint8_t *lut, const uint8_t *b, size_t n, size_t d, int32_t *out)
{
    const size_t noct = QSCAN_BOCT(d);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *blk = b + (i / QSCAN_BB) * QSCAN_BB * noct + i % QSCAN_BB;
        int32_t s = -(int32_t)(2 * noct) * QSCAN_BITS_BIAS;
        for (size_t o = 0; o < noct; o++) {
            const uint8_t *t = lut + 128 * (o / 2) + 32 * (o % 2), x = blk[QSCAN_BB * o];
            s += t[x & 15] + t[64 + (x >> 4)];
        }
        out[i] = s;
    }
}

static const char *const isa_names[QSCAN_NISA] = {"scalar", "avx2", "avxvnni", "avx512vnni"};

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
    case QSCAN_AVXVNNI:
        return sbert_util_cpu_avxvnni();
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
    case QSCAN_AVXVNNI:
        return qscan_dots_avxvnni;
    case QSCAN_AVX512VNNI:
        return qscan_dots_avx512vnni;
#endif
    default:
        return NULL;
    }
}

qscan_bits_fn qscan_bits_get(int isa)
{
    switch (isa) {
    case QSCAN_SCALAR:
        return qscan_bits_scalar;
#if defined(__x86_64__)
    case QSCAN_AVX2:
    case QSCAN_AVXVNNI:
        return qscan_bits_avx2;
    case QSCAN_AVX512VNNI:
        return qscan_bits_avx512vnni;
#endif
    default:
        return NULL;
    }
}

/* 1 when isa's dot-product kernel gives the scalar kernel's sums on this CPU (fixed
 * pseudo-random codes in [-127, 127], 9 rows of 385: every tail). Why: the AVX-VNNI kernel was
 * checked through an EVEX twin of its source before any CPU with AVX-VNNI ran it. */
static int dots_agree(int isa)
{
    enum { N = 9, D = 385 };
    int8_t q[D], x[N * D];
    int32_t want[N], got[N];
    uint32_t r = 2463534242u;
    for (size_t i = 0; i < D + N * D; i++)
        *(i < D ? &q[i] : &x[i - D]) = (int8_t)((int)(sbert_util_xorshift32(&r) % 255) - 127);
    qscan_dots_scalar(q, x, N, D, want);
    qscan_dots_get(isa)(q, x, N, D, got);
    return !memcmp(want, got, sizeof want);
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
                                   isa < 0 ? "unknown kernel (scalar, avx2, avxvnni, avx512vnni)"
                                           : "this CPU cannot run that kernel");
        if (!dots_agree(isa))
            return sbert_util_errf(errbuf, errlen, VINDEX_EINVAL,
                                   "SBERT_SCAN_ISA=%s: the kernel disagrees with the scalar "
                                   "reference on this CPU",
                                   force);
        return isa;
    }
    /* the best kernel the CPU has whose sums agree with the scalar ones here */
    for (int i = QSCAN_NISA - 1; i > 0; i--)
        if (qscan_isa_available(i) && dots_agree(i)) return i;
    return QSCAN_SCALAR;
}

/* ------------------------------------------------------------------------------------------ */
/* the copy                                                                                   */

/* x quantised to integers in [-levels, levels] with one scale; returns the scale. */
static float quantise(const float *x, size_t d, int levels, int8_t *codes)
{
    float m = 0;
    for (size_t j = 0; j < d; j++) /* not fmaxf: a libm call per component, 3% of a 1M add */
        m = fabsf(x[j]) > m ? fabsf(x[j]) : m;
    if (!(m > 0) || !isfinite(m)) {
        memset(codes, 0, d);
        return 0;
    }
    const float top = (float)levels, inv = top / m;
    for (size_t j = 0; j < d; j++) {
        float c = rintf(x[j] * inv);
        /* NaN (a caller's bad vector) must not reach the conversion: that is undefined */
        codes[j] = (int8_t)(c > top ? top : c >= -top ? c : c < -top ? -top : 0);
    }
    return m / top;
}

float qscan_quantise(const float *x, size_t d, int8_t *codes)
{
    return quantise(x, d, 127, codes);
}

void qscan_bits_quantise(const float *x, size_t d, int8_t *qb)
{
    quantise(x, d, QSCAN_BITS_QMAX, qb);
}

int qscan_reserve(struct qscan *q, size_t d, size_t want)
{
    if (want <= q->cap) return 0;
    size_t cap = q->cap ? q->cap : 1024; /* a multiple of QSCAN_BB, doubled */
    while (cap < want)
        cap *= 2;
    int8_t *c = realloc(q->codes, cap * d);
    if (!c) return VINDEX_ENOMEM;
    q->codes = c;
    float *s = realloc(q->scale, cap * sizeof *s);
    if (!s) return VINDEX_ENOMEM; /* codes grew, cap did not: still consistent */
    q->scale = s;
    uint8_t *b = realloc(q->bits, cap * QSCAN_BOCT(d));
    if (!b) return VINDEX_ENOMEM;
    q->bits = b;
    q->cap = cap;
    return 0;
}

/* Byte of row i's octet 0 of sign bits; octet o is QSCAN_BB * o further. */
static uint8_t *bits_at(const struct qscan *q, size_t d, size_t i)
{
    return q->bits + (i / QSCAN_BB) * QSCAN_BB * QSCAN_BOCT(d) + i % QSCAN_BB;
}

void qscan_append(struct qscan *q, size_t d, const float *x, size_t n)
{
    const size_t noct = QSCAN_BOCT(d);
    for (size_t i = 0; i < n; i++, q->n++) {
        const int8_t *c = q->codes + q->n * d;
        q->scale[q->n] = qscan_quantise(x + i * d, d, q->codes + q->n * d);
        /* a new block starts zeroed: its rows past n stay zero */
        if (q->n % QSCAN_BB == 0) memset(bits_at(q, d, q->n), 0, QSCAN_BB * noct);
        uint8_t *b = bits_at(q, d, q->n);
        for (size_t j = 0; j < d; j++)
            b[QSCAN_BB * (j / 8)] |= (uint8_t)((c[j] > 0) << (j % 8));
    }
}

void qscan_swap_remove(struct qscan *q, size_t d, size_t pos)
{
    size_t last = q->n - 1;
    uint8_t *from = bits_at(q, d, last);
    if (pos != last) {
        memcpy(q->codes + pos * d, q->codes + last * d, d);
        uint8_t *to = bits_at(q, d, pos);
        for (size_t o = 0; o < QSCAN_BOCT(d); o++)
            to[QSCAN_BB * o] = from[QSCAN_BB * o];
        q->scale[pos] = q->scale[last];
    }
    for (size_t o = 0; o < QSCAN_BOCT(d); o++)
        from[QSCAN_BB * o] = 0;
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
    free(q->bits);
    memset(q, 0, sizeof *q);
}

size_t qscan_memory_bytes(const struct qscan *q, size_t d)
{
    return q->cap * (d + QSCAN_BOCT(d) + sizeof(float));
}

size_t qscan_binary_cands_for(size_t k, size_t rerank)
{
    size_t c = QSCAN_BINARY_MULT * k;
    if (c < QSCAN_BINARY_FLOOR) c = QSCAN_BINARY_FLOOR;
    return c < rerank ? rerank : c;
}

size_t qscan_rerank_for(size_t k, size_t rerank)
{
    size_t r = rerank ? rerank : QSCAN_RERANK_MULT * k;
    if (!rerank && r < QSCAN_RERANK_FLOOR) r = QSCAN_RERANK_FLOOR;
    return r < k ? k : r;
}

/* ------------------------------------------------------------------------------------------ */
/* candidate sets: the best cap entries by (score, then lower position first), a total order, so
 * the set kept does not depend on how the rows were split. Not a heap: a binary scan keeps 1000
 * candidates and a heap's pushes (thousands a query, each sifting through 10 levels) cost a third
 * of its kernel's time. Entries better than the bar are appended to a buffer of 2 cap; a full
 * buffer is cut to its best cap by a quickselect, and the bar rises to the worst of them, so a
 * push costs O(1) amortised (FAISS's ReservoirTopN does the same). Whatever the bar rejects is
 * worse than cap entries seen, so the set left after the last cut is the best cap of all offered.
 */

struct cand {
    float s;
    int64_t pos;
};

/* a is worse than b */
static int worse(struct cand a, struct cand b)
{
    return a.s < b.s || (a.s == b.s && a.pos > b.pos);
}

struct best {
    struct cand *c; /* 2 * cap */
    size_t n, cap;
    struct cand bar; /* when barred: entries no better than it are not wanted */
    int barred;
};

static void cand_swap(struct cand *a, struct cand *b)
{
    struct cand t = *a;
    *a = *b;
    *b = t;
}

/* Moves the best k of c[0 .. n) to c[0 .. k), in no order (quickselect, middle pivot). */
static void select_best(struct cand *c, size_t n, size_t k)
{
    size_t lo = 0, hi = n; /* c[0 .. lo) are among the best k, c[hi .. n) are not */
    while (lo < k && k < hi) {
        cand_swap(&c[lo + (hi - lo) / 2], &c[hi - 1]);
        const struct cand p = c[hi - 1];
        size_t s = lo;
        for (size_t i = lo; i + 1 < hi; i++)
            if (worse(p, c[i])) cand_swap(&c[i], &c[s++]);
        cand_swap(&c[s], &c[hi - 1]); /* the pivot at s: better ones before it, worse after */
        if (s < k)
            lo = s + 1;
        else
            hi = s;
    }
}

/* Cuts b to its best cap entries; the bar rises to the worst of them. */
static void best_cut(struct best *b)
{
    if (b->n <= b->cap) return;
    select_best(b->c, b->n, b->cap);
    b->n = b->cap;
    b->bar = b->c[0];
    for (size_t i = 1; i < b->n; i++)
        if (worse(b->c[i], b->bar)) b->bar = b->c[i];
    b->barred = 1;
}

/* Whether x would enter b (before the filter is asked). */
static int best_wants(const struct best *b, struct cand x)
{
    return !b->barred || worse(b->bar, x);
}

static void best_push(struct best *b, struct cand x)
{
    if (b->n == 2 * b->cap) best_cut(b);
    b->c[b->n++] = x;
}

/* ------------------------------------------------------------------------------------------ */
/* the search                                                                                 */

/* One query's scan, shared by the caller's thread and its helpers. The rows are cut into chunks
 * that whoever is free claims (next); a worker keeps its candidates in its own set. A helper
 * that the scheduler starts late finds no chunk left and only drops its reference, so a busy
 * machine never makes the caller wait for a thread that has not run (measured under load 9 on 2
 * cores: a fixed half per thread, joined, made the 100k scan's p50 5.2 ms against 2.4 ms on one
 * thread). The last reference frees the job. */
struct job {
    const struct qscan_view *v;
    const struct vindex_filter *f;
    int8_t *qc;   /* the query's codes: int8, or the binary stage's */
    uint8_t *lut; /* the binary stage's tables of qc (QSCAN_LUT_BYTES) */
    size_t n, nchunks;
    atomic_size_t next; /* chunks claimed */
    atomic_size_t done; /* chunks finished */
    atomic_int refs;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* done reached nchunks */
    int nworkers;
    int binary;                       /* scan the sign bits, not the int8 codes */
    struct best h[QSCAN_THREADS_MAX]; /* worker 0: the caller */
    atomic_int seat;                  /* the next helper's worker index */
};

/* Whether any of s[0 .. 8) is at least w. */
static int any_at_least(const float *s, float w)
{
    int n = 0;
    for (int j = 0; j < 8; j++)
        n += s[j] >= w;
    return n;
}

static void scan_rows(struct job *jb, struct best *h, size_t a, size_t b)
{
    const struct qscan_view *v = jb->v;
    const size_t d = v->d;
    int32_t dots[QSCAN_BLOCK];
    for (size_t i = a; i < b; i += QSCAN_BLOCK) {
        size_t m = b - i < QSCAN_BLOCK ? b - i : QSCAN_BLOCK;
        if (jb->binary)
            v->bits(jb->lut, v->q->bits + i * QSCAN_BOCT(d), m, d, dots);
        else
            v->dots(jb->qc, v->q->codes + i * d, m, d, dots);
        float sc[QSCAN_BLOCK];
        if (jb->binary)
            for (size_t j = 0; j < m; j++)
                sc[j] = (float)dots[j];
        else
            for (size_t j = 0; j < m; j++)
                sc[j] = (float)dots[j] * v->q->scale[i + j];
        /* A score below the bar is out whatever its position, and once the bar is set almost
         * every row is: test 8 rows at once (the compiler vectorises it) before the set is asked
         * (a row at a time, this loop cost a 1M binary scan half its kernel's time, mostly in
         * mispredicted branches). */
        for (size_t j = m; j % 8; j++)
            sc[j] = -INFINITY; /* a whole group of 8: its test is one vector compare */
        float worst = h->barred ? h->bar.s : -INFINITY;
        for (size_t j0 = 0; j0 < m; j0 += 8) {
            if (!any_at_least(sc + j0, worst)) continue;
            for (size_t j = j0; j < j0 + 8 && j < m; j++) {
                struct cand c = {sc[j], (int64_t)(i + j)};
                if (sc[j] < worst || !best_wants(h, c)) continue;
                if (jb->f && jb->f->keep && !jb->f->keep(v->ids[i + j], jb->f->user)) continue;
                best_push(h, c);
                worst = h->barred ? h->bar.s : -INFINITY;
            }
        }
    }
}

static void work(struct job *jb, struct best *h)
{
    for (;;) {
        size_t c = atomic_fetch_add(&jb->next, 1);
        if (c >= jb->nchunks) return;
        size_t a = c * QSCAN_CHUNK, b = a + QSCAN_CHUNK < jb->n ? a + QSCAN_CHUNK : jb->n;
        scan_rows(jb, h, a, b);
        if (atomic_fetch_add(&jb->done, 1) + 1 == jb->nchunks) {
            pthread_mutex_lock(&jb->mu);
            pthread_cond_broadcast(&jb->cv);
            pthread_mutex_unlock(&jb->mu);
        }
    }
}

static void job_free(struct job *jb)
{
    for (int t = 0; t < jb->nworkers; t++)
        free(jb->h[t].c);
    free(jb->qc);
    free(jb->lut);
    pthread_mutex_destroy(&jb->mu);
    pthread_cond_destroy(&jb->cv);
    free(jb);
}

static void job_put(struct job *jb)
{
    if (atomic_fetch_sub(&jb->refs, 1) == 1) job_free(jb);
}

static void *helper(void *arg)
{
    struct job *jb = arg;
    work(jb, &jb->h[atomic_fetch_add(&jb->seat, 1)]);
    job_put(jb);
    return NULL;
}

static int cmp_final(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    return worse(*a, *b) ? 1 : worse(*b, *a) ? -1 : 0;
}

/* One query: scan (with helpers when n is large), merge the workers' candidates into the best
 * all->cap, score those exactly and keep the best k. */
static int search_one(const struct qscan_view *v, const float *query, size_t k, size_t r,
                      const struct vindex_filter *f, struct best *all, int64_t *L, float *S)
{
    const size_t n = v->q->n;
    int nworkers = (int)(n / QSCAN_PART_MIN);
    if (nworkers > v->threads) nworkers = v->threads;
    if (nworkers > QSCAN_THREADS_MAX) nworkers = QSCAN_THREADS_MAX;
    if (nworkers < 1) nworkers = 1;
    struct job *jb = calloc(1, sizeof *jb);
    if (!jb) return VINDEX_ENOMEM;
    jb->v = v;
    jb->f = f;
    jb->n = n;
    jb->nchunks = (n + QSCAN_CHUNK - 1) / QSCAN_CHUNK;
    jb->nworkers = nworkers;
    jb->binary = n >= v->binary_min; /* r is qscan_binary_cands_for()'s then (qscan_search) */
    atomic_init(&jb->next, 0);
    atomic_init(&jb->done, 0);
    atomic_init(&jb->refs, 1);
    atomic_init(&jb->seat, 1);
    pthread_mutex_init(&jb->mu, NULL);
    pthread_cond_init(&jb->cv, NULL);
    int ok = (jb->qc = malloc(v->d)) != NULL;
    /* 64-byte aligned: an AVX-512 kernel's table loads do not straddle cache lines */
    if (ok && jb->binary) ok = (jb->lut = aligned_alloc(64, QSCAN_LUT_BYTES(v->d))) != NULL;
    for (int t = 0; ok && t < nworkers; t++)
        ok = (jb->h[t].c = malloc(2 * r * sizeof(struct cand))) != NULL, jb->h[t].cap = r;
    if (!ok) {
        job_free(jb);
        return VINDEX_ENOMEM;
    }
    if (jb->binary) {
        qscan_bits_quantise(query, v->d, jb->qc);
        qscan_bits_lut(jb->qc, v->d, jb->lut);
    } else {
        qscan_quantise(query, v->d, jb->qc);
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int t = 1; t < nworkers; t++) {
        pthread_t th;
        atomic_fetch_add(&jb->refs, 1);
        /* a helper that cannot start leaves its chunks to the others */
        if (pthread_create(&th, &attr, helper, jb) != 0) atomic_fetch_sub(&jb->refs, 1);
    }
    pthread_attr_destroy(&attr);
    work(jb, &jb->h[0]);
    /* every chunk is claimed: wait only for those a helper is still scanning */
    pthread_mutex_lock(&jb->mu);
    while (atomic_load(&jb->done) < jb->nchunks)
        pthread_cond_wait(&jb->cv, &jb->mu);
    pthread_mutex_unlock(&jb->mu);
    all->n = 0;
    all->barred = 0;
    for (int t = 0; t < nworkers; t++)
        for (size_t j = 0; j < jb->h[t].n; j++)
            if (best_wants(all, jb->h[t].c[j])) best_push(all, jb->h[t].c[j]);
    best_cut(all);
    job_put(jb);
    /* Exact scores, best first: eight rows at a time where that gives ip's bits. */
    size_t j = 0;
    if (v->ip_seq)
        for (; j + 8 <= all->n; j += 8) {
            const float *rows[8];
            float sc[8];
            for (int t = 0; t < 8; t++)
                rows[t] = v->xb + (size_t)all->c[j + t].pos * v->d;
            qscan_ip_seq(query, rows, 8, v->d, sc);
            for (int t = 0; t < 8; t++)
                all->c[j + t].s = sc[t];
        }
    for (; j < all->n; j++) {
        struct cand *c = &all->c[j];
        c->s = v->ip(query, v->xb + (size_t)c->pos * v->d, v->d);
    }
    qsort(all->c, all->n, sizeof *all->c, cmp_final);
    for (size_t j = 0; j < k; j++) {
        L[j] = j < all->n ? v->ids[all->c[j].pos] : -1;
        S[j] = j < all->n ? all->c[j].s : -INFINITY;
    }
    return 0;
}

int qscan_search(const struct qscan_view *v, const float *queries, size_t nq, size_t k,
                 size_t rerank, const struct vindex_filter *filter, int64_t *out_labels,
                 float *out_scores)
{
    size_t r = qscan_rerank_for(k, rerank);
    if (v->q->n >= v->binary_min) r = qscan_binary_cands_for(k, r);
    struct best all = {.c = calloc(2 * r, sizeof(struct cand)), .cap = r};
    int rc = all.c ? 0 : VINDEX_ENOMEM;
    for (size_t qi = 0; rc == 0 && qi < nq; qi++)
        rc = search_one(v, queries + qi * v->d, k, r, filter, &all, out_labels + qi * k,
                        out_scores + qi * k);
    free(all.c);
    return rc;
}
