/*
 * test_passages.c — documents of several passages in the store (sbert_index.h, index/store.h's
 * record version 2): labels per passage, the document vector (the score's lead, get's and pairs'
 * vector), document scores (lead_weight), best passages, passage hits, filters, upsert and delete
 * of every passage, patch and reindex keeping them, replay of the change log after a writer died
 * without closing, rebuild, verify. Random unit vectors, no model. Usage: test_passages (a child
 * mode, "writer DIR", is this program run by itself).
 */
#include <sys/wait.h>

#include "t.h"

/* "multi": 5 passages of a text of 5 sentences; "s<i>": one passage each. */
#define NP 5
static const char multi_text[] = "Zero one. Two three. Four five. Six seven. Eight nine.";
static const size_t multi_spans[2 * NP] = {0, 9, 10, 20, 21, 31, 32, 42, 43, 54};
/* A multi-passage document of seed s has passage i's vector t_vec(s + i) and its document vector
 * t_vec(s + DOC_SEED). */
#define DOC_SEED 50

static void put_multi(sbert_index *idx, const char *id, uint64_t seed, size_t np, const char *meta)
{
    float *v = malloc(np * T_DIM * sizeof *v);
    for (size_t i = 0; i < np; i++)
        t_vec(seed + i, v + i * T_DIM, T_DIM);
    struct sbert_index_put_item it = {.id = id,
                                      .id_len = strlen(id),
                                      .text = multi_text,
                                      .text_len = strlen(multi_text),
                                      .metadata = meta,
                                      .metadata_len = meta ? strlen(meta) : 0,
                                      .vector = v,
                                      .n_passages = np,
                                      .passages = multi_spans};
    float dv[T_DIM];
    t_vec(seed + DOC_SEED, dv, T_DIM);
    if (np > 1) it.doc_vector = dv;
    char err[512] = "";
    CHECK_RC(sbert_index_put(idx, &it, 1, NULL, err, sizeof err), 0);
    free(v);
}

static void put_singles(sbert_index *idx, int from, int to)
{
    for (int i = from; i < to; i++) {
        char id[32], text[64];
        snprintf(id, sizeof id, "s%d", i);
        snprintf(text, sizeof text, "single %d", i);
        float v[T_DIM];
        t_vec(1000 + (uint64_t)i, v, T_DIM);
        struct sbert_index_put_item it = {.id = id,
                                          .id_len = strlen(id),
                                          .text = text,
                                          .text_len = strlen(text),
                                          .metadata = "{\"kind\":\"single\"}",
                                          .metadata_len = 17,
                                          .vector = v};
        CHECK_RC(sbert_index_put(idx, &it, 1, NULL, NULL, 0), 0);
    }
}

static double dot(const float *a, const float *b)
{
    double s = 0;
    for (int i = 0; i < T_DIM; i++)
        s += (double)a[i] * b[i];
    return s;
}

static void counts(sbert_index *idx, uint64_t docs, uint64_t passages, int line)
{
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    if (st.count != docs || st.index_count != passages) {
        fprintf(stderr, "test_passages.c:%d: %llu documents, %llu vectors; wanted %llu, %llu\n",
                line, (unsigned long long)st.count, (unsigned long long)st.index_count,
                (unsigned long long)docs, (unsigned long long)passages);
        t_failures++;
    }
}
#define COUNTS(idx, d, p) counts((idx), (d), (p), __LINE__)

static sbert_index *open_store(const char *dir)
{
    struct sbert_index_params p = t_params("Flat");
    sbert_index *idx = NULL;
    char err[512] = "";
    int rc = sbert_index_open(dir, &p, &idx, err, sizeof err);
    if (rc) {
        fprintf(stderr, "open %s: %s\n", dir, err);
        exit(1);
    }
    return idx;
}

/* get's vector of id is want. */
static void get_vector(sbert_index *idx, const char *id, const float *want)
{
    size_t len = strlen(id);
    struct sbert_index_results *r = NULL;
    CHECK_RC(sbert_index_get(idx, &id, &len, 1, SBERT_INDEX_INCLUDE_VECTOR, &r), 0);
    CHECK(r && r->n == 1 && r->docs[0].found && r->docs[0].vector &&
          fabs(dot(r->docs[0].vector, want) - 1) < 1e-5);
    sbert_index_results_free(r);
}

/* The top hit of a query for passage i of "multi" (seed) is "multi", with that passage best; its
 * score leads with its document vector, which get returns. */
