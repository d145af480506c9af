/*
 * faults_index.c — fault loops over the document store (sbert_index.h), one operation per run:
 *
 *   faults_index <open_fresh|open_existing|put|delete|get|query|snapshot|backup|close|random>
 *
 * For each fault configuration (a family and the error it injects) and N = 1, 2, ...: a copy of
 * a store of BASE documents is opened, the operation runs with call N of the family made to
 * fail, and then, with faults off:
 *   - the call returned 0 or the configuration's documented code (never a crash or a hang; ASan
 *     and LeakSanitizer check the rest in CI's build);
 *   - the store's contents (every document's id, text, metadata and vector) are those from
 *     before the operation or after it, never a mix, and "after" when it returned 0;
 *   - a write's remembered reply (req_id) exists exactly when its documents do;
 *   - the same operation then succeeds on the same handle;
 *   - closed and reopened, sbert_index_verify passes, the contents are the "after" ones and the
 *     vector index agrees with the store (each document is its own nearest neighbour).
 * The loop ends at the first N that the operation does not reach. "random" instead fails every
 * call of every family with a small probability over a sequence of writes and checks that no
 * acknowledged write is lost.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <time.h>

#include "faults.h"
#include "t.h"

#define BASE 12
#define N_MAX 20000 /* a loop that reaches this has not ended: a failure */

/* ---- the reference contents ------------------------------------------------------------------ */

struct digest {
    uint64_t h;
    size_t n;
};

static void fnv(uint64_t *h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        *h = (*h ^ b[i]) * 0x100000001b3ull;
}

static int digest_cb(const struct sbert_index_doc *d, void *user)
{
    struct digest *g = user;
    fnv(&g->h, d->id, d->id_len + 1);
    fnv(&g->h, d->text, d->text_len + 1);
    if (d->metadata) fnv(&g->h, d->metadata, d->metadata_len);
    fnv(&g->h, "|", 1);
    fnv(&g->h, d->vector, T_DIM * sizeof(float));
    g->n++;
    return 0;
}

/* The store's contents as one hash; {0, SIZE_MAX} when they cannot be read. */
static struct digest digest_of(sbert_index *idx)
{
    struct digest g = {0xcbf29ce484222325ull, 0};
    if (sbert_index_iterate(idx, NULL, 0, SBERT_INDEX_INCLUDE_ALL, digest_cb, &g) != 0)
        return (struct digest){0, SIZE_MAX};
    return g;
}

static int digest_eq(struct digest a, struct digest b)
{
    return a.h == b.h && a.n == b.n;
}

/* Every document is its own nearest neighbour and the vector index counts them all. */
struct agree {
    sbert_index *idx;
    int bad;
};

static int agree_cb(const struct sbert_index_doc *d, void *user)
{
    struct agree *a = user;
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 1;
    struct sbert_index_results *r = NULL;
    if (sbert_index_query(a->idx, d->vector, &q, &r) != 0 || r->n != 1 ||
        strcmp(r->docs[0].id, d->id) != 0)
        a->bad++;
    sbert_index_results_free(r);
    return 0;
}

static int index_agrees(sbert_index *idx)
{
    struct agree a = {idx, 0};
    struct sbert_index_stats st;
    if (sbert_index_iterate(idx, NULL, 0, SBERT_INDEX_INCLUDE_VECTOR, agree_cb, &a) != 0 ||
        sbert_index_stats(idx, &st) != 0)
        return 0;
    return a.bad == 0 && st.index_count == st.count;
}

/* A write that could not reach the vector index is repaired by the snapshot thread (need_rebuild,
 * index/rebuild.c): wait for it (the deadline only bounds a broken repair). */
