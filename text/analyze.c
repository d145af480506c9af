/* analyze.c — words, folding, stop words and stemming (sbert_text.h). */
#include "sbert_text.h"

#include <libstemmer.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct sbert_analyzer {
    struct sb_stemmer *stemmer; /* NULL: language "none" */
    int stop_en;
    char language[32];
    utf8proc_int32_t *buf; /* one folded word: code points, then its UTF-8 in place */
    size_t cap;            /* code points buf holds */
};

const char *sbert_text_strerror(int err)
{
    switch (err) {
    case SBERT_TEXT_OK:
        return "success";
    case SBERT_TEXT_ENOMEM:
        return "out of memory";
    case SBERT_TEXT_ELANGUAGE:
        return "no stemmer for that language";
    case SBERT_TEXT_EINVAL:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

const char **sbert_text_languages(void)
{
    return sb_stemmer_list();
}

/* Snowball's canonical name for an ISO 639 code ("en" -> "english"): sb_stemmer_list names only
 * canonical algorithms, and a store records the canonical name, so "en" and "english" are one
 * language. A code of an algorithm this libstemmer lacks still fails in sbert_analyzer_new. */
static const char *canonical(const char *lang)
{
    static const char *const alias[][2] = {
        {"ar", "arabic"},     {"ara", "arabic"},     {"hy", "armenian"},   {"hye", "armenian"},
        {"eu", "basque"},     {"eus", "basque"},     {"ca", "catalan"},    {"cat", "catalan"},
        {"da", "danish"},     {"dan", "danish"},     {"nl", "dutch"},      {"nld", "dutch"},
        {"en", "english"},    {"eng", "english"},    {"fi", "finnish"},    {"fin", "finnish"},
        {"fr", "french"},     {"fra", "french"},     {"de", "german"},     {"deu", "german"},
        {"el", "greek"},      {"ell", "greek"},      {"hi", "hindi"},      {"hin", "hindi"},
        {"hu", "hungarian"},  {"hun", "hungarian"},  {"id", "indonesian"}, {"ind", "indonesian"},
        {"ga", "irish"},      {"gle", "irish"},      {"it", "italian"},    {"ita", "italian"},
        {"lt", "lithuanian"}, {"lit", "lithuanian"}, {"ne", "nepali"},     {"nep", "nepali"},
        {"no", "norwegian"},  {"nor", "norwegian"},  {"pt", "portuguese"}, {"por", "portuguese"},
        {"ro", "romanian"},   {"ron", "romanian"},   {"ru", "russian"},    {"rus", "russian"},
        {"sr", "serbian"},    {"srp", "serbian"},    {"es", "spanish"},    {"spa", "spanish"},
        {"sv", "swedish"},    {"swe", "swedish"},    {"ta", "tamil"},      {"tam", "tamil"},
        {"tr", "turkish"},    {"tur", "turkish"},    {"yi", "yiddish"},    {"yid", "yiddish"},
    };
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcmp(lang, alias[i][0]) == 0) return alias[i][1];
    return lang;
}

int sbert_analyzer_new(const char *language, sbert_analyzer **out)
{
    *out = NULL;
    const char *lang = language && *language ? canonical(language) : "english";
    if (strlen(lang) >= sizeof((sbert_analyzer *)0)->language) return SBERT_TEXT_ELANGUAGE;
    sbert_analyzer *a = calloc(1, sizeof *a);
    if (!a) return SBERT_TEXT_ENOMEM;
    if (strcmp(lang, "none") != 0) {
        int known = 0;
        for (const char **l = sb_stemmer_list(); *l; l++)
            known |= strcmp(*l, lang) == 0;
        if (!known) {
            free(a);
            return SBERT_TEXT_ELANGUAGE;
        }
        a->stemmer = sb_stemmer_new(lang, "UTF_8");
        if (!a->stemmer) { /* the name is known, so this is libstemmer's out of memory */
            free(a);
            return SBERT_TEXT_ENOMEM;
        }
        a->stop_en = strcmp(lang, "english") == 0;
    }
    strcpy(a->language, lang);
    *out = a;
    return 0;
}

void sbert_analyzer_free(sbert_analyzer *a)
{
    if (!a) return;
    sb_stemmer_delete(a->stemmer);
    free(a->buf);
    free(a);
}

const char *sbert_analyzer_language(const sbert_analyzer *a)
{
    return a->language;
}

static int is_word_char(utf8proc_int32_t cp)
{
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
    case UTF8PROC_CATEGORY_PC:
        return 1;
    default:
        return 0;
    }
}

