/* extract.c — format detection, plain text and Markdown, and what every format's result goes
 * through (sbert_extract.h). */
#include "internal.h"
#include "sbert_util.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *sbert_extract_strerror(int err)
{
    switch (err) {
    case SBERT_EXTRACT_OK:
        return "success";
    case SBERT_EXTRACT_ENOMEM:
        return "out of memory";
    case SBERT_EXTRACT_EUNSUPPORTED:
        return "not a text, Markdown, HTML or PDF file";
    case SBERT_EXTRACT_EENCODING:
        return "not valid UTF-8";
    case SBERT_EXTRACT_EPARSE:
        return "the file could not be parsed";
    case SBERT_EXTRACT_ECRASH:
        return "the PDF parser failed (crash, time or memory limit)";
    case SBERT_EXTRACT_ETOOBIG:
        return "the text is too long";
    case SBERT_EXTRACT_EIO:
        return "could not run the PDF parser";
    default:
        return "unknown error";
    }
}

const char *sbert_extract_format_name(enum sbert_extract_format f)
{
    static const char *const names[] = {"text", "markdown", "html", "pdf"};
    return (unsigned)f < 4 ? names[f] : "unknown";
}

void sbert_extract_default_params(struct sbert_extract_params *p)
{
    p->max_text_bytes = (size_t)64 << 20;
    p->pdf_timeout_ms = 60000;
    p->pdf_memory_bytes = (size_t)2 << 30;
}

int sbert_extract_detect(const char *path, const void *head, size_t len)
{
    static const struct {
        const char *ext;
        int format;
    } exts[] = {{".txt", SBERT_EXTRACT_TEXT},    {".text", SBERT_EXTRACT_TEXT},
                {".md", SBERT_EXTRACT_MARKDOWN}, {".markdown", SBERT_EXTRACT_MARKDOWN},
                {".html", SBERT_EXTRACT_HTML},   {".htm", SBERT_EXTRACT_HTML},
                {".xhtml", SBERT_EXTRACT_HTML},  {".pdf", SBERT_EXTRACT_PDF}};
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
            if (strcasecmp(dot, exts[i].ext) == 0) return exts[i].format;
    const char *s = head;
    if (len >= 5 && memcmp(s, "%PDF-", 5) == 0) return SBERT_EXTRACT_PDF;
    size_t i = 0;
    if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) i = 3;
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
        i++;
    if ((len - i >= 14 && strncasecmp(s + i, "<!doctype html", 14) == 0) ||
        (len - i >= 5 && strncasecmp(s + i, "<html", 5) == 0))
        return SBERT_EXTRACT_HTML;
    if (memchr(s, '\0', len)) return SBERT_EXTRACT_EUNSUPPORTED;
    /* The head may end inside a character: only the bytes before the last 3 must be valid. */
    size_t check = len > 3 ? len - 3 : 0;
    while (check > 0 && ((unsigned char)s[check] & 0xC0) == 0x80)
        check--;
    return sbert_util_utf8_valid(s, check) ? SBERT_EXTRACT_TEXT : SBERT_EXTRACT_EUNSUPPORTED;
}

int xbuf_put(struct xbuf *b, const char *s, size_t n)
{
    if (b->n + n > b->max) {
        b->over = 1;
        n = b->max - b->n;
    }
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return SBERT_EXTRACT_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

/* The offset of the first byte of s[0..len) that does not start a well-formed character. */
static size_t utf8_prefix(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (n > len - i || !sbert_util_utf8_valid(s + i, n)) return i;
        i += n;
    }
    return len;
}

int extract_finish(struct xbuf *b, char *title, const char *what, struct sbert_extract_doc *out,
                   char *errbuf, size_t errlen)
{
    int rc = 0;
    if (b->over)
        rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_ETOOBIG,
                             "%s: the text is longer than %zu bytes", what, b->max);
    else if (!b->p && xbuf_put(b, "", 0))
        rc = SBERT_EXTRACT_ENOMEM;
    else if (!sbert_util_utf8_valid(b->p, b->n))
        rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EENCODING,
                             "%s: not valid UTF-8 at byte %zu", what, utf8_prefix(b->p, b->n));
    else if (title && !sbert_util_utf8_valid(title, strlen(title)))
        rc = sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EENCODING,
                             "%s: the title is not valid UTF-8", what);
    if (rc) {
        free(b->p);
        free(title);
        memset(b, 0, sizeof *b);
        return rc;
    }
    for (size_t i = 0; i < b->n; i++) {
        unsigned char c = (unsigned char)b->p[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7F) b->p[i] = ' ';
    }
    for (char *t = title; t && *t; t++)
        if ((unsigned char)*t < 0x20 || *t == 0x7F) *t = ' ';
    out->text = b->p;
    out->len = b->n;
    out->title = title;
    memset(b, 0, sizeof *b);
    return 0;
}

