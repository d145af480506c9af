/*
 * vindex.c — the vector index (see vindex.h for the contract): FAISS through its C API, plus
 * vindex_shim.cpp where the 1.7.3 C API has no entry point.
 *
 * Layout by spec kind (facts measured on FAISS 1.7.3, Debian 1.7.3-2+b1):
 *   Flat  -> IndexIDMap2(IndexFlatIP): labels through the id map. Deletes are swap-removes in
 *            the shim (vshim_flat_remove: the last entry moves into the hole), O(dim) a label;
 *            FAISS's remove_ids compacted all n vectors and rebuilt rev_map on every call, under
 *            the write lock, so queries waited too (1M x 384, Debian libfaiss: 184 ms for one
 *            label, 297 ms for 1000; now 0.002 and 1.9 ms, bench/index/delete.sh). Internal
 *            positions are therefore not insertion order and change on every delete.
 *   HNSW  -> IndexIDMap2(IndexHNSWFlat): HNSW's add_with_ids/remove_ids throw, so labels go
 *            through the id map and deletes are tombstones (dead[] by internal position). Its
 *            storage is swapped for one with faster distances (vshim_set_hnsw), same file format.
 *   IVF   -> a bare IndexIVF*: it stores 64-bit ids itself, and remove_ids through an IDMap
 *            wrapper returned wrong labels; its remove_ids scans every list (O(n) a call). Before
 *            training: IndexIDMap2(IndexFlatIP) staging, deleted from as Flat.
 */
#define _GNU_SOURCE
#include "vindex.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "Index_c.h"
#include "IndexIVF_c.h"
#include "error_c.h"
#include "impl/AuxIndexStructures_c.h"
#include "index_factory_c.h"
#include "index_io_c.h"
#include "vindex_shim.h"

enum kind { KIND_FLAT = 0, KIND_HNSW = 1, KIND_IVF = 2 };

/* ------------------------------------------------------------------------------------------ */
/* errors and logging                                                                         */

const char *vindex_strerror(int err) {
    switch (err) {
    case VINDEX_OK: return "success";
    case VINDEX_EINVAL: return "invalid argument";
    case VINDEX_ENOMEM: return "out of memory";
    case VINDEX_EFAISS: return "FAISS error";
    case VINDEX_EIO: return "snapshot I/O error";
    case VINDEX_ECORRUPT: return "snapshot is corrupt or truncated";
    case VINDEX_EVERSION: return "snapshot format version not supported";
    case VINDEX_ESPEC: return "snapshot belongs to another index spec or dimension";
    case VINDEX_EEXIST: return "label already present";
    case VINDEX_ETHREAD: return "could not start the training thread";
    default: return "unknown vindex error";
    }
}

