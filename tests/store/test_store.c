/*
 * test_store.c — the document store against a real LMDB environment in a temporary directory:
 * put/get/delete/upsert semantics, all-or-nothing batches, ids, iteration, persistence, snapshot
 * replay and rebuild (deleted, damaged, truncated), index/store agreement, model mismatch, map
 * growth from 64 KiB, filtered queries returning a full k, pairs against brute force, backup,
 * reindex. Usage: test_store [SPEC...] (default: Flat, HNSW32,Flat and IVF4,Flat).
 */
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "t.h"

static char g_root[4096];
static int g_case;

static void newdir(char *out, size_t cap)
{
    snprintf(out, cap, "%s/case%d", g_root, g_case++);
}

static sbert_index *open_ok(const char *dir, const struct sbert_index_params *p, int line)
{
    sbert_index *idx = NULL;
    char err[1024] = "";
    int rc = sbert_index_open(dir, p, &idx, err, sizeof err);
    if (rc) {
        fprintf(stderr, "test_store.c:%d: open %s failed: %s: %s\n", line, dir,
                sbert_index_strerror(rc), err);
        t_failures++;
        exit(1);
    }
    return idx;
}
#define OPEN(dir, p) open_ok((dir), (p), __LINE__)

/* Puts docs "doc<i>" for i in [from, to) with vector seed i and metadata {"n":i,"mod":i%m}. */
static int put_range(sbert_index *idx, int from, int to, int mod)
{
    size_t n = (size_t)(to - from);
    struct sbert_index_put_item *it = calloc(n, sizeof *it);
    char(*ids)[32] = calloc(n, 32), (*metas)[64] = calloc(n, 64), (*texts)[64] = calloc(n, 64);
    float *vecs = malloc(n * T_DIM * sizeof *vecs);
    for (size_t i = 0; i < n; i++) {
        int k = from + (int)i;
        snprintf(ids[i], 32, "doc%06d", k);
        snprintf(texts[i], 64, "text of document %d", k);
        snprintf(metas[i], 64, "{\"n\":%d,\"mod\":%d}", k, k % mod);
        t_vec((uint64_t)k, vecs + i * T_DIM, T_DIM);
        it[i].id = ids[i];
        it[i].id_len = strlen(ids[i]);
        it[i].text = texts[i];
        it[i].text_len = strlen(texts[i]);
        it[i].metadata = metas[i];
        it[i].metadata_len = strlen(metas[i]);
        it[i].vector = vecs + i * T_DIM;
    }
    char err[512] = "";
    int rc = sbert_index_put(idx, it, n, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "  put_range: %s\n", err);
    free(it);
    free(ids);
    free(metas);
    free(texts);
    free(vecs);
    return rc;
}

/* The index and the store hold the same live documents: the counts agree and every stored
 * document is found by a query with its own vector. */
struct agree_ctx {
    sbert_index *idx;
    size_t seen, missing;
};

static int agree_cb(const struct sbert_index_doc *d, void *user)
{
    struct agree_ctx *a = user;
    a->seen++;
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 5;
    struct sbert_index_results *r;
    if (sbert_index_query(a->idx, d->vector, &q, &r)) {
        a->missing++;
        return 0;
    }
    int found = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->docs[i].id_len == d->id_len && memcmp(r->docs[i].id, d->id, d->id_len) == 0)
            found = 1;
    a->missing += !found;
    sbert_index_results_free(r);
    return 0;
}

static void check_agree(sbert_index *idx, int line)
{
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    struct agree_ctx a = {idx, 0, 0};
    CHECK_RC(sbert_index_iterate(idx, NULL, 0, SBERT_INDEX_INCLUDE_VECTOR, agree_cb, &a), 0);
    if (st.count != st.index_count || a.seen != st.count || a.missing) {
        fprintf(stderr,
                "test_store.c:%d: store and index disagree: count %llu, index %llu, iterated "
                "%zu, not found by own vector %zu\n",
                line, (unsigned long long)st.count, (unsigned long long)st.index_count, a.seen,
                a.missing);
        t_failures++;
    }
}
#define AGREE(idx) check_agree((idx), __LINE__)

static struct sbert_index_doc *get1(sbert_index *idx, const char *id, unsigned include,
                                    struct sbert_index_results **hold)
{
    size_t len = strlen(id);
    if (sbert_index_get(idx, &id, &len, 1, include, hold)) return NULL;
    return &(*hold)->docs[0];
}

/* ---- cases ----------------------------------------------------------------------------------- */

