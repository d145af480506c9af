/*
 * store_docs.c — the store's documents (store.h): the "ids" database and its key layout, the
 * "docs" database and its record encoding, and the chunked scans of both.
 */
#include <stdint.h>
#include <string.h>

#include "store_impl.h"

/* 128-bit hash of a long id: two independent 64-bit FNV-1a/murmur-finalised lanes. Only ids
 * longer than LMDB's key limit use it, and a lookup always checks the record's full id. */
static void id_hash(const char *id, size_t len, unsigned char out[16])
{
    uint64_t a = 0xcbf29ce484222325ull, b = 0x84222325cbf29ce4ull;
    for (size_t i = 0; i < len; i++) {
        a = (a ^ (unsigned char)id[i]) * 0x100000001b3ull;
        b = (b ^ (unsigned char)id[i]) * 0x9e3779b97f4a7c15ull;
        b ^= b >> 29;
    }
    for (int r = 0; r < 2; r++) {
        a ^= a >> 33;
        a *= 0xff51afd7ed558ccdull;
        b ^= b >> 33;
        b *= 0xc4ceb9fe1a85ec53ull;
    }
    store_put_u64(out, a);
    store_put_u64(out + 8, b);
}

size_t store_id_key(const store *s, const char *id, size_t id_len, unsigned char *key)
{
    size_t max = (size_t)s->max_key;
    if (id_len <= max) {
        memcpy(key, id, id_len);
        return id_len;
    }
    memcpy(key, id, max - 16);
    id_hash(id, id_len, key + max - 16);
    return max;
}

int store_id_lookup(store *s, MDB_txn *txn, const char *id, size_t id_len, uint64_t *label)
{
    unsigned char key[STORE_KEY_MAX];
    MDB_val k = {store_id_key(s, id, id_len, key), key}, d;
    int rc = mdb_get(txn, s->ids, &k, &d);
    if (rc == MDB_NOTFOUND) return SBERT_INDEX_ENOTFOUND;
    if (rc) return rc;
    if (d.mv_size != 8) return SBERT_INDEX_EFORMAT;
    *label = store_get_u64(d.mv_data);
    return 0;
}

/* The encoded size of a record (0 when n passages make it too large to address). */
static size_t record_size(size_t dim, size_t n, int spans, size_t id_len, size_t text_len,
                          size_t meta_len)
{
    if (!spans) return STORE_RECORD_HEADER + dim * sizeof(float) + id_len + text_len + meta_len;
    if (n > (SIZE_MAX / 2) / (dim * sizeof(float) + 8) - 1) return 0;
    return STORE_RECORD_HEADER_PASSAGES + dim * sizeof(float) + n * (dim * sizeof(float) + 8) +
           id_len + text_len + meta_len;
}

static void record_encode(unsigned char *buf, const float *doc_vector, const float *vectors,
                          size_t dim, size_t n, const uint32_t *spans, const char *id,
                          size_t id_len, const char *text, size_t text_len, const char *meta,
                          size_t meta_len)
{
    buf[0] = spans ? STORE_RECORD_VERSION_PASSAGES : STORE_RECORD_VERSION;
    buf[1] = meta ? 1 : 0;
    buf[2] = (unsigned char)id_len;
    buf[3] = (unsigned char)(id_len >> 8);
    store_put_u32(buf + 4, (uint32_t)text_len);
    store_put_u32(buf + 8, (uint32_t)meta_len);
    store_put_u32(buf + 12, (uint32_t)dim);
    unsigned char *p = buf + STORE_RECORD_HEADER;
    if (spans) {
        store_put_u32(buf + 16, (uint32_t)n);
        store_put_u32(buf + 20, 0);
        p = buf + STORE_RECORD_HEADER_PASSAGES;
        memcpy(p, doc_vector, dim * sizeof(float));
        p += dim * sizeof(float);
    }
    memcpy(p, vectors, n * dim * sizeof(float));
    p += n * dim * sizeof(float);
    if (spans)
        for (size_t i = 0; i < 2 * n; i++, p += 4)
            store_put_u32(p, spans[i]);
    memcpy(p, id, id_len);
    p += id_len;
    if (text_len) memcpy(p, text, text_len);
    p += text_len;
    if (meta_len) memcpy(p, meta, meta_len);
}

