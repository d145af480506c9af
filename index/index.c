/*
 * index.c — sbert_index.h: the LMDB store (store.c) and the vector index (vindex.c) kept in step.
 *
 * Order of every write: validate, commit the LMDB transaction durably, then apply the same
 * change to the vector index. The vector index is derived state: at open it is loaded from its
 * snapshot and brought up to date from the change log, or rebuilt from the stored vectors.
 *
 * Locks, always taken in this order:
 *   wmu         serialises writers (put, delete, snapshot, backup, reindex, the snapshot thread)
 *   swap        rwlock: every public read holds it shared; the end of a reindex takes it
 *               exclusively to swap the store and vector index objects
 *   st->lock    the store's rwlock around LMDB transactions (map growth takes it exclusively)
 *   the vindex's own rwlock, inside vindex.c
 */
#define _GNU_SOURCE
#include "sbert_index.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filter.h"
#include "store.h"
#include "vindex.h"

#define DEFAULT_MAP_SIZE ((size_t)1 << 30)
#define DEFAULT_SNAPSHOT_CHANGES 100000
#define DEFAULT_SNAPSHOT_SECONDS 300
#define DEFAULT_PER_DOC_K 100
#define MAX_K 10000
#define CHUNK 256        /* documents per read transaction when scanning */
#define REBUILD_CHUNK 4096

struct sbert_index {
    char dir[4096];
    char store_path[4200], snap_path[4200], tmp_path[4200];
    int lock_fd;
    store *st;
    vindex *vi;
    struct store_meta meta; /* counters change only under wmu */
    char spec[128];
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

/* ---- small helpers --------------------------------------------------------------------------- */

static void ilog(sbert_index *idx, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ilog(sbert_index *idx, int level, const char *fmt, ...)
{
    if (!idx->params.log)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    idx->params.log(level, msg, idx->params.log_user);
}

static int errf(char *errbuf, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int errf(char *errbuf, size_t errlen, int code, const char *fmt, ...)
{
    if (errbuf && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errbuf, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int vindex_code(int rc)
{
    switch (rc) {
    case VINDEX_OK:
        return SBERT_INDEX_OK;
    case VINDEX_ENOMEM:
        return SBERT_INDEX_ENOMEM;
    case VINDEX_EINVAL:
        return SBERT_INDEX_EINVAL;
    case VINDEX_EIO:
        return SBERT_INDEX_EIO;
    default:
        return SBERT_INDEX_EVINDEX;
    }
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* Seconds on the monotonic clock, for the durations the open logs. */
static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Strict UTF-8 (RFC 3629): no overlongs, surrogates or code points above U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned cp, min;
        if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else
            return 0;
        if (i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

/* Copies v (dim floats) into out, L2-normalised. Returns -1 when v has a NaN or infinity. */
static int normalize_into(const float *v, size_t dim, float *out)
{
    double ss = 0;
    for (size_t i = 0; i < dim; i++) {
        if (!isfinite(v[i]))
            return -1;
        ss += (double)v[i] * v[i];
    }
    double inv = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
    for (size_t i = 0; i < dim; i++)
        out[i] = (float)(v[i] * inv);
    return 0;
}

static void fill_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r <= 0) {
            /* getrandom cannot fail for small sizes after boot; keep ids unique anyway. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            for (size_t i = 0; i < n; i++)
                p[i] = (unsigned char)(ts.tv_nsec >> (i % 4 * 8)) ^ (unsigned char)i;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

/* A UUIDv7 (RFC 9562) whose 12-bit rand_a field is a counter within the millisecond, so ids
 * generated by this store are strictly increasing in byte order. Called under wmu. */
static void gen_id(sbert_index *idx, char out[SBERT_INDEX_GEN_ID_SIZE])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    if (ms <= idx->gen_last_ms) {
        ms = idx->gen_last_ms;
        if (++idx->gen_seq > 0xFFF) {
            ms++;
            idx->gen_seq = 0;
        }
    } else
        idx->gen_seq = 0;
    idx->gen_last_ms = ms;
    unsigned char b[16];
    fill_random(b, sizeof b);
    for (int i = 0; i < 6; i++)
        b[i] = (unsigned char)(ms >> (40 - 8 * i));
    b[6] = (unsigned char)(0x70 | (idx->gen_seq >> 8));
    b[7] = (unsigned char)idx->gen_seq;
    b[8] = (unsigned char)(0x80 | (b[8] & 0x3F));
    snprintf(out, SBERT_INDEX_GEN_ID_SIZE,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
}

static const char *pool_name(int p)
{
    return p == SBERT_INDEX_POOL_MEAN ? "mean" : p == SBERT_INDEX_POOL_CLS ? "cls"
                                             : p == SBERT_INDEX_POOL_MAX ? "max"
                                                                         : "?";
}

static int model_same(const struct store_meta *m, const struct sbert_index_model *p)
{
    return strcmp(m->model_sha256, p->weights_sha256) == 0 && m->dim == p->dim &&
           m->pooling == p->pooling && m->normalize == p->normalize &&
           m->max_seq_length == p->max_seq_length;
}

static int model_valid(const struct sbert_index_model *m)
{
    if (!m->name || strlen(m->name) > 255 || !m->weights_sha256 ||
        strlen(m->weights_sha256) != 64 || m->dim < 1 || m->dim > 65536 || m->pooling < 0 ||
        m->pooling > 2 || (m->normalize != 0 && m->normalize != 1) || m->max_seq_length < 1)
        return 0;
    return 1;
}

static void meta_set_model(struct store_meta *m, const struct sbert_index_model *p)
{
    snprintf(m->model_name, sizeof m->model_name, "%s", p->name);
    snprintf(m->model_sha256, sizeof m->model_sha256, "%s", p->weights_sha256);
    m->dim = p->dim;
    m->pooling = p->pooling;
    m->normalize = p->normalize;
    m->max_seq_length = p->max_seq_length;
}

static struct vindex_params vparams(sbert_index *idx, int dim)
{
    struct vindex_params vp = vindex_default_params();
    vp.spec = idx->spec;
    vp.dim = dim;
    if (idx->params.ef_search > 0)
        vp.ef_search = idx->params.ef_search;
    if (idx->params.nprobe > 0)
        vp.nprobe = idx->params.nprobe;
    vp.log = idx->params.log;
    vp.log_user = idx->params.log_user;
    return vp;
}

/* Publishes the counters for stats; called under wmu (or before the handle is shared). */
static void publish(sbert_index *idx)
{
    atomic_store(&idx->pub_change, idx->meta.change);
    atomic_store(&idx->pub_snap_change, idx->snap_exists ? idx->snap_change : 0);
    atomic_store(&idx->pub_snap_time, idx->snap_exists ? idx->snap_time : 0);
}

static void progress(sbert_index *idx, const char *phase, uint64_t done, uint64_t total)
{
    if (idx->params.progress)
        idx->params.progress(idx->params.progress_user, phase, done, total);
}

/* Number of stored documents (0 when it cannot be read: progress totals only). */
static uint64_t doc_total(sbert_index *idx)
{
    MDB_txn *txn;
    MDB_stat st;
    uint64_t n = 0;
    if (store_read_begin(idx->st, &txn) == 0) {
        if (mdb_stat(txn, idx->st->docs, &st) == 0)
            n = st.ms_entries;
        store_read_end(idx->st, txn);
    }
    return n;
}

/* ---- public: errors, defaults ------------------------------------------------------------------ */

const char *sbert_index_strerror(int err)
{
    static const char *const msgs[] = {
        "success",
        "out of memory",
        "invalid argument",
        "input/output error",
        "no space left on device",
        "the store was built with another model",
        "not a store of a known format version",
        "no document with that id",
        "bad filter",
        "bad id (empty, longer than 512 bytes or not UTF-8)",
        "metadata is not a JSON object",
        "vector index error",
        "the store is open in another process",
        "a callback failed",
        "the target exists and is not an empty directory",
        "index spec not accepted",
        "text is not valid UTF-8",
        "the result would exceed the size bound",
    };
    if (err > 0 || -err >= (int)(sizeof msgs / sizeof msgs[0]))
        return "unknown error";
    return msgs[-err];
}

struct sbert_index_params sbert_index_default_params(void)
{
    struct sbert_index_params p;
    memset(&p, 0, sizeof p);
    return p;
}

struct sbert_index_query_params sbert_index_query_default_params(void)
{
    struct sbert_index_query_params p = {.k = 10, .min_score = -2.0f, .filter = NULL, .include = 0};
    return p;
}

struct sbert_index_pairs_params sbert_index_pairs_default_params(void)
{
    struct sbert_index_pairs_params p = {
        .top_n = 100, .min_score = -2.0f, .per_doc_k = 0, .filter = NULL};
    return p;
}

/* ---- the vector index: rebuild, replay, snapshot ---------------------------------------------- */

/* Builds a vector index of idx->spec from every stored vector. */
static int rebuild(sbert_index *idx, vindex **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    struct vindex_params vp = vparams(idx, idx->meta.dim);
    vindex *v;
    int rc = vindex_create(&vp, &v, errbuf, errlen);
    if (rc)
        return rc == VINDEX_ENOMEM ? SBERT_INDEX_ENOMEM : SBERT_INDEX_ESPEC;
    size_t dim = (size_t)idx->meta.dim;
    int64_t *labels = malloc(REBUILD_CHUNK * sizeof *labels);
    float *vecs = malloc(REBUILD_CHUNK * dim * sizeof *vecs);
    if (!labels || !vecs) {
        rc = SBERT_INDEX_ENOMEM;
        goto done;
    }
    size_t next = 0;
    uint64_t total = 0, expect = doc_total(idx);
    progress(idx, "rebuild", 0, expect);
    for (;;) {
        MDB_txn *txn;
        if ((rc = store_read_begin(idx->st, &txn)))
            goto done;
        MDB_cursor *c;
        size_t n = 0;
        rc = mdb_cursor_open(txn, idx->st->docs, &c);
        if (rc == 0) {
            MDB_val k = {sizeof next, &next}, d;
            rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
            while (rc == 0 && n < REBUILD_CHUNK) {
                struct store_record r;
                if ((rc = store_record_decode(&d, &r)))
                    break;
                if (r.dim != dim) {
                    rc = SBERT_INDEX_EFORMAT;
                    break;
                }
                size_t label;
                memcpy(&label, k.mv_data, sizeof label);
                labels[n] = (int64_t)label;
                memcpy(vecs + n * dim, r.vector, dim * sizeof(float));
                n++;
                next = label + 1;
                rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
            }
            mdb_cursor_close(c);
        }
        store_read_end(idx->st, txn);
        if (rc == MDB_NOTFOUND)
            rc = 0;
        if (rc) {
            rc = store_error(rc, "reading stored vectors", errbuf, errlen);
            goto done;
        }
        if (n == 0)
            break;
        if ((rc = vindex_add(v, labels, vecs, n, errbuf, errlen))) {
            rc = vindex_code(rc);
            goto done;
        }
        total += n;
        progress(idx, "rebuild", total, expect);
        if (n < REBUILD_CHUNK)
            break;
    }
    ilog(idx, SBERT_INDEX_LOG_INFO, "vector index %s rebuilt from %llu stored vectors", idx->spec,
         (unsigned long long)total);
done:
    free(labels);
    free(vecs);
    if (rc) {
        vindex_free(v);
        return rc;
    }
    *out = v;
    return 0;
}

/*
 * Applies the change log entries after `from` to v. Returns 1 when the log does not reach back
 * to from + 1 (the snapshot is too old: rebuild instead), 0 when done, or a negative code.
 */
static int replay(sbert_index *idx, vindex *v, uint64_t from, char *errbuf, size_t errlen)
{
    if (from == idx->meta.change)
        return 0;
    /* Applied in batches, not change by change: a Flat delete compacts the whole index and
     * rebuilds the IDMap2's label map (O(n) per call: ~0.5 s each at 1M vectors), and one-vector
     * adds cost ~0.1 ms each (measured: 20k changes replayed in 2.35 s one by one). Order does
     * not matter because labels are never reused: a put whose record is gone was deleted later
     * in the log (skipped here; its delete then finds nothing), and a delete removes a label the
     * snapshot or an earlier put holds. So puts go in chunks, and all deletes in one call at the
     * end. */
    size_t dim = (size_t)idx->meta.dim;
    int64_t *labels = malloc(REBUILD_CHUNK * sizeof *labels);
    float *vecs = malloc(REBUILD_CHUNK * dim * sizeof *vecs);
    int64_t *dels = NULL;
    size_t nput = 0, ndel = 0, cap_del = 0, applied = 0;
    MDB_txn *txn = NULL;
    int rc = labels && vecs ? store_read_begin(idx->st, &txn) : SBERT_INDEX_ENOMEM;
    if (rc) {
        free(labels);
        free(vecs);
        return rc;
    }
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, idx->st->log, &c)) == 0) {
        size_t seq = (size_t)from + 1;
        MDB_val k = {sizeof seq, &seq}, d;
        rc = mdb_cursor_get(c, &k, &d, MDB_SET);
        if (rc == MDB_NOTFOUND)
            rc = 1;
        while (rc == 0) {
            uint64_t label;
            int op;
            if ((rc = store_log_decode(&d, &label, &op)))
                break;
            if (op == STORE_OP_DELETE) {
                if (ndel == cap_del) {
                    size_t cap = cap_del ? 2 * cap_del : 1024;
                    int64_t *g = realloc(dels, cap * sizeof *g);
                    if (!g) {
                        rc = SBERT_INDEX_ENOMEM;
                        break;
                    }
                    dels = g;
                    cap_del = cap;
                }
                dels[ndel++] = (int64_t)label;
            } else {
                struct store_record r;
                rc = store_record_get(idx->st, txn, label, &r);
                if (rc == SBERT_INDEX_ENOTFOUND)
                    rc = 0;
                else if (rc == 0) {
                    labels[nput] = (int64_t)label;
                    memcpy(vecs + nput * dim, r.vector, dim * sizeof(float));
                    if (++nput == REBUILD_CHUNK) {
                        rc = vindex_code(vindex_add(v, labels, vecs, nput, errbuf, errlen));
                        nput = 0;
                    }
                }
            }
            if (rc)
                break;
            if (++applied % 4096 == 0)
                progress(idx, "replay", applied, idx->meta.change - from);
            rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
        }
        mdb_cursor_close(c);
    }
    store_read_end(idx->st, txn);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0 && nput)
        rc = vindex_code(vindex_add(v, labels, vecs, nput, errbuf, errlen));
    if (rc == 0 && ndel)
        rc = vindex_code(vindex_remove(v, dels, ndel, NULL, errbuf, errlen));
    free(labels);
    free(vecs);
    free(dels);
    if (rc > 1 || rc < -100)
        return store_error(rc, "reading the change log", errbuf, errlen);
    return rc;
}

struct trim_ctx {
    uint64_t upto;
};

static int trim_fn(store *s, MDB_txn *txn, void *user)
{
    return store_log_trim(s, txn, ((struct trim_ctx *)user)->upto);
}

/* Writes a snapshot covering the current change and trims the log. Called under wmu. */
static int snapshot_locked(sbert_index *idx, int force, char *errbuf, size_t errlen)
{
    if (!force && idx->snap_exists && idx->snap_change == idx->meta.change)
        return 0;
    uint64_t change = idx->meta.change;
    ilog(idx, SBERT_INDEX_LOG_DEBUG, "snapshot: writing at change %llu", (unsigned long long)change);
    int rc = vindex_snapshot_write(idx->vi, idx->snap_path, change, idx->meta.uuid,
                                   sizeof idx->meta.uuid, errbuf, errlen);
    if (rc)
        return vindex_code(rc);
    idx->snap_change = change;
    idx->snap_time = now_s();
    idx->snap_exists = 1;
    publish(idx);
    struct trim_ctx t = {change};
    rc = store_write(idx->st, trim_fn, &t, errbuf, errlen);
    if (rc)
        return rc;
    ilog(idx, SBERT_INDEX_LOG_DEBUG, "snapshot written at change %llu",
         (unsigned long long)change);
    return 0;
}

/* Rebuilds the vector index when a write could not be applied to it, or HNSW tombstones call
 * for it. Called under wmu. */
static void maintain_locked(sbert_index *idx)
{
    if (!atomic_load(&idx->need_rebuild) && !vindex_needs_rebuild(idx->vi))
        return;
    char err[512] = "";
    vindex *fresh;
    int rc = rebuild(idx, &fresh, err, sizeof err);
    if (rc == 0)
        rc = vindex_code(vindex_replace(idx->vi, fresh, err, sizeof err));
    if (rc) {
        ilog(idx, SBERT_INDEX_LOG_ERROR, "rebuilding the vector index failed: %s: %s",
             sbert_index_strerror(rc), err);
        return;
    }
    atomic_store(&idx->need_rebuild, 0);
    idx->snap_exists = 0; /* the next snapshot is written even with no new change */
}

static void *snapshot_thread(void *arg)
{
    sbert_index *idx = arg;
    pthread_mutex_lock(&idx->cvmu);
    while (!idx->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&idx->cv, &idx->cvmu, &ts);
        if (idx->stop)
            break;
        pthread_mutex_unlock(&idx->cvmu);

        pthread_mutex_lock(&idx->wmu);
        if (!idx->broken) {
            maintain_locked(idx);
            uint64_t pending = idx->meta.change - idx->snap_change;
            uint64_t every_n = idx->params.snapshot_changes;
            uint32_t every_s = idx->params.snapshot_seconds;
            int due = (pending > 0 || !idx->snap_exists) &&
                      (pending >= every_n ||
                       (every_s != UINT32_MAX && now_s() - idx->snap_time >= (int64_t)every_s));
            if (due) {
                char err[512] = "";
                int rc = snapshot_locked(idx, 0, err, sizeof err);
                if (rc)
                    ilog(idx, SBERT_INDEX_LOG_ERROR, "periodic snapshot failed: %s: %s",
                         sbert_index_strerror(rc), err);
            }
        }
        pthread_mutex_unlock(&idx->wmu);
        pthread_mutex_lock(&idx->cvmu);
    }
    pthread_mutex_unlock(&idx->cvmu);
    return NULL;
}

static void snapshot_poke(sbert_index *idx)
{
    if (idx->meta.change - idx->snap_change >= idx->params.snapshot_changes ||
        atomic_load(&idx->need_rebuild)) {
        pthread_mutex_lock(&idx->cvmu);
        pthread_cond_signal(&idx->cv);
        pthread_mutex_unlock(&idx->cvmu);
    }
}

/* ---- reindex ------------------------------------------------------------------------------- */

struct chunk_doc {
    uint64_t label;
    char *id;
    size_t id_len;
    char *text;
    size_t text_len;
    char *meta; /* NULL: none */
    size_t meta_len;
};

static void chunk_free(struct chunk_doc *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].id);
        free(d[i].text);
        free(d[i].meta);
    }
}