static void test_basic(const char *spec)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params(spec);
    sbert_index *idx = OPEN(dir, &p);
    uint64_t n;
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 0);

    /* a batch with a given id, a generated id and no metadata */
    float v[3][T_DIM];
    for (int i = 0; i < 3; i++)
        t_vec(1000 + (uint64_t)i, v[i], T_DIM);
    struct sbert_index_put_item it[3] = {
        {.id = "alpha",
         .id_len = 5,
         .text = "first",
         .text_len = 5,
         .metadata = "{ \"k\" : 1 }",
         .metadata_len = 11,
         .vector = v[0]},
        {.id = NULL, .text = "second", .text_len = 6, .vector = v[1]},
        {.id = NULL, .text = "", .text_len = 0, .vector = v[2]},
    };
    CHECK_RC(sbert_index_put(idx, it, 3, NULL, NULL, 0), 0);
    CHECK(it[0].gen_id[0] == 0 && it[0].replaced == 0);
    CHECK(strlen(it[1].gen_id) == 36 && it[1].gen_id[14] == '7');
    CHECK(strlen(it[2].gen_id) == 36 && strcmp(it[1].gen_id, it[2].gen_id) < 0);
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 3);

    struct sbert_index_results *r;
    struct sbert_index_doc *d = get1(idx, "alpha", SBERT_INDEX_INCLUDE_ALL, &r);
    CHECK(d && d->found == 1 && d->text_len == 5 && strcmp(d->text, "first") == 0);
    CHECK(d && d->metadata && strcmp(d->metadata, "{\"k\":1}") == 0);
    CHECK(d && d->vector && fabsf(d->vector[3] - v[0][3]) < 1e-6f);
    sbert_index_results_free(r);
    d = get1(idx, it[1].gen_id, SBERT_INDEX_INCLUDE_TEXT, &r);
    CHECK(d && d->found && strcmp(d->text, "second") == 0 && d->metadata == NULL &&
          d->vector == NULL);
    sbert_index_results_free(r);
    d = get1(idx, "nope", SBERT_INDEX_INCLUDE_ALL, &r);
    CHECK(d && d->found == 0 && strcmp(d->id, "nope") == 0 && d->text == NULL);
    sbert_index_results_free(r);

    /* query: itself first with score 1; include flags; min_score */
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 3;
    q.include = SBERT_INDEX_INCLUDE_TEXT | SBERT_INDEX_INCLUDE_METADATA;
    CHECK_RC(sbert_index_query(idx, v[0], &q, &r), 0);
    CHECK(r->n == 3 && strcmp(r->docs[0].id, "alpha") == 0 && fabsf(r->docs[0].score - 1) < 1e-5f);
    CHECK(r->n == 3 && strcmp(r->docs[0].text, "first") == 0 && r->docs[0].vector == NULL);
    CHECK(r->n == 3 && r->docs[0].score >= r->docs[1].score &&
          r->docs[1].score >= r->docs[2].score);
    sbert_index_results_free(r);
    q.min_score = 0.99f;
    CHECK_RC(sbert_index_query(idx, v[0], &q, &r), 0);
    CHECK(r->n == 1);
    sbert_index_results_free(r);
    /* an unnormalised query vector is normalised: same scores */
    float big[T_DIM];
    for (int i = 0; i < T_DIM; i++)
        big[i] = v[0][i] * 7;
    CHECK_RC(sbert_index_query(idx, big, &q, &r), 0);
    CHECK(r->n == 1 && fabsf(r->docs[0].score - 1) < 1e-5f);
    sbert_index_results_free(r);

    /* upsert replaces text, metadata and vector; the old vector no longer finds it first */
    struct sbert_index_put_item up = {
        .id = "alpha", .id_len = 5, .text = "first, edited", .text_len = 13, .vector = v[2]};
    CHECK_RC(sbert_index_put(idx, &up, 1, NULL, NULL, 0), 0);
    CHECK(up.replaced == 1);
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 3);
    d = get1(idx, "alpha", SBERT_INDEX_INCLUDE_ALL, &r);
    CHECK(d && strcmp(d->text, "first, edited") == 0 && d->metadata == NULL &&
          fabsf(d->vector[0] - v[2][0]) < 1e-6f);
    sbert_index_results_free(r);
    q = sbert_index_query_default_params();
    q.k = 10;
    CHECK_RC(sbert_index_query(idx, v[0], &q, &r), 0);
    CHECK(r->n == 3);
    for (size_t i = 0; i < r->n; i++)
        CHECK(r->docs[i].score < 0.99f);
    sbert_index_results_free(r);

    /* the same id twice in a batch: the later wins, one document */
    struct sbert_index_put_item twice[2] = {
        {.id = "dup", .id_len = 3, .text = "one", .text_len = 3, .vector = v[0]},
        {.id = "dup", .id_len = 3, .text = "two", .text_len = 3, .vector = v[1]},
    };
    CHECK_RC(sbert_index_put(idx, twice, 2, NULL, NULL, 0), 0);
    CHECK(twice[0].replaced == 0 && twice[1].replaced == 1);
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 4);
    d = get1(idx, "dup", SBERT_INDEX_INCLUDE_TEXT, &r);
    CHECK(d && strcmp(d->text, "two") == 0);
    sbert_index_results_free(r);
    AGREE(idx);

    /* delete: existed flags, count, get, never returned by queries */
    const char *del[3] = {"dup", "missing", it[1].gen_id};
    size_t dl[3] = {3, 7, 36};
    int existed[3];
    size_t nd;
    CHECK_RC(sbert_index_delete(idx, del, dl, 3, existed, &nd, NULL, 0), 0);
    CHECK(existed[0] == 1 && existed[1] == 0 && existed[2] == 1 && nd == 2);
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 2);
    d = get1(idx, "dup", 0, &r);
    CHECK(d && d->found == 0);
    sbert_index_results_free(r);
    CHECK_RC(sbert_index_query(idx, v[1], &q, &r), 0);
    CHECK(r->n == 2);
    for (size_t i = 0; i < r->n; i++)
        CHECK(strcmp(r->docs[i].id, "dup") != 0 && strcmp(r->docs[i].id, it[1].gen_id) != 0);
    sbert_index_results_free(r);
    AGREE(idx);

    /* a vector of another dimension (e.g. from before a reindex) is refused, not read past */
    q = sbert_index_query_default_params();
    q.dim = 16;
    CHECK(sbert_index_query(idx, v[0], &q, &r) == SBERT_INDEX_EMODEL);
    q.dim = T_DIM;
    CHECK_RC(sbert_index_query(idx, v[0], &q, &r), 0);
    sbert_index_results_free(r);
    struct sbert_index_put_item wrong = {
        .id = "w", .id_len = 1, .text = "w", .text_len = 1, .vector = v[0], .dim = 16};
    size_t badi = 9;
    CHECK(sbert_index_put(idx, &wrong, 1, &badi, NULL, 0) == SBERT_INDEX_EMODEL && badi == 0);
    wrong.dim = T_DIM;
    CHECK_RC(sbert_index_put(idx, &wrong, 1, NULL, NULL, 0), 0);

    /* bad arguments */
    CHECK(sbert_index_query(idx, v[0], &(struct sbert_index_query_params){.k = 0}, &r) ==
          SBERT_INDEX_EINVAL);
    CHECK(sbert_index_query(idx, v[0], &(struct sbert_index_query_params){.k = 10001}, &r) ==
          SBERT_INDEX_EINVAL);
    sbert_index_close(idx);
}

static void test_all_or_nothing(void)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params("Flat");
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 10, 3), 0);
    float v[T_DIM], nanv[T_DIM];
    t_vec(7, v, T_DIM);
    memcpy(nanv, v, sizeof v);
    nanv[5] = NAN;
    char long_id[600];
    memset(long_id, 'x', sizeof long_id);
    struct {
        struct sbert_index_put_item bad;
        int code;
    } cases[] = {
        {{.id = "m",
          .id_len = 1,
          .text = "t",
          .text_len = 1,
          .metadata = "[1]",
          .metadata_len = 3,
          .vector = v},
         SBERT_INDEX_EMETADATA},
        {{.id = "m",
          .id_len = 1,
          .text = "t",
          .text_len = 1,
          .metadata = "{\"a\":",
          .metadata_len = 5,
          .vector = v},
         SBERT_INDEX_EMETADATA},
        {{.id = "\xc3\x28", .id_len = 2, .text = "t", .text_len = 1, .vector = v}, SBERT_INDEX_EID},
        {{.id = "", .id_len = 0, .text = "t", .text_len = 1, .vector = v}, SBERT_INDEX_EID},
        {{.id = long_id, .id_len = 513, .text = "t", .text_len = 1, .vector = v}, SBERT_INDEX_EID},
        {{.id = "m", .id_len = 1, .text = "\xed\xa0\x80", .text_len = 3, .vector = v},
         SBERT_INDEX_ETEXT},
        {{.id = "m", .id_len = 1, .text = "t", .text_len = 1, .vector = nanv}, SBERT_INDEX_EINVAL},
        {{.id = "m", .id_len = 1, .text = "t", .text_len = 1, .vector = NULL}, SBERT_INDEX_EINVAL},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct sbert_index_put_item batch[6];
        for (int i = 0; i < 6; i++)
            batch[i] =
                (struct sbert_index_put_item){.id = NULL, .text = "ok", .text_len = 2, .vector = v};
        batch[0].id = "doc000001"; /* an upsert of an existing document */
        batch[0].id_len = 9;
        batch[4] = cases[c].bad;
        size_t bad = 99;
        char err[256] = "";
        int rc = sbert_index_put(idx, batch, 6, &bad, err, sizeof err);
        if (rc != cases[c].code || bad != 4 || !strstr(err, "item 4")) {
            fprintf(stderr, "test_store.c: bad case %zu: rc %d bad %zu err \"%s\"\n", c, rc, bad,
                    err);
            t_failures++;
        }
        for (int i = 0; i < 6; i++)
            CHECK(batch[i].gen_id[0] == 0);
    }
    uint64_t n;
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 10);
    struct sbert_index_results *r;
    struct sbert_index_doc *d = get1(idx, "doc000001", SBERT_INDEX_INCLUDE_TEXT, &r);
    CHECK(d && strcmp(d->text, "text of document 1") == 0);
    sbert_index_results_free(r);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.change == 10);
    AGREE(idx);
    sbert_index_close(idx);
}

