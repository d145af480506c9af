/*
 * fuzz_tokenizer.c — libFuzzer target for the tokenizer (encoder/tokenizer.c) with the real
 * vocabulary. The model directory is $SBERT_FUZZ_MODEL_DIR, else the build's SBERT_MODEL_DIR.
 *
 * An input's first byte picks one of four BertNormalizer configurations and the ids capacity; the
 * rest is the text. Oracles besides the sanitizers: invalid UTF-8 is refused exactly when
 * proto/'s validator (what the daemon checks messages with) refuses it; [CLS] ... [SEP] framing;
 * every id inside the vocabulary; a smaller capacity gives a prefix of the full result (plus
 * [SEP]) and says it truncated; the same text gives the same ids twice.
 */
#include "internal.h"
#include "sbert_proto.h"
#include "sbert_util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

#ifndef SBERT_FUZZ_DEFAULT_MODEL_DIR
#define SBERT_FUZZ_DEFAULT_MODEL_DIR "models/all-MiniLM-L6-v2"
#endif

#define N_CFG 4
#define MAX_IDS 512

static const struct sbert_tokenizer_config cfgs[N_CFG] = {
    {.do_lower_case = 1, .strip_accents = -1, .tokenize_chinese_chars = 1, .max_seq_length = 128},
    {.do_lower_case = 0, .strip_accents = 0, .tokenize_chinese_chars = 1, .max_seq_length = 512},
    {.do_lower_case = 1, .strip_accents = 0, .tokenize_chinese_chars = 0, .max_seq_length = 64},
    {.do_lower_case = 0, .strip_accents = 1, .tokenize_chinese_chars = 1, .max_seq_length = 256},
};
static sbert_tokenizer *toks[N_CFG];
static size_t vocab_size;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("SBERT_FUZZ_MODEL_DIR");
    if (!dir) dir = SBERT_FUZZ_DEFAULT_MODEL_DIR;
    for (int i = 0; i < N_CFG; i++) {
        char errbuf[512];
        if (sbert_tokenizer_load(dir, &cfgs[i], &toks[i], errbuf, sizeof errbuf)) {
            fprintf(stderr, "fuzz_tokenizer: cannot load the vocabulary from %s: %s\n", dir,
                    errbuf);
            exit(2);
        }
    }
    vocab_size = sbert_tokenizer_vocab_size(toks[0]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const sbert_tokenizer *t = toks[data[0] % N_CFG];
    size_t max = (size_t)cfgs[data[0] % N_CFG].max_seq_length;
    /* capacities 2..9 reach the edge cases; the others leave max_seq_length in charge */
    size_t cap = (data[0] >> 2) < 8 ? 2 + (data[0] >> 2) : MAX_IDS;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;

    int32_t frame[2];
    size_t nf;
    FUZZ_ASSERT(sbert_tokenizer_encode(t, "", 0, frame, 2, &nf, NULL) == 0 && nf == 2);

    int32_t ids[MAX_IDS], full[MAX_IDS];
    size_t n = 0, nfull = 0;
    int trunc = -1, tfull = -1;
    int rc = sbert_tokenizer_encode(t, text, len, ids, cap, &n, &trunc);
    int valid = sbert_util_utf8_valid(text, len);
    if (rc) {
        FUZZ_ASSERT(rc == SBERT_EUTF8 && !valid);
        return 0;
    }
    FUZZ_ASSERT(valid);
    size_t lim = cap < max ? cap : max;
    FUZZ_ASSERT(n >= 2 && n <= lim);
    FUZZ_ASSERT(ids[0] == frame[0] && ids[n - 1] == frame[1]);
    FUZZ_ASSERT(trunc == 0 || trunc == 1);
    for (size_t i = 0; i < n; i++)
        FUZZ_ASSERT(ids[i] >= 0 && (size_t)ids[i] < vocab_size);

    FUZZ_ASSERT(sbert_tokenizer_encode(t, text, len, full, MAX_IDS, &nfull, &tfull) == 0);
    FUZZ_ASSERT(nfull >= n);
    FUZZ_ASSERT(memcmp(ids, full, (n - 1) * sizeof *ids) == 0);
    if (nfull > n) FUZZ_ASSERT(trunc == 1);
    if (cap == MAX_IDS)
        FUZZ_ASSERT(nfull == n && tfull == trunc && memcmp(ids, full, n * sizeof *ids) == 0);
    return 0;
}
