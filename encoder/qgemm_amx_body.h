/*
 * The AMX int8 kernel's body (quant.h's sbert_qgemm_fn contract), written once in terms of six
 * tile operations that the including file defines:
 *
 *   AMX_LOADCFG(cfg)        ldtilecfg: load a 64-byte tile configuration (zeroes every tile)
 *   AMX_ZERO(t)             tilezero tmm<t>
 *   AMX_LOAD(t, p, stride)  tileloadd tmm<t>, rows x colsb bytes from p, stride bytes apart
 *   AMX_DPBSSD(c, a, b)     tdpbssd tmm<c> += tmm<a> (s8) . tmm<b> (s8), int32
 *   AMX_STORE(t, p, stride) tilestored: rows x colsb bytes of tmm<t> to p, stride bytes apart
 *   AMX_RELEASE()           tilerelease
 *
 * (t, c, a, b: literal tile numbers, which the instructions encode.) qgemm_amx.c defines them as
 * the compiler's intrinsics; the encoder test defines them as a plain-C model of the instructions
 * (tests/encoder/amx_emu.c), so this very code is checked against the scalar kernel on machines
 * without AMX. Then it defines AMX_BODY as the function's name and includes this file.
 *
 * Tiles: C (int32 sums) tmm0 = rows 0-15 x panel 0, tmm1 = rows 0-15 x panel 1, tmm2 and tmm3
 * the same for rows 16-31; A (16 rows x 64 k of activations) tmm4 for rows 0-15, tmm5 for rows
 * 16-31; B (64 k x 16 channels) tmm6 for panel 0, tmm7 for panel 1. A B tile is 16 k-groups of
 * one packed panel as they lie in memory ([k/4][16][4], quant.h): 16 rows of 64 bytes, stride 64,
 * which is exactly tdpbssd's B layout. Activations and weights are both s8 in [-127, 127], so
 * tdpbssd's s8 x s8 needs neither the u8 offset nor sbert_qweight.comp.
 *
 * Remainders: a block of fewer than 32 rows gets a configuration whose A and C tiles have that
 * many rows (tmm2, tmm3, tmm5 left unconfigured when it has 16 or fewer); an odd last panel
 * leaves tmm1, tmm3 and tmm7 unused; k past the last multiple of 64 (k is a multiple of 4) is
 * copied into zero-padded 64-byte rows, since a configuration cannot change inside a sum
 * (ldtilecfg zeroes the tiles) and a full-width load past k could read past the buffers.
 */
#ifndef SBERT_QGEMM_AMX_BODY_H
#define SBERT_QGEMM_AMX_BODY_H

#include "quant.h"

#include <string.h>

/* Palette 1's configuration, as ldtilecfg reads it (Intel SDM, LDTILECFG). */
struct amx_tilecfg {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};
_Static_assert(sizeof(struct amx_tilecfg) == 64, "ldtilecfg reads 64 bytes");

/* r0 rows (1..16) in the first row block, r1 (0..16) in the second. */
static void amx_config(struct amx_tilecfg *cfg, int r0, int r1)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->palette_id = 1;
    for (int t = 0; t < 8; t++) {
        const int blk = t == 2 || t == 3 || t == 5; /* the second row block's tiles */
        const int rows = t >= 6 ? 16 : blk ? r1 : r0;
        cfg->rows[t] = (uint8_t)rows;
        cfg->colsb[t] = rows ? 64 : 0;
    }
}

/* One 64-k step of the 2 x 2 C tiles: a (row block 0; block 1 is 16 rows further) times b
 * (panel 0; panel 1 is bstride further). */
static inline __attribute__((always_inline)) void amx_step(const int8_t *a, size_t lda,
                                                           const int8_t *b, size_t bstride,
                                                           int two_blocks, int two_panels)
{
    AMX_LOAD(4, a, lda);
    AMX_LOAD(6, b, 64);
    AMX_DPBSSD(0, 4, 6);
    if (two_panels) {
        AMX_LOAD(7, b + bstride, 64);
        AMX_DPBSSD(1, 4, 7);
    }
    if (two_blocks) {
        AMX_LOAD(5, a + 16 * lda, lda);
        AMX_DPBSSD(2, 5, 6);
        if (two_panels) AMX_DPBSSD(3, 5, 7);
    }
}

static void AMX_BODY(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                     int n1, int32_t *c, int ldc)
{
    const int K = w->k, KF = K / 64 * 64, KT = K - KF; /* whole 64-k steps, then KT more k */
    const size_t pstride = (size_t)SBERT_QPANEL * K, cstride = (size_t)ldc * sizeof *c;
    _Alignas(64) struct amx_tilecfg cfg;
    _Alignas(64) int8_t atail[32][64]; /* the KT tail of each row, zero-padded */
    _Alignas(64) int8_t btail[2][16][64];
    if (KT) {
        memset(atail, 0, sizeof atail);
        memset(btail, 0, sizeof btail);
    }
    int cfg_r0 = -1, cfg_r1 = -1;
    for (int i = 0; i < m; i += 32) {
        const int r0 = m - i < 16 ? m - i : 16;
        const int r1 = m - i <= 16 ? 0 : m - i - 16 < 16 ? m - i - 16 : 16;
        if (r0 != cfg_r0 || r1 != cfg_r1) {
            amx_config(&cfg, r0, r1);
            AMX_LOADCFG(&cfg);
            cfg_r0 = r0;
            cfg_r1 = r1;
        }
        const int8_t *ai = a + (size_t)i * lda;
        for (int r = 0; KT && r < r0 + r1; r++)
            memcpy(atail[r], ai + (size_t)r * lda + KF, (size_t)KT);
        for (int j = n0; j < n1; j += 2 * SBERT_QPANEL) {
            const int two = j + SBERT_QPANEL < n1;
            const int8_t *b = w->w + (size_t)j * K;
            AMX_ZERO(0);
            if (two) AMX_ZERO(1);
            if (r1) AMX_ZERO(2);
            if (r1 && two) AMX_ZERO(3);
            for (int kk = 0; kk < KF; kk += 64)
                amx_step(ai + kk, lda, b + (size_t)kk * SBERT_QPANEL, pstride, r1 > 0, two);
            if (KT) {
                /* KT / 4 k-groups of 64 bytes: KT * 16 bytes of each panel */
                memcpy(btail[0], b + (size_t)KF * SBERT_QPANEL, (size_t)KT * SBERT_QPANEL);
                if (two)
                    memcpy(btail[1], b + pstride + (size_t)KF * SBERT_QPANEL,
                           (size_t)KT * SBERT_QPANEL);
                amx_step(&atail[0][0], 64, &btail[0][0][0], sizeof btail[0], r1 > 0, two);
            }
            int32_t *ci = c + (size_t)i * ldc + (j - n0);
            AMX_STORE(0, ci, cstride);
            if (two) AMX_STORE(1, ci + SBERT_QPANEL, cstride);
            if (r1) AMX_STORE(2, ci + (size_t)16 * ldc, cstride);
            if (r1 && two) AMX_STORE(3, ci + (size_t)16 * ldc + SBERT_QPANEL, cstride);
        }
    }
    if (cfg_r0 >= 0) AMX_RELEASE();
}

#endif
