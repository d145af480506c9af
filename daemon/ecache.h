/*
 * ecache.h — the embedding cache: vectors the encoder made for documents, kept on disk so that an
 * unchanged passage (a re-import, an edited file's untouched parts, a duplicate) is never encoded
 * twice. One LMDB environment for the whole daemon (every collection), in its own directory.
 *
 * An entry's key: SHA-256 of the model's identity (weights sha256, pooling, normalize,
 * max_seq_length, dim, precision, int8 kernel) and the text, so two models or two precisions never
 * share an entry. Three tables:
 *     "key"   key (32 bytes) -> seq (u64 big-endian: the entry's insertion number)
 *     "vec"   seq -> value, appended in seq order, so its pages fill up and eviction (oldest
 *             first) takes its head; the value (native byte order: the cache never leaves its
 *             machine) is u32 magic "SEC1" (the format's version), u32 flags (bit 0: the text
 *             was truncated), u32 dim, u32 0, u8 key[32], float[dim], u8 check[8] = the first 8
 *             bytes of SHA-256 of everything before it
 *     "meta"  "format" -> u32 1; "bytes" -> u64, the bytes of both tables' records (keys and
 *             values), which embedding_cache_mb bounds
 * The file takes up to about twice the bound: a 384-dim vector record is 1.6 KB of a 2 KiB half
 * page, the key table adds its B-tree's slack, and LMDB's copy-on-write frees a transaction's
 * pages only after it (measured: 3.5 MB for embedding_cache_mb = 2 filled by adds of 100).
 *
 * The cache is never the source of truth. Writes are not synced (MDB_NOSYNC); instead a state
 * file says whether unsynced writes may be pending ("dirty BOOT_ID") or not ("clean BOOT_ID").
 * A process that dies leaves its writes in the kernel's page cache, which the next start on the
 * same boot reads intact; a dirty state from another boot (a power loss or a crash of the
 * machine) or a file LMDB refuses discards the cache (logged) and starts it empty. Every hit's
 * check is verified: an entry that fails it is dropped (logged) and counted as a miss, so the
 * cache never hands back a vector the encoder did not make for that text.
 *
 * Thread safety: every function may be called from any thread; calls on one handle are serialised
 * by its mutex. The module never prints: it reports through the log callback of its params.
 */
#ifndef SBERTD_ECACHE_H
#define SBERTD_ECACHE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sbertd_ecache sbertd_ecache;

enum {
    SBERTD_ECACHE_OK = 0,
    SBERTD_ECACHE_ENOMEM = -1,
    SBERTD_ECACHE_EIO = -2,   /* the directory or a file could not be made, read or written */
    SBERTD_ECACHE_ELMDB = -3, /* LMDB refused (its text is in the message) */
    SBERTD_ECACHE_EINVAL = -4,
};

/* What the key binds a vector to. The strings are copied by open. */
struct sbertd_ecache_model {
    const char *weights_sha256; /* hex */
    int pooling, normalize, max_seq_length, dim;
    const char *precision; /* "fp32", "int8" */
    const char *kernel;    /* the int8 kernel's name, or NULL */
};

struct sbertd_ecache_params {
    const char *dir;    /* created when missing (not its parents) */
    uint64_t max_bytes; /* bound on the entries' key and value bytes (> 0) */
    struct sbertd_ecache_model model;
    /* levels 0..3 = error, warning, info, debug, as the encoder's and the index's callbacks */
    void (*log)(int level, const char *msg, void *user);
    void *log_user;
};

/* Opens (or creates) the cache in p->dir. A cache file that is damaged, of another format, or
 * possibly missing writes after a machine crash is removed and a new one created (logged).
 * Returns 0 and *out, or an SBERTD_ECACHE_E* code with why filled (nothing is left open). */
int sbertd_ecache_open(const struct sbertd_ecache_params *p, sbertd_ecache **out, char *why,
                       size_t whylen);

/* Syncs what was written, marks the cache clean and frees c. NULL is a no-op. */
void sbertd_ecache_close(sbertd_ecache *c);

#define SBERTD_ECACHE_KEY_BYTES 32

/* Writes the key of text (len bytes) under c's model into key. */
void sbertd_ecache_key(const sbertd_ecache *c, const char *text, size_t len,
                       uint8_t key[SBERTD_ECACHE_KEY_BYTES]);

/* Looks up n keys (n * SBERTD_ECACHE_KEY_BYTES bytes): for each found one, found[i] = 1, its
 * vector goes to out + i * dim and its truncation flag to truncated[i]; the others get found[i] =
 * 0 and their rows are left alone. Counts hits and misses. A failure of LMDB is logged and makes
 * every key a miss (the cache is then reset: removed and created empty). */
void sbertd_ecache_get(sbertd_ecache *c, const uint8_t *keys, size_t n, float *out, int *truncated,
                       int *found);

/* Stores n vectors (rows of dim floats) under their keys, evicting the oldest entries while the
 * bytes exceed max_bytes. An existing key is left as it is. Failures are logged and returned;
 * nothing needs them: the caller already has its vectors. Returns 0 or an SBERTD_ECACHE_E* code. */
int sbertd_ecache_put(sbertd_ecache *c, const uint8_t *keys, size_t n, const float *vecs,
                      const int *truncated);

struct sbertd_ecache_stats {
    int open; /* 0 once a reset failed to create the cache again: it stores nothing any more */
    uint64_t entries, bytes, max_bytes;
    uint64_t hits, misses, evictions; /* since open */
};

/* Fills st. */
void sbertd_ecache_stats(sbertd_ecache *c, struct sbertd_ecache_stats *st);

/* A static text for an SBERTD_ECACHE_E* code. */
const char *sbertd_ecache_strerror(int code);

#endif