#define FOLD (UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD)

/* Folds word[0..len) into a->buf as UTF-8; returns its length, or -1 when memory ran out. Only the
 * first bytes that can make SBERT_TEXT_MAX_TERM folded bytes are looked at. */
static long fold(sbert_analyzer *a, const unsigned char *word, size_t len)
{
    /* Folding can grow a character (U+0130 -> 2 code points, "ß" -> "ss") but never beyond 3x in
     * code points; a word cut to 4 * MAX bytes before folding still yields MAX folded bytes. */
    if (len > 4 * SBERT_TEXT_MAX_TERM) {
        len = 4 * SBERT_TEXT_MAX_TERM;
        while (len > 0 && (word[len] & 0xC0) == 0x80)
            len--;
    }
    for (;;) {
        utf8proc_ssize_t n =
            utf8proc_decompose(word, (utf8proc_ssize_t)len, a->buf, (utf8proc_ssize_t)a->cap, FOLD);
        if (n < 0)
            return -1; /* invalid UTF-8 cannot occur: words are made of decoded code points */
        if ((size_t)n <= a->cap) {
            utf8proc_ssize_t m = utf8proc_reencode(a->buf, n, FOLD);
            return m < 0 ? -1 : (long)m;
        }
        size_t cap = (size_t)n + 16;
        utf8proc_int32_t *nb = realloc(a->buf, cap * sizeof *nb);
        if (!nb) return -1;
        a->buf = nb;
        a->cap = cap;
    }
}

/* The term of one word: folded, cut, stop-checked, stemmed, handed to fn. */
static int emit(sbert_analyzer *a, const unsigned char *word, size_t len, uint32_t pos,
                sbert_term_fn fn, void *user)
{
    long m = fold(a, word, len);
    if (m < 0) return SBERT_TEXT_ENOMEM;
    const unsigned char *t = (const unsigned char *)a->buf;
    size_t n = (size_t)m;
    if (n > SBERT_TEXT_MAX_TERM) {
        n = SBERT_TEXT_MAX_TERM;
        while (n > 0 && (t[n] & 0xC0) == 0x80)
            n--;
    }
    if (a->stop_en && sbert_text_is_stopword_en((const char *)t, n)) return 0;
    if (a->stemmer) {
        const sb_symbol *s = sb_stemmer_stem(a->stemmer, t, (int)n);
        if (!s) return SBERT_TEXT_ENOMEM;
        t = s;
        n = (size_t)sb_stemmer_length(a->stemmer);
    }
    return n ? fn((const char *)t, n, pos, user) : 0;
}

int sbert_analyzer_run(sbert_analyzer *a, const char *text, size_t len, sbert_term_fn fn,
                       void *user)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, start = 0, chars = 0;
    uint32_t pos = 0;
    int in_word = 0;
    while (i <= len) {
        utf8proc_int32_t cp = -1;
        utf8proc_ssize_t step = 1;
        if (i < len) {
            step = utf8proc_iterate(s + i, (utf8proc_ssize_t)(len - i), &cp);
            if (step < 0) {
                cp = -1; /* an invalid byte separates words */
                step = 1;
            }
        }
        int w = i < len && cp >= 0 && is_word_char(cp);
        if (w && !in_word) {
            in_word = 1;
            start = i;
            chars = 0;
        }
        if (w) chars++;
        if (!w && in_word) {
            in_word = 0;
            if (chars >= 2) {
                int rc = emit(a, s + start, i - start, pos, fn, user);
                if (rc) return rc;
                pos++;
            }
        }
        i += (size_t)step;
    }
    return 0;
}
