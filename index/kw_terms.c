/* kw_terms.c — a text's keyword terms, analysed and sorted (kw_terms.h). */
#define _GNU_SOURCE /* qsort_r */
#include "kw_terms.h"

#include <stdlib.h>
#include <string.h>

#include "sbert_index.h"
#include "store.h"

static int kw_collect(const char *term, size_t len, uint32_t position, void *user)
{
    (void)position;
    struct kw_terms *k = user;
    if (k->max && k->n == k->max) return 0;
    if (len > STORE_KW_MAX_TERM) len = STORE_KW_MAX_TERM; /* the analyzer bounds it already */
    if (k->n == k->cap_t) {
        size_t cap = k->cap_t ? 2 * k->cap_t : 64;
        struct kw_term *nt = realloc(k->t, cap * sizeof *nt);
        if (!nt) return SBERT_INDEX_ENOMEM;
        k->t = nt;
        k->cap_t = cap;
    }
    if (k->len + len > k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 1024;
        while (cap < k->len + len)
            cap *= 2;
        char *nb = realloc(k->buf, cap);
        if (!nb) return SBERT_INDEX_ENOMEM;
        k->buf = nb;
        k->cap = cap;
    }
    memcpy(k->buf + k->len, term, len);
    k->t[k->n] = (struct kw_term){.at = k->len, .len = len, .first = (uint32_t)k->n};
    k->len += len;
    k->n++;
    return 0;
}

int kw_terms_cmp(const struct kw_terms *k, const struct kw_term *x, const char *term, size_t len)
{
    size_t n = x->len < len ? x->len : len;
    int c = memcmp(k->buf + x->at, term, n);
    return c ? c : (x->len > len) - (x->len < len);
}

static int kw_term_order(const void *a, const void *b, void *user)
{
    const struct kw_terms *k = user;
    const struct kw_term *x = a, *y = b;
    int c = kw_terms_cmp(k, x, k->buf + y->at, y->len);
    return c ? c : (x->first > y->first) - (x->first < y->first);
}

int kw_terms_collect(sbert_analyzer *an, const char *text, size_t len, size_t max,
                     struct kw_terms *k)
{
    memset(k, 0, sizeof *k);
    k->max = max;
    int rc = sbert_analyzer_run(an, text, len, kw_collect, k);
    if (rc) return SBERT_INDEX_ENOMEM; /* the analyzer's and kw_collect's only failure */
    if (k->n) qsort_r(k->t, k->n, sizeof *k->t, kw_term_order, k); /* t is NULL for none */
    return 0;
}

void kw_terms_free(struct kw_terms *k)
{
    free(k->buf);
    free(k->t);
}
