/* ops.c — the op table (proto/PROTOCOL.md section 4) and its handlers. */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIM(x) ((size_t)atomic_load(&d->x))

static int oom(struct sbert_proto_error *err)
{
    return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
}

/* The error of a reply that would exceed max_reply_bytes: found while it is built, before it
 * takes that much memory (sbertd_finish checks the printed reply too). */
static int reply_too_large(struct sbertd *d, const char *advice, struct sbert_proto_error *err)
{
    return sbert_proto_error_set(err, SBERT_PROTO_ETOO_LARGE, -1,
                                 "the reply would exceed max_reply_bytes (%zu bytes); %s",
                                 LIM(max_reply_bytes), advice);
}

/* JSON of a document or pair around its strings ({"id":"","found":true,"text":"",...}), for the
 * running estimate of a reply's size. */
#define DOC_JSON_OVERHEAD 64

/* Whether res's documents as JSON would exceed max_reply_bytes. The index bounds results by their
 * in-memory size (4 bytes a float), the reply by a vector's JSON size. */
static int results_too_large(struct sbertd *d, const struct sbert_index_results *res)
{
    size_t bytes = 0;
    for (const struct sbert_index_doc *doc = res->docs; doc < res->docs + res->n; doc++)
        bytes += DOC_JSON_OVERHEAD + doc->id_len + doc->text_len + doc->metadata_len +
                 (doc->vector ? (size_t)res->dim * SBERT_PROTO_FLOAT_JSON_MAX : 0);
    return bytes > LIM(max_reply_bytes);
}

/* Adds "name": [i, ...] for the flags set in trunc[0..n). */
static int add_truncated(cJSON *reply, const int *trunc, size_t n)
{
    cJSON *a = cJSON_AddArrayToObject(reply, "truncated");
    if (!a)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (trunc[i] && !cJSON_AddItemToArray(a, cJSON_CreateNumber((double)i)))
            return -1;
    return 0;
}

/* A document of a result as JSON: id, then what include asks for. */
static cJSON *doc_json(const struct sbert_index_doc *doc, unsigned include, int dim, int score,
                       int found)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "id", doc->id))
        goto fail;
    if (found && !cJSON_AddBoolToObject(o, "found", doc->found))
        goto fail;
    if (found && !doc->found)
        return o;
    if (score && sbert_proto_add_float(o, "score", doc->score))
        goto fail;
    if ((include & SBERT_PROTO_INCLUDE_TEXT) &&
        !cJSON_AddStringToObject(o, "text", doc->text ? doc->text : ""))
        goto fail;
    if (include & SBERT_PROTO_INCLUDE_METADATA) {
        /* the store keeps metadata as compact JSON it wrote itself: pass it through as is */
        cJSON *m = doc->metadata ? cJSON_CreateRaw(doc->metadata) : cJSON_CreateNull();
        if (!m || !cJSON_AddItemToObject(o, "metadata", m)) {
            cJSON_Delete(m);
            goto fail;
        }
    }
    if ((include & SBERT_PROTO_INCLUDE_VECTOR) && doc->vector &&
        sbert_proto_add_floats(o, "vector", doc->vector, (size_t)dim))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* cJSON reads 1e400 as inf and prints inf as null: refuse such metadata rather than store a
 * null in place of the number sent. Recursion depth is bounded by cJSON's nesting limit. */
static int json_finite(const cJSON *x)
{
    if (cJSON_IsNumber(x))
        return isfinite(x->valuedouble);
    for (const cJSON *c = x->child; c; c = c->next)
        if (!json_finite(c))
            return 0;
    return 1;
}

/* Compiles the optional "filter" member; *f stays NULL when there is none. */
static int get_filter(const cJSON *root, sbert_index_filter **f, struct sbert_proto_error *err)
{
    *f = NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "filter");
    if (!m)
        return 0;
    if (!cJSON_IsObject(m))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_FILTER, -1,
                                     "\"filter\" must be an object");
    char *json = cJSON_PrintUnformatted(m);
    if (!json)
        return oom(err);
    char why[400] = "";
    int rc = sbert_index_filter_compile(json, strlen(json), f, why, sizeof why);
    free(json);
    if (rc)
        return sbert_proto_error_set(err, rc == SBERT_INDEX_ENOMEM ? SBERT_PROTO_EINTERNAL
                                                                   : SBERT_PROTO_EBAD_FILTER,
                                     -1, "filter: %s", why[0] ? why : sbert_index_strerror(rc));
    return 0;
}

static double cosine(const float *a, const float *b, size_t dim)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return (aa > 0 && bb > 0) ? ab / (sqrt(aa) * sqrt(bb)) : 0.0;
}

/* Scales each of n rows of dim floats to unit length (zero rows stay zero). */
static void normalize_rows(float *v, size_t n, size_t dim)
{
    for (size_t r = 0; r < n; r++) {
        float *x = v + r * dim;
        double s = 0;
        for (size_t i = 0; i < dim; i++)
            s += (double)x[i] * x[i];
        if (s > 0) {
            float inv = (float)(1.0 / sqrt(s));
            for (size_t i = 0; i < dim; i++)
                x[i] *= inv;
        }
    }
}

/* ---- health, stats --------------------------------------------------------------------------- */

static int run_health(struct sbertd *d, struct request *r, cJSON *reply,
                      struct sbert_proto_error *err)
{
    (void)r;
    uint64_t count = 0;
    int rc = sbert_index_count(d->index, &count);
    if (rc)
        return sbertd_index_error(rc, NULL, -1, err);
    if (!cJSON_AddStringToObject(reply, "status",
                                 atomic_load(&d->stopping) ? "stopping" : "serving") ||
        !cJSON_AddNumberToObject(reply, "uptime_s",
                                 (double)(sbertd_now_us() - d->start_us) / 1e6) ||
        !cJSON_AddNumberToObject(reply, "documents", (double)count))
        return oom(err);
    return 0;
}

static double percentile_ms(const struct op_stats *s, double p)
{
    if (s->count == 0)
        return 0;
    uint64_t want = (uint64_t)ceil(p * (double)s->count), cum = 0;
    for (int b = 0; b < SBERTD_LAT_BUCKETS; b++) {
        cum += s->hist[b];
        if (cum >= want && cum > 0) {
            double us = pow(1.05, b + 0.5);
            double ms = us / 1000.0;
            return ms > s->max_ms ? s->max_ms : ms;
        }
    }
    return s->max_ms;
}