static char *dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* Reads up to max documents with label >= *next (label order) into docs; advances *next. */
static int read_chunk(sbert_index *idx, uint64_t *next, struct chunk_doc *docs, size_t max,
                      size_t *n_out)
{
    *n_out = 0;
    MDB_txn *txn;
    int rc = store_read_begin(idx->st, &txn);
    if (rc)
        return rc;
    MDB_cursor *c;
    size_t n = 0;
    if ((rc = mdb_cursor_open(txn, idx->st->docs, &c)) == 0) {
        size_t key = (size_t)*next;
        MDB_val k = {sizeof key, &key}, d;
        rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
        while (rc == 0 && n < max) {
            struct store_record r;
            if ((rc = store_record_decode(&d, &r)))
                break;
            size_t label;
            memcpy(&label, k.mv_data, sizeof label);
            struct chunk_doc *cd = &docs[n];
            memset(cd, 0, sizeof *cd);
            cd->label = label;
            cd->id = dup_bytes(r.id, r.id_len);
            cd->id_len = r.id_len;
            cd->text = dup_bytes(r.text, r.text_len);
            cd->text_len = r.text_len;
            if (r.meta) {
                cd->meta = dup_bytes(r.meta, r.meta_len);
                cd->meta_len = r.meta_len;
            }
            n++;
            if (!cd->id || !cd->text || (r.meta && !cd->meta)) {
                rc = SBERT_INDEX_ENOMEM;
                break;
            }
            *next = label + 1;
            rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
        }
        mdb_cursor_close(c);
    }
    store_read_end(idx->st, txn);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc) {
        chunk_free(docs, n);
        return store_error(rc, "reading documents", NULL, 0);
    }
    *n_out = n;
    return 0;
}

struct reindex_write {
    const struct store_meta *meta; /* set for the first write only */
    struct chunk_doc *docs;
    const float *vecs;
    size_t n, dim;
};

static int reindex_write_fn(store *s, MDB_txn *txn, void *user)
{
    struct reindex_write *w = user;
    int rc;
    if (w->meta && (rc = store_meta_put(s, txn, w->meta)))
        return rc;
    for (size_t i = 0; i < w->n; i++) {
        struct chunk_doc *d = &w->docs[i];
        size_t key = (size_t)d->label;
        MDB_val k = {sizeof key, &key};
        MDB_val v = {store_record_size(w->dim, d->id_len, d->text_len, d->meta_len), NULL};
        if ((rc = mdb_put(txn, s->docs, &k, &v, MDB_APPEND | MDB_RESERVE)))
            return rc;
        store_record_encode(v.mv_data, w->vecs + i * w->dim, w->dim, d->id, d->id_len, d->text,
                            d->text_len, d->meta, d->meta_len);
        unsigned char ik[1024];
        uint64_t label = d->label;
        unsigned char lv[8];
        for (int b = 0; b < 8; b++)
            lv[b] = (unsigned char)(label >> (8 * b));
        MDB_val kk = {store_id_key(s, d->id, d->id_len, ik), ik}, vv = {8, lv};
        if ((rc = mdb_put(txn, s->ids, &kk, &vv, 0)))
            return rc;
    }
    return 0;
}

/*
 * The reindex (see the header): a fresh environment at tmp_path written with the new vectors,
 * then rename over store_path. Called under wmu. On success idx->st, idx->vi and idx->meta are
 * the new ones and a snapshot has been written.
 */
