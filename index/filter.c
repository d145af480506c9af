/*
 * filter.c — the metadata filter language (docs/filters.md): compile JSON into a tree of nodes,
 * evaluate it against a document's metadata object.
 *
 * The compiler checks the size limit before parsing and the depth and node limits before each
 * recursion step, so a filter bomb is refused after O(its size) work with bounded stack.
 */
#include "filter.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum node_kind { NODE_AND, NODE_OR, NODE_CMP };

enum cmp_op { OP_EQ, OP_NE, OP_GT, OP_GTE, OP_LT, OP_LTE, OP_IN, OP_NIN };

enum val_type { VAL_STRING, VAL_NUMBER, VAL_BOOL };

struct value {
    enum val_type type;
    double num;   /* VAL_NUMBER */
    int boolean;  /* VAL_BOOL */
    char *str;    /* VAL_STRING, NUL-terminated */
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

static const struct {
    const char *name;
    enum cmp_op op;
} op_table[] = {
    {"$eq", OP_EQ},   {"$ne", OP_NE},   {"$gt", OP_GT}, {"$gte", OP_GTE},
    {"$lt", OP_LT},   {"$lte", OP_LTE}, {"$in", OP_IN}, {"$nin", OP_NIN},
};

/* ---- compilation ----------------------------------------------------------------------------- */

struct compiler {
    size_t nodes;
    char *errbuf;
    size_t errlen;
    int err; /* first error; later ones are not recorded */
};

static void node_free(struct node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    for (size_t i = 0; i < n->n_vals; i++)
        free(n->vals[i].str);
    free(n->vals);
    free(n->field);
    free(n);
}

static void fail(struct compiler *c, int err, const char *path, const char *fmt, ...)
{
    if (c->err)
        return;
    c->err = err;
    if (!c->errbuf || c->errlen == 0)
        return;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (path && path[0])
        snprintf(c->errbuf, c->errlen, "filter %s: %s", path, msg);
    else
        snprintf(c->errbuf, c->errlen, "filter: %s", msg);
}

static const char *type_name(const cJSON *j)
{
    if (cJSON_IsString(j))
        return "string";
    if (cJSON_IsNumber(j))
        return "number";
    if (cJSON_IsBool(j))
        return "bool";
    if (cJSON_IsNull(j))
        return "null";
    if (cJSON_IsArray(j))
        return "array";
    if (cJSON_IsObject(j))
        return "object";
    return "invalid";
}

/* Appends ".name" or "[i]" to a path, truncating silently (the path is for messages only). */
static void path_join(char *out, size_t cap, const char *base, const char *name, long index)
{
    int n = name ? snprintf(out, cap, "%s%s%s", base, base[0] ? "." : "", name)
                 : snprintf(out, cap, "%s[%ld]", base, index);
    if (n < 0)
        out[0] = 0;
}

static struct node *node_new(struct compiler *c, const char *path)
{
    if (++c->nodes > SBERT_INDEX_FILTER_MAX_NODES) {
        fail(c, SBERT_INDEX_EFILTER, path, "more than %d nodes", SBERT_INDEX_FILTER_MAX_NODES);
        return NULL;
    }
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        fail(c, SBERT_INDEX_ENOMEM, path, "out of memory");
    return n;
}

static int value_set(struct compiler *c, struct value *v, const cJSON *j, const char *path,
                     const char *opname)
{
    if (cJSON_IsString(j)) {
        v->type = VAL_STRING;
        v->str = strdup(j->valuestring);
        if (!v->str) {
            fail(c, SBERT_INDEX_ENOMEM, path, "out of memory");
            return -1;
        }
    } else if (cJSON_IsNumber(j)) {
        v->type = VAL_NUMBER;
        v->num = j->valuedouble;
    } else if (cJSON_IsBool(j)) {
        v->type = VAL_BOOL;
        v->boolean = cJSON_IsTrue(j);
    } else {
        fail(c, SBERT_INDEX_EFILTER, path, "%s needs a string, number or bool, got %s", opname,
             type_name(j));
        return -1;
    }
    return 0;
}

static struct node *compile_cmp(struct compiler *c, const char *field, enum cmp_op op,
                                const char *opname, const cJSON *arg, const char *path)
{
    int is_list = op == OP_IN || op == OP_NIN;
    int is_order = op == OP_GT || op == OP_GTE || op == OP_LT || op == OP_LTE;
    if (is_list && (!cJSON_IsArray(arg) || cJSON_GetArraySize(arg) == 0)) {
        fail(c, SBERT_INDEX_EFILTER, path, "%s needs a non-empty array, got %s%s", opname,
             cJSON_IsArray(arg) ? "an empty " : "", type_name(arg));
        return NULL;
    }
    if (is_order && !cJSON_IsNumber(arg)) {
        fail(c, SBERT_INDEX_EFILTER, path, "%s needs a number, got %s", opname, type_name(arg));
        return NULL;
    }
    struct node *n = node_new(c, path);
    if (!n)
        return NULL;
    n->kind = NODE_CMP;
    n->op = op;
    n->field = strdup(field);
    size_t nv = is_list ? (size_t)cJSON_GetArraySize(arg) : 1;
    /* Each list element counts as a node: the size limit covers long $in lists too. */
    if (is_list && (c->nodes += nv) > SBERT_INDEX_FILTER_MAX_NODES) {
        fail(c, SBERT_INDEX_EFILTER, path, "more than %d nodes", SBERT_INDEX_FILTER_MAX_NODES);
        node_free(n);
        return NULL;
    }
    n->vals = calloc(nv, sizeof *n->vals);
    if (!n->field || !n->vals) {
        fail(c, SBERT_INDEX_ENOMEM, path, "out of memory");
        node_free(n);
        return NULL;
    }
    if (is_list) {
        const cJSON *e;
        long i = 0;
        cJSON_ArrayForEach(e, arg)
        {
            char p[256];
            path_join(p, sizeof p, path, NULL, i);
            if (value_set(c, &n->vals[n->n_vals], e, p, opname)) {
                node_free(n);
                return NULL;
            }
            n->n_vals++;
            i++;
        }
    } else {
        if (value_set(c, &n->vals[0], arg, path, opname)) {
            node_free(n);
            return NULL;
        }
        n->n_vals = 1;
    }
    return n;
}

static struct node *compile_object(struct compiler *c, const cJSON *obj, const char *path,
                                   int depth);

/* Adds kid to an AND/OR node's list. */
static int kid_add(struct compiler *c, struct node *parent, struct node *kid, const char *path)
{
    struct node **k = realloc(parent->kids, (parent->n_kids + 1) * sizeof *k);
    if (!k) {
        fail(c, SBERT_INDEX_ENOMEM, path, "out of memory");
        node_free(kid);
        return -1;
    }
    parent->kids = k;
    parent->kids[parent->n_kids++] = kid;
    return 0;
}

/* A field's condition: a scalar (equality) or an object of one or more operators (ANDed). */
static struct node *compile_field(struct compiler *c, const cJSON *item, const char *path)
{
    const char *field = item->string;
    if (!cJSON_IsObject(item)) {
        if (cJSON_IsArray(item) || cJSON_IsNull(item)) {
            fail(c, SBERT_INDEX_EFILTER, path,
                 "a field's value must be a string, number, bool or an operator object, got %s",
                 type_name(item));
            return NULL;
        }
        return compile_cmp(c, field, OP_EQ, "equality", item, path);
    }
    if (!item->child) {
        fail(c, SBERT_INDEX_EFILTER, path, "empty operator object");
        return NULL;
    }
    struct node *all = NULL;
    struct node *single = NULL;
    const cJSON *op;
    cJSON_ArrayForEach(op, item)
    {
        char p[256];
        path_join(p, sizeof p, path, op->string, 0);
        size_t i;
        for (i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
            if (strcmp(op->string, op_table[i].name) == 0)
                break;
        if (i == sizeof op_table / sizeof op_table[0]) {
            fail(c, SBERT_INDEX_EFILTER, p,
                 "unknown operator \"%s\" (known: $eq $ne $gt $gte $lt $lte $in $nin)",
                 op->string);
            node_free(single);
            node_free(all);
            return NULL;
        }
        struct node *n = compile_cmp(c, field, op_table[i].op, op_table[i].name, op, p);
        if (!n) {
            node_free(single);
            node_free(all);
            return NULL;
        }
        if (!single && !all) {
            single = n;
            continue;
        }
        if (!all) {
            all = node_new(c, path);
            if (!all) {
                node_free(single);
                node_free(n);
                return NULL;
            }
            all->kind = NODE_AND;
            if (kid_add(c, all, single, path)) {
                node_free(n);
                node_free(all);
                return NULL;
            }
            single = NULL;
        }
        if (kid_add(c, all, n, path)) {
            node_free(all);
            return NULL;
        }
    }
    return all ? all : single;
}

static struct node *compile_logic(struct compiler *c, const cJSON *item, enum node_kind kind,
                                  const char *path, int depth)
{
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) == 0) {
        fail(c, SBERT_INDEX_EFILTER, path, "%s needs a non-empty array of filters, got %s%s",
             item->string, cJSON_IsArray(item) ? "an empty " : "", type_name(item));
        return NULL;
    }
    struct node *n = node_new(c, path);
    if (!n)
        return NULL;
    n->kind = kind;
    const cJSON *e;
    long i = 0;
    cJSON_ArrayForEach(e, item)
    {
        char p[256];
        path_join(p, sizeof p, path, NULL, i++);
        if (!cJSON_IsObject(e)) {
            fail(c, SBERT_INDEX_EFILTER, p, "must be a filter object, got %s", type_name(e));
            node_free(n);
            return NULL;
        }
        struct node *k = compile_object(c, e, p, depth + 1);
        if (!k || kid_add(c, n, k, path)) {
            node_free(n);
            return NULL;
        }
    }
    return n;
}

