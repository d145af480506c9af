/*
 * common.c — the small helpers index/'s files share (internal.h): error mapping, random bytes,
 * copies, the model identity in the meta record, vindex parameters, and the counters and
 * progress reported to the application.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

int index_vindex_code(int rc)
{
    switch (rc) {
    case VINDEX_OK:
        return SBERT_INDEX_OK;
    case VINDEX_ENOMEM:
        return SBERT_INDEX_ENOMEM;
    case VINDEX_EINVAL:
        return SBERT_INDEX_EINVAL;
    case VINDEX_EIO:
        return SBERT_INDEX_EIO;
    case VINDEX_ENOSPC:
        return SBERT_INDEX_ENOSPC;
    default:
        return SBERT_INDEX_EVINDEX;
    }
}

int index_create_code(int rc)
{
    return rc == VINDEX_ENOMEM ? SBERT_INDEX_ENOMEM : SBERT_INDEX_ESPEC;
}

int64_t index_now_s(void)
{
    return (int64_t)time(NULL);
}

int index_fsync_path(const char *path, int dir)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

void index_fill_random(void *buf, size_t n)
{
    unsigned char *p = buf;
    while (n) {
        ssize_t r = getrandom(p, n, 0);
        if (r <= 0) {
            /* getrandom cannot fail for small sizes after boot; keep ids unique anyway. */
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            for (size_t i = 0; i < n; i++)
                p[i] = (unsigned char)(ts.tv_nsec >> (i % 4 * 8)) ^ (unsigned char)i;
            return;
        }
        p += r;
        n -= (size_t)r;
    }
}

char *index_dup_bytes(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n) memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

int index_model_valid(const struct sbert_index_model *m)
{
    if (!m->name || strlen(m->name) > 255 || !m->weights_sha256 ||
        strlen(m->weights_sha256) != 64 || m->dim < 1 || m->dim > 65536 || m->pooling < 0 ||
        m->pooling > 2 || (m->normalize != 0 && m->normalize != 1) || m->max_seq_length < 1)
        return 0;
    return 1;
}

void index_meta_set_model(struct store_meta *m, const struct sbert_index_model *p)
{
    snprintf(m->model_name, sizeof m->model_name, "%s", p->name);
    snprintf(m->model_sha256, sizeof m->model_sha256, "%s", p->weights_sha256);
    m->dim = p->dim;
    m->pooling = p->pooling;
    m->normalize = p->normalize;
    m->max_seq_length = p->max_seq_length;
    m->precision = p->precision;
}

struct vindex_params index_vparams(sbert_index *idx, int dim)
{
    struct vindex_params vp = vindex_default_params();
    vp.spec = idx->spec;
    vp.dim = dim;
    if (idx->params.ef_search > 0) vp.ef_search = idx->params.ef_search;
    if (idx->params.nprobe > 0) vp.nprobe = idx->params.nprobe;
    vp.log = idx->params.log;
    vp.log_user = idx->params.log_user;
    return vp;
}

void index_publish(sbert_index *idx)
{
    atomic_store(&idx->pub_change, idx->meta.change);
    atomic_store(&idx->pub_snap_change, idx->snap_exists ? idx->snap_change : 0);
    atomic_store(&idx->pub_snap_time, idx->snap_exists ? idx->snap_time : 0);
}

void index_progress(sbert_index *idx, const char *phase, uint64_t done, uint64_t total)
{
    if (idx->params.progress) idx->params.progress(idx->params.progress_user, phase, done, total);
}

uint64_t index_doc_total(sbert_index *idx)
{
    MDB_txn *txn;
    uint64_t n = 0;
    if (store_read_begin(idx->st, &txn) == 0) {
        if (store_doc_count(idx->st, txn, &n)) n = 0;
        store_read_end(idx->st, txn);
    }
    return n;
}