static int reindex_locked(sbert_index *idx, const struct sbert_index_model *nm,
                          sbert_index_encode_fn encode, void *user, char *errbuf, size_t errlen)
{
    char lockp[4300];
    snprintf(lockp, sizeof lockp, "%s-lock", idx->tmp_path);
    unlink(idx->tmp_path);
    unlink(lockp);
    uint64_t map_size, used;
    store_map_info(idx->st, &map_size, &used);
    store *ns;
    int rc = store_open(idx->tmp_path, (size_t)map_size, 1, idx->params.log, idx->params.log_user,
                        &ns, errbuf, errlen);
    if (rc)
        return rc;
    struct store_meta m = idx->meta;
    meta_set_model(&m, nm);
    /* A new change number and uuid: nothing of the old store's snapshot or log applies. */
    m.change = idx->meta.change + 1;
    fill_random(m.uuid, sizeof m.uuid);

    size_t dim = (size_t)nm->dim;
    struct vindex_params vp = vparams(idx, nm->dim);
    vindex *nv = NULL;
    struct chunk_doc *docs = calloc(CHUNK, sizeof *docs);
    const char **texts = calloc(CHUNK, sizeof *texts);
    size_t *lens = calloc(CHUNK, sizeof *lens);
    int64_t *labels = calloc(CHUNK, sizeof *labels);
    float *raw = malloc(CHUNK * dim * sizeof *raw);
    float *vecs = malloc(CHUNK * dim * sizeof *vecs);
    if (!docs || !texts || !lens || !labels || !raw || !vecs) {
        rc = SBERT_INDEX_ENOMEM;
        goto fail;
    }
    if ((rc = vindex_create(&vp, &nv, errbuf, errlen))) {
        rc = rc == VINDEX_ENOMEM ? SBERT_INDEX_ENOMEM : SBERT_INDEX_ESPEC;
        goto fail;
    }
    struct reindex_write w = {.meta = &m, .docs = docs, .vecs = vecs, .n = 0, .dim = dim};
    if ((rc = store_write(ns, reindex_write_fn, &w, errbuf, errlen)))
        goto fail;
    w.meta = NULL;
    uint64_t next = 0, total = 0, expect = doc_total(idx);
    progress(idx, "reindex", 0, expect);
    for (;;) {
        size_t n;
        if ((rc = read_chunk(idx, &next, docs, CHUNK, &n)))
            goto fail;
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            texts[i] = docs[i].text;
            lens[i] = docs[i].text_len;
            labels[i] = (int64_t)docs[i].label;
        }
        ilog(idx, SBERT_INDEX_LOG_DEBUG, "reindex: encoding %zu documents", n);
        if (encode(texts, lens, n, raw, user)) {
            chunk_free(docs, n);
            rc = errf(errbuf, errlen, SBERT_INDEX_ECALLBACK,
                      "reindex: the encode callback failed on a batch of %zu texts", n);
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            if (normalize_into(raw + i * dim, dim, vecs + i * dim)) {
                chunk_free(docs, n);
                rc = errf(errbuf, errlen, SBERT_INDEX_ECALLBACK,
                          "reindex: the encode callback returned a non-finite value");
                goto fail;
            }
        w.n = n;
        rc = store_write(ns, reindex_write_fn, &w, errbuf, errlen);
        if (rc == 0 && (rc = vindex_add(nv, labels, vecs, n, errbuf, errlen)))
            rc = vindex_code(rc);
        chunk_free(docs, n);
        if (rc)
            goto fail;
        total += n;
        progress(idx, "reindex", total, expect);
    }
    if ((rc = mdb_env_sync(ns->env, 1))) {
        rc = store_error(rc, "syncing the reindexed store", errbuf, errlen);
        goto fail;
    }
    store_close(ns);
    ns = NULL;

    ilog(idx, SBERT_INDEX_LOG_DEBUG, "reindex: switching to the new store");
    /* The old snapshot must not be loaded against the new store. */
    if (unlink(idx->snap_path) && errno != ENOENT) {
        rc = errf(errbuf, errlen, SBERT_INDEX_EIO, "removing %s: %s", idx->snap_path,
                  strerror(errno));
        goto fail;
    }
    fsync_path(idx->dir, 1);
    idx->snap_exists = 0;

    pthread_rwlock_wrlock(&idx->swap);
    store_close(idx->st);
    idx->st = NULL;
    int ren = rename(idx->tmp_path, idx->store_path);
    int ren_errno = errno;
    fsync_path(idx->dir, 1);
    unlink(lockp);
    char oerr[512] = "";
    rc = store_open(idx->store_path, (size_t)map_size, 0, idx->params.log, idx->params.log_user,
                    &idx->st, oerr, sizeof oerr);
    if (rc || ren) {
        if (rc == 0 && ren) {
            /* The rename failed: the old store is back in place and still valid. */
            pthread_rwlock_unlock(&idx->swap);
            rc = errf(errbuf, errlen, SBERT_INDEX_EIO, "renaming %s: %s", idx->tmp_path,
                      strerror(ren_errno));
            ns = NULL;
            goto fail;
        }
        idx->broken = 1;
        pthread_rwlock_unlock(&idx->swap);
        vindex_free(nv);
        rc = errf(errbuf, errlen, rc ? rc : SBERT_INDEX_EIO,
                  "reindex: reopening the switched store failed: %s", oerr);
        goto out;
    }
    vindex_free(idx->vi);
    idx->vi = nv;
    idx->meta = m;
    publish(idx);
    pthread_rwlock_unlock(&idx->swap);
    nv = NULL;
    ilog(idx, SBERT_INDEX_LOG_INFO, "reindexed %llu documents with model %s (dim %d)",
         (unsigned long long)total, m.model_name, m.dim);
    char serr[512] = "";
    int src = snapshot_locked(idx, 1, serr, sizeof serr);
    if (src)
        ilog(idx, SBERT_INDEX_LOG_WARN, "snapshot after reindex failed: %s", serr);
    rc = 0;
    goto out;
fail:
    if (ns)
        store_close(ns);
    vindex_free(nv);
    unlink(idx->tmp_path);
    unlink(lockp);
out:
    free(docs);
    free(texts);
    free(lens);
    free(labels);
    free(raw);
    free(vecs);
    return rc;
}

/* ---- open / close ---------------------------------------------------------------------------- */

static int meta_init_fn(store *s, MDB_txn *txn, void *user)
{
    return store_meta_put(s, txn, user);
}

static int load_vindex(sbert_index *idx, char *errbuf, size_t errlen)
{
    struct vindex_params vp = vparams(idx, idx->meta.dim);
    char err[512] = "";
    vindex *v = NULL;
    struct vindex_snapshot_meta sm;
    double t0 = mono_s(), t_load = 0, t_replay = 0;
    int rc = vindex_snapshot_read(idx->snap_path, &vp, &v, &sm, err, sizeof err);
    t_load = mono_s() - t0;
    uint64_t change = rc ? 0 : sm.change_counter;
    const char *why = NULL;
    int missing = rc == VINDEX_EIO && errno == ENOENT;
    if (missing)
        why = "missing";
    else if (rc)
        why = err;
    else if (sm.user_len != sizeof idx->meta.uuid ||
             memcmp(sm.user, idx->meta.uuid, sizeof idx->meta.uuid) != 0)
        why = "it belongs to another store";
    else if (change > idx->meta.change) {
        why = "it is newer than the store";
    } else {
        t0 = mono_s();
        int r = replay(idx, v, change, err, sizeof err);
        t_replay = mono_s() - t0;
        if (r == 1)
            why = "the change log no longer reaches back to it";
        else if (r) {
            why = err;
        }
    }
    if (!why) {
        /* Start-up time is a figure operators watch (issue 3 targets <= 3 s at 1M vectors). */
        ilog(idx, SBERT_INDEX_LOG_INFO,
             "vector index loaded from %s in %.2f s, %llu later changes replayed in %.2f s",
             idx->snap_path, t_load, (unsigned long long)(idx->meta.change - change), t_replay);
        idx->vi = v;
        idx->snap_change = change;
        idx->snap_time = now_s();
        idx->snap_exists = 1;
        return 0;
    }
    vindex_free(v);
    /* A store that never had a write has no snapshot by design: not worth a warning. */
    int fresh = missing && idx->meta.change == 0;
    ilog(idx, fresh ? SBERT_INDEX_LOG_INFO : SBERT_INDEX_LOG_WARN,
         "index snapshot %s not used (%s): rebuilding from the store", idx->snap_path, why);
    if ((rc = rebuild(idx, &idx->vi, errbuf, errlen)))
        return rc;
    idx->snap_change = 0;
    idx->snap_exists = 0;
    return 0;
}

