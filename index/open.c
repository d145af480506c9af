/*
 * open.c — a store's life (sbert_index.h): open (checks, the directory lock, the meta record, the
 * model and spec checks, the vector index), close, stats; and the error strings and default
 * parameter structs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* ---- errors, defaults ------------------------------------------------------------------------ */

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
    if (err > 0 || -err >= (int)(sizeof msgs / sizeof msgs[0])) return "unknown error";
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
    struct sbert_index_query_params p = {.k = 10,
                                         .min_score = -2.0f,
                                         .filter = NULL,
                                         .include = 0,
                                         .lead_weight = 0.3f,
                                         .passages_per_doc = 1};
    return p;
}

struct sbert_index_pairs_params sbert_index_pairs_default_params(void)
{
    struct sbert_index_pairs_params p = {
        .top_n = 100, .min_score = -2.0f, .per_doc_k = 0, .filter = NULL};
    return p;
}

/* ---- open ------------------------------------------------------------------------------------ */

static const char *pool_name(int p)
{
    return p == SBERT_INDEX_POOL_MEAN  ? "mean"
           : p == SBERT_INDEX_POOL_CLS ? "cls"
           : p == SBERT_INDEX_POOL_MAX ? "max"
                                       : "?";
}

static int model_same(const struct store_meta *m, const struct sbert_index_model *p)
{
    return strcmp(m->model_sha256, p->weights_sha256) == 0 && m->dim == p->dim &&
           m->pooling == p->pooling && m->normalize == p->normalize &&
           m->max_seq_length == p->max_seq_length && m->precision == p->precision;
}

static int meta_init_fn(store *s, MDB_txn *txn, void *user)
{
    return store_meta_put(s, txn, user);
}

/* Checks that FAISS accepts idx->spec for the store's dim, before it is recorded. */
static int spec_probe(sbert_index *idx, char *errbuf, size_t errlen)
{
    struct vindex_params vp = index_vparams(idx, idx->meta.dim);
    vindex *probe;
    int rc = vindex_create(&vp, &probe, errbuf, errlen);
    if (rc) return index_create_code(rc);
    vindex_free(probe);
    return 0;
}

static int open_check_args(const char *dir, const struct sbert_index_params *params,
                           sbert_index **out, char *errbuf, size_t errlen)
{
    if (!dir || !params || !out)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL, "NULL argument");
    if (!index_model_valid(&params->model))
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL,
                               "the model identity is incomplete (name, 64-hex sha256, dim, "
                               "pooling, normalize, max_seq_length)");
    if (strlen(dir) > 4000)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL, "directory path too long");
    if (params->index_spec && strlen(params->index_spec) >= 128)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_ESPEC,
                               "index spec longer than 127 bytes");
    return 0;
}

/* A handle with the parameters' defaults filled in, its paths and its locks; nothing opened. */
static sbert_index *handle_new(const char *dir, const struct sbert_index_params *params)
{
    sbert_index *idx = calloc(1, sizeof *idx);
    if (!idx) return NULL;
    idx->lock_fd = -1;
    idx->params = *params;
    if (!idx->params.snapshot_changes) idx->params.snapshot_changes = DEFAULT_SNAPSHOT_CHANGES;
    if (!idx->params.snapshot_seconds) idx->params.snapshot_seconds = DEFAULT_SNAPSHOT_SECONDS;
    if (!idx->params.req_keep) idx->params.req_keep = SBERT_INDEX_REQ_KEEP;
    if (!idx->params.req_keep_seconds) idx->params.req_keep_seconds = SBERT_INDEX_REQ_KEEP_SECONDS;
    snprintf(idx->kw_language, sizeof idx->kw_language, "%s",
             params->keyword_language ? params->keyword_language : "english");
    snprintf(idx->dir, sizeof idx->dir, "%s", dir);
    snprintf(idx->store_path, sizeof idx->store_path, "%s/store.mdb", dir);
    snprintf(idx->snap_path, sizeof idx->snap_path, "%s/index.snap", dir);
    snprintf(idx->tmp_path, sizeof idx->tmp_path, "%s/reindex.mdb", dir);
    pthread_mutex_init(&idx->wmu, NULL);
    /* Writer-preferring: a reindex switch must not starve behind a stream of queries. No thread
     * takes swap shared twice, which this kind would deadlock on. */
    pthread_rwlockattr_t a;
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&idx->swap, &a);
    pthread_rwlockattr_destroy(&a);
    pthread_mutex_init(&idx->cvmu, NULL);
    pthread_cond_init(&idx->cv, NULL);
    return idx;
}