static uint64_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, rss = 0;
    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &rss) != 2)
        rss = 0;
    fclose(f);
    return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int run_stats(struct sbertd *d, struct request *r, cJSON *reply,
                     struct sbert_proto_error *err)
{
    (void)r;
    struct sbert_index_stats st;
    int rc = sbert_index_stats(d->index, &st);
    if (rc)
        return sbertd_index_error(rc, NULL, -1, err);
    static const char *const pool[] = {"mean", "cls", "max"};
    cJSON *model = NULL, *index = NULL, *mem = NULL, *thr = NULL, *lim = NULL, *req = NULL,
          *ops = NULL;
    if (!cJSON_AddStringToObject(reply, "version", SBERTD_VERSION) ||
        !cJSON_AddNumberToObject(reply, "protocol", SBERT_PROTO_VERSION) ||
        !cJSON_AddNumberToObject(reply, "uptime_s",
                                 (double)(sbertd_now_us() - d->start_us) / 1e6) ||
        !cJSON_AddNumberToObject(reply, "documents", (double)st.count) ||
        !cJSON_AddNumberToObject(reply, "dim", st.dim) ||
        !(model = cJSON_AddObjectToObject(reply, "model")) ||
        !cJSON_AddStringToObject(model, "name", d->info->name) ||
        !cJSON_AddStringToObject(model, "path", d->info->path) ||
        !cJSON_AddStringToObject(model, "sha256", d->info->weights_sha256) ||
        !cJSON_AddNumberToObject(model, "max_seq_length", d->info->max_seq_length) ||
        !cJSON_AddStringToObject(model, "pooling", pool[d->info->pooling % 3]) ||
        !cJSON_AddBoolToObject(model, "normalize", d->info->normalize) ||
        !(index = cJSON_AddObjectToObject(reply, "index")) ||
        !cJSON_AddStringToObject(index, "spec", st.index_spec) ||
        !cJSON_AddBoolToObject(index, "trained", st.index_trained) ||
        !cJSON_AddNumberToObject(index, "count", (double)st.index_count) ||
        !cJSON_AddNumberToObject(index, "change", (double)st.change) ||
        !cJSON_AddNumberToObject(index, "snapshot_change", (double)st.snapshot_change) ||
        !cJSON_AddNumberToObject(index, "snapshot_time", (double)st.snapshot_time) ||
        !(mem = cJSON_AddObjectToObject(reply, "memory")) ||
        !cJSON_AddNumberToObject(mem, "rss_bytes", (double)rss_bytes()) ||
        !cJSON_AddNumberToObject(mem, "index_bytes", (double)st.index_bytes) ||
        !cJSON_AddNumberToObject(mem, "map_size", (double)st.map_size) ||
        !cJSON_AddNumberToObject(mem, "map_used", (double)st.map_used) ||
        !(thr = cJSON_AddObjectToObject(reply, "threads")) ||
        !cJSON_AddNumberToObject(thr, "workers", d->n_workers) ||
        !cJSON_AddNumberToObject(thr, "encode", d->cfg.encode_threads) ||
        !(lim = cJSON_AddObjectToObject(reply, "limits")) ||
        !cJSON_AddNumberToObject(lim, "max_message_size", (double)LIM(max_message_size)) ||
        !cJSON_AddNumberToObject(lim, "max_batch", (double)LIM(max_batch)) ||
        !cJSON_AddNumberToObject(lim, "max_text_bytes", (double)LIM(max_text_bytes)) ||
        !cJSON_AddNumberToObject(lim, "max_k", (double)LIM(max_k)) ||
        !cJSON_AddNumberToObject(lim, "max_pairs", (double)LIM(max_pairs)) ||
        !cJSON_AddNumberToObject(lim, "max_matrix", (double)LIM(max_matrix)) ||
        !cJSON_AddNumberToObject(lim, "max_metadata_bytes", (double)LIM(max_metadata_bytes)) ||
        !cJSON_AddNumberToObject(lim, "max_concurrent", (double)LIM(max_concurrent)) ||
        !cJSON_AddNumberToObject(lim, "max_inflight_bytes", (double)LIM(max_inflight_bytes)) ||
        !cJSON_AddNumberToObject(lim, "max_reply_bytes", (double)LIM(max_reply_bytes)) ||
        !(req = cJSON_AddObjectToObject(reply, "requests")) ||
        /* this request is in flight too */
        !cJSON_AddNumberToObject(req, "in_progress", (double)atomic_load(&d->in_flight)) ||
        !cJSON_AddNumberToObject(req, "total", (double)atomic_load(&d->total)) ||
        !cJSON_AddNumberToObject(req, "errors", (double)atomic_load(&d->total_errors)) ||
        !(ops = cJSON_AddObjectToObject(reply, "ops")))
        return oom(err);
    pthread_mutex_lock(&d->stats_mu);
    int bad = 0;
    for (size_t i = 0; i < sbertd_n_ops && !bad; i++) {
        const struct op_stats *s = &d->stats[i];
        if (s->count == 0)
            continue;
        cJSON *o = cJSON_AddObjectToObject(ops, sbertd_ops[i].name);
        bad = !o || !cJSON_AddNumberToObject(o, "count", (double)s->count) ||
              !cJSON_AddNumberToObject(o, "errors", (double)s->errors) ||
              !cJSON_AddNumberToObject(o, "p50_ms", percentile_ms(s, 0.50)) ||
              !cJSON_AddNumberToObject(o, "p90_ms", percentile_ms(s, 0.90)) ||
              !cJSON_AddNumberToObject(o, "p99_ms", percentile_ms(s, 0.99)) ||
              !cJSON_AddNumberToObject(o, "max_ms", s->max_ms);
    }
    pthread_mutex_unlock(&d->stats_mu);
    return bad ? oom(err) : 0;
}

/* ---- encode, similarity ---------------------------------------------------------------------- */

static int run_encode(struct sbertd *d, struct request *r, cJSON *reply,
                      struct sbert_proto_error *err)
{
    const char **texts = NULL;
    size_t *lens = NULL, n = 0, dim = (size_t)d->info->dim;
    int rc = sbert_proto_get_texts(r->req.root, "texts", 1, LIM(max_batch), LIM(max_text_bytes),
                                   &texts, &lens, &n, err);
    if (rc)
        return rc;
    float *out = malloc(n * dim * sizeof *out);
    int *trunc = calloc(n, sizeof *trunc);
    cJSON *emb;
    if (!out || !trunc)
        rc = oom(err);
    else if (!(rc = sbertd_encode(d, texts, lens, n, out, trunc, 1, err))) {
        if (!cJSON_AddNumberToObject(reply, "dim", (double)dim) ||
            !(emb = cJSON_AddArrayToObject(reply, "embeddings")))
            rc = oom(err);
        for (size_t i = 0; !rc && i < n; i++)
            if (sbert_proto_add_floats(emb, NULL, out + i * dim, dim))
                rc = oom(err);
        if (!rc && add_truncated(reply, trunc, n))
            rc = oom(err);
    }
    free(out);
    free(trunc);
    free(texts);
    free(lens);
    return rc;
}

