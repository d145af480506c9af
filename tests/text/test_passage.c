/* test_passage.c — sbert_passages_split (text/passage.c): the contract on texts made here with
 * two toy counters (words; code points / 4, which forces words to be cut), and, given a model
 * directory, with the model's own tokenizer on SciFact's longest abstracts. */
#define _GNU_SOURCE
#include "sbert.h"
#include "sbert_text.h"

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

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int count_words(const char *s, size_t n, size_t max, size_t *tokens, void *user)
{
    (void)max, (void)user;
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += !is_space(s[i]) && (i == 0 || is_space(s[i - 1]));
    *tokens = w;
    return 0;
}

static int count_quarters(const char *s, size_t n, size_t max, size_t *tokens, void *user)
{
    (void)max, (void)user;
    size_t cps = 0;
    for (size_t i = 0; i < n; i++)
        cps += !is_space(s[i]) && ((unsigned char)s[i] & 0xC0) != 0x80;
    *tokens = (cps + 3) / 4;
    return 0;
}

struct model_ctx {
    const sbert_model *m;
    int32_t ids[512];
};

static int count_model(const char *s, size_t n, size_t max, size_t *tokens, void *user)
{
    struct model_ctx *c = user;
    size_t n_ids;
    int truncated;
    if (sbert_tokenize(c->m, s, n, c->ids, 512, &n_ids, &truncated)) return -100;
    *tokens = truncated ? max + 1 : n_ids - 2;
    return 0;
}

/* The contract: passages in order, inside the text, trimmed, within max as the counter says,
 * consecutive ones overlapping by at most the overlap, and every non-space byte covered. */
static void check(const char *text, size_t len, size_t max, size_t overlap, sbert_count_fn fn,
                  void *user, const char *what)
{
    struct sbert_passage *p;
    size_t n;
    int rc = sbert_passages_split(text, len, max, overlap, fn, user, &p, &n);
    CHECK(rc == 0);
    if (rc) return;
    char *covered = calloc(len + 1, 1);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        size_t t;
        fn(text + p[i].start, p[i].end - p[i].start, max, &t, user);
        bad |= !(p[i].start < p[i].end && p[i].end <= len);
        bad |= is_space(text[p[i].start]) || is_space(text[p[i].end - 1]);
        bad |= t > max || t != p[i].tokens;
        if (i) {
            bad |= p[i].start <= p[i - 1].start || p[i].end <= p[i - 1].end;
            if (p[i].start < p[i - 1].end) {
                size_t ov;
                fn(text + p[i].start, p[i - 1].end - p[i].start, max, &ov, user);
                bad |= ov > overlap;
            }
        }
        memset(covered + p[i].start, 1, p[i].end - p[i].start);
    }
    for (size_t i = 0; i < len; i++)
        bad |= !is_space(text[i]) && !covered[i];
    if (bad)
        fprintf(stderr, "  %s: max %zu overlap %zu: contract broken (%zu passages)\n", what, max,
                overlap, n);
    CHECK(!bad);
    free(covered);
    free(p);
}

static void test_toy(void)
{
    const char *t = "First sentence here. Second one follows!  Third? \"Quoted.\" Next\n\n"
                    "New paragraph, 3.14 stays whole. 北京欢迎你。东京。 Last words";
    for (size_t max = 1; max <= 40; max++)
        for (size_t ov = 0; ov < max && ov <= 6; ov++) {
            check(t, strlen(t), max, ov, count_words, NULL, "words");
            check(t, strlen(t), max, ov, count_quarters, NULL, "quarters");
        }

    /* sentences kept whole when they fit, split where they end */
    struct sbert_passage *p;
    size_t n;
    CHECK(sbert_passages_split(t, strlen(t), 6, 0, count_words, NULL, &p, &n) == 0);
    CHECK(n >= 3 && strncmp(t + p[0].start, "First sentence here. Second one follows!",
                            p[0].end - p[0].start) == 0);
    free(p);

    /* a paragraph's end ends a half-full passage */
    const char *para = "one two three four five six.\n\nseven eight nine.";
    CHECK(sbert_passages_split(para, strlen(para), 10, 0, count_words, NULL, &p, &n) == 0);
    CHECK(n == 2 && p[0].end == strlen("one two three four five six."));
    free(p);

    /* nothing to split */
    CHECK(sbert_passages_split(" \n\t ", 4, 5, 0, count_words, NULL, &p, &n) == 0 && n == 0 &&
          p == NULL);
    CHECK(sbert_passages_split("x", 1, 5, 5, count_words, NULL, &p, &n) == SBERT_TEXT_EINVAL);
    CHECK(sbert_passages_split("x", 1, 0, 0, count_words, NULL, &p, &n) == SBERT_TEXT_EINVAL);

    /* one enormous word (1 MiB) is cut into pieces */
    size_t big = 1 << 20;
    char *w = malloc(big);
    memset(w, 'a', big);
    check(w, big, 254, 32, count_quarters, NULL, "big word");
    free(w);
}

static int stop_counter(const char *s, size_t n, size_t max, size_t *tokens, void *user)
{
    (void)s, (void)n, (void)max, (void)tokens, (void)user;
    return 7;
}

static void test_counter_error(void)
{
    struct sbert_passage *p;
    size_t n;
    CHECK(sbert_passages_split("a b. c d.", 9, 4, 0, stop_counter, NULL, &p, &n) == 7 && !p);
}

/* The model's tokenizer on the 50 longest SciFact abstracts and on them joined into one long
 * document (every abstract of 1,500+ bytes, ~400 of them): every passage fits max_seq_length with
 * [CLS] and [SEP]. */
static void test_model(const char *model_dir, const char *corpus)
{
    char err[512];
    sbert_model *m;
    if (sbert_model_load(model_dir, NULL, &m, err, sizeof err)) {
        fprintf(stderr, "  cannot load %s: %s\n", model_dir, err);
        failures++;
        return;
    }
    struct model_ctx c = {.m = m};
    size_t max = (size_t)sbert_model_info(m)->max_seq_length - 2;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "gzip -dc '%s'", corpus);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    if (!f) {
        sbert_model_free(m);
        return;
    }
    size_t cap = 1 << 24, all = 0;
    char *joined = malloc(cap), *line = NULL;
    size_t lcap = 0;
    ssize_t ln;
    int docs = 0;
    while ((ln = getline(&line, &lcap, f)) > 0) {
        char *t = strstr(line, "\"text\": \"");
        if (!t) continue;
        t += 9;
        char *e = strstr(t, "\"");
        while (e && e[-1] == '\\')
            e = strstr(e + 1, "\"");
        if (!e || (size_t)(e - t) < 1500) continue;
        check(t, (size_t)(e - t), max, 32, count_model, &c, "scifact");
        if (all + (size_t)(e - t) + 2 < cap) {
            memcpy(joined + all, t, (size_t)(e - t));
            all += (size_t)(e - t);
            memcpy(joined + all, "\n\n", 2);
            all += 2;
        }
        docs++;
    }
    CHECK(docs > 10);
    check(joined, all, max, 64, count_model, &c, "scifact joined");
    free(line);
    free(joined);
    CHECK(pclose(f) == 0);
    sbert_model_free(m);
}

int main(int argc, char **argv)
{
    test_toy();
    test_counter_error();
    if (argc > 2) test_model(argv[1], argv[2]);
    if (failures) {
        fprintf(stderr, "passage_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("passage_test: all checks passed\n");
    return 0;
}
