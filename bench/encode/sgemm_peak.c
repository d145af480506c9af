/*
 * sgemm_peak — the machine's large-square sgemm rate through the system OpenBLAS (the library
 * sbert-encode links), for the FLOP-rate column of bench/encode. Prints one JSON object:
 *   {"corename": ..., "config": ..., "n": N, "threads": T, "gflops": best-of-reps}
 * Usage: sgemm_peak THREADS [N [REPS]]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* OpenBLAS extensions, declared here because cblas.h declares them only in some versions. */
extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
extern void openblas_set_num_threads(int);

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: sgemm_peak THREADS [N [REPS]]\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    int n = argc > 2 ? atoi(argv[2]) : 2048;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (threads < 1 || n < 64 || reps < 1) {
        fprintf(stderr, "sgemm_peak: bad arguments\n");
        return 2;
    }
    openblas_set_num_threads(threads);
    size_t nn = (size_t)n * (size_t)n;
    float *a = malloc(nn * sizeof *a), *b = malloc(nn * sizeof *b), *c = malloc(nn * sizeof *c);
    if (!a || !b || !c) {
        fprintf(stderr, "sgemm_peak: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < nn; i++) {
        a[i] = (float)(i % 17) * 0.01f;
        b[i] = (float)(i % 13) * 0.02f;
        c[i] = 0.0f;
    }
    /* One untimed call pages the buffers in and starts OpenBLAS's threads. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = 0.0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double g = 2.0 * n * (double)n * n / (now() - t0) * 1e-9;
        if (g > best) best = g;
    }
    printf(
        "{\"corename\": \"%s\", \"config\": \"%s\", \"n\": %d, \"threads\": %d, \"gflops\": %.2f, "
        "\"check\": %.3f}\n",
        openblas_get_corename(), openblas_get_config(), n, threads, best, (double)c[nn / 2]);
    free(a);
    free(b);
    free(c);
    return 0;
}
