/*
 * vindex_impl.h — private to the vindex files (vindex.c, vindex_lset.c, vindex_train.c,
 * vindex_snap.c): the handle's fields and the helpers they share. vindex.h is the contract;
 * vindex_shim.h the FAISS internals reached from C++.
 *
 * Locking: v->lock is the index's rwlock (searches shared, writes and the training switch
 * exclusive). wait_mu/wait_cv signal the end of a training; wait_mu may be taken while lock is
 * held, never the other way round.
 */
#ifndef SBERT_VINDEX_IMPL_H
#define SBERT_VINDEX_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "Index_c.h"
#include "sbert_util.h"
#include "vindex.h"
#include "vindex_qscan.h"

enum kind { KIND_FLAT = 0, KIND_HNSW = 1, KIND_IVF = 2 };

/* A set of labels >= 0 (vindex_lset.c). Zero-initialised: empty. */
struct lset {
    int64_t *slots; /* -1 = empty */
    size_t cap;     /* power of two */
    size_t n;
};

/* Makes room for want labels in all. Returns 0 or VINDEX_ENOMEM. */
int vindex_lset_reserve(struct lset *s, size_t want);
int vindex_lset_has(const struct lset *s, int64_t k);
/* The caller has reserved room. */
void vindex_lset_put(struct lset *s, int64_t k);
/* Returns 1 when k was present. */
int vindex_lset_del(struct lset *s, int64_t k);
void vindex_lset_free(struct lset *s);

/* Everything vindex_replace() swaps. */
struct vstate {
    enum kind kind;
    char spec[128];
    FaissIndex *idx;  /* IDMap2 (Flat, HNSW, IVF staging) or the trained IVF */
    int trained;      /* IVF: idx is the IVF */
    int train_failed; /* IVF: the last training failed; not retried automatically */
    size_t nlist;     /* IVF */
    size_t train_min; /* IVF */
    struct lset live; /* live labels */
    struct qscan q;   /* Flat: the int8 copy, row i = internal position i (vindex_qscan.h) */
    uint8_t *dead;    /* HNSW: dead[pos] = 1 for tombstoned internal positions */
    size_t dead_cap;
    size_t ndead;
};

/* A write made while a background training runs, replayed into the trained index. */
struct oplog_entry {
    int is_add;
    size_t n;
    int64_t *labels;
    float *vectors; /* adds only */
};

struct vindex {
    pthread_rwlock_t lock;
    struct vindex_params p;
    struct vstate s;
    int scan_isa;     /* the quantised scan's kernel (qscan_isa_select) */
    int ip_seq;       /* FAISS's inner product is its reference loop (qscan_ip_seq_matches) */
    int scan_threads; /* most threads one quantised scan uses: the CPUs it may run on */

    /* training: fields below are guarded by lock (written under the write lock) */
    int training;    /* written holding both lock (write) and wait_mu: read under either */
    int thread_live; /* a thread exists that has not been joined */
    pthread_t thread;
    struct oplog_entry *oplog;
    size_t oplog_n, oplog_cap;
    int oplog_failed; /* an op could not be logged: the trained index is discarded */
    /* handed to the thread */
    int64_t *train_labels;
    float *train_vectors;
    size_t train_n;

    pthread_mutex_t wait_mu;
    pthread_cond_t wait_cv;
};

/* A message to the index's log callback. */
#define vlog(v, level, ...) sbert_util_logf((v)->p.log, (v)->p.log_user, (level), __VA_ARGS__)

/* FAISS C API calls return nonzero and keep the exception text thread-locally: VINDEX_EFAISS with
 * "what: text" in errbuf. */
int vindex_faiss_fail(char *errbuf, size_t errlen, const char *what);
/* Seconds on the monotonic clock, for the durations logged. */
double vindex_mono_s(void);
/* An index from FAISS's factory string, inner-product metric. */
int vindex_new_faiss(const char *factory, int dim, FaissIndex **out, char *errbuf, size_t errlen);
/* Fills the spec-derived fields of s (kind, spec, nlist, train_min); validates the spec. */
int vindex_state_init(struct vstate *s, const struct vindex_params *p, char *errbuf, size_t errlen);
void vindex_state_free(struct vstate *s);
/* HNSW: sizes dead[] for ntotal internal positions. Returns 0 or VINDEX_ENOMEM. */
int vindex_grow_dead(struct vstate *s, size_t ntotal);

/* Training (vindex_train.c). maybe_train and oplog_push run under the write lock. */
void vindex_oplog_clear(vindex *v);
void vindex_join_training(vindex *v);
void vindex_maybe_train(vindex *v);
void vindex_oplog_push(vindex *v, int is_add, const int64_t *labels, const float *x, size_t n);

#endif
