/* collections.c — the table of collections (op.h, server.h): the data directory is the collection
 * "default", every other one a store of its own in DATA/collections/NAME/ with its settings in
 * NAME/collection.json. A collection is created in DATA/collections/.tmp-NAME-XXXXXX and renamed
 * into place, and dropped by a rename to .trash-NAME-XXXXXX before its removal, each rename made
 * durable by an fsync of the parent: after a crash a collection is complete or absent, and what
 * an interrupted create or drop left is removed at the next start. */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct collection {
    char name[SBERTD_COLLECTION_NAME_MAX + 1];
    char dir[4200];
    sbert_index *store;
    struct sbertd_collection_params params;
};

#define SETTINGS_FILE "collection.json"

/* snprintf for the paths, names and messages here, whose buffers are sized for the longest data
 * directory (sbertd_config's) and name: through va_list, so that GCC does not guess at them. */
static void fmt(char *buf, size_t len, const char *f, ...) __attribute__((format(printf, 3, 4)));
static void fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, len, f, ap);
    va_end(ap);
}

/* ---- names and paths ------------------------------------------------------------------------- */

int sbertd_collection_name_check(const char *name, const char *what, struct sbert_proto_error *err)
{
    size_t n = strlen(name);
    int ok = n >= 1 && n <= SBERTD_COLLECTION_NAME_MAX && name[0] != '-';
    for (size_t i = 0; ok && i < n; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    }
    if (ok) return 0;
    return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                 "\"%s\" must be a collection name: 1..%d of A-Z a-z 0-9 _ -, "
                                 "not starting with -",
                                 what, SBERTD_COLLECTION_NAME_MAX);
}

static void parent_dir(const struct sbertd *d, char *buf, size_t len)
{
    snprintf(buf, len, "%s/collections", d->cfg.data);
}

