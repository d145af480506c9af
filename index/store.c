/*
 * store.c — the LMDB side of the document store: environment, map growth, meta record, id map,
 * record encoding, change log and remembered writes (formats in store.h).
 */
#define _GNU_SOURCE
#include "store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

/* Readers: query threads plus FAISS's threads evaluating filters, each with its own read
 * transaction (MDB_NOTLS), plus iterators. */
#define STORE_MAX_READERS 1024

int store_error(int rc, const char *what, char *errbuf, size_t errlen)
{
    int code;
    /* EFBIG (a file size limit) is a full disk for the caller: nothing more fits. */
    if (rc == ENOSPC || rc == EDQUOT || rc == EFBIG)
        code = SBERT_INDEX_ENOSPC;
    else if (rc == ENOMEM)
        code = SBERT_INDEX_ENOMEM;
    else if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH || rc == MDB_CORRUPTED ||
             rc == MDB_PAGE_NOTFOUND || rc == MDB_INCOMPATIBLE || rc == MDB_BAD_VALSIZE)
        code = rc == MDB_BAD_VALSIZE ? SBERT_INDEX_EINVAL : SBERT_INDEX_EFORMAT;
    else if (rc < 0 && rc > -100)
        return rc; /* already one of ours */
    else
        code = SBERT_INDEX_EIO;
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s: %s", what, mdb_strerror(rc));
    return code;
}

static void slog(store *s, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void slog(store *s, int level, const char *fmt, ...)
{
    if (!s->logfn)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    s->logfn(level, msg, s->log_user);
}

int store_open(const char *path, size_t map_size, int nosync, sbert_index_log_fn logfn,
               void *log_user, store **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s)
        return SBERT_INDEX_ENOMEM;
    s->logfn = logfn;
    s->log_user = log_user;
    snprintf(s->path, sizeof s->path, "%s", path);
    /* Writer-preferring, so map growth is not starved by a stream of readers; no thread takes
     * it shared twice. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    int lrc = pthread_rwlock_init(&s->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    if (lrc) {
        free(s);
        return SBERT_INDEX_ENOMEM;
    }
    struct stat st;
    if (stat(path, &st) == 0 && (size_t)st.st_size > map_size)
        map_size = (size_t)st.st_size;
    s->map_size = map_size;

    int rc = mdb_env_create(&s->env);
    if (rc)
        goto fail;
    if ((rc = mdb_env_set_maxdbs(s->env, 8)) || (rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS)) ||
        (rc = mdb_env_set_mapsize(s->env, map_size)))
        goto fail;
    /* MDB_NOTLS: read transactions belong to no thread (workers, FAISS threads). No MDB_WRITEMAP:
     * with write() a full disk is an error from the commit instead of SIGBUS on a page. */
    rc = mdb_env_open(s->env, path, MDB_NOSUBDIR | MDB_NOTLS | (nosync ? MDB_NOSYNC : 0), 0600);
    if (rc)
        goto fail;
    s->max_key = mdb_env_get_maxkeysize(s->env);

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)))
        goto fail;
    if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) ||
        (rc = mdb_dbi_open(txn, "ids", MDB_CREATE, &s->ids)) ||
        (rc = mdb_dbi_open(txn, "docs", MDB_CREATE | MDB_INTEGERKEY, &s->docs)) ||
        (rc = mdb_dbi_open(txn, "log", MDB_CREATE | MDB_INTEGERKEY, &s->log)) ||
        (rc = mdb_dbi_open(txn, "reqs", MDB_CREATE, &s->reqs)) ||
        (rc = mdb_dbi_open(txn, "reqseq", MDB_CREATE | MDB_INTEGERKEY, &s->reqseq))) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn)))
        goto fail;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    *out = s;
    return SBERT_INDEX_OK;
fail: {
    char what[4200];
    snprintf(what, sizeof what, "LMDB environment %s", path);
    int code = store_error(rc, what, errbuf, errlen);
    if (s->env)
        mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->lock);
    free(s);
    return code;
}
}

void store_close(store *s)
{
    if (!s)
        return;
    mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

/* After a failed re-map the environment must not be touched again: refuse, and say why. */
static int store_check_mapped(store *s, char *errbuf, size_t errlen)
{
    if (!s->unmapped)
        return 0;
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "the LMDB map could not be re-established after a failed growth (%s): "
                 "restart sbertd", mdb_strerror(s->unmapped));
    return SBERT_INDEX_EIO;
}

