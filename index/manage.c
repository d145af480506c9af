/*
 * manage.c — the writes of data management (sbert_index.h): delete by filter, in chunks of one
 * durable transaction each, and patch, which rewrites documents' metadata keeping their text and
 * vector. Both follow write.c's order: commit durably, then apply to the vector index, under wmu.
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "internal.h"

/* ---- delete by filter ------------------------------------------------------------------------ */

#define DELF_CHUNK 1000
/* Documents examined per transaction: bounds one chunk's time when few documents match. */
#define DELF_SCAN 16384

struct delf_ctx {
    sbert_index *idx;
    const struct sbert_index_delete_filter_params *p;
    size_t chunk;
    uint64_t end_label; /* the documents stored when the call began have labels below it */
    uint64_t next;      /* where the next transaction scans from */
    uint64_t total;     /* deleted by committed chunks */
    uint64_t *n_deleted;
    /* one transaction's outputs, reset at each attempt */
    uint64_t pos, change;
    int64_t *removed;     /* chunk entries */
    uint32_t *removed_np; /* their passages */
    size_t n_removed;
    int done; /* the scan reached end_label or the last document */
};

static int delf_collect(uint64_t label, const struct store_record *r, void *user)
{
    struct delf_ctx *c = user;
    if (label >= c->end_label) {
        c->done = 1;
        return STORE_SCAN_STOP;
    }
    int m =
        filter_match_doc(c->p->filter, r->meta, r->meta ? r->meta_len : 0, r->text, r->text_len);
    if (m == SBERT_INDEX_ENOMEM) return m;
    if (m == 1) c->removed[c->n_removed++] = (int64_t)label;
    return c->n_removed == c->chunk ? STORE_SCAN_STOP : 0;
}

/* Removes label's document: its id entry, its record, and a change log entry. */
static int delf_one(struct delf_ctx *c, store *s, MDB_txn *txn, size_t at)
{
    uint64_t label = (uint64_t)c->removed[at];
    struct store_record r;
    int rc = store_record_get(s, txn, label, &r);
    if (rc) return rc == SBERT_INDEX_ENOTFOUND ? SBERT_INDEX_EFORMAT : rc;
    if ((rc = store_id_del(s, txn, r.id, r.id_len))) return rc;
    if ((rc = store_record_del(s, txn, label, &c->removed_np[at]))) return rc;
    return store_log_append(s, txn, ++c->change, label, STORE_OP_DELETE, c->removed_np[at]);
}

static int delf_fn(store *s, MDB_txn *txn, void *user)
{
    struct delf_ctx *c = user;
    c->pos = c->next;
    c->change = c->idx->meta.change;
    c->n_removed = 0;
    c->done = 0;
    int end = 0;
    /* matches are collected first and deleted after: the scan's cursor never sees a deletion */
    int rc = store_docs_scan(s, txn, &c->pos, DELF_SCAN, delf_collect, c, &end);
    if (rc) return rc;
    c->done |= end;
    for (size_t i = 0; i < c->n_removed; i++)
        if ((rc = delf_one(c, s, txn, i))) return rc;
    if (c->done && c->p->req) {
        *c->n_deleted = c->total + c->n_removed;
        if ((rc = index_req_record(c->idx, s, txn, c->p->req))) return rc;
    }
    if (c->change == c->idx->meta.change) return 0;
    return store_meta_put_counters(s, txn, c->idx->meta.next_label, c->change);
}

