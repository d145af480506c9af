/*
 * internal.h — private to index/'s coordinator files: the sbert_index handle, the order its locks
 * are taken in, and the helpers the files share. The LMDB side is store.h (opaque here), the
 * vector index vindex.h.
 *
 * Files, one responsibility each:
 *   common.c    small shared helpers: error mapping, ids and uuids, published counters, progress
 *   open.c      sbert_index_open/close/stats, strerror and the default parameter structs
 *   write.c     put, delete and remembered writes (req_id): validate, commit, apply to the index
 *   manage.c    delete by filter (in chunks) and patch, the writes of data management
 *   read.c      get, count, iterate, query, query_many
 *   scan.c      count with a filter and the pages of list: scans reading records in place
 *   qfilter.c   the metadata filter as a vector search's keep callback (per-thread transactions)
 *   verify.c    sbert_index_verify: a stopped store or a backup checked without the model
 *   pairs.c     paraphrase mining (sbert_index_pairs) over the one top-k pair heap (sbert_util)
 *   rebuild.c   the derived vector index: rebuild, replay, load at open, snapshots, its thread
 *   maintain.c  sbert_index_snapshot, backup and reindex
 *   keyword.c   the keyword index at open, its statistics, BM25 over it
 *   kw_terms.c  a text's keyword terms, analysed and sorted (documents and queries alike)
 *   search.c    sbert_index_search: keyword, hybrid and diverse (MMR) searches
 *
 * Order of every write: validate, commit the LMDB transaction durably, then apply the same
 * change to the vector index. The vector index is derived state: at open it is loaded from its
 * snapshot and brought up to date from the change log, or rebuilt from the stored vectors.
 *
 * Locks, always taken in this order (a thread holding one never waits for one above it):
 *   wmu         serialises writers (put, delete, snapshot, backup, reindex, the snapshot thread)
 *   swap        rwlock: every public read holds it shared; the end of a reindex takes it
 *               exclusively to swap the store and vector index objects. Writers under wmu take it
 *               shared around their store write. Writer-preferring: no thread takes it shared
 *               twice.
 *   the store's rwlock around LMDB transactions (store.h; map growth takes it exclusively)
 *   the vindex's own rwlock, inside vindex.c
 *   cvmu        the snapshot thread's wake-up mutex: held only around its condition variable,
 *               never while taking another lock.
 */
#ifndef SBERT_INDEX_INTERNAL_H
#define SBERT_INDEX_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sbert_index.h"
#include "sbert_util.h"
#include "store.h"
#include "vindex.h"

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define DEFAULT_SNAPSHOT_CHANGES 100000
#define DEFAULT_SNAPSHOT_SECONDS 300
#define DEFAULT_PER_DOC_K 100
#define MAX_K 10000
#define MAX_PASSAGES_PER_DOC 1000
#define MAX_WIDTH ((size_t)1 << 20) /* passages a query's widened search asks for at most */
#define CHUNK 256                   /* documents per read transaction when scanning */
#define REBUILD_CHUNK 4096

struct sbert_index {
    char dir[4096];
    char store_path[4200], snap_path[4200], tmp_path[4200];
    int lock_fd;
    store *st;
    vindex *vi;
    struct store_meta meta; /* counters change only under wmu */
    char spec[128];
    char kw_language[64]; /* the keyword index's language (params.keyword_language, copied) */
    struct sbert_index_params params;

    pthread_mutex_t wmu;
    pthread_rwlock_t swap;
    int broken; /* a reindex could not reopen the switched store: every call fails */

    uint64_t snap_change;
    int64_t snap_time;
    int snap_exists;
    atomic_int need_rebuild; /* the vector index missed a write: rebuild from the store */

    pthread_mutex_t cvmu;
    pthread_cond_t cv;
    int stop;
    int thread_started;
    pthread_t thread;

    /* Copies of meta.change and the snapshot state for sbert_index_stats(), set under wmu. */
    atomic_uint_fast64_t pub_change, pub_snap_change;
    atomic_int_fast64_t pub_snap_time;

    uint64_t gen_last_ms; /* generated-id clock, under wmu */
    unsigned gen_seq;
};

