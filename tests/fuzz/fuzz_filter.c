/*
 * fuzz_filter.c — libFuzzer target for the metadata filter language (index/filter.c,
 * docs/filters.md). An input is a filter's JSON text, optionally followed by a newline and a
 * metadata JSON text to evaluate it on.
 *
 * Differential oracle: for metadata that parses as an object, the raw top-level scanner
 * (filter_match_raw, what queries use) must agree with the tree evaluator (filter_match_json), on
 * the text as given and on cJSON's compact print of it (the form the store keeps).
 */
#include "filter.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

static void check_meta(const sbert_index_filter *f, const char *meta, size_t len)
{
    int raw = filter_match_raw(f, meta, len);
    FUZZ_ASSERT(raw == 0 || raw == 1 || raw == SBERT_INDEX_EMETADATA);
    FUZZ_ASSERT(sbert_index_filter_match(f, meta, len) == raw);
    cJSON *j = cJSON_ParseWithLength(meta, len);
    if (j && cJSON_IsObject(j)) {
        int tree = filter_match_json(f, j);
        FUZZ_ASSERT(tree == 0 || tree == 1);
        FUZZ_ASSERT(raw == tree);
        /* The stored form. Not always the same value: cJSON prints a number that overflowed to
         * infinity as null, so the compact text is compared with its own tree. */
        char *compact = cJSON_PrintUnformatted(j);
        FUZZ_ASSERT(compact);
        cJSON *jc = cJSON_Parse(compact);
        FUZZ_ASSERT(jc && cJSON_IsObject(jc));
        FUZZ_ASSERT(filter_match_raw(f, compact, strlen(compact)) == filter_match_json(f, jc));
        cJSON_Delete(jc);
        free(compact);
    }
    cJSON_Delete(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t flen = nl ? (size_t)(nl - in) : size;
    char errbuf[256];
    errbuf[0] = '\0';
    sbert_index_filter *f = NULL;
    int rc = sbert_index_filter_compile(in, flen, &f, errbuf, sizeof errbuf);
    if (rc) {
        FUZZ_ASSERT(f == NULL);
        FUZZ_ASSERT(rc == SBERT_INDEX_EFILTER);
        FUZZ_ASSERT(strncmp(errbuf, "filter", 6) == 0 && strlen(errbuf) < sizeof errbuf);
        return 0;
    }
    FUZZ_ASSERT(f != NULL);
    /* no metadata is seen as {} */
    FUZZ_ASSERT(filter_match_raw(f, NULL, 0) == filter_match_json(f, NULL));
    if (nl) check_meta(f, nl + 1, size - flen - 1);
    sbert_index_filter_free(f);
    return 0;
}
