/*
 * The AVX-VNNI int8 kernel: vpdpbusd on 256-bit vectors in its VEX encoding, for the CPUs that
 * have it without AVX-512 (Intel Alder Lake and later clients, Sierra Forest). Compiled with
 * -mavxvnni whatever the build's flags, chosen at run time (quant.c). The arithmetic is the
 * AVX512-VNNI kernel's: a offset to u8 (a xor 0x80), 128 * sum_k w[j][k] taken off
 * (sbert_qweight.comp); the sums are exact, so the result is the scalar kernel's bit for bit.
 *
 * A tile is 2 rows x 2 panels (32 channels): 8 accumulators, the broadcast row value and the
 * offset in registers (VEX reaches 16), the 4 weight vectors read as vpdpbusd's memory operands;
 * a single row still gets 4 independent accumulators.
 *
 * Few CPUs that run the tests have AVX-VNNI, so this source is compiled a second time, for tests
 * only, with SBERT_QGEMM_VNNI_EVEX defined (tests/encoder/qgemm_avxvnni_evex.c): the same code
 * with the EVEX-256 form of vpdpbusd (AVX512-VNNI + VL), as sbert_qgemm_avxvnni_evex, which
 * test_qgemm checks against the scalar kernel wherever AVX512-VNNI is. The macro below is the
 * only difference between the two.
 */
#include "quant.h"

#include <immintrin.h>
#include <string.h>

#ifdef SBERT_QGEMM_VNNI_EVEX
#define DPBUSD _mm256_dpbusd_epi32
#define KERNEL sbert_qgemm_avxvnni_evex
#else
#define DPBUSD _mm256_dpbusd_avx_epi32
#define KERNEL sbert_qgemm_avxvnni
#endif

static inline __m256i bcast4u(const int8_t *p, __m256i off)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_xor_si256(_mm256_set1_epi32(v), off);
}

/* R rows (1..2) against P panels (1..2) starting at panel; c receives R x 16P sums. */
static inline __attribute__((always_inline)) void tile(const int8_t *a, size_t lda, int R, int P,
                                                       const int8_t *panel, const int32_t *comp,
                                                       int K, int32_t *c, int ldc)
{
    const __m256i off = _mm256_set1_epi8((char)0x80);
    /* The sums start at -comp rather than 0 (int32 wraps, so the result is the same): from 0,
     * GCC 12's PRE turned the loop into register copies of every accumulator (64 vmovdqa for 18
     * vpdpbusd, and a spill); from -comp the 2 x 2 loop is 2 broadcasts, 2 xors, 8 vpdpbusd. */
    __m256i acc[2][4];
    for (int v = 0; v < 2 * P; v++) {
        const __m256i neg = _mm256_sub_epi32(_mm256_setzero_si256(),
                                             _mm256_loadu_si256((const __m256i *)(comp + v * 8)));
        for (int r = 0; r < R; r++)
            acc[r][v] = neg;
    }
    const size_t pstride = (size_t)SBERT_QPANEL * K;
    for (int kg = 0; kg < K / 4; kg++) {
        __m256i wv[4];
        for (int v = 0; v < 2 * P; v++)
            wv[v] = _mm256_load_si256(
                (const __m256i *)(panel + (v / 2) * pstride + (size_t)kg * 64 + (v % 2) * 32));
        for (int r = 0; r < R; r++) {
            const __m256i av = bcast4u(a + (size_t)r * lda + (size_t)kg * 4, off);
            for (int v = 0; v < 2 * P; v++)
                acc[r][v] = DPBUSD(acc[r][v], av, wv[v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < 2 * P; v++)
            _mm256_storeu_si256((__m256i *)(c + (size_t)r * ldc + v * 8), acc[r][v]);
}

/* All m rows against P panels. */
static inline __attribute__((always_inline)) void rows(const int8_t *a, size_t lda, int m, int P,
                                                       const int8_t *panel, const int32_t *comp,
                                                       int K, int32_t *c, int ldc)
{
    int i = 0;
    for (; i + 2 <= m; i += 2)
        tile(a + (size_t)i * lda, lda, 2, P, panel, comp, K, c + (size_t)i * ldc, ldc);
    if (i < m) tile(a + (size_t)i * lda, lda, 1, P, panel, comp, K, c + (size_t)i * ldc, ldc);
}

void KERNEL(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0, int n1,
            int32_t *c, int ldc)
{
    const int K = w->k;
    int j = n0;
    for (; j + 2 * SBERT_QPANEL <= n1; j += 2 * SBERT_QPANEL)
        rows(a, lda, m, 2, w->w + (size_t)j * K, w->comp + j, K, c + (j - n0), ldc);
    if (j < n1) rows(a, lda, m, 1, w->w + (size_t)j * K, w->comp + j, K, c + (j - n0), ldc);
}
