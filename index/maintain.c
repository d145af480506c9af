/*
 * maintain.c — the maintenance calls of sbert_index.h: an explicit snapshot, an online backup,
 * and the reindex (every document re-encoded with a new model into a fresh environment that is
 * then renamed over the store). All run under wmu (internal.h).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

int sbert_index_snapshot(sbert_index *idx, char *errbuf, size_t errlen)
{
    if (!idx) return SBERT_INDEX_EINVAL;
    pthread_mutex_lock(&idx->wmu);
    int rc = idx->broken ? SBERT_INDEX_EIO : index_snapshot_locked(idx, 0, errbuf, errlen);
    pthread_mutex_unlock(&idx->wmu);
    return rc;
}

/* ---- backup ---------------------------------------------------------------------------------- */

static int dir_empty_or_create(const char *dir, int *created)
{
    *created = 0;
    if (mkdir(dir, 0700) == 0) {
        *created = 1;
        return 0;
    }
    if (errno != EEXIST) return -1;
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
    closedir(d);
    if (!empty) {
        errno = EEXIST;
        return -1;
    }
    return 0;
}

/* Copies the store to dbp and writes the matching snapshot to snp. Called under wmu. */
static int backup_locked(sbert_index *idx, const char *dir, const char *dbp, const char *snp,
                         char *errbuf, size_t errlen)
{
    if (idx->broken) return SBERT_INDEX_EIO;
    ilog(idx, SBERT_INDEX_LOG_DEBUG, "backup: copying the store to %s", dbp);
    int rc = store_copy(idx->st, dbp, errbuf, errlen);
    if (rc) return rc;
    if (index_fsync_path(dbp, 0))
        return sbert_util_errf(errbuf, errlen,
                               errno == ENOSPC ? SBERT_INDEX_ENOSPC : SBERT_INDEX_EIO,
                               "syncing %s: %s", dbp, strerror(errno));
    /* Writers wait on wmu, so the copy and the snapshot cover the same change. */
    if ((rc = vindex_snapshot_write(idx->vi, snp, idx->meta.change, idx->meta.uuid,
                                    sizeof idx->meta.uuid, errbuf, errlen)))
        return index_vindex_code(rc);
    index_fsync_path(dir, 1);
    ilog(idx, SBERT_INDEX_LOG_INFO, "backup written to %s at change %llu", dir,
         (unsigned long long)idx->meta.change);
    return 0;
}

int sbert_index_backup(sbert_index *idx, const char *dir, char *errbuf, size_t errlen)
{
    if (!idx || !dir || strlen(dir) > 4000)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL, "bad argument");
    int created;
    if (dir_empty_or_create(dir, &created))
        return sbert_util_errf(
            errbuf, errlen, errno == EEXIST ? SBERT_INDEX_EEXIST : SBERT_INDEX_EIO,
            "backup target %s: %s", dir,
            errno == EEXIST ? "exists and is not an empty directory" : strerror(errno));
    char dbp[4200], snp[4200];
    snprintf(dbp, sizeof dbp, "%s/store.mdb", dir);
    snprintf(snp, sizeof snp, "%s/index.snap", dir);
    pthread_mutex_lock(&idx->wmu);
    int rc = backup_locked(idx, dir, dbp, snp, errbuf, errlen);
    pthread_mutex_unlock(&idx->wmu);
    if (rc) {
        unlink(dbp);
        unlink(snp);
        if (created) rmdir(dir);
    }
    return rc;
}

/* ---- reindex --------------------------------------------------------------------------------- */

/* A stored document copied out of its transaction, to be encoded again. */
struct chunk_doc {
    uint64_t label;
    char *id;
    size_t id_len;
    char *text;
    size_t text_len;
    char *meta; /* NULL: none */
    size_t meta_len;
    uint32_t np;     /* passages */
    uint32_t *spans; /* 2 * np offsets, or NULL: one passage, the whole text */
};

static void chunk_free(struct chunk_doc *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].id);
        free(d[i].text);
        free(d[i].meta);
        free(d[i].spans);
    }
}

/* A reindex in progress: the new store and vector index, and the buffers of one chunk. */
struct reindex_job {
    sbert_index *idx;
    const struct sbert_index_model *nm;
    sbert_index_encode_fn encode;
    void *user;
    struct store_meta m; /* the new store's meta record */
    store *ns;
    vindex *nv;
    uint64_t map_size;
    int scratch;      /* the scratch environment was created: a failure removes it */
    char lockp[4300]; /* the scratch environment's lock file */
    size_t dim, n;
    struct chunk_doc *docs;
    /* one row per passage of the chunk (n_pass of them), then one per document vector (the
     * whole text of each document of several passages); rows_cap of them */
    size_t rows_cap, n_pass;
    const char **texts;
    char **copies; /* NUL-terminated copies of the passages that are not their whole text */
    size_t *lens;
    int64_t *labels;
    float *raw, *vecs;
    const struct store_meta *write_meta; /* reindex_write_fn: set for the first write only */
};

