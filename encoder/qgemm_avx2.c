/*
 * The AVX2 int8 kernel (compiled with -mavx2 alone, chosen at run time). AVX2 has no s8 x s8
 * multiply-add, so, as ggml's x86 dot products do, each a is split into |a| (u8) and its sign,
 * moved onto w (vpsignb): |a| * (sign(a) * w) = a * w. vpmaddubsw then sums pairs into int16,
 * which cannot saturate because both sides are within [-127, 127] (2 * 127 * 127 = 32258), and
 * vpmaddwd with ones widens pairs of those into the int32 sum of 4 products.
 */
#include "quant.h"

#include <immintrin.h>
#include <string.h>

static inline __m256i bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

/* R rows (1..4) of a against one panel of 16 channels; c receives R x 16 sums. */
static inline __attribute__((always_inline)) void
tile(const int8_t *a, size_t lda, int R, const int8_t *panel, int K, int32_t *c, int ldc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[4][2];
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_si256();
    for (int kg = 0; kg < K / 4; kg++) {
        const __m256i w0 = _mm256_load_si256((const __m256i *)(panel + (size_t)kg * 64));
        const __m256i w1 = _mm256_load_si256((const __m256i *)(panel + (size_t)kg * 64 + 32));
        for (int r = 0; r < R; r++) {
            const __m256i av = bcast4(a + (size_t)r * lda + (size_t)kg * 4);
            const __m256i ax = _mm256_sign_epi8(av, av);
            const __m256i p0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, av));
            const __m256i p1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, av));
            acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(p0, ones));
            acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(p1, ones));
        }
    }
    for (int r = 0; r < R; r++) {
        _mm256_storeu_si256((__m256i *)(c + (size_t)r * ldc), acc[r][0]);
        _mm256_storeu_si256((__m256i *)(c + (size_t)r * ldc + 8), acc[r][1]);
    }
}

void sbert_qgemm_avx2(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                      int n1, int32_t *c, int ldc)
{
    const int K = w->k;
    for (int j = n0; j < n1; j += SBERT_QPANEL) {
        const int8_t *panel = w->w + (size_t)j * K;
        int32_t *cj = c + (j - n0);
        int i = 0;
        for (; i + 4 <= m; i += 4)
            tile(a + (size_t)i * lda, lda, 4, panel, K, cj + (size_t)i * ldc, ldc);
        switch (m - i) {
        case 3:
            tile(a + (size_t)i * lda, lda, 3, panel, K, cj + (size_t)i * ldc, ldc);
            break;
        case 2:
            tile(a + (size_t)i * lda, lda, 2, panel, K, cj + (size_t)i * ldc, ldc);
            break;
        case 1:
            tile(a + (size_t)i * lda, lda, 1, panel, K, cj + (size_t)i * ldc, ldc);
            break;
        default:
            break;
        }
    }
}