static int run_similarity(struct sbertd *d, struct request *r, cJSON *reply,
                          struct sbert_proto_error *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(r->req.root, "a");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(r->req.root, "b");
    size_t dim = (size_t)d->info->dim;
    if (!a || !b)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1, "\"a\" and \"b\" are required");
    if (cJSON_IsString(a) && cJSON_IsString(b)) {
        const char *t[2];
        size_t l[2];
        int rc;
        if ((rc = sbert_proto_get_text(r->req.root, "a", 1, LIM(max_text_bytes), &t[0], &l[0], err)) ||
            (rc = sbert_proto_get_text(r->req.root, "b", 1, LIM(max_text_bytes), &t[1], &l[1], err)))
            return rc;
        float *v = malloc(2 * dim * sizeof *v);
        if (!v)
            return oom(err);
        rc = sbertd_encode(d, t, l, 2, v, NULL, 1, err);
        if (!rc && sbert_proto_add_float(reply, "score", (float)cosine(v, v + dim, dim)))
            rc = oom(err);
        free(v);
        return rc;
    }
    if (!cJSON_IsArray(a) || !cJSON_IsArray(b))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"a\" and \"b\" must both be strings or both arrays");
    const char **ta = NULL, **tb = NULL, **all = NULL;
    size_t *la = NULL, *lb = NULL, *lall = NULL, na = 0, nb = 0;
    float *v = NULL;
    int rc = sbert_proto_get_texts(r->req.root, "a", 1, LIM(max_batch), LIM(max_text_bytes), &ta,
                                   &la, &na, err);
    if (!rc)
        rc = sbert_proto_get_texts(r->req.root, "b", 1, LIM(max_batch), LIM(max_text_bytes), &tb,
                                   &lb, &nb, err);
    if (!rc && (double)na * (double)nb > (double)LIM(max_matrix))
        rc = sbert_proto_error_set(err, SBERT_PROTO_ETOO_LARGE, -1,
                                   "a %zu x %zu matrix exceeds max_matrix (%zu cells)", na, nb,
                                   LIM(max_matrix));
    if (!rc) {
        all = malloc((na + nb) * sizeof *all);
        lall = malloc((na + nb) * sizeof *lall);
        v = malloc((na + nb) * dim * sizeof *v);
        if (!all || !lall || !v)
            rc = oom(err);
    }
    if (!rc) {
        memcpy(all, ta, na * sizeof *all);
        memcpy(all + na, tb, nb * sizeof *all);
        memcpy(lall, la, na * sizeof *lall);
        memcpy(lall + na, lb, nb * sizeof *lall);
        rc = sbertd_encode(d, all, lall, na + nb, v, NULL, 1, err);
    }
    if (!rc) {
        normalize_rows(v, na + nb, dim);
        cJSON *m = cJSON_AddArrayToObject(reply, "matrix");
        float *row = malloc(nb * sizeof *row);
        if (!m || !row)
            rc = oom(err);
        for (size_t i = 0; !rc && i < na; i++) {
            for (size_t j = 0; j < nb; j++) {
                float s = 0;
                for (size_t k = 0; k < dim; k++)
                    s += v[i * dim + k] * v[(na + j) * dim + k];
                row[j] = s;
            }
            if (sbert_proto_add_floats(m, NULL, row, nb))
                rc = oom(err);
        }
        free(row);
    }
    free(ta);
    free(tb);
    free(la);
    free(lb);
    free(all);
    free(lall);
    free(v);
    return rc;
}

/* ---- query, get ------------------------------------------------------------------------------ */

static int run_query(struct sbertd *d, struct request *r, cJSON *reply,
                     struct sbert_proto_error *err)
{
    const cJSON *root = r->req.root;
    int has_text = cJSON_HasObjectItem(root, "text"), has_vec = cJSON_HasObjectItem(root, "vector");
    if (has_text == has_vec)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "give exactly one of \"text\" and \"vector\"");
    long long k = 10;
    double min_score = -2;
    unsigned include = SBERT_PROTO_INCLUDE_TEXT | SBERT_PROTO_INCLUDE_METADATA;
    const char *text = NULL;
    size_t len = 0;
    int rc;
    if ((rc = sbert_proto_get_int(root, "k", 0, 1, (long long)LIM(max_k), SBERT_PROTO_EBAD_K, &k, err)) ||
        (rc = sbert_proto_get_number(root, "min_score", 0, -1, 1, SBERT_PROTO_EBAD_SCORE, &min_score, err)) ||
        (rc = sbert_proto_get_include(root, "include", &include, err)) ||
        (has_text && (rc = sbert_proto_get_text(root, "text", 1, LIM(max_text_bytes), &text, &len, err))))
        return rc;
    size_t dim = (size_t)d->info->dim;
    float *v = malloc(dim * sizeof *v);
    if (!v)
        return oom(err);
    int trunc = 0;
    if (has_text)
        rc = sbertd_encode(d, &text, &len, 1, v, &trunc, 1, err);
    else if (!(rc = sbert_proto_get_vector(root, "vector", (int)dim, v, err))) {
        /* a zero vector has no direction: every score would be 0 and the ranking arbitrary */
        size_t nz = 0;
        while (nz < dim && v[nz] == 0.0f)
            nz++;
        if (nz == dim)
            rc = sbert_proto_error_set(err, SBERT_PROTO_EBAD_VECTOR, -1,
                                       "\"vector\" is all zeros (after float32 rounding)");
    }
    sbert_index_filter *f = NULL;
    if (!rc)
        rc = get_filter(root, &f, err);
    struct sbert_index_results *res = NULL;
    if (!rc) {
        struct sbert_index_query_params p = sbert_index_query_default_params();
        p.k = (size_t)k;
        p.min_score = (float)min_score;
        p.filter = f;
        p.include = include;
        p.dim = d->info->dim;
        p.max_bytes = LIM(max_reply_bytes);
        int irc = sbertd_query(d, v, &p, &res);
        /* the index stops reading at max_bytes; the JSON of what it read may still be larger */
        if (irc == SBERT_INDEX_ETOOBIG || (!irc && results_too_large(d, res)))
            rc = reply_too_large(d, "ask for a smaller k, or leave text, metadata and vector out "
                                    "of \"include\"", err);
        else if (irc)
            rc = sbertd_index_error(irc, NULL, -1, err);
    }
    if (!rc) {
        cJSON *a = cJSON_AddArrayToObject(reply, "results");
        if (!a)
            rc = oom(err);
        for (size_t i = 0; !rc && i < res->n; i++) {
            cJSON *o = doc_json(&res->docs[i], include, res->dim, 1, 0);
            if (!o || !cJSON_AddItemToArray(a, o)) {
                cJSON_Delete(o);
                rc = oom(err);
            }
        }
        if (!rc && has_text && !cJSON_AddBoolToObject(reply, "truncated", trunc))
            rc = oom(err);
    }
    sbert_index_results_free(res);
    sbert_index_filter_free(f);
    free(v);
    return rc;
}