static int chunk_take(uint64_t label, const struct store_record *r, void *user)
{
    struct reindex_job *j = user;
    struct chunk_doc *cd = &j->docs[j->n++];
    memset(cd, 0, sizeof *cd);
    cd->label = label;
    cd->id = index_dup_bytes(r->id, r->id_len);
    cd->id_len = r->id_len;
    cd->text = index_dup_bytes(r->text, r->text_len);
    cd->text_len = r->text_len;
    cd->np = r->n_passages;
    if (r->spans && (cd->spans = malloc(2 * (size_t)cd->np * sizeof *cd->spans)))
        for (size_t i = 0; i < cd->np; i++) {
            size_t a, b;
            store_record_span(r, i, &a, &b);
            cd->spans[2 * i] = (uint32_t)a;
            cd->spans[2 * i + 1] = (uint32_t)b;
        }
    if (r->spans && !cd->spans) return SBERT_INDEX_ENOMEM;
    if (r->meta) {
        cd->meta = index_dup_bytes(r->meta, r->meta_len);
        cd->meta_len = r->meta_len;
    }
    if (!cd->id || !cd->text || (r->meta && !cd->meta)) return SBERT_INDEX_ENOMEM;
    return 0;
}

/* Reads up to CHUNK documents with label >= *next (label order) into j->docs (j->n of them);
 * advances *next. On failure nothing is left allocated. */
static int read_chunk(struct reindex_job *j, uint64_t *next)
{
    j->n = 0;
    MDB_txn *txn;
    int rc = store_read_begin(j->idx->st, &txn);
    if (rc) return rc;
    uint64_t at = *next;
    int end;
    rc = store_docs_scan(j->idx->st, txn, &at, CHUNK, chunk_take, j, &end);
    store_read_end(j->idx->st, txn);
    if (rc) {
        chunk_free(j->docs, j->n);
        j->n = 0;
        return store_error(rc, "reading documents", NULL, 0);
    }
    *next = at;
    return 0;
}

static int reindex_write_fn(store *s, MDB_txn *txn, void *user)
{
    struct reindex_job *j = user;
    int rc;
    if (j->write_meta && ((rc = store_meta_put(s, txn, j->write_meta)) ||
                          (rc = store_kw_reset(s, txn, STORE_KW_VERSION))))
        return rc;
    for (size_t i = 0, row = 0, drow = j->n_pass; i < j->n; i++) {
        struct chunk_doc *d = &j->docs[i];
        const float *dv = d->spans ? j->vecs + drow++ * j->dim : NULL;
        if ((rc = store_doc_put(s, txn, d->label, dv, j->vecs + row * j->dim, j->dim, d->np,
                                d->spans, d->id, d->id_len, d->text, d->text_len, d->meta,
                                d->meta_len)))
            return rc;
        row += d->np;
    }
    return 0;
}

/* Room for rows rows in j's row buffers. */
static int reindex_rows(struct reindex_job *j, size_t rows)
{
    if (rows <= j->rows_cap) return 0;
    size_t cap = j->rows_cap ? j->rows_cap : CHUNK;
    while (cap < rows)
        cap *= 2;
    const char **t = realloc(j->texts, cap * sizeof *t);
    if (t) j->texts = t;
    char **c = t ? realloc(j->copies, cap * sizeof *c) : NULL;
    if (c) j->copies = c;
    size_t *l = c ? realloc(j->lens, cap * sizeof *l) : NULL;
    if (l) j->lens = l;
    int64_t *lb = l ? realloc(j->labels, cap * sizeof *lb) : NULL;
    if (lb) j->labels = lb;
    float *r = lb ? realloc(j->raw, cap * j->dim * sizeof *r) : NULL;
    if (r) j->raw = r;
    float *v = r ? realloc(j->vecs, cap * j->dim * sizeof *v) : NULL;
    if (!v) return SBERT_INDEX_ENOMEM;
    j->vecs = v;
    j->rows_cap = cap;
    return 0;
}

/* The chunk's rows: texts (NUL-terminated), lengths and labels (the passages' only); *rows of
 * them, j->n_pass of them passages. */
