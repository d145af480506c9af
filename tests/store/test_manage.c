/*
 * test_manage.c — the data management calls of sbert_index.h against a real LMDB environment:
 * sbert_index_count_filter, sbert_index_list (pages, resume after a deleted id, the scan and
 * byte bounds, bad arguments), sbert_index_delete_filter (chunks, the req_id recorded once, the
 * vector index in step, persistence) and sbert_index_patch_req (set/unset, not-found items, an
 * id twice, the metadata bound, all or nothing, vectors and scores unchanged, persistence).
 * Usage: test_manage [SPEC...] (default: Flat and HNSW32,Flat).
 */
#include "t.h"

#include <cjson/cJSON.h>

static char g_root[4096];
static int g_case;

static sbert_index *open_store(char *dir, size_t cap, const char *spec, int fresh)
{
    if (fresh) snprintf(dir, cap, "%s/case%d", g_root, g_case++);
    struct sbert_index_params p = t_params(spec);
    sbert_index *idx = NULL;
    char err[1024] = "";
    int rc = sbert_index_open(dir, &p, &idx, err, sizeof err);
    if (rc) {
        fprintf(stderr, "open %s: %s: %s\n", dir, sbert_index_strerror(rc), err);
        exit(1);
    }
    return idx;
}

/* Puts "d<i>" for i in [0, n) with metadata {"n":i,"g":i%3} and vector seed i. */
static void put_docs(sbert_index *idx, int n)
{
    for (int at = 0; at < n; at += 500) {
        int m = n - at < 500 ? n - at : 500;
        struct sbert_index_put_item it[500];
        char ids[500][16], metas[500][48];
        static float vecs[500 * T_DIM];
        memset(it, 0, sizeof it);
        for (int i = 0; i < m; i++) {
            int k = at + i;
            snprintf(ids[i], sizeof ids[i], "d%05d", k);
            snprintf(metas[i], sizeof metas[i], "{\"n\":%d,\"g\":%d}", k, k % 3);
            t_vec((uint64_t)k, vecs + i * T_DIM, T_DIM);
            it[i] = (struct sbert_index_put_item){.id = ids[i],
                                                  .id_len = strlen(ids[i]),
                                                  .text = "t",
                                                  .text_len = 1,
                                                  .metadata = metas[i],
                                                  .metadata_len = strlen(metas[i]),
                                                  .vector = vecs + i * T_DIM};
        }
        CHECK_RC(sbert_index_put(idx, it, (size_t)m, NULL, NULL, 0), 0);
    }
}

static sbert_index_filter *filter(const char *json)
{
    sbert_index_filter *f = NULL;
    CHECK_RC(sbert_index_filter_compile(json, strlen(json), &f, NULL, 0), 0);
    return f;
}

/* Every page of a listing: the ids in order into seen (n entries at most), the page count. */
static size_t list_all(sbert_index *idx, struct sbert_index_list_params p, char (*seen)[16],
                       size_t cap, size_t *pages)
{
    size_t n = 0;
    char *after = NULL;
    *pages = 0;
    for (;;) {
        struct sbert_index_results *r = NULL;
        char *next = NULL;
        size_t next_len = 0;
        p.after = after;
        p.after_len = after ? strlen(after) : 0;
        int rc = sbert_index_list(idx, &p, &r, &next, &next_len);
        CHECK_RC(rc, 0);
        free(after);
        after = next;
        if (rc) break;
        (*pages)++;
        for (size_t i = 0; i < r->n && n < cap; i++)
            snprintf(seen[n++], 16, "%s", r->docs[i].id);
        sbert_index_results_free(r);
        if (!after || *pages > 10000) break;
    }
    free(after);
    return n;
}

