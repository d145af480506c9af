/*
 * unicode_test.c — every Unicode scalar value through the tokenizer's normaliser and
 * pre-tokenizer, compared with what HF tokenizers does (tests/golden/codepoints.txt, made by
 * make_tokens.py). Three contexts per code point X: "a" X "b" (cleaning, CJK spacing, accent
 * stripping, lowercasing, punctuation/whitespace splits) and X next to the non-starters U+1D165 /
 * U+1D16D (NFD's canonical reordering, i.e. combining classes).
 *
 * It includes encoder/tokenizer.c with SBERT_TOKENIZER_WORD_HOOK defined, so the words the
 * pre-tokenizer produces are captured instead of going to WordPiece. The configuration (lowercase,
 * strip_accents, chinese chars) is the one the golden's "# config:" line names. Prints the first
 * mismatches and their count; exits 1 on any.
 *
 * Usage: tokenizer_unicode_test codepoints[.NAME].txt
 */
#include <stddef.h>
#include <stdint.h>

struct enc;
static void capture_word(const char *utf8, size_t len);
#define SBERT_TOKENIZER_WORD_HOOK(e, nc) capture_word((e)->wb, (e)->woff[nc])

#include "tokenizer.c"

#define SEP 0xFFFFFFFFu /* between words in a captured or expected sequence */
#define MAXSEQ 64

static uint32_t g_cap[MAXSEQ];
static size_t g_ncap;

static void capture_word(const char *utf8, size_t len)
{
    if (g_ncap && g_ncap < MAXSEQ) g_cap[g_ncap++] = SEP;
    for (size_t p = 0, k; p < len && g_ncap < MAXSEQ; p += k) {
        k = utf8_decode((const unsigned char *)utf8 + p, len - p, &g_cap[g_ncap++]);
        if (!k) return;
    }
}

/* Runs one text (code points) through sbert_tokenizer_encode and returns the words captured. */
static size_t run(const sbert_tokenizer *t, const uint32_t *cps, size_t n, uint32_t *out)
{
    char buf[64];
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += utf8_encode(cps[i], buf + len);
    int32_t ids[8];
    size_t n_ids;
    g_ncap = 0;
    if (sbert_tokenizer_encode(t, buf, len, ids, 8, &n_ids, NULL) != 0) return (size_t)-1;
    memcpy(out, g_cap, g_ncap * sizeof *out);
    return g_ncap;
}

/* Expands a template (see codepoints.txt's header) for code point c. Returns the length or
 * (size_t)-1 when the template is malformed. */
static size_t expand(const char *tpl, uint32_t c, uint32_t *out)
{
    size_t n = 0;
    if (strcmp(tpl, "H") == 0) {
        uint32_t si = c - 0xAC00;
        out[n++] = 'a';
        out[n++] = 0x1100 + si / 588;
        out[n++] = 0x1161 + (si % 588) / 28;
        if (si % 28) out[n++] = 0x11A7 + si % 28;
        out[n++] = 'b';
        return n;
    }
    const char *p = tpl;
    while (*p) {
        if (*p == ' ') {
            out[n++] = SEP;
            p++;
            continue;
        }
        if (*p == '.') {
            p++;
            continue;
        }
        if (n >= MAXSEQ - 1) return (size_t)-1;
        char *end;
        if (*p == 'X') {
            p++;
            long d = 0;
            if (*p == '+' || *p == '-') {
                d = strtol(p, &end, 10);
                p = end;
            }
            out[n++] = (uint32_t)((long)c + d);
        } else if ((*p == 'a' || *p == 'b' || *p == 's' || *p == 'p') &&
                   (p[1] == 0 || p[1] == '.' || p[1] == ' ')) {
            out[n++] = *p == 'a' ? 0x61 : *p == 'b' ? 0x62 : *p == 's' ? 0x1D165 : 0x1D16D;
            p++;
        } else {
            unsigned long v = strtoul(p, &end, 16);
            if (end == p) return (size_t)-1;
            out[n++] = (uint32_t)v;
            p = end;
        }
    }
    return n;
}

static void print_seq(const char *what, const uint32_t *s, size_t n)
{
    printf("  %s:", what);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == SEP)
            printf(" |");
        else
            printf(" %04X", s[i]);
    }
    putchar('\n');
}

