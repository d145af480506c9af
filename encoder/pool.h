/*
 * pool.h — a small persistent thread pool for the int8 forward pass, private to the encoder.
 *
 * The int8 path runs without OpenMP (and BLAS threads): its workers are started once, on first
 * need, and sleep on a condition variable between passes, so a batch-1 query pays one wake-up per
 * forward pass, not a thread start per layer.
 *
 * Thread safety: any thread may call sbert_pool_run(); one job holds the workers at a time, and a
 * call that finds them busy runs its job on the calling thread alone (a result never depends on
 * the thread count, so this only costs speed, and concurrent callers each still get a core).
 */
#ifndef SBERT_POOL_H
#define SBERT_POOL_H

typedef struct sbert_pool sbert_pool;

/* fn runs once on each of n threads, with t = 0 .. n-1; t = 0 is the caller. */
typedef void (*sbert_pool_fn)(void *arg, int t, int n);

/* A pool with no threads yet. Returns NULL when out of memory. Free with sbert_pool_free(). */
sbert_pool *sbert_pool_create(void);

/* Stops and joins the workers. NULL is allowed. No sbert_pool_run() may be in progress. */
void sbert_pool_free(sbert_pool *p);

/*
 * Runs fn(arg, t, k) for t = 0 .. k-1, k <= n, and returns k once every call has returned.
 * Workers are started up to n - 1 (at most 255); k is smaller than n when the workers are held by
 * another call (k = 1) or a thread could not be started (the workers there are). Never fails: k
 * is at least 1, with fn run on the caller.
 */
int sbert_pool_run(sbert_pool *p, int n, sbert_pool_fn fn, void *arg);

#endif
