/*
 * fuzz_proto.c — libFuzzer target for the wire protocol (proto/): one input is one raw message.
 *
 * The daemon side: sbert_proto_request_parse(), then, for a parsed request, the op table's checks
 * (sbert_proto_op_check_members, sbert_proto_op_check_request) and, for each member the table
 * gives the op, the getter daemon/ops.c calls for it with the same limits (every op's members for
 * an unknown op), so the validation of every member is reached with hostile values. Op and member
 * names come from proto/'s op table only. The client side: sbert_proto_reply_parse() on the same
 * bytes. Invariants checked besides the sanitizers: a failure is a wire code with a
 * NUL-terminated message; a success leaves the outputs consistent, and a value a getter accepted
 * has the table's type; the table's two member checks agree.
 */
#include "sbert_proto.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

/* The daemon's defaults (PROTOCOL.md section 3). */
#define MAX_BATCH SBERT_PROTO_DEFAULT_MAX_BATCH
#define MAX_TEXT SBERT_PROTO_DEFAULT_MAX_TEXT_BYTES
#define MAX_K SBERT_PROTO_DEFAULT_MAX_K
#define DIM 384

static void check_error(int rc, const struct sbert_proto_error *err)
{
    FUZZ_ASSERT(rc < 0 && rc >= SBERT_PROTO_EINTERNAL);
    FUZZ_ASSERT(err->code == rc);
    FUZZ_ASSERT(memchr(err->message, '\0', sizeof err->message) != NULL);
    FUZZ_ASSERT(strcmp(err->code_name, sbert_proto_code_name(rc)) == 0);
}

/* The getters of lists return 0 when they accepted the list, else the (checked) error. */
static int texts(const cJSON *root, const char *name, int required)
{
    struct sbert_proto_error err;
    const char **t = NULL;
    size_t *l = NULL, n = 0;
    int rc = sbert_proto_get_texts(root, name, required, MAX_BATCH, MAX_TEXT, &t, &l, &n, &err);
    if (rc) {
        check_error(rc, &err);
        return rc;
    }
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(l[i] >= 1 && l[i] <= MAX_TEXT && strlen(t[i]) == l[i]);
    free(t);
    free(l);
    return 0;
}

static void ids(const cJSON *root, const char *name, int required)
{
    struct sbert_proto_error err;
    const cJSON *arr = NULL, *x;
    size_t n;
    int rc = sbert_proto_get_array(root, name, required, MAX_BATCH, &arr, &n, &err);
    if (rc) {
        check_error(rc, &err);
        return;
    }
    long i = 0;
    cJSON_ArrayForEach(x, arr)
    {
        char numbuf[24];
        const char *s;
        size_t len;
        rc = sbert_proto_check_id(x, "ids[i]", i++, numbuf, &s, &len, &err);
        if (rc)
            check_error(rc, &err);
        else
            FUZZ_ASSERT(len >= 1 && len <= SBERT_PROTO_ID_MAX && strlen(s) == len);
    }
}

static void documents(const cJSON *root, const char *name, int required)
{
    static const char *const doc_members[] = {"id", "text", "metadata", NULL};
    struct sbert_proto_error err;
    const cJSON *arr = NULL, *x;
    size_t n;
    int rc = sbert_proto_get_array(root, name, required, MAX_BATCH, &arr, &n, &err);
    if (rc) {
        check_error(rc, &err);
        return;
    }
    long i = 0;
    cJSON_ArrayForEach(x, arr)
    {
        char numbuf[24];
        const char *s;
        size_t len;
        if (!cJSON_IsObject(x)) continue;
        if ((rc = sbert_proto_check_members(x, doc_members, 0, &err))) check_error(rc, &err);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
        if (id && (rc = sbert_proto_check_id(id, "id", i, numbuf, &s, &len, &err)))
            check_error(rc, &err);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(x, "text");
        if (text && (rc = sbert_proto_check_text(text, "text", i, MAX_TEXT, &s, &len, &err)))
            check_error(rc, &err);
        i++;
    }
}