/* LMDB 0.9.24 reports a short write (which is how a full disk or a file size limit first shows)
 * as EIO (mdb_page_flush: "TODO: Use ENOSPC"). Tell a full disk apart by looking: less than
 * 64 MiB free on the file system, or the file at the process's file size limit. */
static int store_space_low(store *s)
{
    struct statvfs fs;
    if (statvfs(s->path, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < (64u << 20))
        return 1;
    struct rlimit rl;
    struct stat st;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        stat(s->path, &st) == 0 && (uint64_t)st.st_size + (1u << 20) >= (uint64_t)rl.rlim_cur)
        return 1;
    return 0;
}

int store_read_begin(store *s, MDB_txn **txn)
{
    pthread_rwlock_rdlock(&s->lock);
    if (s->unmapped) {
        pthread_rwlock_unlock(&s->lock);
        *txn = NULL;
        return store_check_mapped(s, NULL, 0);
    }
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
    if (rc) {
        pthread_rwlock_unlock(&s->lock);
        *txn = NULL;
        return store_error(rc, "read transaction", NULL, 0);
    }
    return 0;
}

void store_read_end(store *s, MDB_txn *txn)
{
    if (txn)
        mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->lock);
}

/* Doubles the map. Called with no transaction of this thread open; waits for all others.
 * A growth that cannot happen (the address space is capped, mmap refuses) is a full store for the
 * caller: nothing more fits. LMDB 0.9.24's mdb_env_set_mapsize unmaps the old map before mapping
 * the new one and, when that mmap fails, leaves the environment with no map and no way to map it
 * again (a second set_mapsize only records the size), so the next transaction faults (seen with
 * RLIMIT_AS). So first reserve the new size beside the old map: when that fits, LMDB's own mmap,
 * made after it has freed the old map, fits too. */
static int store_grow(store *s, char *errbuf, size_t errlen)
{
    pthread_rwlock_wrlock(&s->lock);
    size_t old = s->map_size, want = old * 2;
    int rc = 0;
    void *probe = mmap(NULL, want, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (probe == MAP_FAILED)
        rc = errno;
    else {
        munmap(probe, want);
        if ((rc = mdb_env_set_mapsize(s->env, want)))
            s->unmapped = rc;
    }
    if (!s->unmapped) {
        MDB_envinfo info;
        mdb_env_info(s->env, &info);
        s->map_size = info.me_mapsize;
    }
    pthread_rwlock_unlock(&s->lock);
    if (rc) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "the store is full: its LMDB map of %zu bytes cannot grow to %zu (%s)",
                     old, want, mdb_strerror(rc));
        return SBERT_INDEX_ENOSPC;
    }
    slog(s, SBERT_INDEX_LOG_INFO, "LMDB map of %s grown to %zu bytes", s->path, s->map_size);
    return 0;
}

int store_write(store *s, store_txn_fn fn, void *user, char *errbuf, size_t errlen)
{
    for (;;) {
        pthread_rwlock_rdlock(&s->lock);
        if (s->unmapped) {
            pthread_rwlock_unlock(&s->lock);
            return store_check_mapped(s, errbuf, errlen);
        }
        MDB_txn *txn;
        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc == MDB_MAP_RESIZED) {
            /* Another process grew the map: adopt its size (only with no transaction open). */
            pthread_rwlock_unlock(&s->lock);
            pthread_rwlock_wrlock(&s->lock);
            rc = mdb_env_set_mapsize(s->env, 0);
            pthread_rwlock_unlock(&s->lock);
            if (rc)
                return store_error(rc, "adopting the LMDB map size", errbuf, errlen);
            continue;
        }
        if (rc) {
            pthread_rwlock_unlock(&s->lock);
            return store_error(rc, "write transaction", errbuf, errlen);
        }
        rc = fn(s, txn, user);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
        pthread_rwlock_unlock(&s->lock);
        if (rc == MDB_MAP_FULL) {
            if ((rc = store_grow(s, errbuf, errlen)))
                return rc;
            continue;
        }
        if (rc < 0 && rc > -100)
            return rc;
        if (rc == EIO && store_space_low(s))
            rc = ENOSPC;
        if (rc)
            return store_error(rc, "committing a write transaction", errbuf, errlen);
        return 0;
    }
}

