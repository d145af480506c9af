/*
 * vindex_shim.h — private to the vindex files (vindex_impl.h): the parts of FAISS 1.7.3 its C API
 * does not expose, implemented in C++ (vindex_shim.cpp) and exported with C linkage.
 *
 * What the C API lacks: search with SearchParameters (an IDSelector, efSearch, nprobe per call);
 * access to IndexIDMap2's id_map/rev_map (label <-> internal position), and to a flat index's raw
 * vectors. Note that IndexIDMap(2)::search in 1.7.3 throws on any SearchParameters, so a filtered
 * search of an IDMap2-wrapped index goes to the inner index with a selector over internal
 * positions and maps the result positions back to labels here.
 *
 * Every function catches all C++ exceptions; none throws. Thread safety: the read functions may
 * run concurrently on one index; none may run concurrently with a write to it.
 */
#ifndef SBERT_VINDEX_SHIM_H
#define SBERT_VINDEX_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "Index_c.h"
#include "vindex.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the index is laid out: an IndexIDMap2 over a Flat or HNSW index, or a bare IndexIVF. */
enum { VSHIM_IDMAP = 0, VSHIM_IVF = 1 };

/* Which entries a search may return: not dead (by internal position, IDMap2 only; dead may be
 * NULL) and passing filter (may be NULL). */
struct vshim_select {
    const uint8_t *dead;
    size_t dead_len;
    const struct vindex_filter *filter;
};

/*
 * Top-k inner-product search. layout is VSHIM_IDMAP or VSHIM_IVF. ef_search applies to an HNSW
 * inner index, nprobe to IVF. exhaustive = 1 asks for the exact fallback: for IDMAP an exact scan
 * of the stored vectors (only the filter's labels when it has a list), for IVF a search of all
 * lists. sel may be NULL. Writes nq * k labels (-1 for empty) and scores (-INFINITY for empty).
 * Returns 0, or VINDEX_EFAISS / VINDEX_ENOMEM with the reason in errbuf.
 */
int vshim_search(const FaissIndex *idx, int layout, const float *q, size_t nq, size_t k,
                 int ef_search, int nprobe, const struct vshim_select *sel, int exhaustive,
                 int64_t *labels, float *scores, char *errbuf, size_t errlen);

/* From this many unfiltered queries at once, a Flat search is one matrix product (BLAS) in the
 * calling thread rather than a scan per query (sets FAISS's process-wide
 * distance_compute_blas_threshold to it on first use). */
#define VSHIM_BLAS_MIN_QUERIES 4

/* Fewer unfiltered queries over a Flat index of at least two parts of this many vectors are
 * scanned in parts by the OpenMP threads (a scan is bound by one core's memory bandwidth). */
#define VSHIM_SPLIT_MIN_PART 16384

/* Label lists up to this length are answered by an exact scan of the list, also for HNSW. */
#define VSHIM_SHORT_LIST 4096

/* IDMAP only: the fraction of about nsample evenly spaced live positions that pass s (1.0 when
 * s has no filter). Calls the filter up to nsample times. */
double vshim_selectivity(const FaissIndex *idx, const struct vshim_select *s, size_t nsample);

/* IDMAP only: the internal position of label, or -1 when the label is not in the rev_map. */
int64_t vshim_idmap_position(const FaissIndex *idx, int64_t label);

/* The labels of all ntotal entries, in internal position order for IDMAP (so out[pos] is the
 * label at pos) and in inverted-list order for IVF. out has room for ntotal labels. */
int vshim_labels(const FaissIndex *idx, int layout, int64_t *out, char *errbuf, size_t errlen);

/*
 * IDMAP over Flat only (KIND_FLAT, and IVF before training): removes the labels present in the
 * rev_map, each in O(dim): the entry at the last internal position moves into the removed one's
 * (vector, id_map, rev_map) and ntotal shrinks by one. So positions are a permutation that
 * deletes reorder; nothing outside the shim may keep one across a write. Labels not present, and
 * repeats, are skipped; *removed receives how many were removed. Nothing allocates or throws.
 * Returns 0; VINDEX_EFAISS when idx is not an IDMap2 over an IndexFlat (nothing changed), or
 * when its id_map and rev_map disagree (the labels before the bad one are removed, *removed says
 * how many). The vectors' capacity is kept (as FAISS's remove_ids keeps it).
 */