/* The batch query's vectors, each item read as daemon/ops_search.c reads it. */
static void vectors(const cJSON *root, const char *name, int required)
{
    struct sbert_proto_error err;
    const cJSON *arr, *x;
    size_t n;
    float v[DIM];
    int rc = sbert_proto_get_array(root, name, required, MAX_BATCH, &arr, &n, &err);
    if (rc || !cJSON_GetObjectItemCaseSensitive(root, name)) {
        if (rc) check_error(rc, &err);
        return;
    }
    FUZZ_ASSERT(n >= 1 && n <= MAX_BATCH);
    long i = 0;
    cJSON_ArrayForEach(x, arr)
    {
        if ((rc = sbert_proto_check_vector(x, "vectors[i]", i, DIM, v, &err))) {
            check_error(rc, &err);
            FUZZ_ASSERT(err.index == i);
        } else
            FUZZ_ASSERT(sbert_proto_mtype_matches(SBERT_PROTO_M_NUMBERS, x));
        i++;
    }
}

/* Asserts that member m, which its getter accepted (rc 0), has the table's type when present. */
static void accepted(const cJSON *root, const struct sbert_proto_member *m, int rc)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, m->name);
    if (rc == 0 && x) FUZZ_ASSERT(sbert_proto_mtype_matches(m->type, x));
}

/* The getter daemon/ops.c calls for member m of a request, with its limits. Keyed by the table's
 * type; where two members of a type differ in limits, by the table's name. */
static void get_member(const cJSON *root, const struct sbert_proto_member *m)
{
    struct sbert_proto_error err;
    const char *s;
    size_t len;
    long long i = 10;
    double d = -2;
    unsigned include = 0;
    float v[DIM];
    int rc = 0;
    switch (m->type) {
    case SBERT_PROTO_M_STRING:
        if (strcmp(m->name, "dir") == 0) {
            rc = sbert_proto_get_string(root, m->name, m->required, 4000, &s, &err);
            if (!rc && cJSON_GetObjectItemCaseSensitive(root, m->name))
                FUZZ_ASSERT(strlen(s) >= 1 && strlen(s) <= 4000);
        } else {
            rc = sbert_proto_get_text(root, m->name, m->required, MAX_TEXT, &s, &len, &err);
            if (!rc && cJSON_GetObjectItemCaseSensitive(root, m->name))
                FUZZ_ASSERT(len >= 1 && len <= MAX_TEXT && strlen(s) == len);
        }
        break;
    case SBERT_PROTO_M_INT:
        /* daemon/ops.c asks for n in 0..LLONG_MAX and compares it with max_pairs afterwards */
        if (strcmp(m->name, "n") == 0) {
            rc = sbert_proto_get_int(root, m->name, m->required, 0, LLONG_MAX,
                                     SBERT_PROTO_EBAD_REQUEST, &i, &err);
            FUZZ_ASSERT(i >= 0);
        } else {
            rc = sbert_proto_get_int(root, m->name, m->required, 1, MAX_K, SBERT_PROTO_EBAD_K, &i,
                                     &err);
            FUZZ_ASSERT(i >= 1 && i <= MAX_K);
        }
        break;
    case SBERT_PROTO_M_NUMBER:
        rc = sbert_proto_get_number(root, m->name, m->required, -1, 1, SBERT_PROTO_EBAD_SCORE, &d,
                                    &err);
        FUZZ_ASSERT(d == -2 || (d >= -1 && d <= 1));
        break;
    case SBERT_PROTO_M_ARRAY:
        rc = sbert_proto_get_include(root, m->name, &include, &err);
        FUZZ_ASSERT(include <= 7);
        break;
    case SBERT_PROTO_M_NUMBERS:
        if (cJSON_GetObjectItemCaseSensitive(root, m->name))
            rc = sbert_proto_get_vector(root, m->name, DIM, v, &err);
        break;
    case SBERT_PROTO_M_STRINGS:
        /* ids may be integers too (PROTOCOL.md section 2): no type assertion */
        if (strcmp(m->name, "ids") == 0) {
            ids(root, m->name, m->required);
            return;
        }
        accepted(root, m, texts(root, m->name, m->required));
        return;
    case SBERT_PROTO_M_OBJECTS:
        documents(root, m->name, m->required);
        return;
    case SBERT_PROTO_M_VECTORS:
        vectors(root, m->name, m->required);
        return;
    case SBERT_PROTO_M_STRING_OR_STRINGS:
        if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(root, m->name))) {
            accepted(root, m, texts(root, m->name, 1));
            return;
        }
        rc = sbert_proto_get_text(root, m->name, 1, MAX_TEXT, &s, &len, &err);
        break;
    case SBERT_PROTO_M_BOOL:
    case SBERT_PROTO_M_OBJECT: /* the filter: compiled by index/, fuzzed by fuzz_filter */
        return;
    }
    if (rc) check_error(rc, &err);
    accepted(root, m, rc);
}

