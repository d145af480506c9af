/* The int8 path's thread pool (pool.h): one job at a time, workers parked on a condvar. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

enum { MAX_WORKERS = 255, SPIN = 4000 };

struct worker {
    struct sbert_pool *p;
    int t;         /* its thread index in a job: 1 .. */
    unsigned seen; /* the last job generation it has looked at */
    pthread_t th;
};

struct sbert_pool {
    pthread_mutex_t busy; /* held by the call whose job the workers run */
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    atomic_uint gen; /* bumped (under mu) when a job starts */
    int stop;
    int n_workers, active, pending; /* active: workers taking part in the current job */
    sbert_pool_fn fn;
    void *arg;
    struct worker w[MAX_WORKERS];
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *worker_main(void *v)
{
    struct worker *w = v;
    struct sbert_pool *p = w->p;
    unsigned seen = w->seen;
    for (;;) {
        /* A short spin first: the next pass of a multi-batch call usually comes within
         * microseconds, sooner than a futex wake-up. */
        for (int i = 0; i < SPIN && atomic_load_explicit(&p->gen, memory_order_acquire) == seen;
             i++)
            cpu_relax();
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->gen) == seen && !p->stop)
            pthread_cond_wait(&p->start, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = atomic_load(&p->gen);
        const int mine = w->t < p->active;
        sbert_pool_fn fn = p->fn;
        void *arg = p->arg;
        const int n = p->active;
        pthread_mutex_unlock(&p->mu);
        if (!mine) continue;
        fn(arg, w->t, n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

sbert_pool *sbert_pool_create(void)
{
    struct sbert_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    pthread_mutex_init(&p->busy, NULL);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->gen, 0);
    return p;
}

void sbert_pool_free(sbert_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->w[i].th, NULL);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->busy);
    free(p);
}

int sbert_pool_run(sbert_pool *p, int n, sbert_pool_fn fn, void *arg)
{
    if (n > MAX_WORKERS + 1) n = MAX_WORKERS + 1;
    if (n <= 1 || pthread_mutex_trylock(&p->busy)) {
        fn(arg, 0, 1);
        return 1;
    }
    /* Only the holder of busy starts workers, so n_workers needs no other lock to grow. */
    while (p->n_workers < n - 1) {
        struct worker *w = &p->w[p->n_workers];
        w->p = p;
        w->t = p->n_workers + 1;
        /* Set here, not by the thread: it may first run after this job's gen bump. */
        w->seen = atomic_load(&p->gen);
        if (pthread_create(&w->th, NULL, worker_main, w)) break;
        p->n_workers++;
    }
    const int k = p->n_workers + 1 < n ? p->n_workers + 1 : n;
    if (k > 1) {
        pthread_mutex_lock(&p->mu);
        p->fn = fn;
        p->arg = arg;
        p->active = k;
        p->pending = k - 1;
        atomic_fetch_add(&p->gen, 1);
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, k);
    if (k > 1) {
        pthread_mutex_lock(&p->mu);
        while (p->pending)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->busy);
    return k;
}
