/*
 * faults_ecache.c — fault loops over sbertd's embedding cache (daemon/ecache.h):
 *
 *   faults_ecache DIR
 *
 * For each family (allocations, opens, reads, writes, fsyncs, mmaps, LMDB calls), each phase
 * (open, put, get, close) and N = 1, 2, ...: a cache holding OLD entries is opened, the phase runs
 * with call N of the family made to fail, and then:
 *   - the phase returned 0 or one of its documented codes (never a crash or a hang; ASan and
 *     LeakSanitizer check the rest in CI's build);
 *   - every hit the phase reported, and every hit of the cache reopened with faults off, holds
 *     exactly the vector that was stored for that text: a failure may cost entries, never hand
 *     back a wrong vector;
 *   - reopened with faults off, the cache opens and stores and returns new entries.
 * The loop ends at the first N that the phase does not reach. The cache's log lines are counted,
 * not printed (run with -v to see them).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ecache.h"
#include "faults.h"

#define DIM 8
#define OLD 6
#define NEW 6
#define N_MAX 5000 /* a loop that reaches this has not ended: a failure */

static int verbose, failures;
static char base[4096];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static void on_log(int level, const char *msg, void *user)
{
    (void)user;
    if (verbose) fprintf(stderr, "  log %d: %s\n", level, msg);
}

/* Text i and the vector stored for it: distinct per i, so a mixed-up entry shows. */
static void text_of(int i, char *out, size_t cap)
{
    snprintf(out, cap, "passage number %d of the fault loop", i);
}

static void vec_of(int i, float *v)
{
    for (int j = 0; j < DIM; j++)
        v[j] = (float)i + (float)j / 16.0f;
}

static struct sbertd_ecache_params params(const char *dir)
{
    struct sbertd_ecache_params p = {.dir = dir,
                                     .max_bytes = 1u << 20,
                                     .model = {.weights_sha256 = "0123456789abcdef",
                                               .pooling = 0,
                                               .normalize = 1,
                                               .max_seq_length = 256,
                                               .dim = DIM,
                                               .precision = "fp32"},
                                     .log = on_log};
    return p;
}

static void keys_of(sbertd_ecache *c, int from, int n, uint8_t *keys)
{
    for (int i = 0; i < n; i++) {
        char t[128];
        text_of(from + i, t, sizeof t);
        sbertd_ecache_key(c, t, strlen(t), keys + (size_t)i * SBERTD_ECACHE_KEY_BYTES);
    }
}

static int put_range(sbertd_ecache *c, int from, int n)
{
    uint8_t keys[NEW * SBERTD_ECACHE_KEY_BYTES > OLD * SBERTD_ECACHE_KEY_BYTES
                     ? NEW * SBERTD_ECACHE_KEY_BYTES
                     : OLD * SBERTD_ECACHE_KEY_BYTES];
    float vecs[(NEW > OLD ? NEW : OLD) * DIM];
    int trunc[NEW > OLD ? NEW : OLD];
    keys_of(c, from, n, keys);
    for (int i = 0; i < n; i++) {
        vec_of(from + i, vecs + i * DIM);
        trunc[i] = (from + i) % 2;
    }
    return sbertd_ecache_put(c, keys, (size_t)n, vecs, trunc);
}

/* Looks up texts 0 .. OLD+NEW-1; every hit must hold its own vector and truncation flag. Returns
 * the number of hits. */
static int get_all(sbertd_ecache *c, const char *what, long n_call)
{
    enum { ALL = OLD + NEW };
    uint8_t keys[ALL * SBERTD_ECACHE_KEY_BYTES];
    float out[ALL * DIM];
    int trunc[ALL], found[ALL], hits = 0;
    memset(out, 0, sizeof out);
    keys_of(c, 0, ALL, keys);
    sbertd_ecache_get(c, keys, ALL, out, trunc, found);
    for (int i = 0; i < ALL; i++) {
        if (!found[i]) continue;
        hits++;
        float v[DIM];
        vec_of(i, v);
        CHECK(memcmp(v, out + i * DIM, sizeof v) == 0 && trunc[i] == i % 2,
              "%s, call %ld: text %d came back with a wrong vector", what, n_call, i);
    }
    return hits;
}