/* A filter object: its keys ($and, $or or field names) are ANDed. */
static struct node *compile_object(struct compiler *c, const cJSON *obj, const char *path,
                                   int depth)
{
    if (depth > SBERT_INDEX_FILTER_MAX_DEPTH) {
        fail(c, SBERT_INDEX_EFILTER, path, "nested deeper than %d levels",
             SBERT_INDEX_FILTER_MAX_DEPTH);
        return NULL;
    }
    struct node *all = node_new(c, path);
    if (!all)
        return NULL;
    all->kind = NODE_AND;
    const cJSON *item;
    cJSON_ArrayForEach(item, obj)
    {
        char p[256];
        path_join(p, sizeof p, path, item->string, 0);
        struct node *k;
        if (strcmp(item->string, "$and") == 0)
            k = compile_logic(c, item, NODE_AND, p, depth);
        else if (strcmp(item->string, "$or") == 0)
            k = compile_logic(c, item, NODE_OR, p, depth);
        else if (item->string[0] == '$') {
            fail(c, SBERT_INDEX_EFILTER, p,
                 "unknown logical operator \"%s\" (known: $and $or; field names must not "
                 "start with $)",
                 item->string);
            k = NULL;
        } else if (item->string[0] == '\0') {
            fail(c, SBERT_INDEX_EFILTER, p, "empty field name");
            k = NULL;
        } else
            k = compile_field(c, item, p);
        if (!k || kid_add(c, all, k, path)) {
            node_free(all);
            return NULL;
        }
    }
    return all;
}

