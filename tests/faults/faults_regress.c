/*
 * faults_regress.c — one regression test per defect the fault loops found (issue 17), each named
 * after it and asserting exactly what was wrong, so a return of the defect names itself:
 *
 *   faults_regress <case> [model dir]
 *
 * Each case fails call N = 1, 2, ... of one family during one call until the call reaches no
 * call N (as the loops do) and checks at every N that the defect's symptom is absent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"
#include "sbert.h"
#include "sbert_proto.h"
#include "t.h"
#include "vindex.h"

static char g_root[4096], g_dir[4200], g_snap[4300];
static const char *g_model;

/* One injection: sets up with faults off, runs the call with call n of the case's family failing
 * (arm), checks. Returns whether call n was reached. */
typedef int (*case_fn)(uint64_t n);

static unsigned g_mask;

static void arm(uint64_t n)
{
    sbert_fault_arm(g_mask, n);
}

static int disarm(void)
{
    sbert_fault_disarm();
    return sbert_fault_fired() > 0;
}

static struct sbert_index_params params(void)
{
    struct sbert_index_params p = t_params("Flat");
    p.snapshot_changes = UINT64_MAX;
    p.snapshot_seconds = UINT32_MAX;
    return p;
}

static sbert_index *open_store(void)
{
    struct sbert_index_params p = params();
    sbert_index *idx = NULL;
    if (sbert_index_open(g_dir, &p, &idx, NULL, 0)) exit(97);
    return idx;
}

/* A store of 8 documents with metadata {"n": i, "even": i % 2 == 0}. */
static void make_store(void)
{
    t_rmrf(g_dir);
    sbert_index *idx = open_store();
    for (int i = 0; i < 8; i++) {
        char id[16], meta[64];
        float v[T_DIM];
        snprintf(id, sizeof id, "d%d", i);
        snprintf(meta, sizeof meta, "{\"n\":%d,\"even\":%s}", i, i % 2 ? "false" : "true");
        t_vec((uint64_t)i + 1, v, T_DIM);
        struct sbert_index_put_item it = {.id = id,
                                          .id_len = strlen(id),
                                          .text = "t",
                                          .text_len = 1,
                                          .metadata = meta,
                                          .metadata_len = strlen(meta),
                                          .vector = v};
        if (sbert_index_put(idx, &it, 1, NULL, NULL, 0)) exit(97);
    }
    sbert_index_close(idx);
}

/* ---- the meta record (index/store_meta.c) ---------------------------------------------------- */

/* store_meta_put ignored cJSON_Add*'s results: an allocation failing while a store was created
 * wrote a model entry without its members, and every later open failed with EFORMAT. */
static int meta_put_oom_damages_new_store(uint64_t n)
{
    t_rmrf(g_dir);
    struct sbert_index_params p = params();
    sbert_index *idx = NULL;
    arm(n);
    int rc = sbert_index_open(g_dir, &p, &idx, NULL, 0);
    int fired = disarm();
    sbert_index_close(idx);
    CHECK(rc == 0 || rc == SBERT_INDEX_ENOMEM);
    idx = NULL;
    char err[256] = "";
    rc = sbert_index_open(g_dir, &p, &idx, err, sizeof err);
    CHECK_RC(rc, 0);
    if (rc) fprintf(stderr, "  reopen after allocation %llu: %s\n", (unsigned long long)n, err);
    sbert_index_close(idx);
    return fired;
}

/* store_meta_get called an allocation failure while parsing the model entry, or an LMDB error
 * reading an entry, a damaged store (EFORMAT). */
static int meta_get_error_as_damaged(uint64_t n)
{
    struct sbert_index_params p = params();
    sbert_index *idx = NULL;
    arm(n);
    int rc = sbert_index_open(g_dir, &p, &idx, NULL, 0);
    int fired = disarm();
    sbert_index_close(idx);
    CHECK(rc != SBERT_INDEX_EFORMAT);
    return fired;
}

/* ---- parses that ran out of memory ----------------------------------------------------------- */

