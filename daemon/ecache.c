/* ecache.c — the embedding cache (ecache.h): one LMDB environment of vectors by (model, text). */
#define _GNU_SOURCE
#include "ecache.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sbert_util.h"

#define MAGIC 0x31434553u /* "SEC1" in a little-endian file: the value format, version 1 */
#define FORMAT 1u
#define HEAD_BYTES 48
#define CHECK_BYTES 8
/* Writes are synced, and the state marked clean, by the first write at least this long after the
 * last sync, and at close. A machine crash discards a dirty cache; syncing at every write would
 * add fsyncs to each add, which already pays the store's. */
#define SYNC_EVERY_US (30u * 1000000u)

struct sbertd_ecache {
    pthread_mutex_t mu;
    char dir[4096];
    MDB_env *env;            /* NULL when a reset failed: every get misses, every put is dropped */
    MDB_dbi keys, vec, meta; /* key -> seq; seq -> value; "format", "bytes" */
    uint64_t max_bytes, map_size;
    int dim;
    struct sbert_sha256 prefix; /* the key's hash state after the model's identity */
    char boot[64];
    int dirty;
    uint64_t last_sync_us;
    uint64_t next_seq, bytes;
    uint64_t hits, misses, evictions;
    void (*log)(int level, const char *msg, void *user);
    void *log_user;
};