/* Depth of the JSON tree, stopping as soon as limit is passed: bounded recursion. */
static int json_depth_exceeds(const cJSON *j, int depth, int limit)
{
    if (depth > limit)
        return 1;
    for (const cJSON *e = j->child; e; e = e->next)
        if ((cJSON_IsArray(e) || cJSON_IsObject(e)) && json_depth_exceeds(e, depth + 1, limit))
            return 1;
    return 0;
}

/* Gives every comparison node the index of its field in f->fields (distinct names). */
static int collect_fields(sbert_index_filter *f, struct node *n)
{
    for (size_t i = 0; i < n->n_kids; i++)
        if (collect_fields(f, n->kids[i]))
            return -1;
    if (n->kind != NODE_CMP)
        return 0;
    for (size_t i = 0; i < f->n_fields; i++)
        if (strcmp(f->fields[i], n->field) == 0) {
            n->field_idx = i;
            return 0;
        }
    char **nf = realloc(f->fields, (f->n_fields + 1) * sizeof *nf);
    if (!nf)
        return -1;
    f->fields = nf;
    n->field_idx = f->n_fields;
    f->fields[f->n_fields++] = n->field;
    return 0;
}

int sbert_index_filter_compile(const char *json, size_t len, sbert_index_filter **out,
                               char *errbuf, size_t errlen)
{
    struct compiler c = {.errbuf = errbuf, .errlen = errlen};
    if (out)
        *out = NULL;
    if (!json || !out) {
        fail(&c, SBERT_INDEX_EINVAL, NULL, "NULL argument");
        return SBERT_INDEX_EINVAL;
    }
    if (len > SBERT_INDEX_FILTER_MAX_BYTES) {
        fail(&c, SBERT_INDEX_EFILTER, NULL, "%zu bytes, more than the limit of %d", len,
             SBERT_INDEX_FILTER_MAX_BYTES);
        return c.err;
    }
    /* cJSON's own nesting limit (1000) bounds its recursion; ours is checked on the tree. */
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json && at <= json + len ? (size_t)(at - json) : len;
        fail(&c, SBERT_INDEX_EFILTER, NULL, "not valid JSON (error near byte %zu)", off);
        return c.err;
    }
    if (!cJSON_IsObject(root)) {
        fail(&c, SBERT_INDEX_EFILTER, NULL, "must be a JSON object, got %s", type_name(root));
        cJSON_Delete(root);
        return c.err;
    }
    /* Operator objects and $in lists add two JSON levels per filter level. */
    if (json_depth_exceeds(root, 0, 2 * SBERT_INDEX_FILTER_MAX_DEPTH + 2)) {
        fail(&c, SBERT_INDEX_EFILTER, NULL, "nested deeper than %d levels",
             SBERT_INDEX_FILTER_MAX_DEPTH);
        cJSON_Delete(root);
        return c.err;
    }
    struct node *n = compile_object(&c, root, "", 0);
    cJSON_Delete(root);
    if (!n)
        return c.err ? c.err : SBERT_INDEX_ENOMEM;
    sbert_index_filter *f = malloc(sizeof *f);
    if (!f) {
        node_free(n);
        fail(&c, SBERT_INDEX_ENOMEM, NULL, "out of memory");
        return SBERT_INDEX_ENOMEM;
    }
    f->root = n;
    f->fields = NULL;
    f->n_fields = 0;
    if (collect_fields(f, n)) {
        sbert_index_filter_free(f);
        fail(&c, SBERT_INDEX_ENOMEM, NULL, "out of memory");
        return SBERT_INDEX_ENOMEM;
    }
    *out = f;
    return SBERT_INDEX_OK;
}

