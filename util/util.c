#include "sbert_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

/* ---- the CPU --------------------------------------------------------------------------------- */

int sbert_util_cpu_avxvnni(void)
{
#if defined(__x86_64__)
    unsigned a, b, c, d;
    /* avx2 also checks that the OS saves the YMM state (XCR0) */
    return __builtin_cpu_supports("avx2") && __get_cpuid_count(7, 1, &a, &b, &c, &d) &&
           (a & (1u << 4)) != 0;
#else
    return 0;
#endif
}

uint32_t sbert_util_xorshift32(uint32_t *state)
{
    uint32_t x = *state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return *state = x;
}

/* ---- messages -------------------------------------------------------------------------------- */

void sbert_util_logf(sbert_util_log_fn fn, void *user, int level, const char *fmt, ...)
{
    if (!fn) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fn(level, buf, user);
}

int sbert_util_errf(char *errbuf, size_t errlen, int code, const char *fmt, ...)
{
    if (errbuf && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* ---- UTF-8 ----------------------------------------------------------------------------------- */

int sbert_util_utf8_valid(const void *str, size_t len)
{
    const unsigned char *s = str;
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0; /* no overlongs */
            else if (c == 0xED)
                hi = 0x9F; /* no surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90; /* no overlongs */
            else if (c == 0xF4)
                hi = 0x8F; /* nothing above U+10FFFF */
        } else
            return 0;
        if (len - i - 1 < n) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += n + 1;
    }
    return 1;
}

/* ---- vectors --------------------------------------------------------------------------------- */

double sbert_util_cosine(const float *a, const float *b, size_t dim)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return (aa > 0 && bb > 0) ? ab / (sqrt(aa) * sqrt(bb)) : 0.0;
}

int sbert_util_normalise_into(const float *v, size_t dim, float *out)
{
    double ss = 0;
    for (size_t i = 0; i < dim; i++) {
        if (!isfinite(v[i])) return -1;
        ss += (double)v[i] * v[i];
    }
    double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
    for (size_t i = 0; i < dim; i++)
        out[i] = (float)(v[i] * inv);
    return 0;
}

/* ---- top pairs ------------------------------------------------------------------------------- */

int sbert_util_pair_before(const struct sbert_util_pair *x, const struct sbert_util_pair *y)
{
    if (x->score != y->score) return x->score > y->score;
    if (x->a != y->a) return x->a < y->a;
    return x->b < y->b;
}

void sbert_util_topk_init(struct sbert_util_topk *k, size_t limit)
{
    k->v = NULL;
    k->n = k->cap = 0;
    k->limit = limit;
}

/* Heap order: a parent never ranks before its children, so v[0] is the worst kept pair. */
static void sift_down(struct sbert_util_pair *h, size_t n, size_t at)
{
    for (;;) {
        size_t l = 2 * at + 1, r = l + 1, worst = at;
        if (l < n && sbert_util_pair_before(&h[worst], &h[l])) worst = l;
        if (r < n && sbert_util_pair_before(&h[worst], &h[r])) worst = r;
        if (worst == at) return;
        struct sbert_util_pair t = h[at];
        h[at] = h[worst];
        h[worst] = t;
        at = worst;
    }
}

static void sift_up(struct sbert_util_pair *h, size_t at)
{
    while (at > 0) {
        size_t p = (at - 1) / 2;
        if (!sbert_util_pair_before(&h[p], &h[at])) return;
        struct sbert_util_pair t = h[at];
        h[at] = h[p];
        h[p] = t;
        at = p;
    }
}

int sbert_util_topk_add(struct sbert_util_topk *k, const struct sbert_util_pair *p)
{
    if (k->limit && k->n == k->limit) {
        if (sbert_util_pair_before(p, &k->v[0])) {
            k->v[0] = *p;
            sift_down(k->v, k->n, 0);
        }
        return 0;
    }
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 256;
        if (k->limit && cap > k->limit) cap = k->limit;
        struct sbert_util_pair *nv = realloc(k->v, cap * sizeof *nv);
        if (!nv) return -1;
        k->v = nv;
        k->cap = cap;
    }
    k->v[k->n] = *p;
    if (k->limit) sift_up(k->v, k->n);
    k->n++;
    return 0;
}

static int pair_cmp(const void *x, const void *y)
{
    const struct sbert_util_pair *a = x, *b = y;
    return sbert_util_pair_before(a, b) ? -1 : (sbert_util_pair_before(b, a) ? 1 : 0);
}

void sbert_util_topk_sort(struct sbert_util_topk *k)
{
    if (k->n > 1) qsort(k->v, k->n, sizeof *k->v, pair_cmp);
}

void sbert_util_topk_free(struct sbert_util_topk *k)
{
    free(k->v);
    k->v = NULL;
    k->n = k->cap = 0;
}
