/*
 * unit_test.c — the tokenizer's contract on a small vocabulary written to a temporary directory:
 * [CLS]/[SEP] framing, WordPiece, [UNK] rules, truncation by cap and by max_seq_length, special
 * tokens in the text, invalid UTF-8 refused without side effects, bad arguments, load errors,
 * special_tokens_map.json forms, and concurrent use of one tokenizer.
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_fail;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            putchar('\n');                                                                         \
            g_fail++;                                                                              \
        }                                                                                          \
    } while (0)

/* Vocabulary ids: the line numbers below. */
enum {
    PAD,
    UNK,
    CLS,
    SEP,
    MASK,
    A,
    B,
    HELLO,
    WORLD,
    S_S,
    UN,
    S_AFF,
    S_ABLE,
    COMMA,
    E,
    E_ACUTE,
    S_A,
    UNK2
};
static const char *const VOCAB[] = {"[PAD]",  "[UNK]", "[CLS]", "[SEP]",    "[MASK]", "a",
                                    "b",      "hello", "world", "##s",      "un",     "##aff",
                                    "##able", ",",     "e",     "\xc3\xa9", "##a",    "<unk>"};
#define NV (sizeof VOCAB / sizeof VOCAB[0])

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("FAIL: cannot write %s\n", path);
        exit(1);
    }
    fputs(content, f);
    fclose(f);
}

static void write_vocab(const char *dir, size_t skip)
{
    char buf[1024] = "";
    for (size_t i = 0; i < NV; i++) {
        strcat(buf, i == skip ? "[skipped]" : VOCAB[i]);
        strcat(buf, "\n");
    }
    write_file(dir, "vocab.txt", buf);
}

static sbert_tokenizer *load(const char *dir, int lower, int strip, int max)
{
    struct sbert_tokenizer_config cfg = {.do_lower_case = lower,
                                         .strip_accents = strip,
                                         .tokenize_chinese_chars = 1,
                                         .max_seq_length = max};
    sbert_tokenizer *t = NULL;
    char err[256];
    int rc = sbert_tokenizer_load(dir, &cfg, &t, err, sizeof err);
    if (rc) {
        printf("FAIL: load %s: %s\n", dir, err);
        exit(1);
    }
    return t;
}

/* Encodes text and compares with the expected ids (a -1 terminated list). */
static void expect(const sbert_tokenizer *t, const char *text, size_t cap, int want_trunc, ...)
{
    int32_t want[64];
    size_t nw = 0;
    va_list ap;
    va_start(ap, want_trunc);
    for (int v; (v = va_arg(ap, int)) != -1;)
        want[nw++] = v;
    va_end(ap);
    int32_t got[64];
    size_t n = 0;
    int tr = -1;
    int rc = sbert_tokenizer_encode(t, text, strlen(text), got, cap, &n, &tr);
    int ok = rc == 0 && n == nw && memcmp(got, want, nw * sizeof *got) == 0 && tr == want_trunc;
    CHECK(ok, "\"%s\" cap %zu: rc %d, truncated %d (want %d), %zu ids (want %zu)", text, cap, rc,
          tr, want_trunc, n, nw);
    if (!ok && rc == 0) {
        printf("  got:");
        for (size_t i = 0; i < n; i++)
            printf(" %d", got[i]);
        printf("\n  want:");
        for (size_t i = 0; i < nw; i++)
            printf(" %d", want[i]);
        putchar('\n');
    }
}