static int collect_ids(const struct sbert_index_doc *d, void *user)
{
    char ***out = user;
    size_t n = 0;
    while ((*out)[n])
        n++;
    *out = realloc(*out, (n + 2) * sizeof **out);
    (*out)[n] = strdup(d->id);
    (*out)[n + 1] = NULL;
    return 0;
}

static int stop_after_3(const struct sbert_index_doc *d, void *user)
{
    (void)d;
    return ++*(int *)user == 3;
}

static void test_ids_and_iterate(void)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params("Flat");
    sbert_index *idx = OPEN(dir, &p);
    /* 600 documents (more than one iteration chunk) put in a shuffled order */
    for (int i = 0; i < 600; i += 100)
        CHECK_RC(put_range(idx, 599 - i - 99, 599 - i + 1, 7), 0);
    char **ids = calloc(1, sizeof *ids);
    CHECK_RC(sbert_index_iterate(idx, NULL, 0, 0, collect_ids, &ids), 0);
    size_t n = 0;
    while (ids[n]) {
        char want[32];
        snprintf(want, sizeof want, "doc%06zu", n);
        if (strcmp(ids[n], want) != 0) {
            fprintf(stderr, "iterate: position %zu has %s\n", n, ids[n]);
            t_failures++;
            break;
        }
        n++;
    }
    CHECK(n == 600);
    for (size_t i = 0; ids[i]; i++)
        free(ids[i]);
    free(ids);
    /* starting after an id (present or not), stopping early */
    ids = calloc(1, sizeof *ids);
    CHECK_RC(sbert_index_iterate(idx, "doc000297", 9, 0, collect_ids, &ids), 0);
    CHECK(ids[0] && strcmp(ids[0], "doc000298") == 0);
    n = 0;
    while (ids[n])
        free(ids[n++]);
    CHECK(n == 302);
    free(ids);
    ids = calloc(1, sizeof *ids);
    CHECK_RC(sbert_index_iterate(idx, "doc000297x", 10, 0, collect_ids, &ids), 0);
    CHECK(ids[0] && strcmp(ids[0], "doc000298") == 0);
    n = 0;
    while (ids[n])
        free(ids[n++]);
    free(ids);
    int calls = 0;
    CHECK_RC(sbert_index_iterate(idx, NULL, 0, 0, stop_after_3, &calls), 0);
    CHECK(calls == 3);

    /* ids up to 512 bytes, UTF-8, sharing long prefixes, stay distinct */
    char a[513], b[513];
    memset(a, 'p', 512);
    memcpy(b, a, 512);
    a[511] = 'a';
    b[511] = 'b';
    a[512] = b[512] = 0;
    float v[3][T_DIM];
    for (int i = 0; i < 3; i++)
        t_vec(5 + (uint64_t)i, v[i], T_DIM);
    struct sbert_index_put_item it[3] = {
        {.id = a, .id_len = 512, .text = "A", .text_len = 1, .vector = v[0]},
        {.id = b, .id_len = 512, .text = "B", .text_len = 1, .vector = v[1]},
        {.id = "日本語のid",
         .id_len = strlen("日本語のid"),
         .text = "J",
         .text_len = 1,
         .vector = v[2]},
    };
    CHECK_RC(sbert_index_put(idx, it, 3, NULL, NULL, 0), 0);
    struct sbert_index_results *r;
    const char *gids[3] = {a, b, "日本語のid"};
    size_t glens[3] = {512, 512, strlen("日本語のid")};
    CHECK_RC(sbert_index_get(idx, gids, glens, 3, SBERT_INDEX_INCLUDE_TEXT, &r), 0);
    CHECK(r->n == 3 && r->docs[0].found && strcmp(r->docs[0].text, "A") == 0);
    CHECK(r->n == 3 && r->docs[1].found && strcmp(r->docs[1].text, "B") == 0);
    CHECK(r->n == 3 && r->docs[2].found && strcmp(r->docs[2].text, "J") == 0);
    CHECK(r->n == 3 && r->docs[0].id_len == 512 && memcmp(r->docs[0].id, a, 512) == 0);
    sbert_index_results_free(r);
    size_t nd;
    CHECK_RC(sbert_index_delete(idx, gids, glens, 1, NULL, &nd, NULL, 0), 0);
    CHECK(nd == 1);
    CHECK_RC(sbert_index_get(idx, gids, glens, 2, 0, &r), 0);
    CHECK(r->docs[0].found == 0 && r->docs[1].found == 1);
    sbert_index_results_free(r);

    /* generated ids are strictly increasing across batches */
    char prev[SBERT_INDEX_GEN_ID_SIZE] = "";
    for (int round = 0; round < 3; round++) {
        struct sbert_index_put_item g[50];
        float gv[50][T_DIM];
        for (int i = 0; i < 50; i++) {
            t_vec(10000 + (uint64_t)(round * 50 + i), gv[i], T_DIM);
            g[i] = (struct sbert_index_put_item){.text = "g", .text_len = 1, .vector = gv[i]};
        }
        CHECK_RC(sbert_index_put(idx, g, 50, NULL, NULL, 0), 0);
        for (int i = 0; i < 50; i++) {
            CHECK(strcmp(prev, g[i].gen_id) < 0);
            memcpy(prev, g[i].gen_id, sizeof prev);
        }
    }
    AGREE(idx);

    /* another handle on the same directory is refused while this one is open */
    sbert_index *other = NULL;
    char err[512];
    CHECK(sbert_index_open(dir, &p, &other, err, sizeof err) == SBERT_INDEX_ELOCKED);
    CHECK(other == NULL);
    sbert_index_close(idx);
}

static void record_rebuild(void *user, const char *phase, uint64_t done, uint64_t total)
{
    uint64_t *p = user;
    if (strcmp(phase, "rebuild") == 0) {
        p[0] = done;
        p[1] = total;
    }
}