/* Ids of the list member name: pointers into the tree or into numbufs (n x 24 bytes). */
struct id_list {
    size_t n;
    const char **ids;
    size_t *lens;
    char (*numbufs)[24];
};

static void id_list_free(void *p)
{
    struct id_list *l = p;
    if (!l)
        return;
    free(l->ids);
    free(l->lens);
    free(l->numbufs);
    free(l);
}

static int get_ids(struct sbertd *d, const cJSON *root, struct id_list **out,
                   struct sbert_proto_error *err)
{
    const cJSON *arr;
    size_t n;
    int rc = sbert_proto_get_array(root, "ids", 1, LIM(max_batch), &arr, &n, err);
    if (rc)
        return rc;
    struct id_list *l = calloc(1, sizeof *l);
    if (!l || !(l->ids = malloc(n * sizeof *l->ids)) || !(l->lens = malloc(n * sizeof *l->lens)) ||
        !(l->numbufs = malloc(n * sizeof *l->numbufs))) {
        id_list_free(l);
        return oom(err);
    }
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
    {
        char what[40];
        snprintf(what, sizeof what, "ids[%zu]", l->n);
        rc = sbert_proto_check_id(x, what, (long)l->n, l->numbufs[l->n], &l->ids[l->n],
                                  &l->lens[l->n], err);
        if (rc) {
            id_list_free(l);
            return rc;
        }
        l->n++;
    }
    *out = l;
    return 0;
}

static int run_get(struct sbertd *d, struct request *r, cJSON *reply,
                   struct sbert_proto_error *err)
{
    unsigned include = SBERT_PROTO_INCLUDE_TEXT | SBERT_PROTO_INCLUDE_METADATA;
    struct id_list *l = NULL;
    int rc = sbert_proto_get_include(r->req.root, "include", &include, err);
    if (rc || (rc = get_ids(d, r->req.root, &l, err)))
        return rc;
    struct sbert_index_results *res = NULL;
    int irc = sbert_index_get_max(d->index, l->ids, l->lens, l->n, include,
                                  LIM(max_reply_bytes), &res);
    if (irc == SBERT_INDEX_ETOOBIG || (!irc && results_too_large(d, res)))
        rc = reply_too_large(d, "ask for fewer ids, or leave text, metadata and vector out of "
                                "\"include\"", err);
    else if (irc)
        rc = sbertd_index_error(irc, NULL, -1, err);
    cJSON *a = rc ? NULL : cJSON_AddArrayToObject(reply, "documents");
    if (!rc && !a)
        rc = oom(err);
    for (size_t i = 0; !rc && i < res->n; i++) {
        cJSON *o = doc_json(&res->docs[i], include, res->dim, 0, 1);
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            rc = oom(err);
        }
    }
    sbert_index_results_free(res);
    id_list_free(l);
    return rc;
}

/* ---- pairs ----------------------------------------------------------------------------------- */

struct cand {
    float score;
    unsigned i, j;
};

/* a ranks before b: higher score, then lower (i, j) — the seed's stable sort of i < j pairs */
static int cand_before(const struct cand *a, const struct cand *b)
{
    if (a->score != b->score)
        return a->score > b->score;
    if (a->i != b->i)
        return a->i < b->i;
    return a->j < b->j;
}

static int cand_cmp(const void *x, const void *y)
{
    const struct cand *a = x, *b = y;
    return cand_before(a, b) ? -1 : (cand_before(b, a) ? 1 : 0);
}

/* heap[0] is the worst kept candidate */
static void heap_sift_down(struct cand *h, size_t n, size_t at)
{
    for (;;) {
        size_t l = 2 * at + 1, r = l + 1, worst = at;
        if (l < n && cand_before(&h[worst], &h[l]))
            worst = l;
        if (r < n && cand_before(&h[worst], &h[r]))
            worst = r;
        if (worst == at)
            return;
        struct cand t = h[at];
        h[at] = h[worst];
        h[worst] = t;
        at = worst;
    }
}

static void heap_sift_up(struct cand *h, size_t at)
{
    while (at > 0) {
        size_t p = (at - 1) / 2;
        if (!cand_before(&h[p], &h[at]))
            return;
        struct cand t = h[at];
        h[at] = h[p];
        h[p] = t;
        at = p;
    }
}

