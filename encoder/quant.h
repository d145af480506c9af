/*
 * quant.h — int8 weights, per-token activation quantisation and the int8 matrix kernels, private
 * to the encoder (quant.c packs and dispatches, qgemm_*.c compute).
 *
 * Scheme (sbert.h, SBERT_PRECISION_INT8): weights are s8, symmetric, one scale per output
 * channel; activations are s8, symmetric, one scale per token row, so a row's result depends on
 * that row alone. Both sides are clamped to [-127, 127]: it is what lets the AVX2 kernel's
 * u8 x s8 pair sums (vpmaddubsw) stay below int16 saturation. Every kernel returns the exact
 * int32 sums, so every ISA gives bit-identical results and the scalar kernel is the reference.
 *
 * Thread safety: a packed sbert_qweight is read-only; kernels may run on it from any number of
 * threads. The ISA choice is made once, at load (the AMX kernel still picks AVX512-VNNI per call
 * for few rows).
 */
#ifndef SBERT_QUANT_H
#define SBERT_QUANT_H

#include <stddef.h>
#include <stdint.h>

enum {
    SBERT_QISA_SCALAR = 0,     /* portable C: the reference */
    SBERT_QISA_AVX2 = 1,       /* sign trick + vpmaddubsw + vpmaddwd */
    SBERT_QISA_AVXVNNI = 2,    /* vpdpbusd (VEX) on 256-bit vectors, A offset to u8 and corrected */
    SBERT_QISA_AVX512VNNI = 3, /* vpdpbusd on 512-bit vectors, A offset to u8 and corrected */
    SBERT_QISA_AMX = 4,        /* tdpbssd on 16 x 64-byte tiles (s8 x s8) for 32 rows or more,
                                  AVX512-VNNI below; needs the process's AMX permission, which
                                  sbert_qisa_available() asks for */
    SBERT_QISA_N               /* in order of preference: sbert_qisa_best() takes the last one */
};

enum { SBERT_QPANEL = 16 }; /* output channels per packed panel */

/*
 * One linear layer's weights [n x k] (torch layout), packed for every kernel alike: panels of
 * SBERT_QPANEL output channels, each [k/4][16][4] bytes (4 consecutive k of one channel are one
 * 32-bit lane, as vpdpbusd and vpmaddubsw + vpmaddwd consume them). Channels past n are zero.
 */
struct sbert_qweight {
    int n, k, np;      /* np: n rounded up to SBERT_QPANEL */
    int8_t *w;         /* owned: np * k bytes, 64-byte aligned */
    float *scale;      /* owned [np]: channel j's weight is w * scale[j] */
    int32_t *comp;     /* owned [np]: 128 * sum_k w[j][k], the correction for A offset to u8 */
    const float *bias; /* borrowed [n] */
    float *smooth;     /* owned [k] or NULL: the input's channel kk is multiplied by smooth[kk]
                          before quantisation (the weights were divided by it: SmoothQuant) */
};

/*
 * Quantises and packs w ([n x k] fp32, k a multiple of 4). amax ([k] or NULL) is the largest
 * |input| seen on each input channel: when given, outlier channels are smoothed (SmoothQuant,
 * alpha 1/2: channel kk's inputs are divided and its weights multiplied by
 * sqrt(amax[kk] / max_j |w[j][kk]|), which leaves the product unchanged and spreads the range
 * between the two sides). Returns 0 or SBERT_ENOMEM / SBERT_EINVAL.
 */
int sbert_qweight_init(struct sbert_qweight *q, const float *w, const float *bias, int n, int k,
                       const float *amax);
void sbert_qweight_free(struct sbert_qweight *q);

/* Quantises one row of k floats into q (s8 in [-127, 127]) and returns its scale (0 for an
 * all-zero row): x[i] ~ q[i] * scale. */
float sbert_quantize_row(const float *x, int k, int8_t *q);

/* sbert_quantize_row() of x[i] * mul[i] (mul NULL: of x). */
float sbert_quantize_row_mul(const float *x, const float *mul, int k, int8_t *q);

/*
 * c[i * ldc + (j - n0)] = sum over kk < w->k of a[i * lda + kk] * W[j][kk], for rows i < m and
 * channels n0 <= j < n1; n0 and n1 are multiples of SBERT_QPANEL and n1 <= w->np. a's values must
 * lie in [-127, 127].
 */
typedef void (*sbert_qgemm_fn)(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w,
                               int n0, int n1, int32_t *c, int ldc);

void sbert_qgemm_scalar(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                        int n1, int32_t *c, int ldc);
void sbert_qgemm_avx2(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                      int n1, int32_t *c, int ldc);
void sbert_qgemm_avxvnni(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                         int n1, int32_t *c, int ldc);
/* The AVX-VNNI kernel's source compiled with EVEX-256 vpdpbusd (AVX512-VNNI + VL) instead: linked
 * into tests/encoder's test_qgemm only, to check that source where AVX-VNNI is missing. */
void sbert_qgemm_avxvnni_evex(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w,
                              int n0, int n1, int32_t *c, int ldc);
void sbert_qgemm_avx512vnni(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w,
                            int n0, int n1, int32_t *c, int ldc);
void sbert_qgemm_amx(const int8_t *a, size_t lda, int m, const struct sbert_qweight *w, int n0,
                     int n1, int32_t *c, int ldc);

/*
 * Runs fn and the scalar kernel on w's first (up to 4) panels with 40 rows of fixed pseudo-random
 * activations in [-127, 127] (a 32-row block and a tail for AMX, 4-row tiles and a remainder for
 * the others) and returns 1 when every sum agrees, 0 when one differs, or SBERT_ENOMEM. Why: the
 * AMX and AVX-VNNI kernels were checked on emulated tiles and an EVEX twin before any CPU with
 * those instructions ran them; a kernel that disagrees on the CPU at hand is not used (model.c).
 */
int sbert_qgemm_agrees(sbert_qgemm_fn fn, const struct sbert_qweight *w);

/* 1 when this CPU (and OS) can run isa's kernel. For SBERT_QISA_AMX it also asks Linux for the
 * process's permission to use the tile state (once per process; it is 1 only once granted), so
 * the AMX kernel may run only after this returned 1. Thread-safe. */
int sbert_qisa_available(int isa);
/* The fastest kernel this CPU can run. */
int sbert_qisa_best(void);
/* The fastest kernel this CPU can run of those before isa in the order of preference (scalar at
 * the least). */
int sbert_qisa_best_below(int isa);
/* "scalar", "avx2", "avxvnni", "avx512vnni", "amx"; NULL for an unknown isa. */
const char *sbert_qisa_name(int isa);
/* The isa named name, or -1. */
int sbert_qisa_from_name(const char *name);
/* isa's kernel (isa must be available). */
sbert_qgemm_fn sbert_qgemm_get(int isa);

#endif