static void test_persistence(const char *spec)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params(spec);
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 500, 10), 0);
    const char *del[2] = {"doc000003", "doc000004"};
    size_t dl[2] = {9, 9};
    CHECK_RC(sbert_index_delete(idx, del, dl, 2, NULL, NULL, NULL, 0), 0);
    struct sbert_index_stats st0;
    CHECK_RC(sbert_index_stats(idx, &st0), 0);
    sbert_index_close(idx);

    /* reopen: loaded from the snapshot written at close, nothing to replay */
    idx = OPEN(dir, &p);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 498 && st.change == st0.change && st.snapshot_change == st.change);
    CHECK(strcmp(st.index_spec, spec) == 0 && st.dim == T_DIM);
    CHECK(strcmp(st.model_name, "test-model-a") == 0);
    AGREE(idx);
    struct sbert_index_results *r;
    struct sbert_index_doc *d = get1(idx, "doc000003", 0, &r);
    CHECK(d && d->found == 0);
    sbert_index_results_free(r);
    d = get1(idx, "doc000499", SBERT_INDEX_INCLUDE_ALL, &r);
    CHECK(d && d->found && strcmp(d->metadata, "{\"n\":499,\"mod\":9}") == 0);
    sbert_index_results_free(r);
    sbert_index_close(idx);

    /* snapshot deleted, damaged, truncated: each time rebuilt from the store, in agreement */
    char snap[4300];
    snprintf(snap, sizeof snap, "%s/index.snap", dir);
    for (int how = 0; how < 3; how++) {
        struct stat sb;
        CHECK(stat(snap, &sb) == 0 && sb.st_size > 0);
        if (how == 0)
            CHECK(unlink(snap) == 0);
        else if (how == 1) {
            int fd = open(snap, O_RDWR);
            unsigned char c;
            off_t at = sb.st_size / 2;
            CHECK(pread(fd, &c, 1, at) == 1);
            c ^= 0x5a;
            CHECK(pwrite(fd, &c, 1, at) == 1);
            close(fd);
        } else
            CHECK(truncate(snap, sb.st_size / 3) == 0);
        struct sbert_index_params pr = p;
        uint64_t prog[2] = {0, 0};
        pr.progress = record_rebuild;
        pr.progress_user = prog;
        idx = OPEN(dir, &pr);
        CHECK_RC(sbert_index_stats(idx, &st), 0);
        CHECK(st.count == 498 + (uint64_t)how && st.index_count == st.count &&
              st.snapshot_change == 0);
        CHECK(prog[0] == st.count && prog[1] == st.count);
        AGREE(idx);
        CHECK_RC(put_range(idx, 1000 + how, 1001 + how, 10), 0);
        sbert_index_close(idx);
    }
    /* a snapshot from another store is not loaded */
    char dir2[4200], snap2[4300];
    newdir(dir2, sizeof dir2);
    idx = OPEN(dir2, &p);
    CHECK_RC(put_range(idx, 0, 501, 10), 0);
    sbert_index_close(idx);
    snprintf(snap2, sizeof snap2, "%s/index.snap", dir2);
    CHECK(rename(snap2, snap) == 0);
    idx = OPEN(dir, &p);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 501 && st.index_count == 501 && st.snapshot_change == 0);
    AGREE(idx);
    sbert_index_close(idx);
}

/* A process that exits without close after a snapshot: the next open replays the change log.
 * The writer is a fresh exec of this program (libgomp does not survive a fork once FAISS ran). */
static int replay_child(const char *dir, const char *spec)
{
    struct sbert_index_params p = t_params(spec);
    p.snapshot_changes = UINT64_MAX;
    p.snapshot_seconds = UINT32_MAX;
    sbert_index *idx = NULL;
    if (sbert_index_open(dir, &p, &idx, NULL, 0)) return 2;
    if (put_range(idx, 0, 300, 5) || sbert_index_snapshot(idx, NULL, 0)) return 3;
    /* after the snapshot: upserts, deletes, new documents */
    if (put_range(idx, 250, 400, 5)) return 4;
    const char *del[3] = {"doc000010", "doc000260", "doc000390"};
    size_t dl[3] = {9, 9, 9};
    if (sbert_index_delete(idx, del, dl, 3, NULL, NULL, NULL, 0)) return 5;
    /* more puts than one replay chunk (4096) */
    if (put_range(idx, 400, 4600, 5)) return 6;
    return 0; /* no close: no snapshot */
}

static void test_replay(const char *spec)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "store_test_store", "--replay-child", dir, spec, (char *)NULL);
        _exit(127);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct sbert_index_params p = t_params(spec);
    sbert_index *idx = OPEN(dir, &p);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 4597 && st.index_count == 4597);
    CHECK(st.snapshot_change == 300 && st.change == 300 + 150 + 50 + 3 + 4200);
    AGREE(idx);
    sbert_index_close(idx);
}

static void test_model_mismatch(void)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params("Flat");
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 5, 2), 0);
    sbert_index_close(idx);

    struct sbert_index_params q = p;
    q.model.name = "other-model";
    q.model.weights_sha256 = T_SHA_B;
    char err[1024] = "";
    idx = (sbert_index *)1;
    CHECK(sbert_index_open(dir, &q, &idx, err, sizeof err) == SBERT_INDEX_EMODEL);
    CHECK(idx == NULL);
    CHECK(strstr(err, "test-model-a") && strstr(err, "other-model"));
    CHECK(strstr(err, "aaaaaaaaaaaa") && strstr(err, "bbbbbbbbbbbb"));
    /* a different dimension alone is refused too, and names both dims */
    q = p;
    q.model.dim = 16;
    CHECK(sbert_index_open(dir, &q, &idx, err, sizeof err) == SBERT_INDEX_EMODEL);
    CHECK(strstr(err, "dim 32") && strstr(err, "dim 16"));
    q = p;
    q.model.pooling = SBERT_INDEX_POOL_CLS;
    CHECK(sbert_index_open(dir, &q, &idx, err, sizeof err) == SBERT_INDEX_EMODEL);
    /* the same model in int8 is another model for the store (its vectors differ slightly); a
     * store of int8 vectors refuses fp32 in turn */
    q = p;
    q.model.precision = SBERT_INDEX_PRECISION_INT8;
    CHECK(sbert_index_open(dir, &q, &idx, err, sizeof err) == SBERT_INDEX_EMODEL);
    CHECK(strstr(err, "fp32) but") && strstr(err, "int8); reindex"));
    {
        char dir8[4200];
        newdir(dir8, sizeof dir8);
        sbert_index *i8 = OPEN(dir8, &q);
        sbert_index_close(i8);
        i8 = OPEN(dir8, &q); /* the recorded precision reads back */
        sbert_index_close(i8);
        CHECK(sbert_index_open(dir8, &p, &idx, err, sizeof err) == SBERT_INDEX_EMODEL);
        CHECK(strstr(err, "int8) but") != NULL);
    }
    /* a renamed model directory is the same model */
    q = p;
    q.model.name = "renamed";
    idx = OPEN(dir, &q);
    uint64_t n;
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 5);
    sbert_index_close(idx);
    /* another spec: recorded, the index rebuilt; a later open without a spec keeps it */
    q = p;
    q.index_spec = "HNSW32,Flat";
    idx = OPEN(dir, &q);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(strcmp(st.index_spec, "HNSW32,Flat") == 0 && st.index_count == 5);
    AGREE(idx);
    sbert_index_close(idx);
    q.index_spec = NULL;
    idx = OPEN(dir, &q);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(strcmp(st.index_spec, "HNSW32,Flat") == 0 && st.snapshot_change == st.change);
    sbert_index_close(idx);
    /* a refused model leaves the recorded spec alone */
    q.index_spec = "Flat";
    q.model.weights_sha256 = T_SHA_B;
    CHECK(sbert_index_open(dir, &q, &idx, err, sizeof err) == SBERT_INDEX_EMODEL);
    q = p;
    q.index_spec = NULL;
    idx = OPEN(dir, &q);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(strcmp(st.index_spec, "HNSW32,Flat") == 0);
    sbert_index_close(idx);

    /* an incomplete identity and a bad spec are refused */
    q = p;
    q.model.weights_sha256 = "abc";
    CHECK(sbert_index_open(dir, &q, &idx, err, sizeof err) == SBERT_INDEX_EINVAL);
    char dir2[4200];
    newdir(dir2, sizeof dir2);
    q = p;
    q.index_spec = "NoSuchIndex99";
    CHECK(sbert_index_open(dir2, &q, &idx, err, sizeof err) == SBERT_INDEX_ESPEC);
    /* the failed open left no store that would pin a spec */
    idx = OPEN(dir2, &p);
    sbert_index_close(idx);
}

