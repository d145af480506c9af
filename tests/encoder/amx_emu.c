/*
 * A plain-C model of ldtilecfg, tilezero, tileloadd, tdpbssd, tilestored and tilerelease (palette
 * 1), after the Intel SDM's descriptions (vol. 2, "Intel AMX instructions"): the state is eight
 * tiles of 16 rows x 64 bytes, each with the rows and bytes per row (colsb) of the last loaded
 * configuration, and only those rows and bytes are read, written or computed; the rest reads as
 * zero. The faults the SDM lists for these instructions are checked, so a body that uses a tile it
 * did not configure, mismatched shapes or a bad configuration fails here as it would there.
 * What it cannot show: speed, and anything about the real intrinsics' code generation.
 */
#include "amx_emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TILES = 8, MAX_ROWS = 16, MAX_COLSB = 64 };

static _Thread_local struct {
    int configured; /* TILES_CONFIGURED */
    int start_row;
    int rows[TILES], colsb[TILES];
    uint8_t t[TILES][MAX_ROWS][MAX_COLSB];
    long ldtilecfg; /* instructions so far, kept across the init state */
} st;

static void fault(const char *insn, const char *exc, const char *why, int tile)
{
    fprintf(stderr, "amx_emu: %s would raise %s: %s (tmm%d)\n", insn, exc, why, tile);
    abort();
}

/* TILERELEASE, and LDTILECFG of palette 0: the init state. */
static void tile_init(void)
{
    const long n = st.ldtilecfg;
    memset(&st, 0, sizeof st);
    st.ldtilecfg = n;
}

static void emu_ldtilecfg(const void *cfg)
{
    uint8_t b[64];
    memcpy(b, cfg, sizeof b);
    st.ldtilecfg++;
    if (b[0] == 0) {
        tile_init();
        return;
    }
    if (b[0] != 1) fault("ldtilecfg", "#GP", "unsupported palette", -1);
    for (int i = 2; i < 16; i++)
        if (b[i]) fault("ldtilecfg", "#GP", "reserved byte set", -1);
    for (int i = 16 + 2 * TILES; i < 48; i++) /* colsb of tiles 8-15 */
        if (b[i]) fault("ldtilecfg", "#GP", "colsb of a tile past tmm7", -1);
    for (int i = 48 + TILES; i < 64; i++) /* rows of tiles 8-15 */
        if (b[i]) fault("ldtilecfg", "#GP", "rows of a tile past tmm7", -1);
    int rows[TILES], colsb[TILES];
    for (int t = 0; t < TILES; t++) {
        colsb[t] = b[16 + 2 * t] | b[17 + 2 * t] << 8;
        rows[t] = b[48 + t];
        if (colsb[t] > MAX_COLSB) fault("ldtilecfg", "#GP", "colsb > 64", t);
        if (rows[t] > MAX_ROWS) fault("ldtilecfg", "#GP", "rows > 16", t);
        if (!rows[t] != !colsb[t]) fault("ldtilecfg", "#GP", "rows or colsb alone zero", t);
    }
    tile_init();
    st.configured = 1;
    st.start_row = b[1];
    memcpy(st.rows, rows, sizeof rows);
    memcpy(st.colsb, colsb, sizeof colsb);
}

/* A tile operand: configured, and (for loads, stores and products) whole dwords per row. */
static void check_tile(const char *insn, int t, int dwords)
{
    if (!st.configured) fault(insn, "#UD", "tiles not configured", t);
    if (t < 0 || t >= TILES || !st.rows[t]) fault(insn, "#UD", "tile not configured", t);
    if (dwords && st.colsb[t] % 4) fault(insn, "#UD", "colsb not a multiple of 4", t);
}

static void emu_tilezero(int t)
{
    check_tile("tilezero", t, 0);
    memset(st.t[t], 0, sizeof st.t[t]);
}