static void test_basics(const sbert_tokenizer *t)
{
    CHECK(sbert_tokenizer_vocab_size(t) == NV, "vocab size %zu", sbert_tokenizer_vocab_size(t));
    expect(t, "", 64, 0, CLS, SEP, -1);
    expect(t, " \t\r\n\xe3\x80\x80\xc2\x85\x1c", 64, 0, CLS, SEP, -1);
    expect(t, "hello world", 64, 0, CLS, HELLO, WORLD, SEP, -1);
    expect(t, "  HELLO,World  ", 64, 0, CLS, HELLO, COMMA, WORLD, SEP, -1);
    expect(t, "unaffable", 64, 0, CLS, UN, S_AFF, S_ABLE, SEP, -1);
    expect(t, "unaffablex hello", 64, 0, CLS, UNK, HELLO, SEP, -1); /* no full match: one [UNK] */
    expect(t, "worlds", 64, 0, CLS, WORLD, S_S, SEP, -1);
    expect(t,
           "h\x00"
           "ello",
           64, 0, CLS, UNK, SEP, -1);                               /* strlen stops at the NUL */
    expect(t, "caf\xc3\xa9 \xc3\x89", 64, 0, CLS, UNK, E, SEP, -1); /* accents stripped */
    /* Special tokens are matched in the raw text, case-sensitively. */
    expect(t, "hello[SEP]world [MASK]", 64, 0, CLS, HELLO, SEP, WORLD, MASK, SEP, -1);
    expect(t, "[sep]", 64, 0, CLS, UNK, UNK, UNK, SEP, -1);

    /* 100 characters are one word's limit; 101 make one [UNK]. */
    char word[128];
    memset(word, 'a', 101);
    word[100] = 0;
    int32_t ids[128];
    size_t n;
    int tr;
    int rc = sbert_tokenizer_encode(t, word, 100, ids, 128, &n, &tr);
    CHECK(rc == 0 && n == 102 && ids[1] == A && ids[2] == S_A && ids[100] == S_A && ids[101] == SEP,
          "100 x 'a': rc %d n %zu", rc, n);
    memset(word, 'a', 101);
    word[101] = 0;
    expect(t, word, 128, 0, CLS, UNK, SEP, -1);

    /* The text need not be NUL-terminated: len decides. */
    rc = sbert_tokenizer_encode(t, "hello worldXYZ", 11, ids, 8, &n, &tr);
    CHECK(rc == 0 && n == 4 && ids[1] == HELLO && ids[2] == WORLD && ids[3] == SEP,
          "len shorter than the string");
}

static void test_truncation(const char *dir)
{
    sbert_tokenizer *t = load(dir, 1, -1, 256);
    /* cap smaller than needed: [CLS] + what fits + [SEP], flagged. */
    expect(t, "hello world hello", 3, 1, CLS, HELLO, SEP, -1);
    expect(t, "hello world hello", 4, 1, CLS, HELLO, WORLD, SEP, -1);
    expect(t, "hello world hello", 5, 0, CLS, HELLO, WORLD, HELLO, SEP, -1);
    expect(t, "hello world hello", 2, 1, CLS, SEP, -1);
    /* Sub-word pieces are cut like any token. */
    expect(t, "unaffable", 4, 1, CLS, UN, S_AFF, SEP, -1);
    sbert_tokenizer_free(t);

    t = load(dir, 1, -1, 4); /* max_seq_length counts [CLS] and [SEP] */
    expect(t, "hello world hello", 64, 1, CLS, HELLO, WORLD, SEP, -1);
    expect(t, "hello world", 64, 0, CLS, HELLO, WORLD, SEP, -1);
    expect(t, "hello, world", 3, 1, CLS, HELLO, SEP, -1);
    sbert_tokenizer_free(t);
}

static void test_config(const char *dir)
{
    sbert_tokenizer *t = load(dir, 0, -1, 256); /* cased: no lowercasing, no accent stripping */
    expect(t, "Hello hello", 64, 0, CLS, UNK, HELLO, SEP, -1);
    expect(t, "\xc3\xa9", 64, 0, CLS, E_ACUTE, SEP, -1);
    sbert_tokenizer_free(t);
    t = load(dir, 1, 0, 256); /* lowercase, accents kept */
    expect(t, "\xc3\x89", 64, 0, CLS, E_ACUTE, SEP, -1);
    expect(t, "e\xcc\x81", 64, 0, CLS, UNK, SEP, -1); /* no NFD when accents are kept */
    sbert_tokenizer_free(t);
    t = load(dir, 0, 1, 256); /* cased but stripping */
    expect(t, "\xc3\xa9", 64, 0, CLS, E, SEP, -1);
    sbert_tokenizer_free(t);
}