void sbert_index_filter_free(sbert_index_filter *f)
{
    if (!f)
        return;
    node_free(f->root);
    free(f->fields); /* the names belong to the nodes */
    free(f);
}

/* ---- evaluation ------------------------------------------------------------------------------ */

/* 1 when the metadata value j equals v (same type and value), else 0. */
static int value_equals(const cJSON *j, const struct value *v)
{
    switch (v->type) {
    case VAL_STRING:
        return cJSON_IsString(j) && strcmp(j->valuestring, v->str) == 0;
    case VAL_NUMBER:
        return cJSON_IsNumber(j) && j->valuedouble == v->num;
    case VAL_BOOL:
        return cJSON_IsBool(j) && cJSON_IsTrue(j) == v->boolean;
    }
    return 0;
}

static int eval_cmp(const struct node *n, const cJSON *meta)
{
    const cJSON *j = cJSON_IsObject(meta) ? cJSON_GetObjectItemCaseSensitive(meta, n->field) : NULL;
    switch (n->op) {
    case OP_EQ:
        return j && value_equals(j, &n->vals[0]);
    case OP_NE:
        return !(j && value_equals(j, &n->vals[0]));
    case OP_GT:
        return cJSON_IsNumber(j) && j->valuedouble > n->vals[0].num;
    case OP_GTE:
        return cJSON_IsNumber(j) && j->valuedouble >= n->vals[0].num;
    case OP_LT:
        return cJSON_IsNumber(j) && j->valuedouble < n->vals[0].num;
    case OP_LTE:
        return cJSON_IsNumber(j) && j->valuedouble <= n->vals[0].num;
    case OP_IN:
    case OP_NIN: {
        int found = 0;
        for (size_t i = 0; j && i < n->n_vals && !found; i++)
            found = value_equals(j, &n->vals[i]);
        return n->op == OP_IN ? found : !found;
    }
    }
    return 0;
}

/* Recursion depth is bounded by SBERT_INDEX_FILTER_MAX_DEPTH, checked at compile time. */
static int eval_node(const struct node *n, const cJSON *meta)
{
    switch (n->kind) {
    case NODE_AND:
        for (size_t i = 0; i < n->n_kids; i++)
            if (!eval_node(n->kids[i], meta))
                return 0;
        return 1;
    case NODE_OR:
        for (size_t i = 0; i < n->n_kids; i++)
            if (eval_node(n->kids[i], meta))
                return 1;
        return 0;
    case NODE_CMP:
        return eval_cmp(n, meta);
    }
    return 0;
}