static void test_count_and_list(const char *spec)
{
    char dir[4200];
    sbert_index *idx = open_store(dir, sizeof dir, spec, 1);
    put_docs(idx, 1000);
    uint64_t c = 0;
    sbert_index_filter *g1 = filter("{\"g\":1}"), *none = filter("{\"g\":7}");
    CHECK_RC(sbert_index_count_filter(idx, NULL, &c), 0);
    CHECK(c == 1000);
    CHECK_RC(sbert_index_count_filter(idx, g1, &c), 0);
    CHECK(c == 333);
    CHECK_RC(sbert_index_count_filter(idx, none, &c), 0);
    CHECK(c == 0);

    static char seen[1200][16];
    size_t pages = 0;
    struct sbert_index_list_params p = {.limit = 64, .max_scan = 64};
    size_t n = list_all(idx, p, seen, 1200, &pages);
    CHECK(n == 1000 && pages == 16);
    int in_order = 1;
    for (size_t i = 0; i < n; i++) {
        char want[32];
        snprintf(want, sizeof want, "d%05zu", i);
        in_order &= strcmp(seen[i], want) == 0;
    }
    CHECK(in_order);
    /* a filter: only its documents; a scan bound below the gap between matches gives empty
     * pages that still go on */
    p = (struct sbert_index_list_params){.filter = g1, .limit = 10, .max_scan = 10};
    n = list_all(idx, p, seen, 1200, &pages);
    CHECK(n == 333 && pages == 100 && strcmp(seen[0], "d00001") == 0);
    p = (struct sbert_index_list_params){.filter = none, .limit = 5, .max_scan = 100};
    n = list_all(idx, p, seen, 1200, &pages);
    CHECK(n == 0 && pages == 10);

    /* resume after a deleted id; the last page has no next */
    const char *gone = "d00500";
    size_t gl = strlen(gone);
    CHECK_RC(sbert_index_delete(idx, &gone, &gl, 1, NULL, NULL, NULL, 0), 0);
    struct sbert_index_results *r = NULL;
    char *next = NULL;
    size_t next_len = 0;
    p = (struct sbert_index_list_params){.after = gone,
                                         .after_len = gl,
                                         .include = SBERT_INDEX_INCLUDE_ALL,
                                         .limit = 2,
                                         .max_scan = 2};
    CHECK_RC(sbert_index_list(idx, &p, &r, &next, &next_len), 0);
    CHECK(r && r->n == 2 && strcmp(r->docs[0].id, "d00501") == 0 && r->docs[0].text &&
          r->docs[0].metadata && r->docs[0].vector);
    CHECK(next && next_len == 6 && memcmp(next, "d00502", 6) == 0);
    sbert_index_results_free(r);
    free(next);
    p = (struct sbert_index_list_params){
        .after = "d00998", .after_len = 6, .limit = 5, .max_scan = 5};
    CHECK_RC(sbert_index_list(idx, &p, &r, &next, &next_len), 0);
    CHECK(r && r->n == 1 && next == NULL);
    sbert_index_results_free(r);
    /* exactly the last document: no next either */
    p.after = "d00997";
    p.limit = p.max_scan = 2;
    CHECK_RC(sbert_index_list(idx, &p, &r, &next, &next_len), 0);
    CHECK(r && r->n == 2 && next == NULL);
    sbert_index_results_free(r);

    /* the byte bound: a page stops before the document that would pass it; a first document
     * over it alone is ETOOBIG */
    p = (struct sbert_index_list_params){.include = SBERT_INDEX_INCLUDE_VECTOR,
                                         .limit = 100,
                                         .max_scan = 100,
                                         .max_bytes = 3 * (6 + 4 * T_DIM)};
    CHECK_RC(sbert_index_list(idx, &p, &r, &next, &next_len), 0);
    CHECK(r && r->n == 3 && next && memcmp(next, "d00002", 6) == 0);
    sbert_index_results_free(r);
    free(next);
    p.max_bytes = 10;
    CHECK_RC(sbert_index_list(idx, &p, &r, &next, &next_len), SBERT_INDEX_ETOOBIG);
    CHECK(r == NULL && next == NULL);

    /* bad arguments */
    p = (struct sbert_index_list_params){.limit = 0, .max_scan = 10};
    CHECK_RC(sbert_index_list(idx, &p, &r, &next, &next_len), SBERT_INDEX_EINVAL);
    p = (struct sbert_index_list_params){.limit = 10, .max_scan = 5};
    CHECK_RC(sbert_index_list(idx, &p, &r, &next, &next_len), SBERT_INDEX_EINVAL);
    p = (struct sbert_index_list_params){.after = "x", .after_len = 513, .limit = 1, .max_scan = 1};
    CHECK_RC(sbert_index_list(idx, &p, &r, &next, &next_len), SBERT_INDEX_EINVAL);
    sbert_index_filter_free(g1);
    sbert_index_filter_free(none);
    sbert_index_close(idx);
}

static int reply_total(void *user, char **reply, size_t *len)
{
    const uint64_t *n = user;
    if (asprintf(reply, "{\"deleted\":%llu}", (unsigned long long)*n) < 0) return -1;
    *len = strlen(*reply);
    return 0;
}

