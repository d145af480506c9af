/*
 * verify.c — sbert_index_verify: a store directory (a live one whose daemon is stopped, or a
 * backup) checked end to end without the model, before it is trusted (sbertctl restore).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

struct verify_scan {
    store *st;
    MDB_txn *txn;
    int dim;
    uint64_t docs, passages;
    uint64_t free_from; /* the first label no record before owns */
    uint64_t next_label;
    char *errbuf;
    size_t errlen;
};

/* Whether the n stored floats at v (maybe unaligned) are all finite. */
static int finite_all(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x;
        memcpy(&x, v + i, sizeof x);
        if (!isfinite(x)) return 0;
    }
    return 1;
}

/* One record: its vectors have the store's dimension and finite values, its passages' labels
 * belong to no other record and lie below next_label, and its id leads back to its label. */
static int verify_doc(uint64_t label, const struct store_record *r, void *user)
{
    struct verify_scan *v = user;
    if (r->dim != (uint32_t)v->dim)
        return sbert_util_errf(v->errbuf, v->errlen, SBERT_INDEX_EFORMAT,
                               "document %llu has %u dimensions, the store %d",
                               (unsigned long long)label, r->dim, v->dim);
    if (!finite_all(r->vector, (size_t)r->dim * r->n_passages) ||
        !finite_all(r->doc_vector, r->dim))
        return sbert_util_errf(v->errbuf, v->errlen, SBERT_INDEX_EFORMAT,
                               "document %llu's vector holds a value that is not finite",
                               (unsigned long long)label);
    if (label < v->free_from || label + r->n_passages > v->next_label)
        return sbert_util_errf(v->errbuf, v->errlen, SBERT_INDEX_EFORMAT,
                               "document %llu's %u passages overlap another document's labels or "
                               "reach past next_label %llu",
                               (unsigned long long)label, r->n_passages,
                               (unsigned long long)v->next_label);
    v->free_from = label + r->n_passages;
    v->passages += r->n_passages;
    uint64_t found;
    int rc = store_id_lookup(v->st, v->txn, r->id, r->id_len, &found);
    if (rc || found != label)
        return sbert_util_errf(v->errbuf, v->errlen, SBERT_INDEX_EFORMAT,
                               "document %llu's id does not lead back to it (%s)",
                               (unsigned long long)label,
                               rc ? "its id is not found" : "another label");
    v->docs++;
    return 0;
}

static int count_id(uint64_t label, const struct store_record *r, void *user)
{
    (void)label, (void)r;
    (*(uint64_t *)user)++;
    return 0;
}

/* Every record, then every id (each must have its record), in chunks within one transaction. */
static int verify_scan_all(store *st, struct sbert_index_verify_report *out,
                           const struct store_meta *m, char *errbuf, size_t errlen)
{
    MDB_txn *txn;
    int rc = store_read_begin(st, &txn);
    if (rc) return store_error(rc, "reading the store", errbuf, errlen);
    struct verify_scan v = {.st = st,
                            .txn = txn,
                            .dim = m->dim,
                            .next_label = m->next_label,
                            .errbuf = errbuf,
                            .errlen = errlen};
    uint64_t next = 0, counted = 0;
    int end = 0;
    while (!rc && !end)
        rc = store_docs_scan(st, txn, &next, 4096, verify_doc, &v, &end);
    unsigned char key[STORE_KEY_MAX];
    size_t key_len = 0;
    uint64_t ids = 0;
    end = 0;
    while (!rc && !end)
        rc = store_ids_scan(st, txn, key, &key_len, 4096, count_id, &ids, &end);
    if (!rc) rc = store_doc_count(st, txn, &counted);
    store_read_end(st, txn);
    if (rc == SBERT_INDEX_ENOTFOUND)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EFORMAT,
                               "an id points at a document that is not there");
    if (rc) return rc < 0 ? rc : store_error(rc, "scanning the store", errbuf, errlen);
    if (ids != v.docs || counted != v.docs)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EFORMAT,
                               "%llu documents, %llu ids, %llu counted: they must agree",
                               (unsigned long long)v.docs, (unsigned long long)ids,
                               (unsigned long long)counted);
    out->documents = v.docs;
    out->passages = v.passages;
    return 0;
}

