/*
 * vindex_train.c — IVF training (vindex_impl.h): once the flat staging index holds train_min
 * vectors, an IVF is trained on a copy of them (in a thread of its own unless train_async is 0);
 * writes made meanwhile are logged and replayed into it before it replaces the staging index.
 */
#include <stdlib.h>
#include <string.h>

#include "IndexIVF_c.h"
#include "error_c.h"
#include "impl/AuxIndexStructures_c.h"
#include "vindex_impl.h"
#include "vindex_shim.h"

void vindex_oplog_clear(vindex *v)
{
    for (size_t i = 0; i < v->oplog_n; i++) {
        free(v->oplog[i].labels);
        free(v->oplog[i].vectors);
    }
    free(v->oplog);
    v->oplog = NULL;
    v->oplog_n = v->oplog_cap = 0;
    v->oplog_failed = 0;
}

void vindex_join_training(vindex *v)
{
    pthread_mutex_lock(&v->wait_mu);
    int live = v->thread_live;
    v->thread_live = 0;
    pthread_mutex_unlock(&v->wait_mu);
    if (live) pthread_join(v->thread, NULL);
}

/* Builds and fills a trained IVF from labels/vectors. No lock needed: touches nothing shared. */
static int train_build(const struct vindex_params *p, const char *spec, const int64_t *labels,
                       const float *x, size_t n, FaissIndex **out, char *errbuf, size_t errlen)
{
    FaissIndex *ivf;
    int rc = vindex_new_faiss(spec, p->dim, &ivf, errbuf, errlen);
    if (rc) return rc;
    if (faiss_Index_train(ivf, (idx_t)n, x) != 0) {
        rc = vindex_faiss_fail(errbuf, errlen, "FAISS train");
    } else if (faiss_Index_add_with_ids(ivf, (idx_t)n, x, labels) != 0) {
        rc = vindex_faiss_fail(errbuf, errlen, "FAISS add_with_ids (trained IVF)");
    }
    if (rc) {
        faiss_Index_free(ivf);
        return rc;
    }
    *out = ivf;
    return 0;
}

/* Replaces the staging index by the trained IVF (write lock held). */
static void swap_in_trained(vindex *v, FaissIndex *ivf)
{
    faiss_Index_free(v->s.idx);
    v->s.idx = ivf;
    v->s.trained = 1;
}

static int replay_oplog(vindex *v, FaissIndex *ivf, char *errbuf, size_t errlen)
{
    for (size_t i = 0; i < v->oplog_n; i++) {
        struct oplog_entry *e = &v->oplog[i];
        if (e->is_add) {
            if (faiss_Index_add_with_ids(ivf, (idx_t)e->n, e->vectors, e->labels) != 0)
                return vindex_faiss_fail(errbuf, errlen, "FAISS add_with_ids (replay)");
        } else {
            FaissIDSelectorBatch *sel = NULL;
            size_t got;
            if (faiss_IDSelectorBatch_new(&sel, e->n, e->labels) != 0)
                return vindex_faiss_fail(errbuf, errlen, "FAISS IDSelectorBatch (replay)");
            int frc = faiss_Index_remove_ids(ivf, (FaissIDSelector *)sel, &got);
            faiss_IDSelector_free((FaissIDSelector *)sel);
            if (frc != 0) return vindex_faiss_fail(errbuf, errlen, "FAISS remove_ids (replay)");
        }
    }
    return 0;
}

static void training_done(vindex *v)
{
    pthread_mutex_lock(&v->wait_mu);
    v->training = 0;
    pthread_cond_broadcast(&v->wait_cv);
    pthread_mutex_unlock(&v->wait_mu);
}

static void *train_main(void *arg)
{
    vindex *v = arg;
    char err[256] = "";
    FaissIndex *ivf = NULL;
    int rc = train_build(&v->p, v->s.spec, v->train_labels, v->train_vectors, v->train_n, &ivf, err,
                         sizeof err);
    pthread_rwlock_wrlock(&v->lock);
    if (rc == 0 && v->oplog_failed)
        rc = sbert_util_errf(err, sizeof err, VINDEX_ENOMEM,
                             "a write during training could not be logged");
    if (rc == 0) rc = replay_oplog(v, ivf, err, sizeof err);
    if (rc == 0) {
        swap_in_trained(v, ivf);
        vlog(v, VINDEX_LOG_INFO, "IVF index %s trained on %zu vectors; %zu writes replayed",
             v->s.spec, v->train_n, v->oplog_n);
    } else {
        if (ivf) faiss_Index_free(ivf);
        v->s.train_failed = 1;
        vlog(v, VINDEX_LOG_ERROR, "IVF training of %s failed, staying exact: %s", v->s.spec, err);
    }
    vindex_oplog_clear(v);
    free(v->train_labels);
    free(v->train_vectors);
    v->train_labels = NULL;
    v->train_vectors = NULL;
    /* Cleared before the write lock is released, so that a write under the lock never sees
     * training set after the oplog has been replayed and cleared. */
    training_done(v);
    pthread_rwlock_unlock(&v->lock);
    return NULL;
}

