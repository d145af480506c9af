/*
 * qfilter.c — the metadata filter as a vector search's keep callback (internal.h): each FAISS
 * thread that calls it reads the store through a read transaction of its own, ended with the
 * query.
 */
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "internal.h"

static atomic_uint_fast64_t query_gen = 1;

/* The calling thread's transaction and the query it belongs to: a thread that served an earlier
 * query finds another generation and opens a fresh one. */
static _Thread_local struct {
    uint64_t gen;
    MDB_txn *txn;
} tls_txn;

/* Opens the calling thread's transaction for q and registers it for qfilter_end(). Returns 0 or
 * an SBERT_INDEX_E* code. */
static int qfilter_txn(struct qfilter *q)
{
    MDB_txn *t;
    int rc = store_read_begin_nolock(q->idx->st, &t);
    if (rc) return store_error(rc, "filter read transaction", NULL, 0);
    pthread_mutex_lock(&q->mu);
    if (q->n_txns == q->cap_txns) {
        size_t cap = q->cap_txns ? 2 * q->cap_txns : 16;
        MDB_txn **nt = realloc(q->txns, cap * sizeof *nt);
        if (!nt) {
            pthread_mutex_unlock(&q->mu);
            store_read_abort(t);
            return SBERT_INDEX_ENOMEM;
        }
        q->txns = nt;
        q->cap_txns = cap;
    }
    q->txns[q->n_txns++] = t;
    pthread_mutex_unlock(&q->mu);
    tls_txn.gen = q->gen;
    tls_txn.txn = t;
    return 0;
}

/* A document that cannot be read or matched fails the query (q->failed) rather than being left
 * out of its results unnoticed. */
int qfilter_keep(int64_t label, void *user)
{
    struct qfilter *q = user;
    int rc;
    if (tls_txn.gen != q->gen && (rc = qfilter_txn(q))) {
        atomic_store(&q->failed, rc);
        return 0;
    }
    struct store_record r;
    uint64_t doc;
    rc = store_record_owner(q->idx->st, tls_txn.txn, (uint64_t)label, &doc, &r);
    if (rc == SBERT_INDEX_ENOTFOUND) return 0; /* deleted since the search began */
    if (rc) {
        atomic_store(&q->failed, store_error(rc, "filter read", NULL, 0));
        return 0;
    }
    rc = filter_match_doc(q->filter, r.meta, r.meta ? r.meta_len : 0, r.text, r.text_len);
    if (rc == SBERT_INDEX_ENOMEM) atomic_store(&q->failed, rc);
    return rc == 1;
}

void qfilter_init(struct qfilter *q, sbert_index *idx, const sbert_index_filter *f)
{
    memset(q, 0, sizeof *q);
    q->idx = idx;
    q->filter = f;
    q->gen = atomic_fetch_add(&query_gen, 1);
    pthread_mutex_init(&q->mu, NULL);
}

void qfilter_end(struct qfilter *q)
{
    for (size_t i = 0; i < q->n_txns; i++)
        store_read_abort(q->txns[i]);
    free(q->txns);
    pthread_mutex_destroy(&q->mu);
}
