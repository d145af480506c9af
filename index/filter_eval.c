/*
 * filter_eval.c — evaluating a compiled metadata filter (filter.h, sbert_index_filter_match):
 * against a parsed cJSON object, or against the stored JSON text by scanning only its top-level
 * keys.
 */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "filter_impl.h"
#include "sbert_util.h"

/* ---- shared -------------------------------------------------------------------------------- */

#define FOLD_OPTS (UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_CASEFOLD)

int filter_fold(const char *s, size_t len, int32_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    utf8proc_int32_t probe[1];
    utf8proc_ssize_t need =
        utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, probe, 0, FOLD_OPTS);
    if (need < 0) return -1;
    int32_t *v = malloc(((size_t)need + 1) * sizeof *v);
    if (!v) return -2;
    if (need && utf8proc_decompose((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, v, need,
                                   FOLD_OPTS) != need) {
        free(v);
        return -2;
    }
    *out = v;
    *n = (size_t)need;
    return 0;
}

/* 1 when hay[0..len) contains the folded needle v->folded, case-insensitively (both sides folded
 * and decomposed); 0 otherwise, also for text that is not UTF-8 or when memory runs out. */
static int icontains(const char *hay, size_t len, const struct value *v)
{
    if (v->n_folded == 0) return 1;
    int32_t *h;
    size_t n;
    if (filter_fold(hay, len, &h, &n)) return 0;
    int found = 0;
    for (size_t i = 0; !found && i + v->n_folded <= n; i++)
        found = memcmp(h + i, v->folded, v->n_folded * sizeof *h) == 0;
    free(h);
    return found;
}

/* 1 when hay[0..len) contains needle (bytes), else 0. */
static int contains(const char *hay, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    return nl == 0 || (nl <= len && memmem(hay, len, needle, nl) != NULL);
}

/* The negative operators are the positive ones negated (so a missing field satisfies them). */
static enum cmp_op positive(enum cmp_op op)
{
    return op == OP_NE ? OP_EQ : op == OP_NIN ? OP_IN : op;
}

/* ---- evaluation on a parsed tree ------------------------------------------------------------- */

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

/* A positive operator on one value that is not an array. */
static int scalar_holds(const struct node *n, enum cmp_op op, const cJSON *j)
{
    const struct value *v = &n->vals[0];
    switch (op) {
    case OP_EQ:
        return value_equals(j, v);
    case OP_IN:
        for (size_t i = 0; i < n->n_vals; i++)
            if (value_equals(j, &n->vals[i])) return 1;
        return 0;
    case OP_GT:
        return cJSON_IsNumber(j) && j->valuedouble > v->num;
    case OP_GTE:
        return cJSON_IsNumber(j) && j->valuedouble >= v->num;
    case OP_LT:
        return cJSON_IsNumber(j) && j->valuedouble < v->num;
    case OP_LTE:
        return cJSON_IsNumber(j) && j->valuedouble <= v->num;
    case OP_CONTAINS: /* a substring of a string; otherwise (an array's numbers) equality */
        if (cJSON_IsString(j) && v->type == VAL_STRING)
            return contains(j->valuestring, strlen(j->valuestring), v->str);
        return value_equals(j, v);
    case OP_ICONTAINS:
        return cJSON_IsString(j) && icontains(j->valuestring, strlen(j->valuestring), v);
    default:
        return 0;
    }
}

/* The value at field: the top-level key of that exact name, else, for a dotted name, the path
 * through nested objects (first occurrence of each key, as cJSON's lookup). */
static const cJSON *lookup(const cJSON *meta, const char *field)
{
    if (!cJSON_IsObject(meta)) return NULL;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(meta, field);
    if (j || !strchr(field, '.')) return j;
    j = meta;
    for (const char *seg = field;;) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (!cJSON_IsObject(j)) return NULL;
        const cJSON *k;
        for (k = j->child; k; k = k->next)
            if (k->string && strlen(k->string) == len && memcmp(k->string, seg, len) == 0) break;
        if (!k || !dot) return k;
        j = k;
        seg = dot + 1;
    }
}

