/* sbert_util.h — small helpers that encoder/, index/, proto/, daemon/ and client/ share, so each
 * exists once: printf-style messages into a log callback or an error buffer, strict UTF-8
 * validation, a JSON syntax check, cosine and L2 normalisation of float vectors, and the bounded
 * "top pairs" heap used by paraphrase mining.
 *
 * A private library of this repository, not an installed API: every module links it statically.
 * Thread safety: every function is reentrant; a struct sbert_util_topk belongs to one thread.
 * Nothing here prints, exits or keeps global state.
 */
#ifndef SBERT_UTIL_H
#define SBERT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The log callback shape every module's params use: level is syslog's (3 error .. 7 debug), msg is
 * NUL-terminated and valid only during the call. */
typedef void (*sbert_util_log_fn)(int level, const char *msg, void *user);

/* Formats a message (at most 1023 bytes, longer is cut) and hands it to fn; does nothing when fn
 * is NULL. */
void sbert_util_logf(sbert_util_log_fn fn, void *user, int level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Formats a message into errbuf (errlen bytes, always NUL-terminated; nothing when errbuf is NULL
 * or errlen 0) and returns code, so an error path reads `return sbert_util_errf(...)`. */
int sbert_util_errf(char *errbuf, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* 1 when s[0..len) is well-formed UTF-8 (Unicode 15, table 3-7: no overlongs, no surrogates,
 * nothing above U+10FFFF), else 0. An empty string is valid. NUL bytes are valid UTF-8; callers
 * that refuse them check separately. */
int sbert_util_utf8_valid(const void *s, size_t len);

/* 1 when s[0..len) begins with one well-formed JSON value (RFC 8259; nesting at most 512 deep;
 * what follows it is not looked at), else 0; *is_object (may be NULL) is set to 1 when that value
 * is an object. Allocates nothing, so after a failed cJSON parse it tells a malformed text (0)
 * from an allocation that failed (1): it accepts nothing that cJSON 1.7 refuses. */
int sbert_util_json_valid(const char *s, size_t len, int *is_object);

/* 1 when this CPU has AVX-VNNI (the VEX vpdpbusd: CPUID leaf 7 subleaf 1, EAX bit 4) and the OS
 * saves the YMM state; 0 elsewhere. Why not __builtin_cpu_supports("avxvnni"): clang 14 (the
 * TSan and fuzz builds) rejects that name at compile time. */
int sbert_util_cpu_avxvnni(void);

/* The next value of a xorshift32 generator (Marsaglia 2003; *state must not be 0): fixed
 * pseudo-random inputs for the load-time kernel checks, the same on every run. */
uint32_t sbert_util_xorshift32(uint32_t *state);

/* Cosine similarity of a and b (dim floats each), accumulated in double; 0 when either is all
 * zeros. */
double sbert_util_cosine(const float *a, const float *b, size_t dim);

/* Copies v (dim floats) into out (which may be v), scaled to unit L2 length; an all-zero v stays
 * zero. Returns 0, or -1 when v holds a NaN or an infinity (out is then unspecified). */
int sbert_util_normalise_into(const float *v, size_t dim, float *out);

/* A scored pair of item numbers (a < b by the caller's convention). */
struct sbert_util_pair {
    float score;
    uint64_t a, b;
};

/* 1 when x ranks before y: higher score, then lower a, then lower b (the order of
 * sentence-transformers' paraphrase_mining, a stable sort of i < j pairs by score). */
int sbert_util_pair_before(const struct sbert_util_pair *x, const struct sbert_util_pair *y);

/* The best `limit` pairs seen (limit 0: every pair), kept as a heap whose root is the worst kept
 * pair. Initialise with sbert_util_topk_init; the caller owns it and releases it with
 * sbert_util_topk_free. */
struct sbert_util_topk {
    struct sbert_util_pair *v; /* owned; n used of cap */
    size_t n, cap, limit;
};

void sbert_util_topk_init(struct sbert_util_topk *k, size_t limit);

/* Offers p: kept when fewer than limit are kept or p ranks before the worst kept one. Returns 0,
 * or -1 when memory ran out (k unchanged). */
int sbert_util_topk_add(struct sbert_util_topk *k, const struct sbert_util_pair *p);

/* Sorts the kept pairs best first (k->v[0] is the best); k no longer accepts pairs afterwards. */
void sbert_util_topk_sort(struct sbert_util_topk *k);

void sbert_util_topk_free(struct sbert_util_topk *k);

/* FIPS 180-4 SHA-256 (SHA extensions used when the CPU has them). A context is plain data owned
 * by the caller: any number of threads may hash at once on their own contexts. Used for model
 * weights' fingerprints and files' content hashes. */
struct sbert_sha256 {
    uint32_t h[8];
    uint64_t total;  /* bytes hashed so far */
    uint8_t buf[64]; /* a partial block */
    size_t used;     /* bytes in buf */
    int accel;       /* set by init when the CPU has SHA extensions; 0 forces the portable code */
};

void sbert_sha256_init(struct sbert_sha256 *c);
void sbert_sha256_update(struct sbert_sha256 *c, const void *data, size_t len);
/* Writes the 32-byte digest; c must be initialised again before reuse. */
void sbert_sha256_final(struct sbert_sha256 *c, uint8_t digest[32]);
/* One-shot: writes 64 lowercase hex digits and a NUL into hex. */
void sbert_sha256_hex(const void *data, size_t len, char hex[65]);

#ifdef __cplusplus
}
#endif

#endif