static int run(const char *cmd)
{
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

/* A fresh directory holding a cache of OLD entries (texts 0 .. OLD-1), closed. */
static void fresh(const char *dir)
{
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    run(cmd);
    struct sbertd_ecache_params p = params(dir);
    sbertd_ecache *c;
    char why[256];
    if (sbertd_ecache_open(&p, &c, why, sizeof why)) {
        fprintf(stderr, "setup: %s\n", why);
        exit(1);
    }
    if (put_range(c, 0, OLD)) exit(1);
    sbertd_ecache_close(c);
}

static int is_code(int rc)
{
    return rc == 0 || rc == SBERTD_ECACHE_ENOMEM || rc == SBERTD_ECACHE_EIO ||
           rc == SBERTD_ECACHE_ELMDB || rc == SBERTD_ECACHE_EINVAL;
}

enum phase { P_OPEN, P_PUT, P_GET, P_CLOSE, N_PHASES };
static const char *const phase_names[] = {"open", "put", "get", "close"};

/* One run: phase with call n of family failing. Returns 1 when the fault fired. */
static int one(unsigned family, enum phase ph, long n)
{
    char dir[4200], what[128];
    snprintf(dir, sizeof dir, "%s/c", base);
    snprintf(what, sizeof what, "%s/%s", sbert_fault_family_name(family), phase_names[ph]);
    fresh(dir);
    struct sbertd_ecache_params p = params(dir);
    sbertd_ecache *c = NULL;
    char why[256];
    int rc = 0;
    if (ph == P_OPEN) sbert_fault_arm(family, (uint64_t)n);
    rc = sbertd_ecache_open(&p, &c, why, sizeof why);
    if (ph != P_OPEN) {
        CHECK(rc == 0, "%s: open without faults: %s", what, why);
        if (rc) return 0;
        sbert_fault_arm(family, (uint64_t)n);
    }
    CHECK(is_code(rc), "%s, call %ld: open returned %d", what, n, rc);
    if (c && ph == P_PUT) CHECK(is_code(put_range(c, OLD, NEW)), "%s: put's code", what);
    if (c && ph == P_GET) get_all(c, what, n);
    if (c && ph == P_CLOSE) {
        sbertd_ecache_close(c);
        c = NULL;
    }
    sbert_fault_disarm();
    int fired = sbert_fault_fired() > 0;
    if (c) get_all(c, what, n); /* the same handle after the fault */
    sbertd_ecache_close(c);
    /* faults off: the cache opens, never hands back a wrong vector, and works */
    rc = sbertd_ecache_open(&p, &c, why, sizeof why);
    CHECK(rc == 0, "%s, call %ld: reopen without faults: %s", what, n, why);
    if (rc) return fired;
    get_all(c, what, n);
    CHECK(put_range(c, OLD, NEW) == 0, "%s, call %ld: put after the fault", what, n);
    CHECK(get_all(c, what, n) >= NEW, "%s, call %ld: the new entries are found", what, n);
    sbertd_ecache_close(c);
    return fired;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: faults_ecache DIR [-v]\n");
        return 2;
    }
    verbose = argc > 2 && strcmp(argv[2], "-v") == 0;
    snprintf(base, sizeof base, "%s", argv[1]);
    mkdir(base, 0700);
    static const unsigned families[] = {SBERT_FAULT_ALLOC, SBERT_FAULT_OPEN,  SBERT_FAULT_READ,
                                        SBERT_FAULT_WRITE, SBERT_FAULT_FSYNC, SBERT_FAULT_MMAP,
                                        SBERT_FAULT_LMDB};
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++)
        for (int ph = 0; ph < N_PHASES; ph++) {
            long n = 1;
            while (n < N_MAX && one(families[f], (enum phase)ph, n))
                n++;
            CHECK(n < N_MAX, "%s/%s: the loop did not end", sbert_fault_family_name(families[f]),
                  phase_names[ph]);
            printf("%-6s %-5s %ld calls failed in turn\n", sbert_fault_family_name(families[f]),
                   phase_names[ph], n - 1);
        }
    printf("%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
