/*
 * vindex_qscan.h — private to the vindex files: the quantised copy of a Flat index's vectors and
 * the search that scans it, then re-ranks its best candidates exactly (vindex_qscan.c; kernels in
 * vindex_qscan_{avx2,avxvnni,avx512}.c).
 *
 * Why: an exact Flat scan reads 4 * dim bytes a vector (1.5 KB at dim 384), so a query at 100k
 * vectors reads 154 MB and is bound by one core's memory bandwidth. The copy holds each vector as
 * dim int8 codes with one fp32 scale (symmetric, scale = max |x_i| / 127), a quarter of the bytes;
 * the query is quantised the same way and every row's integer dot product is exact, so every
 * kernel gives the same int32 (tests/vindex qscan_isa). The rerank best rows by the approximate
 * score (dot * row scale) are then scored with FAISS's own fp32 inner product over the exact
 * vectors, so the scores returned are the exact search's bits; only which rows reach the re-rank
 * is approximate.
 *
 * Binary first stage: from binary_min rows even the int8 codes are too many bytes for one query
 * (384 MB at 1M), so the scan reads one sign bit a dimension instead (48 bytes at dim 384) and
 * scores qb . sign(x), where qb is the query quantised to integers in [-QSCAN_BITS_QMAX,
 * QSCAN_BITS_QMAX] (asymmetric: the query keeps its magnitudes, which ranks far better than a
 * Hamming distance of two sign vectors), keeps qscan_binary_cands_for() candidates and re-ranks
 * those exactly.
 *
 * The bits are scored as FAISS's 4-bit "fast scan" scores PQ codes: rows sit in blocks of
 * QSCAN_BB (32), transposed so that one byte of the block holds one row's 8 bits of one octet of
 * dimensions, the 32 rows' bytes of an octet side by side. Per query, each group of 4 dimensions
 * gets a table of 16 entries (the sum of qb over the dimensions whose bit is set, biased to
 * unsigned); vpshufb then looks up 32 (AVX2) or 64 (AVX-512) rows' entries in one instruction and
 * adds them in 16-bit lanes, so there is no reduction across a register per row. qb's bound
 * keeps the sum of an octet's two entries within a byte (each entry in [0, 120]), so they are
 * added as bytes before the 16-bit step; qscan_stages.py measured the same recall@10 from [-15,
 * 15] as from the int8 query at 1M (0.998 from 500 candidates, 1.0 from 1000).
 *
 * Positions: row i of the copy is internal position i of the IndexIDMap2 over IndexFlat it
 * mirrors; vindex.c appends on add and mirrors vshim_flat_remove's swap-remove on remove, under the
 * index's write lock. Searches read it under the read lock.
 */
#ifndef SBERT_VINDEX_QSCAN_H
#define SBERT_VINDEX_QSCAN_H

#include <stddef.h>
#include <stdint.h>

#include "vindex.h"

/* Rows per thread of a search: a scan of fewer rows than this per thread uses fewer threads. */
#define QSCAN_PART_MIN 32768
/* Most threads one search uses. */
#define QSCAN_THREADS_MAX 8

/* The scan kernels, as SBERT_SCAN_ISA names them, in order of preference (the last available
 * one is the default). avxvnni has a dots kernel of its own and AVX2's bits kernel. */
enum { QSCAN_SCALAR = 0, QSCAN_AVX2 = 1, QSCAN_AVXVNNI = 2, QSCAN_AVX512VNNI = 3, QSCAN_NISA = 4 };

/* n dot products of the query codes q with rows x (n * d codes, row-major); codes are within
 * [-127, 127]. Every kernel returns the same exact sums. */
typedef void (*qscan_dots_fn)(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out);

