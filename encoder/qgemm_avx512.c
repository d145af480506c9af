/*
 * The AVX512-VNNI int8 kernel (compiled with its own -mavx512* flags, chosen at run time).
 * vpdpbusd multiplies u8 by s8, so a is offset by 128 (a xor 0x80) and the extra
 * 128 * sum_k w[j][k] is taken off at the end (sbert_qweight.comp), as ORT's MLAS and oneDNN do;
 * the sums are exact, so the result is the scalar kernel's bit for bit. A tile is 4 rows x 64
 * channels: 16 accumulators, 4 weight vectors and the broadcast row values in 32 registers.
 */
#include "quant.h"

#include <immintrin.h>
#include <string.h>

static inline __m512i bcast4u(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v ^ (int32_t)0x80808080u);
}

/* R rows (1..4) against P panels (1..4) starting at panel; c receives R x 16P sums. */
static inline __attribute__((always_inline)) void tile(const int8_t *a, size_t lda, int R, int P,
                                                       const int8_t *panel, const int32_t *comp,
                                                       int K, int32_t *c, int ldc)
{
    /* The sums start at -comp rather than 0 (int32 wraps, so the result is the same): from 0,
     * GCC 12 copied all 16 accumulators on every pass of the k loop and spilled one. */
    __m512i acc[4][4];
    for (int p = 0; p < P; p++) {
        const __m512i neg = _mm512_sub_epi32(
            _mm512_setzero_si512(), _mm512_loadu_si512((const void *)(comp + p * SBERT_QPANEL)));
        for (int r = 0; r < R; r++)
            acc[r][p] = neg;
    }
    const size_t pstride = (size_t)SBERT_QPANEL * K;
    for (int kg = 0; kg < K / 4; kg++) {
        __m512i wv[4];
        for (int p = 0; p < P; p++)
            wv[p] = _mm512_load_si512((const void *)(panel + p * pstride + (size_t)kg * 64));
        for (int r = 0; r < R; r++) {
            const __m512i av = bcast4u(a + (size_t)r * lda + (size_t)kg * 4);
            for (int p = 0; p < P; p++)
                acc[r][p] = _mm512_dpbusd_epi32(acc[r][p], av, wv[p]);
        }
    }
    for (int p = 0; p < P; p++)
        for (int r = 0; r < R; r++)
            _mm512_storeu_si512((void *)(c + (size_t)r * ldc + p * SBERT_QPANEL), acc[r][p]);
}

/* All m rows against P panels. */
static inline __attribute__((always_inline)) void rows(const int8_t *a, size_t lda, int m, int P,
                                                       const int8_t *panel, const int32_t *comp,
                                                       int K, int32_t *c, int ldc)
{
    int i = 0;
    for (; i + 4 <= m; i += 4)
        tile(a + (size_t)i * lda, lda, 4, P, panel, comp, K, c + (size_t)i * ldc, ldc);
    const int8_t *ai = a + (size_t)i * lda;
    int32_t *ci = c + (size_t)i * ldc;
    switch (m - i) {
    case 3:
        tile(ai, lda, 3, P, panel, comp, K, ci, ldc);
        break;
    case 2:
        tile(ai, lda, 2, P, panel, comp, K, ci, ldc);
        break;
    case 1:
        tile(ai, lda, 1, P, panel, comp, K, ci, ldc);
        break;
    default:
        break;
    }
}

void sbert_qgemm_avx512vnni(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w,
                            int n0, int n1, int32_t *c, int ldc)
{
    const int K = w->k;
    int j = n0;
    for (; j + 4 * SBERT_QPANEL <= n1; j += 4 * SBERT_QPANEL)
        rows(a, lda, m, 4, w->w + (size_t)j * K, w->comp + j, K, c + (j - n0), ldc);
    for (; j < n1; j += SBERT_QPANEL)
        rows(a, lda, m, 1, w->w + (size_t)j * K, w->comp + j, K, c + (j - n0), ldc);
}
