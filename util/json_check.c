/*
 * json_check.c — sbert_util_json_valid: JSON syntax (RFC 8259) checked without allocating, so a
 * caller whose cJSON parse failed can tell a malformed text from an allocation that failed.
 */
#include <string.h>

#include "sbert_util.h"

#define JSON_CHECK_DEPTH 512

struct jc {
    const unsigned char *p, *end;
};

static void ws(struct jc *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int hex4(struct jc *c, unsigned *u)
{
    if (c->end - c->p < 4) return 0;
    *u = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char h = *c->p++;
        unsigned d = 16;
        if (h >= '0' && h <= '9')
            d = (unsigned)(h - '0');
        else if (h >= 'a' && h <= 'f')
            d = (unsigned)(h - 'a' + 10);
        else if (h >= 'A' && h <= 'F')
            d = (unsigned)(h - 'A' + 10);
        if (d > 15) return 0;
        *u = *u << 4 | d;
    }
    return 1;
}

/* A string (c->p at its opening quote). Surrogate escapes must pair up, as cJSON requires. */
static int string(struct jc *c)
{
    c->p++;
    while (c->p < c->end) {
        unsigned char ch = *c->p++;
        if (ch == '"') return 1;
        if (ch < 0x20) return 0;
        if (ch != '\\') continue;
        if (c->p == c->end) return 0;
        ch = *c->p++;
        if (ch == 'u') {
            unsigned u, lo;
            if (!hex4(c, &u) || (u >= 0xDC00 && u <= 0xDFFF)) return 0;
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') return 0;
                c->p += 2;
                if (!hex4(c, &lo) || lo < 0xDC00 || lo > 0xDFFF) return 0;
            }
        } else if (!strchr("\"\\/bfnrt", ch) || ch == 0)
            return 0;
    }
    return 0;
}

static int digits(struct jc *c)
{
    const unsigned char *s = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > s;
}

/* cJSON 1.7 reads at most 63 characters of a number: a longer one is refused here too. */
static int number(struct jc *c)
{
    const unsigned char *s = c->p;
    if (*c->p == '-') c->p++;
    if (c->p < c->end && *c->p == '0')
        c->p++;
    else if (!digits(c))
        return 0;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!digits(c)) return 0;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-')) c->p++;
        if (!digits(c)) return 0;
    }
    return c->p - s <= 63;
}

static int literal(struct jc *c, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0) return 0;
    c->p += n;
    return 1;
}

static int value(struct jc *c, int depth)
{
    ws(c);
    if (c->p == c->end) return 0;
    switch (*c->p) {
    case '"':
        return string(c);
    case 't':
        return literal(c, "true");
    case 'f':
        return literal(c, "false");
    case 'n':
        return literal(c, "null");
    case '[':
    case '{': {
        unsigned char close = *c->p == '[' ? ']' : '}';
        if (depth >= JSON_CHECK_DEPTH) return 0;
        c->p++;
        ws(c);
        if (c->p < c->end && *c->p == close) {
            c->p++;
            return 1;
        }
        for (;;) {
            if (close == '}') {
                ws(c);
                if (c->p == c->end || *c->p != '"' || !string(c)) return 0;
                ws(c);
                if (c->p == c->end || *c->p++ != ':') return 0;
            }
            if (!value(c, depth + 1)) return 0;
            ws(c);
            if (c->p == c->end) return 0;
            unsigned char ch = *c->p++;
            if (ch == close) return 1;
            if (ch != ',') return 0;
        }
    }
    default:
        return (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) && number(c);
    }
}

int sbert_util_json_valid(const char *s, size_t len, int *is_object)
{
    if (!s) return 0;
    struct jc c = {(const unsigned char *)s, (const unsigned char *)s + len};
    ws(&c);
    int obj = c.p < c.end && *c.p == '{';
    if (!value(&c, 0)) return 0;
    if (is_object) *is_object = obj;
    return 1;
}