static void scores(sbert_index *idx, uint64_t seed)
{
    float v[NP][T_DIM], dv[T_DIM];
    for (int i = 0; i < NP; i++)
        t_vec(seed + (uint64_t)i, v[i], T_DIM);
    t_vec(seed + DOC_SEED, dv, T_DIM);
    get_vector(idx, "multi", dv);
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 3;
    q.include = SBERT_INDEX_INCLUDE_TEXT;
    struct sbert_index_results *r = NULL;
    CHECK_RC(sbert_index_query(idx, v[3], &q, &r), 0);
    CHECK(r && r->n == 3 && strcmp(r->docs[0].id, "multi") == 0);
    if (r && r->n) {
        const struct sbert_index_doc *d = &r->docs[0];
        CHECK(d->n_passages == 1 && d->passages[0].start == multi_spans[6] &&
              d->passages[0].end == multi_spans[7]);
        CHECK(d->n_passages == 1 && strcmp(d->passages[0].text, "Six seven.") == 0);
        CHECK(fabsf(d->passages[0].score - 1.0f) < 1e-5f);
        /* 0.3 * the document vector's cosine + 0.7 * the best's (the default lead_weight) */
        CHECK(fabs(d->score - (0.3 * dot(v[3], dv) + 0.7)) < 1e-5);
        CHECK(d->text && strcmp(d->text, multi_text) == 0);
        /* a one-passage hit: its passage is its whole text, scored as the document */
        for (size_t j = 1; j < r->n; j++)
            CHECK(r->docs[j].n_passages == 1 && r->docs[j].passages[0].start == 0 &&
                  r->docs[j].passages[0].end == r->docs[j].text_len &&
                  r->docs[j].passages[0].score == r->docs[j].score);
    }
    sbert_index_results_free(r);
    q.lead_weight = 1;
    CHECK_RC(sbert_index_query(idx, v[3], &q, &r), 0);
    for (size_t j = 0; r && j < r->n; j++)
        if (strcmp(r->docs[j].id, "multi") == 0)
            CHECK(fabs(r->docs[j].score - dot(v[3], dv)) < 1e-5);
    sbert_index_results_free(r);
    q.lead_weight = 0;
    q.passages_per_doc = 3;
    q.include = 0;
    CHECK_RC(sbert_index_query(idx, v[3], &q, &r), 0);
    CHECK(r && r->n && fabsf(r->docs[0].score - 1.0f) < 1e-5f && r->docs[0].text == NULL);
    if (r && r->n) {
        CHECK(r->docs[0].n_passages == 3);
        for (size_t j = 1; j < r->docs[0].n_passages; j++)
            CHECK(r->docs[0].passages[j - 1].score >= r->docs[0].passages[j].score);
    }
    sbert_index_results_free(r);
    /* passages as hits: passage 3 first, each with its document */
    q = sbert_index_query_default_params();
    q.k = 4;
    q.group_passages = 1;
    CHECK_RC(sbert_index_query(idx, v[3], &q, &r), 0);
    CHECK(r && r->n == 4 && strcmp(r->docs[0].id, "multi") == 0 && r->docs[0].n_passages == 1 &&
          r->docs[0].passages[0].start == multi_spans[6] && fabsf(r->docs[0].score - 1.0f) < 1e-5f);
    sbert_index_results_free(r);
    /* a filter over multi-passage documents */
    sbert_index_filter *f = NULL;
    const char *fj = "{\"kind\":\"multi\"}";
    CHECK_RC(sbert_index_filter_compile(fj, strlen(fj), &f, NULL, 0), 0);
    q = sbert_index_query_default_params();
    q.k = 5;
    q.filter = f;
    CHECK_RC(sbert_index_query(idx, v[4], &q, &r), 0);
    CHECK(r && r->n == 1 && strcmp(r->docs[0].id, "multi") == 0 &&
          r->docs[0].passages[0].start == multi_spans[8]);
    sbert_index_results_free(r);
    /* the hybrid search's dense side scores documents as a query does */
    struct sbert_index_search_params sp = sbert_index_search_default_params();
    sp.mode = SBERT_INDEX_MODE_HYBRID;
    sp.text = "seven";
    sp.text_len = 5;
    sp.vector = v[3];
    sp.q.k = 3;
    CHECK_RC(sbert_index_search(idx, &sp, &r), 0);
    CHECK(r && r->n && strcmp(r->docs[0].id, "multi") == 0 &&
          fabs(r->docs[0].dense_score - (0.3 * dot(v[3], dv) + 0.7)) < 1e-5);
    sbert_index_results_free(r);
    sbert_index_filter_free(f);
}

