/* passage.c — a long document as passages that fit the model (sbert_text.h). */
#include "sbert_text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* A run of text the packer never cuts: a sentence, or a piece of one too long to fit. */
struct unit {
    size_t start, end, tokens;
    int para_end; /* the last unit of a paragraph */
};

struct units {
    struct unit *v;
    size_t n, cap;
};

static int push(struct units *u, size_t start, size_t end, size_t tokens, int para_end)
{
    if (u->n == u->cap) {
        size_t cap = u->cap ? 2 * u->cap : 64;
        struct unit *v = realloc(u->v, cap * sizeof *v);
        if (!v) return SBERT_TEXT_ENOMEM;
        u->v = v;
        u->cap = cap;
    }
    u->v[u->n++] = (struct unit){start, end, tokens, para_end};
    return 0;
}

/* BERT's white space (BasicTokenizer._is_whitespace): where its pre-tokenizer splits words. */
static int is_ws(utf8proc_int32_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
           utf8proc_category(c) == UTF8PROC_CATEGORY_ZS;
}

/* The code point at s[i] (U+FFFD for a byte that starts none) and its length. */
static utf8proc_int32_t cp_at(const char *s, size_t len, size_t i, size_t *step)
{
    utf8proc_int32_t c;
    utf8proc_ssize_t n =
        utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &c);
    if (n <= 0) {
        *step = 1;
        return 0xFFFD;
    }
    *step = (size_t)n;
    return c;
}

static int ends_sentence(utf8proc_int32_t c, int *needs_space)
{
    *needs_space = 1;
    switch (c) {
    case '.':
    case '!':
    case '?':
    case 0x0589: /* Armenian full stop */
    case 0x06D4: /* Arabic full stop */
    case 0x061F: /* Arabic question mark */
    case 0x0964: /* Devanagari danda */
    case 0x0965: /* double danda */
        return 1;
    case 0x3002: /* ideographic full stop */
    case 0xFF01: /* fullwidth ! */
    case 0xFF1F: /* fullwidth ? */
    case 0xFF0E: /* fullwidth . */
        *needs_space = 0;
        return 1;
    default:
        return 0;
    }
}

static int is_closer(utf8proc_int32_t c)
{
    return c == '"' || c == '\'' || c == ')' || c == ']' || c == 0x00BB || c == 0x2019 ||
           c == 0x201D || c == 0x300D || c == 0x300F || c == 0xFF09;
}

struct ctx {
    const char *text;
    size_t len, max;
    sbert_count_fn count;
    void *user;
    struct units u;
};

/* end moved back over white space, not below start */
static size_t trim_end(const struct ctx *c, size_t start, size_t end)
{
    size_t step;
    while (end > start) {
        size_t k = end - 1;
        while (k > start && ((unsigned char)c->text[k] & 0xC0) == 0x80)
            k--;
        if (!is_ws(cp_at(c->text, c->len, k, &step))) break;
        end = k;
    }
    return end;
}

/* A word longer than max tokens: pieces of max code points, each at most max tokens (a token
 * covers at least one code point). */
static int add_long_word(struct ctx *c, size_t start, size_t end, int para_end)
{
    size_t i = start;
    while (i < end) {
        size_t j = i, chars = 0, step;
        while (j < end && chars < c->max) {
            cp_at(c->text, c->len, j, &step);
            j += step;
            chars++;
        }
        size_t tokens;
        int rc = c->count(c->text + i, j - i, c->max, &tokens, c->user);
        if (rc) return rc;
        if ((rc = push(&c->u, i, j, tokens > c->max ? c->max : tokens, para_end && j == end)))
            return rc;
        i = j;
    }
    return 0;
}

/* A sentence longer than max tokens: cut between words, each piece as many words as fit. Words
 * are counted one at a time; BERT's pre-tokenizer splits at white space, so the tokens of words
 * apart add up to the tokens of the words together. */
static int add_long_sentence(struct ctx *c, size_t start, size_t end, int para_end)
{
    size_t piece = start, piece_tokens = 0, i = start, step;
    while (i < end) {
        while (i < end && is_ws(cp_at(c->text, c->len, i, &step)))
            i += step;
        if (i >= end) break;
        size_t w = i;
        while (i < end && !is_ws(cp_at(c->text, c->len, i, &step)))
            i += step;
        size_t tokens;
        int rc = c->count(c->text + w, i - w, c->max, &tokens, c->user);
        if (rc) return rc;
        if (tokens > c->max) {
            if (piece_tokens && (rc = push(&c->u, piece, trim_end(c, piece, w), piece_tokens, 0)))
                return rc;
            if ((rc = add_long_word(c, w, i, para_end && i >= end))) return rc;
            piece = i;
            piece_tokens = 0;
            continue;
        }
        if (piece_tokens + tokens > c->max) {
            if ((rc = push(&c->u, piece, trim_end(c, piece, w), piece_tokens, 0))) return rc;
            piece = w;
            piece_tokens = 0;
        }
        if (!piece_tokens) piece = w;
        piece_tokens += tokens;
    }
    return piece_tokens ? push(&c->u, piece, i, piece_tokens, para_end) : 0;
}