/* Releases what the handle holds (each part only when present) and the handle. */
static void handle_free(sbert_index *idx)
{
    vindex_free(idx->vi);
    store_close(idx->st);
    if (idx->lock_fd >= 0) close(idx->lock_fd);
    pthread_mutex_destroy(&idx->wmu);
    pthread_rwlock_destroy(&idx->swap);
    pthread_mutex_destroy(&idx->cvmu);
    pthread_cond_destroy(&idx->cv);
    free(idx);
}

/* Creates the directory when absent and takes its LOCK file, then removes the scratch files an
 * interrupted reindex or snapshot left. */
static int open_lock_dir(sbert_index *idx, const char *dir, char *errbuf, size_t errlen)
{
    if (mkdir(dir, 0700) && errno != EEXIST)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EIO, "creating %s: %s", dir,
                               strerror(errno));
    char lockp[4200];
    snprintf(lockp, sizeof lockp, "%s/LOCK", dir);
    idx->lock_fd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (idx->lock_fd < 0)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EIO, "opening %s: %s", lockp,
                               strerror(errno));
    if (flock(idx->lock_fd, LOCK_EX | LOCK_NB))
        return sbert_util_errf(
            errbuf, errlen, errno == EWOULDBLOCK ? SBERT_INDEX_ELOCKED : SBERT_INDEX_EIO,
            "locking %s: %s", lockp,
            errno == EWOULDBLOCK ? "another process has this store open" : strerror(errno));
    /* A reindex that did not reach its rename left only scratch files. */
    char tl[4300];
    snprintf(tl, sizeof tl, "%s-lock", idx->tmp_path);
    if (unlink(idx->tmp_path) == 0)
        ilog(idx, SBERT_INDEX_LOG_WARN, "removed %s left by an interrupted reindex", idx->tmp_path);
    unlink(tl);
    /* A snapshot write killed before its rename left its temporary file. */
    int n = vindex_snapshot_remove_temps(idx->snap_path);
    if (n)
        ilog(idx, SBERT_INDEX_LOG_WARN,
             "removed %d temporary file(s) of %s left by an interrupted snapshot", n,
             idx->snap_path);
    return 0;
}

/* Reads the meta record into idx->meta, or writes the first one of a fresh store. */
static int open_meta(sbert_index *idx, const char *dir, const struct sbert_index_params *params,
                     char *errbuf, size_t errlen)
{
    MDB_txn *txn;
    int rc = store_read_begin(idx->st, &txn);
    if (rc) return rc;
    rc = store_meta_get(idx->st, txn, &idx->meta, errbuf, errlen);
    store_read_end(idx->st, txn);
    if (rc != SBERT_INDEX_ENOTFOUND) return rc;
    memset(&idx->meta, 0, sizeof idx->meta);
    idx->meta.format = SBERT_INDEX_FORMAT_VERSION;
    index_meta_set_model(&idx->meta, &params->model);
    snprintf(idx->meta.spec, sizeof idx->meta.spec, "%s",
             params->index_spec ? params->index_spec : "Flat");
    index_fill_random(idx->meta.uuid, sizeof idx->meta.uuid);
    /* The spec is checked before it is recorded. */
    snprintf(idx->spec, sizeof idx->spec, "%s", idx->meta.spec);
    if ((rc = spec_probe(idx, errbuf, errlen))) return rc;
    if ((rc = store_write(idx->st, meta_init_fn, &idx->meta, errbuf, errlen))) return rc;
    ilog(idx, SBERT_INDEX_LOG_INFO, "created store %s (model %s, dim %d, index %s)", dir,
         idx->meta.model_name, idx->meta.dim, idx->meta.spec);
    return 0;
}

/* The refusal of a store built with another model, naming both. */
static int model_mismatch(const sbert_index *idx, const char *dir,
                          const struct sbert_index_model *p, char *errbuf, size_t errlen)
{
    const struct store_meta *m = &idx->meta;
    return sbert_util_errf(
        errbuf, errlen, SBERT_INDEX_EMODEL,
        "store %s was built with model \"%s\" (sha256 %.12s…, dim %d, %s pooling, "
        "normalize %d, max_seq_length %d, %s) but the model given is \"%s\" (sha256 "
        "%.12s…, dim %d, %s pooling, normalize %d, max_seq_length %d, %s); reindex the "
        "store to switch models",
        dir, m->model_name, m->model_sha256, m->dim, pool_name(m->pooling), m->normalize,
        m->max_seq_length, m->precision ? "int8" : "fp32", p->name, p->weights_sha256, p->dim,
        pool_name(p->pooling), p->normalize, p->max_seq_length, p->precision ? "int8" : "fp32");
}

/* Sets idx->spec from the parameters; a spec other than the recorded one is checked and
 * recorded. */