/* ---- evaluation on the stored text, without building a tree ---------------------------------- */

/* A top-level metadata value the filter reads, as found in the JSON text. */
struct slot {
    enum { SLOT_MISSING = 0, SLOT_STRING, SLOT_NUMBER, SLOT_BOOL, SLOT_OTHER } type;
    const char *s; /* SLOT_STRING: the raw bytes between the quotes (no escapes in them) */
    size_t len;
    double num;
    int boolean;
};

struct scan {
    const char *p, *end;
};

/* c is one of the characters of set; unlike strchr(), never for c == '\0' (strchr finds the
 * terminator: a NUL in the metadata stopped skip_value() without consuming it, forever; found by
 * tests/fuzz/fuzz_filter). */
static int in_set(const char *set, char c)
{
    return c != '\0' && strchr(set, c) != NULL;
}

static void skip_ws(struct scan *sc)
{
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

/* A string at sc->p (on its opening quote). Sets *escaped when it holds a backslash or a raw
 * control character: JSON forbids the latter, cJSON accepts it and cuts a key at a NUL, so both
 * are left to cJSON for the two readings to agree (fuzz_filter). */
static int scan_string(struct scan *sc, const char **s, size_t *len, int *escaped)
{
    if (sc->p >= sc->end || *sc->p != '"')
        return -1;
    const char *start = ++sc->p;
    *escaped = 0;
    while (sc->p < sc->end && *sc->p != '"') {
        if ((unsigned char)*sc->p < 0x20)
            *escaped = 1;
        if (*sc->p == '\\') {
            *escaped = 1;
            sc->p++;
        }
        sc->p++;
    }
    if (sc->p >= sc->end)
        return -1;
    *s = start;
    *len = (size_t)(sc->p - start);
    sc->p++;
    return 0;
}

/* Skips any value; nesting is tracked with a counter, not recursion. */
static int skip_value(struct scan *sc)
{
    int depth = 0;
    do {
        skip_ws(sc);
        if (sc->p >= sc->end)
            return -1;
        char c = *sc->p;
        if (c == '"') {
            const char *s;
            size_t l;
            int e;
            if (scan_string(sc, &s, &l, &e))
                return -1;
        } else if (c == '{' || c == '[') {
            depth++;
            sc->p++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0)
                return -1;
            sc->p++;
        } else if (c == ',' || c == ':') {
            if (depth == 0)
                return -1;
            sc->p++;
        } else {
            /* a number, true, false or null; any other byte (a NUL, a control character that
             * cJSON skips as whitespace) is left to the full parser */
            const char *start = sc->p;
            while (sc->p < sc->end && in_set("0123456789+-.eEtrufalsn", *sc->p))
                sc->p++;
            if (sc->p == start)
                return -1;
        }
    } while (depth > 0);
    return 0;
}

/* Reads the value at sc->p into slot. */
static int scan_value(struct scan *sc, struct slot *sl)
{
    skip_ws(sc);
    if (sc->p >= sc->end)
        return -1;
    char c = *sc->p;
    if (c == '"') {
        int escaped;
        if (scan_string(sc, &sl->s, &sl->len, &escaped) || escaped)
            return -1; /* escapes: the caller falls back to the full parser */
        sl->type = SLOT_STRING;
        return 0;
    }
    if (c == 't' || c == 'f') {
        size_t n = c == 't' ? 4 : 5;
        if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, c == 't' ? "true" : "false", n))
            return -1;
        sc->p += n;
        sl->type = SLOT_BOOL;
        sl->boolean = c == 't';
        return 0;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        char buf[64];
        size_t n = 0;
        while (sc->p + n < sc->end && n < sizeof buf - 1 && in_set("+-.eE0123456789", sc->p[n]))
            n++;
        if (n == sizeof buf - 1)
            return -1;
        memcpy(buf, sc->p, n);
        buf[n] = 0;
        char *e;
        sl->num = strtod(buf, &e);
        if (e != buf + n)
            return -1;
        sc->p += n;
        sl->type = SLOT_NUMBER;
        return 0;
    }
    sl->type = SLOT_OTHER; /* null, array, object */
    return skip_value(sc);
}

