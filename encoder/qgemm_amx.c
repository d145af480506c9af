/*
 * The AMX int8 kernel (compiled with -mamx-tile -mamx-int8, chosen at run time where quant.c's
 * probe finds AMX-TILE and AMX-INT8, the OS's XTILEDATA state, and the process's permission).
 *
 * Why: one tdpbssd is a 16 x 16 x 64 s8 product into int32; on paper (Intel's figures) a core
 * does 1024 int8 multiply-adds a cycle with AMX against 128 with AVX512-VNNI. Not measured here:
 * the machines this was written on have no AMX. The packed weights are already in tdpbssd's B
 * layout (qgemm_amx_body.h says how), and the sums are exact, so the results are the scalar
 * kernel's bit for bit and mixing kernels per call changes nothing.
 *
 * Permission: Linux gives a process AMX's 8 KiB of tile state only after
 * arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA); a tile instruction before it faults.
 * quant.c asks once per process, in sbert_qisa_available(), which every way to this kernel passes
 * through. The tile configuration is per thread: each call loads its own and releases the tiles
 * when done, so whichever pool thread runs it, the state is right and nothing is left held.
 */
#include "quant.h"

#include <immintrin.h>

/*
 * Below this many rows the AVX512-VNNI kernel runs instead: a tile needs 16 rows to be full, and
 * a query (batch 1, ~10-30 token rows) would pay the configuration and half-empty tiles. 32 is a
 * guess, not a measurement (no AMX machine here): a number to tune on one.
 */
enum { AMX_MIN_ROWS = 32 };

/*
 * gcc 12's tile intrinsics are asm statements that tell the compiler nothing of the memory they
 * read (_tile_loadd names only the address register; _tile_loadconfig claims 8 of the 64 bytes),
 * so without a barrier the stores that fill the configuration and the zero-padded tails could be
 * moved past, or dropped before, the instruction that reads them.
 */
#define AMX_BARRIER() __asm__ volatile("" ::: "memory")
#define AMX_LOADCFG(cfg)                                                                           \
    do {                                                                                           \
        AMX_BARRIER();                                                                             \
        _tile_loadconfig(cfg);                                                                     \
    } while (0)
#define AMX_ZERO(t) _tile_zero(t)
#define AMX_LOAD(t, p, stride)                                                                     \
    do {                                                                                           \
        AMX_BARRIER();                                                                             \
        _tile_loadd(t, p, (long)(stride));                                                         \
    } while (0)
#define AMX_DPBSSD(c, a, b) _tile_dpbssd(c, a, b)
#define AMX_STORE(t, p, stride) _tile_stored(t, p, (long)(stride))
#define AMX_RELEASE() _tile_release()
#define AMX_BODY amx_tiles
#include "qgemm_amx_body.h"

void sbert_qgemm_amx(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                     int n1, int32_t *c, int ldc)
{
    if (m < AMX_MIN_ROWS)
        sbert_qgemm_avx512vnni(a, lda, m, w, n0, n1, c, ldc);
    else
        amx_tiles(a, lda, m, w, n0, n1, c, ldc);
}