/* One chunk: commits it and applies it to the vector index. Called under wmu. */
static int delf_chunk(struct delf_ctx *c, store *st0, char *errbuf, size_t errlen)
{
    sbert_index *idx = c->idx;
    if (idx->broken)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EIO,
                               "the store failed to reopen after reindex");
    if (idx->st != st0)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EIO,
                               "a reindex replaced the store while the delete ran");
    pthread_rwlock_rdlock(&idx->swap);
    int rc = store_write(idx->st, delf_fn, c, errbuf, errlen);
    pthread_rwlock_unlock(&idx->swap);
    if (rc) {
        if (rc == SBERT_INDEX_ECALLBACK)
            sbert_util_errf(errbuf, errlen, rc,
                            "the reply to remember for the req_id could not be built");
        return rc;
    }
    if (c->n_removed) {
        ilog(idx, SBERT_INDEX_LOG_DEBUG, "commit: delete by filter of %zu documents", c->n_removed);
        idx->meta.change = c->change;
        index_publish(idx);
        index_apply_vindex(idx, c->removed, c->removed_np, c->n_removed, NULL, NULL, NULL, 0);
        index_snapshot_poke(idx);
    }
    c->total += c->n_removed;
    c->next = c->pos;
    return 0;
}

int sbert_index_delete_filter(sbert_index *idx, const struct sbert_index_delete_filter_params *p,
                              uint64_t *n_deleted, char *errbuf, size_t errlen)
{
    if (n_deleted) *n_deleted = 0;
    if (!idx || !p || !p->filter || !n_deleted)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL, "NULL argument");
    if (!index_req_valid(p->req))
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL, "bad req_id record");
    struct delf_ctx c = {.idx = idx, .p = p, .n_deleted = n_deleted};
    c.chunk = p->chunk ? p->chunk : DELF_CHUNK;
    c.removed = malloc(c.chunk * sizeof *c.removed);
    c.removed_np = malloc(c.chunk * sizeof *c.removed_np);
    if (!c.removed || !c.removed_np) {
        free(c.removed);
        free(c.removed_np);
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_ENOMEM, "out of memory");
    }
    pthread_mutex_lock(&idx->wmu);
    c.end_label = idx->meta.next_label;
    store *st0 = idx->st;
    pthread_mutex_unlock(&idx->wmu);
    int rc = 0;
    while (!rc && !c.done) {
        pthread_mutex_lock(&idx->wmu);
        rc = delf_chunk(&c, st0, errbuf, errlen);
        pthread_mutex_unlock(&idx->wmu);
        if (!rc && p->progress) p->progress(p->progress_user, c.total);
    }
    free(c.removed);
    free(c.removed_np);
    *n_deleted = c.total;
    return rc;
}

/* ---- patch ----------------------------------------------------------------------------------- */

struct patch_ctx {
    sbert_index *idx;
    struct sbert_index_patch_item *items;
    size_t n, dim, max_meta;
    const struct sbert_index_write_req *req;
    cJSON **sets; /* items' set objects, parsed; NULL for none */
    /* one transaction's outputs, reset at each attempt */
    uint64_t next_label, change;
    uint64_t *label;      /* new label per item (found ones) */
    int64_t *removed;     /* labels replaced */
    uint32_t *removed_np; /* their passages */
    size_t n_removed, bad;
    /* per item: the vectors and passages its new label gets (copies, kept for the vector index):
     * the passages' np rows, then with spans the document vector */
    float **vecs;
    uint32_t **spans; /* NULL: one passage, the whole text */
    uint32_t *np;
};

/* The metadata of JSON text old (NULL: none) with item it's patch applied, as compact JSON in
 * *out (cJSON's allocation; NULL when it ends empty). */
static int patch_merge(const struct sbert_index_patch_item *it, const cJSON *set, const char *old,
                       size_t old_len, char **out)
{
    *out = NULL;
    cJSON *m = old ? cJSON_ParseWithLength(old, old_len) : cJSON_CreateObject();
    if (!m) return old ? SBERT_INDEX_EFORMAT : SBERT_INDEX_ENOMEM;
    int rc = cJSON_IsObject(m) ? 0 : SBERT_INDEX_EFORMAT;
    for (size_t k = 0; !rc && k < it->n_unset; k++)
        cJSON_DeleteItemFromObjectCaseSensitive(m, it->unset[k]);
    for (const cJSON *x = set ? set->child : NULL; !rc && x; x = x->next) {
        cJSON *dup = cJSON_Duplicate(x, 1);
        if (!dup)
            rc = SBERT_INDEX_ENOMEM;
        else if (cJSON_GetObjectItemCaseSensitive(m, x->string)
                     ? !cJSON_ReplaceItemInObjectCaseSensitive(m, x->string, dup)
                     : !cJSON_AddItemToObject(m, x->string, dup)) {
            cJSON_Delete(dup);
            rc = SBERT_INDEX_ENOMEM;
        }
    }
    if (!rc && m->child && !(*out = cJSON_PrintUnformatted(m))) rc = SBERT_INDEX_ENOMEM;
    cJSON_Delete(m);
    return rc;
}

