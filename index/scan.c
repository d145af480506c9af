/*
 * scan.c — the reads of sbert_index.h that walk the documents rather than look them up: a count
 * with a filter, and the pages of a list. Both read records in place (no copy of a document the
 * filter refuses) and hold swap shared only per read transaction (internal.h).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "internal.h"

/* Documents examined per read transaction of a count. */
#define COUNT_CHUNK 4096

/* 1 when f (NULL: all) accepts the record, 0 when not, or a negative code. */
static int scan_match(const sbert_index_filter *f, const struct store_record *r)
{
    if (!f) return 1;
    int m = filter_match_doc(f, r->meta, r->meta ? r->meta_len : 0, r->text, r->text_len);
    /* metadata that is not an object is a damaged record: a filter sees it as empty elsewhere
     * (qfilter's keep), so it simply does not match here either */
    return m == SBERT_INDEX_EMETADATA ? 0 : m;
}

/* ---- count ----------------------------------------------------------------------------------- */

struct count_ctx {
    const sbert_index_filter *filter;
    uint64_t n;
};

static int count_take(uint64_t label, const struct store_record *r, void *user)
{
    (void)label;
    struct count_ctx *c = user;
    int m = scan_match(c->filter, r);
    if (m < 0) return m;
    c->n += (uint64_t)m;
    return 0;
}

int sbert_index_count_filter(sbert_index *idx, const sbert_index_filter *filter, uint64_t *count)
{
    if (!filter) return sbert_index_count(idx, count);
    if (!idx || !count) return SBERT_INDEX_EINVAL;
    struct count_ctx c = {filter, 0};
    uint64_t next = 0;
    int rc = 0, end = 0;
    while (!rc && !end) {
        if ((rc = index_read_enter(idx))) break;
        MDB_txn *txn;
        if ((rc = store_read_begin(idx->st, &txn)) == 0) {
            rc = store_docs_scan(idx->st, txn, &next, COUNT_CHUNK, count_take, &c, &end);
            store_read_end(idx->st, txn);
        }
        pthread_rwlock_unlock(&idx->swap);
        if (rc && rc != SBERT_INDEX_ENOMEM) rc = store_error(rc, "count", NULL, 0);
    }
    if (!rc) *count = c.n;
    return rc;
}

/* ---- list ------------------------------------------------------------------------------------ */

struct page_ctx {
    const struct sbert_index_list_params *p;
    struct sbert_index_results *res; /* docs has p->limit entries */
    size_t scanned, bytes, max_bytes;
    int full; /* stopped before a document: more remain whatever the scan says */
    char last[SBERT_INDEX_ID_MAX];
    size_t last_len; /* the last document consumed (examined and taken or refused); 0: none */
};

static int page_take(uint64_t label, const struct store_record *r, void *user)
{
    (void)label;
    struct page_ctx *c = user;
    int m = scan_match(c->p->filter, r);
    if (m < 0) return m;
    if (m) {
        size_t bytes = r->id_len;
        if (c->p->include & SBERT_INDEX_INCLUDE_TEXT) bytes += r->text_len;
        if ((c->p->include & SBERT_INDEX_INCLUDE_METADATA) && r->meta) bytes += r->meta_len;
        if (c->p->include & SBERT_INDEX_INCLUDE_VECTOR) bytes += (size_t)r->dim * sizeof(float);
        if (c->bytes + bytes > c->max_bytes) {
            c->full = 1;
            return c->res->n ? STORE_SCAN_STOP : SBERT_INDEX_ETOOBIG;
        }
        c->bytes += bytes;
        struct sbert_index_doc *d = &c->res->docs[c->res->n++];
        int rc = index_doc_fill(d, r, c->p->include);
        if (rc) return rc;
    }
    if (r->id_len > sizeof c->last) return SBERT_INDEX_EFORMAT;
    memcpy(c->last, r->id, r->id_len);
    c->last_len = r->id_len;
    c->scanned++;
    return c->res->n == c->p->limit || c->scanned == c->p->max_scan ? STORE_SCAN_STOP : 0;
}

int sbert_index_list(sbert_index *idx, const struct sbert_index_list_params *p,
                     struct sbert_index_results **out, char **next, size_t *next_len)
{
    if (out) *out = NULL;
    if (next) *next = NULL;
    if (next_len) *next_len = 0;
    if (!idx || !p || !out || !next || !next_len || p->limit == 0 || p->max_scan < p->limit ||
        (p->after_len && !p->after) || p->after_len > SBERT_INDEX_ID_MAX)
        return SBERT_INDEX_EINVAL;
    struct page_ctx *c = calloc(1, sizeof *c);
    if (!c) return SBERT_INDEX_ENOMEM;
    c->p = p;
    c->max_bytes = p->max_bytes ? p->max_bytes : SIZE_MAX;
    int rc = index_read_enter(idx);
    if (rc) {
        free(c);
        return rc;
    }
    MDB_txn *txn = NULL;
    unsigned char key[STORE_KEY_MAX];
    size_t key_len =
        p->after && p->after_len ? store_id_key(idx->st, p->after, p->after_len, key) : 0;
    int end = 0;
    c->res = calloc(1, sizeof *c->res);
    if (!c->res || !(c->res->docs = calloc(p->limit, sizeof *c->res->docs)))
        rc = SBERT_INDEX_ENOMEM;
    else {
        c->res->dim = idx->meta.dim;
        if ((rc = store_read_begin(idx->st, &txn)) == 0) {
            rc = store_ids_scan(idx->st, txn, key, &key_len, p->max_scan, page_take, c, &end);
            store_read_end(idx->st, txn);
        }
    }
    pthread_rwlock_unlock(&idx->swap);
    if (rc && rc != SBERT_INDEX_ENOMEM && rc != SBERT_INDEX_ETOOBIG)
        rc = store_error(rc, "list", NULL, 0);
    if (!rc && (c->full || !end) && c->last_len) {
        if ((*next = index_dup_bytes(c->last, c->last_len)))
            *next_len = c->last_len;
        else
            rc = SBERT_INDEX_ENOMEM;
    }
    if (rc) {
        sbert_index_results_free(c->res);
        free(*next);
        *next = NULL;
        *next_len = 0;
    } else
        *out = c->res;
    free(c);
    return rc;
}
