/*
 * filter.c — the metadata filter language (docs/filters.md): compile JSON into the tree of nodes
 * of filter_impl.h, and free it. Evaluation is filter_eval.c.
 *
 * The compiler checks the size limit before parsing and the depth and node limits before each
 * recursion step, so a filter bomb is refused after O(its size) work with bounded stack.
 */
#include "filter_impl.h"
#include "sbert_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    enum cmp_op op;
} op_table[] = {
    {"$eq", OP_EQ},
    {"$ne", OP_NE},
    {"$gt", OP_GT},
    {"$gte", OP_GTE},
    {"$lt", OP_LT},
    {"$lte", OP_LTE},
    {"$in", OP_IN},
    {"$nin", OP_NIN},
    {"$exists", OP_EXISTS},
    {"$contains", OP_CONTAINS},
    {"$icontains", OP_ICONTAINS},
};
#define KNOWN_OPS "$eq $ne $gt $gte $lt $lte $in $nin $exists $contains $icontains"

/* ---- compilation ----------------------------------------------------------------------------- */

struct compiler {
    size_t nodes;
    char *errbuf;
    size_t errlen;
    int err; /* first error; later ones are not recorded */
};

static void node_free(struct node *n)
{
    if (!n) return;
    for (size_t i = 0; i < n->n_kids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    for (size_t i = 0; i < n->n_vals; i++) {
        free(n->vals[i].str);
        free(n->vals[i].folded);
    }
    free(n->vals);
    free(n->field);
    free(n);
}

static void fail(struct compiler *c, int err, const char *path, const char *fmt, ...)
{
    if (c->err) return;
    c->err = err;
    if (!c->errbuf || c->errlen == 0) return;
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
    if (cJSON_IsString(j)) return "string";
    if (cJSON_IsNumber(j)) return "number";
    if (cJSON_IsBool(j)) return "bool";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "array";
    if (cJSON_IsObject(j)) return "object";
    return "invalid";
}

/* Appends ".name" or "[i]" to a path, truncating silently (the path is for messages only). */
static void path_join(char *out, size_t cap, const char *base, const char *name, long index)
{
    int n = name ? snprintf(out, cap, "%s%s%s", base, base[0] ? "." : "", name)
                 : snprintf(out, cap, "%s[%ld]", base, index);
    if (n < 0) out[0] = 0;
}

static struct node *node_new(struct compiler *c, const char *path)
{
    if (++c->nodes > SBERT_INDEX_FILTER_MAX_NODES) {
        fail(c, SBERT_INDEX_EFILTER, path, "more than %d nodes", SBERT_INDEX_FILTER_MAX_NODES);
        return NULL;
    }
    struct node *n = calloc(1, sizeof *n);
    if (!n) fail(c, SBERT_INDEX_ENOMEM, path, "out of memory");
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
                                const char *opname, const cJSON *arg, const char *path, int text)
{
    int is_list = op == OP_IN || op == OP_NIN;
    int is_order = op == OP_GT || op == OP_GTE || op == OP_LT || op == OP_LTE;
    if (text && op != OP_CONTAINS && op != OP_ICONTAINS) {
        fail(c, SBERT_INDEX_EFILTER, path, "$text takes $contains or $icontains, not %s", opname);
        return NULL;
    }
    if ((op == OP_ICONTAINS || (text && op == OP_CONTAINS)) && !cJSON_IsString(arg)) {
        fail(c, SBERT_INDEX_EFILTER, path, "%s needs a string, got %s", opname, type_name(arg));
        return NULL;
    }
    if (op == OP_EXISTS && !cJSON_IsBool(arg)) {
        fail(c, SBERT_INDEX_EFILTER, path, "$exists needs true or false, got %s", type_name(arg));
        return NULL;
    }
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
    if (!n) return NULL;
    n->kind = NODE_CMP;
    n->op = op;
    n->text = text;
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
    if (op == OP_ICONTAINS) {
        int rc = filter_fold(n->vals[0].str, strlen(n->vals[0].str), &n->vals[0].folded,
                             &n->vals[0].n_folded);
        if (rc) {
            if (rc == -1)
                fail(c, SBERT_INDEX_EFILTER, path, "$icontains needs a UTF-8 string");
            else
                fail(c, SBERT_INDEX_ENOMEM, path, "out of memory");
            node_free(n);
            return NULL;
        }
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

/* A field's condition: a scalar (equality) or an object of one or more operators (ANDed). text:
 * the $text pseudo-field, the document's own text. */
static struct node *compile_field(struct compiler *c, const cJSON *item, const char *path, int text)
{
    const char *field = item->string;
    if (text && !cJSON_IsObject(item)) {
        fail(c, SBERT_INDEX_EFILTER, path,
             "$text needs an operator object ($contains, $icontains)");
        return NULL;
    }
    if (!cJSON_IsObject(item)) {
        if (cJSON_IsArray(item) || cJSON_IsNull(item)) {
            fail(c, SBERT_INDEX_EFILTER, path,
                 "a field's value must be a string, number, bool or an operator object, got %s",
                 type_name(item));
            return NULL;
        }
        return compile_cmp(c, field, OP_EQ, "equality", item, path, 0);
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
            if (strcmp(op->string, op_table[i].name) == 0) break;
        if (i == sizeof op_table / sizeof op_table[0]) {
            fail(c, SBERT_INDEX_EFILTER, p, "unknown operator \"%s\" (known: " KNOWN_OPS ")",
                 op->string);
            node_free(single);
            node_free(all);
            return NULL;
        }
        struct node *n = compile_cmp(c, field, op_table[i].op, op_table[i].name, op, p, text);
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
    if (!n) return NULL;
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

/* {"$not": filter}: true where filter is false. */
static struct node *compile_not(struct compiler *c, const cJSON *item, const char *path, int depth)
{
    if (!cJSON_IsObject(item)) {
        fail(c, SBERT_INDEX_EFILTER, path, "$not needs a filter object, got %s", type_name(item));
        return NULL;
    }
    struct node *n = node_new(c, path);
    if (!n) return NULL;
    n->kind = NODE_NOT;
    struct node *k = compile_object(c, item, path, depth + 1);
    if (!k || kid_add(c, n, k, path)) {
        node_free(n);
        return NULL;
    }
    return n;
}

/* A filter object: its keys ($and, $or, $not, $text or field names) are ANDed. */
static struct node *compile_object(struct compiler *c, const cJSON *obj, const char *path,
                                   int depth)
{
    if (depth > SBERT_INDEX_FILTER_MAX_DEPTH) {
        fail(c, SBERT_INDEX_EFILTER, path, "nested deeper than %d levels",
             SBERT_INDEX_FILTER_MAX_DEPTH);
        return NULL;
    }
    struct node *all = node_new(c, path);
    if (!all) return NULL;
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
        else if (strcmp(item->string, "$not") == 0)
            k = compile_not(c, item, p, depth);
        else if (strcmp(item->string, "$text") == 0)
            k = compile_field(c, item, p, 1);
        else if (item->string[0] == '$') {
            fail(c, SBERT_INDEX_EFILTER, p,
                 "unknown logical operator \"%s\" (known: $and $or $not $text; field names "
                 "must not start with $)",
                 item->string);
            k = NULL;
        } else if (item->string[0] == '\0') {
            fail(c, SBERT_INDEX_EFILTER, p, "empty field name");
            k = NULL;
        } else
            k = compile_field(c, item, p, 0);
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
    if (depth > limit) return 1;
    for (const cJSON *e = j->child; e; e = e->next)
        if ((cJSON_IsArray(e) || cJSON_IsObject(e)) && json_depth_exceeds(e, depth + 1, limit))
            return 1;
    return 0;
}

/* Gives every comparison node the index of its field in f->fields (distinct names). */
static int collect_fields(sbert_index_filter *f, struct node *n)
{
    for (size_t i = 0; i < n->n_kids; i++)
        if (collect_fields(f, n->kids[i])) return -1;
    if (n->kind != NODE_CMP) return 0;
    if (n->text) {
        f->text = 1;
        return 0;
    }
    if (strchr(n->field, '.')) f->tree = 1;
    for (size_t i = 0; i < f->n_fields; i++)
        if (strcmp(f->fields[i], n->field) == 0) {
            n->field_idx = i;
            return 0;
        }
    char **nf = realloc(f->fields, (f->n_fields + 1) * sizeof *nf);
    if (!nf) return -1;
    f->fields = nf;
    n->field_idx = f->n_fields;
    f->fields[f->n_fields++] = n->field;
    return 0;
}

int sbert_index_filter_compile(const char *json, size_t len, sbert_index_filter **out, char *errbuf,
                               size_t errlen)
{
    struct compiler c = {.errbuf = errbuf, .errlen = errlen};
    if (out) *out = NULL;
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
    if (!root && sbert_util_json_valid(json, len, NULL)) {
        /* sound JSON that cJSON could not allocate for */
        fail(&c, SBERT_INDEX_ENOMEM, NULL, "out of memory");
        return c.err;
    }
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
    if (!n) return c.err ? c.err : SBERT_INDEX_ENOMEM;
    sbert_index_filter *f = malloc(sizeof *f);
    if (!f) {
        node_free(n);
        fail(&c, SBERT_INDEX_ENOMEM, NULL, "out of memory");
        return SBERT_INDEX_ENOMEM;
    }
    f->root = n;
    f->fields = NULL;
    f->n_fields = 0;
    f->tree = f->text = 0;
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
    if (!f) return;
    node_free(f->root);
    free(f->fields); /* the names belong to the nodes */
    free(f);
}
