/* http_route_test.c — the HTTP mapping without a server (http/route.h): routes, the request built
 * from a body (checked with the protocol's own parser), the status table, the bearer check, the
 * Host check, and the OpenAPI document against the op table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "route.h"
#include "sbert_proto.h"

static int failures;
#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                  \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void test_routes(void)
{
    struct http_route r;
    http_route_match("POST", "/v1/query", &r);
    CHECK(r.kind == HTTP_ROUTE_OP && r.op && strcmp(r.op->name, "query") == 0 && r.method_ok &&
          r.has_body);
    http_route_match("GET", "/v1/query", &r);
    CHECK(r.kind == HTTP_ROUTE_OP && !r.method_ok && strcmp(r.allow, "POST") == 0);
    http_route_match("GET", "/v1/health", &r);
    CHECK(r.kind == HTTP_ROUTE_OP && r.method_ok && !r.has_body);
    http_route_match("POST", "/v1/health", &r);
    CHECK(r.method_ok && r.has_body);
    http_route_match("POST", "/v1/HEALTH", &r);
    CHECK(r.kind == HTTP_ROUTE_NONE);
    http_route_match("POST", "/v1/", &r);
    CHECK(r.kind == HTTP_ROUTE_NONE);
    http_route_match("POST", "/v1/query/", &r);
    CHECK(r.kind == HTTP_ROUTE_NONE);
    http_route_match("GET", "/", &r);
    CHECK(r.kind == HTTP_ROUTE_PAGE && r.method_ok);
    http_route_match("HEAD", "/openapi.json", &r);
    CHECK(r.kind == HTTP_ROUTE_OPENAPI && r.method_ok);
    http_route_match("DELETE", "/metrics", &r);
    CHECK(r.kind == HTTP_ROUTE_METRICS && !r.method_ok);
    http_route_match("GET", "/nope", &r);
    CHECK(r.kind == HTTP_ROUTE_NONE);
    size_t n;
    const struct sbert_proto_op *ops = sbert_proto_ops(&n);
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/%s", ops[i].name);
        http_route_match("POST", path, &r);
        CHECK(r.kind == HTTP_ROUTE_OP && r.op == &ops[i] && r.method_ok);
    }
}

/* Builds the request for op from body and parses it as sbertd would; returns the parse code (or
 * the build's when it failed: *built says which). */
static int build_parse(const char *opname, const char *body, const char *token, int *built,
                       struct sbert_proto_request *req)
{
    const struct sbert_proto_op *op = sbert_proto_op_find(opname);
    char *out;
    size_t len;
    struct sbert_proto_error e;
    memset(req, 0, sizeof *req);
    int rc = http_request_build(op, body, body ? strlen(body) : 0, token, &out, &len, &e);
    *built = rc == 0;
    if (rc != 0) return rc;
    CHECK(strlen(out) == len);
    rc = sbert_proto_request_parse(out, len, req, NULL, &e);
    free(out);
    return rc;
}

static void test_build(void)
{
    struct sbert_proto_request req;
    int built;
    CHECK(build_parse("health", NULL, NULL, &built, &req) == 0 && built);
    CHECK(req.op && strcmp(req.op, "health") == 0);
    sbert_proto_request_clear(&req);
    CHECK(build_parse("query", " {\"text\":\"a\",\"k\":2}", NULL, &built, &req) == 0);
    CHECK(req.op && strcmp(req.op, "query") == 0 &&
          cJSON_GetObjectItemCaseSensitive(req.root, "k")->valueint == 2);
    sbert_proto_request_clear(&req);
    CHECK(build_parse("stats", "{ }", "s3cret", &built, &req) == 0);
    CHECK(req.token && strcmp(req.token, "s3cret") == 0);
    sbert_proto_request_clear(&req);
    /* the body's own token is kept (the daemon judges it) */
    CHECK(build_parse("stats", "{\"token\":\"mine\"}", "s3cret", &built, &req) == 0);
    CHECK(req.token && strcmp(req.token, "mine") == 0);
    sbert_proto_request_clear(&req);
    /* a token that needs escaping stays one string */
    CHECK(build_parse("stats", "{}", "a\"b\\c", &built, &req) == 0);
    CHECK(req.token && strcmp(req.token, "a\"b\\c") == 0);
    sbert_proto_request_clear(&req);
    CHECK(build_parse("stats", "{\"v\":1,\"op\":\"stats\"}", NULL, &built, &req) == 0);
    sbert_proto_request_clear(&req);
    /* v given is the client's: 2 is refused by the daemon, not overwritten */
    CHECK(build_parse("stats", "{\"v\":2}", NULL, &built, &req) == SBERT_PROTO_EBAD_VERSION &&
          built);
    /* the op of the body must be the path's, every occurrence */
    CHECK(build_parse("query", "{\"op\":\"delete\",\"ids\":[\"x\"]}", NULL, &built, &req) ==
              SBERT_PROTO_EBAD_REQUEST &&
          !built);
    CHECK(build_parse("query", "{\"op\":\"query\",\"op\":\"delete\"}", NULL, &built, &req) ==
              SBERT_PROTO_EBAD_REQUEST &&
          !built);
    CHECK(build_parse("query", "{\"\\u006fp\":\"delete\"}", NULL, &built, &req) ==
              SBERT_PROTO_EBAD_REQUEST &&
          !built);
    CHECK(build_parse("query", "{\"op\":1}", NULL, &built, &req) == SBERT_PROTO_EBAD_REQUEST);
    /* not an object */
    CHECK(build_parse("query", "[1]", NULL, &built, &req) == SBERT_PROTO_EBAD_JSON && !built);
    CHECK(build_parse("query", "{\"text\":", NULL, &built, &req) == SBERT_PROTO_EBAD_JSON);
    CHECK(build_parse("query", "\xff{}", NULL, &built, &req) == SBERT_PROTO_EBAD_UTF8);
    /* trailing data is left for the daemon's parser to refuse */
    CHECK(build_parse("stats", "{} x", NULL, &built, &req) == SBERT_PROTO_EBAD_JSON && built);
    /* a number is passed as written: 1e400 stays bad_k for the daemon, never null */
    const struct sbert_proto_op *q = sbert_proto_op_find("query");
    char *out;
    size_t len;
    struct sbert_proto_error e;
    CHECK(http_request_build(q, "{\"k\":1e400}", 11, NULL, &out, &len, &e) == 0);
    CHECK(strstr(out, "\"k\":1e400") != NULL);
    free(out);
    /* byte order mark */
    CHECK(build_parse("stats", "\xEF\xBB\xBF{}", NULL, &built, &req) == 0 || built);
    sbert_proto_request_clear(&req);
}

