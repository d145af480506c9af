/*
 * fuzz_extract.c — libFuzzer target for the file readers (extract/, sbert_extract.h). Byte 0 picks
 * the format (text, Markdown, HTML, PDF; the PDF parser runs in its child process, so a poppler
 * crash shows as SBERT_EXTRACT_ECRASH, never here), the rest is the file.
 *
 * Invariants: the result is one of the documented codes; on success the text is valid UTF-8 of
 * the reported length with no NUL and no C0 control other than tab, newline and carriage return,
 * within the text bound, and so is the title; on failure nothing is returned.
 */
#include "sbert_extract.h"
#include "sbert_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

static void check_clean(const char *s, size_t n)
{
    FUZZ_ASSERT(sbert_util_utf8_valid(s, n));
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        FUZZ_ASSERT(c >= 0x20 || c == '\t' || c == '\n' || c == '\r');
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    struct sbert_extract_params p;
    sbert_extract_default_params(&p);
    p.max_text_bytes = 1 << 20;
    p.pdf_timeout_ms = 3000; /* below run_fuzzer.sh's -timeout=10: our limit is what is tested */
    struct sbert_extract_doc d;
    char err[256];
    int format = data[0] & 3;
    int rc = sbert_extract(format, data + 1, size - 1, &p, &d, err, sizeof err);
    FUZZ_ASSERT(rc <= 0 && rc >= SBERT_EXTRACT_EIO);
    if (rc == 0) {
        FUZZ_ASSERT(d.text && strlen(d.text) == d.len && d.len <= p.max_text_bytes);
        check_clean(d.text, d.len);
        if (d.title) check_clean(d.title, strlen(d.title));
    } else {
        FUZZ_ASSERT(!d.text && !d.title && d.len == 0);
    }
    sbert_extract_doc_free(&d);
    int detected = sbert_extract_detect(NULL, data + 1, size - 1);
    FUZZ_ASSERT(detected == SBERT_EXTRACT_EUNSUPPORTED ||
                (detected >= SBERT_EXTRACT_TEXT && detected <= SBERT_EXTRACT_PDF));
    return 0;
}
