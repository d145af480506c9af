/*
 * faults.c — the wrapped calls of faults.h and their control. Each __wrap_X asks fault_now()
 * whether this call of its family is the one to fail; if not it calls __real_X (the real
 * function, as GNU ld's --wrap names it).
 */
#define _GNU_SOURCE
#include "faults.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

#define NFAMILIES 9

static atomic_uint g_mask;
static atomic_int g_random;
static atomic_uint_fast64_t g_nth, g_calls, g_fired;
static atomic_uint g_last;
static atomic_int g_err[NFAMILIES];
static const int g_default_err[NFAMILIES] = {ENOMEM, EMFILE, EIO,    EIO, EIO,
                                             EIO,    ENOMEM, EAGAIN, EIO};
static const char *const g_names[NFAMILIES] = {"alloc",  "open", "read",   "write", "fsync",
                                               "rename", "mmap", "thread", "lmdb"};

static pthread_mutex_t g_rng_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_rng;
static double g_p;

static int family_index(unsigned family)
{
    for (int i = 0; i < NFAMILIES; i++)
        if (family == 1u << i) return i;
    return -1;
}

/* splitmix64 */
static uint64_t rng_next(void)
{
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* 0: make the call; else the errno (or LMDB code) this call of family fails with. */
static int fault_now(unsigned family)
{
    if (!(atomic_load(&g_mask) & family)) return 0;
    uint64_t n = atomic_fetch_add(&g_calls, 1) + 1;
    int fail;
    if (atomic_load(&g_random)) {
        pthread_mutex_lock(&g_rng_mu);
        fail = (double)(rng_next() >> 11) / 9007199254740992.0 < g_p;
        pthread_mutex_unlock(&g_rng_mu);
    } else
        fail = n == atomic_load(&g_nth);
    if (!fail) return 0;
    atomic_fetch_add(&g_fired, 1);
    atomic_store(&g_last, family);
    int i = family_index(family);
    int e = atomic_load(&g_err[i]);
    return e ? e : g_default_err[i];
}

void sbert_fault_arm(unsigned mask, uint64_t nth)
{
    atomic_store(&g_mask, 0u);
    atomic_store(&g_random, 0);
    atomic_store(&g_calls, 0);
    atomic_store(&g_fired, 0);
    atomic_store(&g_last, 0u);
    atomic_store(&g_nth, nth);
    atomic_store(&g_mask, mask);
}

void sbert_fault_arm_random(unsigned mask, double p, uint64_t seed)
{
    atomic_store(&g_mask, 0u);
    pthread_mutex_lock(&g_rng_mu);
    g_rng = seed;
    g_p = p;
    pthread_mutex_unlock(&g_rng_mu);
    atomic_store(&g_calls, 0);
    atomic_store(&g_fired, 0);
    atomic_store(&g_last, 0u);
    atomic_store(&g_random, 1);
    atomic_store(&g_mask, mask);
}

void sbert_fault_disarm(void)
{
    atomic_store(&g_mask, 0u);
}

void sbert_fault_set_errno(unsigned family, int err)
{
    int i = family_index(family);
    if (i >= 0) atomic_store(&g_err[i], err);
}

uint64_t sbert_fault_calls(void)
{
    return atomic_load(&g_calls);
}

uint64_t sbert_fault_fired(void)
{
    return atomic_load(&g_fired);
}

unsigned sbert_fault_last_family(void)
{
    return atomic_load(&g_last);
}

const char *sbert_fault_family_name(unsigned family)
{
    int i = family_index(family);
    return i >= 0 ? g_names[i] : "?";
}

/* ---- allocation ------------------------------------------------------------------------------ */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__real_aligned_alloc(size_t align, size_t n);

#define FAIL_ALLOC()                                                                               \
    do {                                                                                           \
        int e_ = fault_now(SBERT_FAULT_ALLOC);                                                     \
        if (e_) {                                                                                  \
            errno = e_;                                                                            \
            return NULL;                                                                           \
        }                                                                                          \
    } while (0)

void *__wrap_malloc(size_t n)
{
    FAIL_ALLOC();
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    FAIL_ALLOC();
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    FAIL_ALLOC();
    return __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    FAIL_ALLOC();
    return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    FAIL_ALLOC();
    return __real_strndup(s, n);
}

void *__wrap_aligned_alloc(size_t align, size_t n)
{
    FAIL_ALLOC();
    return __real_aligned_alloc(align, n);
}

/* cJSON allocates inside libcjson.so, out of --wrap's reach: its hooks bring it here. */
static void *cjson_malloc(size_t n)
{
    return __wrap_malloc(n);
}

/* Set when SBERT_FAULTS_CTL names a control FIFO (see the end of this file). */
static void ctl_start(void);

__attribute__((constructor)) static void faults_init(void)
{
    cJSON_Hooks hooks = {.malloc_fn = cjson_malloc, .free_fn = free};
    cJSON_InitHooks(&hooks);
    ctl_start();
}

/* ---- files ----------------------------------------------------------------------------------- */

int __real_open(const char *path, int flags, ...);
FILE *__real_fopen(const char *path, const char *mode);
int __real_mkostemp(char *tmpl, int flags);
ssize_t __real_read(int fd, void *buf, size_t n);
size_t __real_fread(void *buf, size_t size, size_t n, FILE *f);
ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_fsync(int fd);
int __real_fdatasync(int fd);
int __real_rename(const char *from, const char *to);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
int __real_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

#define FAIL_ERRNO(family, ret)                                                                    \
    do {                                                                                           \
        int e_ = fault_now(family);                                                                \
        if (e_) {                                                                                  \
            errno = e_;                                                                            \
            return ret;                                                                            \
        }                                                                                          \
    } while (0)

int __wrap_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    FAIL_ERRNO(SBERT_FAULT_OPEN, -1);
    return __real_open(path, flags, mode);
}

