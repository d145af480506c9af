/* test_extract.c — extract/ (sbert_extract.h) on files made here: detection, text and Markdown,
 * HTML through libxml2, PDF through poppler in its child process (a real PDF written by this
 * test, a broken one, and a child that runs out of memory). */
#include "sbert_extract.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The sanitized builds run the PDF child without its address-space limit (extract/pdf.c). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static int extract(int format, const char *data, size_t len, struct sbert_extract_doc *d, char *err,
                   size_t errlen)
{
    return sbert_extract(format, data, len, NULL, d, err, errlen);
}

static void test_detect(void)
{
    CHECK(sbert_extract_detect("a/b/Notes.MD", "", 0) == SBERT_EXTRACT_MARKDOWN);
    CHECK(sbert_extract_detect("x.htm", "", 0) == SBERT_EXTRACT_HTML);
    CHECK(sbert_extract_detect("x.pdf", "", 0) == SBERT_EXTRACT_PDF);
    CHECK(sbert_extract_detect("dir.v2/README", "plain words", 11) == SBERT_EXTRACT_TEXT);
    CHECK(sbert_extract_detect(NULL, "%PDF-1.4\n", 9) == SBERT_EXTRACT_PDF);
    CHECK(sbert_extract_detect("page", "\xEF\xBB\xBF  <!DOCTYPE html><p>", 22) ==
          SBERT_EXTRACT_HTML);
    CHECK(sbert_extract_detect("blob.bin", "ab\0cd", 5) == SBERT_EXTRACT_EUNSUPPORTED);
    CHECK(sbert_extract_detect("latin1", "caf\xe9 au lait", 13) == SBERT_EXTRACT_EUNSUPPORTED);
    /* a head that ends inside a character is still text */
    CHECK(sbert_extract_detect("cut", "caf\xc3\xa9 na\xc3", 9) == SBERT_EXTRACT_TEXT);
}

static void test_text(void)
{
    struct sbert_extract_doc d;
    char err[256];
    const char t[] = "\xEF\xBB\xBFline one\r\nline\x01two\tend";
    CHECK(extract(SBERT_EXTRACT_TEXT, t, sizeof t - 1, &d, err, sizeof err) == 0);
    CHECK(d.text && strcmp(d.text, "line one\r\nline two\tend") == 0 && d.title == NULL);
    sbert_extract_doc_free(&d);

    CHECK(extract(SBERT_EXTRACT_TEXT, "ok \xc3\xa9 \xff bad", 10, &d, err, sizeof err) ==
          SBERT_EXTRACT_EENCODING);
    CHECK(strstr(err, "at byte 6") != NULL && d.text == NULL);
    CHECK(extract(SBERT_EXTRACT_TEXT, "ab\0cd", 5, &d, err, sizeof err) ==
          SBERT_EXTRACT_EUNSUPPORTED);

    struct sbert_extract_params p;
    sbert_extract_default_params(&p);
    p.max_text_bytes = 4;
    CHECK(sbert_extract(SBERT_EXTRACT_TEXT, "12345", 5, &p, &d, err, sizeof err) ==
          SBERT_EXTRACT_ETOOBIG);
    CHECK(sbert_extract(SBERT_EXTRACT_TEXT, "", 0, &p, &d, err, sizeof err) == 0 && d.len == 0 &&
          d.text && d.text[0] == '\0');
    sbert_extract_doc_free(&d);
}

static void test_markdown(void)
{
    struct sbert_extract_doc d;
    char err[256];
    const char *md = "```\n# not a title\n```\nintro\n\n## The Real Title ##\ntext\n";
    CHECK(extract(SBERT_EXTRACT_MARKDOWN, md, strlen(md), &d, err, sizeof err) == 0);
    CHECK(d.title && strcmp(d.title, "The Real Title") == 0);
    CHECK(d.len == strlen(md));
    sbert_extract_doc_free(&d);
    const char *setext = "\nSetext Title\n============\nbody\n";
    CHECK(extract(SBERT_EXTRACT_MARKDOWN, setext, strlen(setext), &d, err, sizeof err) == 0);
    CHECK(d.title && strcmp(d.title, "Setext Title") == 0);
    sbert_extract_doc_free(&d);
    CHECK(extract(SBERT_EXTRACT_MARKDOWN, "no heading", 10, &d, err, sizeof err) == 0 &&
          d.title == NULL);
    sbert_extract_doc_free(&d);
}