/* Starts training when the staging index has reached train_min (write lock held). A failure to
 * start is logged and leaves the index exact; it is not an error of the write that triggered it. */
void vindex_maybe_train(vindex *v)
{
    struct vstate *s = &v->s;
    if (s->kind != KIND_IVF || s->trained || s->train_failed || v->training ||
        s->live.n < s->train_min)
        return;
    size_t n = (size_t)faiss_Index_ntotal(s->idx);
    const float *xb = vshim_flat_vectors(s->idx);
    char err[256] = "";
    int64_t *labels = malloc(n * sizeof *labels);
    float *x = malloc(n * (size_t)v->p.dim * sizeof *x);
    if (!labels || !x || !xb || vshim_labels(s->idx, VSHIM_IDMAP, labels, err, sizeof err) != 0) {
        free(labels);
        free(x);
        s->train_failed = 1;
        vlog(v, VINDEX_LOG_ERROR, "IVF training of %s not started: %s", s->spec,
             err[0] ? err : "out of memory");
        return;
    }
    memcpy(x, xb, n * (size_t)v->p.dim * sizeof *x);
    if (!v->p.train_async) {
        FaissIndex *ivf;
        int rc = train_build(&v->p, s->spec, labels, x, n, &ivf, err, sizeof err);
        free(labels);
        free(x);
        if (rc == 0) {
            swap_in_trained(v, ivf);
            vlog(v, VINDEX_LOG_INFO, "IVF index %s trained on %zu vectors", s->spec, n);
        } else {
            s->train_failed = 1;
            vlog(v, VINDEX_LOG_ERROR, "IVF training of %s failed, staying exact: %s", s->spec, err);
        }
        return;
    }
    vindex_join_training(v); /* a finished earlier thread */
    v->train_labels = labels;
    v->train_vectors = x;
    v->train_n = n;
    pthread_mutex_lock(&v->wait_mu);
    v->training = 1;
    pthread_mutex_unlock(&v->wait_mu);
    if (pthread_create(&v->thread, NULL, train_main, v) != 0) {
        free(labels);
        free(x);
        v->train_labels = NULL;
        v->train_vectors = NULL;
        s->train_failed = 1;
        training_done(v);
        vlog(v, VINDEX_LOG_ERROR, "IVF training of %s not started: %s", s->spec,
             vindex_strerror(VINDEX_ETHREAD));
        return;
    }
    pthread_mutex_lock(&v->wait_mu);
    v->thread_live = 1;
    pthread_mutex_unlock(&v->wait_mu);
    vlog(v, VINDEX_LOG_INFO, "IVF index %s: training on %zu vectors in the background", s->spec, n);
}

void vindex_oplog_push(vindex *v, int is_add, const int64_t *labels, const float *x, size_t n)
{
    if (v->oplog_failed) return;
    if (v->oplog_n == v->oplog_cap) {
        size_t cap = v->oplog_cap ? 2 * v->oplog_cap : 16;
        struct oplog_entry *o = realloc(v->oplog, cap * sizeof *o);
        if (!o) {
            v->oplog_failed = 1;
            return;
        }
        v->oplog = o;
        v->oplog_cap = cap;
    }
    struct oplog_entry e = {.is_add = is_add, .n = n};
    e.labels = malloc(n * sizeof *e.labels);
    if (is_add) e.vectors = malloc(n * (size_t)v->p.dim * sizeof *e.vectors);
    if (!e.labels || (is_add && !e.vectors)) {
        free(e.labels);
        free(e.vectors);
        v->oplog_failed = 1;
        return;
    }
    memcpy(e.labels, labels, n * sizeof *e.labels);
    if (is_add) memcpy(e.vectors, x, n * (size_t)v->p.dim * sizeof *e.vectors);
    v->oplog[v->oplog_n++] = e;
}
