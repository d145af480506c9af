/*
 * vindex_qscan_avx2.c — the AVX2 int8 dot-product kernel of the quantised Flat scan
 * (vindex_qscan.h). Compiled with -mavx2 whatever the build's flags; runs only where
 * qscan_isa_available() says so.
 *
 * vpmaddubsw multiplies unsigned by signed bytes, so the sign of q moves onto x (vpsignb) and
 * |q| is the unsigned operand; with both within [-127, 127] a pair of products sums to at most
 * 2 * 127 * 127 = 32258, so the int16 step never saturates and the sum is exact.
 */
#include <immintrin.h>
#include <string.h>

#include "vindex_qscan.h"

static int32_t hsum(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

void qscan_dots_avx2(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const size_t dv = d & ~(size_t)31;
    for (size_t i = 0; i < n; i++, x += d) {
        __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
        size_t j = 0;
        for (; j + 64 <= dv; j += 64) {
            __m256i q0 = _mm256_loadu_si256((const __m256i *)(q + j));
            __m256i q1 = _mm256_loadu_si256((const __m256i *)(q + j + 32));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(x + j));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(x + j + 32));
            __m256i p0 = _mm256_maddubs_epi16(_mm256_abs_epi8(q0), _mm256_sign_epi8(x0, q0));
            __m256i p1 = _mm256_maddubs_epi16(_mm256_abs_epi8(q1), _mm256_sign_epi8(x1, q1));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p0, ones));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(p1, ones));
        }
        for (; j < dv; j += 32) {
            __m256i q0 = _mm256_loadu_si256((const __m256i *)(q + j));
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(x + j));
            __m256i p0 = _mm256_maddubs_epi16(_mm256_abs_epi8(q0), _mm256_sign_epi8(x0, q0));
            acc0 = _mm256_add_epi32(acc0, _mm256_madd_epi16(p0, ones));
        }
        int32_t s = hsum(_mm256_add_epi32(acc0, acc1));
        for (; j < d; j++)
            s += (int32_t)q[j] * (int32_t)x[j];
        out[i] = s;
    }
}

/* Each 32 dimensions: the row's 4 bytes of bits spread to one byte each (byte i gets bit i of
 * the 32: a shuffle brings bits byte i / 8 to byte i, an AND with 1 << (i % 8) and a compare make
 * 0xff where set), which keep q's bytes; vpmaddubsw with ones and vpmaddwd sum them (|q| <= 127,
 * so the int16 pairs cannot saturate). */
void qscan_bits_avx2(const int8_t *q, const uint8_t *b, size_t n, size_t d, int32_t *out)
{
    const size_t dv = d & ~(size_t)31, bpr = (d + 7) / 8;
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                            2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    for (size_t i = 0; i < n; i++, b += bpr) {
        __m256i acc = _mm256_setzero_si256();
        size_t j = 0;
        for (; j < dv; j += 32) {
            uint32_t w;
            memcpy(&w, b + j / 8, 4);
            __m256i m = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), spread);
            m = _mm256_cmpeq_epi8(_mm256_and_si256(m, bit), bit);
            __m256i sel = _mm256_and_si256(m, _mm256_loadu_si256((const __m256i *)(q + j)));
            acc =
                _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, sel), ones16));
        }
        int32_t s = hsum(acc);
        for (; j < d; j++)
            s += (b[j / 8] >> (j % 8)) & 1 ? q[j] : 0;
        out[i] = s;
    }
}
