/*
 * vindex.h — the vector index behind sbertd's store: a FAISS index built from a factory string,
 * inner product on L2-normalised vectors (so every score is a cosine in [-1, 1]), with 64-bit
 * labels chosen by the caller, deletes, filtered top-k search and checksummed snapshot files.
 *
 * Internal to index/: the store's coordinator (internal.h) is its only user, with tests/vindex and
 * bench/index. LMDB is the source of truth; this index is derived from it and can always be
 * rebuilt from the stored vectors.
 *
 * Index specs (FAISS factory strings; the metric is always inner product):
 *   "Flat"                exact search. Real deletes, each label O(dim) whatever the size of the
 *                         index (the last entry moves into the freed slot).
 *                         From params.qscan_min live vectors (default VINDEX_QSCAN_MIN) a search
 *                         without a label list scans an int8 copy of the vectors instead (a
 *                         quarter of the bytes; one scale per vector; kept in step by every add
 *                         and remove, derived again when a snapshot loads, so the snapshot format
 *                         is unchanged), keeps the params.qscan_rerank best rows by that
 *                         approximate score (default max(10 k, 100)) and scores those with the
 *                         exact fp32 inner product: the scores returned are exact (the same bits
 *                         as the exact scan of one query; eight rows at a time where the linked
 *                         FAISS's inner product is its sequential reference loop, as Debian's
 *                         is, vindex_qscan_ip.c), and a row holds the exact top k unless
 *                         one of them ranked below the re-rank cut in the int8 scan. Measured on
 *                         100k Tatoeba sentence embeddings (500 held-out sentences as queries):
 *                         recall@10 1.0 against the exact scan from a re-rank of 20 (0.99-0.995
 *                         at 10, from 5k to 1M vectors; bench/index/qscan_bench.c). The trade:
 *                         dim + 4 bytes more memory a vector, and the sign bits below (dim / 8
 *                         rounded up to an even number of bytes): 436 beside the 1,536 of fp32
 *                         at dim 384; and top k exact only up to that recall. qscan_min =
 *                         SIZE_MAX keeps every search exact. The scan runs on the CPUs of the
 *                         process's affinity mask (up to 8 threads, 32768 rows a thread at least)
 *                         with the best kernel the CPU has (AVX512-VNNI, AVX-VNNI, AVX2, scalar;
 *                         integer sums, the same in each); SBERT_SCAN_ISA=scalar|avx2|avxvnni|
 *                         avx512vnni forces one, and vindex_create() then fails with
 *                         VINDEX_EINVAL on a CPU without it (or whose sums disagree there with
 *                         the scalar kernel's, checked at create: a chosen kernel that disagrees
 *                         is passed over). vindex_info() names the kernel.
 *                         From params.qscan_binary_min vectors (default VINDEX_QSCAN_BINARY_MIN
 *                         with the avx2, avxvnni and avx512vnni kernels, never with scalar) the
 *                         scan reads one sign bit a dimension instead of the int8 codes (48
 *                         bytes a vector at dim 384, in blocks of 32 vectors scored 32 or 64 at
 *                         a time with vpshufb tables of the query quantised to [-15, 15]) and
 *                         re-ranks max(100 k, 1000) candidates exactly: recall@10 1.0 at 1M
 *                         (116k Tatoeba embeddings and 883k normalised sums of two of them, 200
 *                         queries: bench/index/qscan_stages.py; qscan_bench: 1.0 with both
 *                         kernels). Measured at 1M on 2 shared AMD EPYC cores (load 0.3-1.8;
 *                         bench/index/qscan_bench.c, one query at a time): p50 5.2 ms with
 *                         avx512vnni and 5.3 ms with avx2, against 15.2 and 13.9 ms for their
 *                         int8 scans and 175 ms for the exact scan. The bit scan is then bound by
 *                         memory bandwidth (48 MB a query; both kernels take the same time);
 *                         the rest is the exact re-rank of the 1000 candidates and their
 *                         selection.
 *   "HNSW<M>,Flat"        graph search (efSearch, efConstruction in the params). FAISS 1.7.3 cannot
 *                         remove from an HNSW graph, so a delete is a tombstone: the entry stays in
 *                         the graph, is never returned, and vindex_needs_rebuild() turns true when
 *                         tombstones pass params.rebuild_ratio of the entries. Rebuild from the
 *                         store's vectors (vindex_create + vindex_add + vindex_replace).
 *   "IVF<n>,Flat", "IVF<n>,SQ8", "IVF<n>,PQ<m>np" (and other IVF factory strings)
 *                         inverted lists (nprobe in the params). Untrained until enough vectors
 *                         exist: below params.train_min (default 39 * n) vectors are held in an
 *                         exact flat index; when the count reaches it, training runs on a copy in a
 *                         background thread while queries and writes go on against the flat index;
 *                         writes made meanwhile are replayed into the trained index, which then
 *                         replaces the flat one under the write lock. Real deletes (O(dim) a label
 *                         while flat; a trained IVF's scan every list, O(count) a call).
 *
 * Labels: any value >= 0. Adding a label that is present (live) is refused: an upsert is
 * vindex_remove() then vindex_add() of the new vector. Results use label -1 and score -INFINITY
 * for empty slots.
 *
 * Thread safety: a vindex has a reader-writer lock inside. Any number of threads may call
 * vindex_search(), vindex_count(), vindex_info() and vindex_snapshot_write() at once; vindex_add(),
 * vindex_remove() and vindex_replace() take the lock exclusively, so they wait for running
 * searches and block new ones for their duration (writes are serialised internally; a single
 * writer thread is still what the store should use, for ordering). vindex_free() must not race
 * with any other call on the same handle.
 *
 * Errors: functions that can fail return 0 (VINDEX_OK) or a negative VINDEX_E* code, and take an
 * optional errbuf (may be NULL) that receives a sentence with the detail, including FAISS's own
 * exception text where FAISS failed. This module never prints: it logs through params.log.
 */
