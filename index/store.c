/*
 * store.c — the store's LMDB environment (store.h): open and close, read and write transactions,
 * map growth, the error mapping, copies and syncs. The databases' contents are handled by
 * store_meta.c, store_docs.c, store_log.c and store_reqs.c.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "sbert_util.h"
#include "store_impl.h"

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
    if (errbuf && errlen) snprintf(errbuf, errlen, "%s: %s", what, mdb_strerror(rc));
    return code;
}

int store_open(const char *path, size_t map_size, int nosync, sbert_index_log_fn logfn,
               void *log_user, store **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    store *s = calloc(1, sizeof *s);
    if (!s) return SBERT_INDEX_ENOMEM;
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
    if (stat(path, &st) == 0 && (size_t)st.st_size > map_size) map_size = (size_t)st.st_size;
    s->map_size = map_size;

    int rc = mdb_env_create(&s->env);
    if (rc) goto fail;
    if ((rc = mdb_env_set_maxdbs(s->env, 8)) ||
        (rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS)) ||
        (rc = mdb_env_set_mapsize(s->env, map_size)))
        goto fail;
    /* MDB_NOTLS: read transactions belong to no thread (workers, FAISS threads). No MDB_WRITEMAP:
     * with write() a full disk is an error from the commit instead of SIGBUS on a page. */
    rc = mdb_env_open(s->env, path, MDB_NOSUBDIR | MDB_NOTLS | (nosync ? MDB_NOSYNC : 0), 0600);
    if (rc) goto fail;
    s->max_key = mdb_env_get_maxkeysize(s->env);

    MDB_txn *txn;
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn))) goto fail;
    if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta)) ||
        (rc = mdb_dbi_open(txn, "ids", MDB_CREATE, &s->ids)) ||
        (rc = mdb_dbi_open(txn, "docs", MDB_CREATE | MDB_INTEGERKEY, &s->docs)) ||
        (rc = mdb_dbi_open(txn, "log", MDB_CREATE | MDB_INTEGERKEY, &s->log)) ||
        (rc = mdb_dbi_open(txn, "reqs", MDB_CREATE, &s->reqs)) ||
        (rc = mdb_dbi_open(txn, "reqseq", MDB_CREATE | MDB_INTEGERKEY, &s->reqseq)) ||
        (rc = mdb_dbi_open(txn, "kwpost", MDB_CREATE | MDB_DUPSORT | MDB_DUPFIXED, &s->kwpost))) {
        mdb_txn_abort(txn);
        goto fail;
    }
    if ((rc = mdb_txn_commit(txn))) goto fail;
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->map_size = info.me_mapsize;
    *out = s;
    return SBERT_INDEX_OK;
fail : {
    char what[4200];
    snprintf(what, sizeof what, "LMDB environment %s", path);
    int code = store_error(rc, what, errbuf, errlen);
    if (s->env) mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->lock);
    free(s);
    return code;
}
}

void store_close(store *s)
{
    if (!s) return;
    sbert_analyzer_free(s->kw);
    mdb_env_close(s->env);
    pthread_rwlock_destroy(&s->lock);
    free(s);
}

/* After a failed re-map the environment must not be touched again: refuse, and say why. */
static int store_check_mapped(store *s, char *errbuf, size_t errlen)
{
    if (!s->unmapped) return 0;
    if (errbuf && errlen)
        snprintf(errbuf, errlen,
                 "the LMDB map could not be re-established after a failed growth (%s): "
                 "restart sbertd",
                 mdb_strerror(s->unmapped));
    return SBERT_INDEX_EIO;
}

/* LMDB 0.9.24 reports a short write (which is how a full disk or a file size limit first shows)
 * as EIO (mdb_page_flush: "TODO: Use ENOSPC"). Tell a full disk apart by looking: less than
 * 64 MiB free on the file system, or the file at the process's file size limit. */
static int store_space_low(store *s)
{
    struct statvfs fs;
    if (statvfs(s->path, &fs) == 0 && (uint64_t)fs.f_bavail * fs.f_frsize < (64u << 20)) return 1;
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
    if (txn) mdb_txn_abort(txn);
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
        if ((rc = mdb_env_set_mapsize(s->env, want))) s->unmapped = rc;
    }
    if (!s->unmapped) {
        MDB_envinfo info;
        mdb_env_info(s->env, &info);
        s->map_size = info.me_mapsize;
    }
    pthread_rwlock_unlock(&s->lock);
    if (rc) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen,
                     "the store is full: its LMDB map of %zu bytes cannot grow to %zu (%s)", old,
                     want, mdb_strerror(rc));
        return SBERT_INDEX_ENOSPC;
    }
    sbert_util_logf(s->logfn, s->log_user, SBERT_INDEX_LOG_INFO,
                    "LMDB map of %s grown to %zu bytes", s->path, s->map_size);
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
            if (rc) return store_error(rc, "adopting the LMDB map size", errbuf, errlen);
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
            if ((rc = store_grow(s, errbuf, errlen))) return rc;
            continue;
        }
        if (rc < 0 && rc > -100) return rc;
        if (rc == EIO && store_space_low(s)) rc = ENOSPC;
        if (rc) return store_error(rc, "committing a write transaction", errbuf, errlen);
        return 0;
    }
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

int store_read_begin_nolock(store *s, MDB_txn **txn)
{
    return mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
}

void store_read_abort(MDB_txn *txn)
{
    mdb_txn_abort(txn);
}

int store_copy(store *s, const char *path, char *errbuf, size_t errlen)
{
    pthread_rwlock_rdlock(&s->lock);
    int rc = mdb_env_copy2(s->env, path, MDB_CP_COMPACT);
    pthread_rwlock_unlock(&s->lock);
    return rc ? store_error(rc, "mdb_env_copy2", errbuf, errlen) : 0;
}

int store_sync(store *s)
{
    return mdb_env_sync(s->env, 1);
}
