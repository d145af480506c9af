/*
 * bench_index.c — measures index/vindex.h on random unit vectors: add rate (training included),
 * memory per vector, snapshot write/load time, rebuild time without a snapshot, single-query
 * latency p50/p99 and recall@10 against exact search. bench/index/run.sh runs it beside the same
 * measurements with faiss-cpu from PyPI and prints one table.
 *
 *   bench_index VECTORS.f32 N QUERIES.f32 NQ GT.i64 SPEC EF NPROBE LAT_QUERIES SNAPDIR
 *
 * VECTORS.f32: N x 384 float32 rows; QUERIES.f32: NQ x 384; GT.i64: NQ x 10 exact labels.
 * Prints one line "key=value ..." on stdout.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <math.h>
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

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
        fclose(f);
    }
    return rss * sysconf(_SC_PAGESIZE);
}

static void *map_file(const char *path, size_t want) {
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

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* vindex's own log (e.g. its snapshot load phases at DEBUG) goes to stderr. */
static void log_stderr(int level, const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "vindex[%d]: %s\n", level, msg);
}

static void die(const char *what, int rc, const char *err) {
    fprintf(stderr, "%s: %s: %s\n", what, vindex_strerror(rc), err);
    exit(1);
}

/* Builds the index from the vectors: the same path is the add-rate and the rebuild figure. */
static vindex *build(const struct vindex_params *p, const float *x, size_t n, double *secs) {
    char err[512];
    vindex *v;
    int rc = vindex_create(p, &v, err, sizeof err);
    if (rc) die("create", rc, err);
    int64_t *lab = malloc(n * sizeof *lab);
    for (size_t i = 0; i < n; i++) lab[i] = (int64_t)i;
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

int main(int argc, char **argv) {
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
            for (int b = 0; b < K; b++) hit += R[i * K + a] == gt[i * K + b];

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