/* ---- meta record ----------------------------------------------------------------------------- */

static int meta_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *v, size_t len)
{
    MDB_val k = {strlen(key), (void *)key}, d = {len, (void *)v};
    return mdb_put(txn, dbi, &k, &d, 0);
}

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *d)
{
    MDB_val k = {strlen(key), (void *)key};
    return mdb_get(txn, dbi, &k, d);
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int store_meta_put_counters(store *s, MDB_txn *txn, uint64_t next_label, uint64_t change)
{
    unsigned char b[8];
    put_u64(b, next_label);
    int rc = meta_put(txn, s->meta, "next_label", b, 8);
    if (rc)
        return rc;
    put_u64(b, change);
    return meta_put(txn, s->meta, "change", b, 8);
}

int store_meta_put(store *s, MDB_txn *txn, const struct store_meta *m)
{
    unsigned char fmt[8];
    memcpy(fmt, STORE_MAGIC, 4);
    put_u32(fmt + 4, m->format);
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return SBERT_INDEX_ENOMEM;
    cJSON_AddStringToObject(j, "name", m->model_name);
    cJSON_AddStringToObject(j, "weights_sha256", m->model_sha256);
    cJSON_AddNumberToObject(j, "dim", m->dim);
    cJSON_AddNumberToObject(j, "pooling", m->pooling);
    cJSON_AddNumberToObject(j, "normalize", m->normalize);
    cJSON_AddNumberToObject(j, "max_seq_length", m->max_seq_length);
    char *model = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!model)
        return SBERT_INDEX_ENOMEM;
    int rc = meta_put(txn, s->meta, "format", fmt, 8);
    if (!rc)
        rc = meta_put(txn, s->meta, "model", model, strlen(model));
    free(model);
    if (!rc)
        rc = meta_put(txn, s->meta, "spec", m->spec, strlen(m->spec));
    if (!rc)
        rc = meta_put(txn, s->meta, "uuid", m->uuid, STORE_UUID_SIZE);
    if (!rc)
        rc = store_meta_put_counters(s, txn, m->next_label, m->change);
    return rc;
}

static int json_int(const cJSON *o, const char *key, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v))
        return -1;
    *out = v->valueint;
    return 0;
}

static int json_str(const cJSON *o, const char *key, char *out, size_t cap)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return -1;
    strcpy(out, v->valuestring);
    return 0;
}

int store_meta_get(store *s, MDB_txn *txn, struct store_meta *m, char *errbuf, size_t errlen)
{
    memset(m, 0, sizeof *m);
    MDB_val d;
    int rc = meta_get(txn, s->meta, "format", &d);
    if (rc == MDB_NOTFOUND)
        return SBERT_INDEX_ENOTFOUND;
    if (rc)
        return store_error(rc, "reading the meta record", errbuf, errlen);
    if (d.mv_size != 8 || memcmp(d.mv_data, STORE_MAGIC, 4) != 0) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s is not an sbertd store (bad magic in the meta record)",
                     s->path);
        return SBERT_INDEX_EFORMAT;
    }
    m->format = get_u32((const unsigned char *)d.mv_data + 4);
    if (m->format != SBERT_INDEX_FORMAT_VERSION) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s has store format version %u; this build reads %d",
                     s->path, m->format, SBERT_INDEX_FORMAT_VERSION);
        return SBERT_INDEX_EFORMAT;
    }
    const char *bad = NULL;
    if ((rc = meta_get(txn, s->meta, "model", &d)) == 0) {
        cJSON *j = cJSON_ParseWithLength(d.mv_data, d.mv_size);
        if (!j || json_str(j, "name", m->model_name, sizeof m->model_name) ||
            json_str(j, "weights_sha256", m->model_sha256, sizeof m->model_sha256) ||
            json_int(j, "dim", &m->dim) || json_int(j, "pooling", &m->pooling) ||
            json_int(j, "normalize", &m->normalize) ||
            json_int(j, "max_seq_length", &m->max_seq_length))
            bad = "model";
        cJSON_Delete(j);
    } else
        bad = "model";
    if (!bad && (rc = meta_get(txn, s->meta, "spec", &d)) == 0 && d.mv_size < sizeof m->spec) {
        memcpy(m->spec, d.mv_data, d.mv_size);
        m->spec[d.mv_size] = 0;
    } else if (!bad)
        bad = "spec";
    if (!bad && meta_get(txn, s->meta, "uuid", &d) == 0 && d.mv_size == STORE_UUID_SIZE)
        memcpy(m->uuid, d.mv_data, STORE_UUID_SIZE);
    else if (!bad)
        bad = "uuid";
    if (!bad && meta_get(txn, s->meta, "next_label", &d) == 0 && d.mv_size == 8)
        m->next_label = get_u64(d.mv_data);
    else if (!bad)
        bad = "next_label";
    if (!bad && meta_get(txn, s->meta, "change", &d) == 0 && d.mv_size == 8)
        m->change = get_u64(d.mv_data);
    else if (!bad)
        bad = "change";
    if (bad) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s: the meta record's \"%s\" entry is missing or damaged",
                     s->path, bad);
        return SBERT_INDEX_EFORMAT;
    }
    return 0;
}