static void validate(const struct sbert_proto_request *req)
{
    static const char *const none[] = {NULL};
    struct sbert_proto_error err;
    int rc = sbert_proto_check_members(req->root, none, 1, &err);
    if (rc) check_error(rc, &err);

    const struct sbert_proto_op *op = sbert_proto_op_find(req->op), *op2;
    rc = sbert_proto_op_check_request(req->root, SBERT_PROTO_CHECK_TYPES, &op2, &err);
    if (rc) check_error(rc, &err);
    FUZZ_ASSERT(op2 == op && (op != NULL) == (rc != SBERT_PROTO_EUNKNOWN_OP));
    if (!op) {
        /* unknown op: every op's getters, to reach them all */
        size_t n;
        const struct sbert_proto_op *ops = sbert_proto_ops(&n);
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < ops[i].n_members; j++)
                get_member(req->root, &ops[i].members[j]);
        return;
    }
    int members_rc = sbert_proto_op_check_members(op, req->root, &err);
    if (members_rc) {
        check_error(members_rc, &err);
        FUZZ_ASSERT(rc == members_rc); /* an undefined member fails the whole check too */
    }
    if (sbert_proto_op_check_request(req->root, 0, NULL, NULL) == 0) FUZZ_ASSERT(members_rc == 0);
    for (size_t j = 0; j < op->n_members; j++)
        get_member(req->root, &op->members[j]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct sbert_proto_request req;
    struct sbert_proto_error err;
    char *rid = NULL;
    int rc = sbert_proto_request_parse(buf, size, &req, &rid, &err);
    if (rc == 0) {
        FUZZ_ASSERT(req.root && req.op && rid == NULL);
        FUZZ_ASSERT(!req.req_id ||
                    (strlen(req.req_id) >= 1 && strlen(req.req_id) <= SBERT_PROTO_REQ_ID_MAX));
        validate(&req);
        /* the reply the daemon would build for it */
        cJSON *reply = sbert_proto_reply_new(req.req_id);
        FUZZ_ASSERT(reply);
        char *out;
        size_t len;
        FUZZ_ASSERT(sbert_proto_print(reply, &out, &len) == 0 && strlen(out) == len);
        free(out);
        cJSON_Delete(reply);
        sbert_proto_request_clear(&req);
    } else {
        check_error(rc, &err);
        FUZZ_ASSERT(req.root == NULL && req.op == NULL);
        cJSON *reply = sbert_proto_reply_error(&err, rid);
        FUZZ_ASSERT(reply);
        cJSON_Delete(reply);
        free(rid);
    }

    cJSON *root = NULL;
    struct sbert_proto_error rerr;
    rc = sbert_proto_reply_parse(buf, size, &root, &rerr);
    if (rc == SBERT_PROTO_EBAD_JSON || rc == SBERT_PROTO_EBAD_VERSION)
        FUZZ_ASSERT(root == NULL);
    else
        FUZZ_ASSERT(root != NULL);
    cJSON_Delete(root);
    return 0;
}
