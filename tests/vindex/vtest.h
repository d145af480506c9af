/*
 * vtest.h — what the vindex tests share: the check macros (a failed check prints where and why
 * and makes the case return 1) and a reproducible random generator (xorshift64*).
 */
#ifndef SBERT_TESTS_VTEST_H
#define SBERT_TESTS_VTEST_H

#include <stdint.h>
#include <stdio.h>

#include "vindex.h"

#define DIM 384

static char g_err[512];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

#define CHECK_RC(expr)                                                                             \
    do {                                                                                           \
        g_err[0] = '\0';                                                                           \
        int rc_ = (expr);                                                                          \
        CHECK(rc_ == 0, "%s returned %d (%s): %s", #expr, rc_, vindex_strerror(rc_), g_err);       \
    } while (0)

#define ERR g_err, sizeof g_err

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static inline void rng_seed(uint64_t s)
{
    rng_state = s ? s : 1;
}

static inline uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

#endif