static int eval_cmp(const struct node *n, const cJSON *meta, const char *text, size_t text_len)
{
    if (n->text) {
        if (!text) text = "", text_len = 0;
        return n->op == OP_ICONTAINS ? icontains(text, text_len, &n->vals[0])
                                     : contains(text, text_len, n->vals[0].str);
    }
    const cJSON *j = lookup(meta, n->field);
    if (n->op == OP_EXISTS) return (j != NULL) == n->vals[0].boolean;
    enum cmp_op op = positive(n->op);
    int holds = 0;
    if (cJSON_IsArray(j)) { /* an array matches when one of its elements does */
        const cJSON *e;
        cJSON_ArrayForEach(e, j) if (!cJSON_IsArray(e) && scalar_holds(n, op, e)) holds = 1;
    } else if (j) {
        holds = scalar_holds(n, op, j);
    }
    return op == n->op ? holds : !holds;
}

/* Recursion depth is bounded by SBERT_INDEX_FILTER_MAX_DEPTH, checked at compile time. */
static int eval_node(const struct node *n, const cJSON *meta, const char *text, size_t text_len)
{
    switch (n->kind) {
    case NODE_AND:
        for (size_t i = 0; i < n->n_kids; i++)
            if (!eval_node(n->kids[i], meta, text, text_len)) return 0;
        return 1;
    case NODE_OR:
        for (size_t i = 0; i < n->n_kids; i++)
            if (eval_node(n->kids[i], meta, text, text_len)) return 1;
        return 0;
    case NODE_NOT:
        return !eval_node(n->kids[0], meta, text, text_len);
    case NODE_CMP:
        return eval_cmp(n, meta, text, text_len);
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
    if (sc->p >= sc->end || *sc->p != '"') return -1;
    const char *start = ++sc->p;
    *escaped = 0;
    while (sc->p < sc->end && *sc->p != '"') {
        if ((unsigned char)*sc->p < 0x20) *escaped = 1;
        if (*sc->p == '\\') {
            *escaped = 1;
            sc->p++;
        }
        sc->p++;
    }
    if (sc->p >= sc->end) return -1;
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
        if (sc->p >= sc->end) return -1;
        char c = *sc->p;
        if (c == '"') {
            const char *s;
            size_t l;
            int e;
            if (scan_string(sc, &s, &l, &e)) return -1;
        } else if (c == '{' || c == '[') {
            depth++;
            sc->p++;
        } else if (c == '}' || c == ']') {
            if (--depth < 0) return -1;
            sc->p++;
        } else if (c == ',' || c == ':') {
            if (depth == 0) return -1;
            sc->p++;
        } else {
            /* a number, true, false or null; any other byte (a NUL, a control character that
             * cJSON skips as whitespace) is left to the full parser */
            const char *start = sc->p;
            while (sc->p < sc->end && in_set("0123456789+-.eEtrufalsn", *sc->p))
                sc->p++;
            if (sc->p == start) return -1;
        }
    } while (depth > 0);
    return 0;
}

/* Reads the value at sc->p into slot. */
static int scan_value(struct scan *sc, struct slot *sl)
{
    skip_ws(sc);
    if (sc->p >= sc->end) return -1;
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
        if (n == sizeof buf - 1) return -1;
        memcpy(buf, sc->p, n);
        buf[n] = 0;
        char *e;
        sl->num = strtod(buf, &e);
        if (e != buf + n) return -1;
        sc->p += n;
        sl->type = SLOT_NUMBER;
        return 0;
    }
    if (c == '[') return -1; /* array semantics: left to the tree evaluator */
    sl->type = SLOT_OTHER;   /* null, object */
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

/* The same semantics as eval_node, on slots (which never hold an array: scan_value leaves those
 * to the tree evaluator). */
