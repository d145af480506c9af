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

/* The sums of one run of octets into a block's 32 rows' int32 sums s (rows 8k .. 8k + 7 in s[k]).
 * ae and ao are 16-bit accumulators of the bytes of 32 rows (byte r: row r): 16-bit lane j of
 * 128-bit lane L holds rows 16 L + 2 j (low byte) and 16 L + 2 j + 1 (high byte); ae sums the
 * lanes whole (modulo 2^16), ao the high bytes alone (FAISS's pq4 accumulation), so the even
 * rows' sums are ae - 256 ao. Each sum is below 2^16 (QSCAN_BITS_RUN). */
static void run_flush(__m256i ae, __m256i ao, __m256i s[4])
{
    __m256i even = _mm256_sub_epi16(ae, _mm256_slli_epi16(ao, 8));
    __m256i lo = _mm256_unpacklo_epi16(even, ao); /* lane L: rows 16 L .. 16 L + 7 */
    __m256i hi = _mm256_unpackhi_epi16(even, ao); /* lane L: rows 16 L + 8 .. 16 L + 15 */
    s[0] = _mm256_add_epi32(s[0], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(lo)));
    s[1] = _mm256_add_epi32(s[1], _mm256_cvtepu16_epi32(_mm256_castsi256_si128(hi)));
    s[2] = _mm256_add_epi32(s[2], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(lo, 1)));
    s[3] = _mm256_add_epi32(s[3], _mm256_cvtepu16_epi32(_mm256_extracti128_si256(hi, 1)));
}

/* A block's 32 rows at a time: each octet's 32 bytes split into nibbles, vpshufb looks up each
 * nibble's table entry for the 32 rows, the two entries (<= 120 each) add as bytes and the byte
 * sums accumulate in 16-bit lanes for a run of octets, then in int32. */
void qscan_bits_avx2(const uint8_t *lut, const uint8_t *b, size_t n, size_t d, int32_t *out)
{
    const size_t noct = QSCAN_BOCT(d);
    const __m256i m4 = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    const __m256i bias = _mm256_set1_epi32((int)(2 * noct) * QSCAN_BITS_BIAS);
    for (size_t i = 0; i < n; i += QSCAN_BB, b += QSCAN_BB * noct) {
        __m256i s[4] = {zero, zero, zero, zero};
        for (size_t o0 = 0; o0 < noct; o0 += QSCAN_BITS_RUN) {
            const size_t o1 = noct - o0 > QSCAN_BITS_RUN ? o0 + QSCAN_BITS_RUN : noct;
            __m256i ae = zero, ao = zero;
            for (size_t o = o0; o < o1; o += 2) { /* noct is even */
                const __m256i *t = (const __m256i *)(lut + 64 * o);
                __m256i c0 = _mm256_loadu_si256((const __m256i *)(b + QSCAN_BB * o));
                __m256i c1 = _mm256_loadu_si256((const __m256i *)(b + QSCAN_BB * o + 32));
                __m256i r0 = _mm256_add_epi8(
                    _mm256_shuffle_epi8(_mm256_loadu_si256(t), _mm256_and_si256(c0, m4)),
                    _mm256_shuffle_epi8(_mm256_loadu_si256(t + 2),
                                        _mm256_and_si256(_mm256_srli_epi16(c0, 4), m4)));
                __m256i r1 = _mm256_add_epi8(
                    _mm256_shuffle_epi8(_mm256_loadu_si256(t + 1), _mm256_and_si256(c1, m4)),
                    _mm256_shuffle_epi8(_mm256_loadu_si256(t + 3),
                                        _mm256_and_si256(_mm256_srli_epi16(c1, 4), m4)));
                ae = _mm256_add_epi16(ae, _mm256_add_epi16(r0, r1));
                ao = _mm256_add_epi16(
                    ao, _mm256_add_epi16(_mm256_srli_epi16(r0, 8), _mm256_srli_epi16(r1, 8)));
            }
            run_flush(ae, ao, s);
        }
        int32_t part[QSCAN_BB];
        int32_t *o = n - i >= QSCAN_BB ? out + i : part;
        for (int k = 0; k < 4; k++)
            _mm256_storeu_si256((__m256i *)(o + 8 * k), _mm256_sub_epi32(s[k], bias));
        if (o == part) memcpy(out + i, part, (n - i) * sizeof *out);
    }
}
