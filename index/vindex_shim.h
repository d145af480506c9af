/*
 * vindex_shim.h — private to index/vindex.c: the parts of FAISS 1.7.3 its C API does not expose,
 * implemented in C++ (vindex_shim.cpp) and exported with C linkage.
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

/* IDMAP over Flat only: a borrowed pointer to the ntotal * d stored floats (valid until the next
 * write to idx), or NULL when the inner index is not a flat one. */
const float *vshim_flat_vectors(const FaissIndex *idx);

/* Sets efConstruction and the index's own efSearch on an IDMAP over HNSW; no-op otherwise. Not
 * concurrent with searches. FAISS 1.7.3's HNSW::search sizes its candidate queue from the
 * index's hnsw.efSearch, not from SearchParametersHNSW::efSearch (that one only sets the stop
 * rule), so the configured efSearch must be stored in the index itself (measured: recall@10 0.91
 * at params efSearch 64 and 0.90 at 128 while the member stayed 16). */
void vshim_set_hnsw(FaissIndex *idx, int ef_construction, int ef_search);

/* An estimate of idx's heap use: codes or vectors, HNSW links, id maps, IVF centroids. */
size_t vshim_memory_bytes(const FaissIndex *idx);

/* 1 when idx is an IDMap2 over an HNSW index. */
int vshim_is_hnsw(const FaissIndex *idx);

#ifdef __cplusplus
}
#endif

#endif
