/*
 * faults_vindex.c — fault loops over the vector index (index/vindex.h) for one spec:
 *
 *   faults_vindex <Flat|HNSW16,Flat|IVF4,Flat>
 *
 * Operations: add (a batch to an index of BASE vectors), search, snapshot write (over an older
 * snapshot) and snapshot read. For each fault configuration and N = 1, 2, ... call N of the
 * family fails during the operation, until the operation reaches no call N; then, faults off:
 * the code is 0 or the configuration's; add is all or nothing (the count, and each vector found
 * as its own nearest neighbour or not at all); a failed snapshot write leaves the old snapshot
 * in place and no temporary file; a failed read returns no index; and the operation succeeds.
 * Allocations inside FAISS (C++ operator new, in libstdc++) are not reached by the wrapping.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "faults.h"
#include "vindex.h"

#define DIM 16
#define BASE 200
#define BATCH 20
#define N_MAX 20000

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static const char *g_spec;
static char g_dir[4096], g_snap[4200];
static float g_vecs[(BASE + BATCH) * DIM];
static int64_t g_labels[BASE + BATCH];

static void make_vectors(void)
{
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < (BASE + BATCH); i++) {
        double ss = 0;
        for (int d = 0; d < DIM; d++) {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            float x =
                (float)((double)((s * 2685821657736338717ull) >> 11) / 9007199254740992.0 - 0.5);
            g_vecs[i * DIM + d] = x;
            ss += (double)x * x;
        }
        for (int d = 0; d < DIM; d++)
            g_vecs[i * DIM + d] = (float)(g_vecs[i * DIM + d] / sqrt(ss));
        g_labels[i] = (int64_t)(1000 + i);
    }
}

static struct vindex_params params(void)
{
    struct vindex_params p = vindex_default_params();
    p.spec = g_spec;
    p.dim = DIM;
    p.train_min = BASE / 2;
    p.train_async = 0;
    return p;
}

static vindex *base_index(void)
{
    struct vindex_params p = params();
    vindex *v = NULL;
    char err[512] = "";
    if (vindex_create(&p, &v, err, sizeof err) ||
        vindex_add(v, g_labels, g_vecs, BASE, err, sizeof err)) {
        fprintf(stderr, "base index: %s\n", err);
        exit(97);
    }
    return v;
}

/* How many of labels[first..first+n) are their own nearest neighbour (so present). */
static size_t present(vindex *v, size_t first, size_t n)
{
    size_t k = 0;
    for (size_t i = first; i < first + n; i++) {
        int64_t l;
        float sc;
        if (vindex_search(v, g_vecs + i * DIM, 1, 1, NULL, &l, &sc, NULL, 0) == 0 &&
            l == g_labels[i])
            k++;
    }
    return k;
}

struct config {
    const char *name;
    unsigned mask;
    int err;
    int codes[3];
};

static const struct config g_configs[] = {
    {"alloc", SBERT_FAULT_ALLOC, 0, {VINDEX_ENOMEM}},
    {"io-eio", SBERT_FAULT_IO, EIO, {VINDEX_EIO}},
    {"disk-full", SBERT_FAULT_WRITE | SBERT_FAULT_FSYNC, ENOSPC, {VINDEX_ENOSPC}},
    {"mmap", SBERT_FAULT_MMAP, 0, {VINDEX_EIO, VINDEX_ENOMEM}},
};

static int code_ok(const struct config *cf, int rc)
{
    for (int i = 0; i < 3 && cf->codes[i]; i++)
        if (rc == cf->codes[i]) return 1;
    return 0;
}

static void arm(const struct config *cf, uint64_t n)
{
    for (unsigned f = 1; f & SBERT_FAULT_ALL; f <<= 1)
        sbert_fault_set_errno(f, cf->mask & f ? cf->err : 0);
    sbert_fault_arm(cf->mask, n);
}

/* Runs one injection of op; returns whether call n was reached. */
typedef int (*op_fn)(const struct config *cf, uint64_t n);

static int report(const char *op, const struct config *cf, uint64_t n, int rc)
{
    sbert_fault_disarm();
    int fired = sbert_fault_fired() > 0;
    if (!fired && rc != 0) {
        fprintf(stderr, "%s/%s: no fault at call %llu, yet %d (%s)\n", op, cf->name,
                (unsigned long long)n, rc, vindex_strerror(rc));
        failures++;
    } else if (fired && rc != 0 && !code_ok(cf, rc)) {
        fprintf(stderr, "%s/%s: call %llu (%s) failed: returned %d (%s)\n", op, cf->name,
                (unsigned long long)n, sbert_fault_family_name(sbert_fault_last_family()), rc,
                vindex_strerror(rc));
        failures++;
    }
    return fired;
}