/* A message to the handle's log callback (none set: nothing). */
#define ilog(idx, level, ...)                                                                      \
    sbert_util_logf((idx)->params.log, (idx)->params.log_user, (level), __VA_ARGS__)

/* ---- common.c -------------------------------------------------------------------------------- */

/* A VINDEX_* code as the SBERT_INDEX_E* code callers see. */
int index_vindex_code(int rc);
/* A vindex_create() failure's code: out of memory, else the spec was not accepted. */
int index_create_code(int rc);
int64_t index_now_s(void);
/* Random bytes (getrandom; a clock-derived fill when that fails, so ids stay unique). */
void index_fill_random(void *buf, size_t n);
/* A NUL-terminated copy of p[0..n), malloc'ed (caller frees), or NULL. */
char *index_dup_bytes(const char *p, size_t n);
/* fsync of a file, or of a directory when dir is 1. Returns 0 or -1 (errno set). */
int index_fsync_path(const char *path, int dir);
/* 1 when m is a complete model identity (sbert_index.h), else 0. */
int index_model_valid(const struct sbert_index_model *m);
void index_meta_set_model(struct store_meta *m, const struct sbert_index_model *p);
/* The vindex parameters of idx's spec and search settings for vectors of dim. */
struct vindex_params index_vparams(sbert_index *idx, int dim);
/* Publishes the counters for stats; called under wmu (or before the handle is shared). */
void index_publish(sbert_index *idx);
void index_progress(sbert_index *idx, const char *phase, uint64_t done, uint64_t total);
/* Number of stored documents (0 when it cannot be read: progress totals only). */
uint64_t index_doc_total(sbert_index *idx);

/* ---- rebuild.c ------------------------------------------------------------------------------- */

/* Builds a vector index of idx->spec from every stored vector; *out owned by the caller. */
int index_rebuild(sbert_index *idx, vindex **out, char *errbuf, size_t errlen);
/* At open: idx->vi from the snapshot plus the change log, or rebuilt; sets snap_*. */
int index_load_vindex(sbert_index *idx, char *errbuf, size_t errlen);
/* Writes a snapshot covering the current change (unless one does and !force) and trims the log.
 * Called under wmu. */
int index_snapshot_locked(sbert_index *idx, int force, char *errbuf, size_t errlen);
/* Rebuilds the vector index when a write could not be applied to it, or HNSW tombstones call
 * for it. Called under wmu. */
void index_maintain_locked(sbert_index *idx);
/* The snapshot thread's body (arg: the handle); runs until idx->stop. */
void *index_snapshot_thread(void *arg);
/* Wakes the snapshot thread when a snapshot or rebuild is due. Called under wmu. */
void index_snapshot_poke(sbert_index *idx);

/* ---- maintain.c ------------------------------------------------------------------------------ */

/* The reindex (sbert_index.h). Called under wmu. On success idx->st, idx->vi and idx->meta are
 * the new ones and a snapshot has been written. */
int index_reindex_locked(sbert_index *idx, const struct sbert_index_model *nm,
                         sbert_index_encode_fn encode, void *user, char *errbuf, size_t errlen);

/* ---- write.c --------------------------------------------------------------------------------- */

/* 1 when req is NULL or a write_req as documented in sbert_index.h, else 0. */
int index_req_valid(const struct sbert_index_write_req *req);
/* Records req's reply in txn, once the write's outputs are final. Returns 0, a code or an LMDB
 * code (store_write's fn convention). */
int index_req_record(sbert_index *idx, store *s, MDB_txn *txn,
                     const struct sbert_index_write_req *req);
/* Applies a committed batch to the vector index: removes, then adds the documents still live,
 * each document (first label, passages: np NULL means one each) as its passages' labels, vecs
 * holding the added passages' rows in order; a failure is logged and schedules a rebuild (the
 * batch is durable). Called under wmu. */
void index_apply_vindex(sbert_index *idx, const int64_t *removed, const uint32_t *removed_np,
                        size_t n_removed, const int64_t *added, const uint32_t *added_np,
                        const float *vecs, size_t n_added);