int sbert_index_open(const char *dir, const struct sbert_index_params *params, sbert_index **out,
                     char *errbuf, size_t errlen)
{
    if (out)
        *out = NULL;
    if (!dir || !params || !out)
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "NULL argument");
    if (!model_valid(&params->model))
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL,
                    "the model identity is incomplete (name, 64-hex sha256, dim, pooling, "
                    "normalize, max_seq_length)");
    if (strlen(dir) > 4000)
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "directory path too long");
    if (params->index_spec && strlen(params->index_spec) >= 128)
        return errf(errbuf, errlen, SBERT_INDEX_ESPEC, "index spec longer than 127 bytes");

    sbert_index *idx = calloc(1, sizeof *idx);
    if (!idx)
        return SBERT_INDEX_ENOMEM;
    idx->lock_fd = -1;
    idx->params = *params;
    if (!idx->params.snapshot_changes)
        idx->params.snapshot_changes = DEFAULT_SNAPSHOT_CHANGES;
    if (!idx->params.snapshot_seconds)
        idx->params.snapshot_seconds = DEFAULT_SNAPSHOT_SECONDS;
    if (!idx->params.req_keep)
        idx->params.req_keep = SBERT_INDEX_REQ_KEEP;
    if (!idx->params.req_keep_seconds)
        idx->params.req_keep_seconds = SBERT_INDEX_REQ_KEEP_SECONDS;
    snprintf(idx->dir, sizeof idx->dir, "%s", dir);
    snprintf(idx->store_path, sizeof idx->store_path, "%s/store.mdb", dir);
    snprintf(idx->snap_path, sizeof idx->snap_path, "%s/index.snap", dir);
    snprintf(idx->tmp_path, sizeof idx->tmp_path, "%s/reindex.mdb", dir);
    pthread_mutex_init(&idx->wmu, NULL);
    {
        /* Writer-preferring: a reindex switch must not starve behind a stream of queries. No
         * thread takes swap shared twice, which this kind would deadlock on. */
        pthread_rwlockattr_t a;
        pthread_rwlockattr_init(&a);
        pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&idx->swap, &a);
        pthread_rwlockattr_destroy(&a);
    }
    pthread_mutex_init(&idx->cvmu, NULL);
    pthread_cond_init(&idx->cv, NULL);

    int rc;
    if (mkdir(dir, 0700) && errno != EEXIST) {
        rc = errf(errbuf, errlen, SBERT_INDEX_EIO, "creating %s: %s", dir, strerror(errno));
        goto fail;
    }
    char lockp[4200];
    snprintf(lockp, sizeof lockp, "%s/LOCK", dir);
    idx->lock_fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (idx->lock_fd < 0) {
        rc = errf(errbuf, errlen, SBERT_INDEX_EIO, "opening %s: %s", lockp, strerror(errno));
        goto fail;
    }
    if (flock(idx->lock_fd, LOCK_EX | LOCK_NB)) {
        rc = errf(errbuf, errlen, errno == EWOULDBLOCK ? SBERT_INDEX_ELOCKED : SBERT_INDEX_EIO,
                  "locking %s: %s", lockp,
                  errno == EWOULDBLOCK ? "another process has this store open" : strerror(errno));
        goto fail;
    }
    {
        /* A reindex that did not reach its rename left only scratch files. */
        char tl[4300];
        snprintf(tl, sizeof tl, "%s-lock", idx->tmp_path);
        if (unlink(idx->tmp_path) == 0)
            ilog(idx, SBERT_INDEX_LOG_WARN, "removed %s left by an interrupted reindex",
                 idx->tmp_path);
        unlink(tl);
        /* A snapshot write killed before its rename left its temporary file. */
        int n = vindex_snapshot_remove_temps(idx->snap_path);
        if (n)
            ilog(idx, SBERT_INDEX_LOG_WARN,
                 "removed %d temporary file(s) of %s left by an interrupted snapshot", n,
                 idx->snap_path);
    }
    size_t map_size = params->map_size ? params->map_size : DEFAULT_MAP_SIZE;
    if ((rc = store_open(idx->store_path, map_size, 0, params->log, params->log_user, &idx->st,
                         errbuf, errlen)))
        goto fail;

    MDB_txn *txn;
    if ((rc = store_read_begin(idx->st, &txn)))
        goto fail;
    rc = store_meta_get(idx->st, txn, &idx->meta, errbuf, errlen);
    store_read_end(idx->st, txn);
    int fresh = rc == SBERT_INDEX_ENOTFOUND;
    if (fresh) {
        memset(&idx->meta, 0, sizeof idx->meta);
        idx->meta.format = SBERT_INDEX_FORMAT_VERSION;
        meta_set_model(&idx->meta, &params->model);
        snprintf(idx->meta.spec, sizeof idx->meta.spec, "%s",
                 params->index_spec ? params->index_spec : "Flat");
        fill_random(idx->meta.uuid, sizeof idx->meta.uuid);
        /* The spec is checked before it is recorded. */
        snprintf(idx->spec, sizeof idx->spec, "%s", idx->meta.spec);
        struct vindex_params vp = vparams(idx, idx->meta.dim);
        vindex *probe;
        if ((rc = vindex_create(&vp, &probe, errbuf, errlen))) {
            rc = rc == VINDEX_ENOMEM ? SBERT_INDEX_ENOMEM : SBERT_INDEX_ESPEC;
            goto fail;
        }
        vindex_free(probe);
        if ((rc = store_write(idx->st, meta_init_fn, &idx->meta, errbuf, errlen)))
            goto fail;
        ilog(idx, SBERT_INDEX_LOG_INFO, "created store %s (model %s, dim %d, index %s)", dir,
             idx->meta.model_name, idx->meta.dim, idx->meta.spec);
    } else if (rc)
        goto fail;

    /* Refused before anything is written. */
    int mismatch = !model_same(&idx->meta, &params->model);
    if (mismatch && !params->reindex_on_open) {
        const struct sbert_index_model *p = &params->model;
        rc = errf(errbuf, errlen, SBERT_INDEX_EMODEL,
                  "store %s was built with model \"%s\" (sha256 %.12s…, dim %d, %s pooling, "
                  "normalize %d, max_seq_length %d) but the model given is \"%s\" (sha256 "
                  "%.12s…, dim %d, %s pooling, normalize %d, max_seq_length %d); reindex the "
                  "store to switch models",
                  dir, idx->meta.model_name, idx->meta.model_sha256, idx->meta.dim,
                  pool_name(idx->meta.pooling), idx->meta.normalize,
                  idx->meta.max_seq_length, p->name, p->weights_sha256, p->dim,
                  pool_name(p->pooling), p->normalize, p->max_seq_length);
        goto fail;
    }
    const char *want_spec = params->index_spec ? params->index_spec : idx->meta.spec;
    snprintf(idx->spec, sizeof idx->spec, "%s", want_spec);
    if (strcmp(want_spec, idx->meta.spec) != 0) {
        struct vindex_params vp = vparams(idx, idx->meta.dim);
        vindex *probe;
        if ((rc = vindex_create(&vp, &probe, errbuf, errlen))) {
            rc = rc == VINDEX_ENOMEM ? SBERT_INDEX_ENOMEM : SBERT_INDEX_ESPEC;
            goto fail;
        }
        vindex_free(probe);
        ilog(idx, SBERT_INDEX_LOG_INFO, "index spec changes from %s to %s", idx->meta.spec,
             want_spec);
        struct store_meta m = idx->meta;
        snprintf(m.spec, sizeof m.spec, "%s", want_spec);
        if ((rc = store_write(idx->st, meta_init_fn, &m, errbuf, errlen)))
            goto fail;
        idx->meta = m;
    }

    if (mismatch) {
        ilog(idx, SBERT_INDEX_LOG_WARN, "store %s has model %s, reindexing with %s", dir,
             idx->meta.model_name, params->model.name);
        pthread_mutex_lock(&idx->wmu);
        rc = reindex_locked(idx, &params->model, params->reindex_on_open, params->reindex_user,
                            errbuf, errlen);
        pthread_mutex_unlock(&idx->wmu);
        if (rc)
            goto fail;
    } else if ((rc = load_vindex(idx, errbuf, errlen)))
        goto fail;

    /* Before the snapshot thread starts: from then on snap_* are written under wmu. */
    publish(idx);
    if (pthread_create(&idx->thread, NULL, snapshot_thread, idx)) {
        rc = errf(errbuf, errlen, SBERT_INDEX_ENOMEM, "starting the snapshot thread failed");
        goto fail;
    }
    idx->thread_started = 1;
    *out = idx;
    return 0;
fail:
    vindex_free(idx->vi);
    store_close(idx->st);
    if (idx->lock_fd >= 0)
        close(idx->lock_fd);
    pthread_mutex_destroy(&idx->wmu);
    pthread_rwlock_destroy(&idx->swap);
    pthread_mutex_destroy(&idx->cvmu);
    pthread_cond_destroy(&idx->cv);
    free(idx);
    return rc;
}

void sbert_index_close(sbert_index *idx)
{
    if (!idx)
        return;
    if (idx->thread_started) {
        pthread_mutex_lock(&idx->cvmu);
        idx->stop = 1;
        pthread_cond_signal(&idx->cv);
        pthread_mutex_unlock(&idx->cvmu);
        pthread_join(idx->thread, NULL);
    }
    if (!idx->broken) {
        vindex_wait_training(idx->vi);
        maintain_locked(idx);
        char err[512] = "";
        int rc = snapshot_locked(idx, 0, err, sizeof err);
        if (rc)
            ilog(idx, SBERT_INDEX_LOG_ERROR,
                 "snapshot at close failed (the next open replays or rebuilds): %s: %s",
                 sbert_index_strerror(rc), err);
    }
    vindex_free(idx->vi);
    store_close(idx->st);
    close(idx->lock_fd);
    pthread_mutex_destroy(&idx->wmu);
    pthread_rwlock_destroy(&idx->swap);
    pthread_mutex_destroy(&idx->cvmu);
    pthread_cond_destroy(&idx->cv);
    free(idx);
}

/* ---- writes ---------------------------------------------------------------------------------- */

struct put_ctx {
    sbert_index *idx;
    struct sbert_index_put_item *items;
    size_t n, dim;
    char **meta;       /* compact metadata per item, NULL for none */
    const float *vecs; /* normalised, n * dim */
    /* outputs of the transaction, reset at each attempt */
    uint64_t next_label, change;
    uint64_t *label;   /* new label per item */
    int64_t *removed;  /* labels deleted (older versions of upserted ids) */
    size_t n_removed;
    const struct sbert_index_write_req *req; /* NULL: nothing to remember */
};

/* Records req's reply in txn (put_fn and del_fn, once their outputs are final). */
static int req_record(sbert_index *idx, store *s, MDB_txn *txn,
                      const struct sbert_index_write_req *req)
{
    char *reply = NULL;
    size_t len = 0;
    if (req->reply(req->user, &reply, &len) || (!reply && len)) {
        free(reply);
        return SBERT_INDEX_ECALLBACK;
    }
    int rc = store_req_put(s, txn, req->req_id, req->req_id_len, req->hash, reply ? reply : "",
                           len, now_s(), idx->params.req_keep,
                           (int64_t)idx->params.req_keep_seconds);
    free(reply);
    return rc;
}

static int put_fn(store *s, MDB_txn *txn, void *user)
{
    struct put_ctx *p = user;
    p->next_label = p->idx->meta.next_label;
    p->change = p->idx->meta.change;
    p->n_removed = 0;
    int rc;
    for (size_t i = 0; i < p->n; i++) {
        struct sbert_index_put_item *it = &p->items[i];
        const char *id = it->id ? it->id : it->gen_id;
        size_t id_len = it->id ? it->id_len : strlen(it->gen_id);
        uint64_t old;
        it->replaced = 0;
        rc = store_id_lookup(s, txn, id, id_len, &old);
        if (rc == 0) {
            struct store_record r;
            if ((rc = store_record_get(s, txn, old, &r)))
                return rc == SBERT_INDEX_ENOTFOUND ? SBERT_INDEX_EFORMAT : rc;
            if (r.id_len != id_len || memcmp(r.id, id, id_len) != 0)
                return SBERT_INDEX_EID; /* a long id's key hash collided: refuse, never merge */
            size_t key = (size_t)old;
            MDB_val k = {sizeof key, &key};
            if ((rc = mdb_del(txn, s->docs, &k, NULL)))
                return rc;
            if ((rc = store_log_append(s, txn, ++p->change, old, STORE_OP_DELETE)))
                return rc;
            p->removed[p->n_removed++] = (int64_t)old;
            it->replaced = 1;
        } else if (rc != SBERT_INDEX_ENOTFOUND)
            return rc;
        uint64_t label = p->next_label++;
        p->label[i] = label;
        const char *meta = p->meta[i];
        size_t meta_len = meta ? strlen(meta) : 0;
        size_t key = (size_t)label;
        MDB_val k = {sizeof key, &key};
        MDB_val v = {store_record_size(p->dim, id_len, it->text_len, meta_len), NULL};
        if ((rc = mdb_put(txn, s->docs, &k, &v, MDB_APPEND | MDB_RESERVE)))
            return rc;
        store_record_encode(v.mv_data, p->vecs + i * p->dim, p->dim, id, id_len, it->text,
                            it->text_len, meta, meta_len);
        unsigned char ik[1024], lv[8];
        for (int b = 0; b < 8; b++)
            lv[b] = (unsigned char)(label >> (8 * b));
        MDB_val kk = {store_id_key(s, id, id_len, ik), ik}, vv = {8, lv};
        if ((rc = mdb_put(txn, s->ids, &kk, &vv, 0)))
            return rc;
        if ((rc = store_log_append(s, txn, ++p->change, label, STORE_OP_PUT)))
            return rc;
    }
    if (p->req && (rc = req_record(p->idx, s, txn, p->req)))
        return rc;
    return store_meta_put_counters(s, txn, p->next_label, p->change);
}

