/*
 * store_kw.c — the keyword index's LMDB side (store.h): the "kwpost" postings and the "keyword"
 * meta record, written in the transaction that writes or deletes the document, so the keyword
 * index and the documents can never disagree after a crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kw_terms.h"
#include "store_impl.h"

static const char KW_META_KEY[] = "keyword";

/* "keyword" meta record (store.h): u32 analyzer version, u32 zero, u64 documents, u64 terms in
 * them, u64 the store's change number it is current with, then the language's name. */
#define KW_HEADER 32

int store_kw_stats_get(store *s, MDB_txn *txn, struct store_kw_stats *st)
{
    memset(st, 0, sizeof *st);
    MDB_val k = {sizeof KW_META_KEY - 1, (void *)KW_META_KEY}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND) return SBERT_INDEX_ENOTFOUND;
    if (rc) return rc;
    const unsigned char *p = v.mv_data;
    if (v.mv_size < KW_HEADER || v.mv_size - KW_HEADER >= sizeof st->language)
        return SBERT_INDEX_EFORMAT;
    st->version = store_get_u32(p);
    st->docs = store_get_u64(p + 8);
    st->terms = store_get_u64(p + 16);
    st->change = store_get_u64(p + 24);
    memcpy(st->language, p + KW_HEADER, v.mv_size - KW_HEADER);
    st->language[v.mv_size - KW_HEADER] = '\0';
    return 0;
}

int store_kw_stats_put(store *s, MDB_txn *txn, const struct store_kw_stats *st)
{
    size_t ll = strlen(st->language);
    unsigned char buf[KW_HEADER + sizeof st->language];
    store_put_u32(buf, st->version);
    store_put_u32(buf + 4, 0);
    store_put_u64(buf + 8, st->docs);
    store_put_u64(buf + 16, st->terms);
    store_put_u64(buf + 24, st->change);
    memcpy(buf + KW_HEADER, st->language, ll);
    MDB_val k = {sizeof KW_META_KEY - 1, (void *)KW_META_KEY}, v = {KW_HEADER + ll, buf};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

/* The store's change number as its meta record holds it in txn (0 for a fresh environment). */
static int kw_store_change(store *s, MDB_txn *txn, uint64_t *change)
{
    struct store_meta m;
    int rc = store_meta_get(s, txn, &m, NULL, 0);
    *change = rc == 0 ? m.change : 0;
    return rc == SBERT_INDEX_ENOTFOUND ? 0 : rc;
}

int store_kw_note_change(store *s, MDB_txn *txn, uint64_t change)
{
    if (!s->kw) return 0;
    struct store_kw_stats st;
    int rc = store_kw_stats_get(s, txn, &st);
    /* no record, or a damaged one: the next open builds the index anyway */
    if (rc == SBERT_INDEX_ENOTFOUND || rc == SBERT_INDEX_EFORMAT) return 0;
    if (rc) return rc;
    st.change = change;
    return store_kw_stats_put(s, txn, &st);
}

int store_kw_complete(store *s, MDB_txn *txn)
{
    struct store_kw_stats st;
    int rc = store_kw_stats_get(s, txn, &st);
    if (!rc) rc = kw_store_change(s, txn, &st.change);
    if (rc) return rc;
    st.version = STORE_KW_VERSION;
    return store_kw_stats_put(s, txn, &st);
}

/* A posting: u64 label big-endian (so a term's postings sort by label), u32 tf, u32 document
 * length in terms, both little-endian. */
static void kw_posting(unsigned char *p, uint64_t label, uint32_t tf, uint32_t dl)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(label >> (56 - 8 * i));
    store_put_u32(p + 8, tf);
    store_put_u32(p + 12, dl);
}

/* Applies one document's terms: adds its postings (add = 1) or removes them (add = 0), and
 * updates the collection's statistics. */
static int kw_apply(store *s, MDB_txn *txn, uint64_t label, const char *text, size_t len, int add)
{
    struct store_kw_stats st;
    int rc = store_kw_stats_get(s, txn, &st);
    if (rc) return rc == SBERT_INDEX_ENOTFOUND ? SBERT_INDEX_EFORMAT : rc;
    /* called inside a write transaction, which the caller serialises: the store's analyzer is
     * used by one thread at a time */
    struct kw_terms k;
    if ((rc = kw_terms_collect(s->kw, text, len, 0, &k))) {
        kw_terms_free(&k);
        return rc;
    }
    uint32_t dl = k.n > UINT32_MAX ? UINT32_MAX : (uint32_t)k.n;
    MDB_cursor *c = NULL;
    if (!add && (rc = mdb_cursor_open(txn, s->kwpost, &c))) goto done;
    for (size_t i = 0; i < k.n;) {
        size_t j = i + 1;
        while (j < k.n && kw_terms_cmp(&k, &k.t[j], k.buf + k.t[i].at, k.t[i].len) == 0)
            j++;
        unsigned char post[STORE_KW_POSTING];
        kw_posting(post, label, (uint32_t)(j - i), dl);
        MDB_val key = {k.t[i].len, k.buf + k.t[i].at}, val = {sizeof post, post};
        if (add)
            rc = mdb_put(txn, s->kwpost, &key, &val, 0);
        else {
            /* the label's posting, whatever tf and length it was written with */
            memset(post + 8, 0, 8);
            rc = mdb_cursor_get(c, &key, &val, MDB_GET_BOTH_RANGE);
            if (rc == 0 && memcmp(val.mv_data, post, 8) == 0)
                rc = mdb_cursor_del(c, 0);
            else if (rc == 0 || rc == MDB_NOTFOUND)
                rc = 0; /* written by another analyzer: nothing to remove */
        }
        if (rc) goto done;
        i = j;
    }
    if (add) {
        st.docs++;
        st.terms += dl;
    } else {
        st.docs -= st.docs ? 1 : 0;
        st.terms -= st.terms >= dl ? dl : st.terms;
    }
    rc = store_kw_stats_put(s, txn, &st);
done:
    if (c) mdb_cursor_close(c);
    kw_terms_free(&k);
    return rc;
}

