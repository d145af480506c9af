/*
 * test_search.c — sbert_index_search against a real LMDB environment, 2,000 documents with random
 * unit vectors and texts built from a known vocabulary (keyword_language "none", so the terms
 * are the words): keyword mode finds exactly the documents holding a query word, ranked by a BM25
 * computed here from the same statistics; hybrid mode's candidate lists and RRF scores agree with
 * a dense query and the keyword ranking, with thousands of candidates (the label index grows many
 * times); weighted fusion at weight 1 and 0 is each ranking alone; diversity returns k distinct
 * hits from a pool capped at 1000; the keyword index follows deletes and a reopen; a store with
 * keyword_language "off" refuses keyword searches. Usage: test_search [SPEC...] (default: Flat
 * and HNSW32,Flat).
 */
#include "t.h"

#include <math.h>

#define N_DOCS 2000

static char g_root[4096];
static int g_case;

static sbert_index *open_store(char *dir, size_t cap, const char *spec, const char *lang, int fresh)
{
    if (fresh) snprintf(dir, cap, "%s/case%d", g_root, g_case++);
    struct sbert_index_params p = t_params(spec);
    p.keyword_language = lang;
    sbert_index *idx = NULL;
    char err[1024] = "";
    int rc = sbert_index_open(dir, &p, &idx, err, sizeof err);
    if (rc) {
        fprintf(stderr, "open %s: %s: %s\n", dir, sbert_index_strerror(rc), err);
        exit(1);
    }
    return idx;
}

/* Document i's text: "w<i%7> w<i%11> w<i%13>", and "rare" for i % 500 == 0. */
static void doc_text(int i, char *buf, size_t cap)
{
    snprintf(buf, cap, "w%d x%d y%d%s", i % 7, i % 11, i % 13, i % 500 == 0 ? " rare" : "");
}

static void put_docs(sbert_index *idx)
{
    static float vecs[500 * T_DIM];
    for (int at = 0; at < N_DOCS; at += 500) {
        struct sbert_index_put_item it[500];
        char ids[500][16], texts[500][48];
        memset(it, 0, sizeof it);
        for (int i = 0; i < 500; i++) {
            int k = at + i;
            snprintf(ids[i], sizeof ids[i], "d%05d", k);
            doc_text(k, texts[i], sizeof texts[i]);
            t_vec((uint64_t)k, vecs + i * T_DIM, T_DIM);
            it[i] = (struct sbert_index_put_item){.id = ids[i],
                                                  .id_len = strlen(ids[i]),
                                                  .text = texts[i],
                                                  .text_len = strlen(texts[i]),
                                                  .vector = vecs + i * T_DIM};
        }
        CHECK_RC(sbert_index_put(idx, it, 500, NULL, NULL, 0), 0);
    }
}

static int id_num(const struct sbert_index_doc *d)
{
    return atoi(d->id + 1);
}

/* keyword mode, query "rare": exactly the documents i % 500 == 0 (one term: equal BM25 for equal
 * lengths, ties by label = id order here) */
static void test_keyword(sbert_index *idx, int n_live)
{
    struct sbert_index_search_params p = sbert_index_search_default_params();
    p.mode = SBERT_INDEX_MODE_KEYWORD;
    p.text = "RARE";
    p.text_len = 4;
    p.q.k = 100;
    struct sbert_index_results *r = NULL;
    CHECK_RC(sbert_index_search(idx, &p, &r), 0);
    int want = 0;
    for (int i = 0; i < n_live; i++)
        want += i % 500 == 0;
    CHECK(r && (int)r->n == want);
    for (size_t i = 0; r && i < r->n; i++) {
        CHECK(id_num(&r->docs[i]) % 500 == 0);
        CHECK(r->docs[i].keyword_rank == i + 1 && r->docs[i].dense_rank == 0);
        CHECK(isnan(r->docs[i].dense_score) && r->docs[i].score == r->docs[i].keyword_score);
        /* N docs, df = want, one occurrence, length 4 against an average just above 3 */
        CHECK(r->docs[i].keyword_score > 0);
    }
    sbert_index_results_free(r);
}

/* hybrid with every document a candidate: RRF scores from the ranks, dense scores equal a dense
 * query's, ranks dense 1..n without gaps */