/* The top hit of a query for v, as "id start" (for comparing states). */
static void top(sbert_index *idx, uint64_t seed, char *out, size_t cap)
{
    float v[T_DIM];
    t_vec(seed, v, T_DIM);
    struct sbert_index_query_params q = sbert_index_query_default_params();
    q.k = 1;
    struct sbert_index_results *r = NULL;
    CHECK_RC(sbert_index_query(idx, v, &q, &r), 0);
    snprintf(out, cap, "%s %zu %.6f", r && r->n ? r->docs[0].id : "-",
             r && r->n ? r->docs[0].passages[0].start : 0, r && r->n ? r->docs[0].score : 0);
    sbert_index_results_free(r);
}

/* The child: writes after the snapshot and dies without closing (the log must be replayed). */
static int writer(const char *dir)
{
    sbert_index *idx = open_store(dir);
    put_multi(idx, "multi2", 500, 4, "{\"kind\":\"multi\"}");
    put_multi(idx, "multi", 300, 3, "{\"kind\":\"multi\"}"); /* upsert: 5 -> 3 passages */
    const char *gone = "s3";
    size_t len = 2;
    CHECK_RC(sbert_index_delete(idx, &gone, &len, 1, NULL, NULL, NULL, 0), 0);
    _exit(t_failures ? 1 : 0);
}