/* Markdown's title: the first ATX heading ("# Title", any level) or setext heading (a line
 * underlined with = or -), outside fenced code; *out is NULL when there is none. Returns 0 or
 * SBERT_EXTRACT_ENOMEM. */
static int markdown_title(const char *s, size_t len, char **out)
{
    *out = NULL;
    const char *prev = NULL;
    size_t prev_len = 0;
    int fenced = 0;
    for (size_t i = 0; i < len;) {
        const char *line = s + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t n = nl ? (size_t)(nl - line) : len - i;
        i += n + (nl ? 1 : 0);
        size_t k = 0;
        while (k < n && k < 3 && line[k] == ' ')
            k++;
        if (n - k >= 3 && (strncmp(line + k, "```", 3) == 0 || strncmp(line + k, "~~~", 3) == 0)) {
            fenced = !fenced;
            prev = NULL;
            continue;
        }
        if (fenced) continue;
        const char *t = NULL;
        size_t tn = 0;
        size_t h = k;
        while (h < n && line[h] == '#' && h - k < 6)
            h++;
        if (h > k && (h == n || line[h] == ' ' || line[h] == '\t')) {
            t = line + h;
            tn = n - h;
        } else if (prev && n > k && (line[k] == '=' || line[k] == '-')) {
            size_t e = k;
            while (e < n && line[e] == line[k])
                e++;
            while (e < n && (line[e] == ' ' || line[e] == '\t' || line[e] == '\r'))
                e++;
            if (e == n) {
                t = prev;
                tn = prev_len;
            }
        }
        if (t) {
            while (tn && (*t == ' ' || *t == '\t'))
                t++, tn--;
            while (tn &&
                   (t[tn - 1] == ' ' || t[tn - 1] == '\t' || t[tn - 1] == '\r' || t[tn - 1] == '#'))
                tn--;
            if (tn) return (*out = strndup(t, tn)) ? 0 : SBERT_EXTRACT_ENOMEM;
        }
        int blank = 1;
        for (size_t q = 0; q < n; q++)
            blank &= line[q] == ' ' || line[q] == '\t' || line[q] == '\r';
        prev = blank ? NULL : line + k;
        prev_len = blank ? 0 : n - k;
    }
    return 0;
}

static int extract_plain(int markdown, const char *data, size_t len,
                         const struct sbert_extract_params *p, struct sbert_extract_doc *out,
                         char *errbuf, size_t errlen)
{
    if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) data += 3, len -= 3;
    const char *nul = memchr(data, '\0', len);
    if (nul)
        return sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EUNSUPPORTED,
                               "a NUL byte at byte %zu: a binary file, not text",
                               (size_t)(nul - data));
    if (!sbert_util_utf8_valid(data, len))
        return sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EENCODING,
                               "not valid UTF-8 at byte %zu", utf8_prefix(data, len));
    struct xbuf b = {.max = p->max_text_bytes};
    if (xbuf_put(&b, data, len)) {
        free(b.p);
        return SBERT_EXTRACT_ENOMEM;
    }
    char *title = NULL;
    if (markdown && markdown_title(data, len, &title)) {
        free(b.p);
        return SBERT_EXTRACT_ENOMEM;
    }
    return extract_finish(&b, title, markdown ? "markdown" : "text", out, errbuf, errlen);
}

int sbert_extract(enum sbert_extract_format format, const void *data, size_t len,
                  const struct sbert_extract_params *params, struct sbert_extract_doc *out,
                  char *errbuf, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (errbuf && errlen) errbuf[0] = '\0';
    struct sbert_extract_params def;
    if (!params) {
        sbert_extract_default_params(&def);
        params = &def;
    }
    switch (format) {
    case SBERT_EXTRACT_TEXT:
    case SBERT_EXTRACT_MARKDOWN:
        return extract_plain(format == SBERT_EXTRACT_MARKDOWN, data, len, params, out, errbuf,
                             errlen);
    case SBERT_EXTRACT_HTML:
        return extract_html(data, len, params, out, errbuf, errlen);
    case SBERT_EXTRACT_PDF:
        return extract_pdf(data, len, params, out, errbuf, errlen);
    }
    return sbert_util_errf(errbuf, errlen, SBERT_EXTRACT_EUNSUPPORTED, "unknown format %d",
                           (int)format);
}

void sbert_extract_doc_free(struct sbert_extract_doc *d)
{
    if (!d) return;
    free(d->text);
    free(d->title);
    memset(d, 0, sizeof *d);
}