/* Applies a committed batch to the vector index: removes, then adds the labels still live. */
static void apply_to_vindex(sbert_index *idx, const int64_t *removed, size_t n_removed,
                            const int64_t *added, const float *vecs, size_t n_added)
{
    char err[512] = "";
    int rc = 0;
    if (n_removed)
        rc = vindex_remove(idx->vi, removed, n_removed, NULL, err, sizeof err);
    if (rc == 0 && n_added)
        rc = vindex_add(idx->vi, added, vecs, n_added, err, sizeof err);
    if (rc) {
        /* The batch is durable in LMDB; the derived index is rebuilt from it. */
        ilog(idx, SBERT_INDEX_LOG_ERROR,
             "vector index update failed after a durable commit (%s): rebuilding", err);
        atomic_store(&idx->need_rebuild, 1);
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A write_req as documented in sbert_index.h, or NULL. */
static int req_valid(const struct sbert_index_write_req *req)
{
    return !req || (req->req_id && req->req_id_len > 0 &&
                    req->req_id_len <= SBERT_INDEX_REQ_ID_MAX && req->reply);
}

int sbert_index_put(sbert_index *idx, struct sbert_index_put_item *items, size_t n,
                    size_t *bad_index, char *errbuf, size_t errlen)
{
    return sbert_index_put_req(idx, items, n, NULL, bad_index, errbuf, errlen);
}

int sbert_index_put_req(sbert_index *idx, struct sbert_index_put_item *items, size_t n,
                        const struct sbert_index_write_req *req, size_t *bad_index, char *errbuf,
                        size_t errlen)
{
    if (!idx || (!items && n))
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "NULL argument");
    if (!req_valid(req))
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "bad req_id record");
    if (n == 0)
        return 0;
    pthread_mutex_lock(&idx->wmu);
    if (idx->broken) {
        pthread_mutex_unlock(&idx->wmu);
        return errf(errbuf, errlen, SBERT_INDEX_EIO, "the store failed to reopen after reindex");
    }
    size_t dim = (size_t)idx->meta.dim;
    struct put_ctx p = {.idx = idx, .items = items, .n = n, .dim = dim, .req = req};
    p.meta = calloc(n, sizeof *p.meta);
    float *vecs = malloc(n * dim * sizeof *vecs);
    p.label = malloc(n * sizeof *p.label);
    p.removed = malloc(n * sizeof *p.removed);
    int64_t *added = malloc(n * sizeof *added);
    float *added_vecs = malloc(n * dim * sizeof *added_vecs);
    int rc = 0;
    if (!p.meta || !vecs || !p.label || !p.removed || !added || !added_vecs) {
        rc = SBERT_INDEX_ENOMEM;
        goto done;
    }
    p.vecs = vecs;
    for (size_t i = 0; i < n; i++) {
        struct sbert_index_put_item *it = &items[i];
        it->gen_id[0] = 0;
        it->replaced = 0;
        const char *what = NULL;
        if (it->id && (it->id_len == 0 || it->id_len > SBERT_INDEX_ID_MAX ||
                       memchr(it->id, 0, it->id_len) ||
                       !utf8_valid((const unsigned char *)it->id, it->id_len))) {
            rc = SBERT_INDEX_EID;
            what = it->id_len == 0 ? "the id is empty"
                   : it->id_len > SBERT_INDEX_ID_MAX ? "the id is longer than 512 bytes"
                                                     : "the id is not valid UTF-8 (or has NUL)";
        } else if (!it->text && it->text_len) {
            rc = SBERT_INDEX_EINVAL;
            what = "text is NULL";
        } else if (it->text_len > UINT32_MAX ||
                   !utf8_valid((const unsigned char *)it->text, it->text_len)) {
            rc = SBERT_INDEX_ETEXT;
            what = "the text is not valid UTF-8";
        } else if (it->dim && (size_t)it->dim != dim) {
            rc = SBERT_INDEX_EMODEL;
            errf(errbuf, errlen, rc, "item %zu: a vector of dim %d, the store's model has dim %zu",
                 i, it->dim, dim);
        } else if (!it->vector || normalize_into(it->vector, dim, vecs + i * dim)) {
            rc = SBERT_INDEX_EINVAL;
            what = "the vector is missing or has a NaN or infinity";
        } else if (it->metadata) {
            cJSON *j = cJSON_ParseWithLength(it->metadata, it->metadata_len);
            if (!j || !cJSON_IsObject(j)) {
                rc = SBERT_INDEX_EMETADATA;
                what = "metadata is not a JSON object";
            } else if (!(p.meta[i] = cJSON_PrintUnformatted(j)))
                rc = SBERT_INDEX_ENOMEM;
            cJSON_Delete(j);
        }
        if (rc) {
            for (size_t j = 0; j < i; j++)
                items[j].gen_id[0] = 0;
            if (bad_index)
                *bad_index = i;
            if (what)
                errf(errbuf, errlen, rc, "item %zu: %s", i, what);
            goto done;
        }
        if (!it->id)
            gen_id(idx, it->gen_id);
    }
    pthread_rwlock_rdlock(&idx->swap);
    ilog(idx, SBERT_INDEX_LOG_DEBUG, "commit: add of %zu documents", n);
    rc = store_write(idx->st, put_fn, &p, errbuf, errlen);
    pthread_rwlock_unlock(&idx->swap);
    if (rc) {
        for (size_t i = 0; i < n; i++) {
            items[i].gen_id[0] = 0;
            items[i].replaced = 0;
        }
        if (rc == SBERT_INDEX_EID)
            errf(errbuf, errlen, rc, "an id collides with another long id's key; use shorter ids");
        else if (rc == SBERT_INDEX_ECALLBACK)
            errf(errbuf, errlen, rc, "the reply to remember for the req_id could not be built");
        goto done;
    }
    uint64_t first_new = idx->meta.next_label;
    idx->meta.next_label = p.next_label;
    idx->meta.change = p.change;
    publish(idx);

    /* Labels created and superseded within this batch never reach the index. */
    qsort(p.removed, p.n_removed, sizeof *p.removed, cmp_i64);
    size_t n_old = 0, n_added = 0;
    while (n_old < p.n_removed && (uint64_t)p.removed[n_old] < first_new)
        n_old++;
    for (size_t i = 0; i < n; i++) {
        int64_t l = (int64_t)p.label[i];
        if (bsearch(&l, p.removed + n_old, p.n_removed - n_old, sizeof l, cmp_i64))
            continue;
        added[n_added] = l;
        memcpy(added_vecs + n_added * dim, vecs + i * dim, dim * sizeof(float));
        n_added++;
    }
    apply_to_vindex(idx, p.removed, n_old, added, added_vecs, n_added);
    snapshot_poke(idx);
done:
    pthread_mutex_unlock(&idx->wmu);
    if (p.meta)
        for (size_t i = 0; i < n; i++)
            cJSON_free(p.meta[i]);
    free(p.meta);
    free(vecs);
    free(p.label);
    free(p.removed);
    free(added);
    free(added_vecs);
    return rc;
}

struct del_ctx {
    sbert_index *idx;
    const char *const *ids;
    const size_t *lens;
    size_t n;
    int *existed;
    int64_t *removed;
    size_t n_removed;
    uint64_t change;
    size_t *n_deleted;
    const struct sbert_index_write_req *req;
};

static int del_fn(store *s, MDB_txn *txn, void *user)
{
    struct del_ctx *d = user;
    d->change = d->idx->meta.change;
    d->n_removed = 0;
    for (size_t i = 0; i < d->n; i++) {
        d->existed[i] = 0;
        if (d->lens[i] == 0 || d->lens[i] > SBERT_INDEX_ID_MAX)
            continue;
        uint64_t label;
        int rc = store_id_lookup(s, txn, d->ids[i], d->lens[i], &label);
        if (rc == SBERT_INDEX_ENOTFOUND)
            continue;
        if (rc)
            return rc;
        struct store_record r;
        if ((rc = store_record_get(s, txn, label, &r)))
            return rc == SBERT_INDEX_ENOTFOUND ? SBERT_INDEX_EFORMAT : rc;
        if (r.id_len != d->lens[i] || memcmp(r.id, d->ids[i], r.id_len) != 0)
            continue; /* a different long id with the same key */
        size_t key = (size_t)label;
        MDB_val k = {sizeof key, &key};
        if ((rc = mdb_del(txn, s->docs, &k, NULL)))
            return rc;
        unsigned char ik[1024];
        MDB_val kk = {store_id_key(s, d->ids[i], d->lens[i], ik), ik};
        if ((rc = mdb_del(txn, s->ids, &kk, NULL)))
            return rc;
        if ((rc = store_log_append(s, txn, ++d->change, label, STORE_OP_DELETE)))
            return rc;
        d->removed[d->n_removed++] = (int64_t)label;
        d->existed[i] = 1;
    }
    if (d->n_deleted)
        *d->n_deleted = d->n_removed;
    int rc;
    if (d->req && (rc = req_record(d->idx, s, txn, d->req)))
        return rc;
    if (d->change == d->idx->meta.change)
        return 0;
    return store_meta_put_counters(s, txn, d->idx->meta.next_label, d->change);
}

int sbert_index_delete(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                       int *existed, size_t *n_deleted, char *errbuf, size_t errlen)
{
    return sbert_index_delete_req(idx, ids, lens, n, existed, n_deleted, NULL, errbuf, errlen);
}

int sbert_index_delete_req(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                           int *existed, size_t *n_deleted, const struct sbert_index_write_req *req,
                           char *errbuf, size_t errlen)
{
    if (n_deleted)
        *n_deleted = 0;
    if (!idx || (n && (!ids || !lens)))
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "NULL argument");
    if (!req_valid(req) || (req && (!existed || !n_deleted)))
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "bad req_id record");
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!ids[i])
            return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "id %zu is NULL", i);
    struct del_ctx d = {.idx = idx, .ids = ids, .lens = lens, .n = n, .n_deleted = n_deleted,
                        .req = req};
    int *ex = existed ? existed : calloc(n, sizeof *ex);
    d.removed = malloc(n * sizeof *d.removed);
    int rc;
    if (!ex || !d.removed) {
        rc = SBERT_INDEX_ENOMEM;
        goto out;
    }
    d.existed = ex;
    pthread_mutex_lock(&idx->wmu);
    if (idx->broken) {
        rc = errf(errbuf, errlen, SBERT_INDEX_EIO, "the store failed to reopen after reindex");
    } else {
        pthread_rwlock_rdlock(&idx->swap);
        ilog(idx, SBERT_INDEX_LOG_DEBUG, "commit: delete of %zu ids", n);
        rc = store_write(idx->st, del_fn, &d, errbuf, errlen);
        pthread_rwlock_unlock(&idx->swap);
        if (rc == 0) {
            idx->meta.change = d.change;
            publish(idx);
            apply_to_vindex(idx, d.removed, d.n_removed, NULL, NULL, 0);
            snapshot_poke(idx);
            if (n_deleted)
                *n_deleted = d.n_removed;
        } else {
            if (existed)
                memset(existed, 0, n * sizeof *existed);
            if (n_deleted)
                *n_deleted = 0;
            if (rc == SBERT_INDEX_ECALLBACK)
                errf(errbuf, errlen, rc, "the reply to remember for the req_id could not be built");
        }
    }
    pthread_mutex_unlock(&idx->wmu);
out:
    if (ex != existed)
        free(ex);
    free(d.removed);
    return rc;
}

/* ---- reads ----------------------------------------------------------------------------------- */

static void doc_clear(struct sbert_index_doc *d)
{
    free(d->id);
    free(d->text);
    free(d->metadata);
    free(d->vector);
}

void sbert_index_results_free(struct sbert_index_results *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        doc_clear(&r->docs[i]);
    free(r->docs);
    free(r);
}