static void test_status(void)
{
    unsigned ra;
    CHECK(http_status_of_code(0, &ra) == 200 && ra == 0);
    CHECK(http_status_of_code(SBERT_PROTO_EBUSY, &ra) == 503 && ra > 0);
    CHECK(http_status_of_code(SBERT_PROTO_EUNAUTHORIZED, NULL) == 401);
    CHECK(http_status_of_code(SBERT_PROTO_ETOO_LARGE, NULL) == 413);
    CHECK(http_status_of_code(SBERT_PROTO_EUNKNOWN_OP, NULL) == 404);
    CHECK(http_status_of_code(SBERT_PROTO_ENO_SPACE, NULL) == 507);
    CHECK(http_status_of_code(SBERT_PROTO_EINTERNAL, NULL) == 500);
    CHECK(http_status_of_code(-999, NULL) == 500);
    for (int c = SBERT_PROTO_EBAD_JSON; c > SBERT_PROTO_EUNKNOWN_CODE; c--) {
        unsigned s = http_status_of_code(c, NULL);
        CHECK(s >= 400 && s < 600);
        if (strncmp(sbert_proto_code_name(c), "bad_", 4) == 0) CHECK(s == 400);
    }
    const char *ok = "{\"v\":1,\"ok\":true,\"results\":[]}";
    CHECK(http_status_of_reply(ok, strlen(ok), NULL) == 200);
    const char *ok2 = "{ \"ok\": true, \"v\": 1 }";
    CHECK(http_status_of_reply(ok2, strlen(ok2), NULL) == 200);
    const char *busy = "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"busy\",\"message\":\"x\"}}";
    CHECK(http_status_of_reply(busy, strlen(busy), &ra) == 503 && ra == 1);
    const char *junk = "not json";
    CHECK(http_status_of_reply(junk, strlen(junk), NULL) == 500);
}

static void test_auth(void)
{
    CHECK(http_bearer_ok("Bearer s3cret", "s3cret", 6));
    CHECK(http_bearer_ok("bearer  s3cret ", "s3cret", 6));
    CHECK(!http_bearer_ok("Bearer s3cre", "s3cret", 6));
    CHECK(!http_bearer_ok("Bearer s3cretx", "s3cret", 6));
    CHECK(!http_bearer_ok("Bearer ", "s3cret", 6));
    CHECK(!http_bearer_ok("Basic s3cret", "s3cret", 6));
    CHECK(!http_bearer_ok(NULL, "s3cret", 6));
    CHECK(!http_bearer_ok("Bearer x", "", 0));
    CHECK(http_host_is_loopback("localhost:8780"));
    CHECK(http_host_is_loopback("127.0.0.1"));
    CHECK(http_host_is_loopback("127.1.2.3:80"));
    CHECK(http_host_is_loopback("[::1]:8780"));
    CHECK(!http_host_is_loopback("evil.example:8780"));
    CHECK(!http_host_is_loopback("10.0.0.1"));
    CHECK(!http_host_is_loopback("[::2]"));
    CHECK(!http_host_is_loopback(NULL));
    CHECK(!http_host_is_loopback(""));
}

static void test_openapi(void)
{
    cJSON *doc;
    CHECK(sbert_proto_openapi(&doc) == 0);
    const cJSON *paths = cJSON_GetObjectItemCaseSensitive(doc, "paths");
    size_t n;
    const struct sbert_proto_op *ops = sbert_proto_ops(&n);
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/%s", ops[i].name);
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(paths, path);
        CHECK(p && cJSON_GetObjectItemCaseSensitive(p, "post"));
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(
                    cJSON_GetObjectItemCaseSensitive(
                        cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(p, "post"), "requestBody"),
                        "content"),
                    "application/json"),
                "schema"),
            "properties");
        for (size_t m = 0; m < ops[i].n_members; m++)
            CHECK(cJSON_GetObjectItemCaseSensitive(props, ops[i].members[m].name) != NULL);
    }
    cJSON_Delete(doc);
}

int main(int argc, char **argv)
{
    /* --status-table: every wire code and its HTTP status, for status_doc.py */
    if (argc > 1 && strcmp(argv[1], "--status-table") == 0) {
        for (int c = SBERT_PROTO_EBAD_JSON; c > SBERT_PROTO_EUNKNOWN_CODE; c--)
            printf("%s %u\n", sbert_proto_code_name(c), http_status_of_code(c, NULL));
        return 0;
    }
    test_routes();
    test_build();
    test_status();
    test_auth();
    test_openapi();
    if (failures) {
        fprintf(stderr, "http_route_test: %d failures\n", failures);
        return 1;
    }
    printf("http_route_test: ok\n");
    return 0;
}