/* fsync()s directory path, making a rename or creation in it durable. Returns 0 or -1 (errno). */
static int sync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) != 0) sbertd_log(LOG_WARNING, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

/* rm -rf path. */
static void remove_tree(const char *path)
{
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- settings file --------------------------------------------------------------------------- */

static int settings_write(const char *dir, const struct sbertd_collection_params *p)
{
    char path[4400];
    fmt(path, sizeof path, "%s/" SETTINGS_FILE, dir);
    cJSON *o = cJSON_CreateObject();
    char *text = NULL;
    if (!o || !cJSON_AddStringToObject(o, "index", p->index) ||
        !cJSON_AddNumberToObject(o, "ef_search", p->ef_search) ||
        !cJSON_AddNumberToObject(o, "nprobe", p->nprobe) ||
        !cJSON_AddStringToObject(o, "keyword_language", p->keyword_language) ||
        !(text = cJSON_PrintUnformatted(o))) {
        cJSON_Delete(o);
        errno = ENOMEM;
        return -1;
    }
    cJSON_Delete(o);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t len = strlen(text);
    int rc = fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0 ? -1 : 0;
    int e = errno;
    if (fd >= 0) close(fd);
    free(text);
    errno = e;
    return rc;
}

static int settings_read(const char *dir, struct sbertd_collection_params *p, char *why,
                         size_t whylen)
{
    char path[4400], buf[4096];
    fmt(path, sizeof path, "%s/" SETTINGS_FILE, dir);
    FILE *f = fopen(path, "re");
    if (!f) return fmt(why, whylen, "%s: %s", path, strerror(errno)), -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    cJSON *o = cJSON_Parse(buf);
    const cJSON *ix = cJSON_GetObjectItemCaseSensitive(o, "index"),
                *ef = cJSON_GetObjectItemCaseSensitive(o, "ef_search"),
                *np = cJSON_GetObjectItemCaseSensitive(o, "nprobe"),
                *kl = cJSON_GetObjectItemCaseSensitive(o, "keyword_language");
    int ok = cJSON_IsString(ix) && cJSON_IsNumber(ef) && cJSON_IsNumber(np) && cJSON_IsString(kl);
    if (ok) {
        snprintf(p->index, sizeof p->index, "%s", ix->valuestring);
        p->ef_search = ef->valueint;
        p->nprobe = np->valueint;
        snprintf(p->keyword_language, sizeof p->keyword_language, "%s", kl->valuestring);
    }
    cJSON_Delete(o);
    if (!ok) return fmt(why, whylen, "%s: not a collection's settings", path), -1;
    return 0;
}

/* ---- opening -----------------------------------------------------------------------------------
 */

void sbertd_collection_defaults(const struct sbertd *d, struct sbertd_collection_params *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->index, sizeof p->index, "%s", d->cfg.index_spec[0] ? d->cfg.index_spec : "Flat");
    p->ef_search = d->cfg.ef_search;
    p->nprobe = d->cfg.nprobe;
    snprintf(p->keyword_language, sizeof p->keyword_language, "%s", d->cfg.keyword_language);
}

static int store_open(struct sbertd *d, const char *dir, const struct sbertd_collection_params *p,
                      sbert_index **out, char *why, size_t whylen)
{
    struct sbert_index_params ip = sbert_index_default_params();
    ip.model = d->identity;
    ip.index_spec = p->index;
    ip.ef_search = p->ef_search;
    ip.nprobe = p->nprobe;
    ip.keyword_language = p->keyword_language;
    ip.snapshot_changes = d->cfg.snapshot_changes;
    ip.snapshot_seconds = d->cfg.snapshot_seconds;
    ip.log = sbertd_log_library;
    ip.log_user = "index";
    if (d->cfg.reindex_on_model_change) {
        ip.reindex_on_open = sbertd_reindex_encode;
        ip.reindex_user = d;
    }
    return sbert_index_open(dir, &ip, out, why, whylen);
}

/* Inserts c into the table, keeping "default" first and the rest by name. */
static int table_insert(struct sbertd *d, const struct collection *c)
{
    struct collection *t = realloc(d->colls, (d->n_colls + 1) * sizeof *t);
    if (!t) return -1;
    d->colls = t;
    size_t at = d->n_colls;
    while (at > 1 && strcmp(t[at - 1].name, c->name) > 0)
        at--;
    memmove(&t[at + 1], &t[at], (d->n_colls - at) * sizeof *t);
    t[at] = *c;
    d->n_colls++;
    return 0;
}

static struct collection *table_find(struct sbertd *d, const char *name)
{
    for (size_t i = 0; i < d->n_colls; i++)
        if (strcmp(d->colls[i].name, name) == 0) return &d->colls[i];
    return NULL;
}

/* Opens DATA/collections/NAME (name checked) into the table. Returns 0 or -1 (logged). */
static int open_one(struct sbertd *d, const char *parent, const char *name)
{
    struct collection c;
    memset(&c, 0, sizeof c);
    fmt(c.name, sizeof c.name, "%s", name);
    fmt(c.dir, sizeof c.dir, "%s/%s", parent, name);
    char why[1024];
    if (settings_read(c.dir, &c.params, why, sizeof why) ||
        store_open(d, c.dir, &c.params, &c.store, why, sizeof why)) {
        sbertd_log(LOG_ERR, "cannot open the collection %s: %s", name, why);
        return -1;
    }
    if (table_insert(d, &c)) {
        sbert_index_close(c.store);
        sbertd_log(LOG_ERR, "out of memory");
        return -1;
    }
    sbertd_log(LOG_INFO, "collection %s: index %s", name, c.params.index);
    return 0;
}

int sbertd_collections_open(struct sbertd *d)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* a drop waiting for the lock must not be starved by a steady stream of reads */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&d->coll_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    struct collection def;
    memset(&def, 0, sizeof def);
    snprintf(def.name, sizeof def.name, "default");
    snprintf(def.dir, sizeof def.dir, "%s", d->cfg.data);
    def.store = d->index;
    sbertd_collection_defaults(d, &def.params);
    if (table_insert(d, &def)) return -1;

    char parent[4200];
    parent_dir(d, parent, sizeof parent);
    DIR *dir = opendir(parent);
    if (!dir) {
        if (errno == ENOENT) return 0;
        sbertd_log(LOG_ERR, "cannot read %s: %s", parent, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(dir))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char path[4400];
        fmt(path, sizeof path, "%s/%s", parent, e->d_name);
        if (strncmp(e->d_name, ".tmp-", 5) == 0 || strncmp(e->d_name, ".trash-", 7) == 0) {
            sbertd_log(LOG_NOTICE, "removing %s, left by an interrupted create or drop", path);
            remove_tree(path);
            continue;
        }
        struct stat st;
        if (sbertd_collection_name_check(e->d_name, "", NULL) ||
            strcmp(e->d_name, "default") == 0 || stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            sbertd_log(LOG_WARNING, "%s is not a collection: ignored", path);
            continue;
        }
        rc = open_one(d, parent, e->d_name);
    }
    closedir(dir);
    if (!rc) sync_dir(parent);
    return rc;
}

