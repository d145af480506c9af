/*
 * vindex_qscan_avx512.c — the AVX512-VNNI int8 dot-product kernel of the quantised Flat scan
 * (vindex_qscan.h). Compiled with AVX-512 F/BW/VNNI flags whatever the build's flags; runs only
 * where qscan_isa_available() says so.
 *
 * vpdpbusd multiplies unsigned by signed bytes and sums four products into int32 without an
 * int16 step: |q| is the unsigned operand and x is negated where q < 0 (a masked subtract), so
 * each product is q_j * x_j exactly. The tail of d past a multiple of 64 uses masked loads.
 * The binary stage's kernel is below.
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

/* Each 64 dimensions: the row's 8 bytes of bits are the mask that keeps q's bytes, and vpdpbusd
 * with ones sums the kept (signed) bytes. q past d is zero. */
void qscan_bits_avx512vnni(const int8_t *q, const uint8_t *b, size_t n, size_t d, int32_t *out)
{
    enum { MAXV = 16 };
    const size_t nv = (d + 63) / 64, bpr = (d + 7) / 8;
    const __m512i ones = _mm512_set1_epi8(1);
    __m512i qv[MAXV];
    if (nv > MAXV) {
        qscan_bits_scalar(q, b, n, d, out);
        return;
    }
    for (size_t v = 0; v < nv; v++) {
        __mmask64 m = (v + 1 == nv && d % 64) ? (((__mmask64)1 << (d % 64)) - 1) : ~(__mmask64)0;
        qv[v] = _mm512_maskz_loadu_epi8(m, q + v * 64);
    }
    const size_t full = bpr / 8; /* chunks whose 8 bytes of bits lie inside the row */
    for (size_t i = 0; i < n; i++, b += bpr) {
        __m512i acc0 = _mm512_setzero_si512(), acc1 = acc0;
        size_t v = 0;
        for (; v + 2 <= full; v += 2) {
            uint64_t b0, b1;
            memcpy(&b0, b + v * 8, 8);
            memcpy(&b1, b + v * 8 + 8, 8);
            acc0 = _mm512_dpbusd_epi32(acc0, ones, _mm512_maskz_mov_epi8((__mmask64)b0, qv[v]));
            acc1 = _mm512_dpbusd_epi32(acc1, ones, _mm512_maskz_mov_epi8((__mmask64)b1, qv[v + 1]));
        }
        for (; v < nv; v++) {
            uint64_t bits = 0;
            if (v < full)
                memcpy(&bits, b + v * 8, 8);
            else
                for (size_t t = v * 8; t < bpr; t++)
                    bits |= (uint64_t)b[t] << (8 * (t - v * 8));
            acc0 = _mm512_dpbusd_epi32(acc0, ones, _mm512_maskz_mov_epi8((__mmask64)bits, qv[v]));
        }
        out[i] = _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1));
    }
}