static int slot_equals(const struct slot *sl, const struct value *v)
{
    switch (v->type) {
    case VAL_STRING:
        return sl->type == SLOT_STRING && strlen(v->str) == sl->len &&
               memcmp(sl->s, v->str, sl->len) == 0;
    case VAL_NUMBER:
        return sl->type == SLOT_NUMBER && sl->num == v->num;
    case VAL_BOOL:
        return sl->type == SLOT_BOOL && sl->boolean == v->boolean;
    }
    return 0;
}

/* The same semantics as eval_cmp / eval_node, on slots. */
static int eval_slots(const struct node *n, const struct slot *slots)
{
    if (n->kind == NODE_AND || n->kind == NODE_OR) {
        for (size_t i = 0; i < n->n_kids; i++) {
            int r = eval_slots(n->kids[i], slots);
            if (n->kind == NODE_AND ? !r : r)
                return r;
        }
        return n->kind == NODE_AND;
    }
    const struct slot *sl = &slots[n->field_idx];
    int present = sl->type != SLOT_MISSING;
    switch (n->op) {
    case OP_EQ:
        return present && slot_equals(sl, &n->vals[0]);
    case OP_NE:
        return !(present && slot_equals(sl, &n->vals[0]));
    case OP_GT:
        return sl->type == SLOT_NUMBER && sl->num > n->vals[0].num;
    case OP_GTE:
        return sl->type == SLOT_NUMBER && sl->num >= n->vals[0].num;
    case OP_LT:
        return sl->type == SLOT_NUMBER && sl->num < n->vals[0].num;
    case OP_LTE:
        return sl->type == SLOT_NUMBER && sl->num <= n->vals[0].num;
    case OP_IN:
    case OP_NIN: {
        int found = 0;
        for (size_t i = 0; present && i < n->n_vals && !found; i++)
            found = slot_equals(sl, &n->vals[i]);
        return n->op == OP_IN ? found : !found;
    }
    }
    return 0;
}

/* Fills slots from a metadata object's text. Returns -1 when the text needs the full parser
 * (escapes in a key or a read string, anything unexpected). Only the first occurrence of a key
 * counts, as with cJSON_GetObjectItemCaseSensitive. */
static int scan_object(const sbert_index_filter *f, const char *json, size_t len,
                       struct slot *slots)
{
    struct scan sc = {json, json + len};
    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{')
        return -1;
    sc.p++;
    skip_ws(&sc);
    if (sc.p < sc.end && *sc.p == '}')
        return 0;
    for (;;) {
        const char *key;
        size_t klen;
        int escaped;
        skip_ws(&sc);
        if (scan_string(&sc, &key, &klen, &escaped) || escaped)
            return -1;
        skip_ws(&sc);
        if (sc.p >= sc.end || *sc.p != ':')
            return -1;
        sc.p++;
        size_t i;
        for (i = 0; i < f->n_fields; i++)
            if (strlen(f->fields[i]) == klen && memcmp(f->fields[i], key, klen) == 0)
                break;
        if (i < f->n_fields && slots[i].type == SLOT_MISSING) {
            if (scan_value(&sc, &slots[i]))
                return -1;
        } else if (skip_value(&sc))
            return -1;
        skip_ws(&sc);
        if (sc.p >= sc.end)
            return -1;
        if (*sc.p == '}')
            return 0;
        if (*sc.p != ',')
            return -1;
        sc.p++;
    }
}

int filter_match_raw(const sbert_index_filter *f, const char *metadata, size_t len)
{
    struct slot local[16];
    struct slot *slots = f->n_fields <= 16 ? local : calloc(f->n_fields, sizeof *slots);
    if (!slots)
        return SBERT_INDEX_ENOMEM;
    memset(slots, 0, (f->n_fields <= 16 ? 16 : f->n_fields) * sizeof *slots);
    int r;
    if (!metadata || len == 0)
        r = eval_slots(f->root, slots);
    else if (scan_object(f, metadata, len, slots) == 0)
        r = eval_slots(f->root, slots);
    else {
        cJSON *j = cJSON_ParseWithLength(metadata, len);
        r = j && cJSON_IsObject(j) ? eval_node(f->root, j) : SBERT_INDEX_EMETADATA;
        cJSON_Delete(j);
    }
    if (slots != local)
        free(slots);
    return r;
}

int filter_match_json(const sbert_index_filter *f, const cJSON *metadata)
{
    return eval_node(f->root, metadata);
}

int sbert_index_filter_match(const sbert_index_filter *f, const char *metadata, size_t len)
{
    if (!f)
        return SBERT_INDEX_EINVAL;
    return filter_match_raw(f, metadata, len);
}
