/*
 * fuzz_proto.c — libFuzzer target for the wire protocol (proto/): one input is one raw message.
 *
 * The daemon side: sbert_proto_request_parse(), then, for a parsed request, the same getter calls
 * with the same limits that daemon/ops.c makes for its op (and every getter for an unknown op),
 * so the validation of every member is reached with hostile values. The client side:
 * sbert_proto_reply_parse() on the same bytes. Invariants checked besides the sanitizers: a
 * failure is a wire code with a NUL-terminated message; a success leaves the outputs consistent.
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

static void texts(const cJSON *root, const char *name, int required)
{
    struct sbert_proto_error err;
    const char **t = NULL;
    size_t *l = NULL, n = 0;
    int rc = sbert_proto_get_texts(root, name, required, MAX_BATCH, MAX_TEXT, &t, &l, &n, &err);
    if (rc) {
        check_error(rc, &err);
        return;
    }
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(l[i] >= 1 && l[i] <= MAX_TEXT && strlen(t[i]) == l[i]);
    free(t);
    free(l);
}

static void ids(const cJSON *root)
{
    struct sbert_proto_error err;
    const cJSON *arr, *x;
    size_t n;
    int rc = sbert_proto_get_array(root, "ids", 1, MAX_BATCH, &arr, &n, &err);
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

static void documents(const cJSON *root)
{
    static const char *const doc_members[] = {"id", "text", "metadata", NULL};
    struct sbert_proto_error err;
    const cJSON *arr, *x;
    size_t n;
    int rc = sbert_proto_get_array(root, "documents", 1, MAX_BATCH, &arr, &n, &err);
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
        if (!cJSON_IsObject(x))
            continue;
        if ((rc = sbert_proto_check_members(x, doc_members, 0, &err)))
            check_error(rc, &err);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
        if (id && (rc = sbert_proto_check_id(id, "id", i, numbuf, &s, &len, &err)))
            check_error(rc, &err);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(x, "text");
        if (text && (rc = sbert_proto_check_text(text, "text", i, MAX_TEXT, &s, &len, &err)))
            check_error(rc, &err);
        i++;
    }
}

static void query(const cJSON *root)
{
    struct sbert_proto_error err;
    long long k = 10;
    double min_score = -2;
    unsigned include = 0;
    const char *text;
    size_t len;
    float v[DIM];
    int rc;
    if ((rc = sbert_proto_get_int(root, "k", 0, 1, MAX_K, SBERT_PROTO_EBAD_K, &k, &err)))
        check_error(rc, &err);
    FUZZ_ASSERT(k >= 1 && k <= MAX_K);
    if ((rc = sbert_proto_get_number(root, "min_score", 0, -1, 1, SBERT_PROTO_EBAD_SCORE,
                                     &min_score, &err)))
        check_error(rc, &err);
    if ((rc = sbert_proto_get_include(root, "include", &include, &err)))
        check_error(rc, &err);
    FUZZ_ASSERT(include <= 7);
    if ((rc = sbert_proto_get_text(root, "text", 0, MAX_TEXT, &text, &len, &err)))
        check_error(rc, &err);
    if (cJSON_HasObjectItem(root, "vector") &&
        (rc = sbert_proto_get_vector(root, "vector", DIM, v, &err)))
        check_error(rc, &err);
}

static void pairs(const cJSON *root)
{
    struct sbert_proto_error err;
    long long n = 100, per_doc_k = 100;
    double min_score = -2;
    int rc;
    /* daemon/ops.c asks for n in 0..LLONG_MAX and compares it with max_pairs afterwards */
    if ((rc = sbert_proto_get_int(root, "n", 0, 0, LLONG_MAX, SBERT_PROTO_EBAD_REQUEST, &n, &err)))
        check_error(rc, &err);
    FUZZ_ASSERT(n >= 0);
    if ((rc = sbert_proto_get_number(root, "min_score", 0, -1, 1, SBERT_PROTO_EBAD_SCORE,
                                     &min_score, &err)))
        check_error(rc, &err);
    if ((rc = sbert_proto_get_int(root, "per_doc_k", 0, 1, MAX_K, SBERT_PROTO_EBAD_K, &per_doc_k,
                                  &err)))
        check_error(rc, &err);
    texts(root, "texts", 0);
}

static void similarity(const cJSON *root)
{
    struct sbert_proto_error err;
    const char *s;
    size_t len;
    int rc;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "a");
    if (cJSON_IsString(a)) {
        if ((rc = sbert_proto_get_text(root, "a", 1, MAX_TEXT, &s, &len, &err)))
            check_error(rc, &err);
        if ((rc = sbert_proto_get_text(root, "b", 1, MAX_TEXT, &s, &len, &err)))
            check_error(rc, &err);
    } else {
        texts(root, "a", 1);
        texts(root, "b", 1);
    }
}

static void backup(const cJSON *root)
{
    struct sbert_proto_error err;
    const char *dir;
    int rc = sbert_proto_get_string(root, "dir", 1, 4000, &dir, &err);
    if (rc)
        check_error(rc, &err);
    else
        FUZZ_ASSERT(strlen(dir) >= 1 && strlen(dir) <= 4000);
}

static void validate(const struct sbert_proto_request *req)
{
    static const struct {
        const char *op;
        void (*fn)(const cJSON *root);
    } ops[] = {{"query", query}, {"pairs", pairs}, {"similarity", similarity},
               {"add", documents}, {"get", ids},     {"delete", ids},
               {"backup", backup}};
    static const char *const none[] = {NULL};
    struct sbert_proto_error err;
    int rc = sbert_proto_check_members(req->root, none, 1, &err);
    if (rc)
        check_error(rc, &err);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strcmp(req->op, ops[i].op) == 0) {
            ops[i].fn(req->root);
            return;
        }
    /* Unknown op (or encode/stats/health/reindex): every getter, to reach them all. */
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        ops[i].fn(req->root);
    texts(req->root, "texts", 1);
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
        FUZZ_ASSERT(!req.req_id || (strlen(req.req_id) >= 1 &&
                                    strlen(req.req_id) <= SBERT_PROTO_REQ_ID_MAX));
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
