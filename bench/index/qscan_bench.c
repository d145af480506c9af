/*
 * qscan_bench.c — the quantised Flat scan (index/vindex_qscan.h) against the exact one, on real
 * embeddings: single-query latency p50/p99 and recall@10 of the quantised search (the exact
 * search's top 10 as the truth), for each re-rank size given.
 *
 *   qscan_bench VECTORS.f32 N NQ [RERANK...]
 *
 * VECTORS.f32: rows of 384 float32 (e.g. sbert-encode --format f32 of a sentence corpus). The
 * last NQ rows are the queries and are not indexed; the first N of the others are the documents.
 * When N is larger than the rows left, the rest are synthetic documents, each the normalised sum
 * of two real ones picked at random (so they stay in the span of real embeddings), and the
 * output says how many. RERANK 0 is the default re-rank (the default: 0 only). Each RERANK runs
 * with the int8 scan and with the binary first stage (params.qscan_binary_min = 1). SBERT_SCAN_ISA
 * picks the kernel as in the daemon. Prints one line per configuration.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vindex.h"

#define DIM 384
#define K 10

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x243F6A8885A308D3ULL;
static size_t below(size_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (size_t)(rng % n);
}

static vindex *build(const float *x, size_t n, size_t qscan_min, size_t rerank, size_t binary_min)
{
    struct vindex_params p = vindex_default_params();
    p.qscan_min = qscan_min;
    p.qscan_rerank = rerank;
    p.qscan_binary_min = binary_min;
    char err[256];
    vindex *v;
    if (vindex_create(&p, &v, err, sizeof err) != 0) {
        fprintf(stderr, "qscan_bench: %s\n", err);
        exit(1);
    }
    int64_t *labels = malloc(n * sizeof *labels);
    for (size_t i = 0; i < n; i++)
        labels[i] = (int64_t)i;
    if (vindex_add(v, labels, x, n, err, sizeof err) != 0) {
        fprintf(stderr, "qscan_bench: add: %s\n", err);
        exit(1);
    }
    free(labels);
    return v;
}

/* CPU seconds of the process (all threads) so far. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

static double g_cpu_ms; /* CPU ms a query of the last run(), all threads: less load-dependent */

/* Runs the nq queries one at a time; labels into L (nq * K). Prints p50/p99. */
static void run(vindex *v, const float *q, size_t nq, int64_t *L, double *p50, double *p99)
{
    float S[K];
    char err[256];
    double *t = malloc(nq * sizeof *t), c0 = cpu_s();
    for (size_t i = 0; i < nq; i++) {
        double t0 = now();
        if (vindex_search(v, q + i * DIM, 1, K, NULL, L + i * K, S, err, sizeof err) != 0) {
            fprintf(stderr, "qscan_bench: search: %s\n", err);
            exit(1);
        }
        t[i] = (now() - t0) * 1e3;
    }
    g_cpu_ms = (cpu_s() - c0) * 1e3 / (double)nq;
    qsort(t, nq, sizeof *t, cmp_d);
    *p50 = t[nq / 2];
    *p99 = t[(size_t)(nq * 0.99)];
    free(t);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: qscan_bench VECTORS.f32 N NQ [RERANK...]\n");
        return 2;
    }
    size_t n = strtoull(argv[2], NULL, 10), nq = strtoull(argv[3], NULL, 10);
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        perror(argv[1]);
        return 1;
    }
    size_t rows = (size_t)st.st_size / (DIM * sizeof(float));
    const float *all = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (all == MAP_FAILED || rows <= nq) {
        fprintf(stderr, "qscan_bench: %s: too few rows\n", argv[1]);
        return 1;
    }
    size_t real = rows - nq < n ? rows - nq : n;
    const float *q = all + (rows - nq) * DIM;
    float *x = malloc(n * DIM * sizeof *x);
    memcpy(x, all, real * DIM * sizeof *x);
    for (size_t i = real; i < n; i++) {
        const float *a = all + below(real) * DIM, *b = all + below(real) * DIM;
        float s = 0, *o = x + i * DIM;
        for (size_t j = 0; j < DIM; j++) {
            o[j] = a[j] + b[j];
            s += o[j] * o[j];
        }
        s = s > 0 ? 1.0f / sqrtf(s) : 0;
        for (size_t j = 0; j < DIM; j++)
            o[j] *= s;
    }
    printf("documents %zu (%zu real, %zu synthetic), queries %zu\n", n, real, n - real, nq);
    int64_t *truth = malloc(nq * K * sizeof *truth), *got = malloc(nq * K * sizeof *got);
    double p50, p99;
    vindex *v = build(x, n, SIZE_MAX, 0, SIZE_MAX);
    run(v, q, nq, truth, &p50, &p99); /* warm-up */
    run(v, q, nq, truth, &p50, &p99);
    printf("exact FAISS Flat       p50 %7.3f ms  p99 %7.3f ms  cpu %7.3f ms a query\n", p50, p99,
           g_cpu_ms);
    vindex_free(v);
    for (int a = 4; a < 2 * argc - 4 || a < 6; a++) {
        /* each re-rank size with the int8 scan, then with the binary first stage */
        int ai = 4 + (a - 4) / 2, binary = (a - 4) % 2;
        size_t rerank = ai < argc ? strtoull(argv[ai], NULL, 10) : 0;
        v = build(x, n, 1, rerank, binary ? 1 : SIZE_MAX);
        struct vindex_info info;
        vindex_info(v, &info);
        run(v, q, nq, got, &p50, &p99);
        run(v, q, nq, got, &p50, &p99);
        size_t hit = 0;
        for (size_t i = 0; i < nq; i++)
            for (size_t j = 0; j < K; j++)
                for (size_t t = 0; t < K; t++)
                    hit += got[i * K + j] == truth[i * K + t] && got[i * K + j] >= 0;
        printf("%-6s %-10s rerank %4zu%s p50 %7.3f ms  p99 %7.3f ms  cpu %7.3f ms a query  "
               "recall@10 %.5f  memory %.0f MB\n",
               binary ? "binary" : "int8", info.scan_kernel, rerank, rerank ? "" : " (default)",
               p50, p99, g_cpu_ms, (double)hit / (double)(nq * K), info.memory_bytes / 1e6);
        vindex_free(v);
    }
    free(x);
    free(truth);
    free(got);
    return 0;
}
