/*
 * optable_test.c — the op table of proto/ (sbert_proto_ops() and friends).
 *
 *   optable_test          unit tests of the table and its lookups (test proto_optable)
 *   optable_test --json   prints the table as one JSON document, which optable_doc.py compares
 *                         with PROTOCOL.md (test proto_optable_doc) and make_corpus.py reads
 */
#include "sbert_proto.h"

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

/* ---- --json ------------------------------------------------------------------------------------
 */

static cJSON *member_json(const struct sbert_proto_member *m)
{
    static const struct {
        unsigned flag;
        const char *name;
    } flags[] = {{SBERT_PROTO_MF_BATCH, "batch"},
                 {SBERT_PROTO_MF_COLLECTION, "collection"},
                 {SBERT_PROTO_MF_CONFIGURED, "configured"}};
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", m->name);
    cJSON_AddStringToObject(o, "type", sbert_proto_mtype_name(m->type));
    cJSON_AddBoolToObject(o, "required", m->required);
    cJSON_AddNumberToObject(o, "one_of", m->one_of);
    cJSON *f = cJSON_AddArrayToObject(o, "flags");
    unsigned rest = m->flags;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        if (m->flags & flags[i].flag) {
            cJSON_AddItemToArray(f, cJSON_CreateString(flags[i].name));
            rest &= ~flags[i].flag;
        }
    if (rest) /* a flag this program does not know: the checker reports it */
        cJSON_AddItemToArray(f, cJSON_CreateString("?"));
    return o;
}

