/* optable.c — the protocol's vocabulary as data: PROTOCOL.md section 2's common members and
 * section 4's operations. tests/proto/optable_doc.py checks this file against the document. */
#include "sbert_proto.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- section 2: members of every request ------------------------------------------------------
 */

static const struct sbert_proto_member envelope[] = {
    {"v", SBERT_PROTO_M_INT, 1, 0, 0},
    {"op", SBERT_PROTO_M_STRING, 1, 0, 0},
    {"req_id", SBERT_PROTO_M_STRING, 0, 0, 0},
    {"token", SBERT_PROTO_M_STRING, 0, 0, SBERT_PROTO_MF_CONFIGURED},
};

/* ---- section 4: the operations ------------------------------------------------------------------
 */

/* Columns: name, type, required, one_of group, flags. */
static const struct sbert_proto_member m_add[] = {
    {"documents", SBERT_PROTO_M_OBJECTS, 1, 0, SBERT_PROTO_MF_BATCH},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_get[] = {
    {"ids", SBERT_PROTO_M_STRINGS, 1, 0, SBERT_PROTO_MF_BATCH},
    {"include", SBERT_PROTO_M_ARRAY, 0, 0, 0},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_delete[] = {
    {"ids", SBERT_PROTO_M_STRINGS, 0, 1, SBERT_PROTO_MF_BATCH},
    {"filter", SBERT_PROTO_M_OBJECT, 0, 1, 0},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_query[] = {
    {"text", SBERT_PROTO_M_STRING, 0, 1, 0},
    {"vector", SBERT_PROTO_M_NUMBERS, 0, 1, 0},
    {"texts", SBERT_PROTO_M_STRINGS, 0, 1, SBERT_PROTO_MF_BATCH},
    {"vectors", SBERT_PROTO_M_VECTORS, 0, 1, SBERT_PROTO_MF_BATCH},
    {"k", SBERT_PROTO_M_INT, 0, 0, 0},
    {"filter", SBERT_PROTO_M_OBJECT, 0, 0, 0},
    {"min_score", SBERT_PROTO_M_NUMBER, 0, 0, 0},
    {"include", SBERT_PROTO_M_ARRAY, 0, 0, 0},
    {"mode", SBERT_PROTO_M_STRING, 0, 0, 0},
    {"fusion", SBERT_PROTO_M_STRING, 0, 0, 0},
    {"weight", SBERT_PROTO_M_NUMBER, 0, 0, 0},
    {"candidates", SBERT_PROTO_M_INT, 0, 0, 0},
    {"diversity", SBERT_PROTO_M_NUMBER, 0, 0, 0},
    {"group", SBERT_PROTO_M_STRING, 0, 0, 0},
    {"passages_per_document", SBERT_PROTO_M_INT, 0, 0, 0},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_similarity[] = {
    {"a", SBERT_PROTO_M_STRING_OR_STRINGS, 1, 0, SBERT_PROTO_MF_BATCH},
    {"b", SBERT_PROTO_M_STRING_OR_STRINGS, 1, 0, SBERT_PROTO_MF_BATCH},
};
static const struct sbert_proto_member m_encode[] = {
    {"texts", SBERT_PROTO_M_STRINGS, 1, 0, SBERT_PROTO_MF_BATCH},
};
static const struct sbert_proto_member m_pairs[] = {
    {"texts", SBERT_PROTO_M_STRINGS, 0, 0, SBERT_PROTO_MF_BATCH},
    {"n", SBERT_PROTO_M_INT, 0, 0, 0},
    {"min_score", SBERT_PROTO_M_NUMBER, 0, 0, 0},
    {"filter", SBERT_PROTO_M_OBJECT, 0, 0, SBERT_PROTO_MF_COLLECTION},
    {"per_doc_k", SBERT_PROTO_M_INT, 0, 0, SBERT_PROTO_MF_COLLECTION},
    {"include", SBERT_PROTO_M_ARRAY, 0, 0, SBERT_PROTO_MF_COLLECTION},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_backup[] = {
    {"dir", SBERT_PROTO_M_STRING, 1, 0, 0},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};

static const struct sbert_proto_member m_list[] = {
    {"filter", SBERT_PROTO_M_OBJECT, 0, 0, 0},     {"limit", SBERT_PROTO_M_INT, 0, 0, 0},
    {"cursor", SBERT_PROTO_M_STRING, 0, 0, 0},     {"include", SBERT_PROTO_M_ARRAY, 0, 0, 0},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_count[] = {
    {"filter", SBERT_PROTO_M_OBJECT, 0, 0, 0},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_patch[] = {
    {"documents", SBERT_PROTO_M_OBJECTS, 1, 0, SBERT_PROTO_MF_BATCH},
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};

static const struct sbert_proto_member m_reindex[] = {
    {"collection", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_create_collection[] = {
    {"name", SBERT_PROTO_M_STRING, 1, 0, 0},
    {"index", SBERT_PROTO_M_STRING, 0, 0, 0},
    {"ef_search", SBERT_PROTO_M_INT, 0, 0, 0},
    {"nprobe", SBERT_PROTO_M_INT, 0, 0, 0},
    {"keyword_language", SBERT_PROTO_M_STRING, 0, 0, 0},
};
static const struct sbert_proto_member m_describe_collection[] = {
    {"name", SBERT_PROTO_M_STRING, 1, 0, 0},
};
static const struct sbert_proto_member m_drop_collection[] = {
    {"name", SBERT_PROTO_M_STRING, 1, 0, 0},
};

#define OP(id, name, writes, members, summary)                                                     \
    {                                                                                              \
        name, writes, members, N(members), summary, id                                             \
    }
#define OP0(id, name, writes, summary)                                                             \
    {                                                                                              \
        name, writes, NULL, 0, summary, id                                                         \
    }

static const struct sbert_proto_op ops[] = {
    OP(SBERT_PROTO_OP_ADD, "add", 1, m_add, "insert or replace documents"),
    OP(SBERT_PROTO_OP_GET, "get", 0, m_get, "fetch documents by id"),
    OP(SBERT_PROTO_OP_DELETE, "delete", 1, m_delete, "remove documents by id or by filter"),
    OP(SBERT_PROTO_OP_QUERY, "query", 0, m_query, "the k most similar documents"),
    OP(SBERT_PROTO_OP_SIMILARITY, "similarity", 0, m_similarity, "cosine similarity of texts"),
    OP(SBERT_PROTO_OP_ENCODE, "encode", 0, m_encode, "texts to embeddings (`model.encode`)"),
    OP(SBERT_PROTO_OP_PAIRS, "pairs", 0, m_pairs, "paraphrase mining"),
    OP0(SBERT_PROTO_OP_STATS, "stats", 0, "counters and state"),
    OP0(SBERT_PROTO_OP_HEALTH, "health", 0, "liveness"),
    OP(SBERT_PROTO_OP_BACKUP, "backup", 1, m_backup, "hot copy of the store"),
    OP(SBERT_PROTO_OP_REINDEX, "reindex", 1, m_reindex, "re-encode every stored text"),
    OP(SBERT_PROTO_OP_LIST, "list", 0, m_list, "documents in id order, a page at a time"),
    OP(SBERT_PROTO_OP_COUNT, "count", 0, m_count, "the number of documents a filter accepts"),
    OP(SBERT_PROTO_OP_PATCH, "patch", 1, m_patch, "update documents' metadata"),
    OP(SBERT_PROTO_OP_CREATE_COLLECTION, "create_collection", 1, m_create_collection,
       "a new, empty collection"),
    OP0(SBERT_PROTO_OP_LIST_COLLECTIONS, "list_collections", 0, "every collection"),
    OP(SBERT_PROTO_OP_DESCRIBE_COLLECTION, "describe_collection", 0, m_describe_collection,
       "one collection's figures"),
    OP(SBERT_PROTO_OP_DROP_COLLECTION, "drop_collection", 1, m_drop_collection,
       "delete a collection and its documents"),
};
_Static_assert(N(ops) == SBERT_PROTO_N_OPS, "one row per enum sbert_proto_op_id");

/* ---- lookups ------------------------------------------------------------------------------------
 */

const struct sbert_proto_op *sbert_proto_ops(size_t *n)
{
    if (n) *n = N(ops);
    return ops;
}

const struct sbert_proto_op *sbert_proto_op_find(const char *name)
{
    for (size_t i = 0; name && i < N(ops); i++)
        if (strcmp(ops[i].name, name) == 0) return &ops[i];
    return NULL;
}

const struct sbert_proto_member *sbert_proto_envelope(size_t *n)
{
    if (n) *n = N(envelope);
    return envelope;
}

static const struct sbert_proto_member *find_member(const struct sbert_proto_member *m, size_t n,
                                                    const char *name)
{
    for (size_t i = 0; name && i < n; i++)
        if (strcmp(m[i].name, name) == 0) return &m[i];
    return NULL;
}

const struct sbert_proto_member *sbert_proto_op_member(const struct sbert_proto_op *op,
                                                       const char *name)
{
    return op ? find_member(op->members, op->n_members, name) : NULL;
}

const char *sbert_proto_mtype_name(enum sbert_proto_mtype type)
{
    static const char *const names[] = {
        [SBERT_PROTO_M_STRING] = "string",
        [SBERT_PROTO_M_INT] = "int",
        [SBERT_PROTO_M_NUMBER] = "number",
        [SBERT_PROTO_M_BOOL] = "bool",
        [SBERT_PROTO_M_ARRAY] = "array",
        [SBERT_PROTO_M_OBJECT] = "object",
        [SBERT_PROTO_M_STRINGS] = "array of strings",
        [SBERT_PROTO_M_NUMBERS] = "array of numbers",
        [SBERT_PROTO_M_OBJECTS] = "array of objects",
        [SBERT_PROTO_M_STRING_OR_STRINGS] = "string or array of strings",
        [SBERT_PROTO_M_VECTORS] = "array of arrays of numbers",
    };
    if ((unsigned)type < N(names) && names[type]) return names[type];
    return "?";
}

static int all_items(const cJSON *x, cJSON_bool (*is)(const cJSON *))
{
    if (!cJSON_IsArray(x)) return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, x)
    {
        if (!is(e)) return 0;
    }
    return 1;
}

static cJSON_bool is_numbers(const cJSON *x)
{
    return (cJSON_bool)all_items(x, cJSON_IsNumber);
}

int sbert_proto_mtype_matches(enum sbert_proto_mtype type, const cJSON *x)
{
    switch (type) {
    case SBERT_PROTO_M_STRING:
        return cJSON_IsString(x) != 0;
    case SBERT_PROTO_M_INT:
        return cJSON_IsNumber(x) && isfinite(x->valuedouble) &&
               x->valuedouble == floor(x->valuedouble);
    case SBERT_PROTO_M_NUMBER:
        return cJSON_IsNumber(x) != 0;
    case SBERT_PROTO_M_BOOL:
        return cJSON_IsBool(x) != 0;
    case SBERT_PROTO_M_ARRAY:
        return cJSON_IsArray(x) != 0;
    case SBERT_PROTO_M_OBJECT:
        return cJSON_IsObject(x) != 0;
    case SBERT_PROTO_M_STRINGS:
        return all_items(x, cJSON_IsString);
    case SBERT_PROTO_M_NUMBERS:
        return all_items(x, cJSON_IsNumber);
    case SBERT_PROTO_M_OBJECTS:
        return all_items(x, cJSON_IsObject);
    case SBERT_PROTO_M_STRING_OR_STRINGS:
        return cJSON_IsString(x) || all_items(x, cJSON_IsString);
    case SBERT_PROTO_M_VECTORS:
        return all_items(x, is_numbers);
    }
    return 0;
}

int sbert_proto_op_check_members(const struct sbert_proto_op *op, const cJSON *req,
                                 struct sbert_proto_error *err)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, req)
    {
        if (!m->string || sbert_proto_op_member(op, m->string) ||
            find_member(envelope, N(envelope), m->string))
            continue;
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1, "unknown member \"%.64s\"",
                                     m->string);
    }
    return 0;
}

/* Checks member m's value x (NULL: absent) in a request of op. */
static int check_value(const struct sbert_proto_member *m, const cJSON *x, const char *op,
                       unsigned flags, struct sbert_proto_error *err)
{
    if (!x && m->required)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "%s: the required member \"%s\" is missing", op, m->name);
    if (x && (flags & SBERT_PROTO_CHECK_TYPES) && !sbert_proto_mtype_matches(m->type, x))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "%s: \"%s\" must be of type %s", op, m->name,
                                     sbert_proto_mtype_name(m->type));
    return 0;
}

int sbert_proto_op_check_request(const cJSON *req, unsigned flags,
                                 const struct sbert_proto_op **op_out,
                                 struct sbert_proto_error *err)
{
    if (op_out) *op_out = NULL;
    if (!cJSON_IsObject(req))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "a request is a JSON object");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(req, "op");
    const struct sbert_proto_op *op =
        sbert_proto_op_find(cJSON_IsString(name) ? name->valuestring : NULL);
    if (!op)
        return sbert_proto_error_set(err, SBERT_PROTO_EUNKNOWN_OP, -1, "unknown op \"%.64s\"",
                                     cJSON_IsString(name) ? name->valuestring : "");
    if (op_out) *op_out = op;
    int rc = sbert_proto_op_check_members(op, req, err);
    for (size_t i = 0; !rc && i < N(envelope); i++)
        rc = check_value(&envelope[i], cJSON_GetObjectItemCaseSensitive(req, envelope[i].name),
                         op->name, flags, err);
    for (size_t i = 0; !rc && i < op->n_members; i++)
        rc =
            check_value(&op->members[i], cJSON_GetObjectItemCaseSensitive(req, op->members[i].name),
                        op->name, flags, err);
    /* "one of": each group once, at its first member */
    for (size_t i = 0; !rc && i < op->n_members; i++) {
        int g = op->members[i].one_of, first = 1, present = 0;
        char names[256] = "";
        size_t used = 0;
        for (size_t j = 0; g && j < op->n_members; j++) {
            if (op->members[j].one_of != g) continue;
            first &= j >= i;
            present += cJSON_GetObjectItemCaseSensitive(req, op->members[j].name) != NULL;
            int w = snprintf(names + used, sizeof names - used, "%s\"%s\"", used ? ", " : "",
                             op->members[j].name);
            if (w > 0 && (size_t)w < sizeof names - used) used += (size_t)w;
        }
        if (g && first && present != 1)
            rc = sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                       "%s: give exactly one of %s, not %d", op->name, names,
                                       present);
    }
    return rc;
}