static void say(const sbertd_ecache *c, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void say(const sbertd_ecache *c, int level, const char *fmt, ...)
{
    if (!c->log) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->log(level, msg, c->log_user);
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

const char *sbertd_ecache_strerror(int code)
{
    switch (code) {
    case SBERTD_ECACHE_OK:
        return "ok";
    case SBERTD_ECACHE_ENOMEM:
        return "out of memory";
    case SBERTD_ECACHE_EIO:
        return "I/O error";
    case SBERTD_ECACHE_ELMDB:
        return "LMDB error";
    case SBERTD_ECACHE_EINVAL:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

/* ---- the state file ---------------------------------------------------------------------------
 * "clean BOOT" or "dirty BOOT": whether writes that were never synced may be pending, and on
 * which boot of the machine (the kernel's boot_id). */

static void read_boot_id(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f) return;
    if (!fgets(out, (int)cap, f)) snprintf(out, cap, "unknown");
    out[strcspn(out, "\n")] = '\0';
    fclose(f);
}

static void path_of(const sbertd_ecache *c, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", c->dir, name);
}

/* Writes the state word durably (the file and its name) before anything it vouches for. */
static int state_write(sbertd_ecache *c, const char *word)
{
    char path[4200], text[128];
    path_of(c, "state", path, sizeof path);
    int len = snprintf(text, sizeof text, "%s %s\n", word, c->boot);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0) return SBERTD_ECACHE_EIO;
    int ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
    close(fd);
    int dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return ok ? 0 : SBERTD_ECACHE_EIO;
}

/* 1 when the cache file may be trusted because its state is clean, 2 when it is dirty from this
 * boot (the process died, the kernel kept its writes), 0 when it may not be trusted (why). */
static int state_trusted(const sbertd_ecache *c, char *why, size_t whylen)
{
    char path[4200], word[16] = "", boot[64] = "";
    path_of(c, "state", path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return snprintf(why, whylen, "its state file is missing"), 0;
    int n = fscanf(f, "%15s %63s", word, boot);
    fclose(f);
    if (n == 2 && strcmp(word, "clean") == 0) return 1;
    if (n == 2 && strcmp(word, "dirty") == 0 && strcmp(boot, c->boot) == 0) return 2;
    if (n == 2 && strcmp(word, "dirty") == 0)
        snprintf(why, whylen, "the machine restarted while it had unsynced writes");
    else
        snprintf(why, whylen, "its state file is damaged");
    return 0;
}

static void discard_files(const sbertd_ecache *c)
{
    static const char *const names[] = {"data.mdb", "lock.mdb", "state"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[4200];
        path_of(c, names[i], path, sizeof path);
        unlink(path);
    }
}

/* ---- the environment --------------------------------------------------------------------------
 */

static int lmdb_fail(char *why, size_t whylen, const char *what, int rc)
{
    return sbert_util_errf(why, whylen, SBERTD_ECACHE_ELMDB, "%s: %s", what, mdb_strerror(rc));
}

static const MDB_val K_FORMAT = {6, (void *)"format"};
static const MDB_val K_BYTES = {5, (void *)"bytes"};

static void env_close(sbertd_ecache *c)
{
    if (c->env) mdb_env_close(c->env);
    c->env = NULL;
}

/* Opens the environment in c->dir, creating its tables, and reads its byte count and next
 * sequence number. Returns 0 or an SBERTD_ECACHE_E* code with why (c->env NULL). */
static int env_open(sbertd_ecache *c, char *why, size_t whylen)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = mdb_env_create(&c->env);
    if (rc) {
        c->env = NULL;
        return lmdb_fail(why, whylen, "mdb_env_create", rc);
    }
    const char *what = "mdb_env_set_mapsize";
    if ((rc = mdb_env_set_mapsize(c->env, c->map_size)) ||
        (what = "mdb_env_set_maxdbs", rc = mdb_env_set_maxdbs(c->env, 3)) ||
        (what = "mdb_env_open", rc = mdb_env_open(c->env, c->dir, MDB_NOSYNC | MDB_NOTLS, 0640)) ||
        (what = "mdb_txn_begin", rc = mdb_txn_begin(c->env, NULL, 0, &txn)) ||
        (what = "mdb_dbi_open", rc = mdb_dbi_open(txn, "key", MDB_CREATE, &c->keys)) ||
        (rc = mdb_dbi_open(txn, "vec", MDB_CREATE, &c->vec)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &c->meta)))
        goto fail;
    MDB_val k = K_FORMAT, v;
    uint32_t format = FORMAT;
    rc = mdb_get(txn, c->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        v.mv_size = sizeof format;
        v.mv_data = &format;
        what = "mdb_put";
        if ((rc = mdb_put(txn, c->meta, &k, &v, 0))) goto fail;
    } else if (rc) {
        what = "mdb_get";
        goto fail;
    } else if (v.mv_size != sizeof format || memcmp(v.mv_data, &format, sizeof format) != 0) {
        mdb_txn_abort(txn);
        env_close(c);
        return sbert_util_errf(why, whylen, SBERTD_ECACHE_EINVAL, "not a format %u cache", FORMAT);
    }
    k = K_BYTES;
    c->bytes = 0;
    if ((rc = mdb_get(txn, c->meta, &k, &v)) == 0 && v.mv_size == sizeof c->bytes)
        memcpy(&c->bytes, v.mv_data, sizeof c->bytes);
    else if (rc && rc != MDB_NOTFOUND) {
        what = "mdb_get";
        goto fail;
    }
    c->next_seq = 1;
    what = "mdb_cursor_open";
    if ((rc = mdb_cursor_open(txn, c->vec, &cur))) goto fail;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8) {
        const uint8_t *b = k.mv_data;
        uint64_t s = 0;
        for (int i = 0; i < 8; i++)
            s = s << 8 | b[i];
        c->next_seq = s + 1;
    } else if (rc && rc != MDB_NOTFOUND) {
        what = "mdb_cursor_get";
        goto fail;
    }
    mdb_cursor_close(cur);
    cur = NULL;
    what = "mdb_txn_commit";
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc) goto fail;
    return 0;
fail:
    if (cur) mdb_cursor_close(cur);
    if (txn) mdb_txn_abort(txn);
    env_close(c);
    return lmdb_fail(why, whylen, what, rc);
}

/* Removes the cache's files and opens an empty one; on failure the cache stays off (c->env
 * NULL). Logged. */
static void reset(sbertd_ecache *c, const char *why)
{
    say(c, 1, "%s: %s; discarding it and starting empty", c->dir, why);
    env_close(c);
    discard_files(c);
    c->dirty = 0;
    char err[512];
    if (state_write(c, "clean") || env_open(c, err, sizeof err)) {
        say(c, 0, "%s cannot be created again (%s): running without it", c->dir,
            c->env ? err : "cannot write its state file");
        env_close(c);
    }
}

