/* sbert_extract.h — the text of a file, for indexing: plain text, Markdown, HTML and PDF.
 *
 * What each format gives (sbert_extract):
 *   text, Markdown  the file itself, which must be UTF-8 (a UTF-8 byte order mark is dropped);
 *                   Markdown's title is its first heading ("# Title" or a setext heading).
 *   HTML            libxml2's HTML parser (recovering from malformed markup, never touching the
 *                   network): the text of the body, with script, style, noscript, template, svg,
 *                   iframe and object dropped, whitespace collapsed, block elements (p, div, li,
 *                   h1-h6, tr, br, ...) ending lines and paragraphs, <pre> kept as written. The
 *                   title is <title>, or else the first <h1>. Any declared charset is decoded.
 *   PDF             poppler (poppler-glib) in a child process with memory and time limits, so a
 *                   hostile PDF that crashes or hangs the parser costs that child, never the
 *                   caller: pages' text in order, a blank line between pages; the title is the
 *                   document's Title entry.
 * Every result is valid UTF-8 with no C0 control characters other than tab, newline and carriage
 * return (others become spaces), and at most params.max_text_bytes long.
 *
 * Errors: 0 or a negative SBERT_EXTRACT_E* code, sbert_extract_strerror names it, and errbuf (when
 * given) receives a sentence that says what was wrong where (e.g. the byte offset of invalid
 * UTF-8). Thread safety: every function may be called from several threads at once. Nothing here
 * prints: libxml2's error reports are switched off for each parse.
 */
#ifndef SBERT_EXTRACT_H
#define SBERT_EXTRACT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SBERT_EXTRACT_OK = 0,
    SBERT_EXTRACT_ENOMEM = -1,       /* allocation failed */
    SBERT_EXTRACT_EUNSUPPORTED = -2, /* not a format we read (a binary file) */
    SBERT_EXTRACT_EENCODING = -3,    /* a text file that is not UTF-8 */
    SBERT_EXTRACT_EPARSE = -4,       /* the parser refused the file */
    SBERT_EXTRACT_ECRASH = -5,       /* the PDF parser crashed or ran out of time or memory */
    SBERT_EXTRACT_ETOOBIG = -6,      /* the text is longer than params.max_text_bytes */
    SBERT_EXTRACT_EIO = -7           /* a pipe or process for the PDF parser could not be made */
};

enum sbert_extract_format {
    SBERT_EXTRACT_TEXT,
    SBERT_EXTRACT_MARKDOWN,
    SBERT_EXTRACT_HTML,
    SBERT_EXTRACT_PDF
};

const char *sbert_extract_strerror(int err);

/* "text", "markdown", "html" or "pdf". */
const char *sbert_extract_format_name(enum sbert_extract_format f);

struct sbert_extract_params {
    size_t max_text_bytes;   /* longest text returned (default 64 MiB) */
    int pdf_timeout_ms;      /* the PDF child's wall-clock limit (default 60000) */
    size_t pdf_memory_bytes; /* the PDF child's address-space limit (default 2 GiB) */
};

void sbert_extract_default_params(struct sbert_extract_params *p);

/* The format of a file, from its name's extension (.txt .text .md .markdown .html .htm .xhtml
 * .pdf, any case) or else from its first bytes (head[0..len): "%PDF-", an HTML doctype or <html>,
 * or UTF-8 text with no NUL). Returns a format, or SBERT_EXTRACT_EUNSUPPORTED for anything else.
 * path may be NULL. */
int sbert_extract_detect(const char *path, const void *head, size_t len);

/* The extracted document; the caller owns it and releases it with sbert_extract_doc_free. */
struct sbert_extract_doc {
    char *text; /* NUL-terminated; len bytes before the NUL */
    size_t len;
    char *title; /* NUL-terminated, or NULL when the document has none */
};

/* Extracts data[0..len) as format. params NULL: the defaults. On success *out holds the text;
 * on failure *out is zeroed. */
int sbert_extract(enum sbert_extract_format format, const void *data, size_t len,
                  const struct sbert_extract_params *params, struct sbert_extract_doc *out,
                  char *errbuf, size_t errlen);

void sbert_extract_doc_free(struct sbert_extract_doc *d);

#ifdef __cplusplus
}
#endif

#endif
