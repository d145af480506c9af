/* proto_test.c — unit tests of proto/ (sbert_proto.h): parsing, validation, building. */
#include "sbert_proto.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int parse(const char *s, struct sbert_proto_request *req, struct sbert_proto_error *err)
{
    return sbert_proto_request_parse(s, strlen(s), req, NULL, err);
}

static void test_codes(void)
{
    for (int c = SBERT_PROTO_EBAD_JSON; c > SBERT_PROTO_EUNKNOWN_CODE; c--) {
        const char *name = sbert_proto_code_name(c);
        CHECK(sbert_proto_code_from_name(name) == c);
        CHECK(strcmp(sbert_proto_strerror(c), "unknown error") != 0);
    }
    CHECK(sbert_proto_code_from_name("no_such_code") == SBERT_PROTO_EUNKNOWN_CODE);
    CHECK(strcmp(sbert_proto_code_name(SBERT_PROTO_EBAD_K), "bad_k") == 0);
    CHECK(strcmp(sbert_proto_code_name(SBERT_PROTO_EBUSY), "busy") == 0);
}

static void test_request_parse(void)
{
    struct sbert_proto_request req;
    struct sbert_proto_error err;
    CHECK(parse("{\"v\":1,\"op\":\"query\",\"req_id\":\"r1\",\"token\":\"t\"}", &req, &err) == 0);
    CHECK(strcmp(req.op, "query") == 0 && strcmp(req.req_id, "r1") == 0 &&
          strcmp(req.token, "t") == 0);
    sbert_proto_request_clear(&req);
    CHECK(parse(" {\"v\":1,\"op\":\"health\"} \n", &req, &err) == 0);
    CHECK(req.req_id == NULL && req.token == NULL);
    sbert_proto_request_clear(&req);

    CHECK(parse("nope", &req, &err) == SBERT_PROTO_EBAD_JSON && req.root == NULL);
    CHECK(parse("[1]", &req, &err) == SBERT_PROTO_EBAD_JSON);
    CHECK(parse("{\"v\":1,\"op\":\"health\"}x", &req, &err) == SBERT_PROTO_EBAD_JSON);
    CHECK(parse("{\"v\":1,\"op\":\"q\",\"text\":\"\\ud800\"}", &req, &err) ==
          SBERT_PROTO_EBAD_JSON);
    CHECK(parse("{\"v\":1,\"op\":\"q\",\"text\":\"\xc0\xaf\"}", &req, &err) ==
          SBERT_PROTO_EBAD_UTF8);
    CHECK(parse("{\"op\":\"health\"}", &req, &err) == SBERT_PROTO_EBAD_VERSION);
    CHECK(parse("{\"v\":\"1\",\"op\":\"health\"}", &req, &err) == SBERT_PROTO_EBAD_VERSION);
    CHECK(parse("{\"v\":1}", &req, &err) == SBERT_PROTO_EBAD_REQUEST);
    CHECK(parse("{\"v\":1,\"op\":[]}", &req, &err) == SBERT_PROTO_EBAD_REQUEST);
    CHECK(parse("{\"v\":1,\"op\":\"q\",\"text\":\"a\\u0000b\"}", &req, &err) ==
          SBERT_PROTO_EBAD_REQUEST);
    /* an escaped backslash followed by u0000 is text, not a NUL */
    CHECK(parse("{\"v\":1,\"op\":\"q\",\"text\":\"a\\\\u0000b\"}", &req, &err) == 0);
    sbert_proto_request_clear(&req);
    CHECK(parse("{\"v\":1,\"op\":\"q\",\"token\":5}", &req, &err) == SBERT_PROTO_EBAD_REQUEST);
    CHECK(parse("{\"v\":1,\"op\":\"q\",\"req_id\":\"\"}", &req, &err) == SBERT_PROTO_EBAD_REQUEST);

    /* the req_id survives a later failure so the error reply can echo it */
    char *rid = NULL;
    const char *m = "{\"v\":2,\"op\":\"q\",\"req_id\":\"keep-me\"}";
    CHECK(sbert_proto_request_parse(m, strlen(m), &req, &rid, &err) == SBERT_PROTO_EBAD_VERSION);
    CHECK(rid && strcmp(rid, "keep-me") == 0);
    free(rid);

    /* a NUL terminator sent along by a C client is accepted */
    const char z[] = "{\"v\":1,\"op\":\"health\"}";
    CHECK(sbert_proto_request_parse(z, sizeof z, &req, NULL, &err) == 0);
    sbert_proto_request_clear(&req);
}

