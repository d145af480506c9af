/* Cosine statistics between two sets of embeddings, for the int8 fidelity tests. */
#ifndef SBERT_COSSTATS_H
#define SBERT_COSSTATS_H

#include <math.h>
#include <stdlib.h>

struct cos_stats {
    double mean, min, p5;
    size_t argmin;
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline struct cos_stats cos_stats(const float *a, const float *b, size_t n, int dim)
{
    struct cos_stats s = {0, 2, 0, 0};
    double *c = malloc(n * sizeof *c);
    for (size_t i = 0; i < n; i++) {
        double ab = 0, aa = 0, bb = 0;
        for (int j = 0; j < dim; j++) {
            ab += (double)a[i * dim + j] * b[i * dim + j];
            aa += (double)a[i * dim + j] * a[i * dim + j];
            bb += (double)b[i * dim + j] * b[i * dim + j];
        }
        c[i] = ab / sqrt(aa * bb);
        s.mean += c[i] / (double)n;
        if (!(c[i] >= s.min)) {
            s.min = c[i];
            s.argmin = i;
        }
    }
    qsort(c, n, sizeof *c, cmp_double);
    s.p5 = c[(size_t)(0.05 * (double)(n - 1))];
    free(c);
    return s;
}

#endif