static void test_map_growth(void)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params("Flat");
    p.map_size = 64 * 1024;
    sbert_index *idx = OPEN(dir, &p);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.map_size == 64 * 1024);
    /* one batch much larger than the map, then many small ones */
    CHECK_RC(put_range(idx, 0, 3000, 10), 0);
    for (int i = 3000; i < 4000; i += 50)
        CHECK_RC(put_range(idx, i, i + 50, 10), 0);
    char *text = malloc(300000);
    memset(text, 'w', 300000);
    float v[T_DIM];
    t_vec(1, v, T_DIM);
    struct sbert_index_put_item big = {
        .id = "big", .id_len = 3, .text = text, .text_len = 300000, .vector = v};
    CHECK_RC(sbert_index_put(idx, &big, 1, NULL, NULL, 0), 0);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 4001 && st.map_size > 1024 * 1024 && st.map_used <= st.map_size);
    AGREE(idx);
    sbert_index_close(idx);
    /* reopening with the tiny map size keeps the grown file's size */
    idx = OPEN(dir, &p);
    struct sbert_index_results *r;
    struct sbert_index_doc *d = get1(idx, "big", SBERT_INDEX_INCLUDE_TEXT, &r);
    CHECK(d && d->text_len == 300000 && d->text[299999] == 'w');
    sbert_index_results_free(r);
    CHECK_RC(put_range(idx, 5000, 5500, 10), 0);
    CHECK_RC(sbert_index_count(idx, &(uint64_t){0}), 0);
    AGREE(idx);
    sbert_index_close(idx);
    free(text);
}

static void test_filtered_query(const char *spec)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params(spec);
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 3000, 200), 0); /* mod 0..199: 15 documents each */
    struct {
        const char *filter;
        size_t k, want;
    } cases[] = {
        {"{\"mod\":7}", 10, 10},
        {"{\"mod\":7}", 20, 15},
        {"{\"mod\":{\"$in\":[3,4]}}", 30, 30},
        {"{\"n\":{\"$gte\":100,\"$lt\":112}}", 10, 10},
        {"{\"n\":{\"$gte\":100,\"$lt\":105}}", 10, 5},
        {"{\"$or\":[{\"n\":1},{\"n\":2999}]}", 10, 2},
        {"{\"n\":{\"$lt\":0}}", 10, 0},
        {"{\"mod\":{\"$ne\":0}}", 50, 50},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        sbert_index_filter *f;
        char err[256];
        CHECK_RC(sbert_index_filter_compile(cases[c].filter, strlen(cases[c].filter), &f, err,
                                            sizeof err),
                 0);
        float v[T_DIM];
        t_vec(777 + c, v, T_DIM);
        struct sbert_index_query_params q = sbert_index_query_default_params();
        q.k = cases[c].k;
        q.filter = f;
        q.include = SBERT_INDEX_INCLUDE_METADATA;
        struct sbert_index_results *r;
        CHECK_RC(sbert_index_query(idx, v, &q, &r), 0);
        if (r->n != cases[c].want) {
            fprintf(stderr, "test_store.c: %s filter %s k %zu: %zu results, wanted %zu\n", spec,
                    cases[c].filter, cases[c].k, r->n, cases[c].want);
            t_failures++;
        }
        for (size_t i = 0; i < r->n; i++)
            CHECK(sbert_index_filter_match(f, r->docs[i].metadata, r->docs[i].metadata_len) == 1);
        sbert_index_results_free(r);
        sbert_index_filter_free(f);
    }
    sbert_index_close(idx);
}

/* sbert_index_query_many: each query gets what it gets alone (exactly so for Flat; for an
 * approximate index the shared search uses the largest k, so only the contract is checked), a bad
 * query fails alone, and max_bytes bounds each query's results. */
static void test_query_many(const char *spec)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params(spec);
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 3000, 200), 0);
    sbert_index_filter *f;
    char err[256];
    const char *fs = "{\"mod\":{\"$in\":[3,4]}}";
    CHECK_RC(sbert_index_filter_compile(fs, strlen(fs), &f, err, sizeof err), 0);
    enum { NQ = 9 };
    const size_t ks[NQ] = {1, 10, 50, 10, 30, 5, 0, 10, 10};
    float v[NQ * T_DIM];
    struct sbert_index_query_params q[NQ];
    for (size_t i = 0; i < NQ; i++) {
        t_vec(5000 + i, v + i * T_DIM, T_DIM);
        q[i] = sbert_index_query_default_params();
        q[i].k = ks[i];
        q[i].include = SBERT_INDEX_INCLUDE_TEXT;
    }
    q[3].filter = q[4].filter = f; /* 3 and 4 are searched one by one */
    q[5].min_score = 0.1f;
    q[7].dim = 16;      /* 6 (k = 0) and 7 fail alone */
    q[8].max_bytes = 1; /* and so does 8 */
    struct sbert_index_results *r[NQ];
    int rcs[NQ];
    CHECK(sbert_index_query_many(idx, v, NQ, q, r, rcs) == SBERT_INDEX_EINVAL);
    CHECK(rcs[6] == SBERT_INDEX_EINVAL && r[6] == NULL && rcs[7] == SBERT_INDEX_EMODEL &&
          r[7] == NULL && rcs[8] == SBERT_INDEX_ETOOBIG && r[8] == NULL);
    int exact = strcmp(spec, "Flat") == 0;
    for (size_t i = 0; i < 6; i++) {
        CHECK_RC(rcs[i], 0);
        if (rcs[i]) continue;
        struct sbert_index_results *one;
        CHECK_RC(sbert_index_query(idx, v + i * T_DIM, &q[i], &one), 0);
        if (i != 5) CHECK(r[i]->n == q[i].k);
        for (size_t j = 0; j < r[i]->n; j++) {
            CHECK(r[i]->docs[j].score >= q[i].min_score && r[i]->docs[j].text != NULL);
            CHECK(j == 0 || r[i]->docs[j - 1].score >= r[i]->docs[j].score);
            if (q[i].filter) {
                int n = atoi(r[i]->docs[j].id + 3) % 200;
                CHECK(n == 3 || n == 4);
            }
        }
        if (exact || q[i].filter) {
            CHECK(one->n == r[i]->n);
            for (size_t j = 0; j < one->n && j < r[i]->n; j++)
                CHECK(strcmp(one->docs[j].id, r[i]->docs[j].id) == 0 &&
                      fabsf(one->docs[j].score - r[i]->docs[j].score) < 1e-5f);
        }
        sbert_index_results_free(one);
    }
    /* max_bytes: exactly the ids, texts and passage texts of the k results passes, one byte
     * less does not */
    size_t bytes = 0;
    for (size_t j = 0; j < r[1]->n; j++) {
        bytes += r[1]->docs[j].id_len + r[1]->docs[j].text_len;
        CHECK(r[1]->docs[j].n_passages == 1);
        for (size_t i = 0; i < r[1]->docs[j].n_passages; i++)
            bytes += r[1]->docs[j].passages[i].text_len;
    }
    struct sbert_index_results *one;
    q[1].max_bytes = bytes;
    CHECK_RC(sbert_index_query(idx, v + T_DIM, &q[1], &one), 0);
    CHECK(one && one->n == 10);
    sbert_index_results_free(one);
    q[1].max_bytes = bytes - 1;
    CHECK(sbert_index_query(idx, v + T_DIM, &q[1], &one) == SBERT_INDEX_ETOOBIG && one == NULL);
    for (size_t i = 0; i < NQ; i++)
        sbert_index_results_free(r[i]);
    CHECK_RC(sbert_index_query_many(idx, v, 0, q, r, rcs), 0);
    sbert_index_filter_free(f);
    sbert_index_close(idx);
}