/* Patches item i when its document exists: a new label with the same id, text and vector and
 * the merged metadata; the old label deleted. */
static int patch_one(struct patch_ctx *p, store *s, MDB_txn *txn, size_t i)
{
    struct sbert_index_patch_item *it = &p->items[i];
    uint64_t old;
    int rc = store_id_lookup(s, txn, it->id, it->id_len, &old);
    if (rc == SBERT_INDEX_ENOTFOUND) return 0;
    if (rc) return rc;
    struct store_record r;
    if ((rc = store_record_get(s, txn, old, &r)))
        return rc == SBERT_INDEX_ENOTFOUND ? SBERT_INDEX_EFORMAT : rc;
    if (r.id_len != it->id_len || memcmp(r.id, it->id, r.id_len) != 0)
        return 0; /* a different long id with the same key */
    if (r.dim != p->dim) return SBERT_INDEX_EFORMAT;
    char *meta = NULL;
    if ((rc = patch_merge(it, p->sets[i], r.meta, r.meta_len, &meta))) return rc;
    size_t meta_len = meta ? strlen(meta) : 0;
    if (p->max_meta && meta_len > p->max_meta) {
        cJSON_free(meta);
        p->bad = i;
        return SBERT_INDEX_EMETADATA;
    }
    /* r points into the map: a page this transaction already wrote may move under the writes
     * below, so the text and vector are copied first */
    char *text = index_dup_bytes(r.text, r.text_len);
    size_t text_len = r.text_len;
    if (!text) {
        cJSON_free(meta);
        return SBERT_INDEX_ENOMEM;
    }
    uint32_t np = r.n_passages;
    free(p->vecs[i]);
    free(p->spans[i]);
    p->spans[i] = NULL;
    p->np[i] = np;
    if (!(p->vecs[i] = malloc(((size_t)np + 1) * p->dim * sizeof(float))) ||
        (r.spans && !(p->spans[i] = malloc(2 * (size_t)np * sizeof(uint32_t))))) {
        free(text);
        cJSON_free(meta);
        return SBERT_INDEX_ENOMEM;
    }
    memcpy(p->vecs[i], r.vector, (size_t)np * p->dim * sizeof(float));
    memcpy(p->vecs[i] + (size_t)np * p->dim, r.doc_vector, p->dim * sizeof(float));
    for (size_t j = 0; r.spans && j < np; j++) {
        size_t a, b;
        store_record_span(&r, j, &a, &b);
        p->spans[i][2 * j] = (uint32_t)a;
        p->spans[i][2 * j + 1] = (uint32_t)b;
    }
    uint64_t label = p->next_label;
    p->next_label += np;
    uint32_t old_np = 1;
    if ((rc = store_record_del(s, txn, old, &old_np)) == 0 &&
        (rc = store_log_append(s, txn, ++p->change, old, STORE_OP_DELETE, old_np)) == 0 &&
        (rc = store_doc_put(s, txn, label, p->spans[i] ? p->vecs[i] + (size_t)np * p->dim : NULL,
                            p->vecs[i], p->dim, np, p->spans[i], it->id, it->id_len, text, text_len,
                            meta, meta_len)) == 0)
        rc = store_log_append(s, txn, ++p->change, label, STORE_OP_PUT, np);
    free(text);
    cJSON_free(meta);
    if (rc) return rc;
    p->removed_np[p->n_removed] = old_np;
    p->removed[p->n_removed++] = (int64_t)old;
    p->label[i] = label;
    it->found = 1;
    return 0;
}

