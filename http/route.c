/*
 * route.c — which route a request line names, and the protocol request an HTTP body becomes
 * (PROTOCOL.md section 6).
 */
#include "route.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "sbert_util.h"

/* The fixed paths; /v1/<op> is matched against the op table instead. */
static const struct {
    const char *path;
    enum http_route_kind kind;
} fixed_routes[] = {
    {"/", HTTP_ROUTE_PAGE},
    {"/openapi.json", HTTP_ROUTE_OPENAPI},
    {"/metrics", HTTP_ROUTE_METRICS},
};

#define OP_PREFIX "/v1/"

static int is_get(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

void http_route_match(const char *method, const char *path, struct http_route *r)
{
    memset(r, 0, sizeof *r);
    r->kind = HTTP_ROUTE_NONE;
    if (!method || !path) return;
    for (size_t i = 0; i < sizeof fixed_routes / sizeof fixed_routes[0]; i++) {
        if (strcmp(path, fixed_routes[i].path) == 0) {
            r->kind = fixed_routes[i].kind;
            r->allow = "GET, HEAD";
            r->method_ok = is_get(method);
            return;
        }
    }
    if (strncmp(path, OP_PREFIX, strlen(OP_PREFIX)) != 0) return;
    r->op = sbert_proto_op_find(path + strlen(OP_PREFIX));
    if (!r->op) return;
    r->kind = HTTP_ROUTE_OP;
    /* health is the one op without members and without effects: a load balancer's probe, so it
     * also answers GET (with an empty request). */
    if (r->op->id == SBERT_PROTO_OP_HEALTH) {
        r->allow = "GET, HEAD, POST";
        r->method_ok = is_get(method) || strcmp(method, "POST") == 0;
    } else {
        r->allow = "POST";
        r->method_ok = strcmp(method, "POST") == 0;
    }
    r->has_body = strcmp(method, "POST") == 0;
}

/* Appends n bytes to the buffer b (cap bytes, *used of them used); the caller sized it. */
static void put(char *b, size_t *used, const char *s, size_t n)
{
    memcpy(b + *used, s, n);
    *used += n;
}

int http_request_build(const struct sbert_proto_op *op, const char *body, size_t len,
                       const char *token, char **out, size_t *out_len,
                       struct sbert_proto_error *err)
{
    *out = NULL;
    *out_len = 0;
    if (len == 0) {
        body = "{}";
        len = 2;
    }
    /* The daemon's parser says bad_utf8 before anything else; so does this one. */
    if (!sbert_util_utf8_valid(body, len))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_UTF8, -1, "the body is not valid UTF-8");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_JSON, -1,
                                     "the body is not one JSON object");
    }
    /* Trailing bytes are the daemon's to refuse (section 2 tolerates whitespace and one NUL), so
     * they are kept; only the members this function adds depend on the parse. */
    int has_op = 0, has_v = 0, has_token = 0;
    for (const cJSON *m = root->child; m; m = m->next) {
        if (strcmp(m->string, "op") == 0) {
            if (!cJSON_IsString(m) || strcmp(m->valuestring, op->name) != 0) {
                sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                      "op in the body is not \"%s\", the operation of the path",
                                      op->name);
                cJSON_Delete(root);
                return SBERT_PROTO_EBAD_REQUEST;
            }
            has_op = 1;
        } else if (strcmp(m->string, "v") == 0) {
            has_v = 1;
        } else if (strcmp(m->string, "token") == 0) {
            has_token = 1;
        }
    }
    int empty = root->child == NULL;
    cJSON_Delete(root);

    char *tok_json = NULL;
    if (token && !has_token) {
        cJSON *s = cJSON_CreateString(token);
        tok_json = s ? cJSON_PrintUnformatted(s) : NULL;
        cJSON_Delete(s);
        if (!tok_json)
            return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
    }
    /* The object's opening brace: cJSON skips a UTF-8 byte order mark, then whitespace (bytes
     * <= 32), before a value. */
    size_t brace = len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    while (brace < len && (unsigned char)body[brace] <= 32)
        brace++;
    if (brace >= len || body[brace] != '{') {
        free(tok_json);
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_JSON, -1,
                                     "the body is not one JSON object");
    }

    size_t extra = 64 + strlen(op->name) + (tok_json ? strlen(tok_json) + 16 : 0);
    char *b = malloc(len + extra + 1);
    if (!b) {
        free(tok_json);
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
    }
    size_t used = 0;
    put(b, &used, body, brace + 1);
    int first = 1;
    if (!has_v) {
        put(b, &used, "\"v\":1", 5);
        first = 0;
    }
    if (!has_op) {
        if (!first) put(b, &used, ",", 1);
        put(b, &used, "\"op\":\"", 6);
        put(b, &used, op->name, strlen(op->name));
        put(b, &used, "\"", 1);
        first = 0;
    }
    if (tok_json) {
        if (!first) put(b, &used, ",", 1);
        put(b, &used, "\"token\":", 8);
        put(b, &used, tok_json, strlen(tok_json));
        first = 0;
    }
    if (!first && !empty) put(b, &used, ",", 1);
    put(b, &used, body + brace + 1, len - brace - 1);
    b[used] = '\0';
    free(tok_json);
    *out = b;
    *out_len = used;
    return 0;
}