FILE *__wrap_fopen(const char *path, const char *mode)
{
    FAIL_ERRNO(SBERT_FAULT_OPEN, NULL);
    return __real_fopen(path, mode);
}

int __wrap_mkostemp(char *tmpl, int flags)
{
    FAIL_ERRNO(SBERT_FAULT_OPEN, -1);
    return __real_mkostemp(tmpl, flags);
}

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
    FAIL_ERRNO(SBERT_FAULT_READ, -1);
    return __real_read(fd, buf, n);
}

size_t __wrap_fread(void *buf, size_t size, size_t n, FILE *f)
{
    int e = fault_now(SBERT_FAULT_READ);
    if (e) {
        /* as a failed read(2) under stdio leaves it: ferror(f) true */
        f->_flags |= _IO_ERR_SEEN;
        errno = e;
        return 0;
    }
    return __real_fread(buf, size, n, f);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    FAIL_ERRNO(SBERT_FAULT_WRITE, -1);
    return __real_write(fd, buf, n);
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    FAIL_ERRNO(SBERT_FAULT_WRITE, -1);
    return __real_pwrite(fd, buf, n, off);
}

int __wrap_fsync(int fd)
{
    FAIL_ERRNO(SBERT_FAULT_FSYNC, -1);
    return __real_fsync(fd);
}

int __wrap_fdatasync(int fd)
{
    FAIL_ERRNO(SBERT_FAULT_FSYNC, -1);
    return __real_fdatasync(fd);
}

int __wrap_rename(const char *from, const char *to)
{
    FAIL_ERRNO(SBERT_FAULT_RENAME, -1);
    return __real_rename(from, to);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    FAIL_ERRNO(SBERT_FAULT_MMAP, MAP_FAILED);
    return __real_mmap(addr, len, prot, flags, fd, off);
}

int __wrap_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
    int e = fault_now(SBERT_FAULT_THREAD);
    if (e) return e;
    return __real_pthread_create(t, attr, fn, arg);
}

/* ---- LMDB ------------------------------------------------------------------------------------ */

#define LMDB_WRAP(name, params, args)                                                              \
    int __real_##name params;                                                                      \
    int __wrap_##name params                                                                       \
    {                                                                                              \
        int e_ = fault_now(SBERT_FAULT_LMDB);                                                      \
        if (e_) return e_;                                                                         \
        return __real_##name args;                                                                 \
    }

LMDB_WRAP(mdb_env_create, (MDB_env * *env), (env))
LMDB_WRAP(mdb_env_open, (MDB_env * env, const char *path, unsigned flags, mdb_mode_t mode),
          (env, path, flags, mode))
LMDB_WRAP(mdb_env_set_mapsize, (MDB_env * env, size_t size), (env, size))
LMDB_WRAP(mdb_env_copy2, (MDB_env * env, const char *path, unsigned flags), (env, path, flags))
LMDB_WRAP(mdb_env_sync, (MDB_env * env, int force), (env, force))
LMDB_WRAP(mdb_txn_begin, (MDB_env * env, MDB_txn *parent, unsigned flags, MDB_txn **txn),
          (env, parent, flags, txn))
LMDB_WRAP(mdb_dbi_open, (MDB_txn * txn, const char *name, unsigned flags, MDB_dbi *dbi),
          (txn, name, flags, dbi))
LMDB_WRAP(mdb_get, (MDB_txn * txn, MDB_dbi dbi, MDB_val *key, MDB_val *data), (txn, dbi, key, data))
LMDB_WRAP(mdb_put, (MDB_txn * txn, MDB_dbi dbi, MDB_val *key, MDB_val *data, unsigned flags),
          (txn, dbi, key, data, flags))
