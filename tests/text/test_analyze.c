/* test_analyze.c — text/ (sbert_text.h): words, folding, stop words, stemming, positions, limits,
 * and every Unicode code point through the analyzer. */
#include "sbert_text.h"
#include "sbert_util.h"

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

struct terms {
    char s[4096]; /* "term@pos term@pos ..." */
    size_t n, max_len;
    int all_utf8;
};

static int collect(const char *t, size_t len, uint32_t pos, void *user)
{
    struct terms *ts = user;
    if (!sbert_util_utf8_valid(t, len) || len == 0) ts->all_utf8 = 0;
    if (len > ts->max_len) ts->max_len = len;
    size_t used = strlen(ts->s);
    if (used + len + 16 < sizeof ts->s)
        snprintf(ts->s + used, sizeof ts->s - used, "%s%.*s@%u", used ? " " : "", (int)len, t, pos);
    ts->n++;
    return 0;
}

static struct terms run(sbert_analyzer *a, const char *text, size_t len)
{
    struct terms ts = {.all_utf8 = 1};
    CHECK(sbert_analyzer_run(a, text, len, collect, &ts) == 0);
    return ts;
}

static void test_english(void)
{
    sbert_analyzer *a;
    CHECK(sbert_analyzer_new(NULL, &a) == 0);
    CHECK(strcmp(sbert_analyzer_language(a), "english") == 0);
    const char *t = "The runners were running quickly, and a cat's C++ code_base in 2024!";
    struct terms ts = run(a, t, strlen(t));
    /* the, were, and, in: stop words (their positions still count); a, s, C: single characters,
     * dropped with no position */
    CHECK(strcmp(ts.s, "runner@1 run@3 quick@4 cat@6 code_bas@7 2024@9") == 0);
    if (strcmp(ts.s, "runner@1 run@3 quick@4 cat@6 code_bas@7 2024@9") != 0)
        fprintf(stderr, "  got: %s\n", ts.s);

    /* case folding: ß folds to ss, so all three meet */
    const char *f = "Straße STRASSE strasse";
    ts = run(a, f, strlen(f));
    CHECK(ts.n == 3);
    char first[64];
    sscanf(ts.s, "%63[^@]", first);
    size_t fl = strlen(first);
    CHECK(strncmp(ts.s, first, fl) == 0 && strstr(ts.s + fl + 2, first) != NULL);
    sbert_analyzer_free(a);

    CHECK(sbert_analyzer_new("en", &a) == 0);
    CHECK(strcmp(sbert_analyzer_language(a), "english") == 0);
    sbert_analyzer_free(a);
}

static void test_none_and_languages(void)
{
    sbert_analyzer *a;
    CHECK(sbert_analyzer_new("none", &a) == 0);
    const char *t = "The Runners WERE running";
    struct terms ts = run(a, t, strlen(t));
    CHECK(strcmp(ts.s, "the@0 runners@1 were@2 running@3") == 0);
    sbert_analyzer_free(a);

    CHECK(sbert_analyzer_new("german", &a) == 0);
    const char *g = "Häuser und Häusern";
    ts = run(a, g, strlen(g));
    CHECK(ts.n == 3); /* no German stop list: "und" stays */
    sbert_analyzer_free(a);

    CHECK(sbert_analyzer_new("klingon", &a) == SBERT_TEXT_ELANGUAGE && a == NULL);
    CHECK(sbert_analyzer_new("a-language-name-far-too-long-to-be-one", &a) == SBERT_TEXT_ELANGUAGE);
    int has_english = 0;
    for (const char **l = sbert_text_languages(); *l; l++)
        has_english |= strcmp(*l, "english") == 0;
    CHECK(has_english);
    CHECK(strcmp(sbert_text_strerror(SBERT_TEXT_ELANGUAGE), "unknown error") != 0);
}

static void test_separators_and_limits(void)
{
    sbert_analyzer *a;
    CHECK(sbert_analyzer_new("none", &a) == 0);
    /* NUL, invalid UTF-8 and a lone continuation byte separate words */
    const char t[] = "alpha\0beta\xff"
                     "gamma\x80"
                     "delta";
    struct terms ts = run(a, t, sizeof t - 1);
    CHECK(strcmp(ts.s, "alpha@0 beta@1 gamma@2 delta@3") == 0);

    /* a 10 KB word is cut to SBERT_TEXT_MAX_TERM bytes, and another long word that starts the same
     * way meets it */
    size_t n = 10240;
    char *big = malloc(2 * n + 2);
    memset(big, 'x', 2 * n + 1);
    big[n] = ' ';
    big[2 * n] = 'y';
    big[2 * n + 1] = '\0';
    ts = run(a, big, 2 * n + 1);
    CHECK(ts.n == 2 && ts.max_len == SBERT_TEXT_MAX_TERM);
    free(big);

    /* multi-byte characters are never cut in the middle */
    char cyr[4000] = "";
    for (int i = 0; i < 1000; i++)
        strcat(cyr, "ж");
    ts = run(a, cyr, strlen(cyr));
    CHECK(ts.n == 1 && ts.all_utf8 && ts.max_len <= SBERT_TEXT_MAX_TERM);
    sbert_analyzer_free(a);
}

static int stop_at_second(const char *t, size_t len, uint32_t pos, void *user)
{
    (void)t, (void)len;
    (*(int *)user)++;
    return pos == 1 ? 42 : 0;
}

static void test_callback_stop(void)
{
    sbert_analyzer *a;
    CHECK(sbert_analyzer_new("none", &a) == 0);
    int calls = 0;
    CHECK(sbert_analyzer_run(a, "one two three", 13, stop_at_second, &calls) == 42);
    CHECK(calls == 2);
    sbert_analyzer_free(a);
}

/* Every code point, alone and between letters, in every analyzer kind: terms are valid UTF-8,
 * non-empty and at most SBERT_TEXT_MAX_TERM bytes. */
static void test_every_code_point(void)
{
    const char *langs[] = {"english", "none", "russian"};
    for (size_t l = 0; l < 3; l++) {
        sbert_analyzer *a;
        CHECK(sbert_analyzer_new(langs[l], &a) == 0);
        struct terms ts = {.all_utf8 = 1};
        for (int32_t cp = 0; cp <= 0x10FFFF; cp++) {
            if (cp >= 0xD800 && cp <= 0xDFFF) continue;
            unsigned char buf[16] = "ab";
            size_t k = 2;
            if (cp < 0x80)
                buf[k++] = (unsigned char)cp;
            else if (cp < 0x800) {
                buf[k++] = (unsigned char)(0xC0 | (cp >> 6));
                buf[k++] = (unsigned char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                buf[k++] = (unsigned char)(0xE0 | (cp >> 12));
                buf[k++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                buf[k++] = (unsigned char)(0x80 | (cp & 0x3F));
            } else {
                buf[k++] = (unsigned char)(0xF0 | (cp >> 18));
                buf[k++] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
                buf[k++] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
                buf[k++] = (unsigned char)(0x80 | (cp & 0x3F));
            }
            buf[k++] = 'c';
            buf[k++] = 'd';
            ts.s[0] = '\0';
            CHECK(sbert_analyzer_run(a, (const char *)buf, k, collect, &ts) == 0);
        }
        CHECK(ts.all_utf8);
        CHECK(ts.max_len <= SBERT_TEXT_MAX_TERM);
        sbert_analyzer_free(a);
    }
}

int main(void)
{
    test_english();
    test_none_and_languages();
    test_separators_and_limits();
    test_callback_stop();
    test_every_code_point();
    if (failures) {
        fprintf(stderr, "text_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("text_test: all checks passed\n");
    return 0;
}
