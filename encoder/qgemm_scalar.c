/*
 * The reference int8 kernel: the packed layout read in order, exact int32 sums. Written so the
 * compiler can vectorise it (16 channel lanes per step), since tests run whole texts through it.
 */
#include "quant.h"

void sbert_qgemm_scalar(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                        int n1, int32_t *c, int ldc)
{
    const int K = w->k;
    for (int j = n0; j < n1; j += SBERT_QPANEL) {
        const int8_t *panel = w->w + (size_t)j * K;
        for (int i = 0; i < m; i++) {
            const int8_t *ai = a + (size_t)i * lda;
            int32_t acc[SBERT_QPANEL] = {0};
            for (int kg = 0; kg < K / 4; kg++) {
                const int8_t *p = panel + (size_t)kg * SBERT_QPANEL * 4;
                for (int lane = 0; lane < SBERT_QPANEL; lane++)
                    for (int b = 0; b < 4; b++)
                        acc[lane] += (int32_t)ai[kg * 4 + b] * p[lane * 4 + b];
            }
            for (int lane = 0; lane < SBERT_QPANEL; lane++)
                c[(size_t)i * ldc + (j - n0) + lane] = acc[lane];
        }
    }
}