static int reindex_passages(struct reindex_job *j, size_t *rows)
{
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++)
        n += j->docs[i].np + (j->docs[i].spans != NULL);
    if (reindex_rows(j, n)) return SBERT_INDEX_ENOMEM;
    size_t row = 0;
    for (size_t i = 0; i < j->n; i++) {
        const struct chunk_doc *d = &j->docs[i];
        for (size_t k = 0; k < d->np; k++, row++) {
            j->labels[row] = (int64_t)(d->label + k);
            j->copies[row] = NULL;
            if (!d->spans) {
                j->texts[row] = d->text;
                j->lens[row] = d->text_len;
                continue;
            }
            size_t a = d->spans[2 * k], b = d->spans[2 * k + 1];
            j->copies[row] = index_dup_bytes(d->text + a, b - a);
            j->texts[row] = j->copies[row];
            j->lens[row] = b - a;
            if (!j->copies[row]) {
                *rows = row + 1;
                return SBERT_INDEX_ENOMEM;
            }
        }
    }
    j->n_pass = row;
    for (size_t i = 0; i < j->n; i++) {
        const struct chunk_doc *d = &j->docs[i];
        if (!d->spans) continue;
        j->texts[row] = d->text;
        j->lens[row] = d->text_len;
        j->copies[row++] = NULL;
    }
    *rows = row;
    return 0;
}

/* Encodes the chunk in j->docs and writes it to the new store and vector index. */
static int reindex_chunk(struct reindex_job *j, char *errbuf, size_t errlen)
{
    size_t n = 0, dim = j->dim;
    int rc = reindex_passages(j, &n);
    ilog(j->idx, SBERT_INDEX_LOG_DEBUG, "reindex: encoding %zu texts of %zu documents", n, j->n);
    if (rc == 0 && j->encode(j->texts, j->lens, n, j->raw, j->user))
        rc = sbert_util_errf(errbuf, errlen, SBERT_INDEX_ECALLBACK,
                             "reindex: the encode callback failed on a batch of %zu texts", n);
    for (size_t i = 0; i < n; i++)
        free(j->copies[i]);
    if (rc)
        return rc == SBERT_INDEX_ENOMEM ? sbert_util_errf(errbuf, errlen, rc, "out of memory") : rc;
    for (size_t i = 0; i < n; i++)
        if (sbert_util_normalise_into(j->raw + i * dim, dim, j->vecs + i * dim))
            return sbert_util_errf(errbuf, errlen, SBERT_INDEX_ECALLBACK,
                                   "reindex: the encode callback returned a non-finite value");
    rc = store_write(j->ns, reindex_write_fn, j, errbuf, errlen);
    if (rc == 0 && (rc = vindex_add(j->nv, j->labels, j->vecs, j->n_pass, errbuf, errlen)))
        rc = index_vindex_code(rc);
    return rc;
}

/* Writes every document, encoded with the new model, into j->ns and j->nv; syncs j->ns. */
static int reindex_copy(struct reindex_job *j, uint64_t *total, char *errbuf, size_t errlen)
{
    sbert_index *idx = j->idx;
    j->write_meta = &j->m;
    j->n = 0;
    int rc = store_write(j->ns, reindex_write_fn, j, errbuf, errlen);
    if (rc) return rc;
    j->write_meta = NULL;
    uint64_t next = 0, expect = index_doc_total(idx);
    index_progress(idx, "reindex", 0, expect);
    for (;;) {
        if ((rc = read_chunk(j, &next))) return rc;
        if (j->n == 0) break;
        rc = reindex_chunk(j, errbuf, errlen);
        chunk_free(j->docs, j->n);
        if (rc) return rc;
        *total += j->n;
        index_progress(idx, "reindex", *total, expect);
    }
    if ((rc = store_sync(j->ns)))
        return store_error(rc, "syncing the reindexed store", errbuf, errlen);
    return 0;
}

/*
 * Renames the new store over the old one and swaps the handle's store and vector index, under
 * swap held exclusively. Returns 0; a code with the old store still in place (nothing switched);
 * or, when the switched store cannot be reopened, a code with idx->broken set (*broken = 1).
 */