/* ---- ids ------------------------------------------------------------------------------------- */

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
    put_u64(out, a);
    put_u64(out + 8, b);
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
    unsigned char key[1024];
    MDB_val k = {store_id_key(s, id, id_len, key), key}, d;
    int rc = mdb_get(txn, s->ids, &k, &d);
    if (rc == MDB_NOTFOUND)
        return SBERT_INDEX_ENOTFOUND;
    if (rc)
        return rc;
    if (d.mv_size != 8)
        return SBERT_INDEX_EFORMAT;
    *label = get_u64(d.mv_data);
    return 0;
}

/* ---- records --------------------------------------------------------------------------------- */

size_t store_record_size(size_t dim, size_t id_len, size_t text_len, size_t meta_len)
{
    return STORE_RECORD_HEADER + dim * sizeof(float) + id_len + text_len + meta_len;
}

void store_record_encode(unsigned char *buf, const float *vector, size_t dim, const char *id,
                         size_t id_len, const char *text, size_t text_len, const char *meta,
                         size_t meta_len)
{
    buf[0] = STORE_RECORD_VERSION;
    buf[1] = meta ? 1 : 0;
    buf[2] = (unsigned char)id_len;
    buf[3] = (unsigned char)(id_len >> 8);
    put_u32(buf + 4, (uint32_t)text_len);
    put_u32(buf + 8, (uint32_t)meta_len);
    put_u32(buf + 12, (uint32_t)dim);
    unsigned char *p = buf + STORE_RECORD_HEADER;
    memcpy(p, vector, dim * sizeof(float));
    p += dim * sizeof(float);
    memcpy(p, id, id_len);
    p += id_len;
    if (text_len)
        memcpy(p, text, text_len);
    p += text_len;
    if (meta_len)
        memcpy(p, meta, meta_len);
}