/* Pairs within a given list: every i < j scored exactly (util.cos_sim), best `limit` kept. */
static int pairs_list(struct sbertd *d, struct request *r, cJSON *reply, size_t limit,
                      float min_score, struct sbert_proto_error *err)
{
    const cJSON *root = r->req.root;
    const char **texts = NULL;
    size_t *lens = NULL, n = 0, dim = (size_t)d->info->dim;
    int rc = sbert_proto_get_texts(root, "texts", 1, LIM(max_batch), LIM(max_text_bytes), &texts,
                                   &lens, &n, err);
    if (rc)
        return rc;
    if (n < 2) {
        free(texts);
        free(lens);
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"texts\" needs at least 2 texts");
    }
    float *v = malloc(n * dim * sizeof *v);
    int *trunc = calloc(n, sizeof *trunc);
    size_t total = n * (n - 1) / 2, cap = limit < total ? limit : total, kept = 0;
    struct cand *h = malloc((cap ? cap : 1) * sizeof *h);
    if (!v || !trunc || !h)
        rc = oom(err);
    if (!rc)
        rc = sbertd_encode(d, texts, lens, n, v, trunc, 1, err);
    if (!rc) {
        normalize_rows(v, n, dim);
        for (size_t i = 0; i + 1 < n; i++)
            for (size_t j = i + 1; j < n; j++) {
                float s = 0;
                for (size_t k = 0; k < dim; k++)
                    s += v[i * dim + k] * v[j * dim + k];
                if (s < min_score)
                    continue;
                struct cand c = {s, (unsigned)i, (unsigned)j};
                if (kept < cap) {
                    h[kept] = c;
                    heap_sift_up(h, kept++);
                } else if (cap && cand_before(&c, &h[0])) {
                    h[0] = c;
                    heap_sift_down(h, kept, 0);
                }
            }
        qsort(h, kept, sizeof *h, cand_cmp);
        cJSON *a = cJSON_AddArrayToObject(reply, "pairs");
        if (!a)
            rc = oom(err);
        size_t bytes = 0;
        for (size_t p = 0; !rc && p < kept; p++) {
            /* each pair repeats its two texts: n pairs of a few texts can be far larger than the
             * request */
            bytes += 2 * DOC_JSON_OVERHEAD + lens[h[p].i] + lens[h[p].j];
            if (bytes > LIM(max_reply_bytes)) {
                rc = reply_too_large(d, "ask for fewer pairs (\"n\")", err);
                break;
            }
            cJSON *o = cJSON_CreateObject(), *x, *y;
            if (!o || !cJSON_AddItemToArray(a, o) || !(x = cJSON_AddObjectToObject(o, "a")) ||
                !cJSON_AddNumberToObject(x, "index", h[p].i) ||
                !cJSON_AddStringToObject(x, "text", texts[h[p].i]) ||
                !(y = cJSON_AddObjectToObject(o, "b")) ||
                !cJSON_AddNumberToObject(y, "index", h[p].j) ||
                !cJSON_AddStringToObject(y, "text", texts[h[p].j]) ||
                sbert_proto_add_float(o, "score", h[p].score))
                rc = oom(err);
        }
        if (!rc && add_truncated(reply, trunc, n))
            rc = oom(err);
    }
    free(h);
    free(v);
    free(trunc);
    free(texts);
    free(lens);
    return rc;
}

static int run_pairs(struct sbertd *d, struct request *r, cJSON *reply,
                     struct sbert_proto_error *err)
{
    const cJSON *root = r->req.root;
    long long n = 100, per_doc_k = 100;
    double min_score = -2;
    unsigned include = SBERT_PROTO_INCLUDE_TEXT;
    int rc;
    if ((rc = sbert_proto_get_int(root, "n", 0, 0, LLONG_MAX, SBERT_PROTO_EBAD_REQUEST, &n, err)) ||
        (rc = sbert_proto_get_number(root, "min_score", 0, -1, 1, SBERT_PROTO_EBAD_SCORE, &min_score, err)))
        return rc;
    if ((size_t)n > LIM(max_pairs))
        return sbert_proto_error_set(err, SBERT_PROTO_ETOO_LARGE, -1,
                                     "\"n\" exceeds max_pairs (%zu)", LIM(max_pairs));
    if (n == 0 && min_score < -1)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"n\": 0 (no count limit) needs \"min_score\"");
    size_t limit = n ? (size_t)n : LIM(max_pairs);
    if (cJSON_HasObjectItem(root, "texts")) {
        static const char *const list_members[] = {"texts", "n", "min_score", NULL};
        if ((rc = sbert_proto_check_members(root, list_members, 1, err)))
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                         "with \"texts\", only \"n\" and \"min_score\" apply");
        return pairs_list(d, r, reply, limit, (float)min_score, err);
    }
    if ((rc = sbert_proto_get_int(root, "per_doc_k", 0, 1, (long long)LIM(max_k), SBERT_PROTO_EBAD_K, &per_doc_k, err)) ||
        (rc = sbert_proto_get_include(root, "include", &include, err)))
        return rc;
    sbert_index_filter *f = NULL;
    if ((rc = get_filter(root, &f, err)))
        return rc;
    struct sbert_index_pairs_params p = sbert_index_pairs_default_params();
    p.top_n = limit;
    p.min_score = (float)min_score;
    p.per_doc_k = (size_t)per_doc_k;
    p.filter = f;
    struct sbert_index_pairs *pairs = NULL;
    struct sbert_index_results *docs = NULL;
    const char **ids = NULL;
    size_t *lens = NULL;
    int irc = sbert_index_pairs(d->index, &p, &pairs);
    if (irc)
        rc = sbertd_index_error(irc, NULL, -1, err);
    size_t id_bytes = 0;
    for (size_t i = 0; !rc && i < pairs->n; i++)
        id_bytes += 2 * DOC_JSON_OVERHEAD + strlen(pairs->pairs[i].a) + strlen(pairs->pairs[i].b);
    if (!rc && id_bytes > LIM(max_reply_bytes))
        rc = reply_too_large(d, "ask for fewer pairs (\"n\")", err);
    if (!rc && pairs->n) {
        /* the documents of both sides, in pair order: 2i is a, 2i+1 is b */
        ids = malloc(2 * pairs->n * sizeof *ids);
        lens = malloc(2 * pairs->n * sizeof *lens);
        if (!ids || !lens)
            rc = oom(err);
        for (size_t i = 0; !rc && i < pairs->n; i++) {
            ids[2 * i] = pairs->pairs[i].a;
            ids[2 * i + 1] = pairs->pairs[i].b;
            lens[2 * i] = strlen(ids[2 * i]);
            lens[2 * i + 1] = strlen(ids[2 * i + 1]);
        }
        /* bounded: with include, each pair carries both documents' texts and metadata */
        if (!rc && include)
            irc = sbert_index_get_max(d->index, ids, lens, 2 * pairs->n, include,
                                      LIM(max_reply_bytes) - id_bytes, &docs);
        if (!rc && include && irc == SBERT_INDEX_ETOOBIG)
            rc = reply_too_large(d, "ask for fewer pairs (\"n\"), or leave text, metadata and "
                                    "vector out of \"include\"", err);
        else if (!rc && include && irc)
            rc = sbertd_index_error(irc, NULL, -1, err);
    }
    cJSON *a = rc ? NULL : cJSON_AddArrayToObject(reply, "pairs");
    if (!rc && !a)
        rc = oom(err);
    for (size_t i = 0; !rc && i < pairs->n; i++) {
        cJSON *o = cJSON_CreateObject(), *x = NULL, *y = NULL;
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            rc = oom(err);
            break;
        }
        if (docs) {
            x = doc_json(&docs->docs[2 * i], include, docs->dim, 0, 0);
            y = doc_json(&docs->docs[2 * i + 1], include, docs->dim, 0, 0);
        } else {
            if ((x = cJSON_CreateObject()))
                cJSON_AddStringToObject(x, "id", pairs->pairs[i].a);
            if ((y = cJSON_CreateObject()))
                cJSON_AddStringToObject(y, "id", pairs->pairs[i].b);
        }
        if (!x || !cJSON_AddItemToObject(o, "a", x)) {
            cJSON_Delete(x);
            cJSON_Delete(y);
            rc = oom(err);
            break;
        }
        if (!y || !cJSON_AddItemToObject(o, "b", y)) {
            cJSON_Delete(y);
            rc = oom(err);
            break;
        }
        if (sbert_proto_add_float(o, "score", pairs->pairs[i].score))
            rc = oom(err);
    }
    sbert_index_results_free(docs);
    sbert_index_pairs_free(pairs);
    sbert_index_filter_free(f);
    free(ids);
    free(lens);
    return rc;
}