static int record_decode(const MDB_val *v, struct store_record *r)
{
    const unsigned char *b = v->mv_data;
    if (v->mv_size < STORE_RECORD_HEADER ||
        (b[0] != STORE_RECORD_VERSION && b[0] != STORE_RECORD_VERSION_PASSAGES))
        return SBERT_INDEX_EFORMAT;
    int spans = b[0] == STORE_RECORD_VERSION_PASSAGES;
    if (spans && v->mv_size < STORE_RECORD_HEADER_PASSAGES) return SBERT_INDEX_EFORMAT;
    size_t id_len = (size_t)b[2] | (size_t)b[3] << 8;
    size_t text_len = store_get_u32(b + 4), meta_len = store_get_u32(b + 8),
           dim = store_get_u32(b + 12), n = spans ? store_get_u32(b + 16) : 1;
    if (n == 0 || dim == 0) return SBERT_INDEX_EFORMAT;
    size_t size = record_size(dim, n, spans, id_len, text_len, meta_len);
    if (size == 0 || size != v->mv_size) return SBERT_INDEX_EFORMAT;
    const unsigned char *p = b + (spans ? STORE_RECORD_HEADER_PASSAGES : STORE_RECORD_HEADER);
    r->dim = (uint32_t)dim;
    r->n_passages = (uint32_t)n;
    r->doc_vector = (const float *)(const void *)p;
    if (spans) p += dim * sizeof(float);
    r->vector = (const float *)(const void *)p;
    p += n * dim * sizeof(float);
    r->spans = NULL;
    if (spans) {
        r->spans = p;
        for (size_t i = 0; i < n; i++)
            if (store_get_u32(p + 8 * i) > store_get_u32(p + 8 * i + 4) ||
                store_get_u32(p + 8 * i + 4) > text_len)
                return SBERT_INDEX_EFORMAT;
        p += 8 * n;
    }
    r->id = (const char *)p;
    r->id_len = id_len;
    p += id_len;
    r->text = (const char *)p;
    r->text_len = text_len;
    p += text_len;
    r->meta = (b[1] & 1) ? (const char *)p : NULL;
    r->meta_len = meta_len;
    return 0;
}

void store_record_span(const struct store_record *r, size_t i, size_t *start, size_t *end)
{
    if (!r->spans) {
        *start = 0;
        *end = r->text_len;
        return;
    }
    *start = store_get_u32(r->spans + 8 * i);
    *end = store_get_u32(r->spans + 8 * i + 4);
}

int store_record_get(store *s, MDB_txn *txn, uint64_t label, struct store_record *r)
{
    size_t key = (size_t)label;
    MDB_val k = {sizeof key, &key}, d;
    int rc = mdb_get(txn, s->docs, &k, &d);
    if (rc == MDB_NOTFOUND) return SBERT_INDEX_ENOTFOUND;
    if (rc) return rc;
    return record_decode(&d, r);
}

int store_record_owner(store *s, MDB_txn *txn, uint64_t label, uint64_t *doc,
                       struct store_record *r)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->docs, &c);
    if (rc) return rc;
    size_t key = (size_t)label;
    MDB_val k = {sizeof key, &key}, d;
    rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    size_t at = 0;
    if (rc == 0) memcpy(&at, k.mv_data, sizeof at);
    if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(c, &k, &d, MDB_LAST);
    else if (rc == 0 && at != (size_t)label)
        rc = mdb_cursor_get(c, &k, &d, MDB_PREV);
    if (rc == 0) {
        memcpy(&at, k.mv_data, sizeof at);
        rc = record_decode(&d, r);
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) return SBERT_INDEX_ENOTFOUND;
    if (rc) return rc;
    if ((uint64_t)at > label || label - (uint64_t)at >= r->n_passages) return SBERT_INDEX_ENOTFOUND;
    *doc = (uint64_t)at;
    return 0;
}

int store_id_del(store *s, MDB_txn *txn, const char *id, size_t id_len)
{
    unsigned char key[STORE_KEY_MAX];
    MDB_val k = {store_id_key(s, id, id_len, key), key};
    return mdb_del(txn, s->ids, &k, NULL);
}