/* Row r of the memory operand is at base + r * stride (tileloadd/tilestored's sibmem). */
static void emu_tileloadd(int t, const void *base, long stride)
{
    check_tile("tileloadd", t, 1);
    if (st.start_row >= st.rows[t]) fault("tileloadd", "#UD", "start_row >= rows", t);
    for (int r = st.start_row; r < MAX_ROWS; r++) {
        memset(st.t[t][r], 0, MAX_COLSB);
        if (r < st.rows[t])
            memcpy(st.t[t][r], (const uint8_t *)base + (ptrdiff_t)r * stride, (size_t)st.colsb[t]);
    }
    st.start_row = 0;
}

static void emu_tilestored(int t, void *base, long stride)
{
    check_tile("tilestored", t, 1);
    if (st.start_row >= st.rows[t]) fault("tilestored", "#UD", "start_row >= rows", t);
    for (int r = st.start_row; r < st.rows[t]; r++)
        memcpy((uint8_t *)base + (ptrdiff_t)r * stride, st.t[t][r], (size_t)st.colsb[t]);
    st.start_row = 0;
}

/*
 * tdpbssd c, a, b: for m < rows(c), n < colsb(c) / 4, k < rows(b):
 * c.dword[m][n] += sum over i < 4 of s8 a.byte[m][4k + i] * s8 b.byte[k][4n + i], wrapping in
 * int32; the bytes of c past its rows and colsb are zeroed.
 */
static void emu_tdpbssd(int c, int a, int b)
{
    if (c == a || c == b || a == b) fault("tdpbssd", "#UD", "operands not distinct", c);
    check_tile("tdpbssd", c, 1);
    check_tile("tdpbssd", a, 1);
    check_tile("tdpbssd", b, 1);
    if (st.colsb[c] != st.colsb[b]) fault("tdpbssd", "#UD", "colsb(c) != colsb(b)", c);
    if (st.rows[c] != st.rows[a]) fault("tdpbssd", "#UD", "rows(c) != rows(a)", c);
    if (st.colsb[a] != 4 * st.rows[b]) fault("tdpbssd", "#UD", "colsb(a) != 4 rows(b)", a);
    const int N = st.colsb[c] / 4, Kd = st.rows[b];
    for (int m = 0; m < st.rows[c]; m++) {
        for (int n = 0; n < N; n++) {
            uint32_t acc;
            memcpy(&acc, &st.t[c][m][4 * n], 4);
            for (int k = 0; k < Kd; k++)
                for (int i = 0; i < 4; i++)
                    acc += (uint32_t)((int32_t)(int8_t)st.t[a][m][4 * k + i] *
                                      (int8_t)st.t[b][k][4 * n + i]);
            memcpy(&st.t[c][m][4 * n], &acc, 4);
        }
        memset(&st.t[c][m][st.colsb[c]], 0, (size_t)(MAX_COLSB - st.colsb[c]));
    }
    for (int m = st.rows[c]; m < MAX_ROWS; m++)
        memset(st.t[c][m], 0, MAX_COLSB);
    st.start_row = 0;
}

static void emu_tilerelease(void)
{
    tile_init();
}

#define AMX_LOADCFG(cfg) emu_ldtilecfg(cfg)
#define AMX_ZERO(t) emu_tilezero(t)
#define AMX_LOAD(t, p, stride) emu_tileloadd(t, p, (long)(stride))
#define AMX_DPBSSD(c, a, b) emu_tdpbssd(c, a, b)
#define AMX_STORE(t, p, stride) emu_tilestored(t, p, (long)(stride))
#define AMX_RELEASE() emu_tilerelease()
#define AMX_BODY amx_emu_body
#include "qgemm_amx_body.h"

void amx_emu_qgemm(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                   int n1, int32_t *c, int ldc)
{
    amx_emu_body(a, lda, m, w, n0, n1, c, ldc);
}

int amx_emu_configured(void)
{
    return st.configured;
}

long amx_emu_ldtilecfg_count(void)
{
    return st.ldtilecfg;
}