int sbertd_ecache_open(const struct sbertd_ecache_params *p, sbertd_ecache **out, char *why,
                       size_t whylen)
{
    *out = NULL;
    if (!p->dir || !p->max_bytes || p->model.dim <= 0 || !p->model.weights_sha256 ||
        !p->model.precision || strlen(p->dir) >= sizeof((sbertd_ecache *)0)->dir)
        return sbert_util_errf(why, whylen, SBERTD_ECACHE_EINVAL, "invalid parameters");
    sbertd_ecache *c = calloc(1, sizeof *c);
    if (!c) return sbert_util_errf(why, whylen, SBERTD_ECACHE_ENOMEM, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    snprintf(c->dir, sizeof c->dir, "%s", p->dir);
    c->max_bytes = p->max_bytes;
    /* the vector table's pages hold two 384-dim entries each (1.6 KB records in 4 KiB pages),
     * and a write transaction's copied pages are freed only at its commit: twice the bound plus
     * room for a large write transaction */
    c->map_size = p->max_bytes * 2 + (64u << 20);
    c->dim = p->model.dim;
    c->log = p->log;
    c->log_user = p->log_user;
    read_boot_id(c->boot, sizeof c->boot);
    char ident[512];
    int n = snprintf(ident, sizeof ident,
                     "sbertd-ecache %u\nsha256 %s\npooling %d\nnormalize %d\nmax_seq_length "
                     "%d\ndim %d\nprecision %s\nkernel %s\n\n",
                     FORMAT, p->model.weights_sha256, p->model.pooling, p->model.normalize,
                     p->model.max_seq_length, p->model.dim, p->model.precision,
                     p->model.kernel ? p->model.kernel : "-");
    sbert_sha256_init(&c->prefix);
    sbert_sha256_update(&c->prefix, ident, (size_t)n);

    if (mkdir(c->dir, 0750) != 0 && errno != EEXIST) {
        int e = errno;
        pthread_mutex_destroy(&c->mu);
        free(c);
        return sbert_util_errf(why, whylen, SBERTD_ECACHE_EIO, "mkdir %s: %s", p->dir, strerror(e));
    }
    char data[4200], reason[256];
    struct stat st;
    path_of(c, "data.mdb", data, sizeof data);
    if (stat(data, &st) == 0 && !state_trusted(c, reason, sizeof reason)) {
        say(c, 1, "%s: %s; discarding it and starting empty", c->dir, reason);
        discard_files(c);
    }
    char err[512];
    int rc = env_open(c, err, sizeof err);
    if (rc) {
        say(c, 1, "%s cannot be opened (%s); discarding it and starting empty", c->dir, err);
        discard_files(c);
        rc = env_open(c, err, sizeof err);
    }
    int state = rc ? 0 : state_trusted(c, reason, sizeof reason);
    if (!rc && state == 0 && state_write(c, "clean")) {
        rc = sbert_util_errf(err, sizeof err, SBERTD_ECACHE_EIO, "cannot write %s/state: %s",
                             c->dir, strerror(errno));
        env_close(c);
    }
    c->dirty = state == 2; /* close syncs what the last run left unsynced */
    if (rc) {
        pthread_mutex_destroy(&c->mu);
        free(c);
        return sbert_util_errf(why, whylen, rc, "%s", err);
    }
    c->last_sync_us = now_us();
    *out = c;
    return 0;
}

void sbertd_ecache_close(sbertd_ecache *c)
{
    if (!c) return;
    if (c->env && c->dirty && mdb_env_sync(c->env, 1) == 0) state_write(c, "clean");
    env_close(c);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

void sbertd_ecache_key(const sbertd_ecache *c, const char *text, size_t len,
                       uint8_t key[SBERTD_ECACHE_KEY_BYTES])
{
    struct sbert_sha256 h = c->prefix;
    sbert_sha256_update(&h, text, len);
    sbert_sha256_final(&h, key);
}

/* ---- entries ----------------------------------------------------------------------------------
 */

static size_t value_bytes(const sbertd_ecache *c)
{
    return HEAD_BYTES + (size_t)c->dim * sizeof(float) + CHECK_BYTES;
}

/* What an entry's two records count in bytes: the key's (key, seq) and the vector's (seq, value).
 */
#define KEY_RECORD_BYTES (SBERTD_ECACHE_KEY_BYTES + 8u)
static uint64_t vec_record_bytes(const sbertd_ecache *c)
{
    return 8u + value_bytes(c);
}

static void entry_check(const uint8_t *val, size_t body, uint8_t out[CHECK_BYTES])
{
    struct sbert_sha256 h;
    uint8_t d[32];
    sbert_sha256_init(&h);
    sbert_sha256_update(&h, val, body);
    sbert_sha256_final(&h, d);
    memcpy(out, d, CHECK_BYTES);
}

/* 1 when v is an intact value of key (NULL: of any key) for c's dimension. */
static int entry_valid(const sbertd_ecache *c, const uint8_t *key, const MDB_val *v)
{
    if (v->mv_size != value_bytes(c)) return 0;
    const uint8_t *b = v->mv_data;
    uint32_t magic, dim;
    memcpy(&magic, b, 4);
    memcpy(&dim, b + 8, 4);
    if (magic != MAGIC || dim != (uint32_t)c->dim) return 0;
    if (key && memcmp(b + 16, key, SBERTD_ECACHE_KEY_BYTES) != 0) return 0;
    uint8_t chk[CHECK_BYTES];
    entry_check(b, v->mv_size - CHECK_BYTES, chk);
    return memcmp(chk, b + v->mv_size - CHECK_BYTES, CHECK_BYTES) == 0;
}

static void seq_key(uint64_t s, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--, s >>= 8)
        out[i] = (uint8_t)s;
}

/* Deletes key's record and the vector record it names, in txn, subtracting their bytes. */
static int entry_del(sbertd_ecache *c, MDB_txn *txn, const uint8_t *key)
{
    MDB_val k = {SBERTD_ECACHE_KEY_BYTES, (void *)key}, s, v;
    int rc = mdb_get(txn, c->keys, &k, &s);
    if (rc) return rc == MDB_NOTFOUND ? 0 : rc;
    uint8_t sk[8];
    int has_seq = s.mv_size == sizeof sk;
    if (has_seq) memcpy(sk, s.mv_data, sizeof sk);
    if ((rc = mdb_del(txn, c->keys, &k, NULL))) return rc;
    c->bytes = c->bytes > KEY_RECORD_BYTES ? c->bytes - KEY_RECORD_BYTES : 0;
    if (!has_seq) return 0;
    s.mv_size = sizeof sk;
    s.mv_data = sk;
    rc = mdb_get(txn, c->vec, &s, &v);
    if (rc) return rc == MDB_NOTFOUND ? 0 : rc;
    /* another key's vector: a damaged key record pointed there */
    if (v.mv_size >= HEAD_BYTES && memcmp((const uint8_t *)v.mv_data + 16, key, 32) != 0) return 0;
    if ((rc = mdb_del(txn, c->vec, &s, NULL))) return rc;
    uint64_t vr = vec_record_bytes(c);
    c->bytes = c->bytes > vr ? c->bytes - vr : 0;
    return 0;
}

/* Evicts the oldest entries (the vector table is in insertion order) until the bytes plus
 * incoming fit under max_bytes, or none is left. */
static int evict(sbertd_ecache *c, MDB_txn *txn, uint64_t incoming)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, c->vec, &cur);
    if (rc) return rc;
    MDB_val sk, v;
    uint64_t vr = vec_record_bytes(c);
    while (c->bytes + incoming > c->max_bytes &&
           (rc = mdb_cursor_get(cur, &sk, &v, MDB_FIRST)) == 0) {
        uint8_t key[SBERTD_ECACHE_KEY_BYTES], seq[8];
        int has_key = v.mv_size >= HEAD_BYTES && sk.mv_size == sizeof seq;
        if (has_key) {
            memcpy(key, (const uint8_t *)v.mv_data + 16, sizeof key);
            memcpy(seq, sk.mv_data, sizeof seq);
        }
        if ((rc = mdb_cursor_del(cur, 0))) break;
        c->bytes = c->bytes > vr ? c->bytes - vr : 0;
        c->evictions++;
        if (!has_key) continue;
        /* the key's record goes with it when it names this vector */
        MDB_val k = {sizeof key, key}, s;
        rc = mdb_get(txn, c->keys, &k, &s);
        if (rc == MDB_NOTFOUND) continue;
        if (rc) break;
        if (s.mv_size != sizeof seq || memcmp(s.mv_data, seq, sizeof seq) != 0) continue;
        if ((rc = mdb_del(txn, c->keys, &k, NULL))) break;
        c->bytes = c->bytes > KEY_RECORD_BYTES ? c->bytes - KEY_RECORD_BYTES : 0;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int save_bytes(sbertd_ecache *c, MDB_txn *txn)
{
    MDB_val k = K_BYTES, v = {sizeof c->bytes, &c->bytes};
    return mdb_put(txn, c->meta, &k, &v, 0);
}

/* Drops the entries of the n keys at bad (each failed its check). */
static void drop_bad(sbertd_ecache *c, const uint8_t *keys, const size_t *bad, size_t n)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(c->env, NULL, 0, &txn);
    for (size_t i = 0; !rc && i < n; i++)
        rc = entry_del(c, txn, keys + bad[i] * SBERTD_ECACHE_KEY_BYTES);
    if (!rc) rc = save_bytes(c, txn);
    if (rc)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    if (rc) reset(c, mdb_strerror(rc));
}