static int index_agrees_soon(sbert_index *idx)
{
    for (int i = 0; i < 600; i++) {
        if (index_agrees(idx)) return 1;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* ---- documents and stores -------------------------------------------------------------------- */

static char g_root[4096], g_base[4200], g_run[4200], g_backup[4300];

static struct sbert_index_params params(void)
{
    struct sbert_index_params p = t_params("Flat");
    /* only the operation under test and its own close write snapshots */
    p.snapshot_changes = UINT64_MAX;
    p.snapshot_seconds = UINT32_MAX;
    p.map_size = 1 << 20;
    return p;
}

struct doc {
    char id[32], text[64], meta[64];
    float vec[T_DIM];
};

static void doc_make(struct doc *d, const char *id, int seed)
{
    snprintf(d->id, sizeof d->id, "%s", id);
    snprintf(d->text, sizeof d->text, "text of %s, version %d", id, seed);
    snprintf(d->meta, sizeof d->meta, "{\"n\":%d,\"tag\":\"%s\"}", seed, seed % 2 ? "odd" : "even");
    t_vec((uint64_t)seed + 1, d->vec, T_DIM);
}

static struct sbert_index_put_item doc_item(const struct doc *d)
{
    return (struct sbert_index_put_item){.id = d->id,
                                         .id_len = strlen(d->id),
                                         .text = d->text,
                                         .text_len = strlen(d->text),
                                         .metadata = d->meta,
                                         .metadata_len = strlen(d->meta),
                                         .vector = d->vec,
                                         .dim = T_DIM};
}

static int copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    if (!in) return errno == ENOENT ? 0 : -1;
    FILE *out = fopen(to, "wb");
    int rc = out ? 0 : -1;
    char buf[65536];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = -1;
    fclose(in);
    if (out && fclose(out)) rc = -1;
    return rc;
}

/* g_run: a fresh copy of the base store (its database and snapshot). */
static void run_fresh(void)
{
    t_rmrf(g_run);
    char a[4400], b[4400];
    if (mkdir(g_run, 0700)) exit(99);
    const char *files[] = {"store.mdb", "index.snap"};
    for (int i = 0; i < 2; i++) {
        snprintf(a, sizeof a, "%s/%s", g_base, files[i]);
        snprintf(b, sizeof b, "%s/%s", g_run, files[i]);
        if (copy_file(a, b)) exit(99);
    }
}

static sbert_index *open_run(void)
{
    struct sbert_index_params p = params();
    sbert_index *idx = NULL;
    char err[512] = "";
    if (sbert_index_open(g_run, &p, &idx, err, sizeof err)) {
        fprintf(stderr, "opening %s: %s\n", g_run, err);
        exit(98);
    }
    return idx;
}

static void make_base(void)
{
    struct sbert_index_params p = params();
    sbert_index *idx = NULL;
    if (sbert_index_open(g_base, &p, &idx, NULL, 0)) exit(97);
    struct doc d[BASE];
    struct sbert_index_put_item it[BASE];
    for (int i = 0; i < BASE; i++) {
        char id[32];
        snprintf(id, sizeof id, "doc-%d", i);
        doc_make(&d[i], id, i);
        it[i] = doc_item(&d[i]);
    }
    if (sbert_index_put(idx, it, BASE, NULL, NULL, 0)) exit(97);
    sbert_index_close(idx);
}

/* ---- the operations -------------------------------------------------------------------------- */

/* What an operation sees: the open store (NULL for the open operations, which set it). */
struct ctx {
    sbert_index *idx;
};

#define REQ_ID "req-17"

static int reply_fn(void *user, char **reply, size_t *len)
{
    (void)user;
    *reply = strdup("{\"ok\":true}");
    *len = *reply ? strlen(*reply) : 0;
    return *reply ? 0 : 1;
}

static const struct sbert_index_write_req g_req = {
    .req_id = REQ_ID, .req_id_len = sizeof REQ_ID - 1, .hash = 17, .reply = reply_fn};

static int op_put(struct ctx *c)
{
    struct doc d[3];
    doc_make(&d[0], "doc-3", 103); /* an upsert */
    doc_make(&d[1], "new-a", 200);
    doc_make(&d[2], "new-b", 201);
    struct sbert_index_put_item it[3] = {doc_item(&d[0]), doc_item(&d[1]), doc_item(&d[2])};
    return sbert_index_put_req(c->idx, it, 3, &g_req, NULL, NULL, 0);
}

static int op_delete(struct ctx *c)
{
    const char *ids[] = {"doc-1", "doc-5", "missing"};
    size_t lens[] = {5, 5, 7};
    int existed[3];
    size_t n;
    int rc = sbert_index_delete_req(c->idx, ids, lens, 3, existed, &n, &g_req, NULL, 0);
    if (rc == 0 && (n != 2 || !existed[0] || !existed[1] || existed[2])) rc = 999;
    return rc;
}

static int op_get(struct ctx *c)
{
    const char *ids[] = {"doc-2", "missing", "doc-7"};
    size_t lens[] = {5, 7, 5};
    struct sbert_index_results *r = NULL;
    int rc = sbert_index_get(c->idx, ids, lens, 3, SBERT_INDEX_INCLUDE_ALL, &r);
    if (rc == 0) {
        struct doc d;
        doc_make(&d, "doc-7", 7);
        if (r->n != 3 || !r->docs[0].found || r->docs[1].found || !r->docs[2].found ||
            strcmp(r->docs[2].text, d.text) != 0 || strcmp(r->docs[2].metadata, d.meta) != 0)
            rc = 999;
    } else if (r)
        rc = 998; /* a failed get leaves *out NULL */
    sbert_index_results_free(r);
    return rc;
}

static int op_query(struct ctx *c)
{
    struct doc d;
    doc_make(&d, "doc-4", 4);
    sbert_index_filter *f = NULL;
    const char *fj = "{\"tag\":\"even\"}";
    int rc = sbert_index_filter_compile(fj, strlen(fj), &f, NULL, 0);
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 3;
    q.filter = f;
    q.include = SBERT_INDEX_INCLUDE_ALL;
    struct sbert_index_results *r = NULL;
    if (rc == 0) rc = sbert_index_query(c->idx, d.vec, &q, &r);
    if (rc == 0 && (r->n != 3 || strcmp(r->docs[0].id, "doc-4") != 0)) rc = 999;
    sbert_index_results_free(r);
    sbert_index_filter_free(f);
    return rc;
}

/* A change for the snapshot and close operations to write out. */
static void prep_change(struct ctx *c)
{
    struct doc d;
    doc_make(&d, "doc-0", 300);
    struct sbert_index_put_item it = doc_item(&d);
    const char *del = "doc-9";
    size_t len = 5;
    if (sbert_index_put(c->idx, &it, 1, NULL, NULL, 0) ||
        sbert_index_delete(c->idx, &del, &len, 1, NULL, NULL, NULL, 0))
        exit(96);
}

static int op_snapshot(struct ctx *c)
{
    return sbert_index_snapshot(c->idx, NULL, 0);
}

static int op_backup(struct ctx *c)
{
    return sbert_index_backup(c->idx, g_backup, NULL, 0);
}

static int op_close(struct ctx *c)
{
    sbert_index_close(c->idx);
    c->idx = NULL;
    return 0;
}

static int op_open(struct ctx *c)
{
    struct sbert_index_params p = params();
    int rc = sbert_index_open(g_run, &p, &c->idx, NULL, 0);
    if (rc != 0 && c->idx) rc = 998; /* a failed open leaves *out NULL */
    return rc;
}

/* ---- the loop -------------------------------------------------------------------------------- */

struct config {
    const char *name;
    unsigned mask;
    int err;      /* 0: the family's default */
    int codes[3]; /* the codes a failure may return (0 ends the list) */
};

static const struct config g_configs[] = {
    {"alloc", SBERT_FAULT_ALLOC, 0, {SBERT_INDEX_ENOMEM}},
    {"lmdb-eio", SBERT_FAULT_LMDB, 0, {SBERT_INDEX_EIO}},
    {"lmdb-map-full", SBERT_FAULT_LMDB, MDB_MAP_FULL, {SBERT_INDEX_EIO, SBERT_INDEX_ENOSPC}},
    {"io-eio", SBERT_FAULT_IO, EIO, {SBERT_INDEX_EIO}},
    {"disk-full", SBERT_FAULT_WRITE | SBERT_FAULT_FSYNC, ENOSPC, {SBERT_INDEX_ENOSPC}},
    {"thread", SBERT_FAULT_THREAD, 0, {SBERT_INDEX_ENOMEM}},
};

struct opdef {
    const char *name;
    int (*run)(struct ctx *c);
    void (*prep)(struct ctx *c); /* before the faults, on the open store; may be NULL */
    int opens;                   /* 1: run opens g_run itself (fresh: g_run is removed first) */
    int fresh;
    int writes; /* 1: a write with g_req, whose reply exists iff it committed */
};

static const struct opdef g_ops[] = {
    {"open_fresh", op_open, NULL, 1, 1, 0},
    {"open_existing", op_open, NULL, 1, 0, 0},
    {"put", op_put, NULL, 0, 0, 1},
    {"delete", op_delete, NULL, 0, 0, 1},
    {"get", op_get, NULL, 0, 0, 0},
    {"query", op_query, NULL, 0, 0, 0},
    {"snapshot", op_snapshot, prep_change, 0, 0, 0},
    {"backup", op_backup, NULL, 0, 0, 0},
    {"close", op_close, prep_change, 0, 0, 0},
};

static int req_found(sbert_index *idx)
{
    uint64_t h;
    char *reply = NULL;
    size_t len;
    int rc = sbert_index_req_find(idx, REQ_ID, sizeof REQ_ID - 1, &h, &reply, &len);
    free(reply);
    return rc == 0;
}

static void setup(struct ctx *c, const struct opdef *op)
{
    if (op->fresh)
        t_rmrf(g_run);
    else
        run_fresh();
    t_rmrf(g_backup);
    c->idx = NULL;
    if (!op->opens) {
        c->idx = open_run();
        if (op->prep) op->prep(c);
    }
}

/* The reference run: the contents before and after the operation, without faults. */
static void reference(const struct opdef *op, struct digest *before, struct digest *after)
{
    struct ctx c;
    setup(&c, op);
    if (op->opens) {
        *before = (struct digest){0, 0};
        CHECK_RC(op->run(&c), 0);
        *after = digest_of(c.idx);
    } else {
        *before = digest_of(c.idx);
        CHECK_RC(op->run(&c), 0);
        if (!c.idx) c.idx = open_run();
        *after = digest_of(c.idx);
    }
    sbert_index_close(c.idx);
}

static int code_allowed(const struct config *cf, int rc)
{
    for (int i = 0; i < 3 && cf->codes[i]; i++)
        if (rc == cf->codes[i]) return 1;
    return 0;
}

/* Checks a backup written by a successful run: it verifies and holds the "after" contents. */
static void check_backup(struct digest after)
{
    struct sbert_index_verify_report rep;
    char err[512] = "";
    int rc = sbert_index_verify(g_backup, &rep, err, sizeof err);
    CHECK_RC(rc, 0);
    if (rc) fprintf(stderr, "  backup: %s\n", err);
    struct sbert_index_params p = params();
    sbert_index *b = NULL;
    CHECK_RC(sbert_index_open(g_backup, &p, &b, NULL, 0), 0);
    if (b) {
        CHECK(digest_eq(digest_of(b), after));
        sbert_index_close(b);
    }
}

/* One injected failure at call n; returns 1 when the operation reached call n. */
static int one(const struct opdef *op, const struct config *cf, uint64_t n, struct digest before,
               struct digest after)
{
    struct ctx c;
    setup(&c, op);
    for (unsigned f = 1; f & SBERT_FAULT_ALL; f <<= 1)
        sbert_fault_set_errno(f, cf->mask & f ? cf->err : 0);
    sbert_fault_arm(cf->mask, n);
    int rc = op->run(&c);
    sbert_fault_disarm();
    int fired = sbert_fault_fired() > 0;
    const char *fam = sbert_fault_family_name(sbert_fault_last_family());
    int failures = t_failures;
    if (!fired) {
        CHECK_RC(rc, 0);
    } else if (rc != 0 && !code_allowed(cf, rc) &&
               !(op->writes && rc == SBERT_INDEX_ECALLBACK && cf->mask == SBERT_FAULT_ALLOC)) {
        /* (ECALLBACK: the allocation that failed was reply_fn's own) */
        fprintf(stderr, "%s/%s: call %llu (%s) failed: returned %d (%s)\n", op->name, cf->name,
                (unsigned long long)n, fam, rc, sbert_index_strerror(rc));
        t_failures++;
    }

    /* The handle, faults off: before or after, never between; then the operation succeeds. */
    if (c.idx) {
        struct digest now = digest_of(c.idx);
        CHECK(digest_eq(now, after) || (rc != 0 && digest_eq(now, before)));
        if (op->writes) CHECK(req_found(c.idx) == digest_eq(now, after));
        if (rc != 0 && !op->opens) CHECK_RC(op->run(&c), 0);
        if (c.idx) CHECK(index_agrees_soon(c.idx));
        sbert_index_close(c.idx);
        c.idx = NULL;
    } else if (op->opens) {
        CHECK(rc != 0);
        CHECK_RC(op->run(&c), 0); /* the open that failed now succeeds */
        sbert_index_close(c.idx);
        c.idx = NULL;
    }
    if (op->run == op_backup) {
        /* a failed backup leaves no partial copy behind; the retry above wrote a whole one */
        check_backup(after);
    }

    /* Reopened: sound, the "after" contents, the vector index in agreement. */
    struct sbert_index_verify_report rep;
    char err[512] = "";
    int vrc = sbert_index_verify(g_run, &rep, err, sizeof err);
    CHECK_RC(vrc, 0);
    if (vrc) fprintf(stderr, "  verify: %s\n", err);
    sbert_index *idx = open_run();
    CHECK(digest_eq(digest_of(idx), after));
    CHECK(index_agrees(idx));
    sbert_index_close(idx);
    if (t_failures != failures)
        fprintf(stderr, "  ^ %s/%s: injected at call %llu (%s), returned %d\n", op->name, cf->name,
                (unsigned long long)n, fam, rc);
    return fired;
}

static int loop(const struct opdef *op)
{
    struct digest before, after;
    reference(op, &before, &after);
    uint64_t total = 0;
    for (size_t i = 0; i < sizeof g_configs / sizeof *g_configs; i++) {
        const struct config *cf = &g_configs[i];
        uint64_t n = 1;
        while (n < N_MAX && one(op, cf, n, before, after) && t_failures < 20)
            n++;
        CHECK(n < N_MAX);
        printf("%s/%s: %llu injection points\n", op->name, cf->name, (unsigned long long)(n - 1));
        total += n - 1;
    }
    printf("%s: %llu injection points in all\n", op->name, (unsigned long long)total);
    return t_failures;
}

/* ---- random: many writes, each call failing with a small probability ------------------------- */

static int random_run(void)
{
    run_fresh();
    sbert_index *idx = open_run();
    enum { ROUNDS = 300 };
    /* acked[i]: write i returned 0, so doc "r-<i>" (or its deletion) must be in the store */
    int acked[ROUNDS] = {0};
    uint64_t fired = 0;
    for (int i = 0; i < ROUNDS; i++) {
        struct doc d;
        char id[32];
        snprintf(id, sizeof id, "r-%d", i);
        doc_make(&d, id, 1000 + i);
        struct sbert_index_put_item it = doc_item(&d);
        sbert_fault_arm_random(SBERT_FAULT_ALL, 0.002, 17 + (uint64_t)i);
        int rc = sbert_index_put(idx, &it, 1, NULL, NULL, 0);
        if (i % 7 == 6) sbert_index_snapshot(idx, NULL, 0);
        sbert_fault_disarm();
        fired += sbert_fault_fired();
        acked[i] = rc == 0;
    }
    sbert_index_close(idx);
    idx = open_run();
    for (int i = 0; i < ROUNDS; i++) {
        char id[32];
        snprintf(id, sizeof id, "r-%d", i);
        const char *ids = id;
        size_t len = strlen(id);
        struct sbert_index_results *r = NULL;
        CHECK_RC(sbert_index_get(idx, &ids, &len, 1, 0, &r), 0);
        if (r && acked[i]) CHECK(r->docs[0].found);
        sbert_index_results_free(r);
    }
    CHECK(index_agrees(idx));
    sbert_index_close(idx);
    printf("random: %d writes, %llu failures injected\n", ROUNDS, (unsigned long long)fired);
    CHECK(fired > 0);
    return t_failures;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: faults_index <operation|random>\n");
        return 2;
    }
    t_tmpdir(g_root, sizeof g_root, "faults");
    snprintf(g_base, sizeof g_base, "%s/base", g_root);
    snprintf(g_run, sizeof g_run, "%s/run", g_root);
    snprintf(g_backup, sizeof g_backup, "%s/backup", g_root);
    make_base();
    int rc = -1;
    if (strcmp(argv[1], "random") == 0) rc = random_run();
    for (size_t i = 0; i < sizeof g_ops / sizeof *g_ops; i++)
        if (strcmp(argv[1], g_ops[i].name) == 0) rc = loop(&g_ops[i]);
    t_rmrf(g_root);
    if (rc < 0) {
        fprintf(stderr, "faults_index: unknown operation %s\n", argv[1]);
        return 2;
    }
    return rc ? 1 : 0;
}