static void test_getters(void)
{
    struct sbert_proto_error err;
    cJSON *o = cJSON_Parse("{\"k\":5,\"f\":1.5,\"neg\":-3,\"s\":\"\",\"t\":\"abc\","
                           "\"list\":[\"a\",\"\",\"c\"],\"ok\":[\"a\",\"bb\"],\"empty\":[],"
                           "\"inc\":[\"text\",\"vector\"],\"badinc\":[\"txt\"],"
                           "\"vec\":[1,2,3],\"vec2\":[1,2],\"ids\":[\"x\",7,1.5,{}]}");
    CHECK(o != NULL);
    long long k = 0;
    CHECK(sbert_proto_get_int(o, "k", 1, 1, 10, SBERT_PROTO_EBAD_K, &k, &err) == 0 && k == 5);
    CHECK(sbert_proto_get_int(o, "k", 1, 1, 4, SBERT_PROTO_EBAD_K, &k, &err) == SBERT_PROTO_EBAD_K);
    CHECK(sbert_proto_get_int(o, "f", 1, 1, 4, SBERT_PROTO_EBAD_K, &k, &err) == SBERT_PROTO_EBAD_K);
    CHECK(sbert_proto_get_int(o, "t", 1, 1, 4, SBERT_PROTO_EBAD_K, &k, &err) ==
          SBERT_PROTO_EBAD_REQUEST);
    k = 77;
    CHECK(sbert_proto_get_int(o, "missing", 0, 1, 4, SBERT_PROTO_EBAD_K, &k, &err) == 0 && k == 77);
    CHECK(sbert_proto_get_int(o, "missing", 1, 1, 4, SBERT_PROTO_EBAD_K, &k, &err) ==
          SBERT_PROTO_EBAD_REQUEST);
    double d;
    CHECK(sbert_proto_get_number(o, "f", 1, -1, 2, SBERT_PROTO_EBAD_SCORE, &d, &err) == 0 &&
          d == 1.5);
    CHECK(sbert_proto_get_number(o, "neg", 1, -1, 1, SBERT_PROTO_EBAD_SCORE, &d, &err) ==
          SBERT_PROTO_EBAD_SCORE);

    const char *s;
    size_t len;
    CHECK(sbert_proto_get_text(o, "t", 1, 10, &s, &len, &err) == 0 && len == 3);
    CHECK(sbert_proto_get_text(o, "t", 1, 2, &s, &len, &err) == SBERT_PROTO_ETEXT_TOO_LONG);
    CHECK(sbert_proto_get_text(o, "s", 1, 10, &s, &len, &err) == SBERT_PROTO_EEMPTY_TEXT);

    const char **texts;
    size_t *lens, n;
    CHECK(sbert_proto_get_texts(o, "list", 1, 10, 10, &texts, &lens, &n, &err) ==
          SBERT_PROTO_EEMPTY_TEXT);
    CHECK(err.index == 1 && strstr(err.message, "list[1]") != NULL);
    CHECK(sbert_proto_get_texts(o, "ok", 1, 1, 10, &texts, &lens, &n, &err) ==
          SBERT_PROTO_ETOO_LARGE);
    CHECK(sbert_proto_get_texts(o, "empty", 1, 10, 10, &texts, &lens, &n, &err) ==
          SBERT_PROTO_EBAD_REQUEST);
    n = 99;
    CHECK(sbert_proto_get_texts(o, "missing", 0, 10, 10, &texts, &lens, &n, &err) == 0 && n == 99);
    CHECK(sbert_proto_get_texts(o, "ok", 1, 10, 10, &texts, &lens, &n, &err) == 0);
    CHECK(n == 2 && strcmp(texts[1], "bb") == 0 && lens[1] == 2);
    free(texts);
    free(lens);

    unsigned inc = 0;
    CHECK(sbert_proto_get_include(o, "inc", &inc, &err) == 0 &&
          inc == (SBERT_PROTO_INCLUDE_TEXT | SBERT_PROTO_INCLUDE_VECTOR));
    CHECK(sbert_proto_get_include(o, "badinc", &inc, &err) == SBERT_PROTO_EBAD_REQUEST);

    float v[3];
    CHECK(sbert_proto_get_vector(o, "vec", 3, v, &err) == 0 && v[2] == 3.0f);
    CHECK(sbert_proto_get_vector(o, "vec2", 3, v, &err) == SBERT_PROTO_EBAD_VECTOR);
    CHECK(sbert_proto_get_vector(o, "vec", 2, v, &err) == SBERT_PROTO_EBAD_VECTOR);
    CHECK(err.index == -1 && strcmp(err.message, "\"vec\" has more than 2 numbers") == 0);
    /* an item of a list of vectors (query's "vectors"): the error names it and its index */
    const cJSON *vec = cJSON_GetObjectItem(o, "vec");
    CHECK(sbert_proto_check_vector(vec, "vectors[4]", 4, 3, v, &err) == 0 && v[0] == 1.0f);
    CHECK(sbert_proto_check_vector(vec, "vectors[4]", 4, 4, v, &err) == SBERT_PROTO_EBAD_VECTOR);
    CHECK(err.index == 4 &&
          strcmp(err.message, "vectors[4] has 3 numbers, the model's dim is 4") == 0);
    CHECK(sbert_proto_check_vector(cJSON_GetObjectItem(o, "t"), "vectors[0]", 0, 3, v, &err) ==
              SBERT_PROTO_EBAD_VECTOR &&
          err.index == 0);

    const cJSON *ids = cJSON_GetObjectItem(o, "ids");
    char num[24];
    CHECK(sbert_proto_check_id(cJSON_GetArrayItem(ids, 0), "ids[0]", 0, num, &s, &len, &err) == 0 &&
          strcmp(s, "x") == 0);
    CHECK(sbert_proto_check_id(cJSON_GetArrayItem(ids, 1), "ids[1]", 1, num, &s, &len, &err) == 0 &&
          strcmp(s, "7") == 0 && s == num && len == 1);
    CHECK(sbert_proto_check_id(cJSON_GetArrayItem(ids, 2), "ids[2]", 2, num, &s, &len, &err) ==
          SBERT_PROTO_EBAD_ID);
    CHECK(sbert_proto_check_id(cJSON_GetArrayItem(ids, 3), "ids[3]", 3, num, &s, &len, &err) ==
              SBERT_PROTO_EBAD_ID &&
          err.index == 3);

    static const char *const allowed[] = {"k", "f", NULL};
    cJSON *m = cJSON_Parse("{\"v\":1,\"op\":\"x\",\"k\":1,\"f\":2}");
    CHECK(sbert_proto_check_members(m, allowed, 1, &err) == 0);
    CHECK(sbert_proto_check_members(m, allowed, 0, &err) == SBERT_PROTO_EBAD_REQUEST);
    cJSON_AddNumberToObject(m, "extra", 1);
    CHECK(sbert_proto_check_members(m, allowed, 1, &err) == SBERT_PROTO_EBAD_REQUEST &&
          strstr(err.message, "extra"));
    cJSON_Delete(m);
    cJSON_Delete(o);
}