static int print_json(void)
{
    cJSON *doc = cJSON_CreateObject();
    cJSON_AddNumberToObject(doc, "version", SBERT_PROTO_VERSION);
    size_t n;
    const struct sbert_proto_member *env = sbert_proto_envelope(&n);
    cJSON *e = cJSON_AddArrayToObject(doc, "envelope");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(e, member_json(&env[i]));
    const struct sbert_proto_op *ops = sbert_proto_ops(&n);
    cJSON *a = cJSON_AddArrayToObject(doc, "ops");
    for (size_t i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", ops[i].name);
        cJSON_AddNumberToObject(o, "id", ops[i].id);
        cJSON_AddBoolToObject(o, "writes", ops[i].writes);
        cJSON_AddStringToObject(o, "summary", ops[i].summary);
        cJSON *m = cJSON_AddArrayToObject(o, "members");
        for (size_t j = 0; j < ops[i].n_members; j++)
            cJSON_AddItemToArray(m, member_json(&ops[i].members[j]));
        cJSON_AddItemToArray(a, o);
    }
    char *s = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!s) {
        fputs("optable_test: out of memory\n", stderr);
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

/* ---- unit tests ---------------------------------------------------------------------------------
 */

static void test_shape(void)
{
    size_t n = 0;
    const struct sbert_proto_op *ops = sbert_proto_ops(&n);
    CHECK(n == SBERT_PROTO_N_OPS && ops == sbert_proto_ops(NULL));
    for (size_t i = 0; i < n; i++) {
        const struct sbert_proto_op *op = &ops[i];
        CHECK((size_t)op->id == i);
        CHECK(op->name && op->name[0] && op->summary && op->summary[0]);
        CHECK(op->writes == 0 || op->writes == 1);
        CHECK((op->n_members == 0) == (op->members == NULL));
        CHECK(sbert_proto_op_find(op->name) == op);
        for (size_t j = i + 1; j < n; j++)
            CHECK(strcmp(op->name, ops[j].name) != 0);
        int groups[8] = {0};
        for (size_t j = 0; j < op->n_members; j++) {
            const struct sbert_proto_member *m = &op->members[j];
            CHECK(sbert_proto_op_member(op, m->name) == m);
            CHECK(strcmp(sbert_proto_mtype_name(m->type), "?") != 0);
            CHECK(m->required == 0 || m->required == 1);
            /* a member of a "one of" group is not required on its own */
            CHECK(m->one_of >= 0 && m->one_of < 8 && !(m->one_of && m->required));
            if (m->one_of > 0) groups[m->one_of]++;
            CHECK(!(m->flags & SBERT_PROTO_MF_CONFIGURED)); /* only "token" */
            /* an op member never shadows a common one */
            size_t ne;
            const struct sbert_proto_member *env = sbert_proto_envelope(&ne);
            for (size_t k = 0; k < ne; k++)
                CHECK(strcmp(env[k].name, m->name) != 0);
        }
        for (int g = 1; g < 8; g++)
            CHECK(groups[g] == 0 || groups[g] >= 2); /* "one of" a single member is "yes" */
    }
}

static void test_lookups(void)
{
    const struct sbert_proto_op *q = sbert_proto_op_find("query");
    CHECK(q && q->id == SBERT_PROTO_OP_QUERY && !q->writes);
    CHECK(sbert_proto_op_find("QUERY") == NULL); /* names are exact (unknown_op) */
    CHECK(sbert_proto_op_find("query ") == NULL);
    CHECK(sbert_proto_op_find("") == NULL && sbert_proto_op_find(NULL) == NULL);
    const struct sbert_proto_member *t = sbert_proto_op_member(q, "text");
    const struct sbert_proto_member *v = sbert_proto_op_member(q, "vector");
    CHECK(t && v && t->one_of > 0 && t->one_of == v->one_of && !t->required);
    const struct sbert_proto_member *ts = sbert_proto_op_member(q, "texts");
    const struct sbert_proto_member *vs = sbert_proto_op_member(q, "vectors");
    CHECK(ts && vs && ts->one_of == t->one_of && vs->one_of == t->one_of);
    CHECK((ts->flags & SBERT_PROTO_MF_BATCH) && vs->type == SBERT_PROTO_M_VECTORS);
    CHECK(sbert_proto_op_member(q, "ids") == NULL);
    CHECK(sbert_proto_op_member(q, "req_id") == NULL); /* common members are not the op's */
    CHECK(sbert_proto_op_member(NULL, "text") == NULL);

    static const char *const writers[] = {
        "add", "delete", "backup", "reindex", "patch", "create_collection", "drop_collection"};
    size_t nw = 0, n;
    const struct sbert_proto_op *ops = sbert_proto_ops(&n);
    for (size_t i = 0; i < n; i++)
        nw += (size_t)ops[i].writes;
    CHECK(nw == 7);
    for (size_t i = 0; i < 7; i++)
        CHECK(sbert_proto_op_find(writers[i]) && sbert_proto_op_find(writers[i])->writes);

    const struct sbert_proto_op *p = sbert_proto_op_find("pairs");
    CHECK(p && sbert_proto_op_member(p, "per_doc_k") &&
          (sbert_proto_op_member(p, "per_doc_k")->flags & SBERT_PROTO_MF_COLLECTION));
    CHECK(!(sbert_proto_op_member(p, "n")->flags & SBERT_PROTO_MF_COLLECTION));
    CHECK(sbert_proto_op_member(sbert_proto_op_find("add"), "documents")->flags &
          SBERT_PROTO_MF_BATCH);
    /* delete takes ids or a filter, exactly one */
    const struct sbert_proto_op *del = sbert_proto_op_find("delete");
    const struct sbert_proto_member *di = sbert_proto_op_member(del, "ids");
    const struct sbert_proto_member *df = sbert_proto_op_member(del, "filter");
    CHECK(di && df && di->one_of > 0 && di->one_of == df->one_of && !di->required);
    CHECK(sbert_proto_op_find("list") && !sbert_proto_op_find("list")->writes);
    CHECK(sbert_proto_op_find("count") && !sbert_proto_op_find("count")->writes);
    /* every document op names its collection */
    static const char *const in_coll[] = {"add",  "get",   "delete", "query",  "pairs",
                                          "list", "count", "patch",  "backup", "reindex"};
    for (size_t i = 0; i < sizeof in_coll / sizeof in_coll[0]; i++)
        CHECK(sbert_proto_op_member(sbert_proto_op_find(in_coll[i]), "collection"));

    size_t ne;
    const struct sbert_proto_member *env = sbert_proto_envelope(&ne);
    CHECK(ne == 4 && strcmp(env[0].name, "v") == 0 && env[0].required &&
          strcmp(env[3].name, "token") == 0 && !env[3].required &&
          (env[3].flags & SBERT_PROTO_MF_CONFIGURED));
    CHECK(strcmp(sbert_proto_mtype_name(SBERT_PROTO_M_STRINGS), "array of strings") == 0);
    CHECK(strcmp(sbert_proto_mtype_name((enum sbert_proto_mtype)99), "?") == 0);
}

static int matches(enum sbert_proto_mtype t, const char *json)
{
    cJSON *x = cJSON_Parse(json);
    int r = sbert_proto_mtype_matches(t, x);
    cJSON_Delete(x);
    return r;
}

static void test_mtype_matches(void)
{
    CHECK(matches(SBERT_PROTO_M_STRING, "\"x\"") && !matches(SBERT_PROTO_M_STRING, "1"));
    CHECK(matches(SBERT_PROTO_M_INT, "3") && matches(SBERT_PROTO_M_INT, "-0"));
    CHECK(!matches(SBERT_PROTO_M_INT, "1.5") && !matches(SBERT_PROTO_M_INT, "\"3\""));
    CHECK(matches(SBERT_PROTO_M_NUMBER, "1.5") && !matches(SBERT_PROTO_M_NUMBER, "true"));
    CHECK(matches(SBERT_PROTO_M_BOOL, "false") && !matches(SBERT_PROTO_M_BOOL, "0"));
    CHECK(matches(SBERT_PROTO_M_ARRAY, "[1,\"a\"]") && !matches(SBERT_PROTO_M_ARRAY, "{}"));
    CHECK(matches(SBERT_PROTO_M_OBJECT, "{}") && !matches(SBERT_PROTO_M_OBJECT, "[]"));
    CHECK(matches(SBERT_PROTO_M_STRINGS, "[\"a\",\"b\"]") && matches(SBERT_PROTO_M_STRINGS, "[]"));
    CHECK(!matches(SBERT_PROTO_M_STRINGS, "[\"a\",1]") && !matches(SBERT_PROTO_M_STRINGS, "\"a\""));
    CHECK(matches(SBERT_PROTO_M_NUMBERS, "[0.5,1]") && !matches(SBERT_PROTO_M_NUMBERS, "[null]"));
    CHECK(matches(SBERT_PROTO_M_OBJECTS, "[{}]") && !matches(SBERT_PROTO_M_OBJECTS, "[[]]"));
    CHECK(matches(SBERT_PROTO_M_STRING_OR_STRINGS, "\"a\"") &&
          matches(SBERT_PROTO_M_STRING_OR_STRINGS, "[\"a\"]") &&
          !matches(SBERT_PROTO_M_STRING_OR_STRINGS, "[\"a\",2]"));
    CHECK(matches(SBERT_PROTO_M_VECTORS, "[[0.5,1],[2]]") && matches(SBERT_PROTO_M_VECTORS, "[]"));
    CHECK(!matches(SBERT_PROTO_M_VECTORS, "[0.5,1]") &&
          !matches(SBERT_PROTO_M_VECTORS, "[[\"a\"]]"));
    CHECK(!sbert_proto_mtype_matches(SBERT_PROTO_M_STRING, NULL));
}

static int check_members(const char *op, const char *json, char *msg, size_t cap)
{
    cJSON *x = cJSON_Parse(json);
    struct sbert_proto_error err = {0};
    int rc = sbert_proto_op_check_members(sbert_proto_op_find(op), x, &err);
    snprintf(msg, cap, "%s", rc ? err.message : "");
    cJSON_Delete(x);
    return rc;
}

static void test_check_members(void)
{
    char msg[512];
    CHECK(check_members("query",
                        "{\"v\":1,\"op\":\"query\",\"req_id\":\"r\",\"token\":\"t\","
                        "\"text\":\"a\",\"k\":2,\"include\":[]}",
                        msg, sizeof msg) == 0);
    CHECK(check_members("query", "{\"v\":1,\"op\":\"query\",\"txts\":[\"a\"]}", msg, sizeof msg) ==
          SBERT_PROTO_EBAD_REQUEST);
    CHECK(strcmp(msg, "unknown member \"txts\"") == 0);
    CHECK(check_members("stats", "{\"v\":1,\"op\":\"stats\",\"k\":1}", msg, sizeof msg) ==
          SBERT_PROTO_EBAD_REQUEST);
    CHECK(check_members("reindex", "{\"v\":1,\"op\":\"reindex\",\"req_id\":\"x\"}", msg,
                        sizeof msg) == 0);

    /* the same verdict as sbert_proto_check_members() given the op's names */
    size_t n;
    const struct sbert_proto_op *ops = sbert_proto_ops(&n);
    static const char *const probes[] = {"documents", "ids", "include",  "text", "vector",
                                         "k",         "a",   "texts",    "n",    "dir",
                                         "filter",    "x",   "per_doc_k"};
    for (size_t i = 0; i < n; i++) {
        const char *names[32] = {NULL};
        for (size_t j = 0; j < ops[i].n_members; j++)
            names[j] = ops[i].members[j].name;
        for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "v", 1);
            cJSON_AddNullToObject(x, probes[p]);
            struct sbert_proto_error e1, e2;
            int r1 = sbert_proto_op_check_members(&ops[i], x, &e1);
            int r2 = sbert_proto_check_members(x, names, 1, &e2);
            CHECK(r1 == r2);
            CHECK(r1 == (sbert_proto_op_member(&ops[i], probes[p]) ? 0 : SBERT_PROTO_EBAD_REQUEST));
            cJSON_Delete(x);
        }
    }
}

