/* internal.h — what the format readers of extract/ share. Private to extract/. */
#ifndef SBERT_EXTRACT_INTERNAL_H
#define SBERT_EXTRACT_INTERNAL_H

#include "sbert_extract.h"

#include <stddef.h>

/* A growing text, bounded: bytes past max are not kept, and `over` says some were offered. */
struct xbuf {
    char *p;
    size_t n, cap, max;
    int over;
};

/* Appends s[0..n); returns 0 or SBERT_EXTRACT_ENOMEM. */
int xbuf_put(struct xbuf *b, const char *s, size_t n);

/* Ends b as a document: turns C0 controls other than \t \n \r into spaces, checks UTF-8 and the
 * size bound, and moves b's bytes and title (owned, may be NULL) into out. Frees both on error. */
int extract_finish(struct xbuf *b, char *title, const char *what, struct sbert_extract_doc *out,
                   char *errbuf, size_t errlen);

int extract_html(const char *data, size_t len, const struct sbert_extract_params *p,
                 struct sbert_extract_doc *out, char *errbuf, size_t errlen);

int extract_pdf(const char *data, size_t len, const struct sbert_extract_params *p,
                struct sbert_extract_doc *out, char *errbuf, size_t errlen);

#endif