static void test_html(void)
{
    struct sbert_extract_doc d;
    char err[256];
    const char *h = "<!DOCTYPE html><html><head><title> The  Page </title>"
                    "<style>p{color:red}</style><script>var x = '<p>no</p>';</script></head>"
                    "<body><h1>Heading</h1><p>First   paragraph &amp; more<br>next line</p>"
                    "<div>Second <b>bold</b>text</div><noscript>hidden</noscript>"
                    "<table><tr><td>a</td><td>b</td></tr></table>"
                    "<pre>  keep\n    this</pre><p>after</p></body></html>";
    CHECK(extract(SBERT_EXTRACT_HTML, h, strlen(h), &d, err, sizeof err) == 0);
    const char *want = "Heading\n\nFirst paragraph & more\nnext line\n\nSecond boldtext\n\na b\n\n"
                       "  keep\n    this\n\nafter";
    CHECK(d.text && strcmp(d.text, want) == 0);
    if (d.text && strcmp(d.text, want) != 0) fprintf(stderr, "  got: [%s]\n", d.text);
    CHECK(d.title && strcmp(d.title, "The Page") == 0);
    sbert_extract_doc_free(&d);

    /* malformed markup is recovered; the first h1 is the title when there is no <title> */
    const char *bad = "<html><body><h1>Only <i>h1</h1><p>unclosed <div>nested</p></span>tail";
    CHECK(extract(SBERT_EXTRACT_HTML, bad, strlen(bad), &d, err, sizeof err) == 0);
    CHECK(d.title && strcmp(d.title, "Only h1") == 0);
    CHECK(d.text && strstr(d.text, "nested") && strstr(d.text, "tail"));
    sbert_extract_doc_free(&d);

    /* a declared charset is decoded to UTF-8 */
    const char *latin = "<html><head><meta charset=\"iso-8859-1\"></head><body>caf\xe9</body>";
    CHECK(extract(SBERT_EXTRACT_HTML, latin, strlen(latin), &d, err, sizeof err) == 0);
    CHECK(d.text && strcmp(d.text, "caf\xc3\xa9") == 0);
    sbert_extract_doc_free(&d);

    /* 100,000 nested elements: no recursion, no crash */
    size_t depth = 100000, n = 0;
    char *deep = malloc(depth * 11 + 64);
    n += (size_t)sprintf(deep, "<html><body>");
    for (size_t i = 0; i < depth; i++)
        n += (size_t)sprintf(deep + n, "<div>");
    n += (size_t)sprintf(deep + n, "bottom");
    int rc = extract(SBERT_EXTRACT_HTML, deep, n, &d, err, sizeof err);
    CHECK(rc == 0 || rc == SBERT_EXTRACT_EPARSE);
    sbert_extract_doc_free(&d);
    free(deep);

    CHECK(extract(SBERT_EXTRACT_HTML, "", 0, &d, err, sizeof err) <= 0);
    sbert_extract_doc_free(&d);
}