/* Brute-force pairs over the vectors of docs 0..n-1 (seeds 0..n-1, after normalisation). */
struct bf_pair {
    int a, b;
    float s;
};

static int bf_cmp(const void *x, const void *y)
{
    const struct bf_pair *p = x, *q = y;
    return p->s > q->s ? -1 : p->s < q->s ? 1 : 0;
}

static void test_pairs(void)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params("Flat");
    sbert_index *idx = OPEN(dir, &p);
    const int n = 300;
    CHECK_RC(put_range(idx, 0, n, 4), 0);
    float *v = malloc((size_t)n * T_DIM * sizeof *v);
    for (int i = 0; i < n; i++)
        t_vec((uint64_t)i, v + (size_t)i * T_DIM, T_DIM);
    size_t np = (size_t)n * (n - 1) / 2, k = 0;
    struct bf_pair *bf = malloc(np * sizeof *bf);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double s = 0;
            for (int d = 0; d < T_DIM; d++)
                s += (double)v[i * T_DIM + d] * v[j * T_DIM + d];
            bf[k++] = (struct bf_pair){i, j, (float)s};
        }
    qsort(bf, np, sizeof *bf, bf_cmp);

    /* top 25 with the default per-document k and with a small one (5) */
    size_t per_doc[2] = {0, 5};
    for (int t = 0; t < 2; t++) {
        struct sbert_index_pairs_params pp = sbert_index_pairs_default_params();
        pp.top_n = 25;
        pp.per_doc_k = per_doc[t];
        struct sbert_index_pairs *out;
        CHECK_RC(sbert_index_pairs(idx, &pp, &out), 0);
        CHECK(out->n == 25);
        for (size_t i = 0; i < out->n && i < 25; i++) {
            char a[32], b[32];
            snprintf(a, sizeof a, "doc%06d", bf[i].a);
            snprintf(b, sizeof b, "doc%06d", bf[i].b);
            if (strcmp(out->pairs[i].a, a) || strcmp(out->pairs[i].b, b) ||
                fabsf(out->pairs[i].score - bf[i].s) > 1e-5f) {
                fprintf(stderr, "pairs[%zu] = (%s, %s, %.6f), brute force (%s, %s, %.6f)\n", i,
                        out->pairs[i].a, out->pairs[i].b, out->pairs[i].score, a, b, bf[i].s);
                t_failures++;
            }
        }
        sbert_index_pairs_free(out);
    }
    /* by min_score, no top_n: exactly the brute-force pairs above it */
    {
        float thr = bf[40].s - 1e-6f;
        size_t want = 0;
        while (want < np && bf[want].s >= thr)
            want++;
        struct sbert_index_pairs_params pp = sbert_index_pairs_default_params();
        pp.top_n = 0;
        pp.min_score = thr;
        struct sbert_index_pairs *out;
        CHECK_RC(sbert_index_pairs(idx, &pp, &out), 0);
        CHECK(out->n == want);
        for (size_t i = 0; i + 1 < out->n; i++)
            CHECK(out->pairs[i].score >= out->pairs[i + 1].score);
        sbert_index_pairs_free(out);
    }
    /* with a filter: only pairs among documents with mod 1 */
    {
        sbert_index_filter *f;
        CHECK_RC(sbert_index_filter_compile("{\"mod\":1}", 9, &f, NULL, 0), 0);
        struct sbert_index_pairs_params pp = sbert_index_pairs_default_params();
        pp.top_n = 10;
        pp.filter = f;
        struct sbert_index_pairs *out;
        CHECK_RC(sbert_index_pairs(idx, &pp, &out), 0);
        CHECK(out->n == 10);
        size_t bi = 0;
        for (size_t i = 0; i < out->n; i++) {
            while (bi < np && (bf[bi].a % 4 != 1 || bf[bi].b % 4 != 1))
                bi++;
            char a[32], b[32];
            snprintf(a, sizeof a, "doc%06d", bf[bi].a);
            snprintf(b, sizeof b, "doc%06d", bf[bi].b);
            CHECK(bi < np && strcmp(out->pairs[i].a, a) == 0 && strcmp(out->pairs[i].b, b) == 0);
            bi++;
        }
        sbert_index_pairs_free(out);
        sbert_index_filter_free(f);
    }
    free(bf);
    free(v);
    sbert_index_close(idx);
}

static void test_backup(const char *spec)
{
    char dir[4200], bdir[4300];
    newdir(dir, sizeof dir);
    snprintf(bdir, sizeof bdir, "%s-backup", dir);
    struct sbert_index_params p = t_params(spec);
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 400, 3), 0);
    const char *del[1] = {"doc000000"};
    size_t dl[1] = {9};
    CHECK_RC(sbert_index_delete(idx, del, dl, 1, NULL, NULL, NULL, 0), 0);
    char err[512] = "";
    CHECK_RC(sbert_index_backup(idx, bdir, err, sizeof err), 0);
    /* a non-empty target is refused */
    CHECK(sbert_index_backup(idx, bdir, err, sizeof err) == SBERT_INDEX_EEXIST);
    /* writes after the backup do not reach it */
    CHECK_RC(put_range(idx, 400, 410, 3), 0);
    sbert_index_close(idx);

    idx = OPEN(bdir, &p);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 399 && st.index_count == 399);
    CHECK(st.snapshot_change == st.change && st.change == 401); /* its own snapshot was loaded */
    AGREE(idx);
    CHECK_RC(put_range(idx, 500, 510, 3), 0);
    uint64_t n;
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 409);
    sbert_index_close(idx);
}