int store_kw_add(store *s, MDB_txn *txn, uint64_t label, const char *text, size_t len)
{
    return s->kw ? kw_apply(s, txn, label, text, len, 1) : 0;
}

int store_kw_del(store *s, MDB_txn *txn, uint64_t label, const char *text, size_t len)
{
    return s->kw ? kw_apply(s, txn, label, text, len, 0) : 0;
}

int store_kw_reset(store *s, MDB_txn *txn, uint32_t version)
{
    if (!s->kw) return 0;
    int rc = mdb_drop(txn, s->kwpost, 0);
    if (rc) return rc;
    struct store_kw_stats st = {.version = version};
    if ((rc = kw_store_change(s, txn, &st.change))) return rc;
    snprintf(st.language, sizeof st.language, "%s", sbert_analyzer_language(s->kw));
    return store_kw_stats_put(s, txn, &st);
}

/* Hands fn the postings of one page. */
static int kw_page(const MDB_val *val, size_t df, store_kw_fn fn, void *user)
{
    const unsigned char *p = val->mv_data;
    int rc = 0;
    for (size_t i = 0; i + STORE_KW_POSTING <= val->mv_size && !rc; i += STORE_KW_POSTING) {
        uint64_t label = 0;
        for (int b = 0; b < 8; b++)
            label = label << 8 | p[i + b];
        rc = fn(label, store_get_u32(p + i + 8), store_get_u32(p + i + 12), (uint64_t)df, user);
    }
    return rc;
}

int store_kw_postings(store *s, MDB_txn *txn, const char *term, size_t len, store_kw_fn fn,
                      void *user)
{
    if (len == 0 || len > STORE_KW_MAX_TERM) return 0;
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->kwpost, &c);
    if (rc) return rc;
    MDB_val key = {len, (void *)term}, val;
    size_t df = 0;
    rc = mdb_cursor_get(c, &key, &val, MDB_SET);
    if (!rc) rc = mdb_cursor_count(c, &df);
    /* A term of one document has a plain node, not a duplicate tree (MDB_GET_MULTIPLE would
     * leave val as it is): its posting is MDB_SET's value. Else the postings come a page at a
     * time (MDB_DUPFIXED), in label order. */
    if (!rc && df == 1)
        rc = kw_page(&val, df, fn, user);
    else
        for (MDB_cursor_op op = MDB_GET_MULTIPLE; !rc; op = MDB_NEXT_MULTIPLE)
            if (!(rc = mdb_cursor_get(c, &key, &val, op))) rc = kw_page(&val, df, fn, user);
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_kw_drop(store *s, MDB_txn *txn)
{
    int rc = mdb_drop(txn, s->kwpost, 0);
    if (rc) return rc;
    MDB_val k = {sizeof KW_META_KEY - 1, (void *)KW_META_KEY};
    rc = mdb_del(txn, s->meta, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_kw_size(store *s, MDB_txn *txn, uint64_t *postings, uint64_t *bytes)
{
    MDB_stat ms;
    int rc = mdb_stat(txn, s->kwpost, &ms);
    if (rc) return rc;
    *postings = ms.ms_entries;
    *bytes =
        (uint64_t)ms.ms_psize * (ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages) +
        STORE_KW_POSTING * (uint64_t)ms.ms_entries;
    return 0;
}

int store_kw_setup(store *s, const char *language)
{
    if (language && strcmp(language, "off") == 0) {
        sbert_analyzer_free(s->kw);
        s->kw = NULL;
        return 0;
    }
    sbert_analyzer *a;
    int rc = sbert_analyzer_new(language, &a);
    if (rc) return rc == SBERT_TEXT_ELANGUAGE ? SBERT_INDEX_EINVAL : SBERT_INDEX_ENOMEM;
    sbert_analyzer_free(s->kw);
    s->kw = a;
    return 0;
}

const char *store_kw_language(const store *s)
{
    return s->kw ? sbert_analyzer_language(s->kw) : NULL;
}