/* Fills d from a record (copying), with the fields include asks for. */
static int doc_fill(struct sbert_index_doc *d, const struct store_record *r, unsigned include)
{
    d->found = 1;
    d->id = dup_bytes(r->id, r->id_len);
    d->id_len = r->id_len;
    if (!d->id)
        return SBERT_INDEX_ENOMEM;
    if (include & SBERT_INDEX_INCLUDE_TEXT) {
        if (!(d->text = dup_bytes(r->text, r->text_len)))
            return SBERT_INDEX_ENOMEM;
        d->text_len = r->text_len;
    }
    if ((include & SBERT_INDEX_INCLUDE_METADATA) && r->meta) {
        if (!(d->metadata = dup_bytes(r->meta, r->meta_len)))
            return SBERT_INDEX_ENOMEM;
        d->metadata_len = r->meta_len;
    }
    if (include & SBERT_INDEX_INCLUDE_VECTOR) {
        if (!(d->vector = malloc(r->dim * sizeof(float))))
            return SBERT_INDEX_ENOMEM;
        memcpy(d->vector, r->vector, r->dim * sizeof(float));
    }
    return 0;
}

/* What doc_fill() copies of r, in bytes (the bound of sbert_index_get_max and max_bytes). */
static size_t doc_bytes(const struct store_record *r, unsigned include)
{
    size_t bytes = r->id_len;
    if (include & SBERT_INDEX_INCLUDE_TEXT)
        bytes += r->text_len;
    if ((include & SBERT_INDEX_INCLUDE_METADATA) && r->meta)
        bytes += r->meta_len;
    if (include & SBERT_INDEX_INCLUDE_VECTOR)
        bytes += (size_t)r->dim * sizeof(float);
    return bytes;
}

static struct sbert_index_results *results_new(size_t n, int dim)
{
    struct sbert_index_results *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->dim = dim;
    if (n && !(r->docs = calloc(n, sizeof *r->docs))) {
        free(r);
        return NULL;
    }
    return r;
}

/* Takes swap shared; fails when the store is broken. */
static int read_enter(sbert_index *idx)
{
    pthread_rwlock_rdlock(&idx->swap);
    if (idx->broken) {
        pthread_rwlock_unlock(&idx->swap);
        return SBERT_INDEX_EIO;
    }
    return 0;
}

int sbert_index_get(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                    unsigned include, struct sbert_index_results **out)
{
    return sbert_index_get_max(idx, ids, lens, n, include, SIZE_MAX, out);
}

int sbert_index_get_max(sbert_index *idx, const char *const *ids, const size_t *lens, size_t n,
                        unsigned include, size_t max_bytes, struct sbert_index_results **out)
{
    if (out)
        *out = NULL;
    if (!idx || !out || (n && (!ids || !lens)))
        return SBERT_INDEX_EINVAL;
    int rc = read_enter(idx);
    if (rc)
        return rc;
    struct sbert_index_results *res = results_new(n, idx->meta.dim);
    MDB_txn *txn = NULL;
    if (!res) {
        rc = SBERT_INDEX_ENOMEM;
        goto done;
    }
    res->n = n;
    if ((rc = store_read_begin(idx->st, &txn)))
        goto done;
    size_t bytes = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct sbert_index_doc *d = &res->docs[i];
        uint64_t label;
        struct store_record r;
        if (!ids[i]) {
            rc = SBERT_INDEX_EINVAL;
            break;
        }
        int lr = lens[i] && lens[i] <= SBERT_INDEX_ID_MAX
                     ? store_id_lookup(idx->st, txn, ids[i], lens[i], &label)
                     : SBERT_INDEX_ENOTFOUND;
        if (lr == 0)
            lr = store_record_get(idx->st, txn, label, &r);
        if (lr == 0 && (r.id_len != lens[i] || memcmp(r.id, ids[i], lens[i]) != 0))
            lr = SBERT_INDEX_ENOTFOUND;
        if (lr == SBERT_INDEX_ENOTFOUND) {
            d->found = 0;
            d->id = dup_bytes(ids[i], lens[i]);
            d->id_len = lens[i];
            if (!d->id)
                rc = SBERT_INDEX_ENOMEM;
        } else if (lr)
            rc = store_error(lr, "get", NULL, 0);
        else {
            /* counted before the copy: the bound holds for the memory too */
            bytes += doc_bytes(&r, include);
            rc = bytes > max_bytes ? SBERT_INDEX_ETOOBIG : doc_fill(d, &r, include);
        }
        if (!rc && !d->found && (bytes += lens[i]) > max_bytes)
            rc = SBERT_INDEX_ETOOBIG;
    }
    store_read_end(idx->st, txn);
done:
    pthread_rwlock_unlock(&idx->swap);
    if (rc) {
        sbert_index_results_free(res);
        return rc;
    }
    *out = res;
    return 0;
}

int sbert_index_req_find(sbert_index *idx, const char *req_id, size_t len, uint64_t *hash,
                         char **reply, size_t *reply_len)
{
    if (reply)
        *reply = NULL;
    if (!idx || !req_id || !hash || !reply || !reply_len || len == 0 ||
        len > SBERT_INDEX_REQ_ID_MAX)
        return SBERT_INDEX_EINVAL;
    int rc = read_enter(idx);
    if (rc)
        return rc;
    MDB_txn *txn = NULL;
    if ((rc = store_read_begin(idx->st, &txn)) == 0) {
        const char *r;
        size_t rl;
        int lr = store_req_get(idx->st, txn, req_id, len, now_s(),
                               (int64_t)idx->params.req_keep_seconds, hash, &r, &rl);
        if (lr == 0) {
            if ((*reply = dup_bytes(r, rl)))
                *reply_len = rl;
            else
                rc = SBERT_INDEX_ENOMEM;
        } else
            rc = lr < 0 && lr > -100 ? lr : store_error(lr, "req_id lookup", NULL, 0);
        store_read_end(idx->st, txn);
    }
    pthread_rwlock_unlock(&idx->swap);
    return rc;
}

int sbert_index_count(sbert_index *idx, uint64_t *count)
{
    if (!idx || !count)
        return SBERT_INDEX_EINVAL;
    int rc = read_enter(idx);
    if (rc)
        return rc;
    MDB_txn *txn;
    if ((rc = store_read_begin(idx->st, &txn)) == 0) {
        MDB_stat st;
        rc = mdb_stat(txn, idx->st->docs, &st);
        if (rc == 0)
            *count = st.ms_entries;
        else
            rc = store_error(rc, "count", NULL, 0);
        store_read_end(idx->st, txn);
    }
    pthread_rwlock_unlock(&idx->swap);
    return rc;
}

int sbert_index_iterate(sbert_index *idx, const char *after, size_t after_len, unsigned include,
                        sbert_index_iter_fn cb, void *user)
{
    if (!idx || !cb || (after_len && !after) || after_len > SBERT_INDEX_ID_MAX)
        return SBERT_INDEX_EINVAL;
    unsigned char key[1024];
    size_t key_len = 0;
    int have_key = after != NULL && after_len > 0;
    struct sbert_index_doc *docs = calloc(CHUNK, sizeof *docs);
    if (!docs)
        return SBERT_INDEX_ENOMEM;
    int rc = 0, stop = 0;
    if (have_key) {
        /* The key layout needs the store (its key size limit). */
        if ((rc = read_enter(idx))) {
            free(docs);
            return rc;
        }
        key_len = store_id_key(idx->st, after, after_len, key);
        pthread_rwlock_unlock(&idx->swap);
    }
    while (!stop) {
        size_t n = 0;
        if ((rc = read_enter(idx)))
            break;
        MDB_txn *txn;
        if ((rc = store_read_begin(idx->st, &txn))) {
            pthread_rwlock_unlock(&idx->swap);
            break;
        }
        MDB_cursor *c;
        if ((rc = mdb_cursor_open(txn, idx->st->ids, &c)) == 0) {
            MDB_val k = {key_len, key}, d;
            if (have_key) {
                rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
                if (rc == 0 && k.mv_size == key_len && memcmp(k.mv_data, key, key_len) == 0)
                    rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
            } else
                rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
            while (rc == 0 && n < CHUNK) {
                uint64_t label = 0;
                for (int b = 7; b >= 0; b--)
                    label = label << 8 | ((const unsigned char *)d.mv_data)[b];
                struct store_record r;
                if ((rc = store_record_get(idx->st, txn, label, &r)))
                    break;
                memset(&docs[n], 0, sizeof docs[n]);
                rc = doc_fill(&docs[n], &r, include);
                n++;
                if (rc)
                    break;
                memcpy(key, k.mv_data, k.mv_size);
                key_len = k.mv_size;
                have_key = 1;
                rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
            }
            mdb_cursor_close(c);
        }
        store_read_end(idx->st, txn);
        pthread_rwlock_unlock(&idx->swap);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            stop = 1;
        }
        if (rc && rc != SBERT_INDEX_ENOMEM)
            rc = store_error(rc, "iterate", NULL, 0);
        /* The chunk read so far is delivered even when the scan hit the end. */
        int quit = rc != 0;
        for (size_t i = 0; i < n; i++) {
            if (!quit && cb(&docs[i], user))
                quit = 1;
            doc_clear(&docs[i]);
        }
        if (rc || quit || n < CHUNK)
            break;
    }
    free(docs);
    return rc;
}

/* ---- queries --------------------------------------------------------------------------------- */

/*
 * The metadata filter as a vindex keep callback. FAISS calls it from its own threads; each thread
 * opens its own read transaction (MDB_NOTLS), remembered in a thread-local slot tagged with the
 * query's generation number and closed by the query when it ends. Records of a label never change
 * (store.h), so transactions opened at slightly different moments agree on every label they find.
 */
struct qfilter {
    sbert_index *idx;
    const sbert_index_filter *filter;
    uint64_t gen;
    pthread_mutex_t mu;
    MDB_txn **txns;
    size_t n_txns, cap_txns;
    atomic_int failed;
};

static atomic_uint_fast64_t query_gen = 1;

static _Thread_local struct {
    uint64_t gen;
    MDB_txn *txn;
} tls_txn;

static int keep_cb(int64_t label, void *user)
{
    struct qfilter *q = user;
    if (tls_txn.gen != q->gen) {
        MDB_txn *t;
        if (mdb_txn_begin(q->idx->st->env, NULL, MDB_RDONLY, &t)) {
            atomic_store(&q->failed, 1);
            return 0;
        }
        pthread_mutex_lock(&q->mu);
        if (q->n_txns == q->cap_txns) {
            size_t cap = q->cap_txns ? 2 * q->cap_txns : 16;
            MDB_txn **nt = realloc(q->txns, cap * sizeof *nt);
            if (!nt) {
                pthread_mutex_unlock(&q->mu);
                mdb_txn_abort(t);
                atomic_store(&q->failed, 1);
                return 0;
            }
            q->txns = nt;
            q->cap_txns = cap;
        }
        q->txns[q->n_txns++] = t;
        pthread_mutex_unlock(&q->mu);
        tls_txn.gen = q->gen;
        tls_txn.txn = t;
    }
    struct store_record r;
    if (store_record_get(q->idx->st, tls_txn.txn, (uint64_t)label, &r))
        return 0;
    return filter_match_raw(q->filter, r.meta, r.meta ? r.meta_len : 0) == 1;
}

static void qfilter_init(struct qfilter *q, sbert_index *idx, const sbert_index_filter *f)
{
    memset(q, 0, sizeof *q);
    q->idx = idx;
    q->filter = f;
    q->gen = atomic_fetch_add(&query_gen, 1);
    pthread_mutex_init(&q->mu, NULL);
}

