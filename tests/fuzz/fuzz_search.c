/*
 * fuzz_search.c — libFuzzer target for the keyword index and sbert_index_search (issue 13), on a
 * real store in a temporary directory (LMDB, the vector index, the analyzer in English).
 *
 * Input: byte 0 picks the mode (dense with diversity, keyword, hybrid RRF, hybrid weighted) and
 * whether the input's text is also stored; byte 1 is k - 1 (1..64), byte 2 the candidates
 * (0: the default) and the diversity; the rest is the query text: any bytes (a document text too,
 * when stored, cut at 4 KB; an upsert of one of 32 ids, so postings are added and removed).
 *
 * Invariants: the search succeeds; at most k distinct hits, each found; scores and the hits'
 * dense scores finite; in keyword mode every hit has a BM25 score > 0, its rank in order and no
 * dense rank; hybrid RRF scores equal the sum of 1 / (60 + rank) over the rankings; the keyword
 * index counts exactly the stored documents after every upsert.
 */
#include "sbert_index.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"

#define DIM 16
#define SEED_DOCS 64

static sbert_index *g_idx;
static char g_dir[64];

static void vec_of(const uint8_t *p, size_t n, uint64_t salt, float *v)
{
    uint64_t h = 1469598103934665603ULL ^ salt;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    for (int i = 0; i < DIM; i++) {
        h ^= h >> 33;
        h *= 0xff51afd7ed558ccdULL;
        v[i] = (float)((double)(h >> 11) / 9007199254740992.0 - 0.5);
    }
    v[0] += 1.0f; /* never all zero */
}

/* Returns 0, or SBERT_INDEX_ETEXT for a text that is not UTF-8 (then nothing was stored). */
static int put(const char *id, const char *text, size_t len, const float *v)
{
    struct sbert_index_put_item it = {
        .id = id, .id_len = strlen(id), .text = text, .text_len = len, .vector = v};
    int rc = sbert_index_put(g_idx, &it, 1, NULL, NULL, 0);
    if (rc) fprintf(stderr, "put: %s\n", sbert_index_strerror(rc));
    FUZZ_ASSERT(rc == 0 || rc == SBERT_INDEX_ETEXT);
    return rc;
}

static void cleanup(void)
{
    sbert_index_close(g_idx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd)) { /* best effort */
    }
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/fuzz_search.XXXXXX");
    FUZZ_ASSERT(mkdtemp(g_dir));
    struct sbert_index_params p = sbert_index_default_params();
    p.model.name = "fuzz";
    p.model.weights_sha256 = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    p.model.dim = DIM;
    p.model.pooling = SBERT_INDEX_POOL_MEAN;
    p.model.normalize = 1;
    p.model.max_seq_length = 128;
    p.snapshot_changes = UINT64_MAX; /* no snapshot thread work while fuzzing */
    p.snapshot_seconds = UINT32_MAX;
    char err[512];
    FUZZ_ASSERT(sbert_index_open(g_dir, &p, &g_idx, err, sizeof err) == 0);
    static const char *const words[] = {"running", "runs",    "café",   "CAFE",   "the",
                                        "Straße",  "strasse", "日本語", "code-7", "x"};
    for (int i = 0; i < SEED_DOCS; i++) {
        char id[16], text[128];
        snprintf(id, sizeof id, "s%d", i);
        snprintf(text, sizeof text, "%s %s %s doc%d", words[i % 10], words[(i / 3) % 10],
                 words[(i / 7) % 10], i);
        float v[DIM];
        vec_of((const uint8_t *)text, strlen(text), 7, v);
        FUZZ_ASSERT(put(id, text, strlen(text), v) == 0);
    }
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_idx) setup();
    if (size < 3) return 0;
    const char *text = (const char *)data + 3;
    size_t len = size - 3;
    float v[DIM];
    vec_of(data, size, 1, v);
    if (data[0] & 0x80) { /* store the text too: an upsert of one of 32 ids */
        char id[16];
        snprintf(id, sizeof id, "u%d", data[1] & 31);
        (void)put(id, text, len > 4096 ? 4096 : len, v);
        struct sbert_index_stats st;
        uint64_t count = 0;
        FUZZ_ASSERT(sbert_index_stats(g_idx, &st) == 0 && sbert_index_count(g_idx, &count) == 0);
        FUZZ_ASSERT(st.keyword_docs == count);
    }
    struct sbert_index_search_params p = sbert_index_search_default_params();
    int m = data[0] & 3;
    p.mode = m == 0   ? SBERT_INDEX_MODE_DENSE
             : m == 1 ? SBERT_INDEX_MODE_KEYWORD
                      : SBERT_INDEX_MODE_HYBRID;
    p.fusion = m == 3 ? SBERT_INDEX_FUSION_WEIGHTED : SBERT_INDEX_FUSION_RRF;
    p.weight = (float)(data[2] & 7) / 7.0f;
    p.q.k = (size_t)(data[1] & 63) + 1;
    p.candidates = (data[2] >> 3) & 1 ? (size_t)(data[2] >> 4) + 1 : 0;
    p.diversity = m == 0 ? 0.5f : (data[2] & 0x80 ? 0.3f : 0.0f);
    p.text = text;
    p.text_len = len;
    p.vector = m == 1 && !(data[0] & 0x40) ? NULL : v;
    struct sbert_index_results *r = NULL;
    int rc = sbert_index_search(g_idx, &p, &r);
    FUZZ_ASSERT(rc == 0 && r);
    FUZZ_ASSERT(r->n <= p.q.k);
    for (size_t i = 0; i < r->n; i++) {
        const struct sbert_index_doc *d = &r->docs[i];
        FUZZ_ASSERT(d->found && d->id && isfinite(d->score));
        for (size_t j = 0; j < i; j++)
            FUZZ_ASSERT(strcmp(d->id, r->docs[j].id) != 0);
        if (p.mode == SBERT_INDEX_MODE_DENSE) continue;
        FUZZ_ASSERT(isfinite(d->keyword_score) && (p.vector ? isfinite(d->dense_score) : 1));
        if (p.mode == SBERT_INDEX_MODE_KEYWORD) {
            FUZZ_ASSERT(d->keyword_score > 0 && d->dense_rank == 0);
            FUZZ_ASSERT(p.diversity > 0 || d->keyword_rank == i + 1);
        } else if (p.fusion == SBERT_INDEX_FUSION_RRF && p.diversity == 0) {
            double want = (d->dense_rank ? 1.0 / (60 + d->dense_rank) : 0) +
                          (d->keyword_rank ? 1.0 / (60 + d->keyword_rank) : 0);
            FUZZ_ASSERT(fabs(d->score - want) < 1e-6);
        }
    }
    sbert_index_results_free(r);
    return 0;
}
