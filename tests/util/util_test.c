/* util_test.c — unit tests of util/ (sbert_util.h): UTF-8 and JSON syntax validation, vectors, the
 * top-pairs heap (checked against sorting every pair). */
#include "sbert_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
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

static void test_utf8(void)
{
    static const struct {
        const char *s;
        size_t len;
        int valid;
    } cases[] = {
        {"plain ascii", 11, 1},
        {"caf\xc3\xa9", 5, 1},
        {"\xe2\x82\xac", 3, 1},     /* U+20AC */
        {"\xf0\x9f\x98\x80", 4, 1}, /* U+1F600 */
        {"\xf4\x8f\xbf\xbf", 4, 1}, /* U+10FFFF */
        {"\xc0\xaf", 2, 0},         /* overlong '/' */
        {"\xe0\x80\xaf", 3, 0},     /* overlong */
        {"\xed\xa0\x80", 3, 0},     /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, 0}, /* above U+10FFFF */
        {"\xff", 1, 0},
        {"\xc3", 1, 0},     /* cut */
        {"\xe2\x82", 2, 0}, /* cut */
        {"a\x80", 2, 0},    /* lone continuation */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(sbert_util_utf8_valid(cases[i].s, cases[i].len) == cases[i].valid);
}

static void test_vectors(void)
{
    float a[3] = {3, 0, 4}, b[3] = {6, 0, 8}, z[3] = {0, 0, 0}, out[3];
    CHECK(fabs(sbert_util_cosine(a, b, 3) - 1.0) < 1e-12);
    CHECK(sbert_util_cosine(a, z, 3) == 0.0);
    CHECK(sbert_util_normalise_into(a, 3, out) == 0);
    CHECK(fabsf(out[0] - 0.6f) < 1e-7f && out[1] == 0 && fabsf(out[2] - 0.8f) < 1e-7f);
    CHECK(sbert_util_normalise_into(z, 3, out) == 0 && out[0] == 0 && out[2] == 0);
    float bad[2] = {1, NAN};
    CHECK(sbert_util_normalise_into(bad, 2, out) == -1);
    CHECK(sbert_util_normalise_into(a, 3, a) == 0 && fabsf(a[2] - 0.8f) < 1e-7f);
}

static int before_cmp(const void *x, const void *y)
{
    return sbert_util_pair_before(x, y) ? -1 : (sbert_util_pair_before(y, x) ? 1 : 0);
}

/* Random pairs with many tied scores: the kept top-n equals the first n of a full sort. */
static void test_topk(void)
{
    enum { N = 2000 };
    static struct sbert_util_pair all[N];
    srand(7);
    for (size_t i = 0; i < N; i++)
        all[i] = (struct sbert_util_pair){(float)(rand() % 50) / 50.0f, (uint64_t)(rand() % 40),
                                          (uint64_t)(rand() % 40)};
    struct sbert_util_pair sorted[N];
    memcpy(sorted, all, sizeof all);
    qsort(sorted, N, sizeof sorted[0], before_cmp);
    size_t limits[] = {0, 1, 7, 300, N, N + 5};
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        struct sbert_util_topk k;
        sbert_util_topk_init(&k, limits[li]);
        for (size_t i = 0; i < N; i++)
            CHECK(sbert_util_topk_add(&k, &all[i]) == 0);
        size_t want = limits[li] && limits[li] < N ? limits[li] : N;
        CHECK(k.n == want);
        sbert_util_topk_sort(&k);
        for (size_t i = 0; i < k.n && i < want; i++)
            CHECK(k.v[i].score == sorted[i].score && k.v[i].a == sorted[i].a &&
                  k.v[i].b == sorted[i].b);
        sbert_util_topk_free(&k);
        CHECK(k.v == NULL && k.n == 0);
    }
}

/* sbert_util_json_valid accepts nothing cJSON refuses (so a failed parse of a text it accepts
 * was an allocation failure), and accepts the ordinary JSON cJSON reads. */
static void test_json_valid(void)
{
    static const struct {
        const char *s;
        int valid, object;
    } cases[] = {
        {"{}", 1, 1},
        {" {\"a\": [1, -2.5e+3, true, false, null, \"x\\u00e9\\ud83d\\ude00\"]} ", 1, 1},
        {"[1,2]", 1, 0},
        {"\"s\"", 1, 0},
        {"0", 1, 0},
        {"{\"a\":1} trailing", 1, 1}, /* what follows the value is the caller's business */
        {"", 0, 0},
        {"{", 0, 0},
        {"{\"a\"}", 0, 0},
        {"{\"a\":}", 0, 0},
        {"[1,]", 0, 0},
        {"{a:1}", 0, 0},
        {"01", 1, 0}, /* "0", then a trailing 1 */
        {"-", 0, 0},
        {"1.", 0, 0},
        {"1e", 0, 0},
        {"tru", 0, 0},
        {"\"\\x\"", 0, 0},
        {"\"\\ud800\"", 0, 0},
        {"\"\\udc00\"", 0, 0},
        {"\"\\ud800\\u0041\"", 0, 0},
        {"\"a\nb\"", 0, 0},
        {"1234567890123456789012345678901234567890123456789012345678901234", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int obj = -1;
        int v = sbert_util_json_valid(cases[i].s, strlen(cases[i].s), &obj);
        CHECK(v == cases[i].valid);
        if (v) CHECK(obj == cases[i].object);
        cJSON *j = cJSON_ParseWithLength(cases[i].s, strlen(cases[i].s));
        if (v) CHECK(j != NULL);
        cJSON_Delete(j);
    }
    char deep[1200];
    memset(deep, '[', 600);
    memset(deep + 600, ']', 600);
    CHECK(sbert_util_json_valid(deep, sizeof deep, NULL) == 0);
    CHECK(sbert_util_json_valid(deep + 100, 1000, NULL) == 1);

    /* Mutations of a document: whatever the checker accepts, cJSON parses. */
    const char *doc =
        "{\"id\": \"a\\u00e9\", \"v\": [0.5, -1e-3, 2], \"m\": {\"t\": true, \"n\": null}}";
    size_t len = strlen(doc);
    uint64_t r = 17;
    static const char alphabet[] = "{}[]\":,.-+eE0123456789tfnulrs\\/ \tx";
    for (int round = 0; round < 20000; round++) {
        char buf[128];
        memcpy(buf, doc, len);
        for (int k = 0; k < 3; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            buf[(r >> 33) % len] = alphabet[(r >> 17) % (sizeof alphabet - 1)];
        }
        if (sbert_util_json_valid(buf, len, NULL)) {
            cJSON *j = cJSON_ParseWithLength(buf, len);
            CHECK(j != NULL);
            cJSON_Delete(j);
        }
    }
}

static int log_calls;
static void log_cb(int level, const char *msg, void *user)
{
    CHECK(level == 6 && strcmp(msg, "x=42") == 0 && user == &log_calls);
    log_calls++;
}

static void test_messages(void)
{
    char buf[8];
    CHECK(sbert_util_errf(buf, sizeof buf, -3, "%s", "a long message") == -3);
    CHECK(strcmp(buf, "a long ") == 0);
    CHECK(sbert_util_errf(NULL, 0, -4, "nothing") == -4);
    sbert_util_logf(log_cb, &log_calls, 6, "x=%d", 42);
    sbert_util_logf(NULL, NULL, 6, "dropped");
    CHECK(log_calls == 1);
}

int main(void)
{
    test_utf8();
    test_json_valid();
    test_vectors();
    test_topk();
    test_messages();
    if (failures) {
        fprintf(stderr, "util_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("util_test: all checks passed\n");
    return 0;
}