static int check_request(const char *json, char *msg, size_t cap)
{
    cJSON *x = cJSON_Parse(json);
    struct sbert_proto_error err = {0};
    const struct sbert_proto_op *op = (const struct sbert_proto_op *)1;
    int rc = sbert_proto_op_check_request(x, SBERT_PROTO_CHECK_TYPES, &op, &err);
    snprintf(msg, cap, "%s", rc ? err.message : "");
    if (rc == SBERT_PROTO_EUNKNOWN_OP || !cJSON_IsObject(x))
        CHECK(op == NULL);
    else
        CHECK(op && op == sbert_proto_op_find(cJSON_GetObjectItem(x, "op")->valuestring));
    cJSON_Delete(x);
    return rc;
}

static void test_check_request(void)
{
    char msg[512];
    struct sbert_proto_error err;
    static const char *const good[] = {
        "{\"v\":1,\"op\":\"add\",\"req_id\":\"r\",\"documents\":[{\"text\":\"a\"}]}",
        "{\"v\":1,\"op\":\"get\",\"ids\":[\"a\"],\"include\":[\"vector\"]}",
        "{\"v\":1,\"op\":\"query\",\"text\":\"a\",\"k\":3,\"filter\":{},\"min_score\":0.5}",
        "{\"v\":1,\"op\":\"query\",\"vector\":[0.5,1]}",
        "{\"v\":1,\"op\":\"similarity\",\"a\":\"x\",\"b\":[\"y\"]}",
        "{\"v\":1,\"op\":\"pairs\"}",
        "{\"v\":1,\"op\":\"stats\",\"token\":\"t\"}",
        "{\"v\":1,\"op\":\"backup\",\"dir\":\"/x\"}",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int rc = check_request(good[i], msg, sizeof msg);
        if (rc) fprintf(stderr, "%s: %s\n", good[i], msg);
        CHECK(rc == 0);
    }
    static const struct {
        const char *json;
        int code;
        const char *msg;
    } bad[] = {
        {"{\"v\":1,\"op\":\"nope\"}", SBERT_PROTO_EUNKNOWN_OP, "unknown op \"nope\""},
        {"{\"v\":1}", SBERT_PROTO_EUNKNOWN_OP, "unknown op \"\""},
        {"[1]", SBERT_PROTO_EBAD_REQUEST, "a request is a JSON object"},
        {"{\"op\":\"stats\"}", SBERT_PROTO_EBAD_REQUEST,
         "stats: the required member \"v\" is missing"},
        {"{\"v\":1.5,\"op\":\"stats\"}", SBERT_PROTO_EBAD_REQUEST,
         "stats: \"v\" must be of type int"},
        {"{\"v\":1,\"op\":\"get\"}", SBERT_PROTO_EBAD_REQUEST,
         "get: the required member \"ids\" is missing"},
        {"{\"v\":1,\"op\":\"get\",\"ids\":\"a\"}", SBERT_PROTO_EBAD_REQUEST,
         "get: \"ids\" must be of type array of strings"},
        {"{\"v\":1,\"op\":\"stats\",\"req_id\":7}", SBERT_PROTO_EBAD_REQUEST,
         "stats: \"req_id\" must be of type string"},
        {"{\"v\":1,\"op\":\"query\"}", SBERT_PROTO_EBAD_REQUEST,
         "query: give exactly one of \"text\", \"vector\", \"texts\", \"vectors\", not 0"},
        {"{\"v\":1,\"op\":\"query\",\"text\":\"a\",\"vector\":[1]}", SBERT_PROTO_EBAD_REQUEST,
         "query: give exactly one of \"text\", \"vector\", \"texts\", \"vectors\", not 2"},
        {"{\"v\":1,\"op\":\"query\",\"text\":\"a\",\"k\":\"3\"}", SBERT_PROTO_EBAD_REQUEST,
         "query: \"k\" must be of type int"},
        {"{\"v\":1,\"op\":\"health\",\"text\":\"a\"}", SBERT_PROTO_EBAD_REQUEST,
         "unknown member \"text\""},
    };
    /* without SBERT_PROTO_CHECK_TYPES a wrong type passes, a missing or unknown member not */
    cJSON *x = cJSON_Parse("{\"v\":1,\"op\":\"query\",\"text\":\"a\",\"filter\":[1]}");
    CHECK(sbert_proto_op_check_request(x, 0, NULL, NULL) == 0);
    CHECK(sbert_proto_op_check_request(x, SBERT_PROTO_CHECK_TYPES, NULL, NULL) ==
          SBERT_PROTO_EBAD_REQUEST);
    cJSON_DeleteItemFromObject(x, "text");
    CHECK(sbert_proto_op_check_request(x, 0, NULL, NULL) == SBERT_PROTO_EBAD_REQUEST);
    cJSON_AddStringToObject(x, "txts", "a");
    CHECK(sbert_proto_op_check_request(x, 0, NULL, NULL) == SBERT_PROTO_EBAD_REQUEST);
    cJSON_DeleteItemFromObject(x, "txts");
    cJSON_AddStringToObject(x, "texts", "a"); /* its type is checked only when asked */
    CHECK(sbert_proto_op_check_request(x, 0, NULL, NULL) == 0);
    CHECK(sbert_proto_op_check_request(x, SBERT_PROTO_CHECK_TYPES, NULL, NULL) ==
          SBERT_PROTO_EBAD_REQUEST);
    cJSON_Delete(x);
    /* names are exact: "Vector" is not "vector" (and is an unknown member) */
    x = cJSON_Parse("{\"v\":1,\"op\":\"query\",\"vector\":[1]}");
    CHECK(sbert_proto_op_check_request(x, SBERT_PROTO_CHECK_TYPES, NULL, NULL) == 0);
    cJSON_AddStringToObject(x, "Text", "a");
    CHECK(sbert_proto_op_check_request(x, SBERT_PROTO_CHECK_TYPES, NULL, &err) ==
          SBERT_PROTO_EBAD_REQUEST);
    CHECK(strcmp(err.message, "unknown member \"Text\"") == 0);
    cJSON_Delete(x);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(check_request(bad[i].json, msg, sizeof msg) == bad[i].code);
        if (strcmp(msg, bad[i].msg) != 0) {
            fprintf(stderr, "%s: message \"%s\", want \"%s\"\n", bad[i].json, msg, bad[i].msg);
            failures++;
        }
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--json") == 0) return print_json();
    if (argc != 1) {
        fputs("usage: optable_test [--json]\n", stderr);
        return 2;
    }
    test_shape();
    test_lookups();
    test_mtype_matches();
    test_check_members();
    test_check_request();
    if (failures) {
        fprintf(stderr, "%d checks failed\n", failures);
        return 1;
    }
    printf("optable_test: all checks passed\n");
    return 0;
}
