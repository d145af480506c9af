/*
 * tok_bench.c — tokenizer throughput, single thread (a timing program, not a test).
 * Reads one text per line from stdin (e.g. zcat tatoeba_en_sentences.txt.gz), tokenizes every
 * line `reps` times with the model's configuration and prints texts/s, tokens/s and MB/s (best
 * of the repetitions).
 *
 * Usage: zcat FILE.gz | tok_bench MODEL_DIR [reps]
 */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [reps] < texts\n", argv[0]);
        return 2;
    }
    int reps = argc > 2 ? atoi(argv[2]) : 5;
    struct sbert_tokenizer_config cfg = {1, -1, 1, 256};
    sbert_tokenizer *t;
    char err[512];
    if (sbert_tokenizer_load(argv[1], &cfg, &t, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t cap = 1 << 20, n = 0, nlines = 0;
    char *buf = malloc(cap);
    size_t *off = NULL, offcap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t l;
    while ((l = getline(&line, &lcap, stdin)) > 0) {
        if (line[l - 1] == '\n') l--;
        while (n + (size_t)l + 1 > cap)
            buf = realloc(buf, cap *= 2);
        if (nlines + 2 > offcap) off = realloc(off, (offcap = offcap * 2 + 1024) * sizeof *off);
        if (!buf || !off) return 1;
        off[nlines++] = n;
        memcpy(buf + n, line, (size_t)l);
        n += (size_t)l;
    }
    off[nlines] = n;
    free(line);

    int32_t ids[256];
    double best = 1e30;
    size_t tokens = 0;
    for (int r = 0; r < reps; r++) {
        size_t tok = 0;
        double t0 = now();
        for (size_t i = 0; i < nlines; i++) {
            size_t k;
            if (sbert_tokenizer_encode(t, buf + off[i], off[i + 1] - off[i], ids, 256, &k, NULL)) {
                fprintf(stderr, "line %zu: encode failed\n", i);
                return 1;
            }
            tok += k;
        }
        double dt = now() - t0;
        if (dt < best) best = dt;
        tokens = tok;
    }
    printf("%zu texts, %zu tokens (incl. [CLS]/[SEP]), %.1f MB: best of %d: %.3f s, "
           "%.0f texts/s, %.2f M tokens/s, %.1f MB/s\n",
           nlines, tokens, (double)n / 1e6, reps, best, (double)nlines / best,
           (double)tokens / best / 1e6, (double)n / best / 1e6);
    sbert_tokenizer_free(t);
    free(buf);
    free(off);
    return 0;
}
