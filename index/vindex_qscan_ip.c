/*
 * vindex_qscan_ip.c — the exact re-rank's inner products, eight rows at a time, each row's sum
 * formed exactly as FAISS's reference loop forms it (fvec_inner_product_ref: res += x[i] * y[i],
 * i ascending from res = 0, every product and every add rounded to float). This file is compiled
 * with -ffp-contract=off so that the compiler cannot fuse a product and its add into one FMA.
 *
 * Why: Debian's libfaiss.a resolves fvec_inner_product to that loop, one add waiting for the
 * previous one (a few cycles each, 384 of them a row at dim 384), and the re-rank of the binary
 * stage's 1,000 candidates spends most of its time waiting so. Eight independent sums take the
 * time of one and give the same bits. vindex.c uses this only where qscan_ip_seq_matches() found
 * that the linked FAISS's inner product gives these bits (a FAISS built with AVX2 does not: its
 * sums are in another order), so a search's scores stay those of the exact scan.
 */
#include "vindex_qscan.h"

#include "sbert_util.h"

#include <string.h>

void qscan_ip_seq(const float *q, const float *const *rows, size_t n, size_t d, float *out)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float *r0 = rows[i], *r1 = rows[i + 1], *r2 = rows[i + 2], *r3 = rows[i + 3],
                    *r4 = rows[i + 4], *r5 = rows[i + 5], *r6 = rows[i + 6], *r7 = rows[i + 7];
        float s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
        for (size_t j = 0; j < d; j++) {
            const float x = q[j];
            s0 += x * r0[j];
            s1 += x * r1[j];
            s2 += x * r2[j];
            s3 += x * r3[j];
            s4 += x * r4[j];
            s5 += x * r5[j];
            s6 += x * r6[j];
            s7 += x * r7[j];
        }
        out[i] = s0;
        out[i + 1] = s1;
        out[i + 2] = s2;
        out[i + 3] = s3;
        out[i + 4] = s4;
        out[i + 5] = s5;
        out[i + 6] = s6;
        out[i + 7] = s7;
    }
    for (; i < n; i++) {
        float s = 0;
        for (size_t j = 0; j < d; j++)
            s += q[j] * rows[i][j];
        out[i] = s;
    }
}

int qscan_ip_seq_matches(float (*ip)(const float *a, const float *b, size_t d))
{
    enum { D = 384, N = 16 };
    float x[D], y[N][D], got[N];
    const float *rows[N];
    uint32_t r = 2463534242u; /* fixed values in (-1, 1) */
    for (size_t i = 0; i < D + N * D; i++) {
        const float v = (float)((double)sbert_util_xorshift32(&r) / 2147483648.0 - 1.0);
        if (i < D)
            x[i] = v;
        else
            y[(i - D) / D][(i - D) % D] = v;
    }
    for (int i = 0; i < N; i++)
        rows[i] = y[i];
    qscan_ip_seq(x, rows, N, D, got);
    for (int i = 0; i < N; i++) {
        const float want = ip(x, y[i], D);
        if (memcmp(&want, &got[i], sizeof want) != 0) return 0;
    }
    return 1;
}