#ifndef SBERT_VINDEX_H
#define SBERT_VINDEX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    VINDEX_OK = 0,
    VINDEX_EINVAL = -1,   /* bad argument: NULL pointer, dim mismatch, negative label, bad spec */
    VINDEX_ENOMEM = -2,   /* allocation failed */
    VINDEX_EFAISS = -3,   /* FAISS threw; errbuf holds its message */
    VINDEX_EIO = -4,      /* a snapshot file could not be written, synced, renamed or read */
    VINDEX_ECORRUPT = -5, /* a snapshot is truncated, has a bad magic or a checksum mismatch */
    VINDEX_EVERSION = -6, /* a snapshot has a format version this build does not read */
    VINDEX_ESPEC = -7,    /* a snapshot was written for another index spec or dimension */
    VINDEX_EEXIST = -8,   /* vindex_add(): a label is already present */
    VINDEX_ETHREAD = -9,  /* the training thread could not be started */
    VINDEX_ENOSPC = -10,  /* a snapshot could not be written: the disk is full */
};

/* Returns a static string describing err; never NULL. */
const char *vindex_strerror(int err);

enum { VINDEX_LOG_ERROR = 0, VINDEX_LOG_WARN = 1, VINDEX_LOG_INFO = 2, VINDEX_LOG_DEBUG = 3 };

/* A log sink; msg is valid only during the call. Called from the caller's threads and from the
 * IVF training thread, so it must be thread-safe. */
typedef void (*vindex_log_fn)(int level, const char *msg, void *user);

/* Snapshot file format version written by this build (the header carries it). */
#define VINDEX_SNAPSHOT_VERSION 2u

typedef struct vindex vindex;

struct vindex_params {
    const char *spec;     /* FAISS factory string, see above; copied. Default "Flat". */
    int dim;              /* vector dimension, > 0. Default 384. */
    int ef_search;        /* HNSW search beam; default 64 */
    int ef_construction;  /* HNSW build beam; default 40 (FAISS's default) */
    int nprobe;           /* IVF lists probed per query; default 16 */
    size_t train_min;     /* IVF: vectors needed before training; 0 = 39 * nlist */
    double rebuild_ratio; /* HNSW: tombstones / entries above which a rebuild is due; default 0.2 */
    int train_async;      /* IVF: 1 (default) trains in a background thread; 0 trains inside the
                             vindex_add() call that reaches train_min (tests, offline builds) */
    size_t qscan_min;     /* Flat: from this many vectors a search scans the int8 copy and re-ranks
                             exactly (see "Flat" above); 0 = VINDEX_QSCAN_MIN, SIZE_MAX = never */
    size_t qscan_rerank;  /* Flat: candidates re-ranked exactly a query (at least k); 0 = the
                             default, max(10 * k, 100) */
    size_t qscan_binary_min; /* Flat: from this many vectors the scan is of one sign bit a
                                dimension instead of the int8 codes, keeping max(100 * k, 1000)
                                candidates; 0 (the default) = VINDEX_QSCAN_BINARY_MIN with the
                                avx2 and avx512vnni kernels, never with scalar (its bit kernel
                                looks up a table entry a nibble); SIZE_MAX = never */
    vindex_log_fn log;       /* NULL: no logging */
    void *log_user;
};

/* The default params.qscan_min. The int8 scan pays from a few thousand vectors (measured with
 * Debian's baseline-x86-64 FAISS, AMD EPYC, one query: exact 1.7 ms against 0.13 at 5,000; 7.6
 * against 0.34 at 20,000); below this many the exact scan costs a few ms at most and an index
 * stays exact with no recall caveat. */
