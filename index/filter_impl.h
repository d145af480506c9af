/*
 * filter_impl.h — private to filter.c (the compiler) and filter_eval.c (the evaluators): the
 * compiled form of a metadata filter. A compiled filter is immutable once
 * sbert_index_filter_compile() returns it.
 */
#ifndef SBERT_INDEX_FILTER_IMPL_H
#define SBERT_INDEX_FILTER_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "filter.h"

enum node_kind { NODE_AND, NODE_OR, NODE_NOT, NODE_CMP };

enum cmp_op {
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GTE,
    OP_LT,
    OP_LTE,
    OP_IN,
    OP_NIN,
    OP_EXISTS,
    OP_CONTAINS,
    OP_ICONTAINS
};

enum val_type { VAL_STRING, VAL_NUMBER, VAL_BOOL };

struct value {
    enum val_type type;
    double num;  /* VAL_NUMBER */
    int boolean; /* VAL_BOOL */
    char *str;   /* VAL_STRING, NUL-terminated */
    /* $icontains: str case-folded and decomposed (filter_fold), as code points */
    int32_t *folded;
    size_t n_folded;
};

struct node {
    enum node_kind kind;
    /* NODE_AND / NODE_OR; NODE_NOT has one kid */
    struct node **kids;
    size_t n_kids;
    /* NODE_CMP */
    enum cmp_op op;
    int text; /* a $text clause: on the document's text, not its metadata */
    char *field;
    size_t field_idx;   /* index into the filter's distinct field names */
    struct value *vals; /* one for scalar operators, the list for $in / $nin */
    size_t n_vals;
};

struct sbert_index_filter {
    struct node *root;
    char **fields; /* distinct field names the filter reads */
    size_t n_fields;
    int tree; /* a field is a dotted path: evaluated on the parsed metadata only */
    int text; /* a $text clause reads the document's text */
};

/* s[0..len) case-folded and decomposed (utf8proc CASEFOLD | DECOMPOSE) into *out (malloc'd, *n
 * code points): the form both sides of $icontains are compared in. Returns 0, -1 when s is not
 * UTF-8, or -2 when memory ran out. */
int filter_fold(const char *s, size_t len, int32_t **out, size_t *n);

#endif
