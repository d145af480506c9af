/*
 * vindex_qscan_avx512.c — the AVX512-VNNI int8 dot-product kernel of the quantised Flat scan
 * (vindex_qscan.h). Compiled with AVX-512 F/BW/VNNI flags whatever the build's flags; runs only
 * where qscan_isa_available() says so.
 *
 * vpdpbusd multiplies unsigned by signed bytes and sums four products into int32 without an
 * int16 step: |q| is the unsigned operand and x is negated where q < 0 (a masked subtract), so
 * each product is q_j * x_j exactly. The tail of d past a multiple of 64 uses masked loads.
 * The binary stage's kernel (vpshufb tables, no VNNI) is below.
 */
#include <immintrin.h>
#include <string.h>

#include "vindex_qscan.h"

void qscan_dots_avx512vnni(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out)
{
    enum { MAXV = 16 }; /* d up to 1024 keeps |q| and its signs in registers or L1 */
    const __m512i zero = _mm512_setzero_si512();
    const size_t nv = (d + 63) / 64;
    __m512i qa[MAXV];
    __mmask64 neg[MAXV], tail = (d % 64) ? (((__mmask64)1 << (d % 64)) - 1) : ~(__mmask64)0;
    if (nv > MAXV) {
        qscan_dots_scalar(q, x, n, d, out);
        return;
    }
    for (size_t v = 0; v < nv; v++) {
        __mmask64 m = v + 1 == nv ? tail : ~(__mmask64)0;
        __m512i qv = _mm512_maskz_loadu_epi8(m, q + v * 64);
        qa[v] = _mm512_abs_epi8(qv);
        neg[v] = _mm512_movepi8_mask(qv);
    }
    for (size_t i = 0; i < n; i++, x += d) {
        __m512i acc0 = zero, acc1 = zero;
        size_t v = 0;
        for (; v + 2 <= nv; v += 2) {
            __mmask64 m1 = v + 2 == nv ? tail : ~(__mmask64)0;
            __m512i x0 = _mm512_loadu_si512((const void *)(x + v * 64));
            __m512i x1 = _mm512_maskz_loadu_epi8(m1, x + v * 64 + 64);
            x0 = _mm512_mask_sub_epi8(x0, neg[v], zero, x0);
            x1 = _mm512_mask_sub_epi8(x1, neg[v + 1], zero, x1);
            acc0 = _mm512_dpbusd_epi32(acc0, qa[v], x0);
            acc1 = _mm512_dpbusd_epi32(acc1, qa[v + 1], x1);
        }
        if (v < nv) {
            __m512i x0 = _mm512_maskz_loadu_epi8(tail, x + v * 64);
            x0 = _mm512_mask_sub_epi8(x0, neg[v], zero, x0);
            acc0 = _mm512_dpbusd_epi32(acc0, qa[v], x0);
        }
        out[i] = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
    }
}

/* Two octets of a block's 32 rows in one register (the layout keeps them adjacent, and the tables
 * of their low nibbles, then of their high nibbles, too): as the AVX2 kernel, 64 rows' entries a
 * vpshufb, summed in 16-bit lanes for a run, whose two halves (the even and the odd octets of
 * the same 32 rows) are added before they widen to int32. */
void qscan_bits_avx512vnni(const uint8_t *lut, const uint8_t *b, size_t n, size_t d, int32_t *out)
{
    const size_t noct = QSCAN_BOCT(d);
    const __m512i m4 = _mm512_set1_epi8(0x0f), zero = _mm512_setzero_si512();
    const __m512i bias = _mm512_set1_epi32((int)(2 * noct) * QSCAN_BITS_BIAS);
    for (size_t i = 0; i < n; i += QSCAN_BB, b += QSCAN_BB * noct) {
        __m512i s0 = zero, s1 = zero; /* rows 0 .. 15, 16 .. 31 */
        for (size_t o0 = 0; o0 < noct; o0 += QSCAN_BITS_RUN) {
            const size_t o1 = noct - o0 > QSCAN_BITS_RUN ? o0 + QSCAN_BITS_RUN : noct;
            __m512i ae = zero, ao = zero;
            for (size_t o = o0; o < o1; o += 2) { /* noct is even */
                __m512i c = _mm512_loadu_si512((const void *)(b + QSCAN_BB * o));
                __m512i r = _mm512_add_epi8(
                    _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(lut + 64 * o)),
                                        _mm512_and_si512(c, m4)),
                    _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(lut + 64 * o + 64)),
                                        _mm512_and_si512(_mm512_srli_epi16(c, 4), m4)));
                ae = _mm512_add_epi16(ae, r);
                ao = _mm512_add_epi16(ao, _mm512_srli_epi16(r, 8));
            }
            /* as the AVX2 kernel's run_flush: 16-bit lane j of 128-bit lane L holds rows 16 (L %
             * 2) + 2 j and 2 j + 1 */
            __m512i even = _mm512_sub_epi16(ae, _mm512_slli_epi16(ao, 8));
            __m256i e =
                _mm256_add_epi16(_mm512_castsi512_si256(even), _mm512_extracti64x4_epi64(even, 1));
            __m256i od =
                _mm256_add_epi16(_mm512_castsi512_si256(ao), _mm512_extracti64x4_epi64(ao, 1));
            __m256i lo = _mm256_unpacklo_epi16(e, od); /* lane L: rows 16 L .. 16 L + 7 */
            __m256i hi = _mm256_unpackhi_epi16(e, od); /* lane L: rows 16 L + 8 .. 16 L + 15 */
            s0 = _mm512_add_epi32(s0,
                                  _mm512_cvtepu16_epi32(_mm256_permute2x128_si256(lo, hi, 0x20)));
            s1 = _mm512_add_epi32(s1,
                                  _mm512_cvtepu16_epi32(_mm256_permute2x128_si256(lo, hi, 0x31)));
        }
        int32_t part[QSCAN_BB];
        int32_t *o = n - i >= QSCAN_BB ? out + i : part;
        _mm512_storeu_si512((void *)o, _mm512_sub_epi32(s0, bias));
        _mm512_storeu_si512((void *)(o + 16), _mm512_sub_epi32(s1, bias));
        if (o == part) memcpy(out + i, part, (n - i) * sizeof *out);
    }
}