static int reindex_switch(struct reindex_job *j, int *broken, char *errbuf, size_t errlen)
{
    sbert_index *idx = j->idx;
    ilog(idx, SBERT_INDEX_LOG_DEBUG, "reindex: switching to the new store");
    /* The old snapshot must not be loaded against the new store. */
    if (unlink(idx->snap_path) && errno != ENOENT)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EIO, "removing %s: %s", idx->snap_path,
                               strerror(errno));
    index_fsync_path(idx->dir, 1);
    idx->snap_exists = 0;

    pthread_rwlock_wrlock(&idx->swap);
    store_close(idx->st);
    idx->st = NULL;
    int ren = rename(idx->tmp_path, idx->store_path);
    int ren_errno = errno;
    index_fsync_path(idx->dir, 1);
    unlink(j->lockp);
    char oerr[512] = "";
    int rc = store_open(idx->store_path, (size_t)j->map_size, 0, idx->params.log,
                        idx->params.log_user, &idx->st, oerr, sizeof oerr);
    if (rc == 0 && (rc = store_kw_setup(idx->st, idx->kw_language)))
        snprintf(oerr, sizeof oerr, "the keyword analyzer: %s", sbert_index_strerror(rc));
    if (rc == 0 && ren) {
        /* The rename failed: the old store is back in place and still valid. */
        pthread_rwlock_unlock(&idx->swap);
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EIO, "renaming %s: %s", idx->tmp_path,
                               strerror(ren_errno));
    }
    if (rc) {
        idx->broken = 1;
        *broken = 1;
        pthread_rwlock_unlock(&idx->swap);
        return sbert_util_errf(errbuf, errlen, rc,
                               "reindex: reopening the switched store failed: %s", oerr);
    }
    vindex_free(idx->vi);
    idx->vi = j->nv;
    j->nv = NULL;
    idx->meta = j->m;
    index_publish(idx);
    pthread_rwlock_unlock(&idx->swap);
    return 0;
}

/* Opens the scratch environment and prepares the new meta record and vector index. */
static int reindex_begin(struct reindex_job *j, char *errbuf, size_t errlen)
{
    sbert_index *idx = j->idx;
    snprintf(j->lockp, sizeof j->lockp, "%s-lock", idx->tmp_path);
    unlink(idx->tmp_path);
    unlink(j->lockp);
    uint64_t used;
    store_map_info(idx->st, &j->map_size, &used);
    int rc = store_open(idx->tmp_path, (size_t)j->map_size, 1, idx->params.log,
                        idx->params.log_user, &j->ns, errbuf, errlen);
    if (rc) return rc;
    j->scratch = 1;
    if ((rc = store_kw_setup(j->ns, idx->kw_language))) return rc;
    j->m = idx->meta;
    index_meta_set_model(&j->m, j->nm);
    /* A new change number and uuid: nothing of the old store's snapshot or log applies. */
    j->m.change = idx->meta.change + 1;
    index_fill_random(j->m.uuid, sizeof j->m.uuid);

    j->dim = (size_t)j->nm->dim;
    j->docs = calloc(CHUNK, sizeof *j->docs);
    if (!j->docs || reindex_rows(j, CHUNK)) return SBERT_INDEX_ENOMEM;
    struct vindex_params vp = index_vparams(idx, j->nm->dim);
    if ((rc = vindex_create(&vp, &j->nv, errbuf, errlen))) return index_create_code(rc);
    return 0;
}

int index_reindex_locked(sbert_index *idx, const struct sbert_index_model *nm,
                         sbert_index_encode_fn encode, void *user, char *errbuf, size_t errlen)
{
    struct reindex_job *j = calloc(1, sizeof *j);
    if (!j) return SBERT_INDEX_ENOMEM;
    *j = (struct reindex_job){.idx = idx, .nm = nm, .encode = encode, .user = user};
    uint64_t total = 0;
    int broken = 0;
    int rc = reindex_begin(j, errbuf, errlen);
    if (rc == 0) rc = reindex_copy(j, &total, errbuf, errlen);
    if (rc == 0) {
        store_close(j->ns);
        j->ns = NULL;
        rc = reindex_switch(j, &broken, errbuf, errlen);
    }
    if (rc == 0) {
        ilog(idx, SBERT_INDEX_LOG_INFO, "reindexed %llu documents with model %s (dim %d)",
             (unsigned long long)total, j->m.model_name, j->m.dim);
        char serr[512] = "";
        if (index_snapshot_locked(idx, 1, serr, sizeof serr))
            ilog(idx, SBERT_INDEX_LOG_WARN, "snapshot after reindex failed: %s", serr);
    } else if (j->scratch && !broken) {
        /* Nothing switched: the scratch environment goes. */
        store_close(j->ns);
        unlink(idx->tmp_path);
        unlink(j->lockp);
    }
    vindex_free(j->nv);
    free(j->docs);
    free(j->texts);
    free(j->copies);
    free(j->lens);
    free(j->labels);
    free(j->raw);
    free(j->vecs);
    free(j);
    return rc;
}

int sbert_index_reindex(sbert_index *idx, const struct sbert_index_model *new_model,
                        sbert_index_encode_fn encode, void *user, char *errbuf, size_t errlen)
{
    if (!idx || !new_model || !encode)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL, "NULL argument");
    if (!index_model_valid(new_model))
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL,
                               "the new model identity is incomplete");
    pthread_mutex_lock(&idx->wmu);
    int rc = idx->broken ? SBERT_INDEX_EIO
                         : index_reindex_locked(idx, new_model, encode, user, errbuf, errlen);
    pthread_mutex_unlock(&idx->wmu);
    return rc;
}