/* put: metadata whose parse ran out of memory was refused as EMETADATA. */
static int put_metadata_oom_as_bad_metadata(uint64_t n)
{
    sbert_index *idx = open_store();
    float v[T_DIM];
    t_vec(99, v, T_DIM);
    const char *meta = "{\"lang\":\"en\",\"tags\":[\"a\",\"b\"],\"n\":1}";
    struct sbert_index_put_item it = {.id = "m",
                                      .id_len = 1,
                                      .text = "t",
                                      .text_len = 1,
                                      .metadata = meta,
                                      .metadata_len = strlen(meta),
                                      .vector = v};
    arm(n);
    int rc = sbert_index_put(idx, &it, 1, NULL, NULL, 0);
    int fired = disarm();
    CHECK(rc == 0 || rc == SBERT_INDEX_ENOMEM);
    sbert_index_close(idx);
    return fired;
}

/* filter compile: a filter whose parse ran out of memory was refused as EFILTER. */
static int filter_oom_as_bad_filter(uint64_t n)
{
    const char *fj = "{\"$or\":[{\"even\":true},{\"n\":{\"$gte\":3}}]}";
    sbert_index_filter *f = NULL;
    arm(n);
    int rc = sbert_index_filter_compile(fj, strlen(fj), &f, NULL, 0);
    int fired = disarm();
    CHECK(rc == 0 || rc == SBERT_INDEX_ENOMEM);
    sbert_index_filter_free(f);
    return fired;
}

/* The protocol's request parser answered bad_json to a sound request when cJSON ran out of
 * memory (the client was told its message was wrong). */
static int proto_oom_as_bad_json(uint64_t n)
{
    const char *msg = "{\"v\":1,\"op\":\"query\",\"req_id\":\"r1\",\"text\":\"a cat\",\"k\":3,"
                      "\"filter\":{\"lang\":\"en\"}}";
    struct sbert_proto_request req;
    struct sbert_proto_error err;
    char *rid = NULL;
    arm(n);
    int rc = sbert_proto_request_parse(msg, strlen(msg), &req, &rid, &err);
    int fired = disarm();
    CHECK(rc == 0 || rc == SBERT_PROTO_EINTERNAL);
    sbert_proto_request_clear(&req);
    free(rid);
    const char *reply = "{\"v\":1,\"ok\":true,\"req_id\":\"r1\",\"results\":[]}";
    cJSON *root = NULL;
    arm(n);
    rc = sbert_proto_reply_parse(reply, strlen(reply), &root, &err);
    fired |= disarm();
    CHECK(rc == 0 || rc == SBERT_PROTO_EINTERNAL);
    cJSON_Delete(root);
    return fired;
}

/* Loading a model: config.json, the safetensors header and special_tokens_map.json were reported
 * malformed (SBERT_EFORMAT) when cJSON ran out of memory parsing them. */
static int model_json_oom_as_malformed(uint64_t n)
{
    sbert_model *m = NULL;
    arm(n);
    int rc = sbert_model_load(g_model, NULL, &m, NULL, 0);
    int fired = disarm();
    CHECK(rc == 0 || rc == SBERT_ENOMEM);
    sbert_model_free(m);
    return fired;
}

/* ---- filtered queries (index/qfilter.c) ------------------------------------------------------ */

/* qfilter_keep took a document it could not read (an LMDB error) or match (out of memory) for a
 * non-match: the query returned 0 with hits missing; and a failed realloc of its transaction
 * list was reported as EIO. */