/* A one- or two-page PDF with Helvetica text and an Info Title, xref offsets computed here. */
static size_t make_pdf(char *out, const char *page1, const char *page2)
{
    char obj[8][512];
    int pages = page2 ? 2 : 1;
    snprintf(obj[1], 512, "<< /Type /Catalog /Pages 2 0 R >>");
    snprintf(obj[2], 512, "<< /Type /Pages /Kids [3 0 R%s] /Count %d >>", page2 ? " 6 0 R" : "",
             pages);
    const char *page_fmt = "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                           "/Resources << /Font << /F1 5 0 R >> >> >>";
    snprintf(obj[3], 512, page_fmt, 4);
    char s1[256], s2[256];
    int l1 = snprintf(s1, sizeof s1, "BT /F1 24 Tf 72 700 Td (%s) Tj ET", page1);
    snprintf(obj[4], 512, "<< /Length %d >>\nstream\n%s\nendstream", l1, s1);
    snprintf(obj[5], 512, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
    snprintf(obj[6], 512, page_fmt, 7);
    int l2 = snprintf(s2, sizeof s2, "BT /F1 24 Tf 72 700 Td (%s) Tj ET", page2 ? page2 : "");
    snprintf(obj[7], 512, "<< /Length %d >>\nstream\n%s\nendstream", l2, s2);
    snprintf(obj[0], 512, "<< /Title (Test Title) >>");
    size_t n = (size_t)sprintf(out, "%%PDF-1.4\n"), off[9];
    int count = 8; /* objects 1..7 and the Info dictionary as object 8 */
    for (int i = 1; i <= count; i++) {
        off[i] = n;
        n += (size_t)sprintf(out + n, "%d 0 obj\n%s\nendobj\n", i, obj[i == 8 ? 0 : i]);
    }
    size_t xref = n;
    n += (size_t)sprintf(out + n, "xref\n0 %d\n0000000000 65535 f \n", count + 1);
    for (int i = 1; i <= count; i++)
        n += (size_t)sprintf(out + n, "%010zu 00000 n \n", off[i]);
    n += (size_t)sprintf(
        out + n, "trailer\n<< /Size %d /Root 1 0 R /Info 8 0 R >>\nstartxref\n%zu\n%%%%EOF\n",
        count + 1, xref);
    return n;
}

static void test_pdf(void)
{
    struct sbert_extract_doc d;
    char err[256], pdf[8192];
    size_t n = make_pdf(pdf, "Hello PDF world", "Second page here");
    CHECK(sbert_extract_detect("doc", pdf, n) == SBERT_EXTRACT_PDF);
    int rc = extract(SBERT_EXTRACT_PDF, pdf, n, &d, err, sizeof err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "  pdf: %s\n", err);
    CHECK(d.text && strstr(d.text, "Hello PDF world") && strstr(d.text, "Second page here"));
    CHECK(d.text && strstr(d.text, "world") < strstr(d.text, "Second"));
    CHECK(d.title && strcmp(d.title, "Test Title") == 0);
    sbert_extract_doc_free(&d);

    /* not a PDF poppler can read: refused, with poppler's reason */
    const char junk[] = "%PDF-1.4\nthis is not a pdf at all\n";
    CHECK(extract(SBERT_EXTRACT_PDF, junk, sizeof junk - 1, &d, err, sizeof err) ==
          SBERT_EXTRACT_EPARSE);
    CHECK(strncmp(err, "pdf: ", 5) == 0 && d.text == NULL);

    /* cut in half: refused or partly read, never a crash of this process */
    rc = extract(SBERT_EXTRACT_PDF, pdf, n / 2, &d, err, sizeof err);
    CHECK(rc == 0 || rc == SBERT_EXTRACT_EPARSE || rc == SBERT_EXTRACT_ECRASH);
    sbert_extract_doc_free(&d);

    /* the text bound holds for PDFs too */
    struct sbert_extract_params p;
    sbert_extract_default_params(&p);
    p.max_text_bytes = 8;
    CHECK(sbert_extract(SBERT_EXTRACT_PDF, pdf, n, &p, &d, err, sizeof err) ==
          SBERT_EXTRACT_ETOOBIG);

#ifndef SANITIZED
    /* a child that cannot get memory dies; the caller is told, and goes on */
    sbert_extract_default_params(&p);
    p.pdf_memory_bytes = 1 << 20;
    rc = sbert_extract(SBERT_EXTRACT_PDF, pdf, n, &p, &d, err, sizeof err);
    CHECK(rc == SBERT_EXTRACT_ECRASH || rc == SBERT_EXTRACT_EPARSE);
    CHECK(err[0] != '\0');
#endif
}

int main(void)
{
    test_detect();
    test_text();
    test_markdown();
    test_html();
    test_pdf();
    if (failures) {
        fprintf(stderr, "extract_test: %d check(s) failed\n", failures);
        return 1;
    }
    printf("extract_test: all checks passed\n");
    return 0;
}