/* The snapshot, when there is one: every block against its checksum (without FAISS: sbertctl,
 * which verifies, stays free of it) and matched to the store. */
static int verify_snapshot(const char *dir, const struct store_meta *m,
                           struct sbert_index_verify_report *out, char *errbuf, size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/index.snap", dir);
    struct stat st;
    if (stat(path, &st) != 0) return 0; /* none: the vector index is rebuilt at open */
    struct vindex_snapshot_meta sm;
    char why[512] = "";
    if (vindex_snapshot_check(path, &sm, why, sizeof why))
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EFORMAT, "%s", why);
    if (strcmp(sm.spec, m->spec) != 0 || sm.dim != m->dim)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EFORMAT,
                               "%s is for \"%s\" dim %d, the store for \"%s\" dim %d", path,
                               sm.spec, sm.dim, m->spec, m->dim);
    if (sm.user_len != STORE_UUID_SIZE || memcmp(sm.user, m->uuid, STORE_UUID_SIZE) != 0)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EFORMAT, "%s belongs to another store",
                               path);
    if (sm.change_counter > m->change)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EFORMAT,
                               "%s covers change %llu, the store only reached %llu", path,
                               (unsigned long long)sm.change_counter,
                               (unsigned long long)m->change);
    if (sm.change_counter == m->change && sm.count != out->passages)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_EFORMAT,
                               "%s covers the store's last change with %llu vectors, the store "
                               "holds %llu passages",
                               path, (unsigned long long)sm.count,
                               (unsigned long long)out->passages);
    out->snapshot = 1;
    out->snapshot_change = sm.change_counter;
    out->snapshot_count = sm.count;
    return 0;
}

int sbert_index_verify(const char *dir, struct sbert_index_verify_report *out, char *errbuf,
                       size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!dir) return SBERT_INDEX_EINVAL;
    char path[4200];
    snprintf(path, sizeof path, "%s/store.mdb", dir);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return sbert_util_errf(errbuf, errlen, SBERT_INDEX_ENOTFOUND,
                               "%s: %s (not an sbertd store or backup)", path, strerror(errno));
    /* a store a daemon has open is not checked: its files are changing */
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int lock = open(path, O_RDONLY | O_CLOEXEC);
    if (lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        close(lock);
        return sbert_util_errf(
            errbuf, errlen, e == EWOULDBLOCK ? SBERT_INDEX_ELOCKED : SBERT_INDEX_EIO, "%s: %s",
            path, e == EWOULDBLOCK ? "a running sbertd has this store open" : strerror(e));
    }
    snprintf(path, sizeof path, "%s/store.mdb", dir);
    store *st;
    int rc = store_open(path, 0, 1, NULL, NULL, &st, errbuf, errlen);
    if (!rc) {
        struct store_meta m;
        MDB_txn *txn;
        rc = store_read_begin(st, &txn);
        if (!rc) {
            rc = store_meta_get(st, txn, &m, errbuf, errlen);
            store_read_end(st, txn);
            if (rc == SBERT_INDEX_ENOTFOUND)
                rc = sbert_util_errf(errbuf, errlen, SBERT_INDEX_EFORMAT,
                                     "%s holds no sbertd store (no meta record)", path);
        } else {
            rc = store_error(rc, "reading the store", errbuf, errlen);
        }
        if (!rc) {
            snprintf(out->model_name, sizeof out->model_name, "%s", m.model_name);
            snprintf(out->weights_sha256, sizeof out->weights_sha256, "%s", m.model_sha256);
            snprintf(out->spec, sizeof out->spec, "%s", m.spec);
            out->dim = m.dim;
            out->change = m.change;
            rc = verify_scan_all(st, out, &m, errbuf, errlen);
        }
        store_close(st);
        if (!rc) rc = verify_snapshot(dir, &m, out, errbuf, errlen);
    }
    if (lock >= 0) close(lock);
    return rc;
}