static int query_filter_drops_unreadable(uint64_t n)
{
    sbert_index *idx = open_store();
    const char *fj = "{\"even\":true}";
    sbert_index_filter *f = NULL;
    if (sbert_index_filter_compile(fj, strlen(fj), &f, NULL, 0)) exit(96);
    float v[T_DIM];
    t_vec(3, v, T_DIM); /* d2's vector */
    struct sbert_index_query_params p = sbert_index_query_default_params();
    p.k = 4;
    p.filter = f;
    struct sbert_index_results *r = NULL;
    arm(n);
    int rc = sbert_index_query(idx, v, &p, &r);
    int fired = disarm();
    CHECK(rc == 0 || rc == (g_mask == SBERT_FAULT_ALLOC ? SBERT_INDEX_ENOMEM : SBERT_INDEX_EIO));
    if (rc == 0) CHECK(r->n == 4 && strcmp(r->docs[0].id, "d2") == 0);
    sbert_index_results_free(r);
    sbert_index_filter_free(f);
    sbert_index_close(idx);
    return fired;
}

/* ---- snapshots ------------------------------------------------------------------------------- */

/* A store snapshot that failed on a full disk reported EIO, and one that ran out of memory EIO. */
static int snapshot_enospc_as_eio(uint64_t n)
{
    sbert_index *idx = open_store();
    /* a change of its own for each run's snapshot to cover */
    char id[32];
    float v[T_DIM];
    snprintf(id, sizeof id, "x%llu", (unsigned long long)n);
    t_vec(1000 + n, v, T_DIM);
    struct sbert_index_put_item it = {.id = id, .id_len = strlen(id), .vector = v};
    if (sbert_index_put(idx, &it, 1, NULL, NULL, 0)) exit(96);
    arm(n);
    int rc = sbert_index_snapshot(idx, NULL, 0);
    int fired = disarm();
    CHECK(rc == 0 || rc == (g_mask == SBERT_FAULT_ALLOC ? SBERT_INDEX_ENOMEM : SBERT_INDEX_ENOSPC));
    sbert_index_close(idx);
    return fired;
}

/* HNSW and IVF snapshots, written by FAISS into our stdio sink, reported a failed write(2) as
 * VINDEX_EFAISS. */
static int vindex_sink_error_as_faiss(uint64_t n)
{
    struct vindex_params p = vindex_default_params();
    p.spec = "HNSW16,Flat";
    p.dim = T_DIM;
    vindex *v = NULL;
    int64_t labels[64];
    float vecs[64 * T_DIM];
    for (int i = 0; i < 64; i++) {
        labels[i] = i;
        t_vec((uint64_t)i + 7, vecs + i * T_DIM, T_DIM);
    }
    if (vindex_create(&p, &v, NULL, 0) || vindex_add(v, labels, vecs, 64, NULL, 0)) exit(96);
    arm(n);
    int rc = vindex_snapshot_write(v, g_snap, 1, NULL, 0, NULL, 0);
    int fired = disarm();
    CHECK(rc == 0 || rc == VINDEX_ENOSPC);
    vindex_free(v);
    return fired;
}

/* The snapshot's stdio sink returned -1 when it failed (fopencookie(3): it must not), which
 * glibc 2.36 takes for SIZE_MAX bytes written: fwrite then copied up to a buffer's worth (8 KiB)
 * from past the end of the vectors, a SEGV when nothing is mapped there (faults_daemon, about
 * one run in four). This case drives that path, a body over 256 KiB whose block table cannot
 * grow in the middle of fwrite, and checks the code; whether the over-read faults depends on
 * what the allocator mapped after the vectors, so it is not certain to crash without the fix. */
static int snapshot_sink_negative_return(uint64_t n)
{
    enum { N = 256, DIM = 384 };
    struct vindex_params p = vindex_default_params();
    p.dim = DIM;
    vindex *v = NULL;
    int64_t *labels = malloc(N * sizeof *labels);
    float *vecs = malloc((size_t)N * DIM * sizeof *vecs);
    if (!labels || !vecs) exit(96);
    for (int i = 0; i < N; i++) {
        labels[i] = i;
        for (int j = 0; j < DIM; j++)
            vecs[(size_t)i * DIM + j] = (float)((i * 31 + j * 7) % 97) / 97.0f - 0.5f;
    }
    if (vindex_create(&p, &v, NULL, 0) || vindex_add(v, labels, vecs, N, NULL, 0)) exit(96);
    free(labels);
    free(vecs);
    arm(n);
    int rc = vindex_snapshot_write(v, g_snap, 1, NULL, 0, NULL, 0);
    int fired = disarm();
    CHECK(rc == 0 || rc == VINDEX_ENOMEM);
    CHECK(vindex_snapshot_remove_temps(g_snap) == 0);
    vindex_free(v);
    return fired;
}

