/*
 * test_req_store.c — the store's remembered writes (sbert_index_put_req / delete_req /
 * req_find, index/include/sbert_index.h), against a real LMDB store in a temporary directory:
 *   - a put and a delete record the reply the callback builds from their final outputs (generated
 *     ids, existed flags, n_deleted), and it survives close and reopen;
 *   - a failing callback aborts the whole write (nothing stored, nothing recorded);
 *   - recording a req_id again replaces the record;
 *   - a store written before the "reqs"/"reqseq" databases existed (they are dropped here with
 *     raw LMDB) opens, keeps its documents, and records writes again;
 *   - the window: with req_keep = 3 only the newest 3 records are found (a replaced record's old
 *     place does not count), and with req_keep_seconds = 1 none is found 2 s later.
 * Exit status: the number of failed checks.
 */
#include <lmdb.h>

#include "t.h"

struct cb {
    struct sbert_index_put_item *items; /* put: the outputs to put in the reply */
    const int *existed;                 /* delete */
    const size_t *n_deleted;
    size_t n;
    int fail; /* return an error instead of a reply */
    int calls;
};

/* "put:<id>,<replaced>;..." or "del:<n_deleted>:<existed...>" */
static int reply_cb(void *user, char **reply, size_t *len)
{
    struct cb *c = user;
    c->calls++;
    if (c->fail) return -1;
    char buf[4096];
    size_t at = 0;
    if (c->items) {
        at += (size_t)snprintf(buf, sizeof buf, "put:");
        for (size_t i = 0; i < c->n; i++)
            at += (size_t)snprintf(buf + at, sizeof buf - at, "%s,%d;",
                                   c->items[i].id ? c->items[i].id : c->items[i].gen_id,
                                   c->items[i].replaced);
    } else {
        at += (size_t)snprintf(buf, sizeof buf, "del:%zu:", *c->n_deleted);
        for (size_t i = 0; i < c->n; i++)
            buf[at++] = (char)('0' + c->existed[i]);
        buf[at] = 0;
    }
    *reply = strdup(buf);
    *len = at;
    return *reply ? 0 : -1;
}

static sbert_index *open_store_keep(const char *dir, uint64_t keep, uint32_t keep_s)
{
    struct sbert_index_params p = t_params(NULL);
    p.req_keep = keep;
    p.req_keep_seconds = keep_s;
    sbert_index *idx = NULL;
    char err[512] = "";
    int rc = sbert_index_open(dir, &p, &idx, err, sizeof err);
    if (rc) fprintf(stderr, "open %s: %s: %s\n", dir, sbert_index_strerror(rc), err);
    return idx;
}

static sbert_index *open_store(const char *dir)
{
    return open_store_keep(dir, 0, 0);
}

/* Records a delete of a missing id under req_id (a write with nothing else to it). */
static void record(sbert_index *idx, const char *req_id, uint64_t hash)
{
    const char *id = "nothing";
    size_t len = 7, deleted = 0;
    int existed = 0;
    struct cb c = {.existed = &existed, .n_deleted = &deleted, .n = 1};
    struct sbert_index_write_req w = {req_id, strlen(req_id), hash, reply_cb, &c};
    CHECK_RC(sbert_index_delete_req(idx, &id, &len, 1, &existed, &deleted, &w, NULL, 0), 0);
}

/* Finds req_id and compares its record with hash and want (NULL: must be absent). */
static void check_find(sbert_index *idx, const char *req_id, uint64_t hash, const char *want,
                       int line)
{
    uint64_t h = 0;
    char *reply = NULL;
    size_t len = 0;
    int rc = sbert_index_req_find(idx, req_id, strlen(req_id), &h, &reply, &len);
    int ok = want ? rc == 0 && h == hash && len == strlen(want) && strcmp(reply, want) == 0
                  : rc == SBERT_INDEX_ENOTFOUND;
    if (!ok) {
        fprintf(stderr, "line %d: req_find(%s): rc %d, hash %llx, reply \"%s\"; wanted \"%s\"\n",
                line, req_id, rc, (unsigned long long)h, reply ? reply : "",
                want ? want : "(none)");
        t_failures++;
    }
    free(reply);
}

