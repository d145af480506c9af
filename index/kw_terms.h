/*
 * kw_terms.h — internal to index/: a text's keyword terms, analysed and sorted. The keyword
 * index's writes (store_kw.c: a document's postings) and its queries (keyword.c: the query's
 * terms) collect them the same way, so both meet on the same bytes.
 */
#ifndef SBERT_INDEX_KW_TERMS_H
#define SBERT_INDEX_KW_TERMS_H

#include <stddef.h>
#include <stdint.h>

#include "sbert_text.h"

struct kw_terms {
    char *buf; /* the terms' bytes, back to back */
    size_t len, cap;
    struct kw_term {
        size_t at, len;
        uint32_t first; /* the ordinal of this occurrence in the text */
    } * t;
    size_t n, cap_t;
    size_t max; /* occurrences kept (0: all); the rest of the text is not collected */
};

/* Analyses text[0..len) with an into *k (reset first; max as above) and sorts the occurrences by
 * their bytes, equal terms in text order, so that equal terms are adjacent. Terms are cut at
 * STORE_KW_MAX_TERM bytes. Returns 0 or SBERT_INDEX_ENOMEM; kw_terms_free(k) either way. */
int kw_terms_collect(sbert_analyzer *an, const char *text, size_t len, size_t max,
                     struct kw_terms *k);
void kw_terms_free(struct kw_terms *k);

/* Compares occurrence x's bytes with term[0..len) (memcmp order, a prefix first). */
int kw_terms_cmp(const struct kw_terms *k, const struct kw_term *x, const char *term, size_t len);

#endif