int store_record_del(store *s, MDB_txn *txn, uint64_t label, uint32_t *n_passages)
{
    size_t key = (size_t)label;
    MDB_val k = {sizeof key, &key};
    struct store_record r;
    int rc = store_record_get(s, txn, label, &r);
    if (rc == SBERT_INDEX_ENOTFOUND) return MDB_NOTFOUND;
    if (rc) return rc;
    if (n_passages) *n_passages = r.n_passages;
    if (s->kw && (rc = store_kw_del(s, txn, label, r.text, r.text_len))) return rc;
    return mdb_del(txn, s->docs, &k, NULL);
}

int store_doc_put(store *s, MDB_txn *txn, uint64_t label, const float *doc_vector,
                  const float *vectors, size_t dim, size_t n_passages, const uint32_t *spans,
                  const char *id, size_t id_len, const char *text, size_t text_len,
                  const char *meta, size_t meta_len)
{
    size_t key = (size_t)label;
    MDB_val k = {sizeof key, &key};
    MDB_val v = {record_size(dim, n_passages, spans != NULL, id_len, text_len, meta_len), NULL};
    if (v.mv_size == 0 || (!spans && n_passages != 1) || !spans != !doc_vector)
        return SBERT_INDEX_EINVAL;
    int rc = mdb_put(txn, s->docs, &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc) return rc;
    record_encode(v.mv_data, doc_vector, vectors, dim, n_passages, spans, id, id_len, text,
                  text_len, meta, meta_len);
    if ((rc = store_kw_add(s, txn, label, text, text_len))) return rc;
    unsigned char ik[STORE_KEY_MAX], lv[8];
    store_put_u64(lv, label);
    MDB_val kk = {store_id_key(s, id, id_len, ik), ik}, vv = {8, lv};
    return mdb_put(txn, s->ids, &kk, &vv, 0);
}

int store_doc_count(store *s, MDB_txn *txn, uint64_t *n)
{
    MDB_stat st;
    int rc = mdb_stat(txn, s->docs, &st);
    if (rc == 0) *n = st.ms_entries;
    return rc;
}

/* ---- scans ----------------------------------------------------------------------------------- */

int store_docs_scan(store *s, MDB_txn *txn, uint64_t *next, size_t max, store_doc_fn fn, void *user,
                    int *end)
{
    *end = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->docs, &c);
    if (rc) return rc;
    size_t start = (size_t)*next, n = 0;
    int stop = 0;
    MDB_val k = {sizeof start, &start}, d;
    rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
    /* The cursor steps past each document handed over, also the last of a chunk, so that *end
     * tells a chunk that ended the scan. */
    while (rc == 0 && n < max && !stop) {
        struct store_record r;
        size_t label;
        if ((rc = record_decode(&d, &r))) break;
        memcpy(&label, k.mv_data, sizeof label);
        n++;
        if ((rc = fn((uint64_t)label, &r, user)) < 0) break;
        *next = (uint64_t)label + 1;
        stop = rc == STORE_SCAN_STOP;
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        *end = 1;
        rc = 0;
    }
    return rc;
}

int store_ids_scan(store *s, MDB_txn *txn, unsigned char *key, size_t *key_len, size_t max,
                   store_doc_fn fn, void *user, int *end)
{
    *end = 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->ids, &c);
    if (rc) return rc;
    MDB_val k = {*key_len, key}, d;
    if (*key_len) {
        rc = mdb_cursor_get(c, &k, &d, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == *key_len && memcmp(k.mv_data, key, *key_len) == 0)
            rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    } else
        rc = mdb_cursor_get(c, &k, &d, MDB_FIRST);
    int stop = 0;
    for (size_t n = 0; rc == 0 && n < max && !stop; n++) {
        uint64_t label = store_get_u64(d.mv_data);
        struct store_record r;
        if ((rc = store_record_get(s, txn, label, &r))) break;
        if ((rc = fn(label, &r, user)) < 0) break;
        memcpy(key, k.mv_data, k.mv_size);
        *key_len = k.mv_size;
        stop = rc == STORE_SCAN_STOP;
        rc = mdb_cursor_get(c, &k, &d, MDB_NEXT);
    }
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        *end = 1;
        rc = 0;
    }
    return rc;
}
