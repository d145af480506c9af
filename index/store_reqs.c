/*
 * store_reqs.c — the store's remembered writes, the "reqs" and "reqseq" databases (store.h): the
 * reply of a write sent with a req_id, kept in a bounded window for retries.
 */
#include <string.h>

#include "store_impl.h"

static int req_decode(const MDB_val *v, uint64_t *seq, int64_t *t, uint64_t *hash)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < STORE_REQ_HEADER || p[0] != STORE_REQ_VERSION) return SBERT_INDEX_EFORMAT;
    *seq = store_get_u64(p + 8);
    *t = (int64_t)store_get_u64(p + 16);
    *hash = store_get_u64(p + 24);
    return 0;
}

/* Drops the oldest entries until at most keep remain and the oldest is younger than the window.
 * A "reqseq" entry whose "reqs" entry was replaced since (another sequence) only goes itself. */
static int req_prune(store *s, MDB_txn *txn, int64_t now, uint64_t keep, int64_t keep_s)
{
    MDB_stat st;
    int rc = mdb_stat(txn, s->reqseq, &st);
    if (rc) return rc;
    uint64_t n = st.ms_entries;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, s->reqseq, &c))) return rc;
    MDB_val k, d;
    while ((rc = mdb_cursor_get(c, &k, &d, MDB_FIRST)) == 0) {
        size_t seq;
        memcpy(&seq, k.mv_data, sizeof seq);
        MDB_val rk = d, rv;
        uint64_t rseq = 0, hash;
        int64_t t = now;
        int g = mdb_get(txn, s->reqs, &rk, &rv);
        if (g == 0 && req_decode(&rv, &rseq, &t, &hash))
            t = 0; /* undecodable: prune it */
        else if (g && g != MDB_NOTFOUND) {
            rc = g;
            break;
        }
        int current = g == 0 && rseq == (uint64_t)seq;
        if (current && n <= keep && now - t < keep_s) break;
        if (current && (rc = mdb_del(txn, s->reqs, &rk, NULL))) break;
        if ((rc = mdb_cursor_del(c, 0))) break;
        n--;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

int store_req_put(store *s, MDB_txn *txn, const char *req_id, size_t len, uint64_t hash,
                  const char *reply, size_t reply_len, int64_t now, uint64_t keep, int64_t keep_s)
{
    /* the next sequence: one past the newest */
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->reqseq, &c);
    if (rc) return rc;
    MDB_val k, d;
    size_t seq = 1;
    rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
    mdb_cursor_close(c);
    if (rc == 0) {
        memcpy(&seq, k.mv_data, sizeof seq);
        seq++;
    } else if (rc != MDB_NOTFOUND)
        return rc;
    MDB_val rk = {len, (void *)req_id}, rv = {STORE_REQ_HEADER + reply_len, NULL};
    if ((rc = mdb_put(txn, s->reqs, &rk, &rv, MDB_RESERVE))) return rc;
    unsigned char *p = rv.mv_data;
    memset(p, 0, STORE_REQ_HEADER);
    p[0] = STORE_REQ_VERSION;
    store_put_u64(p + 8, seq);
    store_put_u64(p + 16, (uint64_t)now);
    store_put_u64(p + 24, hash);
    memcpy(p + STORE_REQ_HEADER, reply, reply_len);
    MDB_val sk = {sizeof seq, &seq}, sv = {len, (void *)req_id};
    if ((rc = mdb_put(txn, s->reqseq, &sk, &sv, MDB_APPEND))) return rc;
    return req_prune(s, txn, now, keep, keep_s);
}

int store_req_get(store *s, MDB_txn *txn, const char *req_id, size_t len, int64_t now,
                  int64_t keep_s, uint64_t *hash, const char **reply, size_t *reply_len)
{
    MDB_val k = {len, (void *)req_id}, v;
    int rc = mdb_get(txn, s->reqs, &k, &v);
    if (rc == MDB_NOTFOUND) return SBERT_INDEX_ENOTFOUND;
    if (rc) return rc;
    uint64_t seq;
    int64_t t;
    if ((rc = req_decode(&v, &seq, &t, hash))) return rc;
    if (now - t >= keep_s) return SBERT_INDEX_ENOTFOUND;
    *reply = (const char *)v.mv_data + STORE_REQ_HEADER;
    *reply_len = v.mv_size - STORE_REQ_HEADER;
    return 0;
}