static void qfilter_end(struct qfilter *q)
{
    for (size_t i = 0; i < q->n_txns; i++)
        mdb_txn_abort(q->txns[i]);
    free(q->txns);
    pthread_mutex_destroy(&q->mu);
}

static int doc_cmp(const void *a, const void *b)
{
    const struct sbert_index_doc *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
    int c = memcmp(x->id, y->id, n);
    if (c)
        return c;
    return (x->id_len > y->id_len) - (x->id_len < y->id_len);
}

/* Fills *out with the hits of one query, labels/scores[0..k) best first (-1: none), that reach
 * min_score and are still stored in txn, counting their bytes against max_bytes. */
static int query_fill(sbert_index *idx, MDB_txn *txn, const int64_t *labels, const float *scores,
                      const struct sbert_index_query_params *p, struct sbert_index_results **out)
{
    struct sbert_index_results *res = results_new(p->k, idx->meta.dim);
    if (!res)
        return SBERT_INDEX_ENOMEM;
    size_t n = 0, bytes = 0, max_bytes = p->max_bytes ? p->max_bytes : SIZE_MAX;
    int rc = 0;
    for (size_t i = 0; i < p->k && rc == 0; i++) {
        if (labels[i] < 0 || scores[i] < p->min_score)
            continue;
        struct store_record r;
        int gr = store_record_get(idx->st, txn, (uint64_t)labels[i], &r);
        if (gr == SBERT_INDEX_ENOTFOUND)
            continue; /* deleted after the search began: its delete is committed */
        if (gr) {
            rc = store_error(gr, "query", NULL, 0);
            break;
        }
        /* counted before the copy, as in sbert_index_get_max */
        if ((bytes += doc_bytes(&r, p->include)) > max_bytes) {
            rc = SBERT_INDEX_ETOOBIG;
            break;
        }
        res->docs[n].score = scores[i];
        rc = doc_fill(&res->docs[n], &r, p->include);
        n++;
    }
    res->n = n;
    if (rc) {
        sbert_index_results_free(res);
        return rc;
    }
    qsort(res->docs, n, sizeof *res->docs, doc_cmp);
    *out = res;
    return 0;
}

/* One filtered query: its own search, with the filter as the vindex keep callback. */
static int query_filtered(sbert_index *idx, MDB_txn *txn, const float *q,
                          const struct sbert_index_query_params *p, int64_t *labels, float *scores,
                          struct sbert_index_results **out)
{
    struct qfilter qf;
    qfilter_init(&qf, idx, p->filter);
    struct vindex_filter vf = {.keep = keep_cb, .user = &qf};
    char err[256];
    int rc = vindex_search(idx->vi, q, 1, p->k, &vf, labels, scores, err, sizeof err);
    if (rc) {
        ilog(idx, SBERT_INDEX_LOG_ERROR, "vector search failed: %s", err);
        rc = vindex_code(rc);
    } else if (atomic_load(&qf.failed))
        rc = SBERT_INDEX_EIO;
    else
        rc = query_fill(idx, txn, labels, scores, p, out);
    qfilter_end(&qf);
    return rc;
}

int sbert_index_query_many(sbert_index *idx, const float *vectors, size_t nq,
                           const struct sbert_index_query_params *params,
                           struct sbert_index_results **out, int *rcs)
{
    if (!idx || (nq && (!vectors || !params || !out || !rcs)))
        return SBERT_INDEX_EINVAL;
    if (nq == 0)
        return 0;
    int rc = read_enter(idx);
    size_t dim = (size_t)idx->meta.dim, kmax = 0, kf = 0, ng = 0;
    for (size_t i = 0; i < nq; i++) {
        const struct sbert_index_query_params *p = &params[i];
        out[i] = NULL;
        rcs[i] = rc;
        if (!rcs[i] && (p->k < 1 || p->k > MAX_K || isnan(p->min_score)))
            rcs[i] = SBERT_INDEX_EINVAL;
        if (!rcs[i] && p->dim && (size_t)p->dim != dim)
            rcs[i] = SBERT_INDEX_EMODEL;
        if (!rcs[i] && !p->filter) {
            ng++;
            if (p->k > kmax)
                kmax = p->k;
        } else if (!rcs[i] && p->k > kf)
            kf = p->k;
    }
    if (rc)
        return rc;
    /* rows 0..ng) hold the unfiltered queries, packed for the shared search (kmax hits each);
     * row ng the filtered one being searched */
    size_t width = kmax > kf ? kmax : kf;
    float *q = malloc((ng + 1) * dim * sizeof *q);
    size_t *row = malloc(nq * sizeof *row);
    int64_t *labels = malloc((ng + 1) * width * sizeof *labels);
    float *scores = malloc((ng + 1) * width * sizeof *scores);
    MDB_txn *txn = NULL;
    if (!q || !row || !labels || !scores) {
        rc = SBERT_INDEX_ENOMEM;
        goto done;
    }
    size_t at = 0;
    for (size_t i = 0; i < nq; i++) {
        if (rcs[i] || params[i].filter)
            continue;
        if (normalize_into(vectors + i * dim, dim, q + at * dim)) {
            rcs[i] = SBERT_INDEX_EINVAL;
            continue;
        }
        row[i] = at++;
    }
    ng = at;
    /* The read transaction is opened first: it holds the store's lock shared, so the map cannot
     * be resized under the filter's transactions. */
    if ((rc = store_read_begin(idx->st, &txn)))
        goto done;
    if (ng) {
        char err[256];
        int sr = vindex_search(idx->vi, q, ng, kmax, NULL, labels, scores, err, sizeof err);
        if (sr) {
            ilog(idx, SBERT_INDEX_LOG_ERROR, "vector search failed: %s", err);
            rc = vindex_code(sr);
            goto done;
        }
    }
    for (size_t i = 0; i < nq; i++) {
        if (rcs[i])
            continue;
        if (!params[i].filter)
            rcs[i] = query_fill(idx, txn, labels + row[i] * kmax, scores + row[i] * kmax,
                                &params[i], &out[i]);
        else if (normalize_into(vectors + i * dim, dim, q + ng * dim))
            rcs[i] = SBERT_INDEX_EINVAL;
        else
            rcs[i] = query_filtered(idx, txn, q + ng * dim, &params[i], labels + ng * width,
                                    scores + ng * width, &out[i]);
        /* a broken store fails every query, as a failed search does */
        if (rcs[i] && rcs[i] != SBERT_INDEX_EINVAL && rcs[i] != SBERT_INDEX_ETOOBIG) {
            rc = rcs[i];
            goto done;
        }
    }
done:
    if (txn)
        store_read_end(idx->st, txn);
    pthread_rwlock_unlock(&idx->swap);
    free(q);
    free(row);
    free(labels);
    free(scores);
    if (rc)
        for (size_t i = 0; i < nq; i++) {
            sbert_index_results_free(out[i]);
            out[i] = NULL;
            rcs[i] = rcs[i] == SBERT_INDEX_EINVAL || rcs[i] == SBERT_INDEX_EMODEL ? rcs[i] : rc;
        }
    for (size_t i = 0; i < nq; i++)
        if (rcs[i])
            return rcs[i];
    return 0;
}

int sbert_index_query(sbert_index *idx, const float *vector,
                      const struct sbert_index_query_params *params,
                      struct sbert_index_results **out)
{
    if (out)
        *out = NULL;
    if (!idx || !vector || !params || !out)
        return SBERT_INDEX_EINVAL;
    int rc;
    sbert_index_query_many(idx, vector, 1, params, out, &rc);
    return rc;
}

/* ---- paraphrase mining ----------------------------------------------------------------------- */

struct pair_item {
    uint64_t a, b;
    float score;
};

/* Set of (a, b) pairs seen: open addressing, never shrinks. */
struct pair_set {
    struct pair_item *slots; /* a == UINT64_MAX: empty */
    size_t cap, n;
};

static uint64_t pair_hash(uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9e3779b97f4a7c15ull ^ (b + 0x632be59bd9b4e019ull) * 0xc2b2ae3d27d4eb4full;
    return h ^ (h >> 31);
}

/* Returns 1 when inserted, 0 when present, -1 on allocation failure. */
static int pair_set_add(struct pair_set *s, uint64_t a, uint64_t b)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        struct pair_item *ns = malloc(cap * sizeof *ns);
        if (!ns)
            return -1;
        for (size_t i = 0; i < cap; i++)
            ns[i].a = UINT64_MAX;
        for (size_t i = 0; i < s->cap; i++) {
            if (s->slots[i].a == UINT64_MAX)
                continue;
            size_t h = pair_hash(s->slots[i].a, s->slots[i].b) & (cap - 1);
            while (ns[h].a != UINT64_MAX)
                h = (h + 1) & (cap - 1);
            ns[h] = s->slots[i];
        }
        free(s->slots);
        s->slots = ns;
        s->cap = cap;
    }
    size_t h = pair_hash(a, b) & (s->cap - 1);
    while (s->slots[h].a != UINT64_MAX) {
        if (s->slots[h].a == a && s->slots[h].b == b)
            return 0;
        h = (h + 1) & (s->cap - 1);
    }
    s->slots[h].a = a;
    s->slots[h].b = b;
    s->n++;
    return 1;
}

/* x ranks below y: lower score, or equal score and later (a, b). */
static int pair_worse(const struct pair_item *x, const struct pair_item *y)
{
    if (x->score != y->score)
        return x->score < y->score;
    if (x->a != y->a)
        return x->a > y->a;
    return x->b > y->b;
}

static int pair_cmp_best_first(const void *p, const void *q)
{
    const struct pair_item *x = p, *y = q;
    if (pair_worse(x, y))
        return 1;
    if (pair_worse(y, x))
        return -1;
    return 0;
}

/* The kept pairs: a min-heap by rank when bounded (top_n), a plain array otherwise. */
struct pair_keep {
    struct pair_item *v;
    size_t n, cap, top_n;
};

static void heap_down(struct pair_item *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && pair_worse(&h[l], &h[m]))
            m = l;
        if (r < n && pair_worse(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        struct pair_item t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static int pair_keep_add(struct pair_keep *k, const struct pair_item *p)
{
    if (k->top_n && k->n == k->top_n) {
        if (!pair_worse(&k->v[0], p))
            return 0;
        k->v[0] = *p;
        heap_down(k->v, k->n, 0);
        return 0;
    }
    if (k->n == k->cap) {
        size_t cap = k->cap ? 2 * k->cap : 256;
        struct pair_item *nv = realloc(k->v, cap * sizeof *nv);
        if (!nv)
            return -1;
        k->v = nv;
        k->cap = cap;
    }
    size_t i = k->n++;
    k->v[i] = *p;
    if (k->top_n)
        while (i > 0) {
            size_t par = (i - 1) / 2;
            if (!pair_worse(&k->v[i], &k->v[par]))
                break;
            struct pair_item t = k->v[i];
            k->v[i] = k->v[par];
            k->v[par] = t;
            i = par;
        }
    return 0;
}

void sbert_index_pairs_free(struct sbert_index_pairs *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->pairs[i].a);
        free(p->pairs[i].b);
    }
    free(p->pairs);
    free(p);
}

/* Exact cosine of two stored unit vectors, summed in double in a fixed order (symmetric). */
static float dot_exact(const float *x, const float *y, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++) {
        float a, b;
        memcpy(&a, x + i, sizeof a);
        memcpy(&b, y + i, sizeof b);
        s += (double)a * b;
    }
    return (float)s;
}