/* ---- add ------------------------------------------------------------------------------------- */

struct add_prep {
    size_t n;
    struct sbert_index_put_item *items;
    const char **texts;
    size_t *lens;
    char (*numbufs)[24];
    char **metas; /* compact metadata JSON, malloc'd */
    float *vecs;
    int *trunc;
    /* the documents without a precomputed "vector", which are encoded: their indices and texts */
    size_t n_enc, *enc;
    const char **etexts;
    size_t *elens;
    /* set by stage_add: the vectors are in vecs (encoded), or encoding failed with stage_err */
    int encoded, stage_rc;
    struct sbert_proto_error stage_err;
};

static void add_prep_free(void *p)
{
    struct add_prep *a = p;
    if (!a)
        return;
    for (size_t i = 0; a->metas && i < a->n; i++)
        free(a->metas[i]);
    free(a->metas);
    free(a->items);
    free(a->texts);
    free(a->lens);
    free(a->numbufs);
    free(a->vecs);
    free(a->trunc);
    free(a->enc);
    free(a->etexts);
    free(a->elens);
    free(a);
}

/* Copies the encoder's rows and truncation flags for a's encoded documents (n_enc of each, in
 * the order of enc) to their places in vecs and trunc. */
static void add_scatter(struct add_prep *a, size_t dim, const float *rows, const int *trunc)
{
    for (size_t j = 0; j < a->n_enc; j++) {
        memcpy(a->vecs + a->enc[j] * dim, rows + j * dim, dim * sizeof *rows);
        a->trunc[a->enc[j]] = trunc[j];
    }
}

/* Encodes a's documents that came without a vector. */
static int add_encode(struct sbertd *d, struct add_prep *a, struct sbert_proto_error *err)
{
    size_t dim = (size_t)d->info->dim;
    if (a->n_enc == a->n)
        return sbertd_encode(d, a->texts, a->lens, a->n, a->vecs, a->trunc, 0, err);
    if (a->n_enc == 0)
        return 0;
    float *rows = malloc(a->n_enc * dim * sizeof *rows);
    int *trunc = malloc(a->n_enc * sizeof *trunc);
    int rc = rows && trunc ? sbertd_encode(d, a->etexts, a->elens, a->n_enc, rows, trunc, 0, err)
                           : oom(err);
    if (!rc)
        add_scatter(a, dim, rows, trunc);
    free(rows);
    free(trunc);
    return rc;
}

static int prepare_add(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    const cJSON *arr;
    size_t n;
    int rc = sbert_proto_get_array(r->req.root, "documents", 1, LIM(max_batch), &arr, &n, err);
    if (rc)
        return rc;
    struct add_prep *a = calloc(1, sizeof *a);
    if (!a)
        return oom(err);
    r->prep = a;
    r->prep_free = add_prep_free;
    size_t dim = (size_t)d->info->dim;
    if (!(a->items = calloc(n, sizeof *a->items)) || !(a->texts = malloc(n * sizeof *a->texts)) ||
        !(a->lens = malloc(n * sizeof *a->lens)) || !(a->numbufs = malloc(n * sizeof *a->numbufs)) ||
        !(a->metas = calloc(n, sizeof *a->metas)) || !(a->vecs = malloc(n * dim * sizeof *a->vecs)) ||
        !(a->trunc = calloc(n, sizeof *a->trunc)) || !(a->enc = malloc(n * sizeof *a->enc)) ||
        !(a->etexts = malloc(n * sizeof *a->etexts)) || !(a->elens = malloc(n * sizeof *a->elens)))
        return oom(err);
    a->n = n;
    static const char *const doc_members[] = {"id", "text", "metadata", "vector", NULL};
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
    {
        char what[64];
        struct sbert_index_put_item *it = &a->items[i];
        if (!cJSON_IsObject(x))
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, (long)i,
                                         "documents[%zu] must be an object", i);
        if (sbert_proto_check_members(x, doc_members, 0, err)) {
            err->index = (long)i;
            return err->code;
        }
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
        snprintf(what, sizeof what, "documents[%zu].id", i);
        if (id && (rc = sbert_proto_check_id(id, what, (long)i, a->numbufs[i], &it->id,
                                             &it->id_len, err)))
            return rc;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(x, "text");
        snprintf(what, sizeof what, "documents[%zu].text", i);
        if (!text)
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, (long)i, "%s is required",
                                         what);
        if ((rc = sbert_proto_check_text(text, what, (long)i, LIM(max_text_bytes), &a->texts[i],
                                         &a->lens[i], err)))
            return rc;
        it->text = a->texts[i];
        it->text_len = a->lens[i];
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(x, "metadata");
        if (meta && !cJSON_IsNull(meta)) {
            if (!cJSON_IsObject(meta))
                return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                             "documents[%zu].metadata must be an object", i);
            if (!json_finite(meta))
                return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                             "documents[%zu].metadata has a number out of the "
                                             "double range (e.g. 1e400)", i);
            if (!(a->metas[i] = cJSON_PrintUnformatted(meta)))
                return oom(err);
            size_t ml = strlen(a->metas[i]);
            if (ml > LIM(max_metadata_bytes))
                return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                             "documents[%zu].metadata has %zu bytes, more than "
                                             "max_metadata_bytes (%zu)",
                                             i, ml, LIM(max_metadata_bytes));
            it->metadata = a->metas[i];
            it->metadata_len = ml;
        }
        it->vector = a->vecs + i * dim;
        it->dim = (int)dim;
        if (cJSON_HasObjectItem(x, "vector")) {
            /* precomputed (e.g. by sbert-encode or the Python Encoder on other machines): stored
             * as given, so it must already be what this model makes: dim floats, unit norm */
            if ((rc = sbert_proto_get_vector(x, "vector", (int)dim, a->vecs + i * dim, err))) {
                char m[sizeof err->message];
                snprintf(m, sizeof m, "%s", err->message);
                return sbert_proto_error_set(err, rc, (long)i, "documents[%zu]: %s", i, m);
            }
            double ss = 0;
            for (size_t j = 0; j < dim; j++)
                ss += (double)a->vecs[i * dim + j] * a->vecs[i * dim + j];
            if (fabs(sqrt(ss) - 1.0) > 1e-3)
                return sbert_proto_error_set(err, SBERT_PROTO_EBAD_VECTOR, (long)i,
                                             "documents[%zu].vector has L2 norm %.6g; a "
                                             "precomputed vector must be normalised (norm 1 "
                                             "within 1e-3), as the model's are",
                                             i, sqrt(ss));
        } else {
            a->enc[a->n_enc] = i;
            a->etexts[a->n_enc] = a->texts[i];
            a->elens[a->n_enc++] = a->lens[i];
        }
        i++;
    }
    return 0;
}

