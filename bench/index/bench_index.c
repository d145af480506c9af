/*
 * bench_index.c — measures index/vindex.h on random unit vectors: add rate (training included),
 * memory per vector, snapshot write/load time, rebuild time without a snapshot, single-query
 * latency p50/p99 and recall@10 against exact search. bench/index/run.sh runs it beside the same
 * measurements with faiss-cpu from PyPI and prints one table.
 *
 *   bench_index VECTORS.f32 N QUERIES.f32 NQ GT.i64 SPEC EF NPROBE LAT_QUERIES SNAPDIR
 *   bench_index delete VECTORS.f32 N QUERIES.f32 NQ ORDER.i64 SINGLES BATCHES BATCH
 *
 * VECTORS.f32: N x 384 float32 rows; QUERIES.f32: NQ x 384; GT.i64: NQ x 10 exact labels.
 * Prints one line "key=value ..." on stdout.
 *
 * delete (bench/index/delete.sh runs it): a Flat index of the N vectors (labels 0..N-1), then
 * SINGLES vindex_remove() calls of one label each and BATCHES calls of BATCH labels each, the
 * labels taken in turn from ORDER.i64 (a permutation of 0..N-1); each call is timed alone. Then
 * the same BATCHES x BATCH deletes again while a second thread runs one query per call
 * back to back: how long a query waits behind a delete (its latency against the idle one) and
 * how long a delete waits for the running query. Last, BATCHES more batches, each with one query
 * issued 1 ms after the delete call began: its latency minus the idle query's is its wait
 * behind the delete. ORDER needs SINGLES + 3 * BATCHES * BATCH labels.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vindex.h"

#define DIM 384
#define K 10

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static void *map_file(const char *path, size_t want)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        exit(2);
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size < want) {
        fprintf(stderr, "%s: %lld bytes, want %zu\n", path, (long long)st.st_size, want);
        exit(2);
    }
    void *p = mmap(NULL, want, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* vindex's own log (e.g. its snapshot load phases at DEBUG) goes to stderr. */
static void log_stderr(int level, const char *msg, void *user)
{
    (void)user;
    fprintf(stderr, "vindex[%d]: %s\n", level, msg);
}

static void die(const char *what, int rc, const char *err)
{
    fprintf(stderr, "%s: %s: %s\n", what, vindex_strerror(rc), err);
    exit(1);
}

/* Builds the index from the vectors: the same path is the add-rate and the rebuild figure. */
static vindex *build(const struct vindex_params *p, const float *x, size_t n, double *secs)
{
    char err[512];
    vindex *v;
    int rc = vindex_create(p, &v, err, sizeof err);
    if (rc) die("create", rc, err);
    int64_t *lab = malloc(n * sizeof *lab);
    for (size_t i = 0; i < n; i++)
        lab[i] = (int64_t)i;
    double t0 = now();
    const size_t B = 10000;
    for (size_t off = 0; off < n; off += B) {
        size_t b = n - off < B ? n - off : B;
        rc = vindex_add(v, lab + off, x + off * DIM, b, err, sizeof err);
        if (rc) die("add", rc, err);
    }
    vindex_wait_training(v);
    *secs = now() - t0;
    free(lab);
    return v;
}

static double pct(double *a, size_t n, double p)
{
    if (!n) return NAN;
    qsort(a, n, sizeof *a, cmp_double);
    size_t i = (size_t)(p * n);
    return a[i < n ? i : n - 1];
}

static double mean(const double *a, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i];
    return n ? s / n : NAN;
}

/* Times each vindex_remove() of nb batches of b labels from order; lat[i] in seconds. */
static void remove_timed(vindex *v, const int64_t *order, size_t nb, size_t b, double *lat)
{
    char err[512];
    for (size_t i = 0; i < nb; i++) {
        size_t got = 0;
        double t0 = now();
        int rc = vindex_remove(v, order + i * b, b, &got, err, sizeof err);
        lat[i] = now() - t0;
        if (rc) die("remove", rc, err);
        if (got != b) {
            fprintf(stderr, "remove: %zu of %zu labels removed\n", got, b);
            exit(1);
        }
    }
}

struct qloop {
    vindex *v;
    const float *q;
    size_t nq;
    atomic_int stop;
    double *lat;
    size_t n, cap;
};

static void *query_loop(void *arg)
{
    struct qloop *l = arg;
    char err[512];
    int64_t L[K];
    float S[K];
    for (size_t i = 0; !l->stop; i++) {
        double t0 = now();
        int rc = vindex_search(l->v, l->q + (i % l->nq) * DIM, 1, K, NULL, L, S, err, sizeof err);
        if (rc) die("search", rc, err);
        if (l->n < l->cap) l->lat[l->n++] = now() - t0;
    }
    return NULL;
}