static const struct {
    const char *name;
    case_fn fn;
    unsigned mask;
    int err;
    int needs_store, needs_model;
} g_cases[] = {
    {"meta_put_oom_damages_new_store", meta_put_oom_damages_new_store, SBERT_FAULT_ALLOC, 0, 0, 0},
    {"meta_get_oom_as_damaged", meta_get_error_as_damaged, SBERT_FAULT_ALLOC, 0, 1, 0},
    {"meta_get_lmdb_error_as_damaged", meta_get_error_as_damaged, SBERT_FAULT_LMDB, 0, 1, 0},
    {"put_metadata_oom_as_bad_metadata", put_metadata_oom_as_bad_metadata, SBERT_FAULT_ALLOC, 0, 1,
     0},
    {"filter_oom_as_bad_filter", filter_oom_as_bad_filter, SBERT_FAULT_ALLOC, 0, 0, 0},
    {"proto_oom_as_bad_json", proto_oom_as_bad_json, SBERT_FAULT_ALLOC, 0, 0, 0},
    {"model_json_oom_as_malformed", model_json_oom_as_malformed, SBERT_FAULT_ALLOC, 0, 0, 1},
    {"query_filter_drops_unreadable", query_filter_drops_unreadable, SBERT_FAULT_LMDB, 0, 1, 0},
    {"query_filter_oom_as_eio", query_filter_drops_unreadable, SBERT_FAULT_ALLOC, 0, 1, 0},
    {"snapshot_enospc_as_eio", snapshot_enospc_as_eio, SBERT_FAULT_WRITE | SBERT_FAULT_FSYNC,
     ENOSPC, 1, 0},
    {"snapshot_oom_as_eio", snapshot_enospc_as_eio, SBERT_FAULT_ALLOC, 0, 1, 0},
    {"vindex_sink_error_as_faiss", vindex_sink_error_as_faiss, SBERT_FAULT_WRITE, ENOSPC, 0, 0},
    {"snapshot_sink_negative_return", snapshot_sink_negative_return, SBERT_FAULT_ALLOC, 0, 0, 0},
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: faults_regress <case> [model dir]\n");
        return 2;
    }
    g_model = argc > 2 ? argv[2] : NULL;
    t_tmpdir(g_root, sizeof g_root, "regress");
    snprintf(g_dir, sizeof g_dir, "%s/s", g_root);
    snprintf(g_snap, sizeof g_snap, "%s/v.snap", g_root);
    int found = 0;
    for (size_t i = 0; i < sizeof g_cases / sizeof *g_cases; i++) {
        if (strcmp(argv[1], g_cases[i].name) != 0) continue;
        found = 1;
        if (g_cases[i].needs_model && !g_model) {
            fprintf(stderr, "%s needs the model directory\n", argv[1]);
            return 2;
        }
        if (g_cases[i].needs_store) make_store();
        g_mask = g_cases[i].mask;
        for (unsigned f = 1; f & SBERT_FAULT_ALL; f <<= 1)
            sbert_fault_set_errno(f, g_mask & f ? g_cases[i].err : 0);
        uint64_t n = 1;
        while (g_cases[i].fn(n) && t_failures < 20 && n < 20000)
            n++;
        CHECK(n > 1 && n < 20000); /* the call reached the family at least once */
        printf("%s: %llu injection points\n", argv[1], (unsigned long long)(n - 1));
    }
    t_rmrf(g_root);
    if (!found) {
        fprintf(stderr, "faults_regress: unknown case %s\n", argv[1]);
        return 2;
    }
    return t_failures ? 1 : 0;
}
