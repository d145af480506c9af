/*
 * t.h — a minimal assertion harness for the store tests: CHECK records a failure with its line
 * and goes on; the program's exit status is the failure count (0: pass), so ctest sees failures.
 */
#ifndef SBERT_STORE_TEST_H
#define SBERT_STORE_TEST_H

#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbert_index.h"

static int t_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
            t_failures++;                                                                          \
        }                                                                                          \
    } while (0)

/* Checks an sbert_index call's return code, printing the error text on failure. */
#define CHECK_RC(expr, want)                                                                       \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != (want)) {                                                                       \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d\n", __FILE__, __LINE__, #expr,  \
                    rc_, sbert_index_strerror(rc_), (want));                                       \
            t_failures++;                                                                          \
        }                                                                                          \
    } while (0)

#define T_DIM 32
#define T_SHA_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define T_SHA_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static inline void t_log(int level, const char *msg, void *user)
{
    (void)user;
    if (getenv("T_VERBOSE") || level <= SBERT_INDEX_LOG_ERROR)
        fprintf(stderr, "  [index log %d] %s\n", level, msg);
}

static inline struct sbert_index_params t_params(const char *spec)
{
    struct sbert_index_params p = sbert_index_default_params();
    p.model.name = "test-model-a";
    p.model.weights_sha256 = T_SHA_A;
    p.model.dim = T_DIM;
    p.model.pooling = SBERT_INDEX_POOL_MEAN;
    p.model.normalize = 1;
    p.model.max_seq_length = 128;
    p.index_spec = spec;
    p.log = t_log;
    return p;
}

/* Deterministic pseudo-random unit vectors (xorshift64*). */
static inline uint64_t t_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static inline void t_vec(uint64_t seed, float *v, int dim)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
    double ss = 0;
    for (int i = 0; i < dim; i++) {
        v[i] = (float)((double)(t_rand(&s) >> 11) / 9007199254740992.0 * 2 - 1);
        ss += (double)v[i] * v[i];
    }
    for (int i = 0; i < dim; i++)
        v[i] = (float)(v[i] / sqrt(ss));
}

static inline int t_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void t_rmrf(const char *path)
{
    nftw(path, t_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh temporary directory; the store goes into <it>/s. */
static inline void t_tmpdir(char *out, size_t cap, const char *tag)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(out, cap, "%s/sbert-store-%s-XXXXXX", base, tag);
    if (!mkdtemp(out)) {
        perror("mkdtemp");
        exit(99);
    }
}

#endif
