/*
 * status.c — the HTTP status of every protocol error code: the one table of PROTOCOL.md section 6.
 */
#include "route.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    int code;
    unsigned status;
    unsigned retry_after_s; /* 0: no Retry-After */
} status_table[] = {
    {SBERT_PROTO_OK, 200, 0},
    {SBERT_PROTO_EBAD_JSON, 400, 0},
    {SBERT_PROTO_EBAD_UTF8, 400, 0},
    {SBERT_PROTO_EBAD_VERSION, 400, 0},
    {SBERT_PROTO_EUNKNOWN_OP, 404, 0},
    {SBERT_PROTO_EUNAUTHORIZED, 401, 0},
    {SBERT_PROTO_EBAD_REQUEST, 400, 0},
    {SBERT_PROTO_ETOO_LARGE, 413, 0},
    {SBERT_PROTO_EEMPTY_TEXT, 400, 0},
    {SBERT_PROTO_ETEXT_TOO_LONG, 400, 0},
    {SBERT_PROTO_EBAD_K, 400, 0},
    {SBERT_PROTO_EBAD_SCORE, 400, 0},
    {SBERT_PROTO_EBAD_FILTER, 400, 0},
    {SBERT_PROTO_EBAD_VECTOR, 400, 0},
    {SBERT_PROTO_EBAD_ID, 400, 0},
    {SBERT_PROTO_EBAD_METADATA, 400, 0},
    {SBERT_PROTO_EREQ_ID_REUSED, 409, 0},
    {SBERT_PROTO_EEXISTS, 409, 0},
    {SBERT_PROTO_ENO_SPACE, 507, 0},
    {SBERT_PROTO_EIO_ERROR, 500, 0},
    {SBERT_PROTO_EBUSY, 503, 1},
    {SBERT_PROTO_ESHUTTING_DOWN, 503, 0},
    {SBERT_PROTO_EINTERNAL, 500, 0},
    {SBERT_PROTO_ENO_COLLECTION, 404, 0},
};

unsigned http_status_of_code(int code, unsigned *retry_after_s)
{
    if (retry_after_s) *retry_after_s = 0;
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++) {
        if (status_table[i].code == code) {
            if (retry_after_s) *retry_after_s = status_table[i].retry_after_s;
            return status_table[i].status;
        }
    }
    return 500;
}

/* What sbert_proto_reply_new() and sbert_proto_print() make of every successful reply: the common
 * case is recognised without parsing a reply that may be 64 MiB of embeddings. */
#define OK_PREFIX "{\"v\":1,\"ok\":true"

unsigned http_status_of_reply(const char *reply, size_t len, unsigned *retry_after_s)
{
    if (retry_after_s) *retry_after_s = 0;
    size_t n = strlen(OK_PREFIX);
    if (len > n && memcmp(reply, OK_PREFIX, n) == 0 && (reply[n] == ',' || reply[n] == '}'))
        return 200;
    cJSON *root = NULL;
    struct sbert_proto_error e;
    int rc = sbert_proto_reply_parse(reply, len, &root, &e);
    if (!root)
        return 500; /* not a reply at all (root is set for every error reply): the daemon's fault */
    cJSON_Delete(root);
    return http_status_of_code(rc, retry_after_s);
}

int http_error_json(int code, const char *msg, char **out, size_t *out_len)
{
    struct sbert_proto_error e;
    sbert_proto_error_set(&e, code, -1, "%s", msg);
    cJSON *r = sbert_proto_reply_error(&e, NULL);
    if (!r) return SBERT_PROTO_EINTERNAL;
    int rc = sbert_proto_print(r, out, out_len);
    cJSON_Delete(r);
    return rc;
}