/* ---- writes remembered by req_id --------------------------------------------------------------- */

/* A write's reply members, built from its outputs: once inside the write transaction for the
 * store to remember (remember_reply), once after it for the reply sent. */
struct remember {
    const struct request *r;
    int (*members)(cJSON *reply, const void *arg); /* 0, or -1 when out of memory */
    const void *arg;
};

/* sbert_index_write_req's reply callback: the whole reply text, as sbertd_finish prints it. */
static int remember_reply(void *user, char **out, size_t *len)
{
    const struct remember *m = user;
    cJSON *reply = sbert_proto_reply_new(m->r->req.req_id);
    int rc = !reply || m->members(reply, m->arg) || sbert_proto_print(reply, out, len);
    cJSON_Delete(reply);
    return rc ? -1 : 0;
}

/* The write_req for r, or NULL when r has no req_id (nothing to remember). */
static const struct sbert_index_write_req *write_req(const struct request *r,
                                                     struct sbert_index_write_req *wr,
                                                     struct remember *m)
{
    if (!r->req.req_id)
        return NULL;
    wr->req_id = r->req.req_id;
    wr->req_id_len = strlen(r->req.req_id);
    wr->hash = r->hash;
    wr->reply = remember_reply;
    wr->user = m;
    return wr;
}

/* ---- add (continued) ------------------------------------------------------------------------- */

static int add_members(cJSON *reply, const void *arg)
{
    const struct add_prep *a = arg;
    cJSON *ids = cJSON_AddArrayToObject(reply, "ids");
    cJSON *rep = cJSON_AddArrayToObject(reply, "replaced");
    if (!ids || !rep)
        return -1;
    for (size_t i = 0; i < a->n; i++) {
        const struct sbert_index_put_item *it = &a->items[i];
        cJSON *s = it->id ? cJSON_CreateString(it->id) : cJSON_CreateString(it->gen_id);
        if (!s || !cJSON_AddItemToArray(ids, s) ||
            !cJSON_AddItemToArray(rep, cJSON_CreateBool(it->replaced)))
            return -1;
    }
    return add_truncated(reply, a->trunc, a->n);
}

/* Stores a prepared, encoded add (and its reply, under its req_id) and builds its reply. */
static int add_store(struct sbertd *d, struct request *r, cJSON *reply,
                     struct sbert_proto_error *err)
{
    struct add_prep *a = r->prep;
    size_t bad = 0;
    char why[512] = "";
    struct sbert_index_write_req wr;
    struct remember m = {r, add_members, a};
    int irc = sbert_index_put_req(d->index, a->items, a->n, write_req(r, &wr, &m), &bad, why,
                                  sizeof why);
    if (irc)
        return sbertd_index_error(irc, why,
                                  (irc == SBERT_INDEX_EID || irc == SBERT_INDEX_EMETADATA ||
                                   irc == SBERT_INDEX_ETEXT || irc == SBERT_INDEX_EINVAL)
                                      ? (long)bad
                                      : -1,
                                  err);
    return add_members(reply, a) ? oom(err) : 0;
}

/* Runs in the committer: stores what stage_add encoded (or encodes first, when the writer's
 * stage did not run for this request). */
static int run_add(struct sbertd *d, struct request *r, cJSON *reply,
                   struct sbert_proto_error *err)
{
    struct add_prep *a = r->prep;
    if (a->stage_rc) {
        *err = a->stage_err;
        return a->stage_rc;
    }
    if (!a->encoded) {
        int rc = add_encode(d, a, err);
        if (rc)
            return rc;
    }
    return add_store(d, r, reply, err);
}

/* The writer's stage for consecutive adds: one sbert_encode() over all their texts, outside any
 * lock, while the committer stores earlier ones. Should the shared encode fail, each request
 * encodes alone, so that only the guilty one carries the error to run_add. */
static void stage_add(struct sbertd *d, struct request **rs, size_t n)
{
    size_t total = 0, dim = (size_t)d->info->dim;
    for (size_t i = 0; i < n; i++)
        total += ((struct add_prep *)rs[i]->prep)->n_enc;
    const char **texts = n > 1 ? malloc(total * sizeof *texts) : NULL;
    size_t *lens = n > 1 ? malloc(total * sizeof *lens) : NULL;
    float *out = n > 1 ? malloc(total * dim * sizeof *out) : NULL;
    int *trunc = n > 1 ? malloc(total * sizeof *trunc) : NULL;
    int shared = 0;
    if (texts && lens && out && trunc) {
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            struct add_prep *a = rs[i]->prep;
            memcpy(texts + at, a->etexts, a->n_enc * sizeof *texts);
            memcpy(lens + at, a->elens, a->n_enc * sizeof *lens);
            at += a->n_enc;
        }
        struct sbert_proto_error err;
        if (total == 0 || sbertd_encode(d, texts, lens, total, out, trunc, 0, &err) == 0) {
            shared = 1;
            at = 0;
            for (size_t i = 0; i < n; i++) {
                struct add_prep *a = rs[i]->prep;
                add_scatter(a, dim, out + at * dim, trunc + at);
                a->encoded = 1;
                at += a->n_enc;
            }
        }
    }
    free(texts);
    free(lens);
    free(out);
    free(trunc);
    for (size_t i = 0; !shared && i < n; i++) {
        struct add_prep *a = rs[i]->prep;
        a->stage_rc = add_encode(d, a, &a->stage_err);
        a->encoded = a->stage_rc == 0;
    }
}