/* The binary stage's query codes lie in [-QSCAN_BITS_QMAX, QSCAN_BITS_QMAX]. */
#define QSCAN_BITS_QMAX 15
/* Added to every table entry so that it is unsigned: entries lie in [0, 2 * QSCAN_BITS_BIAS]. */
#define QSCAN_BITS_BIAS (4 * QSCAN_BITS_QMAX)
/* Rows a block of the sign bits. */
#define QSCAN_BB 32
/* Octets of dimensions a row, rounded up to even (an AVX-512 load takes two octets of a block);
 * bytes a row of the sign bits. */
#define QSCAN_BOCT(d) ((((d) + 15) / 16) * 2)
/* Octets a kernel sums in 16-bit lanes before it widens them: a row gains at most 4 *
 * QSCAN_BITS_BIAS an octet, and an AVX-512 kernel adds the sums of two halves of a run. */
#define QSCAN_BITS_RUN 256
_Static_assert(QSCAN_BITS_RUN * 4 * QSCAN_BITS_BIAS <= 65535 && 4 * QSCAN_BITS_BIAS <= 255,
               "the binary stage's 16-bit and 8-bit sums are exact");
/* Bytes of a query's tables: 128 per two octets (see qscan_bits_lut). */
#define QSCAN_LUT_BYTES(d) (QSCAN_BOCT(d) * 64)

/* The binary stage's query codes: x quantised to [-QSCAN_BITS_QMAX, QSCAN_BITS_QMAX] with one
 * scale (as qscan_quantise, with fewer levels). */
void qscan_bits_quantise(const float *x, size_t d, int8_t *qb);

/*
 * The tables of query codes qb (d codes within [-QSCAN_BITS_QMAX, QSCAN_BITS_QMAX]) into lut
 * (QSCAN_LUT_BYTES(d) bytes). Group g of 4 dimensions (4g .. 4g + 3; past d the code is 0) is
 * nibble g % 2 of octet o = g / 2; its entry for nibble value v is QSCAN_BITS_BIAS plus the sum
 * of qb[4g + t] over the bits t set in v. The 16 entries are stored twice (both 128-bit lanes of
 * an AVX2 register), at lut + 128 * (o / 2) + 64 * (g % 2) + 32 * (o % 2): the 64 bytes of the
 * low nibbles of octets o and o + 1 (o even), then those of their high nibbles, as an AVX-512
 * register takes them.
 */
void qscan_bits_lut(const int8_t *qb, size_t d, uint8_t *lut);

/* n sums of the query codes over the set bits of n rows of sign bits b (the blocked layout of
 * struct qscan, from the start of a block; the last block may be partly filled), from the query's
 * tables lut: the binary stage's score, qb . sign(x) = 2 * sum - sum(qb), so it ranks as
 * qb . sign(x). Every kernel returns the same exact sums. */
typedef void (*qscan_bits_fn)(const uint8_t *lut, const uint8_t *b, size_t n, size_t d,
                              int32_t *out);

void qscan_bits_scalar(const uint8_t *lut, const uint8_t *b, size_t n, size_t d, int32_t *out);
void qscan_bits_avx2(const uint8_t *lut, const uint8_t *b, size_t n, size_t d, int32_t *out);
void qscan_bits_avx512vnni(const uint8_t *lut, const uint8_t *b, size_t n, size_t d, int32_t *out);
qscan_bits_fn qscan_bits_get(int isa);

void qscan_dots_scalar(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out);
void qscan_dots_avx2(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out);
void qscan_dots_avxvnni(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out);
/* The AVX-VNNI kernel's source compiled with EVEX-256 vpdpbusd (AVX512-VNNI + VL) instead: linked
 * into tests/vindex's test_qscan only, to check that source where AVX-VNNI is missing. */
void qscan_dots_avxvnni_evex(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out);
void qscan_dots_avx512vnni(const int8_t *q, const int8_t *x, size_t n, size_t d, int32_t *out);

/* The kernel's name ("scalar", "avx2", "avxvnni", "avx512vnni"), NULL for a bad isa. */
const char *qscan_isa_name(int isa);
/* 1 when this CPU (and OS) can run isa. */
int qscan_isa_available(int isa);
/* The kernel of this process: SBERT_SCAN_ISA when set, else the best the CPU has. Returns the isa,
 * or VINDEX_EINVAL with errbuf naming the variable when it names an unknown kernel or one this CPU
 * lacks. */
