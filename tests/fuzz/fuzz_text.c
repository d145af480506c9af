/*
 * fuzz_text.c — libFuzzer target for the keyword analyzer (text/, sbert_text.h). Byte 0 picks the
 * language (english, none, russian, german), the rest is the text: any bytes.
 *
 * Invariants: every term is non-empty valid UTF-8 of bounded length (SBERT_TEXT_MAX_TERM before
 * stemming; a stemmer may change a word's length a little, never double it), positions strictly
 * increase, and a second run over the same text gives the same terms (the analyzer keeps no state
 * from one run to the next). The same text also goes through the passage splitter with a toy
 * counter (one token per 3 bytes of a word, so long words are cut): passages are in order, inside
 * the text, never start or end with a space, and report the tokens the counter counts for them.
 */
#include "sbert_text.h"
#include "sbert_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

struct seen {
    uint64_t hash;
    size_t n;
    int64_t last_pos;
};

static int check_term(const char *t, size_t len, uint32_t pos, void *user)
{
    struct seen *s = user;
    FUZZ_ASSERT(len > 0 && len <= 2 * SBERT_TEXT_MAX_TERM);
    FUZZ_ASSERT(sbert_util_utf8_valid(t, len));
    FUZZ_ASSERT((int64_t)pos > s->last_pos);
    s->last_pos = pos;
    for (size_t i = 0; i < len; i++)
        s->hash = (s->hash ^ (unsigned char)t[i]) * 1099511628211ULL; /* FNV-1a */
    s->hash = (s->hash ^ pos) * 1099511628211ULL;
    s->n++;
    return 0;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int count_thirds(const char *s, size_t n, size_t max, size_t *tokens, void *user)
{
    (void)max, (void)user;
    size_t t = 0, run = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && !is_space((unsigned char)s[i])) {
            run++;
            continue;
        }
        t += (run + 2) / 3;
        run = 0;
    }
    *tokens = t;
    return 0;
}

static void check_passages(const char *text, size_t len, size_t max, size_t overlap)
{
    struct sbert_passage *p;
    size_t n;
    FUZZ_ASSERT(sbert_passages_split(text, len, max, overlap, count_thirds, NULL, &p, &n) == 0);
    for (size_t i = 0; i < n; i++) {
        FUZZ_ASSERT(p[i].start < p[i].end && p[i].end <= len);
        FUZZ_ASSERT(!is_space((unsigned char)text[p[i].start]));
        FUZZ_ASSERT(!is_space((unsigned char)text[p[i].end - 1]));
        size_t t;
        count_thirds(text + p[i].start, p[i].end - p[i].start, max, &t, NULL);
        FUZZ_ASSERT(t == p[i].tokens);
        FUZZ_ASSERT(i == 0 || p[i].start > p[i - 1].start);
    }
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const langs[] = {"english", "none", "russian", "german"};
    if (size < 1) return 0;
    sbert_analyzer *a = NULL;
    FUZZ_ASSERT(sbert_analyzer_new(langs[data[0] & 3], &a) == 0);
    const char *text = (const char *)data + 1;
    struct seen one = {14695981039346656037ULL, 0, -1}, two = one;
    FUZZ_ASSERT(sbert_analyzer_run(a, text, size - 1, check_term, &one) == 0);
    FUZZ_ASSERT(sbert_analyzer_run(a, text, size - 1, check_term, &two) == 0);
    FUZZ_ASSERT(one.n == two.n && one.hash == two.hash);
    sbert_analyzer_free(a);
    size_t max = 1 + (data[0] >> 2); /* 1..64 */
    check_passages(text, size - 1, max, (data[0] >> 4) % max);
    return 0;
}