void sbertd_ecache_get(sbertd_ecache *c, const uint8_t *keys, size_t n, float *out, int *truncated,
                       int *found)
{
    memset(found, 0, n * sizeof *found);
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn = NULL;
    size_t *bad = NULL, n_bad = 0, hits = 0;
    int rc = c->env ? mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn) : 0;
    for (size_t i = 0; c->env && !rc && i < n; i++) {
        const uint8_t *key = keys + i * SBERTD_ECACHE_KEY_BYTES;
        MDB_val k = {SBERTD_ECACHE_KEY_BYTES, (void *)key}, s, v;
        rc = mdb_get(txn, c->keys, &k, &s);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            continue;
        }
        if (!rc && s.mv_size == 8) rc = mdb_get(txn, c->vec, &s, &v);
        if (rc && rc != MDB_NOTFOUND) break;
        if (rc || s.mv_size != 8 || !entry_valid(c, key, &v)) {
            rc = 0;
            if (!bad && !(bad = malloc(n * sizeof *bad))) continue;
            bad[n_bad++] = i;
            continue;
        }
        const uint8_t *b = v.mv_data;
        uint32_t flags;
        memcpy(&flags, b + 4, 4);
        memcpy(out + i * (size_t)c->dim, b + HEAD_BYTES, (size_t)c->dim * sizeof(float));
        truncated[i] = (int)(flags & 1u);
        found[i] = 1;
        hits++;
    }
    if (txn) mdb_txn_abort(txn);
    if (rc) {
        memset(found, 0, n * sizeof *found);
        hits = 0;
        reset(c, mdb_strerror(rc));
    } else if (n_bad) {
        say(c, 1, "%s: %zu entr%s failed their check; dropped, encoding again", c->dir, n_bad,
            n_bad == 1 ? "y" : "ies");
        drop_bad(c, keys, bad, n_bad);
    }
    c->hits += hits;
    c->misses += n - hits;
    pthread_mutex_unlock(&c->mu);
    free(bad);
}