static ptrdiff_t index_of(const uint32_t *s, size_t n, uint32_t c)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == c) return (ptrdiff_t)i;
    return -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s codepoints.txt\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        fprintf(stderr, "FAIL: cannot open %s\n", argv[1]);
        return 1;
    }
    sbert_tokenizer t;
    memset(&t, 0, sizeof t);
    int have_config = 0;

    char line[512];
    uint32_t next = 0; /* every code point must be covered, in order */
    long bad = 0, checked = 0;
    int header_ok = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#') {
            header_ok |= strstr(line, "code point golden v1") != NULL;
            struct sbert_tokenizer_config cfg = {.max_seq_length = 8};
            if (sscanf(line,
                       "# config: do_lower_case=%d strip_accents=%d tokenize_chinese_chars=%d",
                       &cfg.do_lower_case, &cfg.strip_accents, &cfg.tokenize_chinese_chars) == 3) {
                set_config(&t, &cfg);
                have_config = 1;
            }
            continue;
        }
        if (!have_config) {
            fprintf(stderr, "FAIL: %s: no \"# config:\" line before the data\n", argv[1]);
            return 1;
        }
        unsigned long lo, hi;
        int off = 0;
        if (sscanf(line, "%lx %lx %n", &lo, &hi, &off) != 2 || off == 0 || lo != next) {
            fprintf(stderr, "FAIL: %s: bad or out-of-order line \"%s\"\n", argv[1], line);
            return 1;
        }
        char *tpl = line + off;
        char *flags = strstr(tpl, " ;");
        int want_s = 0, want_p = 0;
        if (flags) {
            *flags = 0;
            want_s = strchr(flags + 2, 'S') != NULL;
            want_p = strchr(flags + 2, 'P') != NULL;
        }
        for (uint32_t c = (uint32_t)lo; c <= hi; c++) {
            uint32_t in[4], exp[MAXSEQ], got[MAXSEQ];
            in[0] = 'a';
            in[1] = c;
            in[2] = 'b';
            size_t ne = expand(tpl, c, exp);
            size_t ng = run(&t, in, 3, got);
            int ok = ne != (size_t)-1 && ne == ng && memcmp(exp, got, ne * sizeof *exp) == 0;
            /* Ordering against non-starters: only meaningful when X survives as itself. */
            int got_s = 0, got_p = 0;
            if (c != 0x61 && c != 0x62 && c != 0x1D165 && c != 0x1D16D) {
                uint32_t s[MAXSEQ];
                in[2] = 0x1D165;
                in[3] = 'b';
                size_t n = run(&t, in, 4, s);
                ptrdiff_t ix = index_of(s, n, c), is = index_of(s, n, 0x1D165);
                got_s = ix >= 0 && is >= 0 && ix > is;
                in[1] = 0x1D16D;
                in[2] = c;
                n = run(&t, in, 4, s);
                ix = index_of(s, n, c);
                ptrdiff_t ip = index_of(s, n, 0x1D16D);
                got_p = ix >= 0 && ip >= 0 && ix < ip;
            }
            ok = ok && got_s == want_s && got_p == want_p;
            if (!ok) {
                if (bad < 20) {
                    printf("MISMATCH U+%04X: template \"%s\"%s%s\n", c, tpl, want_s ? " S" : "",
                           want_p ? " P" : "");
                    if (ne != (size_t)-1) print_seq("expected", exp, ne);
                    print_seq("got     ", got, ng == (size_t)-1 ? 0 : ng);
                    printf("  reordering: expected S=%d P=%d, got S=%d P=%d\n", want_s, want_p,
                           got_s, got_p);
                }
                bad++;
            }
            checked++;
        }
        next = (uint32_t)hi + 1;
        if (next == 0xD800) next = 0xE000;
    }
    fclose(f);
    printf("%ld code points checked, %ld mismatches\n", checked, bad);
    if (!header_ok || next != 0x110000) {
        printf("FAIL: %s is not a complete v1 code point golden (ends at U+%04X)\n", argv[1], next);
        return 1;
    }
    return bad ? 1 : 0;
}
