/*
 * faults_encoder.c — fault loops over the encoder (encoder/include/sbert.h) with the real model:
 *
 *   faults_encoder <model dir> <load|encode> <fp32|int8>
 *
 * load: sbert_model_load with call N of a family failing; encode: sbert_encode of a few texts
 * (two threads, so the worker threads are started) on a loaded model. Families: allocations
 * (SBERT_ENOMEM), opening, reading and mapping the model's files (SBERT_EIO; a failed mmap may
 * also be SBERT_ENOMEM), and thread creation (SBERT_ETHREAD). After each injected failure: no
 * model is returned, or the encode's code is the family's; then, faults off, the same call
 * succeeds and the vectors are the reference ones bit for bit. Every call of a family is failed
 * when the operation makes at most SPAN calls of it; beyond that the first SPAN calls and then
 * SPAN more spread evenly over the rest (loading the vocabulary allocates once per token, about
 * 30,000 times), which keeps the run to a few minutes under ASan. Allocations inside OpenBLAS and
 * libgomp are not reached by the wrapping.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "sbert.h"

#define SPAN 60

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static const char *g_dir;
static struct sbert_model_params g_params;
static const char *const g_texts[] = {"A man is playing a guitar.",
                                      "Fault injection makes every error path run.",
                                      "café ☕ naïve résumé"};
#define NTEXTS 3
static float *g_ref;
static int g_dim;

struct config {
    const char *name;
    unsigned mask;
    int codes[2];
};

static const struct config g_configs[] = {
    {"alloc", SBERT_FAULT_ALLOC, {SBERT_ENOMEM}},
    {"io", SBERT_FAULT_OPEN | SBERT_FAULT_READ, {SBERT_EIO}},
    {"mmap", SBERT_FAULT_MMAP, {SBERT_EIO, SBERT_ENOMEM}},
    {"thread", SBERT_FAULT_THREAD, {SBERT_ETHREAD}},
};

static sbert_model *load(void)
{
    sbert_model *m = NULL;
    char err[512] = "";
    if (sbert_model_load(g_dir, &g_params, &m, err, sizeof err)) {
        fprintf(stderr, "loading %s: %s\n", g_dir, err);
        exit(97);
    }
    return m;
}

static int encode(const sbert_model *m, float *out)
{
    struct sbert_encode_params ep = {.n_threads = 2};
    return sbert_encode(m, g_texts, NULL, NTEXTS, out, &ep, NULL, NULL);
}

static void check_vectors(const sbert_model *m)
{
    float *v = malloc((size_t)NTEXTS * g_dim * sizeof *v);
    CHECK(v && encode(m, v) == 0 && memcmp(v, g_ref, (size_t)NTEXTS * g_dim * sizeof *v) == 0);
    free(v);
}

/* One run of the operation with call n failing; returns the code, *fired whether it was reached. */
static int run(const char *op, unsigned mask, uint64_t n, int *fired)
{
    int rc;
    if (strcmp(op, "load") == 0) {
        sbert_model *m = NULL;
        sbert_fault_arm(mask, n);
        rc = sbert_model_load(g_dir, &g_params, &m, NULL, 0);
        sbert_fault_disarm();
        if (rc) CHECK(m == NULL);
        if (m) check_vectors(m);
        sbert_model_free(m);
    } else {
        sbert_model *m = load();
        float *v = malloc((size_t)NTEXTS * g_dim * sizeof *v);
        sbert_fault_arm(mask, n);
        rc = encode(m, v);
        sbert_fault_disarm();
        if (rc == 0) CHECK(memcmp(v, g_ref, (size_t)NTEXTS * g_dim * sizeof *v) == 0);
        free(v);
        check_vectors(m); /* the model is still sound after a failed encode */
        sbert_model_free(m);
    }
    *fired = sbert_fault_fired() > 0;
    return rc;
}

/* Calls of mask that a fault-free run of op makes. */
static uint64_t count_calls(const char *op, unsigned mask)
{
    int fired;
    CHECK(run(op, mask, UINT64_MAX, &fired) == 0);
    return sbert_fault_calls();
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: faults_encoder <model dir> <load|encode> <fp32|int8>\n");
        return 2;
    }
    g_dir = argv[1];
    const char *op = argv[2];
    g_params = sbert_model_default_params();
    g_params.precision = strcmp(argv[3], "int8") == 0 ? SBERT_PRECISION_INT8 : SBERT_PRECISION_FP32;
    sbert_model *m = load();
    g_dim = sbert_model_info(m)->dim;
    g_ref = malloc((size_t)NTEXTS * g_dim * sizeof *g_ref);
    CHECK(g_ref && encode(m, g_ref) == 0);
    sbert_model_free(m);

    uint64_t total = 0;
    for (size_t c = 0; c < sizeof g_configs / sizeof *g_configs; c++) {
        const struct config *cf = &g_configs[c];
        uint64_t calls = count_calls(op, cf->mask), tried = 0;
        for (uint64_t i = 1; i <= calls && i <= 2 * SPAN; i++) {
            uint64_t n =
                calls <= 2 * SPAN || i <= SPAN ? i : SPAN + (i - SPAN) * (calls - SPAN) / SPAN;
            int fired;
            int rc = run(op, cf->mask, n, &fired);
            tried++;
            CHECK(fired);
            if (fired && rc != 0 && rc != cf->codes[0] && rc != cf->codes[1]) {
                fprintf(stderr, "%s/%s: call %llu of %llu failed: returned %d (%s)\n", op, cf->name,
                        (unsigned long long)n, (unsigned long long)calls, rc, sbert_strerror(rc));
                failures++;
            }
            if (failures > 20) break;
        }
        printf("%s %s/%s: %llu calls, %llu injection points\n", argv[3], op, cf->name,
               (unsigned long long)calls, (unsigned long long)tried);
        total += tried;
    }
    printf("%s %s: %llu injection points in all\n", argv[3], op, (unsigned long long)total);
    free(g_ref);
    return failures ? 1 : 0;
}