/* Encoder for reindex: a 16-dim vector derived from the text (stand-in for a new model). */
static int fake_encode(const char *const *texts, const size_t *lens, size_t n, float *out,
                       void *user)
{
    int *fail_after = user;
    for (size_t i = 0; i < n; i++) {
        if (fail_after && (*fail_after)-- <= 0) return -1;
        uint64_t h = 1469598103934665603ull;
        for (size_t j = 0; j < lens[i]; j++)
            h = (h ^ (unsigned char)texts[i][j]) * 1099511628211ull;
        t_vec(h, out + i * 16, 16);
    }
    return 0;
}

static void record_progress(void *user, const char *phase, uint64_t done, uint64_t total)
{
    uint64_t *p = user;
    if (strcmp(phase, "reindex") == 0) {
        p[0] = done;
        p[1] = total;
    }
}

static void test_reindex(void)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params("Flat");
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 700, 7), 0);
    struct sbert_index_model nm = p.model;
    nm.name = "model-b";
    nm.weights_sha256 = T_SHA_B;
    nm.dim = 16;

    /* a failing callback changes nothing */
    int fail_after = 500;
    char err[512] = "";
    CHECK(sbert_index_reindex(idx, &nm, fake_encode, &fail_after, err, sizeof err) ==
          SBERT_INDEX_ECALLBACK);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.dim == T_DIM && st.count == 700 && strcmp(st.model_name, "test-model-a") == 0);
    AGREE(idx);

    CHECK_RC(sbert_index_reindex(idx, &nm, fake_encode, NULL, err, sizeof err), 0);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.dim == 16 && st.count == 700 && st.index_count == 700);
    CHECK(strcmp(st.model_name, "model-b") == 0 && strcmp(st.model_sha256, T_SHA_B) == 0);
    /* a query with the new model's vector of a text finds that document */
    const char *t = "text of document 123";
    size_t tl = strlen(t);
    float qv[16];
    fake_encode(&t, &tl, 1, qv, NULL);
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 1;
    q.include = SBERT_INDEX_INCLUDE_METADATA;
    struct sbert_index_results *r;
    CHECK_RC(sbert_index_query(idx, qv, &q, &r), 0);
    CHECK(r->n == 1 && strcmp(r->docs[0].id, "doc000123") == 0 &&
          fabsf(r->docs[0].score - 1) < 1e-5f);
    CHECK(r->n == 1 && strcmp(r->docs[0].metadata, "{\"n\":123,\"mod\":4}") == 0);
    sbert_index_results_free(r);
    /* writes continue with the new dimension */
    float v16[16];
    t_vec(3, v16, 16);
    struct sbert_index_put_item it = {
        .id = "new", .id_len = 3, .text = "n", .text_len = 1, .vector = v16};
    CHECK_RC(sbert_index_put(idx, &it, 1, NULL, NULL, 0), 0);
    AGREE(idx);
    sbert_index_close(idx);

    /* the old model is now refused; the new one opens */
    CHECK(sbert_index_open(dir, &p, &idx, err, sizeof err) == SBERT_INDEX_EMODEL);
    struct sbert_index_params pb = p;
    pb.model = nm;
    idx = OPEN(dir, &pb);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 701 && st.snapshot_change == st.change);
    AGREE(idx);
    sbert_index_close(idx);

    /* reindex at open, with progress reported */
    struct sbert_index_params pa = p;
    pa.reindex_on_open = fake_encode; /* writes 16 floats: so use a 16-dim model "c" */
    pa.model = nm;
    pa.model.name = "model-c";
    pa.model.weights_sha256 = T_SHA_A;
    uint64_t prog[2] = {0, 0};
    pa.progress = record_progress;
    pa.progress_user = prog;
    idx = OPEN(dir, &pa);
    CHECK(prog[0] == 701 && prog[1] == 701);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 701 && strcmp(st.model_name, "model-c") == 0);
    AGREE(idx);
    sbert_index_close(idx);
}

/* A full disk, simulated with a file size limit (RLIMIT_FSIZE: writes past it fail with EFBIG):
 * the batch fails with ENOSPC, nothing of it is stored, and once space is back the store works. */
static void test_disk_full(void)
{
    char dir[4200], path[4300];
    newdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/store.mdb", dir);
    struct sbert_index_params p = t_params("Flat");
    p.snapshot_changes = UINT64_MAX;
    p.snapshot_seconds = UINT32_MAX;
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 100, 3), 0);
    struct stat sb;
    CHECK(stat(path, &sb) == 0);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = (rlim_t)sb.st_size + 8192;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    char err[512] = "";
    int rc = put_range(idx, 100, 3100, 3);
    CHECK(rc == SBERT_INDEX_ENOSPC);
    CHECK_RC(setrlimit(RLIMIT_FSIZE, &old), 0);
    uint64_t n;
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 100);
    struct sbert_index_results *r;
    struct sbert_index_doc *d = get1(idx, "doc000100", 0, &r);
    CHECK(d && d->found == 0);
    sbert_index_results_free(r);
    AGREE(idx);
    CHECK_RC(put_range(idx, 100, 3100, 3), 0);
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 3100);
    (void)err;
    sbert_index_close(idx);
    idx = OPEN(dir, &p);
    CHECK_RC(sbert_index_count(idx, &n), 0);
    CHECK(n == 3100);
    AGREE(idx);
    sbert_index_close(idx);
}

/* Readers (query, get, iterate, stats) run while a writer adds, upserts and deletes with a map
 * that starts at 64 KiB, so the map grows under them. Every reader call must succeed, and a
 * document the writer has reported stored must be visible to get. */
struct conc {
    sbert_index *idx;
    atomic_int stop;
    atomic_int committed; /* documents doc000000..committed-1 are stored */
    atomic_int errors;
    int seed;
};

static int count_cb(const struct sbert_index_doc *d, void *user)
{
    (void)d;
    ++*(size_t *)user;
    return 0;
}

static void *reader(void *arg)
{
    struct conc *c = arg;
    uint64_t s = (uint64_t)c->seed + 1;
    sbert_index_filter *f;
    if (sbert_index_filter_compile("{\"mod\":{\"$in\":[1,2]}}", 22, &f, NULL, 0))
        atomic_fetch_add(&c->errors, 1);
    while (!atomic_load(&c->stop)) {
        float v[T_DIM];
        t_vec(t_rand(&s), v, T_DIM);
        struct sbert_index_query_params q = sbert_index_query_default_params();
        q.k = 5;
        q.filter = (t_rand(&s) & 1) ? f : NULL;
        q.include = SBERT_INDEX_INCLUDE_ALL;
        struct sbert_index_results *r;
        if (sbert_index_query(c->idx, v, &q, &r))
            atomic_fetch_add(&c->errors, 1);
        else
            sbert_index_results_free(r);
        int n = atomic_load(&c->committed);
        if (n > 0) {
            char id[32];
            snprintf(id, sizeof id, "doc%06d", (int)(t_rand(&s) % (uint64_t)n));
            const char *ids[1] = {id};
            size_t lens[1] = {strlen(id)};
            if (sbert_index_get(c->idx, ids, lens, 1, SBERT_INDEX_INCLUDE_TEXT, &r))
                atomic_fetch_add(&c->errors, 1);
            else {
                if (!r->docs[0].found) {
                    fprintf(stderr, "reader: %s not found after its commit\n", id);
                    atomic_fetch_add(&c->errors, 1);
                }
                sbert_index_results_free(r);
            }
        }
        if (t_rand(&s) % 16 == 0) {
            size_t cnt = 0;
            struct sbert_index_stats st;
            if (sbert_index_iterate(c->idx, NULL, 0, 0, count_cb, &cnt) ||
                sbert_index_stats(c->idx, &st))
                atomic_fetch_add(&c->errors, 1);
        }
    }
    sbert_index_filter_free(f);
    return NULL;
}