int store_record_decode(const MDB_val *v, struct store_record *r)
{
    const unsigned char *b = v->mv_data;
    if (v->mv_size < STORE_RECORD_HEADER || b[0] != STORE_RECORD_VERSION)
        return SBERT_INDEX_EFORMAT;
    size_t id_len = (size_t)b[2] | (size_t)b[3] << 8;
    size_t text_len = get_u32(b + 4), meta_len = get_u32(b + 8), dim = get_u32(b + 12);
    if (store_record_size(dim, id_len, text_len, meta_len) != v->mv_size)
        return SBERT_INDEX_EFORMAT;
    const unsigned char *p = b + STORE_RECORD_HEADER;
    r->dim = (uint32_t)dim;
    r->vector = (const float *)(const void *)p;
    p += dim * sizeof(float);
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

int store_record_get(store *s, MDB_txn *txn, uint64_t label, struct store_record *r)
{
    size_t key = (size_t)label;
    MDB_val k = {sizeof key, &key}, d;
    int rc = mdb_get(txn, s->docs, &k, &d);
    if (rc == MDB_NOTFOUND)
        return SBERT_INDEX_ENOTFOUND;
    if (rc)
        return rc;
    return store_record_decode(&d, r);
}

/* ---- change log ------------------------------------------------------------------------------ */

int store_log_append(store *s, MDB_txn *txn, uint64_t seq, uint64_t label, int op)
{
    size_t key = (size_t)seq;
    unsigned char v[9];
    put_u64(v, label);
    v[8] = (unsigned char)op;
    MDB_val k = {sizeof key, &key}, d = {sizeof v, v};
    return mdb_put(txn, s->log, &k, &d, MDB_APPEND);
}

int store_log_decode(const MDB_val *v, uint64_t *label, int *op)
{
    if (v->mv_size != 9)
        return SBERT_INDEX_EFORMAT;
    *label = get_u64(v->mv_data);
    *op = ((const unsigned char *)v->mv_data)[8];
    return (*op == STORE_OP_PUT || *op == STORE_OP_DELETE) ? 0 : SBERT_INDEX_EFORMAT;
}

int store_log_trim(store *s, MDB_txn *txn, uint64_t upto)
{
    MDB_cursor *c;
    int rc = mdb_cursor_open(txn, s->log, &c);
    if (rc)
        return rc;
    MDB_val k, d;
    while ((rc = mdb_cursor_get(c, &k, &d, MDB_FIRST)) == 0) {
        size_t seq;
        memcpy(&seq, k.mv_data, sizeof seq);
        if ((uint64_t)seq > upto)
            break;
        if ((rc = mdb_cursor_del(c, 0)))
            break;
    }
    mdb_cursor_close(c);
    return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

/* ---- remembered writes ----------------------------------------------------------------------- */

static int req_decode(const MDB_val *v, uint64_t *seq, int64_t *t, uint64_t *hash)
{
    const unsigned char *p = v->mv_data;
    if (v->mv_size < STORE_REQ_HEADER || p[0] != STORE_REQ_VERSION)
        return SBERT_INDEX_EFORMAT;
    *seq = get_u64(p + 8);
    *t = (int64_t)get_u64(p + 16);
    *hash = get_u64(p + 24);
    return 0;
}

/* Drops the oldest entries until at most keep remain and the oldest is younger than the window.
 * A "reqseq" entry whose "reqs" entry was replaced since (another sequence) only goes itself. */
static int req_prune(store *s, MDB_txn *txn, int64_t now, uint64_t keep, int64_t keep_s)
{
    MDB_stat st;
    int rc = mdb_stat(txn, s->reqseq, &st);
    if (rc)
        return rc;
    uint64_t n = st.ms_entries;
    MDB_cursor *c;
    if ((rc = mdb_cursor_open(txn, s->reqseq, &c)))
        return rc;
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
        if (current && n <= keep && now - t < keep_s)
            break;
        if (current && (rc = mdb_del(txn, s->reqs, &rk, NULL)))
            break;
        if ((rc = mdb_cursor_del(c, 0)))
            break;
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
    if (rc)
        return rc;
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
    if ((rc = mdb_put(txn, s->reqs, &rk, &rv, MDB_RESERVE)))
        return rc;
    unsigned char *p = rv.mv_data;
    memset(p, 0, STORE_REQ_HEADER);
    p[0] = STORE_REQ_VERSION;
    put_u64(p + 8, seq);
    put_u64(p + 16, (uint64_t)now);
    put_u64(p + 24, hash);
    memcpy(p + STORE_REQ_HEADER, reply, reply_len);
    MDB_val sk = {sizeof seq, &seq}, sv = {len, (void *)req_id};
    if ((rc = mdb_put(txn, s->reqseq, &sk, &sv, MDB_APPEND)))
        return rc;
    return req_prune(s, txn, now, keep, keep_s);
}

int store_req_get(store *s, MDB_txn *txn, const char *req_id, size_t len, int64_t now,
                  int64_t keep_s, uint64_t *hash, const char **reply, size_t *reply_len)
{
    MDB_val k = {len, (void *)req_id}, v;
    int rc = mdb_get(txn, s->reqs, &k, &v);
    if (rc == MDB_NOTFOUND)
        return SBERT_INDEX_ENOTFOUND;
    if (rc)
        return rc;
    uint64_t seq;
    int64_t t;
    if ((rc = req_decode(&v, &seq, &t, hash)))
        return rc;
    if (now - t >= keep_s)
        return SBERT_INDEX_ENOTFOUND;
    *reply = (const char *)v.mv_data + STORE_REQ_HEADER;
    *reply_len = v.mv_size - STORE_REQ_HEADER;
    return 0;
}

void store_map_info(store *s, uint64_t *map_size, uint64_t *used)
{
    MDB_envinfo info;
    MDB_stat st;
    pthread_rwlock_rdlock(&s->lock);
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    pthread_rwlock_unlock(&s->lock);
    *map_size = info.me_mapsize;
    *used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}
