/* page.h — private to http/: the search page (search.html), embedded at build time (embed.cmake
 * writes page.c into the build tree). Static, read-only. */
#ifndef SBERT_HTTP_PAGE_H
#define SBERT_HTTP_PAGE_H

#include <stddef.h>

extern const char http_page[];
extern const size_t http_page_len;

#endif