/* HNSW deletes are tombstones; once they pass the rebuild ratio (vindex default 0.2 of the
 * entries) the snapshot thread rebuilds the vector index from the stored vectors. After it, the
 * index and the store hold exactly the same live documents, and a reopen agrees too. */
struct rebuild_seen {
    atomic_ullong last_done; /* done of the last "rebuild" progress call */
    atomic_int calls;
};

static void record_rebuild_atomic(void *user, const char *phase, uint64_t done, uint64_t total)
{
    struct rebuild_seen *r = user;
    (void)total;
    if (strcmp(phase, "rebuild") == 0) {
        atomic_store(&r->last_done, done);
        atomic_fetch_add(&r->calls, 1);
    }
}

static void test_tombstone_rebuild(void)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params("HNSW32,Flat");
    struct rebuild_seen seen;
    atomic_init(&seen.last_done, 0);
    atomic_init(&seen.calls, 0);
    p.progress = record_rebuild_atomic;
    p.progress_user = &seen;
    sbert_index *idx = OPEN(dir, &p);
    CHECK_RC(put_range(idx, 0, 1000, 10), 0);
    int calls_before = atomic_load(&seen.calls);

    /* 150 of 1000 (15%): under the ratio */
    const char *ids[300];
    size_t lens[300];
    char names[300][16];
    for (int i = 0; i < 300; i++) {
        snprintf(names[i], sizeof names[i], "doc%06d", 3 * i + 1); /* spread over the graph */
        ids[i] = names[i];
        lens[i] = strlen(names[i]);
    }
    size_t deleted = 0;
    CHECK_RC(sbert_index_delete(idx, ids, lens, 150, NULL, &deleted, NULL, 0), 0);
    CHECK(deleted == 150);
    AGREE(idx);
    /* 300 of 1000 (30%): over it */
    CHECK_RC(sbert_index_delete(idx, ids + 150, lens + 150, 150, NULL, &deleted, NULL, 0), 0);
    CHECK(deleted == 150);
    /* The snapshot thread looks once a second; give a loaded machine a minute. */
    for (int i = 0; i < 600 && atomic_load(&seen.last_done) != 700; i++)
        usleep(100 * 1000);
    CHECK(atomic_load(&seen.calls) > calls_before);
    CHECK(atomic_load(&seen.last_done) == 700);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 700 && st.index_count == 700);
    AGREE(idx);
    /* no deleted document comes back, also for its own vector */
    for (int i = 0; i < 300; i += 37) {
        float v[T_DIM];
        t_vec((uint64_t)(3 * i + 1), v, T_DIM);
        struct sbert_index_query_params q = sbert_index_query_default_params();
        q.k = 10;
        struct sbert_index_results *r;
        CHECK_RC(sbert_index_query(idx, v, &q, &r), 0);
        CHECK(r->n == 10);
        for (size_t j = 0; j < r->n; j++) {
            int n = atoi(r->docs[j].id + 3);
            CHECK(n >= 900 || n % 3 != 1);
        }
        sbert_index_results_free(r);
    }
    sbert_index_close(idx);
    idx = OPEN(dir, &p);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 700 && st.index_count == 700 && st.snapshot_change == st.change);
    AGREE(idx);
    sbert_index_close(idx);
}

static void test_concurrent(const char *spec)
{
    char dir[4200];
    newdir(dir, sizeof dir);
    struct sbert_index_params p = t_params(spec);
    p.map_size = 64 * 1024;
    p.snapshot_changes = 700; /* snapshots run during the test too */
    sbert_index *idx = OPEN(dir, &p);
    struct conc c[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        c[i].idx = idx;
        atomic_init(&c[i].stop, 0);
        atomic_init(&c[i].committed, 0);
        atomic_init(&c[i].errors, 0);
        c[i].seed = i;
        pthread_create(&th[i], NULL, reader, &c[i]);
    }
    for (int b = 0; b < 20; b++) {
        CHECK_RC(put_range(idx, b * 100, b * 100 + 100, 5), 0);
        if (b > 0) /* upsert the previous batch's first half */
            CHECK_RC(put_range(idx, (b - 1) * 100, (b - 1) * 100 + 50, 5), 0);
        for (int i = 0; i < 4; i++)
            atomic_store(&c[i].committed, b * 100 + 100);
    }
    /* deletes of documents readers no longer ask for: ids past the committed prefix */
    CHECK_RC(put_range(idx, 90000, 90100, 5), 0);
    const char *del[2] = {"doc090000", "doc090001"};
    size_t dl[2] = {9, 9};
    CHECK_RC(sbert_index_delete(idx, del, dl, 2, NULL, NULL, NULL, 0), 0);
    for (int i = 0; i < 4; i++) {
        atomic_store(&c[i].stop, 1);
        pthread_join(th[i], NULL);
        CHECK(atomic_load(&c[i].errors) == 0);
    }
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == 2098 && st.map_size > 64 * 1024);
    AGREE(idx);
    sbert_index_close(idx);
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--replay-child") == 0) _exit(replay_child(argv[2], argv[3]));
    t_tmpdir(g_root, sizeof g_root, "unit");
    const char *default_specs[] = {"Flat", "HNSW32,Flat", "IVF4,Flat"};
    const char *const *specs = default_specs;
    int n_specs = 3;
    if (argc > 1) {
        specs = (const char *const *)argv + 1;
        n_specs = argc - 1;
    }
    /* T_ONLY=name runs one case (for debugging). */
    const char *only = getenv("T_ONLY");
#define RUN(name, call)                                                                            \
    do {                                                                                           \
        if (!only || strcmp(only, name) == 0) call;                                                \
    } while (0)
    RUN("all_or_nothing", test_all_or_nothing());
    RUN("ids", test_ids_and_iterate());
    RUN("model", test_model_mismatch());
    RUN("growth", test_map_growth());
    RUN("pairs", test_pairs());
    RUN("reindex", test_reindex());
    RUN("diskfull", test_disk_full());
    RUN("tombstones", test_tombstone_rebuild());
    for (int s = 0; s < n_specs; s++) {
        fprintf(stderr, "spec %s\n", specs[s]);
        RUN("basic", test_basic(specs[s]));
        RUN("persistence", test_persistence(specs[s]));
        RUN("replay", test_replay(specs[s]));
        RUN("filtered", test_filtered_query(specs[s]));
        RUN("query_many", test_query_many(specs[s]));
        RUN("backup", test_backup(specs[s]));
        RUN("concurrent", test_concurrent(specs[s]));
    }
    if (!t_failures)
        t_rmrf(g_root);
    else
        fprintf(stderr, "test_store: %d failure(s); files kept in %s\n", t_failures, g_root);
    return t_failures ? 1 : 0;
}