/* Marks the state dirty before the first unsynced write; syncs and marks it clean once
 * SYNC_EVERY_US passed since the last sync. before: 1 ahead of a write, 0 after it. */
static int sync_state(sbertd_ecache *c, int before)
{
    if (before) {
        if (c->dirty) return 0;
        if (state_write(c, "dirty")) return SBERTD_ECACHE_EIO;
        c->dirty = 1;
        return 0;
    }
    if (!c->dirty || now_us() - c->last_sync_us < SYNC_EVERY_US) return 0;
    c->last_sync_us = now_us();
    if (mdb_env_sync(c->env, 1) || state_write(c, "clean")) return SBERTD_ECACHE_EIO;
    c->dirty = 0;
    return 0;
}

int sbertd_ecache_put(sbertd_ecache *c, const uint8_t *keys, size_t n, const float *vecs,
                      const int *truncated)
{
    size_t vb = value_bytes(c);
    uint8_t *val = malloc(vb);
    if (!val) return SBERTD_ECACHE_ENOMEM;
    pthread_mutex_lock(&c->mu);
    int rc = 0, ret = 0;
    MDB_txn *txn;
    if (!c->env) goto out;
    if (sync_state(c, 1)) {
        say(c, 1, "%s: cannot write its state file: %s; not storing", c->dir, strerror(errno));
        ret = SBERTD_ECACHE_EIO;
        goto out;
    }
    if ((rc = mdb_txn_begin(c->env, NULL, 0, &txn))) goto out;
    /* what the transaction changes in memory, restored should it not commit */
    uint64_t was_bytes = c->bytes, was_seq = c->next_seq, was_evictions = c->evictions;
    uint64_t incoming = (uint64_t)n * (KEY_RECORD_BYTES + vec_record_bytes(c));
    rc = evict(c, txn, incoming < c->max_bytes ? incoming : c->max_bytes);
    for (size_t i = 0; !rc && i < n; i++) {
        const uint8_t *key = keys + i * SBERTD_ECACHE_KEY_BYTES;
        uint32_t head[4] = {MAGIC, truncated && truncated[i] ? 1u : 0u, (uint32_t)c->dim, 0};
        memcpy(val, head, sizeof head);
        memcpy(val + 16, key, SBERTD_ECACHE_KEY_BYTES);
        memcpy(val + HEAD_BYTES, vecs + i * (size_t)c->dim, (size_t)c->dim * sizeof(float));
        entry_check(val, vb - CHECK_BYTES, val + vb - CHECK_BYTES);
        uint8_t sk[8];
        seq_key(c->next_seq, sk);
        MDB_val k = {SBERTD_ECACHE_KEY_BYTES, (void *)key}, s = {8, sk}, v = {vb, val};
        rc = mdb_put(txn, c->keys, &k, &s, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST) {
            rc = 0;
            continue;
        }
        /* appended in seq order: the vector table's pages fill up, and eviction takes its head */
        if (!rc) rc = mdb_put(txn, c->vec, &s, &v, MDB_APPEND);
        if (!rc) {
            c->next_seq++;
            c->bytes += KEY_RECORD_BYTES + vec_record_bytes(c);
        }
    }
    if (!rc) rc = evict(c, txn, 0);
    if (!rc) rc = save_bytes(c, txn);
    if (rc)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    if (rc) {
        c->bytes = was_bytes;
        c->next_seq = was_seq;
        c->evictions = was_evictions;
    }
    if (rc == MDB_MAP_FULL) {
        /* the pages LMDB keeps for its readers and free lists outgrew the map: make room for the
         * next writes rather than grow past the bound */
        say(c, 2, "%s: map full; evicting half of it", c->dir);
        uint64_t max = c->max_bytes;
        c->max_bytes = c->bytes / 2;
        int erc = mdb_txn_begin(c->env, NULL, 0, &txn);
        if (!erc && ((erc = evict(c, txn, 0)) || (erc = save_bytes(c, txn))))
            mdb_txn_abort(txn);
        else if (!erc)
            erc = mdb_txn_commit(txn);
        c->max_bytes = max;
        if (erc) reset(c, mdb_strerror(erc));
        ret = SBERTD_ECACHE_ELMDB;
        rc = 0;
    }
    if (!rc && sync_state(c, 0)) say(c, 1, "%s: sync failed: %s", c->dir, strerror(errno));
out:
    if (rc) {
        ret = SBERTD_ECACHE_ELMDB;
        reset(c, mdb_strerror(rc));
    }
    pthread_mutex_unlock(&c->mu);
    free(val);
    return ret;
}

void sbertd_ecache_stats(sbertd_ecache *c, struct sbertd_ecache_stats *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&c->mu);
    MDB_txn *txn;
    MDB_stat ms;
    if (c->env && !mdb_txn_begin(c->env, NULL, MDB_RDONLY, &txn)) {
        if (!mdb_stat(txn, c->vec, &ms)) st->entries = ms.ms_entries;
        mdb_txn_abort(txn);
    }
    st->open = c->env != NULL;
    st->bytes = c->env ? c->bytes : 0;
    st->max_bytes = c->max_bytes;
    st->hits = c->hits;
    st->misses = c->misses;
    st->evictions = c->evictions;
    pthread_mutex_unlock(&c->mu);
}