static int patch_fn(store *s, MDB_txn *txn, void *user)
{
    struct patch_ctx *p = user;
    p->next_label = p->idx->meta.next_label;
    p->change = p->idx->meta.change;
    p->n_removed = 0;
    int rc;
    for (size_t i = 0; i < p->n; i++) {
        p->items[i].found = 0;
        p->label[i] = 0;
    }
    for (size_t i = 0; i < p->n; i++)
        if ((rc = patch_one(p, s, txn, i))) return rc;
    if (p->req && (rc = index_req_record(p->idx, s, txn, p->req))) return rc;
    if (p->change == p->idx->meta.change) return 0;
    return store_meta_put_counters(s, txn, p->next_label, p->change);
}

/* After the commit: the counters, and the new labels in the vector index in place of the old
 * ones. Labels created and superseded within the batch never reach it. Under wmu. */
static void patch_apply(struct patch_ctx *p)
{
    sbert_index *idx = p->idx;
    uint64_t first_new = idx->meta.next_label;
    idx->meta.next_label = p->next_label;
    idx->meta.change = p->change;
    index_publish(idx);
    /* labels of this batch that a later item replaced: not added (p->label of the found items
     * increases with i) */
    size_t n_old = 0, n_added = 0, rows = 0;
    char *gone = calloc(p->n ? p->n : 1, 1);
    int64_t *added = malloc((p->n ? p->n : 1) * sizeof *added);
    for (size_t i = 0; i < p->n; i++)
        if (p->items[i].found) rows += p->np[i];
    float *vecs = malloc((rows ? rows : 1) * p->dim * sizeof *vecs);
    if (!gone || !added || !vecs) {
        ilog(idx, SBERT_INDEX_LOG_ERROR, "out of memory applying a patch: rebuilding");
        atomic_store(&idx->need_rebuild, 1);
    } else {
        for (size_t i = 0; i < p->n_removed; i++) {
            if ((uint64_t)p->removed[i] >= first_new) {
                for (size_t j = 0; j < p->n; j++)
                    if (p->items[j].found && (int64_t)p->label[j] == p->removed[i]) gone[j] = 1;
                continue;
            }
            uint32_t np = p->removed_np[i];
            p->removed[n_old] = p->removed[i];
            p->removed_np[n_old++] = np;
        }
        rows = 0;
        for (size_t i = 0; i < p->n; i++) {
            if (!p->items[i].found || gone[i]) continue;
            added[n_added] = (int64_t)p->label[i];
            memcpy(vecs + rows * p->dim, p->vecs[i], (size_t)p->np[i] * p->dim * sizeof *vecs);
            rows += p->np[i];
            p->np[n_added++] = p->np[i]; /* entry n_added <= i: read before written */
        }
        index_apply_vindex(idx, p->removed, p->removed_np, n_old, added, p->np, vecs, n_added);
    }
    free(gone);
    free(added);
    free(vecs);
    index_snapshot_poke(idx);
}

/* Checks the items and parses their set objects into p->sets. */
static int patch_check(struct patch_ctx *p, size_t *bad_index, char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < p->n; i++) {
        const struct sbert_index_patch_item *it = &p->items[i];
        int rc = 0;
        const char *what = NULL;
        if (!it->id || it->id_len == 0 || it->id_len > SBERT_INDEX_ID_MAX) {
            rc = SBERT_INDEX_EID;
            what = "the id is empty or longer than 512 bytes";
        } else if (it->n_unset && !it->unset) {
            rc = SBERT_INDEX_EINVAL;
            what = "unset is NULL";
        } else if (it->set && (!(p->sets[i] = cJSON_ParseWithLength(it->set, it->set_len)) ||
                               !cJSON_IsObject(p->sets[i]))) {
            rc = SBERT_INDEX_EMETADATA;
            what = "set is not a JSON object";
        }
        for (size_t k = 0; !rc && k < it->n_unset; k++)
            if (!it->unset[k]) {
                rc = SBERT_INDEX_EINVAL;
                what = "an unset key is NULL";
            }
        if (rc) {
            if (bad_index) *bad_index = i;
            return sbert_util_errf(errbuf, errlen, rc, "item %zu: %s", i, what);
        }
    }
    return 0;
}

