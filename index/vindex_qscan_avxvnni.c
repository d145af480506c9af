/*
 * vindex_qscan_avxvnni.c — the AVX-VNNI int8 dot-product kernel of the quantised Flat scan
 * (vindex_qscan.h): vpdpbusd on 256-bit vectors in its VEX encoding, for the CPUs that have it
 * without AVX-512 (Intel Alder Lake and later clients, Sierra Forest). Compiled with -mavxvnni
 * whatever the build's flags; runs only where qscan_isa_available() says so.
 *
 * vpdpbusd multiplies unsigned by signed bytes and sums four products into int32 without an
 * int16 step: x is offset to unsigned (x xor 0x80 = x + 128) against the signed query, and
 * 128 * sum(q) is taken off once per row. Every step wraps modulo 2^32, so the result is the
 * exact dot product whenever that fits in int32 (as the scalar reference assumes). The d % 32
 * dimensions past the last vector are summed in scalar code, as in the AVX2 kernel.
 *
 * Few CPUs that run the tests have AVX-VNNI, so tests/vindex compiles this source a second time
 * with VINDEX_QSCAN_VNNI_EVEX defined (qscan_avxvnni_evex.c): the EVEX-256 form of vpdpbusd
 * (AVX512-VNNI + VL), as qscan_dots_avxvnni_evex, checked against the scalar kernel wherever
 * AVX512-VNNI is. The macro below is the only difference between the two.
 */
#include <immintrin.h>

#include "vindex_qscan.h"

#ifdef VINDEX_QSCAN_VNNI_EVEX
#define DPBUSD _mm256_dpbusd_epi32
#define KERNEL qscan_dots_avxvnni_evex
#else
#define DPBUSD _mm256_dpbusd_avx_epi32
#define KERNEL qscan_dots_avxvnni
#endif

static int32_t hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

void KERNEL(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out)
{
    const __m256i off = _mm256_set1_epi8((char)0x80);
    const size_t dv = d & ~(size_t)31;
    uint32_t comp = 0; /* 128 * sum of q over the vector part, modulo 2^32 like the sums */
    for (size_t j = 0; j < dv; j++)
        comp += 128u * (uint32_t)(int32_t)q[j];
    for (size_t i = 0; i < n; i++, x += d) {
        __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
        size_t j = 0;
        for (; j + 64 <= dv; j += 64) {
            __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + j)), off);
            __m256i x1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + j + 32)), off);
            acc0 = DPBUSD(acc0, x0, _mm256_loadu_si256((const __m256i *)(q + j)));
            acc1 = DPBUSD(acc1, x1, _mm256_loadu_si256((const __m256i *)(q + j + 32)));
        }
        for (; j < dv; j += 32) {
            __m256i x0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(x + j)), off);
            acc0 = DPBUSD(acc0, x0, _mm256_loadu_si256((const __m256i *)(q + j)));
        }
        uint32_t s = (uint32_t)hsum(_mm256_add_epi32(acc0, acc1)) - comp;
        for (; j < d; j++)
            s += (uint32_t)((int32_t)q[j] * (int32_t)x[j]);
        out[i] = (int32_t)s;
    }
}