#define VINDEX_QSCAN_MIN 8192

/* The default params.qscan_binary_min: where the sign bits' scan (dim / 8 bytes a vector, plus a
 * re-rank of 1000) beats the int8 scan's dim bytes. Measured on 2 quiet AMD EPYC cores
 * (bench/index/qscan_bench, one query at a time, p50): at 65,536 vectors int8 0.69 ms against
 * binary 1.08 with AVX512-VNNI (0.94 against 0.80 with AVX2), at 100,000 1.29 against 0.96
 * (1.23 against 1.12); inside sbertd, whose other work evicts the int8 codes from the caches
 * between queries, binary was 0.6-0.75 ms faster a query at 100,000 with either kernel
 * (interleaved daemons). So between the two: 81,920. */
#define VINDEX_QSCAN_BINARY_MIN 81920

/* Returns the defaults listed above. */
struct vindex_params vindex_default_params(void);

/*
 * Creates an empty index. params may be NULL for the defaults. The spec is validated by building
 * it with FAISS's index_factory.
 * On success returns 0 and *out owns the index (free with vindex_free()); on failure returns a
 * negative code and sets *out to NULL.
 */
int vindex_create(const struct vindex_params *params, vindex **out, char *errbuf, size_t errlen);

/* Releases the index; waits for a running IVF training thread to finish first. NULL is allowed. */
void vindex_free(vindex *v);

/*
 * Adds n vectors (n * dim floats, row-major, expected L2-normalised) with their labels.
 * All or nothing: on failure nothing is added. Refuses (VINDEX_EEXIST) when a label is already
 * live in the index or repeats within the batch. The arrays are borrowed for the call only.
 */
int vindex_add(vindex *v, const int64_t *labels, const float *vectors, size_t n, char *errbuf,
               size_t errlen);

/*
 * Removes the given labels. Labels that are not present are ignored, a repeated label counts
 * once; *n_removed (may be NULL) receives how many were live and are now gone. For HNSW the
 * entries become tombstones. Flat (and IVF before training) removes each label in O(dim); a
 * failure there (FAISS's maps disagree: a bug, not an input error) leaves the labels before the
 * failing one removed, and *n_removed says how many.
 */
int vindex_remove(vindex *v, const int64_t *labels, size_t n, size_t *n_removed, char *errbuf,
                  size_t errlen);

/*
 * A label filter for vindex_search(). A label passes when it is in labels (when labels is not
 * NULL) and keep returns nonzero (when keep is not NULL). labels must be sorted ascending without
 * duplicates; both are borrowed for the call. keep is called from several threads at once (FAISS
 * searches in parallel) and must be thread-safe and not call back into this vindex.
 * A labels list makes the exact fallback cost O(n_labels) instead of O(count).
 */
struct vindex_filter {
    int (*keep)(int64_t label, void *user);
    void *user;
    const int64_t *labels;
    size_t n_labels;
};

/*
 * Top-k search for nq queries (nq * dim floats). Writes nq * k labels and scores (rows in
 * descending score order) into out_labels and out_scores, which the caller provides. filter may
 * be NULL. Deleted labels are never returned.
 * Guarantee: a row holds min(k, number of live labels passing the filter) results. When the
 * approximate search (HNSW with a selective filter or many tombstones, IVF with a filter whose
 * matches fall outside the probed lists) yields fewer, that row is answered by an exact scan over
 * the candidates instead (HNSW/Flat: exact scores; IVF: all lists, scores from the stored codes).
 */
int vindex_search(vindex *v, const float *queries, size_t nq, size_t k,
                  const struct vindex_filter *filter, int64_t *out_labels, float *out_scores,
                  char *errbuf, size_t errlen);

/* Live entries (added and not removed). */
size_t vindex_count(vindex *v);

struct vindex_info {
    size_t count;      /* live entries */
    size_t tombstones; /* HNSW entries removed but still in the graph */
    int dim;
    int trained;          /* 1 when the index of the spec is in use; 0 while IVF is still flat */
    int training;         /* 1 while a background training runs */
    int needs_rebuild;    /* see vindex_needs_rebuild() */
    size_t memory_bytes;  /* estimate of the index's heap use (vectors/codes, graph, id maps) */
    char scan_kernel[16]; /* Flat: the int8 scan's kernel ("scalar", "avx2", "avxvnni",
                             "avx512vnni") when searches use it at the present count; "" when
                             they scan exactly */
    char spec[128];       /* the spec the index was created with */
};

/* Fills *info with a consistent view. */
void vindex_info(vindex *v, struct vindex_info *info);

