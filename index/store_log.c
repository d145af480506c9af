/*
 * store_log.c — the store's change log, the "log" database (store.h): appended in each write
 * transaction, scanned to replay it into the vector index, trimmed after a snapshot.
 */
#include <string.h>

#include "store_impl.h"

int store_log_append(store *s, MDB_txn *txn, uint64_t seq, uint64_t label, int op, uint32_t n)
{
    size_t key = (size_t)seq;
    unsigned char v[13];
    store_put_u64(v, label);
    v[8] = (unsigned char)op;
    store_put_u32(v + 9, n);
    /* a one-passage document keeps the 9-byte entry of stores from before passages */
    MDB_val k = {sizeof key, &key}, d = {n == 1 ? 9 : sizeof v, v};
    return mdb_put(txn, s->log, &k, &d, MDB_APPEND);
}

static int log_decode(const MDB_val *v, uint64_t *label, int *op, uint32_t *n)
{
    if (v->mv_size != 9 && v->mv_size != 13) return SBERT_INDEX_EFORMAT;
    *label = store_get_u64(v->mv_data);
    *op = ((const unsigned char *)v->mv_data)[8];
    *n = v->mv_size == 13 ? store_get_u32((const unsigned char *)v->mv_data + 9) : 1;
    return (*op == STORE_OP_PUT || *op == STORE_OP_DELETE) && *n >= 1 ? 0 : SBERT_INDEX_EFORMAT;
}

int store_log_trim(store *s, MDB_txn *txn, uint64_t upto)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->log, &c);
    if (rc) return rc;
    MDB_val k, d;
    while ((rc = mdb_cursor_get(c, &k, &d, MDB_FIRST)) == 0) {
        size_t seq;
        memcpy(&seq, k.mv_data, sizeof seq);
        if ((uint64_t)seq > upto) break;
        if ((rc = mdb_cursor_del(c, 0))) break;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

int store_log_scan(store *s, MDB_txn *txn, uint64_t first, store_log_fn fn, void *user)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->log, &c);
    if (rc) return rc;
    size_t seq = (size_t)first;
    MDB_val k = {sizeof seq, &seq}, d;
    rc = mdb_cursor_get(c, &k, &d, MDB_SET);
    if (rc == MDB_NOTFOUND) rc = SBERT_INDEX_ENOTFOUND;
    while (rc == 0) {
        uint64_t label;
        int op;
        uint32_t n;
        size_t at;
        memcpy(&at, k.mv_data, sizeof at);
        if ((rc = log_decode(&d, &label, &op, &n)) || (rc = fn((uint64_t)at, label, op, n, user)))
            break;
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}