static void test_utf8(const sbert_tokenizer *t)
{
    static const char *const bad[] = {
        "\xc0\xaf",             /* overlong '/' */
        "\xc1\xbf",             /* overlong */
        "\xe0\x80\xaf",         /* overlong */
        "\xe0\x9f\xbf",         /* overlong U+07FF */
        "\xf0\x80\x80\xaf",     /* overlong */
        "\xf0\x8f\xbf\xbf",     /* overlong U+FFFF */
        "\xed\xa0\x80",         /* surrogate U+D800 */
        "\xed\xbf\xbf",         /* surrogate U+DFFF */
        "\xf4\x90\x80\x80",     /* U+110000 */
        "\xf5\x80\x80\x80",     /* beyond */
        "\xf8\x88\x80\x80\x80", /* 5-byte form */
        "\xff",
        "\xfe",
        "\x80", /* lone continuation */
        "\xbf",
        "\xc3",         /* cut */
        "\xe2\x82",     /* cut */
        "\xf0\x9f\x98", /* cut */
        "hello \xc3",   /* cut at the end */
        "hello\xc3 world",
        "\xe2\x28\xa1",            /* bad continuation */
        "world   \xed\xa0\x80   ", /* inside what strip() would remove */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t ids[8] = {-7, -7, -7, -7, -7, -7, -7, -7};
        size_t n = 12345;
        int tr = -9;
        int rc = sbert_tokenizer_encode(t, bad[i], strlen(bad[i]), ids, 8, &n, &tr);
        int untouched = n == 12345 && tr == -9;
        for (int k = 0; k < 8; k++)
            untouched = untouched && ids[k] == -7;
        CHECK(rc == SBERT_EUTF8 && untouched, "invalid UTF-8 #%zu: rc %d, outputs %s", i, rc,
              untouched ? "untouched" : "written");
    }
    static const char *const good[] = {"\xc2\x80",         "\xdf\xbf",        "\xe0\xa0\x80",
                                       "\xed\x9f\xbf",     "\xee\x80\x80",    "\xef\xbf\xbf",
                                       "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int32_t ids[8];
        size_t n;
        int rc = sbert_tokenizer_encode(t, good[i], strlen(good[i]), ids, 8, &n, NULL);
        CHECK(rc == 0, "valid UTF-8 #%zu refused: %d", i, rc);
    }
}

static void test_args(const sbert_tokenizer *t)
{
    int32_t ids[4];
    size_t n;
    CHECK(sbert_tokenizer_encode(t, "a", 1, ids, 1, &n, NULL) == SBERT_EINVAL, "cap 1");
    CHECK(sbert_tokenizer_encode(t, "a", 1, NULL, 4, &n, NULL) == SBERT_EINVAL, "ids NULL");
    CHECK(sbert_tokenizer_encode(t, "a", 1, ids, 4, NULL, NULL) == SBERT_EINVAL, "n_ids NULL");
    CHECK(sbert_tokenizer_encode(NULL, "a", 1, ids, 4, &n, NULL) == SBERT_EINVAL, "t NULL");
    CHECK(sbert_tokenizer_encode(t, NULL, 1, ids, 4, &n, NULL) == SBERT_EINVAL, "text NULL");
    CHECK(sbert_tokenizer_encode(t, NULL, 0, ids, 4, &n, NULL) == 0 && n == 2, "NULL, 0: empty");
}