int qscan_isa_select(char *errbuf, size_t errlen);
qscan_dots_fn qscan_dots_get(int isa);

/* The copy. Zero-initialised: empty. */
struct qscan {
    int8_t *codes; /* cap * dim */
    float *scale;  /* cap */
    /* cap * QSCAN_BOCT(dim) bytes of sign bits (the binary stage): bit j of row i set when its
     * code j > 0, in byte QSCAN_BB * (QSCAN_BOCT(dim) * (i / QSCAN_BB) + j / 8) + i % QSCAN_BB,
     * bit j % 8. Bits past dim, and the rows of the last block past n, are zero. */
    uint8_t *bits;
    size_t n, cap; /* cap: a multiple of QSCAN_BB */
};

/* Quantises one vector of d floats into codes; returns its scale (0 for an all-zero vector). */
float qscan_quantise(const float *x, size_t d, int8_t *codes);

/* Makes room for want rows in all. Returns 0 or VINDEX_ENOMEM (the copy unchanged). */
int qscan_reserve(struct qscan *q, size_t d, size_t want);
/* Appends n rows quantised from x; the caller has reserved room. */
void qscan_append(struct qscan *q, size_t d, const float *x, size_t n);
/* Mirrors a swap-remove: the last row moves to pos, and the copy shrinks by one. */
void qscan_swap_remove(struct qscan *q, size_t d, size_t pos);
/* Replaces the contents with n rows quantised from x. Returns 0 or VINDEX_ENOMEM (then empty). */
int qscan_rebuild(struct qscan *q, size_t d, const float *x, size_t n);
void qscan_free(struct qscan *q);
size_t qscan_memory_bytes(const struct qscan *q, size_t d);

/* Candidates re-ranked exactly for a top-k: max(rerank, k) when rerank > 0, else the default. */
size_t qscan_rerank_for(size_t k, size_t rerank);
/* Candidates the binary stage keeps for a top-k (at least rerank, qscan_rerank_for's answer). */
size_t qscan_binary_cands_for(size_t k, size_t rerank);

/* The inner products of q with n rows of d floats into out, each summed as FAISS's reference loop
 * sums one (vindex_qscan_ip.c says why and how), several rows at a time. */
void qscan_ip_seq(const float *q, const float *const *rows, size_t n, size_t d, float *out);
/* 1 when ip gives qscan_ip_seq's bits on fixed random vectors (then it is FAISS's reference loop,
 * and qscan_ip_seq may stand for it), else 0. */
int qscan_ip_seq_matches(float (*ip)(const float *a, const float *b, size_t d));

/* What a quantised search reads: the copy, the exact vectors and labels it mirrors (position
 * order, borrowed from the FAISS index), and the kernel. */
struct qscan_view {
    const struct qscan *q;
    const float *xb;                                       /* n * d exact vectors */
    const int64_t *ids;                                    /* n labels */
    float (*ip)(const float *a, const float *b, size_t d); /* the exact inner product */
    int ip_seq; /* 1: ip is FAISS's reference loop, so the re-rank may use qscan_ip_seq */
    size_t d;
    qscan_dots_fn dots;
    qscan_bits_fn bits;
    size_t binary_min; /* from this many rows the scan is of the sign bits (SIZE_MAX: never) */
    int threads;       /* most threads, >= 1 */
};

/*
 * Top-k of nq queries: the rerank best rows passing filter->keep (filter may be NULL; label lists
 * are not handled here) by approximate score, re-ranked by exact score. Rows as vindex_search
 * writes them (-1 / -INFINITY for empty slots). Returns 0 or VINDEX_ENOMEM.
 */
int qscan_search(const struct qscan_view *v, const float *queries, size_t nq, size_t k,
                 size_t rerank, const struct vindex_filter *filter, int64_t *out_labels,
                 float *out_scores);

#endif