static void progress(void *user, uint64_t deleted)
{
    uint64_t *calls = user;
    (void)deleted;
    (*calls)++;
}

/* The vector index holds exactly the store's documents: stats agree, and a query for k = all
 * returns count ids. */
static void check_agree(sbert_index *idx, uint64_t want)
{
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.count == want && st.index_count == want);
    if (!want) return;
    float v[T_DIM];
    t_vec(12345, v, T_DIM);
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 10000;
    struct sbert_index_results *r = NULL;
    CHECK_RC(sbert_index_query(idx, v, &q, &r), 0);
    CHECK(r && r->n == want);
    sbert_index_results_free(r);
}

static void test_delete_filter(const char *spec)
{
    char dir[4200];
    sbert_index *idx = open_store(dir, sizeof dir, spec, 1);
    put_docs(idx, 1000);
    sbert_index_filter *g1 = filter("{\"g\":1}");
    uint64_t deleted = 0, calls = 0;
    struct sbert_index_write_req wr = {
        .req_id = "del-g1", .req_id_len = 6, .hash = 77, .reply = reply_total, .user = &deleted};
    struct sbert_index_delete_filter_params p = {
        .filter = g1, .chunk = 50, .req = &wr, .progress = progress, .progress_user = &calls};
    char err[512] = "";
    CHECK_RC(sbert_index_delete_filter(idx, &p, &deleted, err, sizeof err), 0);
    CHECK(deleted == 333 && calls >= 7);
    uint64_t c = 0;
    CHECK_RC(sbert_index_count_filter(idx, g1, &c), 0);
    CHECK(c == 0);
    check_agree(idx, 667);
    uint64_t hash = 0;
    char *reply = NULL;
    size_t len = 0;
    CHECK_RC(sbert_index_req_find(idx, "del-g1", 6, &hash, &reply, &len), 0);
    CHECK(hash == 77 && reply && strcmp(reply, "{\"deleted\":333}") == 0);
    free(reply);
    /* nothing matches any more: deletes nothing, records its own req */
    wr.req_id = "del-again";
    wr.req_id_len = 9;
    CHECK_RC(sbert_index_delete_filter(idx, &p, &deleted, err, sizeof err), 0);
    CHECK(deleted == 0);
    CHECK_RC(sbert_index_req_find(idx, "del-again", 9, &hash, &reply, &len), 0);
    CHECK(reply && strcmp(reply, "{\"deleted\":0}") == 0);
    free(reply);
    p.filter = NULL;
    CHECK_RC(sbert_index_delete_filter(idx, &p, &deleted, err, sizeof err), SBERT_INDEX_EINVAL);
    sbert_index_close(idx);
    idx = open_store(dir, sizeof dir, spec, 0);
    check_agree(idx, 667);
    CHECK_RC(sbert_index_count_filter(idx, g1, &c), 0);
    CHECK(c == 0);
    sbert_index_filter_free(g1);
    sbert_index_close(idx);
}

/* The metadata of id, parsed (the caller deletes it), or NULL when it has none. */
static cJSON *meta_of(sbert_index *idx, const char *id)
{
    size_t len = strlen(id);
    struct sbert_index_results *r = NULL;
    CHECK_RC(sbert_index_get(idx, &id, &len, 1, SBERT_INDEX_INCLUDE_METADATA, &r), 0);
    cJSON *m = r && r->docs[0].metadata ? cJSON_Parse(r->docs[0].metadata) : NULL;
    sbert_index_results_free(r);
    return m;
}

static int meta_is(sbert_index *idx, const char *id, const char *json)
{
    cJSON *m = meta_of(idx, id), *w = json ? cJSON_Parse(json) : NULL;
    int same = (!m && !w) || (m && w && cJSON_Compare(m, w, 1));
    if (!same) {
        char *s = m ? cJSON_PrintUnformatted(m) : NULL;
        fprintf(stderr, "  %s: metadata %s, expected %s\n", id, s ? s : "none",
                json ? json : "none");
        free(s);
    }
    cJSON_Delete(m);
    cJSON_Delete(w);
    return same;
}

static void set_lens(struct sbert_index_patch_item *it, size_t n)
{
    for (size_t i = 0; i < n; i++)
        it[i].set_len = it[i].set ? strlen(it[i].set) : 0;
}