static int op_add(const struct config *cf, uint64_t n)
{
    vindex *v = base_index();
    arm(cf, n);
    int rc = vindex_add(v, g_labels + BASE, g_vecs + BASE * DIM, BATCH, NULL, 0);
    int fired = report("add", cf, n, rc);
    size_t k = present(v, BASE, BATCH);
    CHECK(rc == 0 ? k == BATCH && vindex_count(v) == BASE + BATCH
                  : k == 0 && vindex_count(v) == BASE);
    if (rc) CHECK(vindex_add(v, g_labels + BASE, g_vecs + BASE * DIM, BATCH, NULL, 0) == 0);
    CHECK(present(v, 0, BASE + BATCH) == BASE + BATCH);
    vindex_free(v);
    return fired;
}

static int op_search(const struct config *cf, uint64_t n)
{
    vindex *v = base_index();
    int64_t labels[4 * 5];
    float scores[4 * 5];
    arm(cf, n);
    int rc = vindex_search(v, g_vecs, 4, 5, NULL, labels, scores, NULL, 0);
    int fired = report("search", cf, n, rc);
    if (rc == 0)
        for (int q = 0; q < 4; q++)
            CHECK(labels[q * 5] == g_labels[q]);
    CHECK(present(v, 0, BASE) == BASE);
    vindex_free(v);
    return fired;
}

/* The snapshot at g_snap holds the base index at change 1. */
static void write_base_snapshot(void)
{
    vindex *v = base_index();
    if (vindex_snapshot_write(v, g_snap, 1, NULL, 0, NULL, 0)) exit(96);
    vindex_free(v);
}

static int op_snapshot_write(const struct config *cf, uint64_t n)
{
    write_base_snapshot();
    vindex *v = base_index();
    CHECK(vindex_add(v, g_labels + BASE, g_vecs + BASE * DIM, BATCH, NULL, 0) == 0);
    arm(cf, n);
    int rc = vindex_snapshot_write(v, g_snap, 2, NULL, 0, NULL, 0);
    int fired = report("snapshot_write", cf, n, rc);
    CHECK(vindex_snapshot_remove_temps(g_snap) == 0);
    struct vindex_snapshot_meta m;
    CHECK(vindex_snapshot_check(g_snap, &m, NULL, 0) == 0);
    /* a failure before the rename keeps the old snapshot; the directory's fsync comes after */
    CHECK(m.change_counter == 2 || (rc != 0 && m.change_counter == 1));
    if (rc) CHECK(vindex_snapshot_write(v, g_snap, 2, NULL, 0, NULL, 0) == 0);
    vindex_free(v);
    return fired;
}

static int op_snapshot_read(const struct config *cf, uint64_t n)
{
    write_base_snapshot();
    struct vindex_params p = params();
    vindex *v = NULL;
    arm(cf, n);
    int rc = vindex_snapshot_read(g_snap, &p, &v, NULL, NULL, 0);
    int fired = report("snapshot_read", cf, n, rc);
    if (rc) {
        CHECK(v == NULL);
        CHECK(vindex_snapshot_read(g_snap, &p, &v, NULL, NULL, 0) == 0);
    }
    if (v) CHECK(vindex_count(v) == BASE && present(v, 0, BASE) == BASE);
    vindex_free(v);
    return fired;
}

static const struct {
    const char *name;
    op_fn fn;
} g_ops[] = {{"add", op_add},
             {"search", op_search},
             {"snapshot_write", op_snapshot_write},
             {"snapshot_read", op_snapshot_read}};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: faults_vindex <spec>\n");
        return 2;
    }
    g_spec = argv[1];
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/sbert-faults-vindex-XXXXXX", tmp);
    if (!mkdtemp(g_dir)) return 99;
    snprintf(g_snap, sizeof g_snap, "%s/index.snap", g_dir);
    make_vectors();
    uint64_t total = 0;
    for (size_t o = 0; o < sizeof g_ops / sizeof *g_ops; o++) {
        uint64_t op_total = 0;
        for (size_t c = 0; c < sizeof g_configs / sizeof *g_configs; c++) {
            uint64_t n = 1;
            while (n < N_MAX && g_ops[o].fn(&g_configs[c], n) && failures < 20)
                n++;
            CHECK(n < N_MAX);
            op_total += n - 1;
        }
        printf("%s %s: %llu injection points\n", g_spec, g_ops[o].name,
               (unsigned long long)op_total);
        total += op_total;
    }
    printf("%s: %llu injection points in all\n", g_spec, (unsigned long long)total);
    unlink(g_snap);
    rmdir(g_dir);
    return failures ? 1 : 0;
}