static int fail(char *errbuf, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *errbuf, size_t errlen, int code, const char *fmt, ...) {
    if (errbuf && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* FAISS C API calls return nonzero and keep the exception text thread-locally. */
static int faiss_fail(char *errbuf, size_t errlen, const char *what) {
    const char *e = faiss_get_last_error();
    return fail(errbuf, errlen, VINDEX_EFAISS, "%s: %s", what, e ? e : "unknown FAISS error");
}

/* ------------------------------------------------------------------------------------------ */
/* label set: open addressing, linear probing, backward-shift deletion; keys are labels >= 0   */

struct lset {
    int64_t *slots; /* -1 = empty */
    size_t cap;     /* power of two */
    size_t n;
};

static size_t lset_hash(int64_t k) {
    uint64_t x = (uint64_t)k + 0x9e3779b97f4a7c15ULL; /* splitmix64 finaliser */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return (size_t)(x ^ (x >> 31));
}

static int lset_reserve(struct lset *s, size_t want) {
    if ((want + 1) * 10 <= s->cap * 7) return 0;
    size_t cap = s->cap ? s->cap : 64;
    while ((want + 1) * 10 > cap * 7) cap *= 2;
    int64_t *slots = malloc(cap * sizeof *slots);
    if (!slots) return VINDEX_ENOMEM;
    memset(slots, 0xff, cap * sizeof *slots);
    for (size_t i = 0; i < s->cap; i++) {
        if (s->slots[i] < 0) continue;
        size_t j = lset_hash(s->slots[i]) & (cap - 1);
        while (slots[j] >= 0) j = (j + 1) & (cap - 1);
        slots[j] = s->slots[i];
    }
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return 0;
}

static int lset_has(const struct lset *s, int64_t k) {
    if (!s->cap) return 0;
    for (size_t j = lset_hash(k) & (s->cap - 1);; j = (j + 1) & (s->cap - 1)) {
        if (s->slots[j] == k) return 1;
        if (s->slots[j] < 0) return 0;
    }
}

/* The caller has reserved room. */
static void lset_put(struct lset *s, int64_t k) {
    size_t j = lset_hash(k) & (s->cap - 1);
    while (s->slots[j] >= 0) {
        if (s->slots[j] == k) return;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = k;
    s->n++;
}

static int lset_del(struct lset *s, int64_t k) {
    if (!s->cap) return 0;
    size_t mask = s->cap - 1, j = lset_hash(k) & mask;
    while (s->slots[j] != k) {
        if (s->slots[j] < 0) return 0;
        j = (j + 1) & mask;
    }
    /* Backward shift: move later entries of the probe run into the hole when their home slot
     * does not lie cyclically in (hole, current]. */
    size_t hole = j;
    for (size_t i = (j + 1) & mask; s->slots[i] >= 0; i = (i + 1) & mask) {
        size_t home = lset_hash(s->slots[i]) & mask;
        int stays = hole <= i ? (hole < home && home <= i) : (hole < home || home <= i);
        if (!stays) {
            s->slots[hole] = s->slots[i];
            hole = i;
        }
    }
    s->slots[hole] = -1;
    s->n--;
    return 1;
}

static void lset_free(struct lset *s) {
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------------------------------------ */
/* body checksum: a streaming 64-bit hash with XXH64's round and avalanche (not claimed to be   */
/* XXH64-compatible); it guards against torn and damaged files, not against an adversary.      */

#define H_P1 11400714785074694791ULL
#define H_P2 14029467366897019727ULL
#define H_P3 1609587929392839161ULL
#define H_P4 9650029242287828579ULL
#define H_P5 2870177450012600261ULL

struct hstate {
    uint64_t v[4];
    uint64_t total;
    unsigned char buf[32];
    size_t nbuf;
};

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static uint64_t h_round(uint64_t acc, uint64_t in) { return rotl64(acc + in * H_P2, 31) * H_P1; }
static uint64_t h_read64(const unsigned char *p) {
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

static void h_init(struct hstate *h) {
    memset(h, 0, sizeof *h);
    h->v[0] = H_P1 + H_P2;
    h->v[1] = H_P2;
    h->v[2] = 0;
    h->v[3] = (uint64_t)0 - H_P1;
}

static void h_stripe(struct hstate *h, const unsigned char *p) {
    for (int i = 0; i < 4; i++) h->v[i] = h_round(h->v[i], h_read64(p + 8 * i));
}

static void h_update(struct hstate *h, const void *data, size_t len) {
    /* data may be NULL when len is 0 (an empty array); memcpy and pointer arithmetic on NULL are
     * undefined even for 0 bytes. */
    if (len == 0) return;
    const unsigned char *p = data;
    h->total += len;
    if (h->nbuf) {
        size_t take = 32 - h->nbuf < len ? 32 - h->nbuf : len;
        memcpy(h->buf + h->nbuf, p, take);
        h->nbuf += take;
        p += take;
        len -= take;
        if (h->nbuf < 32) return;
        h_stripe(h, h->buf);
        h->nbuf = 0;
    }
    for (; len >= 32; p += 32, len -= 32) h_stripe(h, p);
    memcpy(h->buf, p, len);
    h->nbuf = len;
}

static uint64_t h_final(const struct hstate *h) {
    uint64_t x = rotl64(h->v[0], 1) + rotl64(h->v[1], 7) + rotl64(h->v[2], 12) +
                 rotl64(h->v[3], 18);
    x += h->total;
    size_t i = 0;
    for (; i + 8 <= h->nbuf; i += 8) x = rotl64(x ^ h_round(0, h_read64(h->buf + i)), 27) * H_P1 + H_P4;
    for (; i < h->nbuf; i++) x = rotl64(x ^ (h->buf[i] * H_P5), 11) * H_P1;
    x ^= x >> 33;
    x *= H_P2;
    x ^= x >> 29;
    x *= H_P3;
    x ^= x >> 32;
    return x;
}

uint64_t vindex_hash64(const void *data, size_t len) {
    struct hstate h;
    h_init(&h);
    h_update(&h, data, len);
    return h_final(&h);
}

/* ------------------------------------------------------------------------------------------ */
/* the handle                                                                                 */

/* Everything vindex_replace() swaps. */
struct vstate {
    enum kind kind;
    char spec[128];
    FaissIndex *idx;   /* IDMap2 (Flat, HNSW, IVF staging) or the trained IVF */
    int trained;       /* IVF: idx is the IVF */
    int train_failed;  /* IVF: the last training failed; not retried automatically */
    size_t nlist;      /* IVF */
    size_t train_min;  /* IVF */
    struct lset live;  /* live labels */
    uint8_t *dead;     /* HNSW: dead[pos] = 1 for tombstoned internal positions */
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

    /* training: fields below are guarded by lock (written under the write lock) */
    int training; /* written holding both lock (write) and wait_mu: read under either */
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

static void vlog(const vindex *v, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void vlog(const vindex *v, int level, const char *fmt, ...) {
    if (!v->p.log) return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    v->p.log(level, msg, v->p.log_user);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct vindex_params vindex_default_params(void) {
    struct vindex_params p = {
        .spec = "Flat",
        .dim = 384,
        .ef_search = 64,
        .ef_construction = 40,
        .nprobe = 16,
        .train_min = 0,
        .rebuild_ratio = 0.2,
        .train_async = 1,
        .log = NULL,
        .log_user = NULL,
    };
    return p;
}

/* Parses the spec into a kind; the accepted HNSW forms keep raw vectors in a flat storage, which
 * the exact fallback needs. */
static int parse_spec(const char *spec, enum kind *kind, char *errbuf, size_t errlen) {
    int m = 0, used = 0;
    if (strcmp(spec, "Flat") == 0) {
        *kind = KIND_FLAT;
        return 0;
    }
    if (sscanf(spec, "HNSW%d%n", &m, &used) == 1 && m > 0 &&
        (spec[used] == '\0' || strcmp(spec + used, ",Flat") == 0)) {
        *kind = KIND_HNSW;
        return 0;
    }
    if (strncmp(spec, "IVF", 3) == 0) {
        *kind = KIND_IVF;
        return 0;
    }
    return fail(errbuf, errlen, VINDEX_EINVAL,
                "index spec \"%s\" is not one of Flat, HNSW<M>[,Flat], IVF<n>,...", spec);
}

static int new_faiss(const char *factory, int dim, FaissIndex **out, char *errbuf, size_t errlen) {
    *out = NULL;
    if (faiss_index_factory(out, dim, factory, METRIC_INNER_PRODUCT) != 0) {
        *out = NULL;
        return faiss_fail(errbuf, errlen, factory);
    }
    return 0;
}

/* A fresh, empty index of the kind (the flat staging index for IVF). */
static int new_base(const struct vindex_params *p, enum kind kind, FaissIndex **out, char *errbuf,
                    size_t errlen) {
    char factory[160];
    if (kind == KIND_IVF || kind == KIND_FLAT)
        snprintf(factory, sizeof factory, "IDMap2,Flat");
    else
        snprintf(factory, sizeof factory, "IDMap2,%s", p->spec);
    int rc = new_faiss(factory, p->dim, out, errbuf, errlen);
    if (rc == 0 && kind == KIND_HNSW &&
        (rc = vshim_set_hnsw(*out, p->ef_construction, p->ef_search, errbuf, errlen)) != 0) {
        faiss_Index_free(*out);
        *out = NULL;
    }
    return rc;
}

static void state_free(struct vstate *s) {
    if (s->idx) faiss_Index_free(s->idx);
    lset_free(&s->live);
    free(s->dead);
    memset(s, 0, sizeof *s);
}

/* Fills the spec-derived fields of s (kind, spec, nlist, train_min); validates the spec. */
static int state_init(struct vstate *s, const struct vindex_params *p, char *errbuf,
                      size_t errlen) {
    memset(s, 0, sizeof *s);
    if (strlen(p->spec) >= sizeof s->spec)
        return fail(errbuf, errlen, VINDEX_EINVAL, "index spec longer than %zu bytes",
                    sizeof s->spec - 1);
    snprintf(s->spec, sizeof s->spec, "%s", p->spec);
    int rc = parse_spec(p->spec, &s->kind, errbuf, errlen);
    if (rc) return rc;
    if (s->kind == KIND_IVF) {
        FaissIndex *probe;
        rc = new_faiss(p->spec, p->dim, &probe, errbuf, errlen);
        if (rc) return rc;
        FaissIndexIVF *ivf = faiss_IndexIVF_cast(probe);
        if (!ivf) {
            faiss_Index_free(probe);
            return fail(errbuf, errlen, VINDEX_EINVAL,
                        "index spec \"%s\" does not build a bare IndexIVF", p->spec);
        }
        s->nlist = faiss_IndexIVF_nlist(ivf);
        faiss_Index_free(probe);
        /* k-means wants 39 points per centroid (FAISS prints a warning below that); PQ codebooks
         * have 256 centroids each. */
        size_t want = 39 * s->nlist;
        if (strstr(p->spec, "PQ") && want < 39 * 256) want = 39 * 256;
        s->train_min = p->train_min ? p->train_min : want;
        if (s->train_min < s->nlist) s->train_min = s->nlist;
    }
    return 0;
}

int vindex_create(const struct vindex_params *params, vindex **out, char *errbuf, size_t errlen) {
    struct vindex_params def = vindex_default_params();
    const struct vindex_params *p = params ? params : &def;
    if (!out) return fail(errbuf, errlen, VINDEX_EINVAL, "out is NULL");
    *out = NULL;
    if (!p->spec || p->dim <= 0)
        return fail(errbuf, errlen, VINDEX_EINVAL, "spec is NULL or dim <= 0");
    vindex *v = calloc(1, sizeof *v);
    if (!v) return VINDEX_ENOMEM;
    v->p = *p;
    if (v->p.ef_search <= 0) v->p.ef_search = def.ef_search;
    if (v->p.ef_construction <= 0) v->p.ef_construction = def.ef_construction;
    if (v->p.nprobe <= 0) v->p.nprobe = def.nprobe;
    if (!(v->p.rebuild_ratio > 0)) v->p.rebuild_ratio = def.rebuild_ratio;
    int rc = state_init(&v->s, p, errbuf, errlen);
    if (rc == 0) rc = new_base(&v->p, v->s.kind, &v->s.idx, errbuf, errlen);
    if (rc) {
        state_free(&v->s);
        free(v);
        return rc;
    }
    v->p.spec = v->s.spec;
    {
        /* Writer-preferring: with glibc's default (readers first) a steady stream of searches
         * starves vindex_add/remove forever (seen in tests/store concurrent case). No thread
         * takes this lock shared twice, which this kind would deadlock on. */
        pthread_rwlockattr_t a;
        pthread_rwlockattr_init(&a);
        pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&v->lock, &a);
        pthread_rwlockattr_destroy(&a);
    }
    pthread_mutex_init(&v->wait_mu, NULL);
    pthread_cond_init(&v->wait_cv, NULL);
    *out = v;
    return 0;
}

static void oplog_clear(vindex *v) {
    for (size_t i = 0; i < v->oplog_n; i++) {
        free(v->oplog[i].labels);
        free(v->oplog[i].vectors);
    }
    free(v->oplog);
    v->oplog = NULL;
    v->oplog_n = v->oplog_cap = 0;
    v->oplog_failed = 0;
}

static void join_training(vindex *v) {
    pthread_mutex_lock(&v->wait_mu);
    int live = v->thread_live;
    v->thread_live = 0;
    pthread_mutex_unlock(&v->wait_mu);
    if (live) pthread_join(v->thread, NULL);
}

void vindex_free(vindex *v) {
    if (!v) return;
    join_training(v);
    oplog_clear(v);
    free(v->train_labels);
    free(v->train_vectors);
    state_free(&v->s);
    pthread_rwlock_destroy(&v->lock);
    pthread_mutex_destroy(&v->wait_mu);
    pthread_cond_destroy(&v->wait_cv);
    free(v);
}

/* ------------------------------------------------------------------------------------------ */
/* writes (the write lock is held by the callers of the static helpers below)                 */

static int grow_dead(struct vstate *s, size_t ntotal) {
    if (ntotal <= s->dead_cap) return 0;
    size_t cap = s->dead_cap ? s->dead_cap : 1024;
    while (cap < ntotal) cap *= 2;
    uint8_t *d = realloc(s->dead, cap);
    if (!d) return VINDEX_ENOMEM;
    memset(d + s->dead_cap, 0, cap - s->dead_cap);
    s->dead = d;
    s->dead_cap = cap;
    return 0;
}

/* Adds to a FAISS index and the state's bookkeeping; labels are known to be new. */
static int state_add(struct vstate *s, const int64_t *labels, const float *x, size_t n,
                     char *errbuf, size_t errlen) {
    int rc = lset_reserve(&s->live, s->live.n + n);
    if (rc) return rc;
    if (s->kind == KIND_HNSW) {
        rc = grow_dead(s, (size_t)faiss_Index_ntotal(s->idx) + n);
        if (rc) return rc;
    }
    if (faiss_Index_add_with_ids(s->idx, (idx_t)n, x, labels) != 0)
        return faiss_fail(errbuf, errlen, "FAISS add_with_ids");
    for (size_t i = 0; i < n; i++) lset_put(&s->live, labels[i]);
    return 0;
}

static int state_remove(struct vstate *s, const int64_t *labels, size_t n, size_t *removed,
                        char *errbuf, size_t errlen) {
    size_t nr = 0;
    if (s->kind == KIND_HNSW) {
        for (size_t i = 0; i < n; i++) {
            if (!lset_has(&s->live, labels[i])) continue;
            int64_t pos = vshim_idmap_position(s->idx, labels[i]);
            if (pos >= 0 && (size_t)pos < s->dead_cap && !s->dead[pos]) {
                s->dead[pos] = 1;
                s->ndead++;
            }
            lset_del(&s->live, labels[i]);
            nr++;
        }
        *removed = nr;
        return 0;
    }
    if (s->kind == KIND_FLAT || !s->trained) {
        /* IDMap2 over Flat: swap-remove, O(dim) a label (vshim_flat_remove). One call a label
         * keeps the live set exactly in step with the index should the shim refuse. */
        int rc = 0;
        for (size_t i = 0; rc == 0 && i < n; i++) {
            size_t got = 0;
            if (!lset_has(&s->live, labels[i])) continue;
            rc = vshim_flat_remove(s->idx, labels + i, 1, &got, errbuf, errlen);
            if (rc == 0 && got != 1)
                rc = fail(errbuf, errlen, VINDEX_EFAISS,
                          "live label %lld is not in the flat index", (long long)labels[i]);
            if (rc == 0) {
                lset_del(&s->live, labels[i]);
                nr++;
            }
        }
        *removed = nr;
        return rc;
    }
    /* Trained IVF: FAISS's remove_ids, with the labels deduplicated (it counts a label once). */
    int64_t *present = malloc((n ? n : 1) * sizeof *present);
    struct lset seen = {0};
    if (!present || lset_reserve(&seen, n) != 0) {
        free(present);
        lset_free(&seen);
        return VINDEX_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (lset_has(&s->live, labels[i]) && !lset_has(&seen, labels[i])) {
            lset_put(&seen, labels[i]);
            present[nr++] = labels[i];
        }
    lset_free(&seen);
    if (nr) {
        FaissIDSelectorBatch *sel = NULL;
        size_t got = 0;
        if (faiss_IDSelectorBatch_new(&sel, nr, present) != 0) {
            free(present);
            return faiss_fail(errbuf, errlen, "FAISS IDSelectorBatch");
        }
        int frc = faiss_Index_remove_ids(s->idx, (FaissIDSelector *)sel, &got);
        faiss_IDSelector_free((FaissIDSelector *)sel);
        if (frc != 0) {
            free(present);
            return faiss_fail(errbuf, errlen, "FAISS remove_ids");
        }
        if (got != nr) {
            free(present);
            return fail(errbuf, errlen, VINDEX_EFAISS,
                        "FAISS remove_ids removed %zu entries for %zu live labels", got, nr);
        }
        for (size_t i = 0; i < nr; i++) lset_del(&s->live, present[i]);
    }
    free(present);
    *removed = nr;
    return 0;
}

/* Builds and fills a trained IVF from labels/vectors. No lock needed: touches nothing shared. */
static int train_build(const struct vindex_params *p, const char *spec, const int64_t *labels,
                       const float *x, size_t n, FaissIndex **out, char *errbuf, size_t errlen) {
    FaissIndex *ivf;
    int rc = new_faiss(spec, p->dim, &ivf, errbuf, errlen);
    if (rc) return rc;
    if (faiss_Index_train(ivf, (idx_t)n, x) != 0) {
        rc = faiss_fail(errbuf, errlen, "FAISS train");
    } else if (faiss_Index_add_with_ids(ivf, (idx_t)n, x, labels) != 0) {
        rc = faiss_fail(errbuf, errlen, "FAISS add_with_ids (trained IVF)");
    }
    if (rc) {
        faiss_Index_free(ivf);
        return rc;
    }
    *out = ivf;
    return 0;
}

/* Replaces the staging index by the trained IVF (write lock held). */
static void swap_in_trained(vindex *v, FaissIndex *ivf) {
    faiss_Index_free(v->s.idx);
    v->s.idx = ivf;
    v->s.trained = 1;
}

static int replay_oplog(vindex *v, FaissIndex *ivf, char *errbuf, size_t errlen) {
    for (size_t i = 0; i < v->oplog_n; i++) {
        struct oplog_entry *e = &v->oplog[i];
        if (e->is_add) {
            if (faiss_Index_add_with_ids(ivf, (idx_t)e->n, e->vectors, e->labels) != 0)
                return faiss_fail(errbuf, errlen, "FAISS add_with_ids (replay)");
        } else {
            FaissIDSelectorBatch *sel = NULL;
            size_t got;
            if (faiss_IDSelectorBatch_new(&sel, e->n, e->labels) != 0)
                return faiss_fail(errbuf, errlen, "FAISS IDSelectorBatch (replay)");
            int frc = faiss_Index_remove_ids(ivf, (FaissIDSelector *)sel, &got);
            faiss_IDSelector_free((FaissIDSelector *)sel);
            if (frc != 0) return faiss_fail(errbuf, errlen, "FAISS remove_ids (replay)");
        }
    }
    return 0;
}

static void training_done(vindex *v) {
    pthread_mutex_lock(&v->wait_mu);
    v->training = 0;
    pthread_cond_broadcast(&v->wait_cv);
    pthread_mutex_unlock(&v->wait_mu);
}

static void *train_main(void *arg) {
    vindex *v = arg;
    char err[256] = "";
    FaissIndex *ivf = NULL;
    int rc = train_build(&v->p, v->s.spec, v->train_labels, v->train_vectors, v->train_n, &ivf,
                         err, sizeof err);
    pthread_rwlock_wrlock(&v->lock);
    if (rc == 0 && v->oplog_failed)
        rc = fail(err, sizeof err, VINDEX_ENOMEM, "a write during training could not be logged");
    if (rc == 0) rc = replay_oplog(v, ivf, err, sizeof err);
    if (rc == 0) {
        swap_in_trained(v, ivf);
        vlog(v, VINDEX_LOG_INFO, "IVF index %s trained on %zu vectors; %zu writes replayed",
             v->s.spec, v->train_n, v->oplog_n);
    } else {
        if (ivf) faiss_Index_free(ivf);
        v->s.train_failed = 1;
        vlog(v, VINDEX_LOG_ERROR, "IVF training of %s failed, staying exact: %s", v->s.spec, err);
    }
    oplog_clear(v);
    free(v->train_labels);
    free(v->train_vectors);
    v->train_labels = NULL;
    v->train_vectors = NULL;
    /* Cleared before the write lock is released, so that a write under the lock never sees
     * training set after the oplog has been replayed and cleared. */
    training_done(v);
    pthread_rwlock_unlock(&v->lock);
    return NULL;
}

/* Starts training when the staging index has reached train_min (write lock held). A failure to
 * start is logged and leaves the index exact; it is not an error of the write that triggered it. */
static void maybe_train(vindex *v) {
    struct vstate *s = &v->s;
    if (s->kind != KIND_IVF || s->trained || s->train_failed || v->training ||
        s->live.n < s->train_min)
        return;
    size_t n = (size_t)faiss_Index_ntotal(s->idx);
    const float *xb = vshim_flat_vectors(s->idx);
    char err[256] = "";
    int64_t *labels = malloc(n * sizeof *labels);
    float *x = malloc(n * (size_t)v->p.dim * sizeof *x);
    if (!labels || !x || !xb || vshim_labels(s->idx, VSHIM_IDMAP, labels, err, sizeof err) != 0) {
        free(labels);
        free(x);
        s->train_failed = 1;
        vlog(v, VINDEX_LOG_ERROR, "IVF training of %s not started: %s", s->spec,
             err[0] ? err : "out of memory");
        return;
    }
    memcpy(x, xb, n * (size_t)v->p.dim * sizeof *x);
    if (!v->p.train_async) {
        FaissIndex *ivf;
        int rc = train_build(&v->p, s->spec, labels, x, n, &ivf, err, sizeof err);
        free(labels);
        free(x);
        if (rc == 0) {
            swap_in_trained(v, ivf);
            vlog(v, VINDEX_LOG_INFO, "IVF index %s trained on %zu vectors", s->spec, n);
        } else {
            s->train_failed = 1;
            vlog(v, VINDEX_LOG_ERROR, "IVF training of %s failed, staying exact: %s", s->spec, err);
        }
        return;
    }
    join_training(v); /* a finished earlier thread */
    v->train_labels = labels;
    v->train_vectors = x;
    v->train_n = n;
    pthread_mutex_lock(&v->wait_mu);
    v->training = 1;
    pthread_mutex_unlock(&v->wait_mu);
    if (pthread_create(&v->thread, NULL, train_main, v) != 0) {
        free(labels);
        free(x);
        v->train_labels = NULL;
        v->train_vectors = NULL;
        s->train_failed = 1;
        training_done(v);
        vlog(v, VINDEX_LOG_ERROR, "IVF training of %s not started: %s", s->spec,
             vindex_strerror(VINDEX_ETHREAD));
        return;
    }
    pthread_mutex_lock(&v->wait_mu);
    v->thread_live = 1;
    pthread_mutex_unlock(&v->wait_mu);
    vlog(v, VINDEX_LOG_INFO, "IVF index %s: training on %zu vectors in the background", s->spec, n);
}

static void oplog_push(vindex *v, int is_add, const int64_t *labels, const float *x, size_t n) {
    if (v->oplog_failed) return;
    if (v->oplog_n == v->oplog_cap) {
        size_t cap = v->oplog_cap ? 2 * v->oplog_cap : 16;
        struct oplog_entry *o = realloc(v->oplog, cap * sizeof *o);
        if (!o) {
            v->oplog_failed = 1;
            return;
        }
        v->oplog = o;
        v->oplog_cap = cap;
    }
    struct oplog_entry e = {.is_add = is_add, .n = n};
    e.labels = malloc(n * sizeof *e.labels);
    if (is_add) e.vectors = malloc(n * (size_t)v->p.dim * sizeof *e.vectors);
    if (!e.labels || (is_add && !e.vectors)) {
        free(e.labels);
        free(e.vectors);
        v->oplog_failed = 1;
        return;
    }
    memcpy(e.labels, labels, n * sizeof *e.labels);
    if (is_add) memcpy(e.vectors, x, n * (size_t)v->p.dim * sizeof *e.vectors);
    v->oplog[v->oplog_n++] = e;
}

int vindex_add(vindex *v, const int64_t *labels, const float *vectors, size_t n, char *errbuf,
               size_t errlen) {
    if (!v || (n && (!labels || !vectors)))
        return fail(errbuf, errlen, VINDEX_EINVAL, "NULL index, labels or vectors");
    if (n == 0) return 0;
    pthread_rwlock_wrlock(&v->lock);
    struct lset batch = {0};
    int rc = lset_reserve(&batch, n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (labels[i] < 0) {
            rc = fail(errbuf, errlen, VINDEX_EINVAL, "label %lld is negative", (long long)labels[i]);
        } else if (lset_has(&v->s.live, labels[i]) || lset_has(&batch, labels[i])) {
            rc = fail(errbuf, errlen, VINDEX_EEXIST, "label %lld is already present",
                      (long long)labels[i]);
        } else {
            lset_put(&batch, labels[i]);
        }
    }
    lset_free(&batch);
    if (rc == 0) rc = state_add(&v->s, labels, vectors, n, errbuf, errlen);
    if (rc == 0) {
        if (v->training) oplog_push(v, 1, labels, vectors, n);
        maybe_train(v);
    }
    pthread_rwlock_unlock(&v->lock);
    return rc;
}

int vindex_remove(vindex *v, const int64_t *labels, size_t n, size_t *n_removed, char *errbuf,
                  size_t errlen) {
    size_t removed = 0;
    if (n_removed) *n_removed = 0;
    if (!v || (n && !labels)) return fail(errbuf, errlen, VINDEX_EINVAL, "NULL index or labels");
    if (n == 0) return 0;
    pthread_rwlock_wrlock(&v->lock);
    int rc = state_remove(&v->s, labels, n, &removed, errbuf, errlen);
    if (rc == 0 && v->training && removed) oplog_push(v, 0, labels, NULL, n);
    pthread_rwlock_unlock(&v->lock);
    if (n_removed) *n_removed = removed;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* reads                                                                                      */

int vindex_search(vindex *v, const float *queries, size_t nq, size_t k,
                  const struct vindex_filter *filter, int64_t *out_labels, float *out_scores,
                  char *errbuf, size_t errlen) {
    if (!v || (nq && (!queries || !out_labels || !out_scores)) || k == 0)
        return fail(errbuf, errlen, VINDEX_EINVAL, "NULL argument or k == 0");
    if (nq == 0) return 0;
    pthread_rwlock_rdlock(&v->lock);
    const struct vstate *s = &v->s;
    int layout = (s->kind == KIND_IVF && s->trained) ? VSHIM_IVF : VSHIM_IDMAP;
    struct vshim_select sel = {
        .dead = s->kind == KIND_HNSW && s->ndead ? s->dead : NULL,
        .dead_len = s->dead_cap,
        .filter = filter,
    };
    /* HNSW applies a filter to results only, so the walk meets ~ef / selectivity candidates
     * before ef pass: widen the beam by the estimated selectivity, and below 2% scan exactly
     * (measured here: 1% callback filter, ef 32 on 20k vectors: 64% agreement with exact). */
    int ef = v->p.ef_search, exhaustive = 0;
    if (s->kind == KIND_HNSW && filter && filter->keep &&
        !(filter->labels && filter->n_labels <= VSHIM_SHORT_LIST)) {
        double est = vshim_selectivity(s->idx, &sel, 256);
        if (est < 0.02)
            exhaustive = 1;
        else if (ef / est > ef)
            ef = ef / est > 4096 ? 4096 : (int)(ef / est);
    }
    int rc = vshim_search(s->idx, layout, queries, nq, k, ef, v->p.nprobe, &sel, exhaustive,
                          out_labels, out_scores, errbuf, errlen);
    /* Approximate searches can come back short (a selective filter in HNSW, tombstones, IVF lists
     * holding fewer than k matches): such rows are answered exactly. */
    int approximate = (s->kind == KIND_HNSW && !exhaustive) ||
                      (layout == VSHIM_IVF && (size_t)v->p.nprobe < s->nlist);
    for (size_t qi = 0; rc == 0 && approximate && qi < nq; qi++) {
        size_t got = 0;
        while (got < k && out_labels[qi * k + got] >= 0) got++;
        if (got == k || got >= s->live.n) continue;
        rc = vshim_search(s->idx, layout, queries + qi * (size_t)v->p.dim, 1, k, ef,
                          v->p.nprobe, &sel, 1, out_labels + qi * k, out_scores + qi * k, errbuf,
                          errlen);
    }
    pthread_rwlock_unlock(&v->lock);
    return rc;
}

size_t vindex_count(vindex *v) {
    pthread_rwlock_rdlock(&v->lock);
    size_t n = v->s.live.n;
    pthread_rwlock_unlock(&v->lock);
    return n;
}

static int needs_rebuild_locked(const vindex *v) {
    const struct vstate *s = &v->s;
    return s->kind == KIND_HNSW && s->ndead > 0 &&
           (double)s->ndead > v->p.rebuild_ratio * (double)(s->ndead + s->live.n);
}

void vindex_info(vindex *v, struct vindex_info *info) {
    pthread_rwlock_rdlock(&v->lock);
    memset(info, 0, sizeof *info);
    info->count = v->s.live.n;
    info->tombstones = v->s.ndead;
    info->dim = v->p.dim;
    info->trained = v->s.kind != KIND_IVF || v->s.trained;
    info->training = v->training;
    info->needs_rebuild = needs_rebuild_locked(v);
    info->memory_bytes = vshim_memory_bytes(v->s.idx) + v->s.live.cap * sizeof(int64_t) + v->s.dead_cap;
    snprintf(info->spec, sizeof info->spec, "%s", v->s.spec);
    pthread_rwlock_unlock(&v->lock);
}

int vindex_needs_rebuild(vindex *v) {
    pthread_rwlock_rdlock(&v->lock);
    int r = needs_rebuild_locked(v);
    pthread_rwlock_unlock(&v->lock);
    return r;
}

void vindex_wait_training(vindex *v) {
    pthread_mutex_lock(&v->wait_mu);
    while (v->training) pthread_cond_wait(&v->wait_cv, &v->wait_mu);
    pthread_mutex_unlock(&v->wait_mu);
    join_training(v);
}

int vindex_replace(vindex *v, vindex *fresh, char *errbuf, size_t errlen) {
    if (!v || !fresh || v == fresh) return fail(errbuf, errlen, VINDEX_EINVAL, "bad handles");
    if (fresh->p.dim != v->p.dim)
        return fail(errbuf, errlen, VINDEX_EINVAL, "dimension %d != %d", fresh->p.dim, v->p.dim);
    /* A training thread of v would swap its result in after ours; let it finish first. */
    vindex_wait_training(v);
    vindex_wait_training(fresh);
    pthread_rwlock_wrlock(&v->lock);
    struct vstate old = v->s;
    v->s = fresh->s;
    fresh->s = old;
    v->p.spec = v->s.spec;
    fresh->p.spec = fresh->s.spec;
    /* fresh's own settings (efSearch, nprobe, ...) came with its spec. */
    v->p.ef_search = fresh->p.ef_search;
    v->p.ef_construction = fresh->p.ef_construction;
    v->p.nprobe = fresh->p.nprobe;
    v->p.train_min = fresh->p.train_min;
    pthread_rwlock_unlock(&v->lock);
    vindex_free(fresh);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* snapshots                                                                                  */

/*
 * File layout (little-endian, the only byte order this runs on):
 *    0  magic "SBVINDEX"        8
 *    8  u32 format version      (VINDEX_SNAPSHOT_VERSION)
 *   12  u32 header length       (SNAP_FIXED + spec length)
 *   16  u32 dim
 *   20  u32 kind                (0 Flat, 1 HNSW, 2 IVF)
 *   24  u32 flags               (bit 0: IVF trained)
 *   28  u32 spec length         (< 128)
 *   32  u64 store change counter
 *   40  u64 live count
 *   48  u64 FAISS ntotal
 *   56  u64 tombstone count
 *   64  u64 FAISS index length  (bytes written by faiss write_index)
 *   72  u64 body length         (index + the HNSW dead map of ntotal bytes)
 *   80  u64 block table hash    (vindex_hash64 of the block table)
 *   88  u32 caller bytes length (<= VINDEX_SNAPSHOT_USER_MAX)
 *   92  u32 block size          (SNAP_BLOCK)
 *   96  caller bytes, zero padded to 64
 *  160  u64 header hash         (of bytes 0..159 and the spec)
 *  168  spec bytes
 *  then the body, then the block table: one u64 vindex_hash64 per block of the body (blocks of
 *  the block size, the last one shorter).
 * The index part of the body is FAISS's write_index stream, except for Flat and untrained IVF
 * (an IDMap2 over Flat): there it is u64 n, n i64 labels (in position order), n * dim f32
 * vectors, which the loader copies into place (vshim_flat_make) instead of having FAISS grow and
 * zero-fill them page by page.
 * Version 1 had one hash of the whole body, checked in a pass of its own before FAISS parsed it
 * (and FAISS then zero-filled the vectors page fault by page fault before copying them in).
 * Per-block hashes let the loader check each block just before it copies it, while it is in
 * cache, so FAISS still parses only checked bytes and the body is read once. Measured here at
 * 1M x 384 Flat on a loaded 2-core machine (load 12): 2.1-3.1 s of CPU per load with version 1,
 * 1.4 s with version 2.
 */
#define SNAP_MAGIC "SBVINDEX"
#define SNAP_HASHED 160u
#define SNAP_FIXED 168u
/* 256 KiB: a block stays in L2 between its hash and its copy. */
#define SNAP_BLOCK (256u * 1024u)

struct snap_header {
    uint32_t version, header_len, dim, kind, flags, spec_len, user_len, block;
    uint64_t change, count, ntotal, ndead, index_len, body_len, table_hash, header_hash;
};

static void put32(unsigned char *p, uint32_t x) { memcpy(p, &x, 4); }
static void put64(unsigned char *p, uint64_t x) { memcpy(p, &x, 8); }
static uint32_t get32(const unsigned char *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    return x;
}
static uint64_t get64(const unsigned char *p) {
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

static uint64_t header_hash(const unsigned char *fixed, const char *spec, size_t spec_len) {
    struct hstate h;
    h_init(&h);
    h_update(&h, fixed, SNAP_HASHED);
    h_update(&h, spec, spec_len);
    return h_final(&h);
}

/* The body stream: stdio over the temp file's descriptor, hashing each block as FAISS writes. */
struct body_sink {
    int fd;
    struct hstate h; /* of the current block */
    size_t in_block; /* bytes of the current block so far */
    uint64_t *table; /* hashes of the finished blocks */
    size_t nblocks, cap;
    uint64_t bytes;
    int err;
};

static int sink_end_block(struct body_sink *s) {
    if (s->nblocks == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uint64_t *t = realloc(s->table, cap * sizeof *t);
        if (!t) return -1;
        s->table = t;
        s->cap = cap;
    }
    s->table[s->nblocks++] = h_final(&s->h);
    h_init(&s->h);
    s->in_block = 0;
    return 0;
}

static ssize_t sink_write(void *cookie, const char *buf, size_t size) {
    struct body_sink *s = cookie;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(s->fd, buf + done, size - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            s->err = errno;
            return done ? (ssize_t)done : -1;
        }
        done += (size_t)w;
    }
    for (size_t off = 0; off < size;) {
        size_t n = size - off < SNAP_BLOCK - s->in_block ? size - off : SNAP_BLOCK - s->in_block;
        h_update(&s->h, buf + off, n);
        s->in_block += n;
        off += n;
        if (s->in_block == SNAP_BLOCK && sink_end_block(s) != 0) {
            s->err = ENOMEM;
            return -1;
        }
    }
    s->bytes += size;
    return (ssize_t)size;
}

static int sync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return -1;
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash == copy) dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = copy;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : fsync(fd);
    if (fd >= 0) close(fd);
    free(copy);
    return rc;
}

static int write_all_at(int fd, const void *buf, size_t len, off_t off) {
    const char *p = buf;
    while (len) {
        ssize_t w = pwrite(fd, p, len, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Whether a state's index is snapshotted in the raw flat layout (see the file layout). */
static int raw_flat(uint32_t kind, int trained) {
    return kind == KIND_FLAT || (kind == KIND_IVF && !trained);
}

/* The raw flat layout of an IDMap2 over Flat: u64 n, n i64 labels, n * dim f32. Returns 0, -1 on
 * a write error, or a VINDEX_E* code. */
static int write_flat(const FaissIndex *idx, size_t n, size_t dim, FILE *f) {
    const float *x = vshim_flat_vectors(idx);
    int64_t *labels = malloc((n ? n : 1) * sizeof *labels);
    if (!labels) return VINDEX_ENOMEM;
    /* x is NULL for a Flat index that never held a vector (FAISS 1.7.3's get_xb() is the data()
     * of an empty std::vector) */
    if ((!x && n) || vshim_labels(idx, VSHIM_IDMAP, labels, NULL, 0) != 0) {
        free(labels);
        return VINDEX_EFAISS;
    }
    uint64_t n64 = n;
    int rc = fwrite(&n64, sizeof n64, 1, f) == 1 && fwrite(labels, sizeof *labels, n, f) == n &&
                     (n == 0 || fwrite(x, sizeof *x * dim, n, f) == n)
                 ? 0
                 : -1;
    free(labels);
    return rc;
}

/* Writes the snapshot body and header into fd (read lock held). */
static int snapshot_fill(vindex *v, int fd, uint64_t change, const void *user, size_t user_len,
                         char *errbuf, size_t errlen) {
    const struct vstate *s = &v->s;
    size_t spec_len = strlen(s->spec);
    uint32_t header_len = SNAP_FIXED + (uint32_t)spec_len;
    if (lseek(fd, header_len, SEEK_SET) < 0)
        return fail(errbuf, errlen, VINDEX_EIO, "seek in snapshot: %s", strerror(errno));

    struct body_sink sink = {.fd = fd};
    h_init(&sink.h);
    cookie_io_functions_t io = {.write = sink_write};
    FILE *f = fopencookie(&sink, "w", io);
    if (!f) return fail(errbuf, errlen, VINDEX_ENOMEM, "fopencookie failed");
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    uint64_t ntotal = (uint64_t)faiss_Index_ntotal(s->idx);
    int frc = 0, flush_rc = 0;
    if (raw_flat(s->kind, s->trained)) {
        flush_rc = write_flat(s->idx, (size_t)ntotal, (size_t)v->p.dim, f);
        if (flush_rc == VINDEX_ENOMEM || flush_rc == VINDEX_EFAISS) {
            fclose(f);
            free(sink.table);
            return fail(errbuf, errlen, flush_rc, "reading the flat index for its snapshot");
        }
    } else {
        frc = faiss_write_index(s->idx, f);
    }
    if (fflush(f) != 0) flush_rc = -1;
    uint64_t index_len = sink.bytes;
    if (frc == 0 && flush_rc == 0 && s->kind == KIND_HNSW) {
        /* dead[] is sized for ntotal already (grow_dead on every add). */
        if (ntotal && fwrite(s->dead, 1, ntotal, f) != ntotal) flush_rc = -1;
        if (fflush(f) != 0) flush_rc = -1;
    }
    fclose(f);
    if (frc == 0 && flush_rc == 0 && !sink.err && sink.in_block && sink_end_block(&sink) != 0)
        sink.err = ENOMEM;
    uint64_t table_hash =
        sink.table ? vindex_hash64(sink.table, sink.nblocks * sizeof *sink.table) : 0;
    if (frc == 0 && flush_rc == 0 && !sink.err &&
        write_all_at(fd, sink.table, sink.nblocks * sizeof *sink.table,
                     (off_t)(header_len + sink.bytes)) != 0)
        sink.err = errno;
    free(sink.table);
    if (frc != 0) return faiss_fail(errbuf, errlen, "FAISS write_index");
    if (flush_rc != 0 || sink.err)
        return fail(errbuf, errlen, VINDEX_EIO, "writing snapshot: %s",
                    strerror(sink.err ? sink.err : EIO));

    unsigned char hdr[SNAP_FIXED];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, SNAP_MAGIC, 8);
    put32(hdr + 8, VINDEX_SNAPSHOT_VERSION);
    put32(hdr + 12, header_len);
    put32(hdr + 16, (uint32_t)v->p.dim);
    put32(hdr + 20, (uint32_t)s->kind);
    put32(hdr + 24, s->trained ? 1u : 0u);
    put32(hdr + 28, (uint32_t)spec_len);
    put64(hdr + 32, change);
    put64(hdr + 40, s->live.n);
    put64(hdr + 48, ntotal);
    put64(hdr + 56, s->ndead);
    put64(hdr + 64, index_len);
    put64(hdr + 72, sink.bytes);
    put64(hdr + 80, table_hash);
    put32(hdr + 88, (uint32_t)user_len);
    put32(hdr + 92, SNAP_BLOCK);
    if (user_len) memcpy(hdr + 96, user, user_len);
    put64(hdr + SNAP_HASHED, header_hash(hdr, s->spec, spec_len));
    if (write_all_at(fd, hdr, sizeof hdr, 0) != 0 ||
        write_all_at(fd, s->spec, spec_len, SNAP_FIXED) != 0)
        return fail(errbuf, errlen, VINDEX_EIO, "writing snapshot header: %s", strerror(errno));
    if (fsync(fd) != 0)
        return fail(errbuf, errlen, VINDEX_EIO, "fsync of snapshot: %s", strerror(errno));
    return 0;
}

int vindex_snapshot_remove_temps(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    char dir[4096], prefix[512];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash ? dlen : 1), slash ? path : ".");
    /* the name vindex_snapshot_write gives its temporary file */
    snprintf(prefix, sizeof prefix, "%s.tmp.", slash ? slash + 1 : path);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4600];
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 &&
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p && unlink(p) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int vindex_snapshot_write(vindex *v, const char *path, uint64_t change_counter, const void *user,
                          size_t user_len, char *errbuf, size_t errlen) {
    if (!v || !path || user_len > VINDEX_SNAPSHOT_USER_MAX || (user_len && !user))
        return fail(errbuf, errlen, VINDEX_EINVAL, "NULL index or path, or bad caller bytes");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return VINDEX_ENOMEM;
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return fail(errbuf, errlen, VINDEX_EIO, "creating a temporary file next to %s: %s", path,
                    strerror(e));
    }
    pthread_rwlock_rdlock(&v->lock);
    int rc = snapshot_fill(v, fd, change_counter, user, user_len, errbuf, errlen);
    pthread_rwlock_unlock(&v->lock);
    if (close(fd) != 0 && rc == 0)
        rc = fail(errbuf, errlen, VINDEX_EIO, "closing %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = fail(errbuf, errlen, VINDEX_EIO, "renaming %s to %s: %s", tmp, path, strerror(errno));
    if (rc != 0) {
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    if (sync_dir_of(path) != 0)
        return fail(errbuf, errlen, VINDEX_EIO, "fsync of the directory of %s: %s", path,
                    strerror(errno));
    return 0;
}

/* Checks magic, version and the header hash of the first len bytes of a file; fills h and meta. */
static int parse_header(const unsigned char *map, size_t len, const char *path, struct snap_header *h,
                        struct vindex_snapshot_meta *meta, char *errbuf, size_t errlen) {
    if (len < SNAP_FIXED || memcmp(map, SNAP_MAGIC, 8) != 0)
        return fail(errbuf, errlen, VINDEX_ECORRUPT,
                    "%s is not a vindex snapshot (truncated header or bad magic)", path);
    h->version = get32(map + 8);
    h->header_len = get32(map + 12);
    h->dim = get32(map + 16);
    h->kind = get32(map + 20);
    h->flags = get32(map + 24);
    h->spec_len = get32(map + 28);
    h->change = get64(map + 32);
    h->count = get64(map + 40);
    h->ntotal = get64(map + 48);
    h->ndead = get64(map + 56);
    h->index_len = get64(map + 64);
    h->body_len = get64(map + 72);
    h->table_hash = get64(map + 80);
    h->user_len = get32(map + 88);
    h->block = get32(map + 92);
    h->header_hash = get64(map + SNAP_HASHED);
    if (h->version != VINDEX_SNAPSHOT_VERSION)
        return fail(errbuf, errlen, VINDEX_EVERSION,
                    "snapshot %s has format version %u, this build reads %u", path, h->version,
                    VINDEX_SNAPSHOT_VERSION);
    if (h->spec_len >= 128 || h->header_len != SNAP_FIXED + h->spec_len || len < h->header_len ||
        h->user_len > VINDEX_SNAPSHOT_USER_MAX || h->block == 0 ||
        h->header_hash != header_hash(map, (const char *)map + SNAP_FIXED, h->spec_len))
        return fail(errbuf, errlen, VINDEX_ECORRUPT, "snapshot %s has a damaged header", path);
    if (meta) {
        memset(meta, 0, sizeof *meta);
        meta->version = h->version;
        meta->dim = (int)h->dim;
        memcpy(meta->spec, map + SNAP_FIXED, h->spec_len);
        meta->change_counter = h->change;
        meta->count = h->count;
        meta->user_len = h->user_len;
        memcpy(meta->user, map + 96, h->user_len);
    }
    return 0;
}

int vindex_snapshot_peek(const char *path, struct vindex_snapshot_meta *meta, char *errbuf,
                         size_t errlen) {
    if (!path || !meta) return fail(errbuf, errlen, VINDEX_EINVAL, "NULL path or meta");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fail(errbuf, errlen, VINDEX_EIO, "opening snapshot %s: %s", path, strerror(e));
        errno = e;
        return VINDEX_EIO;
    }
    unsigned char buf[SNAP_FIXED + 128];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = read(fd, buf + got, sizeof buf - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    struct snap_header h;
    return parse_header(buf, got, path, &h, meta, errbuf, errlen);
}

/* The number of blocks of the body when the file's size is exactly header + body + block table,
 * else 0. A sound body is never empty
 * (FAISS writes at least its header), so 0 always means an unsound file. */
static size_t blocks_fit(const struct snap_header *h, size_t size) {
    if (h->block != SNAP_BLOCK || h->index_len > h->body_len || size < h->header_len) return 0;
    size_t n = (size_t)((h->body_len + h->block - 1) / h->block);
    size_t rest = size - h->header_len;
    if (h->body_len > rest || (rest - h->body_len) / sizeof(uint64_t) != n ||
        (rest - h->body_len) % sizeof(uint64_t) != 0)
        return 0;
    return n;
}

/* Copies the block table out of the map (it is not 8-byte aligned there) into *out (freed by the
 * caller) and checks it against the header's hash. */
static int read_table(const unsigned char *map, const struct snap_header *h, size_t nblocks,
                      uint64_t **out, const char *path, char *errbuf, size_t errlen) {
    size_t len = nblocks * sizeof **out;
    *out = malloc(len);
    if (!*out) return VINDEX_ENOMEM;
    memcpy(*out, map + h->header_len + h->body_len, len);
    if (vindex_hash64(*out, len) != h->table_hash)
        return fail(errbuf, errlen, VINDEX_ECORRUPT, "snapshot %s fails its checksum (block table)",
                    path);
    return 0;
}

/* Reads the raw flat layout (see the file layout) into a new IDMap2 over Flat. */
static int read_flat(struct vshim_body *b, const struct snap_header *h, int dim, FaissIndex **out,
                     char *errbuf, size_t errlen) {
    uint64_t n;
    size_t per = sizeof(int64_t) + (size_t)dim * sizeof(float);
    if (h->index_len < sizeof n || vshim_body_copy(b, &n, 0, sizeof n) != 0 || n != h->ntotal ||
        n > (h->index_len - sizeof n) / per || h->index_len != sizeof n + n * per)
        return fail(errbuf, errlen, VINDEX_ECORRUPT,
                    "snapshot's flat index part does not match its header");
    return vshim_flat_read(dim, (size_t)n, b, sizeof n, out, errbuf, errlen);
}

/* Loads the body into a state (no lock: the vindex is not shared yet); vshim_read_index() checks
 * every block of it against the table. t[0..1] receive the seconds spent in FAISS's read and in
 * the label bookkeeping. */
static int load_body(vindex *v, const struct snap_header *h, const unsigned char *body,
                     const uint64_t *table, double t[2], char *errbuf, size_t errlen) {
    struct vstate *s = &v->s;
    FaissIndex *idx = NULL;
    struct vshim_body b = {.body = body, .len = (size_t)h->body_len, .hashes = table,
                           .block = h->block};
    double t0 = mono_s();
    int rc = raw_flat(h->kind, h->flags & 1) ? read_flat(&b, h, v->p.dim, &idx, errbuf, errlen)
                                             : vshim_read_index(&b, (size_t)h->index_len, &idx,
                                                                errbuf, errlen);
    if (rc == 0 && vshim_body_check(&b, b.len) != 0) { /* the rest: the HNSW dead map */
        faiss_Index_free(idx);
        rc = fail(errbuf, errlen, VINDEX_ECORRUPT, "a block of the snapshot body fails its checksum");
    }
    t[0] = mono_s() - t0;
    if (rc) return rc;
    t0 = mono_s();
    faiss_Index_free(s->idx);
    s->idx = idx;
    int is_ivf = faiss_IndexIVF_cast(idx) != NULL;
    int want_ivf = s->kind == KIND_IVF && (h->flags & 1);
    if (faiss_Index_d(idx) != v->p.dim || (uint64_t)faiss_Index_ntotal(idx) != h->ntotal ||
        is_ivf != want_ivf || (s->kind == KIND_HNSW) != (vshim_is_hnsw(idx) != 0))
        return fail(errbuf, errlen, VINDEX_ECORRUPT,
                    "snapshot index does not match its header (type, dim or size)");
    s->trained = want_ivf;
    if (s->kind == KIND_HNSW &&
        (rc = vshim_set_hnsw(idx, v->p.ef_construction, v->p.ef_search, errbuf, errlen)) != 0)
        return rc;

    size_t ntotal = (size_t)h->ntotal;
    int64_t *labels = malloc((ntotal ? ntotal : 1) * sizeof *labels);
    if (!labels) return VINDEX_ENOMEM;
    rc = vshim_labels(idx, is_ivf ? VSHIM_IVF : VSHIM_IDMAP, labels, errbuf, errlen);
    if (rc == 0 && s->kind == KIND_HNSW) {
        rc = grow_dead(s, ntotal);
        if (rc == 0 && ntotal) memcpy(s->dead, body + h->index_len, ntotal);
    }
    if (rc == 0) rc = lset_reserve(&s->live, ntotal);
    s->ndead = 0;
    for (size_t i = 0; rc == 0 && i < ntotal; i++) {
        if (s->kind == KIND_HNSW && s->dead[i]) {
            if (s->dead[i] != 1) rc = VINDEX_ECORRUPT;
            s->ndead++;
            continue;
        }
        if (labels[i] < 0 || lset_has(&s->live, labels[i])) rc = VINDEX_ECORRUPT;
        else lset_put(&s->live, labels[i]);
    }
    free(labels);
    t[1] = mono_s() - t0;
    if (rc == VINDEX_ECORRUPT || (rc == 0 && (s->live.n != h->count || s->ndead != h->ndead)))
        return fail(errbuf, errlen, VINDEX_ECORRUPT,
                    "snapshot labels do not match its header (duplicates or counts)");
    return rc;
}

int vindex_snapshot_read(const char *path, const struct vindex_params *params, vindex **out,
                         struct vindex_snapshot_meta *meta, char *errbuf, size_t errlen) {
    if (!path || !out) return fail(errbuf, errlen, VINDEX_EINVAL, "NULL path or out");
    *out = NULL;
    if (meta) memset(meta, 0, sizeof *meta);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fail(errbuf, errlen, VINDEX_EIO, "opening snapshot %s: %s", path, strerror(e));
        errno = e;
        return VINDEX_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(errbuf, errlen, VINDEX_EIO, "stat of snapshot %s: %s", path, strerror(e));
    }
    size_t size = (size_t)st.st_size;
    if (size < SNAP_FIXED) {
        close(fd);
        return fail(errbuf, errlen, VINDEX_ECORRUPT, "snapshot %s is truncated (%zu bytes)", path,
                    size);
    }
    double t0 = mono_s();
    /* MAP_POPULATE: the loader touches every page once, in order; mapping them all in one call
     * costs less than a fault per page (or per fault-around window). */
    unsigned char *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return fail(errbuf, errlen, VINDEX_EIO, "mapping snapshot %s: %s", path, strerror(e));
    double t_map = mono_s() - t0, t_load[2] = {0, 0};

    struct snap_header h;
    struct vindex_snapshot_meta m;
    vindex *v = NULL;
    uint64_t *table = NULL;
    size_t nblocks = 0;
    struct vindex_params def = vindex_default_params();
    const struct vindex_params *p = params ? params : &def;
    int rc = parse_header(map, size, path, &h, &m, errbuf, errlen);
    if (rc == 0 && meta) *meta = m;
    if (rc != 0) {
        /* parse_header() has written the reason */
    } else if (!p->spec || strcmp(m.spec, p->spec) != 0 || m.dim != p->dim) {
        rc = fail(errbuf, errlen, VINDEX_ESPEC,
                  "snapshot %s is for \"%s\" dim %d, expected \"%s\" dim %d", path, m.spec, m.dim,
                  p->spec ? p->spec : "(null)", p->dim);
    } else if (!(nblocks = blocks_fit(&h, size))) {
        rc = fail(errbuf, errlen, VINDEX_ECORRUPT,
                  "snapshot %s is truncated or has trailing bytes (%zu bytes, header says a body "
                  "of %llu in blocks of %u)",
                  path, size, (unsigned long long)h.body_len, h.block);
    } else if ((rc = read_table(map, &h, nblocks, &table, path, errbuf, errlen)) != 0) {
        /* read_table() has written the reason */
    } else if ((rc = vindex_create(p, &v, errbuf, errlen)) == 0) {
        if ((uint32_t)v->s.kind != h.kind ||
            h.body_len != h.index_len + (v->s.kind == KIND_HNSW ? h.ntotal : 0))
            rc = fail(errbuf, errlen, VINDEX_ECORRUPT,
                      "snapshot %s: body layout does not match its kind", path);
        else
            rc = load_body(v, &h, map + h.header_len, table, t_load, errbuf, errlen);
    }
    free(table);
    munmap(map, size);
    if (rc) {
        vindex_free(v);
        return rc;
    }
    vlog(v, VINDEX_LOG_DEBUG,
         "snapshot %s (%zu bytes) loaded in %.3f s: map %.3f s, checked index read %.3f s, labels "
         "%.3f s",
         path, size, mono_s() - t0, t_map, t_load[0], t_load[1]);
    pthread_rwlock_wrlock(&v->lock);
    maybe_train(v);
    pthread_rwlock_unlock(&v->lock);
    *out = v;
    return 0;
}
