/*
 * facts.c — re-checks, through the FAISS C API on the FAISS this build links, the FAISS 1.7.3
 * behaviours vindex is designed around (issue 3). Prints one line per fact; exit 0 always
 * unless FAISS cannot be used at all: this is a measurement, not a test.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "Index_c.h"
#include "error_c.h"
#include "impl/AuxIndexStructures_c.h"
#include "index_factory_c.h"
#include "vindex_shim.h"

#define D 384

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *rand_unit(size_t n, unsigned seed)
{
    float *x = malloc(n * D * sizeof *x);
    srand(seed);
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) {
            x[i * D + j] = (float)rand() / RAND_MAX - 0.5f;
            s += x[i * D + j] * x[i * D + j];
        }
        for (int j = 0; j < D; j++)
            x[i * D + j] /= (float)sqrt(s);
    }
    return x;
}

static const char *last(void)
{
    const char *e = faiss_get_last_error();
    return e ? e : "(no message)";
}

static FaissIndex *make(const char *spec)
{
    FaissIndex *ix = NULL;
    if (faiss_index_factory(&ix, D, spec, METRIC_INNER_PRODUCT)) {
        fprintf(stderr, "factory %s: %s\n", spec, last());
        exit(1);
    }
    return ix;
}

static int keep_1pct(int64_t label, void *user)
{
    (void)user;
    return label % 100 == 0;
}

int main(void)
{
    enum { N = 20000 };
    float *x = rand_unit(N, 1);
    idx_t *ids = malloc(N * sizeof *ids);
    for (int i = 0; i < N; i++)
        ids[i] = 1000000 + i;

    /* 1. bare HNSW: add_with_ids, remove_ids, range_search */
    FaissIndex *h = make("HNSW32,Flat");
    int rc = faiss_Index_add_with_ids(h, 100, x, ids);
    printf("bare HNSW add_with_ids: %s\n", rc ? last() : "works");
    faiss_Index_add(h, 100, x);
    FaissIDSelectorBatch *sel;
    faiss_IDSelectorBatch_new(&sel, 1, ids);
    size_t nr = 0;
    rc = faiss_Index_remove_ids(h, (FaissIDSelector *)sel, &nr);
    printf("bare HNSW remove_ids: %s\n", rc ? last() : "works");
    FaissRangeSearchResult *rr;
    faiss_RangeSearchResult_new(&rr, 1);
    rc = faiss_Index_range_search(h, 1, x, 0.5f, rr);
    printf("bare HNSW range_search: %s\n", rc ? last() : "works");
    faiss_RangeSearchResult_free(rr);
    faiss_Index_free(h);

    /* 2. IVF in IDMap2: remove_ids then search for the survivors' own vectors */
    const char *wrapped[] = {"IDMap2,IVF64,Flat", "IVF64,Flat"};
    for (int w = 0; w < 2; w++) {
        FaissIndex *ix = make(wrapped[w]);
        faiss_Index_train(ix, 5000, x);
        rc = faiss_Index_add_with_ids(ix, 5000, x, ids);
        if (rc) {
            printf("%s add_with_ids: %s\n", wrapped[w], last());
            faiss_Index_free(ix);
            continue;
        }
        idx_t rm[100];
        for (int i = 0; i < 100; i++)
            rm[i] = ids[i * 7];
        FaissIDSelectorBatch *s2;
        faiss_IDSelectorBatch_new(&s2, 100, rm);
        rc = faiss_Index_remove_ids(ix, (FaissIDSelector *)s2, &nr);
        faiss_IDSelector_free((FaissIDSelector *)s2);
        int wrong = 0, checked = 0;
        for (int i = 1; i < 5000 && !rc; i += 13) {
            if (i % 7 == 0) continue;
            float dist;
            idx_t lab;
            faiss_Index_search(ix, 1, x + (size_t)i * D, 1, &dist, &lab);
            checked++;
            wrong += lab != ids[i];
        }
        printf("%s remove_ids of 100: %s, removed %zu; self-search wrong labels %d of %d\n",
               wrapped[w], rc ? last() : "ok", nr, wrong, checked);
        faiss_Index_free(ix);
    }

    /* 3. IVF..,PQ16 vs PQ16np training time */
    const char *pq[] = {"IVF256,PQ16np", "IVF256,PQ16"};
    for (int i = 0; i < 2; i++) {
        FaissIndex *ix = make(pq[i]);
        double t0 = now();
        rc = faiss_Index_train(ix, N, x);
        printf("%s train on %d: %.2f s%s\n", pq[i], N, now() - t0, rc ? last() : "");
        faiss_Index_free(ix);
    }

    /* 4. the C API has no SearchParameters; through the shim (no fallback): a filtered HNSW
     * search with a 1% filter, efSearch 16 */
    printf("C API search with SearchParameters/IDSelector: not declared in c_api/Index_c.h\n");
    FaissIndex *m = make("IDMap2,HNSW32,Flat");
    faiss_Index_add_with_ids(m, N, x, ids);
    struct vindex_filter f = {.keep = keep_1pct};
    struct vshim_select vs = {.filter = &f};
    enum { NQ = 100, K = 10 };
    idx_t L[NQ * K];
    float S[NQ * K];
    float *q = rand_unit(NQ, 2);
    char err[256];
    if (vshim_search(m, VSHIM_IDMAP, q, NQ, K, 16, 0, &vs, 0, L, S, err, sizeof err) == 0) {
        int short_rows = 0;
        for (int i = 0; i < NQ; i++)
            short_rows += L[i * K + K - 1] < 0;
        printf("filtered HNSW32 (1%% pass, efSearch 16, %d vectors): %d of %d rows shorter than "
               "k=%d\n",
               N, short_rows, NQ, K);
    }
    free(q);
    faiss_Index_free(m);
    free(x);
    free(ids);
    return 0;
}