/* One sentence text[start..end), trimmed, as one unit or several. */
static int add_sentence(struct ctx *c, size_t start, size_t end, int para_end)
{
    size_t step;
    while (start < end && is_ws(cp_at(c->text, c->len, start, &step)))
        start += step;
    end = trim_end(c, start, end);
    if (start == end) {
        if (para_end && c->u.n) c->u.v[c->u.n - 1].para_end = 1;
        return 0;
    }
    size_t tokens;
    int rc = c->count(c->text + start, end - start, c->max, &tokens, c->user);
    if (rc) return rc;
    if (tokens <= c->max) return push(&c->u, start, end, tokens, para_end);
    return add_long_sentence(c, start, end, para_end);
}

/* Finds sentences and paragraph ends and adds them in order. */
static int segment(struct ctx *c)
{
    size_t i = 0, sent = 0, step;
    while (i < c->len) {
        utf8proc_int32_t ch = cp_at(c->text, c->len, i, &step);
        size_t next = i + step;
        int needs_space, rc;
        if (ch == '\n') {
            /* a blank line (only spaces, tabs or \r on it) ends a paragraph */
            size_t j = next;
            while (j < c->len && (c->text[j] == ' ' || c->text[j] == '\t' || c->text[j] == '\r'))
                j++;
            if (j < c->len && c->text[j] == '\n') {
                if ((rc = add_sentence(c, sent, i, 1))) return rc;
                sent = i = j + 1;
                continue;
            }
        } else if (ends_sentence(ch, &needs_space)) {
            size_t j = next;
            while (j < c->len) {
                size_t s2;
                utf8proc_int32_t cl = cp_at(c->text, c->len, j, &s2);
                if (!is_closer(cl) && !ends_sentence(cl, &(int){0})) break;
                j += s2;
            }
            size_t s3 = 0;
            if (!needs_space || j >= c->len || is_ws(cp_at(c->text, c->len, j, &s3))) {
                if ((rc = add_sentence(c, sent, j, 0))) return rc;
                sent = i = j;
                continue;
            }
        }
        i = next;
    }
    return add_sentence(c, sent, c->len, 1);
}

/* Tokens of units a..b-1 counted apart (an estimate the whole-passage count then checks). */
static size_t sum(const struct units *u, size_t a, size_t b)
{
    size_t s = 0;
    for (size_t i = a; i < b; i++)
        s += u->v[i].tokens;
    return s;
}

int sbert_passages_split(const char *text, size_t len, size_t max_tokens, size_t overlap_tokens,
                         sbert_count_fn count, void *user, struct sbert_passage **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (max_tokens == 0 || overlap_tokens >= max_tokens || !count) return SBERT_TEXT_EINVAL;
    struct ctx c = {text, len, max_tokens, count, user, {0}};
    int rc = segment(&c);
    struct sbert_passage *v = NULL;
    size_t nv = 0, cap = 0, a = 0, fresh = 0; /* fresh: the first unit no passage holds yet */
    while (!rc && a < c.u.n) {
        /* as many units as fit, ending early at a paragraph's end once half full (and once it
         * holds a unit the passage before did not) */
        size_t b = a + 1, tokens = c.u.v[a].tokens;
        while (b < c.u.n && tokens + c.u.v[b].tokens <= max_tokens &&
               !(b > fresh && c.u.v[b - 1].para_end && 2 * tokens >= max_tokens)) {
            tokens += c.u.v[b].tokens;
            b++;
        }
        /* counted whole; units apart can undercount where a cut fell inside a word */
        size_t whole;
        for (;;) {
            if ((rc = count(text + c.u.v[a].start, c.u.v[b - 1].end - c.u.v[a].start, max_tokens,
                            &whole, user)))
                break;
            if (whole <= max_tokens || b == a + 1) break;
            b--;
        }
        if (rc) break;
        if (nv == cap) {
            cap = cap ? 2 * cap : 16;
            struct sbert_passage *nvp = realloc(v, cap * sizeof *nvp);
            if (!nvp) {
                rc = SBERT_TEXT_ENOMEM;
                break;
            }
            v = nvp;
        }
        v[nv++] = (struct sbert_passage){c.u.v[a].start, c.u.v[b - 1].end, whole};
        if (b >= c.u.n) break;
        fresh = b;
        /* the next passage repeats the last units that fit in the overlap, never all of them,
         * and only as many as leave room for the unit after them: every passage moves on. A
         * passage that ended a paragraph leaves none: the next one starts the new paragraph. */
        size_t o = b;
        while (!c.u.v[b - 1].para_end && o - 1 > a && sum(&c.u, o - 1, b) <= overlap_tokens)
            o--;
        while (o < b && sum(&c.u, o, b) + c.u.v[b].tokens > max_tokens)
            o++;
        a = o;
    }
    free(c.u.v);
    if (rc) {
        free(v);
        return rc;
    }
    *out = v;
    *n = nv;
    return 0;
}