static void test_build_and_parse_replies(void)
{
    /* floats round-trip through the 9-digit printing */
    float vals[] = {0.893899918f, -1e-38f, 3.4e38f, 1.0f / 3.0f, 0.0f};
    cJSON *r = sbert_proto_reply_new("rid");
    CHECK(r && sbert_proto_add_floats(r, "vec", vals, 5) == 0 &&
          sbert_proto_add_float(r, "s", vals[0]) == 0);
    char *text;
    size_t len;
    CHECK(sbert_proto_print(r, &text, &len) == 0 && len == strlen(text));
    cJSON_Delete(r);
    cJSON *root = NULL;
    struct sbert_proto_error err;
    CHECK(sbert_proto_reply_parse(text, len, &root, &err) == 0 && root);
    const cJSON *arr = cJSON_GetObjectItem(root, "vec");
    CHECK(cJSON_GetArraySize(arr) == 5);
    for (int i = 0; i < 5; i++)
        CHECK((float)cJSON_GetArrayItem(arr, i)->valuedouble == vals[i]);
    CHECK(strcmp(cJSON_GetObjectItem(root, "req_id")->valuestring, "rid") == 0);
    cJSON_Delete(root);
    free(text);

    /* non-finite values print as null, keeping the JSON valid */
    float bad[] = {NAN, INFINITY};
    r = cJSON_CreateObject();
    CHECK(sbert_proto_add_floats(r, "x", bad, 2) == 0 && sbert_proto_print(r, &text, &len) == 0);
    CHECK(strcmp(text, "{\"x\":[null,null]}") == 0);
    free(text);
    cJSON_Delete(r);

    /* error replies */
    sbert_proto_error_set(&err, SBERT_PROTO_EEMPTY_TEXT, 3, "documents[%d].text is empty", 3);
    r = sbert_proto_reply_error(&err, "e1");
    CHECK(r && sbert_proto_print(r, &text, &len) == 0);
    cJSON_Delete(r);
    struct sbert_proto_error got;
    CHECK(sbert_proto_reply_parse(text, len, &root, &got) == SBERT_PROTO_EEMPTY_TEXT);
    CHECK(got.index == 3 && strcmp(got.code_name, "empty_text") == 0 &&
          strcmp(got.message, "documents[3].text is empty") == 0);
    cJSON_Delete(root);
    free(text);
    const char *unk = "{\"v\":1,\"ok\":false,\"error\":{\"code\":\"brand_new\",\"message\":\"m\"}}";
    CHECK(sbert_proto_reply_parse(unk, strlen(unk), &root, &got) == SBERT_PROTO_EUNKNOWN_CODE);
    CHECK(strcmp(got.code_name, "brand_new") == 0 && got.index == -1);
    cJSON_Delete(root);
    CHECK(sbert_proto_reply_parse("{\"v\":1}", 7, &root, &got) == SBERT_PROTO_EBAD_JSON && !root);
    CHECK(sbert_proto_reply_parse("{\"v\":3,\"ok\":true}", 17, &root, &got) ==
          SBERT_PROTO_EBAD_VERSION);

    /* client requests */
    cJSON *q = sbert_proto_request_new("query", "q1", "tok");
    CHECK(q && sbert_proto_print(q, &text, &len) == 0);
    CHECK(strcmp(text, "{\"v\":1,\"op\":\"query\",\"req_id\":\"q1\",\"token\":\"tok\"}") == 0);
    struct sbert_proto_request req;
    CHECK(sbert_proto_request_parse(text, len, &req, NULL, &err) == 0);
    sbert_proto_request_clear(&req);
    free(text);
    cJSON_Delete(q);
}

int main(void)
{
    test_codes();
    test_request_parse();
    test_getters();
    test_build_and_parse_replies();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("proto_test: all checks passed\n");
    return 0;
}