/* Drops the databases added after format 1, as in a store written by an older sbertd. */
static void drop_req_dbs(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/store.mdb", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi a, b;
    CHECK(mdb_env_create(&env) == 0);
    CHECK(mdb_env_set_maxdbs(env, 8) == 0);
    CHECK(mdb_env_set_mapsize(env, 1u << 30) == 0);
    CHECK(mdb_env_open(env, path, MDB_NOSUBDIR, 0600) == 0);
    CHECK(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "reqs", 0, &a) == 0);
    CHECK(mdb_dbi_open(txn, "reqseq", MDB_INTEGERKEY, &b) == 0);
    CHECK(mdb_drop(txn, a, 1) == 0);
    CHECK(mdb_drop(txn, b, 1) == 0);
    CHECK(mdb_txn_commit(txn) == 0);
    CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
    CHECK(mdb_dbi_open(txn, "reqs", 0, &a) == MDB_NOTFOUND);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

int main(void)
{
    char tmp[512], dir[600];
    t_tmpdir(tmp, sizeof tmp, "reqs");
    snprintf(dir, sizeof dir, "%s/s", tmp);
    sbert_index *idx = open_store(dir);
    if (!idx) return 1;
    float v[2][T_DIM];
    t_vec(1, v[0], T_DIM);
    t_vec(2, v[1], T_DIM);
    char err[512] = "";
    uint64_t count = 0;

    /* a put with generated ids and a client id: the reply sees the final outputs */
    struct sbert_index_put_item items[2] = {
        {.text = "generated", .text_len = 9, .vector = v[0], .dim = T_DIM},
        {.id = "doc-1", .id_len = 5, .text = "given", .text_len = 5, .vector = v[1], .dim = T_DIM},
    };
    struct cb c = {.items = items, .n = 2};
    struct sbert_index_write_req wr = {"put-1", 5, 0x1111, reply_cb, &c};
    CHECK_RC(sbert_index_put_req(idx, items, 2, &wr, NULL, err, sizeof err), 0);
    CHECK(c.calls >= 1 && strlen(items[0].gen_id) == 36);
    char want_put[200];
    snprintf(want_put, sizeof want_put, "put:%s,0;doc-1,0;", items[0].gen_id);
    check_find(idx, "put-1", 0x1111, want_put, __LINE__);
    check_find(idx, "put-2", 0, NULL, __LINE__);

    /* a failing callback aborts the write: nothing stored, nothing recorded */
    struct sbert_index_put_item more = {
        .id = "doc-2", .id_len = 5, .text = "x", .text_len = 1, .vector = v[0], .dim = T_DIM};
    struct cb cf = {.items = &more, .n = 1, .fail = 1};
    struct sbert_index_write_req wf = {"put-2", 5, 0x2222, reply_cb, &cf};
    CHECK_RC(sbert_index_put_req(idx, &more, 1, &wf, NULL, err, sizeof err), SBERT_INDEX_ECALLBACK);
    CHECK_RC(sbert_index_count(idx, &count), 0);
    CHECK(count == 2);
    check_find(idx, "put-2", 0, NULL, __LINE__);

    /* a delete: the callback sees existed and n_deleted */
    const char *ids[2] = {"doc-1", "missing"};
    size_t lens[2] = {5, 7}, deleted = 0;
    int existed[2] = {0, 0};
    struct cb cd = {.existed = existed, .n_deleted = &deleted, .n = 2};
    struct sbert_index_write_req wd = {"del-1", 5, 0x3333, reply_cb, &cd};
    CHECK_RC(sbert_index_delete_req(idx, ids, lens, 2, existed, &deleted, &wd, err, sizeof err), 0);
    CHECK(deleted == 1 && existed[0] == 1 && existed[1] == 0);
    check_find(idx, "del-1", 0x3333, "del:1:10", __LINE__);
    /* a delete record needs the outputs it describes */
    CHECK_RC(sbert_index_delete_req(idx, ids, lens, 2, NULL, NULL, &wd, err, sizeof err),
             SBERT_INDEX_EINVAL);

    /* recording the same req_id again replaces its record */
    deleted = 0;
    struct sbert_index_write_req wd2 = {"del-1", 5, 0x4444, reply_cb, &cd};
    CHECK_RC(sbert_index_delete_req(idx, ids, lens, 2, existed, &deleted, &wd2, err, sizeof err),
             0);
    check_find(idx, "del-1", 0x4444, "del:0:00", __LINE__);

    /* records survive close and reopen */
    sbert_index_close(idx);
    idx = open_store(dir);
    if (!idx) return 1;
    check_find(idx, "put-1", 0x1111, want_put, __LINE__);
    check_find(idx, "del-1", 0x4444, "del:0:00", __LINE__);
    sbert_index_close(idx);

    /* a store without the req databases (written before they existed) opens and records */
    drop_req_dbs(dir);
    idx = open_store(dir);
    if (!idx) return 1;
    CHECK_RC(sbert_index_count(idx, &count), 0);
    CHECK(count == 1);
    check_find(idx, "put-1", 0, NULL, __LINE__);
    struct cb cm = {.items = &more, .n = 1};
    struct sbert_index_write_req wm = {"put-3", 5, 0x5555, reply_cb, &cm};
    CHECK_RC(sbert_index_put_req(idx, &more, 1, &wm, NULL, err, sizeof err), 0);
    check_find(idx, "put-3", 0x5555, "put:doc-2,0;", __LINE__);
    sbert_index_close(idx);
    idx = open_store(dir);
    if (!idx) return 1;
    check_find(idx, "put-3", 0x5555, "put:doc-2,0;", __LINE__);
    CHECK_RC(sbert_index_count(idx, &count), 0);
    CHECK(count == 2);
    sbert_index_close(idx);

    /* the window by count: the newest 3; r1's replacement moves it to the newest */
    idx = open_store_keep(dir, 3, 0);
    if (!idx) return 1;
    record(idx, "r1", 1);
    record(idx, "r2", 2);
    record(idx, "r3", 3);
    record(idx, "r1", 11);
    record(idx, "r4", 4);
    check_find(idx, "put-3", 0, NULL, __LINE__);
    check_find(idx, "r2", 0, NULL, __LINE__);
    check_find(idx, "r3", 3, "del:0:0", __LINE__);
    check_find(idx, "r1", 11, "del:0:0", __LINE__);
    check_find(idx, "r4", 4, "del:0:0", __LINE__);
    record(idx, "r5", 5);
    check_find(idx, "r3", 0, NULL, __LINE__);
    check_find(idx, "r1", 11, "del:0:0", __LINE__);
    sbert_index_close(idx);

    /* the window by age: found at once, not 4 s later (pruned by the next record). Ages are
     * whole seconds of time(): with a 3 s window "at once" has at least 2 s to happen in
     * however the record falls within its second (with 1 s, a second boundary crossed between
     * the record and the find would hide the entry), and 4 s later is past it in any case. */
    idx = open_store_keep(dir, 0, 3);
    if (!idx) return 1;
    record(idx, "old", 6);
    check_find(idx, "old", 6, "del:0:0", __LINE__);
    sleep(4);
    check_find(idx, "old", 0, NULL, __LINE__);
    record(idx, "new", 7);
    check_find(idx, "new", 7, "del:0:0", __LINE__);
    sbert_index_close(idx);
    idx = open_store(dir); /* the default 24 h window: "old" and r5 were pruned, not hidden */
    if (!idx) return 1;
    check_find(idx, "old", 0, NULL, __LINE__);
    check_find(idx, "r5", 0, NULL, __LINE__);
    check_find(idx, "new", 7, "del:0:0", __LINE__);
    sbert_index_close(idx);

    t_rmrf(tmp);
    if (t_failures)
        fprintf(stderr, "%d checks failed\n", t_failures);
    else
        printf("ok: remembered writes\n");
    return t_failures;
}