void sbertd_collections_close(struct sbertd *d)
{
    for (size_t i = 1; i < d->n_colls; i++)
        sbert_index_close(d->colls[i].store);
    free(d->colls);
    d->colls = NULL;
    d->n_colls = 0;
    pthread_rwlock_destroy(&d->coll_lock);
}

/* ---- requests ----------------------------------------------------------------------------------
 */

int sbertd_collection_enter(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    r->store = NULL;
    if (!sbert_proto_op_member(r->op->proto, "collection")) return 0;
    const char *name = "default";
    int rc = sbert_proto_get_string(r->req.root, "collection", 0, SBERTD_COLLECTION_NAME_MAX + 1,
                                    &name, err);
    if (rc) return rc;
    rc = sbertd_collection_name_check(name, "collection", err);
    if (rc) return rc;
    pthread_rwlock_rdlock(&d->coll_lock);
    struct collection *c = table_find(d, name);
    if (!c) {
        pthread_rwlock_unlock(&d->coll_lock);
        return sbert_proto_error_set(err, SBERT_PROTO_ENO_COLLECTION, -1,
                                     "no collection \"%s\" (create_collection makes one)", name);
    }
    r->store = c->store;
    return 1;
}

void sbertd_collection_leave(struct sbertd *d)
{
    pthread_rwlock_unlock(&d->coll_lock);
}

int sbertd_collection_check(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    int held = sbertd_collection_enter(d, r, err);
    if (held < 0) return held;
    if (held) sbertd_collection_leave(d);
    r->store = NULL;
    return 0;
}

sbert_index *sbertd_req_store(const struct request *r)
{
    return r->store;
}

/* ---- create, drop, list ------------------------------------------------------------------------
 */

static int io_error(struct sbert_proto_error *err, const char *what, const char *path)
{
    int code = errno == ENOSPC ? SBERT_PROTO_ENO_SPACE : SBERT_PROTO_EIO_ERROR;
    return sbert_proto_error_set(err, code, -1, "%s %s: %s", what, path, strerror(errno));
}

/* A store that would not open or be created: a spec or language it refuses is the caller's
 * error, a full disk no_space, the rest an I/O error. */
static int store_error(int irc, const char *why, struct sbert_proto_error *err)
{
    int code = irc == SBERT_INDEX_ESPEC || irc == SBERT_INDEX_EINVAL ? SBERT_PROTO_EBAD_REQUEST
               : irc == SBERT_INDEX_ENOSPC                           ? SBERT_PROTO_ENO_SPACE
                                                                     : SBERT_PROTO_EIO_ERROR;
    return sbert_proto_error_set(err, code, -1, "%s", why[0] ? why : sbert_index_strerror(irc));
}

/* Builds the new collection's directory in a temporary one: its settings and an empty store.
 * Returns 0 or a SBERT_PROTO_E* code (the temporary directory removed). */
static int create_tmp(struct sbertd *d, const char *tmp, const struct sbertd_collection_params *p,
                      struct sbert_proto_error *err)
{
    if (settings_write(tmp, p)) return io_error(err, "cannot write the settings in", tmp);
    sbert_index *s = NULL;
    char why[1024] = "";
    int irc = store_open(d, tmp, p, &s, why, sizeof why);
    if (irc) return store_error(irc, why, err);
    sbert_index_close(s); /* its snapshot is written: the directory is complete */
    /* its entries durable before the rename makes it the collection */
    return sync_dir(tmp) ? io_error(err, "cannot sync", tmp) : 0;
}

int sbertd_collection_create(struct sbertd *d, const char *name,
                             const struct sbertd_collection_params *p,
                             struct sbert_proto_error *err)
{
    char parent[4200], tmp[4400];
    parent_dir(d, parent, sizeof parent);
    if (mkdir(parent, 0700) == 0)
        sync_dir(d->cfg.data);
    else if (errno != EEXIST)
        return io_error(err, "cannot create", parent);
    pthread_rwlock_wrlock(&d->coll_lock);
    int rc = 0;
    if (table_find(d, name)) {
        rc = sbert_proto_error_set(err, SBERT_PROTO_EEXISTS, -1, "the collection \"%s\" exists",
                                   name);
        goto out;
    }
    fmt(tmp, sizeof tmp, "%s/.tmp-%s-XXXXXX", parent, name);
    if (!mkdtemp(tmp)) {
        rc = io_error(err, "cannot create", tmp);
        goto out;
    }
    struct collection c;
    memset(&c, 0, sizeof c);
    fmt(c.name, sizeof c.name, "%s", name);
    fmt(c.dir, sizeof c.dir, "%s/%s", parent, name);
    c.params = *p;
    rc = create_tmp(d, tmp, p, err);
    if (!rc && rename(tmp, c.dir) != 0) rc = io_error(err, "cannot rename into", c.dir);
    if (rc) {
        remove_tree(tmp);
        goto out;
    }
    if (sync_dir(parent)) {
        rc = io_error(err, "cannot sync", parent);
        goto out;
    }
    char why[1024] = "";
    int irc = store_open(d, c.dir, p, &c.store, why, sizeof why);
    if (irc) {
        rc = store_error(irc, why, err);
        goto out;
    }
    if (table_insert(d, &c)) {
        sbert_index_close(c.store);
        rc = sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
        goto out;
    }
    sbertd_log(LOG_NOTICE, "collection %s created: index %s", name, p->index);
out:
    pthread_rwlock_unlock(&d->coll_lock);
    return rc;
}