LMDB_WRAP(mdb_del, (MDB_txn * txn, MDB_dbi dbi, MDB_val *key, MDB_val *data), (txn, dbi, key, data))
LMDB_WRAP(mdb_cursor_open, (MDB_txn * txn, MDB_dbi dbi, MDB_cursor **cursor), (txn, dbi, cursor))
LMDB_WRAP(mdb_cursor_get, (MDB_cursor * c, MDB_val *key, MDB_val *data, MDB_cursor_op op),
          (c, key, data, op))
LMDB_WRAP(mdb_cursor_del, (MDB_cursor * c, unsigned flags), (c, flags))
LMDB_WRAP(mdb_stat, (MDB_txn * txn, MDB_dbi dbi, MDB_stat *st), (txn, dbi, st))

int __real_mdb_txn_commit(MDB_txn *txn);
int __wrap_mdb_txn_commit(MDB_txn *txn)
{
    int e = fault_now(SBERT_FAULT_LMDB);
    if (e) {
        /* LMDB frees the transaction whatever its commit returns */
        mdb_txn_abort(txn);
        return e;
    }
    return __real_mdb_txn_commit(txn);
}

/* ---- control from another process ------------------------------------------------------------ */

/*
 * A program linked with this library (sbertd_faults) is controlled through the FIFO named by the
 * environment variable SBERT_FAULTS_CTL, by a thread started before main(): one command a line,
 *   <seq> arm <families> <n>             sbert_fault_arm
 *   <seq> random <families> <p> <seed>   sbert_fault_arm_random
 *   <seq> errno <family> <err>           sbert_fault_set_errno (err: a number)
 *   <seq> off                            sbert_fault_disarm
 * where <families> is a comma-separated list of alloc, open, read, write, fsync, rename, mmap,
 * thread, lmdb, io, all. After each command the file <SBERT_FAULTS_CTL>.ack holds
 * "<seq> <calls> <fired>\n" (sbert_fault_calls, sbert_fault_fired): the controller waits for its
 * seq there before it goes on. The thread's own I/O calls the real functions, uncounted.
 */
static char g_ctl[4096];

static unsigned ctl_mask(char *list)
{
    unsigned mask = 0;
    for (char *save, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (strcmp(t, "io") == 0) mask |= SBERT_FAULT_IO;
        if (strcmp(t, "all") == 0) mask |= SBERT_FAULT_ALL;
        for (int i = 0; i < NFAMILIES; i++)
            if (strcmp(t, g_names[i]) == 0) mask |= 1u << i;
    }
    return mask;
}

static void ctl_command(char *line)
{
    char cmd[16] = "", fam[128] = "", a[64] = "", b[64] = "";
    unsigned long long seq;
    if (sscanf(line, "%llu %15s %127s %63s %63s", &seq, cmd, fam, a, b) < 2) return;
    if (strcmp(cmd, "arm") == 0)
        sbert_fault_arm(ctl_mask(fam), strtoull(a, NULL, 10));
    else if (strcmp(cmd, "random") == 0)
        sbert_fault_arm_random(ctl_mask(fam), strtod(a, NULL), strtoull(b, NULL, 10));
    else if (strcmp(cmd, "errno") == 0) {
        unsigned mask = ctl_mask(fam);
        for (unsigned f = 1; f & SBERT_FAULT_ALL; f <<= 1)
            if (mask & f) sbert_fault_set_errno(f, atoi(a));
    } else if (strcmp(cmd, "off") == 0)
        sbert_fault_disarm();
    char ack[128], path[4200];
    int n =
        snprintf(ack, sizeof ack, "%llu %llu %llu\n", seq, (unsigned long long)sbert_fault_calls(),
                 (unsigned long long)sbert_fault_fired());
    snprintf(path, sizeof path, "%s.ack", g_ctl);
    int fd = __real_open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    if (__real_write(fd, ack, (size_t)n) != n) ack[0] = 0;
    close(fd);
}

static void *ctl_main(void *arg)
{
    (void)arg;
    char buf[4096];
    size_t have = 0;
    for (;;) {
        /* blocks until the controller opens its end; reopened when it closes it */
        int fd = __real_open(g_ctl, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return NULL;
        ssize_t r;
        while ((r = __real_read(fd, buf + have, sizeof buf - 1 - have)) > 0) {
            have += (size_t)r;
            char *nl;
            while ((nl = memchr(buf, '\n', have))) {
                *nl = 0;
                ctl_command(buf);
                have -= (size_t)(nl + 1 - buf);
                memmove(buf, nl + 1, have);
            }
            if (have == sizeof buf - 1) have = 0;
        }
        close(fd);
    }
}

static void ctl_start(void)
{
    const char *p = getenv("SBERT_FAULTS_CTL");
    if (!p || !*p || strlen(p) >= sizeof g_ctl) return;
    snprintf(g_ctl, sizeof g_ctl, "%s", p);
    pthread_t t;
    /* created before main() blocks its signals, so this thread must not take any: block all */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (__real_pthread_create(&t, NULL, ctl_main, NULL) == 0) pthread_detach(t);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
