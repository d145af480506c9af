/*
 * The AMX kernel's body (encoder/qgemm_amx_body.h) built on a plain-C model of the six tile
 * instructions it uses (amx_emu.c), so that its tiling, remainders and addressing are checked on
 * machines without AMX. Tests only; one model state per thread, as the tiles are per thread.
 */
#ifndef SBERT_TEST_AMX_EMU_H
#define SBERT_TEST_AMX_EMU_H

#include "quant.h"

/* The AMX body (sbert_qgemm_fn's contract, any m >= 0), every tile instruction emulated. An
 * instruction that would fault on the hardware (#GP, #UD) prints why and aborts. */
void amx_emu_qgemm(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                   int n1, int32_t *c, int ldc);

/* 1 while this thread's emulated tiles are configured (an ldtilecfg not yet released). */
int amx_emu_configured(void);

/* ldtilecfg instructions emulated so far on this thread. */
long amx_emu_ldtilecfg_count(void);

#endif
