/* The reference int8 kernel: the packed layout read element by element, exact int32 sums. */
#include "quant.h"

void sbert_qgemm_scalar(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                        int n1, int32_t *c, int ldc)
{
    const int K = w->k;
    for (int j = n0; j < n1; j++) {
        const int8_t *panel = w->w + (size_t)(j / SBERT_QPANEL) * SBERT_QPANEL * K;
        const int lane = (j % SBERT_QPANEL) * 4;
        for (int i = 0; i < m; i++) {
            const int8_t *ai = a + (size_t)i * lda;
            int32_t s = 0;
            for (int kk = 0; kk < K; kk++)
                s += (int32_t)ai[kk] * panel[(size_t)(kk / 4) * SBERT_QPANEL * 4 + lane + kk % 4];
            c[(size_t)i * ldc + (j - n0)] = s;
        }
    }
}