struct late_query {
    vindex *v;
    const float *q;
    double lat;
};

/* One query, 1 ms after it was started (the delete it should meet has the lock by then). */
static void *late_query(void *arg)
{
    struct late_query *l = arg;
    char err[512];
    int64_t L[K];
    float S[K];
    struct timespec ms = {.tv_nsec = 1000000};
    nanosleep(&ms, NULL);
    double t0 = now();
    int rc = vindex_search(l->v, l->q, 1, K, NULL, L, S, err, sizeof err);
    if (rc) die("search", rc, err);
    l->lat = now() - t0;
    return NULL;
}

static int delete_main(int argc, char **argv)
{
    if (argc != 10) {
        fprintf(stderr, "usage: %s delete VECTORS N QUERIES NQ ORDER SINGLES BATCHES BATCH\n",
                argv[0]);
        return 2;
    }
    size_t n = strtoull(argv[3], NULL, 10), nq = strtoull(argv[5], NULL, 10);
    size_t singles = strtoull(argv[7], NULL, 10), nb = strtoull(argv[8], NULL, 10),
           b = strtoull(argv[9], NULL, 10);
    if (singles + 3 * nb * b > n || nq == 0) {
        fprintf(stderr, "delete: SINGLES + 3 * BATCHES * BATCH > N, or NQ == 0\n");
        return 2;
    }
    const float *x = map_file(argv[2], n * DIM * sizeof(float));
    const float *q = map_file(argv[4], nq * DIM * sizeof(float));
    const int64_t *order = map_file(argv[6], n * sizeof(int64_t));

    struct vindex_params p = vindex_default_params();
    p.spec = "Flat";
    p.dim = DIM;
    p.log = log_stderr;
    double t_add;
    vindex *v = build(&p, x, n, &t_add);

    char err[512];
    int64_t L[K];
    float S[K];
    size_t nidle = nq < 20 ? nq : 20;
    double idle[20];
    for (size_t i = 0; i < nidle; i++) {
        double t0 = now();
        int rc = vindex_search(v, q + i * DIM, 1, K, NULL, L, S, err, sizeof err);
        if (rc) die("search", rc, err);
        idle[i] = now() - t0;
    }

    double *l1 = malloc((singles ? singles : 1) * sizeof *l1);
    double *lb = malloc(nb * sizeof *lb), *lc = malloc(nb * sizeof *lc);
    remove_timed(v, order, singles, 1, l1);
    remove_timed(v, order + singles, nb, b, lb);

    /* Concurrent: the deletes are spaced by about one idle query time so that each one arrives
     * at a random point of a running query. */
    struct qloop ql = {.v = v, .q = q, .nq = nq, .cap = 1 << 20};
    ql.lat = malloc(ql.cap * sizeof *ql.lat);
    pthread_t th;
    pthread_create(&th, NULL, query_loop, &ql);
    double q50 = pct(idle, nidle, 0.5);
    struct timespec gap = {.tv_sec = (time_t)q50, .tv_nsec = (long)((q50 - (time_t)q50) * 1e9)};
    nanosleep(&gap, NULL);
    for (size_t i = 0; i < nb; i++) {
        remove_timed(v, order + singles + (nb + i) * b, 1, b, lc + i);
        nanosleep(&gap, NULL);
    }
    ql.stop = 1;
    pthread_join(th, NULL);

    double *ll = malloc(nb * sizeof *ll), *ld = malloc(nb * sizeof *ld);
    for (size_t i = 0; i < nb; i++) {
        struct late_query lq = {.v = v, .q = q + (i % nq) * DIM};
        pthread_create(&th, NULL, late_query, &lq);
        remove_timed(v, order + singles + (2 * nb + i) * b, 1, b, ld + i);
        pthread_join(th, NULL);
        ll[i] = lq.lat;
    }
    size_t left = vindex_count(v);
    if (left != n - singles - 3 * nb * b) {
        fprintf(stderr, "delete: %zu labels left, want %zu\n", left, n - singles - 3 * nb * b);
        return 1;
    }
    double single_mean = mean(l1, singles), batch_mean = mean(lb, nb);
    printf("impl=vindex op=delete n=%zu singles=%zu single_p50_ms=%.3f single_p99_ms=%.3f "
           "single_max_ms=%.3f single_mean_ms=%.3f batches=%zu batch=%zu batch_p50_ms=%.3f "
           "batch_max_ms=%.3f batch_mean_ms=%.3f query_idle_p50_ms=%.3f conc_queries=%zu "
           "conc_query_p50_ms=%.3f conc_query_max_ms=%.3f conc_delete_p50_ms=%.3f "
           "conc_delete_max_ms=%.3f late_query_p50_ms=%.3f late_query_max_ms=%.3f "
           "late_delete_p50_ms=%.3f\n",
           n, singles, pct(l1, singles, 0.5) * 1e3, pct(l1, singles, 0.99) * 1e3,
           pct(l1, singles, 1.0) * 1e3, single_mean * 1e3, nb, b, pct(lb, nb, 0.5) * 1e3,
           pct(lb, nb, 1.0) * 1e3, batch_mean * 1e3, q50 * 1e3, ql.n, pct(ql.lat, ql.n, 0.5) * 1e3,
           pct(ql.lat, ql.n, 1.0) * 1e3, pct(lc, nb, 0.5) * 1e3, pct(lc, nb, 1.0) * 1e3,
           pct(ll, nb, 0.5) * 1e3, pct(ll, nb, 1.0) * 1e3, pct(ld, nb, 0.5) * 1e3);
    vindex_free(v);
    free(l1);
    free(lb);
    free(lc);
    free(ll);
    free(ld);
    free(ql.lat);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "delete") == 0) return delete_main(argc, argv);
    if (argc != 11) {
        fprintf(stderr, "usage: %s VECTORS N QUERIES NQ GT SPEC EF NPROBE LAT_QUERIES SNAPDIR\n",
                argv[0]);
        return 2;
    }
    size_t n = strtoull(argv[2], NULL, 10), nq = strtoull(argv[4], NULL, 10);
    const char *spec = argv[6];
    size_t nlat = strtoull(argv[9], NULL, 10);
    if (nlat > nq) nlat = nq;
    const float *x = map_file(argv[1], n * DIM * sizeof(float));
    const float *q = map_file(argv[3], nq * DIM * sizeof(float));
    const int64_t *gt = map_file(argv[5], nq * K * sizeof(int64_t));

    struct vindex_params p = vindex_default_params();
    p.spec = spec;
    p.dim = DIM;
    p.ef_search = atoi(argv[7]);
    p.nprobe = atoi(argv[8]);
    p.train_async = 0;
    p.log = log_stderr;

    long rss0 = rss_bytes();
    double t_add;
    vindex *v = build(&p, x, n, &t_add);
    long rss1 = rss_bytes();
    struct vindex_info info;
    vindex_info(v, &info);

    /* Latency: one query per call, as the daemon issues them. */
    char err[512];
    int64_t L[K];
    float S[K];
    double *lat = malloc(nlat * sizeof *lat);
    for (size_t i = 0; i < nlat; i++) {
        double t0 = now();
        int rc = vindex_search(v, q + i * DIM, 1, K, NULL, L, S, err, sizeof err);
        if (rc) die("search", rc, err);
        lat[i] = now() - t0;
    }
    qsort(lat, nlat, sizeof *lat, cmp_double);
    /* Recall: all queries in one batched call. */
    int64_t *R = malloc(nq * K * sizeof *R);
    float *RS = malloc(nq * K * sizeof *RS);
    int rc = vindex_search(v, q, nq, K, NULL, R, RS, err, sizeof err);
    if (rc) die("search", rc, err);
    size_t hit = 0;
    for (size_t i = 0; i < nq; i++)
        for (int a = 0; a < K; a++)
            for (int b = 0; b < K; b++)
                hit += R[i * K + a] == gt[i * K + b];

    char path[512];
    snprintf(path, sizeof path, "%s/bench.snap", argv[10]);
    double t0 = now();
    rc = vindex_snapshot_write(v, path, 1, NULL, 0, err, sizeof err);
    if (rc) die("snapshot write", rc, err);
    double t_write = now() - t0;
    struct stat st;
    stat(path, &st);
    vindex_free(v);

    t0 = now();
    vindex *r;
    rc = vindex_snapshot_read(path, &p, &r, NULL, err, sizeof err);
    if (rc) die("snapshot read", rc, err);
    double t_load = now() - t0;
    if (vindex_count(r) != n) {
        fprintf(stderr, "loaded %zu of %zu\n", vindex_count(r), n);
        return 1;
    }
    vindex_free(r);
    unlink(path);

    printf("impl=vindex spec=%s n=%zu add_s=%.2f add_per_s=%.0f rss_per_vec=%.1f est_per_vec=%.1f "
           "snap_write_s=%.2f snap_bytes=%lld snap_load_s=%.2f rebuild_s=%.2f p50_ms=%.3f "
           "p99_ms=%.3f recall10=%.4f\n",
           spec, n, t_add, n / t_add, (double)(rss1 - rss0) / n, (double)info.memory_bytes / n,
           t_write, (long long)st.st_size, t_load, t_add, lat[nlat / 2] * 1e3,
           lat[(size_t)(nlat * 0.99) < nlat ? (size_t)(nlat * 0.99) : nlat - 1] * 1e3,
           (double)hit / (nq * K));
    free(lat);
    free(R);
    free(RS);
    return 0;
}