static int open_spec(sbert_index *idx, const struct sbert_index_params *params, char *errbuf,
                     size_t errlen)
{
    const char *want_spec = params->index_spec ? params->index_spec : idx->meta.spec;
    snprintf(idx->spec, sizeof idx->spec, "%s", want_spec);
    if (strcmp(want_spec, idx->meta.spec) == 0) return 0;
    int rc = spec_probe(idx, errbuf, errlen);
    if (rc) return rc;
    ilog(idx, SBERT_INDEX_LOG_INFO, "index spec changes from %s to %s", idx->meta.spec, want_spec);
    struct store_meta m = idx->meta;
    snprintf(m.spec, sizeof m.spec, "%s", want_spec);
    if ((rc = store_write(idx->st, meta_init_fn, &m, errbuf, errlen))) return rc;
    idx->meta = m;
    return 0;
}

/* Everything of open after the handle exists; on failure the caller frees the handle. */
static int open_handle(sbert_index *idx, const char *dir, const struct sbert_index_params *params,
                       char *errbuf, size_t errlen)
{
    int rc = open_lock_dir(idx, dir, errbuf, errlen);
    if (rc) return rc;
    size_t map_size = params->map_size ? params->map_size : DEFAULT_MAP_SIZE;
    if ((rc = store_open(idx->store_path, map_size, 0, params->log, params->log_user, &idx->st,
                         errbuf, errlen)))
        return rc;
    if ((rc = open_meta(idx, dir, params, errbuf, errlen))) return rc;
    /* Refused before anything is written. */
    int mismatch = !model_same(&idx->meta, &params->model);
    if (mismatch && !params->reindex_on_open)
        return model_mismatch(idx, dir, &params->model, errbuf, errlen);
    if ((rc = open_spec(idx, params, errbuf, errlen))) return rc;
    if (mismatch) {
        ilog(idx, SBERT_INDEX_LOG_WARN, "store %s has model %s, reindexing with %s", dir,
             idx->meta.model_name, params->model.name);
        pthread_mutex_lock(&idx->wmu);
        rc = index_reindex_locked(idx, &params->model, params->reindex_on_open,
                                  params->reindex_user, errbuf, errlen);
        pthread_mutex_unlock(&idx->wmu);
    } else
        rc = index_load_vindex(idx, errbuf, errlen);
    if (rc || (rc = index_keyword_open(idx, errbuf, errlen))) return rc;
    /* Before the snapshot thread starts: from then on snap_* are written under wmu. */
    index_publish(idx);
    if (pthread_create(&idx->thread, NULL, index_snapshot_thread, idx))
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_ENOMEM,
                               "starting the snapshot thread failed");
    idx->thread_started = 1;
    return 0;
}

int sbert_index_open(const char *dir, const struct sbert_index_params *params, sbert_index **out,
                     char *errbuf, size_t errlen)
{
    if (out) *out = NULL;
    int rc = open_check_args(dir, params, out, errbuf, errlen);
    if (rc) return rc;
    sbert_index *idx = handle_new(dir, params);
    if (!idx) return SBERT_INDEX_ENOMEM;
    if ((rc = open_handle(idx, dir, params, errbuf, errlen))) {
        handle_free(idx);
        return rc;
    }
    *out = idx;
    return 0;
}

/* ---- close, stats ---------------------------------------------------------------------------- */

void sbert_index_close(sbert_index *idx)
{
    if (!idx) return;
    if (idx->thread_started) {
        pthread_mutex_lock(&idx->cvmu);
        idx->stop = 1;
        pthread_cond_signal(&idx->cv);
        pthread_mutex_unlock(&idx->cvmu);
        pthread_join(idx->thread, NULL);
    }
    if (!idx->broken) {
        vindex_wait_training(idx->vi);
        index_maintain_locked(idx);
        char err[512] = "";
        int rc = index_snapshot_locked(idx, 0, err, sizeof err);
        if (rc)
            ilog(idx, SBERT_INDEX_LOG_ERROR,
                 "snapshot at close failed (the next open replays or rebuilds): %s: %s",
                 sbert_index_strerror(rc), err);
    }
    handle_free(idx);
}

int sbert_index_stats(sbert_index *idx, struct sbert_index_stats *st)
{
    if (!idx || !st) return SBERT_INDEX_EINVAL;
    memset(st, 0, sizeof *st);
    uint64_t count;
    int rc = sbert_index_count(idx, &count);
    if (rc) return rc;
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
    snprintf(st->scan_kernel, sizeof st->scan_kernel, "%s", vi.scan_kernel);
    rc = index_keyword_stats(idx, st);
    pthread_rwlock_unlock(&idx->swap);
    return rc;
}