/* ---- delete, backup, reindex ----------------------------------------------------------------- */

static int prepare_delete(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    struct id_list *l = NULL;
    int rc = get_ids(d, r->req.root, &l, err);
    if (rc)
        return rc;
    r->prep = l;
    r->prep_free = id_list_free;
    return 0;
}

/* A delete's outputs, for its reply members. */
struct del_out {
    size_t n, deleted;
    int *existed;
};

static int del_members(cJSON *reply, const void *arg)
{
    const struct del_out *o = arg;
    cJSON *a = NULL;
    if (!cJSON_AddNumberToObject(reply, "deleted", (double)o->deleted) ||
        !(a = cJSON_AddArrayToObject(reply, "existed")))
        return -1;
    for (size_t i = 0; i < o->n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateBool(o->existed[i])))
            return -1;
    return 0;
}

static int run_delete(struct sbertd *d, struct request *r, cJSON *reply,
                      struct sbert_proto_error *err)
{
    struct id_list *l = r->prep;
    struct del_out o = {l->n, 0, calloc(l->n, sizeof *o.existed)};
    if (!o.existed)
        return oom(err);
    char why[512] = "";
    struct sbert_index_write_req wr;
    struct remember m = {r, del_members, &o};
    int rc = 0, irc = sbert_index_delete_req(d->index, l->ids, l->lens, l->n, o.existed,
                                             &o.deleted, write_req(r, &wr, &m), why, sizeof why);
    if (irc)
        rc = sbertd_index_error(irc, why, -1, err);
    else if (del_members(reply, &o))
        rc = oom(err);
    free(o.existed);
    return rc;
}

static int prepare_backup(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    (void)d;
    const char *dir = NULL;
    int rc = sbert_proto_get_string(r->req.root, "dir", 1, 4000, &dir, err);
    if (rc)
        return rc;
    if (dir[0] != '/')
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"dir\" must be an absolute path on the daemon's machine");
    return 0;
}

static int run_backup(struct sbertd *d, struct request *r, cJSON *reply,
                      struct sbert_proto_error *err)
{
    const char *dir = cJSON_GetObjectItemCaseSensitive(r->req.root, "dir")->valuestring;
    char why[512] = "";
    int irc = sbert_index_backup(d->index, dir, why, sizeof why);
    if (irc)
        return sbertd_index_error(irc, why, -1, err);
    uint64_t count = 0;
    sbert_index_count(d->index, &count);
    sbertd_log(LOG_INFO, "backup written to %s (%llu documents)", dir, (unsigned long long)count);
    if (!cJSON_AddStringToObject(reply, "dir", dir) ||
        !cJSON_AddNumberToObject(reply, "documents", (double)count))
        return oom(err);
    return 0;
}

int sbertd_reindex_encode(const char *const *texts, const size_t *lens, size_t n, float *out,
                          void *user)
{
    struct sbertd *d = user;
    struct sbert_encode_params p = sbert_encode_default_params();
    p.n_threads = d->cfg.encode_threads;
    /* Pieces of 64 texts (well under a second each) so that the watchdog, which withholds its
     * ping from a request busy past watchdog_stall_sec, sees a long reindex moving. */
    const size_t piece = 64;
    for (size_t i = 0; i < n; i += piece) {
        size_t k = n - i < piece ? n - i : piece;
        int rc = sbert_encode(d->model, texts + i, lens ? lens + i : NULL, k,
                              out + i * (size_t)d->info->dim, &p, NULL, NULL);
        if (rc)
            return rc;
        sbertd_server_progress(d);
    }
    return 0;
}

static int run_reindex(struct sbertd *d, struct request *r, cJSON *reply,
                       struct sbert_proto_error *err)
{
    (void)r;
    char why[512] = "";
    sbertd_log(LOG_INFO, "reindex: re-encoding every stored text");
    int irc = sbert_index_reindex(d->index, &d->identity, sbertd_reindex_encode, d, why, sizeof why);
    if (irc)
        return sbertd_index_error(irc, why, -1, err);
    uint64_t count = 0;
    sbert_index_count(d->index, &count);
    sbertd_log(LOG_INFO, "reindex: done, %llu documents", (unsigned long long)count);
    if (!cJSON_AddNumberToObject(reply, "documents", (double)count))
        return oom(err);
    return 0;
}

/* ---- the table ------------------------------------------------------------------------------- */

static const char *const m_none[] = {NULL};
static const char *const m_add[] = {"documents", NULL};
static const char *const m_ids[] = {"ids", NULL};
static const char *const m_get[] = {"ids", "include", NULL};
static const char *const m_query[] = {"text", "vector", "k", "filter", "min_score", "include", NULL};
static const char *const m_similarity[] = {"a", "b", NULL};
static const char *const m_encode[] = {"texts", NULL};
static const char *const m_pairs[] = {"texts", "n", "min_score", "filter", "per_doc_k", "include", NULL};
static const char *const m_backup[] = {"dir", NULL};

const struct op sbertd_ops[] = {
    /* name         members        list         write prepare         run             stage */
    {"add",        m_add,        "documents", 1, prepare_add,    run_add,        stage_add},
    {"get",        m_get,        "ids",       0, NULL,           run_get,        NULL},
    {"delete",     m_ids,        "ids",       1, prepare_delete, run_delete,     NULL},
    {"query",      m_query,      NULL,        0, NULL,           run_query,      NULL},
    {"similarity", m_similarity, NULL,        0, NULL,           run_similarity, NULL},
    {"encode",     m_encode,     "texts",     0, NULL,           run_encode,     NULL},
    {"pairs",      m_pairs,      "texts",     0, NULL,           run_pairs,      NULL},
    {"stats",      m_none,       NULL,        0, NULL,           run_stats,      NULL},
    {"health",     m_none,       NULL,        0, NULL,           run_health,     NULL},
    {"backup",     m_backup,     NULL,        1, prepare_backup, run_backup,     NULL},
    {"reindex",    m_none,       NULL,        1, NULL,           run_reindex,    NULL},
};
const size_t sbertd_n_ops = sizeof sbertd_ops / sizeof sbertd_ops[0];