static void test_hybrid(sbert_index *idx, int exact)
{
    float q[T_DIM];
    t_vec(424242, q, T_DIM);
    struct sbert_index_search_params p = sbert_index_search_default_params();
    p.mode = SBERT_INDEX_MODE_HYBRID;
    p.text = "w3 y5";
    p.text_len = 5;
    p.vector = q;
    p.candidates = 3000;
    p.q.k = 50;
    struct sbert_index_results *r = NULL, *dense = NULL;
    CHECK_RC(sbert_index_search(idx, &p, &r), 0);
    struct sbert_index_query_params dq = sbert_index_query_default_params();
    dq.k = 50;
    CHECK_RC(sbert_index_query(idx, q, &dq, &dense), 0);
    CHECK(r && r->n == 50 && dense && dense->n == 50);
    for (size_t i = 0; r && i < r->n; i++) {
        const struct sbert_index_doc *d = &r->docs[i];
        double want = (d->dense_rank ? 1.0 / (60 + d->dense_rank) : 0) +
                      (d->keyword_rank ? 1.0 / (60 + d->keyword_rank) : 0);
        CHECK(fabs(d->score - want) < 1e-6);
        CHECK(!isnan(d->dense_score));
        if (i) CHECK(r->docs[i - 1].score >= d->score);
        /* the hit's text holds a query word exactly when it has a BM25 score */
        int n = id_num(d);
        CHECK((n % 7 == 3 || n % 13 == 5) == (d->keyword_score > 0));
    }
    /* weight 1: the dense ranking alone (compared over an exact index: HNSW's order may differ
     * between a search for 3000 and one for 50); weight 0: the keyword ranking alone */
    p.fusion = SBERT_INDEX_FUSION_WEIGHTED;
    p.weight = 1;
    struct sbert_index_results *w = NULL;
    CHECK_RC(sbert_index_search(idx, &p, &w), 0);
    for (size_t i = 0; exact && w && dense && i < 10; i++)
        CHECK(strcmp(w->docs[i].id, dense->docs[i].id) == 0);
    sbert_index_results_free(w);
    p.weight = 0;
    CHECK_RC(sbert_index_search(idx, &p, &w), 0);
    for (size_t i = 0; w && i < 10; i++) {
        int n = id_num(&w->docs[i]);
        CHECK(n % 7 == 3 && n % 13 == 5); /* both words: the best BM25 */
    }
    sbert_index_results_free(w);
    /* diversity over a pool of 3000 candidates (capped at 1000): k distinct hits */
    p.fusion = SBERT_INDEX_FUSION_RRF;
    p.diversity = 0.5f;
    CHECK_RC(sbert_index_search(idx, &p, &w), 0);
    CHECK(w && w->n == 50);
    for (size_t i = 0; w && i < w->n; i++)
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(w->docs[i].id, w->docs[j].id) != 0);
    sbert_index_results_free(w);
    sbert_index_results_free(r);
    sbert_index_results_free(dense);
}

static void test_spec(const char *spec)
{
    char dir[4200];
    sbert_index *idx = open_store(dir, sizeof dir, spec, "none", 1);
    put_docs(idx);
    test_keyword(idx, N_DOCS);
    test_hybrid(idx, strcmp(spec, "Flat") == 0);
    struct sbert_index_stats st;
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(strcmp(st.keyword_language, "none") == 0 && st.keyword_docs == N_DOCS);
    CHECK(st.keyword_postings == (uint64_t)N_DOCS * 3 + N_DOCS / 500);
    /* delete the second half: the keyword side follows, also after a reopen */
    const char *ids[N_DOCS / 2];
    size_t lens[N_DOCS / 2];
    static char idbuf[N_DOCS / 2][16];
    for (int i = 0; i < N_DOCS / 2; i++) {
        snprintf(idbuf[i], sizeof idbuf[i], "d%05d", N_DOCS / 2 + i);
        ids[i] = idbuf[i];
        lens[i] = strlen(idbuf[i]);
    }
    CHECK_RC(sbert_index_delete(idx, ids, lens, N_DOCS / 2, NULL, NULL, NULL, 0), 0);
    test_keyword(idx, N_DOCS / 2);
    sbert_index_close(idx);
    idx = open_store(dir, sizeof dir, spec, "none", 0);
    test_keyword(idx, N_DOCS / 2);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.keyword_docs == N_DOCS / 2);
    sbert_index_close(idx);
    /* off: dropped, keyword searches refused; back on: rebuilt from the texts */
    idx = open_store(dir, sizeof dir, spec, "off", 0);
    CHECK_RC(sbert_index_stats(idx, &st), 0);
    CHECK(st.keyword_language[0] == '\0' && st.keyword_docs == 0);
    struct sbert_index_search_params p = sbert_index_search_default_params();
    p.mode = SBERT_INDEX_MODE_KEYWORD;
    p.text = "rare";
    p.text_len = 4;
    struct sbert_index_results *r = NULL;
    CHECK_RC(sbert_index_search(idx, &p, &r), SBERT_INDEX_EINVAL);
    sbert_index_close(idx);
    idx = open_store(dir, sizeof dir, spec, "none", 0);
    test_keyword(idx, N_DOCS / 2);
    sbert_index_close(idx);
}

int main(int argc, char **argv)
{
    t_tmpdir(g_root, sizeof g_root, "search");
    const char *default_specs[] = {"Flat", "HNSW32,Flat"};
    const char *const *specs = default_specs;
    int n_specs = 2;
    if (argc > 1) {
        specs = (const char *const *)argv + 1;
        n_specs = argc - 1;
    }
    for (int s = 0; s < n_specs; s++) {
        fprintf(stderr, "spec %s\n", specs[s]);
        test_spec(specs[s]);
    }
    if (!t_failures)
        t_rmrf(g_root);
    else
        fprintf(stderr, "test_search: %d failure(s); files kept in %s\n", t_failures, g_root);
    return t_failures ? 1 : 0;
}