/* 1 when HNSW tombstones exceed params.rebuild_ratio of the entries; 0 otherwise. */
int vindex_needs_rebuild(vindex *v);

/*
 * Replaces v's contents with fresh's (built by the caller, e.g. a rebuild from the store's
 * vectors) under v's write lock, and frees fresh. Searches keep running against v's old contents
 * while the caller builds fresh; writes the caller makes to v meanwhile are NOT carried over, so
 * the store must build fresh from its state at a point after which it sends no writes to v, or
 * apply them to fresh too. fresh must have v's dim; its spec becomes v's spec.
 */
int vindex_replace(vindex *v, vindex *fresh, char *errbuf, size_t errlen);

/* Blocks until a running IVF training thread has swapped in its index (or failed). */
void vindex_wait_training(vindex *v);

/* Most caller bytes a snapshot header carries (e.g. the store's uuid). */
#define VINDEX_SNAPSHOT_USER_MAX 64

/* What a snapshot header says. */
struct vindex_snapshot_meta {
    uint32_t version; /* format version of the file */
    int dim;
    char spec[128];
    uint64_t change_counter; /* the store change the snapshot covers */
    uint64_t count;          /* live entries */
    size_t user_len;
    unsigned char user[VINDEX_SNAPSHOT_USER_MAX]; /* the caller's bytes given at write */
};

/*
 * Writes a snapshot of the index to path atomically: a temporary file in the same directory,
 * fsync, rename over path, fsync of the directory. The header records the format version
 * (VINDEX_SNAPSHOT_VERSION), the spec, the dim, change_counter (the store change the snapshot
 * covers), user_len <= VINDEX_SNAPSHOT_USER_MAX opaque caller bytes (user may be NULL when
 * user_len is 0; e.g. the store's uuid, so a snapshot of another store is recognised), a
 * checksum of the header, and one of each 256 KiB block of the body. Searches continue while it
 * writes; writes wait. On failure the temporary file is removed and path is unchanged, except
 * after a failed fsync of the directory (the last step, VINDEX_EIO or VINDEX_ENOSPC): path then
 * holds the new snapshot, whose rename may not survive a crash. VINDEX_ENOSPC: the disk is full.
 */
int vindex_snapshot_write(vindex *v, const char *path, uint64_t change_counter, const void *user,
                          size_t user_len, char *errbuf, size_t errlen);

/*
 * Removes the temporary files a vindex_snapshot_write() to path that was killed before its rename
 * left beside it. Call only while no snapshot of path is being written (e.g. under the caller's
 * directory lock, before any writer starts). Returns the number of files removed.
 */
int vindex_snapshot_remove_temps(const char *path);

/*
 * Reads and checks only the header of the snapshot at path (magic, version, header checksum) and
 * fills *meta. Cheap: lets the caller decide between loading and rebuilding.
 * Returns 0, VINDEX_EIO (missing or unreadable; errno is kept), VINDEX_ECORRUPT or VINDEX_EVERSION.
 */
int vindex_snapshot_peek(const char *path, struct vindex_snapshot_meta *meta, char *errbuf,
                         size_t errlen);

/*
 * Checks the snapshot at path without loading it: the header, the size against it, the block
 * table and every block of the body against their checksums (what vindex_snapshot_read checks
 * before FAISS sees a byte), without FAISS. Fills *meta from the header. Returns 0, VINDEX_EIO,
 * VINDEX_ECORRUPT or VINDEX_EVERSION with errbuf saying why.
 */
int vindex_snapshot_check(const char *path, struct vindex_snapshot_meta *meta, char *errbuf,
                          size_t errlen);

/*
 * Loads the snapshot at path into a new index. params gives the expected spec and dim (and the
 * search parameters, log sink, etc. for the loaded index); a snapshot written for another spec
 * or dim is refused with VINDEX_ESPEC. Each block of the body is checked against its checksum
 * before FAISS parses any byte of it (and the file's size against the header first), so a
 * truncated or damaged file is VINDEX_ECORRUPT (or VINDEX_EVERSION), never a crash. The body is
 * read from memory once: each block is checked just before it is copied. Snapshots of format
 * version 1 (one checksum for the whole body) are VINDEX_EVERSION: the store rebuilds.
 * A missing file is VINDEX_EIO with errno ENOENT left in errno.
 * On success *out owns the index and *meta (may be NULL) receives the header. On failure *out
 * is NULL, and *meta is filled when the header itself was sound (so VINDEX_ESPEC names the spec).
 * An IVF snapshot taken before training resumes training as vindex_add() would.
 */
int vindex_snapshot_read(const char *path, const struct vindex_params *params, vindex **out,
                         struct vindex_snapshot_meta *meta, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
