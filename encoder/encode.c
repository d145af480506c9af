/*
 * sbert_encode(): tokenize, sort by length, run packed batches, write rows back in input order.
 *
 * Texts are taken CHUNK at a time so memory stays bounded whatever n is: a chunk's token ids are
 * held at once (CHUNK x max_seq_length ids at most), and each forward pass sees at most
 * BATCH_TOKENS tokens.
 */
#include "model.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

enum {
    CHUNK = 4096,       /* texts tokenized and sorted together */
    BATCH_TOKENS = 2048 /* tokens per forward pass (bounds the scratch: ~14 KiB per token here) */
};

struct sbert_encode_params sbert_encode_default_params(void)
{
    struct sbert_encode_params p = {0};
    return p;
}

struct item {
    int len;    /* token count */
    size_t idx; /* index within the chunk */
};

static int by_len(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static int encode_chunk(const sbert_model *m, const char *const *texts, const size_t *lens,
                        size_t n, float *out, int n_threads, int *truncated, size_t *bad_index,
                        int32_t *ids, struct item *items, int32_t *packed, int *plens, float *rows,
                        uint64_t *n_tokens)
{
    const int L = m->info.max_seq_length, H = m->hidden;
    int rc = 0;
    size_t bad = n;

#pragma omp parallel for num_threads(n_threads) schedule(dynamic, 16) if (n >= 64 && n_threads > 1)
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]), nid = 0;
        int tr = 0;
        int r = sbert_tokenizer_encode(m->tok, texts[i], len, ids + i * (size_t)L, (size_t)L, &nid,
                                       &tr);
        items[i].idx = i;
        items[i].len = (int)nid;
        if (truncated) truncated[i] = tr;
        if (r) {
#pragma omp critical(sbert_encode_err)
            if (i < bad) {
                bad = i;
                rc = r;
            }
        }
    }
    if (rc) {
        if (bad_index) *bad_index = bad;
        return rc;
    }
    qsort(items, n, sizeof *items, by_len);

    int max_tok = 0;
    for (size_t i = 0; i < n; i++)
        max_tok = max_tok > items[i].len ? max_tok : items[i].len;
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (size_t)items[i].len;
    *n_tokens += total;
    int budget = BATCH_TOKENS > max_tok ? BATCH_TOKENS : max_tok;
    if ((size_t)budget > total) budget = (int)total;
    struct sbert_fwd_scratch s;
    if ((rc = sbert_fwd_scratch_init(&s, m, budget, max_tok, n_threads))) return rc;

    for (size_t b = 0; b < n;) {
        size_t e = b;
        int tok = 0;
        while (e < n && tok + items[e].len <= budget) {
            memcpy(packed + tok, ids + items[e].idx * (size_t)L,
                   (size_t)items[e].len * sizeof *ids);
            plens[e - b] = items[e].len;
            tok += items[e].len;
            e++;
        }
        sbert_forward(m, &s, packed, plens, (int)(e - b), rows);
        for (size_t k = b; k < e; k++)
            memcpy(out + items[k].idx * (size_t)H, rows + (k - b) * (size_t)H,
                   (size_t)H * sizeof *out);
        b = e;
    }
    sbert_fwd_scratch_free(&s);
    return 0;
}

int sbert_encode(const sbert_model *m, const char *const *texts, const size_t *lens, size_t n,
                 float *out, const struct sbert_encode_params *params, int *truncated,
                 size_t *bad_index)
{
    if (!m || (n && (!texts || !out))) return SBERT_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!texts[i]) {
            if (bad_index) *bad_index = i;
            return SBERT_EINVAL;
        }
    uint64_t tokens = 0;
    if (params && params->n_tokens) *params->n_tokens = 0;
    if (!n) return 0;
    int n_threads = params && params->n_threads > 0 ? params->n_threads : m->params.n_threads;
    const size_t L = (size_t)m->info.max_seq_length, H = (size_t)m->hidden;
    size_t cn = n < CHUNK ? n : CHUNK;
    size_t maxb = BATCH_TOKENS > L ? BATCH_TOKENS : L; /* most tokens (and sequences) in a pass */
    int32_t *ids = malloc(cn * L * sizeof *ids);
    struct item *items = malloc(cn * sizeof *items);
    int32_t *packed = malloc(maxb * sizeof *packed);
    int *plens = malloc(maxb * sizeof *plens);
    float *rows = malloc(maxb * H * sizeof *rows);
    int rc = SBERT_ENOMEM;
    if (ids && items && packed && plens && rows) {
        rc = 0;
        for (size_t c = 0; c < n && !rc; c += cn) {
            size_t k = n - c < cn ? n - c : cn, bad = (size_t)-1;
            rc = encode_chunk(m, texts + c, lens ? lens + c : NULL, k, out + c * H, n_threads,
                              truncated ? truncated + c : NULL, &bad, ids, items, packed, plens,
                              rows, &tokens);
            if (rc && bad_index && bad != (size_t)-1) *bad_index = c + bad;
        }
    }
    free(ids);
    free(items);
    free(packed);
    free(plens);
    free(rows);
    if (!rc && params && params->n_tokens) *params->n_tokens = tokens;
    return rc;
}