/* Commits the patch and applies it. Called under wmu with p's buffers allocated. */
static int patch_locked(struct patch_ctx *p, size_t *bad_index, char *errbuf, size_t errlen)
{
    sbert_index *idx = p->idx;
    if (idx->broken)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EIO,
                               "the store failed to reopen after reindex");
    p->dim = (size_t)idx->meta.dim;
    pthread_rwlock_rdlock(&idx->swap);
    ilog(idx, SBERT_INDEX_LOG_DEBUG, "commit: patch of %zu documents", p->n);
    int rc = store_write(idx->st, patch_fn, p, errbuf, errlen);
    pthread_rwlock_unlock(&idx->swap);
    if (!rc) {
        patch_apply(p);
        return 0;
    }
    for (size_t i = 0; i < p->n; i++)
        p->items[i].found = 0;
    if (rc == SBERT_INDEX_EMETADATA) {
        if (bad_index) *bad_index = p->bad;
        sbert_util_errf(errbuf, errlen, rc, "item %zu: the patched metadata would exceed %zu bytes",
                        p->bad, p->max_meta);
    } else if (rc == SBERT_INDEX_ECALLBACK)
        sbert_util_errf(errbuf, errlen, rc,
                        "the reply to remember for the req_id could not be built");
    else if (rc == SBERT_INDEX_EFORMAT)
        sbert_util_errf(errbuf, errlen, rc, "a stored document to patch is damaged");
    return rc;
}

int sbert_index_patch_req(sbert_index *idx, struct sbert_index_patch_item *items, size_t n,
                          size_t max_metadata_bytes, const struct sbert_index_write_req *req,
                          size_t *bad_index, char *errbuf, size_t errlen)
{
    if (!idx || (!items && n))
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL, "NULL argument");
    if (!index_req_valid(req))
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EINVAL, "bad req_id record");
    if (n == 0) return 0;
    struct patch_ctx p = {
        .idx = idx, .items = items, .n = n, .max_meta = max_metadata_bytes, .req = req};
    p.sets = calloc(n, sizeof *p.sets);
    p.label = malloc(n * sizeof *p.label);
    p.removed = malloc(n * sizeof *p.removed);
    p.removed_np = malloc(n * sizeof *p.removed_np);
    p.vecs = calloc(n, sizeof *p.vecs);
    p.spans = calloc(n, sizeof *p.spans);
    p.np = calloc(n, sizeof *p.np);
    int rc;
    if (!p.sets || !p.label || !p.removed || !p.removed_np || !p.vecs || !p.spans || !p.np)
        rc = sbert_util_errf(errbuf, errlen, SBERT_INDEX_ENOMEM, "out of memory");
    else if (!(rc = patch_check(&p, bad_index, errbuf, errlen))) {
        pthread_mutex_lock(&idx->wmu);
        rc = patch_locked(&p, bad_index, errbuf, errlen);
        pthread_mutex_unlock(&idx->wmu);
    }
    for (size_t i = 0; p.sets && i < n; i++)
        cJSON_Delete(p.sets[i]);
    free(p.sets);
    free(p.label);
    free(p.removed);
    free(p.removed_np);
    for (size_t i = 0; i < n; i++) {
        if (p.vecs) free(p.vecs[i]);
        if (p.spans) free(p.spans[i]);
    }
    free(p.vecs);
    free(p.spans);
    free(p.np);
    return rc;
}