static int fake_encode(const char *const *texts, const size_t *lens, size_t n, float *out,
                       void *user)
{
    size_t *calls = user;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = 1469598103934665603ull;
        for (size_t j = 0; j < lens[i]; j++)
            h = (h ^ (unsigned char)texts[i][j]) * 1099511628211ull;
        CHECK(texts[i][lens[i]] == 0);
        t_vec(h, out + i * T_DIM, T_DIM);
    }
    *calls += n;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "writer") == 0) return writer(argv[2]);
    char root[4096], dir[4200];
    t_tmpdir(root, sizeof root, "passages");
    snprintf(dir, sizeof dir, "%s/s", root);
    sbert_index *idx = open_store(dir);
    put_singles(idx, 0, 20);
    put_multi(idx, "multi", 100, NP, "{\"kind\":\"multi\"}");
    COUNTS(idx, 21, 20 + NP);
    scores(idx, 100);

    /* bad passages are refused, nothing stored */
    float v[2 * T_DIM];
    t_vec(7, v, T_DIM);
    t_vec(8, v + T_DIM, T_DIM);
    size_t bad[4] = {0, 5, 3, 100};
    struct sbert_index_put_item it = {.id = "bad",
                                      .id_len = 3,
                                      .text = "short",
                                      .text_len = 5,
                                      .vector = v,
                                      .n_passages = 2,
                                      .passages = bad};
    size_t bi = 9;
    CHECK(sbert_index_put(idx, &it, 1, &bi, NULL, 0) == SBERT_INDEX_EINVAL && bi == 0);
    COUNTS(idx, 21, 20 + NP);
    /* sound passages without the document vector are refused too */
    size_t good[4] = {0, 2, 3, 5};
    it.passages = good;
    bi = 9;
    CHECK(sbert_index_put(idx, &it, 1, &bi, NULL, 0) == SBERT_INDEX_EINVAL && bi == 0);
    COUNTS(idx, 21, 20 + NP);

    /* patch keeps the passages (a new label range, the same vectors) */
    struct sbert_index_patch_item pi = {
        .id = "multi", .id_len = 5, .set = "{\"p\":1}", .set_len = 7};
    CHECK_RC(sbert_index_patch_req(idx, &pi, 1, 0, NULL, NULL, NULL, 0), 0);
    CHECK(pi.found == 1);
    COUNTS(idx, 21, 20 + NP);
    scores(idx, 100);

    /* pairs take part by their document vector: no pair of a document with itself, and a
     * pair's score is the document vectors' cosine */
    struct sbert_index_pairs_params pp = sbert_index_pairs_default_params();
    struct sbert_index_pairs *pr = NULL;
    CHECK_RC(sbert_index_pairs(idx, &pp, &pr), 0);
    float dv[T_DIM], sv[T_DIM];
    t_vec(100 + DOC_SEED, dv, T_DIM);
    size_t with_multi = 0;
    for (size_t i = 0; pr && i < pr->n; i++) {
        CHECK(strcmp(pr->pairs[i].a, pr->pairs[i].b) != 0);
        const char *other = strcmp(pr->pairs[i].a, "multi") == 0   ? pr->pairs[i].b
                            : strcmp(pr->pairs[i].b, "multi") == 0 ? pr->pairs[i].a
                                                                   : NULL;
        if (!other) continue;
        t_vec(1000 + (uint64_t)atoi(other + 1), sv, T_DIM);
        CHECK(fabs(pr->pairs[i].score - dot(dv, sv)) < 1e-5);
        with_multi++;
    }
    CHECK(with_multi > 0);
    sbert_index_pairs_free(pr);

    /* a clean close (snapshot), then a writer that dies: the reopen replays its changes */
    sbert_index_close(idx);
    char self[4096];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    CHECK(sl > 0);
    self[sl > 0 ? sl : 0] = 0;
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "writer", dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    idx = open_store(dir);
    COUNTS(idx, 21, 19 + 3 + 4);
    char want[3][128], got[128];
    top(idx, 100 + 3, want[0], sizeof want[0]); /* the replaced passages are gone */
    top(idx, 300 + 2, want[1], sizeof want[1]);
    top(idx, 500 + 3, want[2], sizeof want[2]);
    CHECK(strncmp(want[0], "multi ", 6) != 0);
    CHECK(strncmp(want[1], "multi 21 ", 9) == 0);
    CHECK(strncmp(want[2], "multi2 32 ", 10) == 0);
    sbert_index_close(idx);

    /* verify counts documents and passages; then a rebuild without the snapshot agrees */
    struct sbert_index_verify_report vr;
    char err[512] = "";
    CHECK_RC(sbert_index_verify(dir, &vr, err, sizeof err), 0);
    CHECK(vr.documents == 21 && vr.passages == 26 && vr.snapshot && vr.snapshot_count == 26);
    char snap[4300];
    snprintf(snap, sizeof snap, "%s/index.snap", dir);
    CHECK(unlink(snap) == 0);
    idx = open_store(dir);
    COUNTS(idx, 21, 26);
    for (int i = 0; i < 3; i++) {
        top(idx, i == 0 ? 103 : i == 1 ? 302 : 503, got, sizeof got);
        CHECK(strcmp(got, want[i]) == 0);
    }

    /* reindex re-encodes every passage, each a NUL-terminated text, and the whole text of each
     * document of several passages for its document vector */
    struct sbert_index_model nm = t_params("Flat").model;
    nm.name = "model-b";
    nm.weights_sha256 = T_SHA_B;
    size_t calls = 0;
    CHECK_RC(sbert_index_reindex(idx, &nm, fake_encode, &calls, err, sizeof err), 0);
    CHECK(calls == 26 + 2);
    COUNTS(idx, 21, 26);
    float rv[T_DIM];
    uint64_t rh = 1469598103934665603ull;
    for (size_t j = 0; j < strlen(multi_text); j++)
        rh = (rh ^ (unsigned char)multi_text[j]) * 1099511628211ull;
    t_vec(rh, rv, T_DIM);
    get_vector(idx, "multi", rv);

    /* a delete by filter and a delete remove every passage */
    sbert_index_filter *f = NULL;
    const char *fj = "{\"kind\":\"multi\"}";
    CHECK_RC(sbert_index_filter_compile(fj, strlen(fj), &f, NULL, 0), 0);
    struct sbert_index_delete_filter_params dp = {.filter = f};
    uint64_t nd = 0;
    CHECK_RC(sbert_index_delete_filter(idx, &dp, &nd, err, sizeof err), 0);
    CHECK(nd == 2);
    COUNTS(idx, 19, 19);
    sbert_index_filter_free(f);
    put_multi(idx, "multi", 700, NP, NULL);
    COUNTS(idx, 20, 19 + NP);
    const char *id = "multi";
    size_t len = 5;
    CHECK_RC(sbert_index_delete(idx, &id, &len, 1, NULL, NULL, err, sizeof err), 0);
    COUNTS(idx, 19, 19);
    sbert_index_close(idx);
    CHECK_RC(sbert_index_verify(dir, &vr, err, sizeof err), 0);
    CHECK(vr.documents == 19 && vr.passages == 19);

    if (t_failures == 0)
        t_rmrf(root);
    else
        fprintf(stderr, "test_passages: files kept in %s\n", root);
    printf("test_passages: %d failure(s)\n", t_failures);
    return t_failures ? 1 : 0;
}