/* Turns the kept labels into ids with exact scores, best first. */
static int pairs_finish(sbert_index *idx, struct pair_keep *keep, float min_score,
                        struct sbert_index_pairs **out)
{
    MDB_txn *txn;
    int rc = store_read_begin(idx->st, &txn);
    if (rc)
        return rc;
    size_t dim = (size_t)idx->meta.dim, m = 0;
    for (size_t i = 0; i < keep->n; i++) {
        struct store_record ra, rb;
        if (store_record_get(idx->st, txn, keep->v[i].a, &ra) ||
            store_record_get(idx->st, txn, keep->v[i].b, &rb))
            continue;
        keep->v[i].score = dot_exact(ra.vector, rb.vector, dim);
        if (keep->v[i].score >= min_score)
            keep->v[m++] = keep->v[i];
    }
    keep->n = m;
    qsort(keep->v, keep->n, sizeof *keep->v, pair_cmp_best_first);
    struct sbert_index_pairs *p = calloc(1, sizeof *p);
    if (!p || (keep->n && !(p->pairs = calloc(keep->n, sizeof *p->pairs)))) {
        free(p);
        store_read_end(idx->st, txn);
        return SBERT_INDEX_ENOMEM;
    }
    for (size_t i = 0; i < keep->n; i++) {
        struct store_record ra, rb;
        if (store_record_get(idx->st, txn, keep->v[i].a, &ra) ||
            store_record_get(idx->st, txn, keep->v[i].b, &rb))
            continue;
        struct sbert_index_pair *q = &p->pairs[p->n];
        q->a = dup_bytes(ra.id, ra.id_len);
        q->b = dup_bytes(rb.id, rb.id_len);
        q->score = keep->v[i].score;
        p->n++;
        if (!q->a || !q->b) {
            rc = SBERT_INDEX_ENOMEM;
            break;
        }
    }
    store_read_end(idx->st, txn);
    if (rc) {
        sbert_index_pairs_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int sbert_index_pairs(sbert_index *idx, const struct sbert_index_pairs_params *params,
                      struct sbert_index_pairs **out)
{
    if (out)
        *out = NULL;
    if (!idx || !params || !out || isnan(params->min_score))
        return SBERT_INDEX_EINVAL;
    int rc = read_enter(idx);
    if (rc)
        return rc;
    size_t dim = (size_t)idx->meta.dim;
    size_t kq = (params->per_doc_k ? params->per_doc_k : DEFAULT_PER_DOC_K) + 1;
    if (kq > MAX_K + 1)
        kq = MAX_K + 1;
    size_t batch = CHUNK;
    int64_t *qlabels = malloc(batch * sizeof *qlabels);
    float *qvecs = malloc(batch * dim * sizeof *qvecs);
    int64_t *labels = malloc(batch * kq * sizeof *labels);
    float *scores = malloc(batch * kq * sizeof *scores);
    struct pair_set seen = {0};
    struct pair_keep keep = {.top_n = params->top_n};
    if (!qlabels || !qvecs || !labels || !scores) {
        rc = SBERT_INDEX_ENOMEM;
        goto done;
    }
    size_t next = 0;
    for (;;) {
        /* A batch of query vectors: the next stored documents the filter accepts. */
        MDB_txn *txn;
        if ((rc = store_read_begin(idx->st, &txn)))
            goto done;
        size_t nq = 0;
        MDB_cursor *c;
        if ((rc = mdb_cursor_open(txn, idx->st->docs, &c)) == 0) {
            MDB_val k = {sizeof next, &next}, d;
            rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
            while (rc == 0 && nq < batch) {
                struct store_record r;
                if ((rc = store_record_decode(&d, &r)))
                    break;
                size_t label;
                memcpy(&label, k.mv_data, sizeof label);
                next = label + 1;
                int ok = 1;
                if (params->filter)
                    ok = filter_match_raw(params->filter, r.meta, r.meta ? r.meta_len : 0) == 1;
                if (ok) {
                    qlabels[nq] = (int64_t)label;
                    memcpy(qvecs + nq * dim, r.vector, dim * sizeof(float));
                    nq++;
                }
                rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
            }
            mdb_cursor_close(c);
        }
        int end = rc == MDB_NOTFOUND;
        if (end)
            rc = 0;
        if (rc) {
            store_read_end(idx->st, txn);
            rc = store_error(rc, "pairs", NULL, 0);
            goto done;
        }
        if (nq) {
            struct qfilter qf;
            qfilter_init(&qf, idx, params->filter);
            struct vindex_filter vf = {.keep = keep_cb, .user = &qf};
            char err[256];
            rc = vindex_search(idx->vi, qvecs, nq, kq, params->filter ? &vf : NULL, labels,
                               scores, err, sizeof err);
            int failed = atomic_load(&qf.failed);
            qfilter_end(&qf);
            if (rc || failed) {
                store_read_end(idx->st, txn);
                if (rc)
                    ilog(idx, SBERT_INDEX_LOG_ERROR, "pairs: vector search failed: %s", err);
                rc = rc ? vindex_code(rc) : SBERT_INDEX_EIO;
                goto done;
            }
        }
        store_read_end(idx->st, txn);
        for (size_t i = 0; i < nq; i++)
            for (size_t j = 0; j < kq; j++) {
                int64_t l = labels[i * kq + j];
                float s = scores[i * kq + j];
                if (l < 0 || l == qlabels[i] || s < params->min_score - 1e-4f)
                    continue;
                struct pair_item p = {
                    .a = (uint64_t)(l < qlabels[i] ? l : qlabels[i]),
                    .b = (uint64_t)(l < qlabels[i] ? qlabels[i] : l),
                    .score = s};
                if (keep.top_n && keep.n == keep.top_n && !pair_worse(&keep.v[0], &p))
                    continue;
                int added = pair_set_add(&seen, p.a, p.b);
                if (added < 0 || (added && pair_keep_add(&keep, &p))) {
                    rc = SBERT_INDEX_ENOMEM;
                    goto done;
                }
            }
        if (end || nq == 0)
            break;
    }
    rc = pairs_finish(idx, &keep, params->min_score, out);
done:
    pthread_rwlock_unlock(&idx->swap);
    free(qlabels);
    free(qvecs);
    free(labels);
    free(scores);
    free(seen.slots);
    free(keep.v);
    return rc;
}

/* ---- maintenance ----------------------------------------------------------------------------- */

int sbert_index_snapshot(sbert_index *idx, char *errbuf, size_t errlen)
{
    if (!idx)
        return SBERT_INDEX_EINVAL;
    pthread_mutex_lock(&idx->wmu);
    int rc = idx->broken ? SBERT_INDEX_EIO : snapshot_locked(idx, 0, errbuf, errlen);
    pthread_mutex_unlock(&idx->wmu);
    return rc;
}

static int dir_empty_or_create(const char *dir, int *created)
{
    *created = 0;
    if (mkdir(dir, 0700) == 0) {
        *created = 1;
        return 0;
    }
    if (errno != EEXIST)
        return -1;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    if (!empty) {
        errno = EEXIST;
        return -1;
    }
    return 0;
}

int sbert_index_backup(sbert_index *idx, const char *dir, char *errbuf, size_t errlen)
{
    if (!idx || !dir || strlen(dir) > 4000)
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "bad argument");
    int created;
    if (dir_empty_or_create(dir, &created))
        return errf(errbuf, errlen, errno == EEXIST ? SBERT_INDEX_EEXIST : SBERT_INDEX_EIO,
                    "backup target %s: %s", dir,
                    errno == EEXIST ? "exists and is not an empty directory" : strerror(errno));
    char dbp[4200], snp[4200];
    snprintf(dbp, sizeof dbp, "%s/store.mdb", dir);
    snprintf(snp, sizeof snp, "%s/index.snap", dir);
    pthread_mutex_lock(&idx->wmu);
    int rc = 0;
    if (idx->broken) {
        rc = SBERT_INDEX_EIO;
        goto done;
    }
    pthread_rwlock_rdlock(&idx->st->lock);
    ilog(idx, SBERT_INDEX_LOG_DEBUG, "backup: copying the store to %s", dbp);
    int mrc = mdb_env_copy2(idx->st->env, dbp, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&idx->st->lock);
    if (mrc) {
        rc = store_error(mrc, "mdb_env_copy2", errbuf, errlen);
        goto done;
    }
    if (fsync_path(dbp, 0)) {
        rc = errf(errbuf, errlen, errno == ENOSPC ? SBERT_INDEX_ENOSPC : SBERT_INDEX_EIO,
                  "syncing %s: %s", dbp, strerror(errno));
        goto done;
    }
    /* Writers wait on wmu, so the copy and the snapshot cover the same change. */
    if ((rc = vindex_snapshot_write(idx->vi, snp, idx->meta.change, idx->meta.uuid,
                                    sizeof idx->meta.uuid, errbuf, errlen))) {
        rc = vindex_code(rc);
        goto done;
    }
    fsync_path(dir, 1);
    ilog(idx, SBERT_INDEX_LOG_INFO, "backup written to %s at change %llu", dir,
         (unsigned long long)idx->meta.change);
done:
    pthread_mutex_unlock(&idx->wmu);
    if (rc) {
        unlink(dbp);
        unlink(snp);
        if (created)
            rmdir(dir);
    }
    return rc;
}

int sbert_index_reindex(sbert_index *idx, const struct sbert_index_model *new_model,
                        sbert_index_encode_fn encode, void *user, char *errbuf, size_t errlen)
{
    if (!idx || !new_model || !encode)
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "NULL argument");
    if (!model_valid(new_model))
        return errf(errbuf, errlen, SBERT_INDEX_EINVAL, "the new model identity is incomplete");
    pthread_mutex_lock(&idx->wmu);
    int rc = idx->broken ? SBERT_INDEX_EIO
                         : reindex_locked(idx, new_model, encode, user, errbuf, errlen);
    pthread_mutex_unlock(&idx->wmu);
    return rc;
}

int sbert_index_stats(sbert_index *idx, struct sbert_index_stats *st)
{
    if (!idx || !st)
        return SBERT_INDEX_EINVAL;
    memset(st, 0, sizeof *st);
    uint64_t count;
    int rc = sbert_index_count(idx, &count);
    if (rc)
        return rc;
    /* Not under wmu: stats must answer while a long write (snapshot, reindex) runs. The counters
     * are read through atomics published by the writer. */
    pthread_rwlock_rdlock(&idx->swap);
    st->count = count;
    st->dim = idx->meta.dim;
    snprintf(st->model_name, sizeof st->model_name, "%s", idx->meta.model_name);
    snprintf(st->model_sha256, sizeof st->model_sha256, "%s", idx->meta.model_sha256);
    struct vindex_info vi;
    vindex_info(idx->vi, &vi);
    snprintf(st->index_spec, sizeof st->index_spec, "%s", idx->spec);
    st->index_trained = vi.trained;
    st->index_count = vi.count;
    store_map_info(idx->st, &st->map_size, &st->map_used);
    st->change = atomic_load(&idx->pub_change);
    st->snapshot_change = atomic_load(&idx->pub_snap_change);
    st->snapshot_time = atomic_load(&idx->pub_snap_time);
    st->index_bytes = vi.memory_bytes;
    pthread_rwlock_unlock(&idx->swap);
    return 0;
}
