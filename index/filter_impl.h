/*
 * filter_impl.h — private to filter.c (the compiler) and filter_eval.c (the evaluators): the
 * compiled form of a metadata filter. A compiled filter is immutable once
 * sbert_index_filter_compile() returns it.
 */
#ifndef SBERT_INDEX_FILTER_IMPL_H
#define SBERT_INDEX_FILTER_IMPL_H

#include <stddef.h>

#include "filter.h"

enum node_kind { NODE_AND, NODE_OR, NODE_CMP };

enum cmp_op { OP_EQ, OP_NE, OP_GT, OP_GTE, OP_LT, OP_LTE, OP_IN, OP_NIN };

enum val_type { VAL_STRING, VAL_NUMBER, VAL_BOOL };

struct value {
    enum val_type type;
    double num;  /* VAL_NUMBER */
    int boolean; /* VAL_BOOL */
    char *str;   /* VAL_STRING, NUL-terminated */
};

struct node {
    enum node_kind kind;
    /* NODE_AND / NODE_OR */
    struct node **kids;
    size_t n_kids;
    /* NODE_CMP */
    enum cmp_op op;
    char *field;
    size_t field_idx;   /* index into the filter's distinct field names */
    struct value *vals; /* one for scalar operators, the list for $in / $nin */
    size_t n_vals;
};

struct sbert_index_filter {
    struct node *root;
    char **fields; /* distinct field names the filter reads */
    size_t n_fields;
};

#endif
