/*
 * fuzz_http.c — libFuzzer target for the HTTP transport's request-to-op mapping (http/route.h),
 * without a server. One input is
 *     METHOD SP PATH LF HEADER LF BODY
 * where HEADER is used as the Authorization value and as the Host value. The target matches the
 * route, builds the protocol request from the body (with a token when the header is non-empty)
 * and parses what it built with the protocol's own parser, as sbertd would; it also runs the
 * status of the body read as a reply, the bearer check and the Host check.
 *
 * Invariants besides the sanitizers: a request the daemon would parse names exactly the path's
 * op (the HTTP layer never lets a body choose another operation) and, when a token was added,
 * carries it; a refused body gets one of the mapping's codes; every status is an HTTP status.
 */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "route.h"
#include "sbert_proto.h"

#define TOKEN "s3cret"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = (const char *)data, *end = p + size;
    const char *nl1 = memchr(p, '\n', size);
    if (!nl1) return 0;
    const char *nl2 = memchr(nl1 + 1, '\n', (size_t)(end - nl1 - 1));
    if (!nl2) return 0;
    const char *sp = memchr(p, ' ', (size_t)(nl1 - p));
    if (!sp) return 0;
    char *method = strndup(p, (size_t)(sp - p));
    char *path = strndup(sp + 1, (size_t)(nl1 - sp - 1));
    char *header = strndup(nl1 + 1, (size_t)(nl2 - nl1 - 1));
    const char *body = nl2 + 1;
    size_t body_len = (size_t)(end - body);
    if (!method || !path || !header) goto out;

    struct http_route r;
    http_route_match(method, path, &r);
    FUZZ_ASSERT(r.kind == HTTP_ROUTE_NONE || r.allow != NULL);
    FUZZ_ASSERT((r.kind == HTTP_ROUTE_OP) == (r.op != NULL));

    const char *token = header[0] ? TOKEN : NULL;
    if (r.kind == HTTP_ROUTE_OP) {
        char *out = NULL;
        size_t out_len = 0;
        struct sbert_proto_error err;
        int rc = http_request_build(r.op, body, body_len, token, &out, &out_len, &err);
        if (rc == 0) {
            FUZZ_ASSERT(out && out[out_len] == '\0' && out_len >= (body_len ? body_len : 2));
            struct sbert_proto_request req;
            if (sbert_proto_request_parse(out, out_len, &req, NULL, &err) == 0) {
                FUZZ_ASSERT(strcmp(req.op, r.op->name) == 0);
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(req.root, "v");
                FUZZ_ASSERT(cJSON_IsNumber(v) && v->valuedouble == 1);
                if (token && !memmem(body, body_len, "token", 5))
                    FUZZ_ASSERT(req.token && strcmp(req.token, TOKEN) == 0);
                sbert_proto_request_clear(&req);
            }
            free(out);
        } else {
            FUZZ_ASSERT(!out);
            FUZZ_ASSERT(rc == SBERT_PROTO_EBAD_UTF8 || rc == SBERT_PROTO_EBAD_JSON ||
                        rc == SBERT_PROTO_EBAD_REQUEST || rc == SBERT_PROTO_EINTERNAL);
            FUZZ_ASSERT(err.code == rc && memchr(err.message, '\0', sizeof err.message));
        }
    }

    unsigned retry = 99;
    unsigned status = http_status_of_reply(body, body_len, &retry);
    FUZZ_ASSERT(status >= 200 && status < 600 && retry < 99);

    int ok = http_bearer_ok(header, TOKEN, strlen(TOKEN));
    FUZZ_ASSERT(!ok || strstr(header, TOKEN) != NULL);
    int lo = http_host_is_loopback(header);
    FUZZ_ASSERT(lo == 0 || lo == 1);
out:
    free(method);
    free(path);
    free(header);
    return 0;
}