/* The passage labels of n documents (first labels docs, passages np; NULL: one each), malloc'ed
 * (the caller frees; NULL when out of memory), their number in *total. */
int64_t *index_passage_labels(const int64_t *docs, const uint32_t *np, size_t n, size_t *total);
/* qsort comparison of int64_t. */
int index_cmp_i64(const void *a, const void *b);

/* ---- read.c ---------------------------------------------------------------------------------- */

/* Takes swap shared; fails (not holding it) when the store is broken. */
int index_read_enter(sbert_index *idx);
/* Fills d from a record (copying), with the fields include asks for. */
int index_doc_fill(struct sbert_index_doc *d, const struct store_record *r, unsigned include);
/* Frees what index_doc_fill() allocated. */
void index_doc_clear(struct sbert_index_doc *d);
/* A document's score for the unit query q: lead_weight * its document vector's cosine + (1 -
 * lead_weight) * its best passage's (sbert_index_query_params), exact from r's vectors; *best and
 * *best_score (may be NULL) the best passage and its cosine. Returns 0 or SBERT_INDEX_EFORMAT (r
 * has another dimension). */
int index_doc_score(const struct store_record *r, const float *q, size_t dim, float lead_weight,
                    float *score, size_t *best, float *best_score);
/* What index_doc_fill() copies of r, in bytes (the bound of sbert_index_get_max and
 * max_bytes). */
size_t index_doc_bytes(const struct store_record *r, unsigned include);

/* ---- keyword.c ------------------------------------------------------------------------------- */

/* Gives the store its analyzer (idx->kw_language) and builds the keyword index when the store's
 * is missing, incomplete or made by another analyzer. Returns 0 or a code, with errbuf set. */
int index_keyword_open(sbert_index *idx, char *errbuf, size_t errlen);
/* The keyword_* members of sbert_index_stats; under swap (shared). */
int index_keyword_stats(sbert_index *idx, struct sbert_index_stats *st);

/* BM25 for one query (sbert_index_search's formula): its terms analysed in the store's language
 * and the collection's statistics, read in txn, which must stay open while the handle is used.
 * Returns 0, SBERT_INDEX_EINVAL (the store keeps no keyword index), ENOMEM or a store code. */
typedef struct index_bm25 index_bm25;
int index_bm25_new(sbert_index *idx, MDB_txn *txn, const char *text, size_t len, float k1, float b,
                   index_bm25 **out);
void index_bm25_free(index_bm25 *q);
/* A scored document. */
struct index_hit {
    uint64_t label;
    double score;
};
/* Scores every document holding a query term: *hits (malloc'ed, the caller frees) best first,
 * ties by label. */
int index_bm25_rank(index_bm25 *q, struct index_hit **hits, size_t *n);
/* The BM25 score of one document's text (for a hit the ranking did not reach). */
int index_bm25_doc(index_bm25 *q, const char *text, size_t len, double *score);

/* ---- qfilter.c ------------------------------------------------------------------------------- */

/*
 * The metadata filter as a vindex keep callback. FAISS calls it from its own threads; each thread
 * opens its own read transaction, remembered in a thread-local slot tagged with the query's
 * generation number and ended by qfilter_end(). Records of a label never change (store.h), so
 * transactions opened at slightly different moments agree on every label they find. The caller
 * holds a store_read_begin() transaction from before the search until after qfilter_end(): it
 * holds the store's lock shared, so the map cannot be resized under the filter's transactions.
 */
struct qfilter {
    sbert_index *idx;
    const sbert_index_filter *filter;
    uint64_t gen;
    pthread_mutex_t mu;
    MDB_txn **txns;
    size_t n_txns, cap_txns;
    atomic_int failed; /* 0, or the SBERT_INDEX_E* code of a document the filter could not read
                          or match: the search's result is wrong */
};

void qfilter_init(struct qfilter *q, sbert_index *idx, const sbert_index_filter *f);
/* vindex_filter.keep with user = a struct qfilter. */
int qfilter_keep(int64_t label, void *user);
void qfilter_end(struct qfilter *q);

#endif