int vshim_flat_remove(FaissIndex *idx, const int64_t *labels, size_t n, size_t *removed,
                      char *errbuf, size_t errlen);

/* IDMAP over Flat only: a borrowed pointer to the ntotal * d stored floats (valid until the next
 * write to idx), or NULL when the inner index is not a flat one. */
const float *vshim_flat_vectors(const FaissIndex *idx);

/* IDMAP only: a borrowed pointer to the ntotal labels in internal position order (valid until the
 * next write to idx), or NULL for another layout. */
const int64_t *vshim_idmap_ids(const FaissIndex *idx);

/* FAISS's fp32 inner product (fvec_inner_product): the one its exact Flat scan scores with, so a
 * re-rank with it returns the exact search's scores bit for bit. */
float vshim_inner_product(const float *a, const float *b, size_t d);

/* Sets efConstruction and the index's own efSearch on an IDMAP over HNSW, and gives it a storage
 * whose distances are computed with AVX2+FMA (where the CPU has them) and four independent sums
 * (same data and file format as FAISS's IndexFlat; see vindex_shim.cpp); no-op for other
 * indexes. Call it on every HNSW index created or loaded. Not concurrent with any other use of
 * idx. Returns 0 or VINDEX_ENOMEM (then idx is unchanged but for the ef values).
 * FAISS 1.7.3's HNSW::search sizes its candidate queue from the
 * index's hnsw.efSearch, not from SearchParametersHNSW::efSearch (that one only sets the stop
 * rule), so the configured efSearch must be stored in the index itself (measured: recall@10 0.91
 * at params efSearch 64 and 0.90 at 128 while the member stayed 16). */
int vshim_set_hnsw(FaissIndex *idx, int ef_construction, int ef_search, char *errbuf,
                   size_t errlen);

/* A snapshot body being checked: len bytes at body, in blocks of block bytes (the last one
 * shorter), hashes[i] the vindex_hash64() of block i (vindex_hash.h). checked counts the blocks
 * checked so far (in order); bad turns 1 at the first mismatch. */
struct vshim_body {
    const unsigned char *body;
    size_t len;
    const uint64_t *hashes;
    size_t block;
    size_t checked;
    int bad;
};

/* Checks the blocks holding bytes [0, end). Returns 0 or VINDEX_ECORRUPT. */
int vshim_body_check(struct vshim_body *b, size_t end);

/* Copies len bytes at offset off of the body into dst, checking each block just before its bytes
 * are copied (so the body is read from memory once). Returns 0, or VINDEX_ECORRUPT (a block
 * fails, or the range passes the end of the body). */
int vshim_body_copy(struct vshim_body *b, void *dst, size_t off, size_t len);

/*
 * Reads the FAISS index stored in the body's first index_len bytes through vshim_body_copy(), so
 * FAISS parses only checked bytes. Returns 0 and *out (owned by the caller), VINDEX_ECORRUPT (a
 * block fails its hash, or FAISS stopped short of index_len), VINDEX_EFAISS (FAISS refused a
 * sound body) or VINDEX_ENOMEM; *out is NULL on failure. The rest of the body is not checked.
 */
int vshim_read_index(struct vshim_body *b, size_t index_len, FaissIndex **out, char *errbuf,
                     size_t errlen);

/*
 * Reads an IndexIDMap2 over an IndexFlatIP of dim d with n entries from the body: n labels (i64,
 * position order) at offset off, then n * d vectors (f32), each block checked before it is
 * copied. Returns 0 and *out (owned by the caller), VINDEX_ECORRUPT, VINDEX_ENOMEM or
 * VINDEX_EFAISS; *out is NULL on failure.
 */
int vshim_flat_read(int d, size_t n, struct vshim_body *b, size_t off, FaissIndex **out,
                    char *errbuf, size_t errlen);

/* An estimate of idx's heap use: codes or vectors, HNSW links, id maps, IVF centroids. */
size_t vshim_memory_bytes(const FaissIndex *idx);

/* 1 when idx is an IDMap2 over an HNSW index. */
int vshim_is_hnsw(const FaissIndex *idx);

#ifdef __cplusplus
}
#endif

#endif