static void test_load_errors(const char *root)
{
    struct sbert_tokenizer_config cfg = {1, -1, 1, 256};
    sbert_tokenizer *t = (sbert_tokenizer *)1;
    char err[256] = "";
    char dir[512];
    snprintf(dir, sizeof dir, "%s/missing", root);
    int rc = sbert_tokenizer_load(dir, &cfg, &t, err, sizeof err);
    CHECK(rc == SBERT_EIO && t == NULL && strstr(err, "vocab.txt"), "missing dir: %d \"%s\"", rc,
          err);

    snprintf(dir, sizeof dir, "%s/nounk", root);
    mkdir(dir, 0700);
    write_vocab(dir, UNK);
    rc = sbert_tokenizer_load(dir, &cfg, &t, err, sizeof err);
    CHECK(rc == SBERT_EFORMAT && t == NULL && strstr(err, "[UNK]"), "no [UNK]: %d \"%s\"", rc, err);

    /* special_tokens_map.json names the tokens, in either of its two forms. */
    write_file(
        dir, "special_tokens_map.json",
        "{\"unk_token\": {\"content\": \"<unk>\", \"lstrip\": false}, \"cls_token\": \"[CLS]\"}");
    rc = sbert_tokenizer_load(dir, &cfg, &t, err, sizeof err);
    CHECK(rc == 0, "<unk> from special_tokens_map.json: %d \"%s\"", rc, err);
    if (rc == 0) {
        expect(t, "zzz", 8, 0, CLS, UNK2, SEP, -1);
        sbert_tokenizer_free(t);
    }
    write_file(dir, "special_tokens_map.json", "{not json");
    rc = sbert_tokenizer_load(dir, &cfg, &t, err, sizeof err);
    CHECK(rc == SBERT_EFORMAT && t == NULL, "malformed special_tokens_map.json: %d", rc);

    cfg.max_seq_length = 1;
    rc = sbert_tokenizer_load(root, &cfg, &t, err, sizeof err);
    CHECK(rc == SBERT_EINVAL && t == NULL, "max_seq_length 1: %d", rc);
    sbert_tokenizer_free(NULL);
}

struct job {
    const sbert_tokenizer *t;
    int bad;
};

static const char *const MT_TEXTS[] = {"hello world", "unaffable worlds, hello", "caf\xc3\xa9",
                                       "hello[SEP]world", "a a a a a a a a a a a a"};
#define N_MT (sizeof MT_TEXTS / sizeof MT_TEXTS[0])
static int32_t mt_ref[N_MT][64];
static size_t mt_n[N_MT];

static void *worker(void *arg)
{
    struct job *j = arg;
    for (int it = 0; it < 20000; it++) {
        size_t k = (size_t)it % N_MT;
        int32_t ids[64];
        size_t n;
        if (sbert_tokenizer_encode(j->t, MT_TEXTS[k], strlen(MT_TEXTS[k]), ids, 64, &n, NULL) ||
            n != mt_n[k] || memcmp(ids, mt_ref[k], n * sizeof *ids))
            j->bad++;
    }
    return NULL;
}

static void test_threads(const sbert_tokenizer *t)
{
    for (size_t k = 0; k < N_MT; k++)
        sbert_tokenizer_encode(t, MT_TEXTS[k], strlen(MT_TEXTS[k]), mt_ref[k], 64, &mt_n[k], NULL);
    pthread_t th[4];
    struct job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i].t = t;
        jobs[i].bad = 0;
        CHECK(pthread_create(&th[i], NULL, worker, &jobs[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].bad == 0, "thread %d: %d results differ from the single-threaded ones", i,
              jobs[i].bad);
    }
}

int main(void)
{
    char root[] = "/tmp/sbert-tok-XXXXXX";
    if (!mkdtemp(root)) {
        printf("FAIL: mkdtemp\n");
        return 1;
    }
    write_vocab(root, (size_t)-1);
    sbert_tokenizer *t = load(root, 1, -1, 256);
    test_basics(t);
    test_utf8(t);
    test_args(t);
    test_threads(t);
    sbert_tokenizer_free(t);
    test_truncation(root);
    test_config(root);
    test_load_errors(root);

    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("note: could not remove %s\n", root);
    if (g_fail) {
        printf("%d checks failed\n", g_fail);
        return 1;
    }
    printf("all tokenizer unit checks passed\n");
    return 0;
}