static int eval_slots(const struct node *n, const struct slot *slots, const char *text,
                      size_t text_len)
{
    if (n->kind == NODE_AND || n->kind == NODE_OR) {
        for (size_t i = 0; i < n->n_kids; i++) {
            int r = eval_slots(n->kids[i], slots, text, text_len);
            if (n->kind == NODE_AND ? !r : r) return r;
        }
        return n->kind == NODE_AND;
    }
    if (n->kind == NODE_NOT) return !eval_slots(n->kids[0], slots, text, text_len);
    if (n->text) {
        if (!text) text = "", text_len = 0;
        return n->op == OP_ICONTAINS ? icontains(text, text_len, &n->vals[0])
                                     : contains(text, text_len, n->vals[0].str);
    }
    const struct slot *sl = &slots[n->field_idx];
    int present = sl->type != SLOT_MISSING;
    if (n->op == OP_EXISTS) return present == n->vals[0].boolean;
    enum cmp_op op = positive(n->op);
    const struct value *v = &n->vals[0];
    int holds = 0;
    switch (op) {
    case OP_EQ:
        holds = slot_equals(sl, v);
        break;
    case OP_IN:
        for (size_t i = 0; i < n->n_vals && !holds; i++)
            holds = slot_equals(sl, &n->vals[i]);
        break;
    case OP_GT:
        holds = sl->type == SLOT_NUMBER && sl->num > v->num;
        break;
    case OP_GTE:
        holds = sl->type == SLOT_NUMBER && sl->num >= v->num;
        break;
    case OP_LT:
        holds = sl->type == SLOT_NUMBER && sl->num < v->num;
        break;
    case OP_LTE:
        holds = sl->type == SLOT_NUMBER && sl->num <= v->num;
        break;
    case OP_CONTAINS:
        holds = sl->type == SLOT_STRING && v->type == VAL_STRING ? contains(sl->s, sl->len, v->str)
                                                                 : slot_equals(sl, v);
        break;
    case OP_ICONTAINS:
        holds = sl->type == SLOT_STRING && icontains(sl->s, sl->len, v);
        break;
    default:
        break;
    }
    return op == n->op ? holds : !holds;
}

/* Fills slots from a metadata object's text. Returns -1 when the text needs the full parser
 * (escapes in a key or a read string, anything unexpected). Only the first occurrence of a key
 * counts, as with cJSON_GetObjectItemCaseSensitive. */
static int scan_object(const sbert_index_filter *f, const char *json, size_t len,
                       struct slot *slots)
{
    struct scan sc = {json, json + len};
    skip_ws(&sc);
    if (sc.p >= sc.end || *sc.p != '{') return -1;
    sc.p++;
    skip_ws(&sc);
    if (sc.p < sc.end && *sc.p == '}') return 0;
    for (;;) {
        const char *key;
        size_t klen;
        int escaped;
        skip_ws(&sc);
        if (scan_string(&sc, &key, &klen, &escaped) || escaped) return -1;
        skip_ws(&sc);
        if (sc.p >= sc.end || *sc.p != ':') return -1;
        sc.p++;
        size_t i;
        for (i = 0; i < f->n_fields; i++)
            if (strlen(f->fields[i]) == klen && memcmp(f->fields[i], key, klen) == 0) break;
        if (i < f->n_fields && slots[i].type == SLOT_MISSING) {
            if (scan_value(&sc, &slots[i])) return -1;
        } else if (skip_value(&sc))
            return -1;
        skip_ws(&sc);
        if (sc.p >= sc.end) return -1;
        if (*sc.p == '}') return 0;
        if (*sc.p != ',') return -1;
        sc.p++;
    }
}

int filter_match_doc(const sbert_index_filter *f, const char *metadata, size_t len,
                     const char *text, size_t text_len)
{
    struct slot local[16];
    struct slot *slots = f->n_fields <= 16 ? local : calloc(f->n_fields, sizeof *slots);
    if (!slots) return SBERT_INDEX_ENOMEM;
    memset(slots, 0, (f->n_fields <= 16 ? 16 : f->n_fields) * sizeof *slots);
    int r;
    if (!metadata || len == 0)
        r = eval_slots(f->root, slots, text, text_len);
    else if (!f->tree && scan_object(f, metadata, len, slots) == 0)
        r = eval_slots(f->root, slots, text, text_len);
    else {
        cJSON *j = cJSON_ParseWithLength(metadata, len);
        int object = 0;
        if (!j && sbert_util_json_valid(metadata, len, &object) && object)
            r = SBERT_INDEX_ENOMEM; /* sound JSON that cJSON could not allocate for */
        else
            r = j && cJSON_IsObject(j) ? eval_node(f->root, j, text, text_len)
                                       : SBERT_INDEX_EMETADATA;
        cJSON_Delete(j);
    }
    if (slots != local) free(slots);
    return r;
}

int filter_match_raw(const sbert_index_filter *f, const char *metadata, size_t len)
{
    return filter_match_doc(f, metadata, len, NULL, 0);
}

int filter_match_json(const sbert_index_filter *f, const cJSON *metadata)
{
    return eval_node(f->root, metadata, NULL, 0);
}

int sbert_index_filter_match(const sbert_index_filter *f, const char *metadata, size_t len)
{
    if (!f) return SBERT_INDEX_EINVAL;
    return filter_match_raw(f, metadata, len);
}
