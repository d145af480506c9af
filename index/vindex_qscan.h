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
 * scores q_int8 . sign(x) (asymmetric: the query keeps its int8 codes, which ranks far better than
 * a Hamming distance of two sign vectors), keeps qscan_binary_cands_for() candidates and re-ranks
 * those exactly.
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

/* n sums of the query codes q over the set bits of rows b (n * ((d + 7) / 8) bytes, bit j of a
 * row in byte j / 8, bit j % 8; bits past d zero): the binary first stage's score, q . sign(x)
 * = 2 * sum - sum(q), so it ranks as q . sign(x). Every kernel returns the same exact sums. */
typedef void (*qscan_bits_fn)(const int8_t *q, const uint8_t *b, size_t n, size_t d, int32_t *out);

void qscan_bits_scalar(const int8_t *q, const uint8_t *b, size_t n, size_t d, int32_t *out);
void qscan_bits_avx2(const int8_t *q, const uint8_t *b, size_t n, size_t d, int32_t *out);
void qscan_bits_avx512vnni(const int8_t *q, const uint8_t *b, size_t n, size_t d, int32_t *out);
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
/* Bytes of sign bits a row. */
#define QSCAN_BPR(d) (((d) + 7) / 8)

struct qscan {
    int8_t *codes; /* cap * dim */
    float *scale;  /* cap */
    uint8_t *bits; /* cap * QSCAN_BPR(dim): bit j set when code j > 0 (the binary stage) */
    size_t n, cap;
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

/* What a quantised search reads: the copy, the exact vectors and labels it mirrors (position
 * order, borrowed from the FAISS index), and the kernel. */
struct qscan_view {
    const struct qscan *q;
    const float *xb;                                       /* n * d exact vectors */
    const int64_t *ids;                                    /* n labels */
    float (*ip)(const float *a, const float *b, size_t d); /* the exact inner product */
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