int sbertd_collection_drop(struct sbertd *d, const char *name, uint64_t *documents,
                           struct sbert_proto_error *err)
{
    if (strcmp(name, "default") == 0)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "the collection \"default\" cannot be dropped");
    char parent[4200], trash[4400];
    parent_dir(d, parent, sizeof parent);
    /* waits for every request that uses a collection to finish */
    pthread_rwlock_wrlock(&d->coll_lock);
    struct collection *c = table_find(d, name);
    int rc = 0, moved = 0;
    if (!c) {
        rc = sbert_proto_error_set(err, SBERT_PROTO_ENO_COLLECTION, -1, "no collection \"%s\"",
                                   name);
        goto out;
    }
    *documents = 0;
    sbert_index_count(c->store, documents);
    fmt(trash, sizeof trash, "%s/.trash-%s-XXXXXX", parent, name);
    if (!mkdtemp(trash)) {
        rc = io_error(err, "cannot create", trash);
        goto out;
    }
    sbert_index_close(c->store);
    c->store = NULL;
    /* rename(2) replaces the empty directory mkdtemp made; from here on the collection is gone */
    moved = rename(c->dir, trash) == 0;
    if (!moved) {
        rc = io_error(err, "cannot move away", c->dir);
        rmdir(trash);
        /* reopen what could not be moved, so that the table stays true */
        char why[1024] = "";
        if (store_open(d, c->dir, &c->params, &c->store, why, sizeof why) == 0) goto out;
        sbertd_log(LOG_ERR, "collection %s cannot be reopened until a restart: %s", name, why);
    } else if (sync_dir(parent) != 0) {
        sbertd_log(LOG_WARNING, "cannot sync %s: %s", parent, strerror(errno));
    }
    memmove(c, c + 1, (size_t)(d->colls + d->n_colls - (c + 1)) * sizeof *c);
    d->n_colls--;
out:
    pthread_rwlock_unlock(&d->coll_lock);
    if (moved) {
        remove_tree(trash);
        sync_dir(parent);
    }
    if (!rc)
        sbertd_log(LOG_NOTICE, "collection %s dropped (%llu documents)", name,
                   (unsigned long long)*documents);
    return rc;
}

int sbertd_collections_each(struct sbertd *d, const char *only,
                            int (*fn)(void *user, const struct sbertd_collection_view *c),
                            void *user, struct sbert_proto_error *err)
{
    pthread_rwlock_rdlock(&d->coll_lock);
    int rc = 0, seen = 0;
    for (size_t i = 0; !rc && i < d->n_colls; i++) {
        const struct collection *c = &d->colls[i];
        if (only && strcmp(only, c->name) != 0) continue;
        seen = 1;
        struct sbertd_collection_view v = {c->name, c->store, c->dir, i ? &c->params : NULL};
        rc = fn(user, &v);
    }
    pthread_rwlock_unlock(&d->coll_lock);
    if (!rc && only && !seen)
        rc = sbert_proto_error_set(err, SBERT_PROTO_ENO_COLLECTION, -1, "no collection \"%s\"",
                                   only);
    return rc;
}

size_t sbertd_collections_count(struct sbertd *d)
{
    pthread_rwlock_rdlock(&d->coll_lock);
    size_t n = d->n_colls;
    pthread_rwlock_unlock(&d->coll_lock);
    return n;
}

int sbertd_keyword_enabled(struct sbertd *d, const sbert_index *store)
{
    /* the caller's request holds the collection lock shared: the table stands still */
    for (size_t i = 0; i < d->n_colls; i++)
        if (d->colls[i].store == store)
            return strcmp(d->colls[i].params.keyword_language, "off") != 0;
    return 0;
}
