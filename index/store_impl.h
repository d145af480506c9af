/*
 * store_impl.h — private to the store files (store.c, store_meta.c, store_docs.c, store_log.c,
 * store_reqs.c): the store handle's fields and the little-endian codecs of the formats in
 * store.h. The rest of index/ includes store.h only.
 */
#ifndef SBERT_INDEX_STORE_IMPL_H
#define SBERT_INDEX_STORE_IMPL_H

#include <lmdb.h>
#include <pthread.h>

#include "sbert_text.h"
#include "store.h"

struct store {
    MDB_env *env;
    MDB_dbi meta, ids, docs, log, reqs, reqseq, kwpost;
    sbert_analyzer *kw; /* the keyword index's analyzer (store_kw_setup); NULL: no keyword index
                           is kept by this handle */
    pthread_rwlock_t lock;
    size_t map_size;
    int unmapped; /* LMDB error that left the environment without a map; then every call fails */
    int max_key;
    char path[4096];
    sbert_index_log_fn logfn;
    void *log_user;
};

static inline void store_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint64_t store_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static inline void store_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t store_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

#endif
