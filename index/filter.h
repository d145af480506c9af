/*
 * filter.h — internal to index/: evaluating compiled metadata filters (sbert_index_filter, the
 * public compile/free/match functions are declared in sbert_index.h; the language is described in
 * docs/filters.md).
 *
 * Thread safety: a compiled filter is immutable; any number of threads may evaluate it at once.
 */
#ifndef SBERT_INDEX_FILTER_H
#define SBERT_INDEX_FILTER_H

#include <cjson/cJSON.h>

#include "sbert_index.h"

/* Evaluates f against an already parsed metadata value (NULL: no metadata, seen as an empty
 * object). Returns 1 or 0; a non-object value never matches except through $ne / $nin on the
 * missing fields. Used where the caller parses each document's metadata once for several uses. */
int filter_match_json(const sbert_index_filter *f, const cJSON *metadata);

/* Evaluates f on a metadata object's JSON text (len bytes; NULL or 0: no metadata) by scanning
 * only its top-level keys, without building a tree; falls back to cJSON when the text has escapes
 * where it matters or anything unexpected. Same result as filter_match_json() on the parsed text.
 * Returns 1, 0, SBERT_INDEX_EMETADATA (not an object) or SBERT_INDEX_ENOMEM. */
int filter_match_raw(const sbert_index_filter *f, const char *metadata, size_t len);

/* filter_match_raw with the document's text (text_len bytes; NULL: none, seen as "") for the
 * filter's $text clauses. */
int filter_match_doc(const sbert_index_filter *f, const char *metadata, size_t len,
                     const char *text, size_t text_len);

#endif