static void test_patch(const char *spec)
{
    char dir[4200];
    sbert_index *idx = open_store(dir, sizeof dir, spec, 1);
    put_docs(idx, 100);
    float v[T_DIM];
    t_vec(7, v, T_DIM);
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 100;
    struct sbert_index_results *before = NULL, *after = NULL;
    CHECK_RC(sbert_index_query(idx, v, &q, &before), 0);

    const char *un_g[] = {"g"}, *un_all[] = {"n", "g", "absent"};
    struct sbert_index_patch_item it[] = {
        {.id = "d00001",
         .id_len = 6,
         .set = "{\"tag\":[1,2],\"n\":-1}",
         .unset = un_g,
         .n_unset = 1},
        {.id = "nope", .id_len = 4, .set = "{\"a\":1}"},
        {.id = "d00002", .id_len = 6, .unset = un_all, .n_unset = 3},
        {.id = "d00001", .id_len = 6, .set = "{\"g\":5}"},
    };
    set_lens(it, 4);
    CHECK_RC(sbert_index_patch_req(idx, it, 4, 0, NULL, NULL, NULL, 0), 0);
    CHECK(it[0].found == 1 && it[1].found == 0 && it[2].found == 1 && it[3].found == 1);
    CHECK(meta_is(idx, "d00001", "{\"n\":-1,\"tag\":[1,2],\"g\":5}"));
    CHECK(meta_is(idx, "d00002", NULL));
    CHECK(meta_is(idx, "d00003", "{\"n\":3,\"g\":0}"));
    CHECK_RC(sbert_index_query(idx, v, &q, &after), 0);
    CHECK(before && after && before->n == after->n);
    int same = before && after;
    for (size_t i = 0; same && i < before->n; i++)
        same = strcmp(before->docs[i].id, after->docs[i].id) == 0 &&
               before->docs[i].score == after->docs[i].score;
    CHECK(same);
    sbert_index_results_free(after);
    check_agree(idx, 100);

    /* over the bound: nothing changes, the item is named */
    struct sbert_index_patch_item big[] = {
        {.id = "d00003", .id_len = 6, .set = "{\"a\":1}"},
        {.id = "d00004", .id_len = 6, .set = "{\"long\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}"},
    };
    set_lens(big, 2);
    size_t bad = 99;
    char err[512] = "";
    CHECK_RC(sbert_index_patch_req(idx, big, 2, 40, NULL, &bad, err, sizeof err),
             SBERT_INDEX_EMETADATA);
    CHECK(bad == 1 && big[0].found == 0 && strstr(err, "item 1"));
    CHECK(meta_is(idx, "d00003", "{\"n\":3,\"g\":0}"));
    struct sbert_index_patch_item notobj = {
        .id = "d00003", .id_len = 6, .set = "[1]", .set_len = 3};
    CHECK_RC(sbert_index_patch_req(idx, &notobj, 1, 0, NULL, &bad, err, sizeof err),
             SBERT_INDEX_EMETADATA);
    CHECK(bad == 0);

    sbert_index_close(idx);
    idx = open_store(dir, sizeof dir, spec, 0);
    CHECK(meta_is(idx, "d00001", "{\"n\":-1,\"tag\":[1,2],\"g\":5}"));
    CHECK_RC(sbert_index_query(idx, v, &q, &after), 0);
    same = before && after && before->n == after->n;
    for (size_t i = 0; same && i < before->n; i++)
        same = strcmp(before->docs[i].id, after->docs[i].id) == 0 &&
               before->docs[i].score == after->docs[i].score;
    CHECK(same);
    sbert_index_results_free(before);
    sbert_index_results_free(after);
    check_agree(idx, 100);
    sbert_index_close(idx);
}

int main(int argc, char **argv)
{
    t_tmpdir(g_root, sizeof g_root, "manage");
    const char *default_specs[] = {"Flat", "HNSW32,Flat"};
    const char *const *specs = default_specs;
    int n_specs = 2;
    if (argc > 1) {
        specs = (const char *const *)argv + 1;
        n_specs = argc - 1;
    }
    for (int s = 0; s < n_specs; s++) {
        fprintf(stderr, "spec %s\n", specs[s]);
        test_count_and_list(specs[s]);
        test_delete_filter(specs[s]);
        test_patch(specs[s]);
    }
    if (!t_failures)
        t_rmrf(g_root);
    else
        fprintf(stderr, "test_manage: %d failure(s); files kept in %s\n", t_failures, g_root);
    return t_failures ? 1 : 0;
}
