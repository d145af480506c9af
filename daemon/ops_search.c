/* ops_search.c — the search ops: query, similarity, encode, pairs (PROTOCOL.md section 4). */
#define _GNU_SOURCE
#include "ops_common.h"

#include "sbert_util.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* Scales each of n rows of dim floats to unit length in place (zero rows stay zero). The rows are
 * the encoder's output, always finite, so sbert_util_normalise_into cannot refuse them. */
static void normalise_rows(float *v, size_t n, size_t dim)
{
    for (size_t r = 0; r < n; r++)
        (void)sbert_util_normalise_into(v + r * dim, dim, v + r * dim);
}

/* ---- encode, similarity ---------------------------------------------------------------------- */

int op_run_encode(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    const char **texts = NULL;
    size_t *lens = NULL, n = 0, dim = (size_t)sbertd_model_info(d)->dim;
    int rc = sbert_proto_get_texts(sbertd_req_root(r), "texts", 1, LIM(MAX_BATCH),
                                   LIM(MAX_TEXT_BYTES), &texts, &lens, &n, err);
    if (rc) return rc;
    float *out = malloc(n * dim * sizeof *out);
    int *trunc = calloc(n, sizeof *trunc);
    cJSON *emb;
    if (!out || !trunc)
        rc = op_oom(err);
    else if (!(rc = sbertd_encode(d, texts, lens, n, out, trunc, 1, err))) {
        if (!cJSON_AddNumberToObject(reply, "dim", (double)dim) ||
            !(emb = cJSON_AddArrayToObject(reply, "embeddings")))
            rc = op_oom(err);
        for (size_t i = 0; !rc && i < n; i++)
            if (sbert_proto_add_floats(emb, NULL, out + i * dim, dim)) rc = op_oom(err);
        if (!rc && op_add_truncated(reply, trunc, n)) rc = op_oom(err);
    }
    free(out);
    free(trunc);
    free(texts);
    free(lens);
    return rc;
}

int op_run_similarity(struct sbertd *d, struct request *r, cJSON *reply,
                      struct sbert_proto_error *err)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(sbertd_req_root(r), "a");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(sbertd_req_root(r), "b");
    size_t dim = (size_t)sbertd_model_info(d)->dim;
    if (!a || !b)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"a\" and \"b\" are required");
    if (cJSON_IsString(a) && cJSON_IsString(b)) {
        const char *t[2];
        size_t l[2];
        int rc;
        if ((rc = sbert_proto_get_text(sbertd_req_root(r), "a", 1, LIM(MAX_TEXT_BYTES), &t[0],
                                       &l[0], err)) ||
            (rc = sbert_proto_get_text(sbertd_req_root(r), "b", 1, LIM(MAX_TEXT_BYTES), &t[1],
                                       &l[1], err)))
            return rc;
        float *v = malloc(2 * dim * sizeof *v);
        if (!v) return op_oom(err);
        rc = sbertd_encode(d, t, l, 2, v, NULL, 1, err);
        if (!rc && sbert_proto_add_float(reply, "score", (float)sbert_util_cosine(v, v + dim, dim)))
            rc = op_oom(err);
        free(v);
        return rc;
    }
    if (!cJSON_IsArray(a) || !cJSON_IsArray(b))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"a\" and \"b\" must both be strings or both arrays");
    const char **ta = NULL, **tb = NULL, **all = NULL;
    size_t *la = NULL, *lb = NULL, *lall = NULL, na = 0, nb = 0;
    float *v = NULL;
    int rc = sbert_proto_get_texts(sbertd_req_root(r), "a", 1, LIM(MAX_BATCH), LIM(MAX_TEXT_BYTES),
                                   &ta, &la, &na, err);
    if (!rc)
        rc = sbert_proto_get_texts(sbertd_req_root(r), "b", 1, LIM(MAX_BATCH), LIM(MAX_TEXT_BYTES),
                                   &tb, &lb, &nb, err);
    if (!rc && (double)na * (double)nb > (double)LIM(MAX_MATRIX))
        rc = sbert_proto_error_set(err, SBERT_PROTO_ETOO_LARGE, -1,
                                   "a %zu x %zu matrix exceeds max_matrix (%zu cells)", na, nb,
                                   LIM(MAX_MATRIX));
    if (!rc) {
        all = malloc((na + nb) * sizeof *all);
        lall = malloc((na + nb) * sizeof *lall);
        v = malloc((na + nb) * dim * sizeof *v);
        if (!all || !lall || !v) rc = op_oom(err);
    }
    if (!rc) {
        memcpy(all, ta, na * sizeof *all);
        memcpy(all + na, tb, nb * sizeof *all);
        memcpy(lall, la, na * sizeof *lall);
        memcpy(lall + na, lb, nb * sizeof *lall);
        rc = sbertd_encode(d, all, lall, na + nb, v, NULL, 1, err);
    }
    if (!rc) {
        normalise_rows(v, na + nb, dim);
        cJSON *m = cJSON_AddArrayToObject(reply, "matrix");
        float *row = malloc(nb * sizeof *row);
        if (!m || !row) rc = op_oom(err);
        for (size_t i = 0; !rc && i < na; i++) {
            for (size_t j = 0; j < nb; j++) {
                float s = 0;
                for (size_t k = 0; k < dim; k++)
                    s += v[i * dim + k] * v[(na + j) * dim + k];
                row[j] = s;
            }
            if (sbert_proto_add_floats(m, NULL, row, nb)) rc = op_oom(err);
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

int op_run_query(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    const cJSON *root = sbertd_req_root(r);
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(root, "mode");
    if ((mode && !(cJSON_IsString(mode) && strcmp(mode->valuestring, "dense") == 0)) ||
        cJSON_HasObjectItem(root, "diversity"))
        return op_run_search(d, r, reply, err);
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
    if ((rc = sbert_proto_get_int(root, "k", 0, 1, (long long)LIM(MAX_K), SBERT_PROTO_EBAD_K, &k,
                                  err)) ||
        (rc = sbert_proto_get_number(root, "min_score", 0, -1, 1, SBERT_PROTO_EBAD_SCORE,
                                     &min_score, err)) ||
        (rc = sbert_proto_get_include(root, "include", &include, err)) ||
        (has_text &&
         (rc = sbert_proto_get_text(root, "text", 1, LIM(MAX_TEXT_BYTES), &text, &len, err))))
        return rc;
    size_t dim = (size_t)sbertd_model_info(d)->dim;
    float *v = malloc(dim * sizeof *v);
    if (!v) return op_oom(err);
    int trunc = 0;
    if (has_text)
        rc = sbertd_encode(d, &text, &len, 1, v, &trunc, 1, err);
    else
        rc = op_get_query_vector(root, (int)dim, v, err);
    sbert_index_filter *f = NULL;
    if (!rc) rc = op_get_filter(root, &f, err);
    struct sbert_index_results *res = NULL;
    if (!rc) {
        struct sbert_index_query_params p = sbert_index_query_default_params();
        p.k = (size_t)k;
        p.min_score = (float)min_score;
        p.filter = f;
        p.include = include;
        p.dim = sbertd_model_info(d)->dim;
        p.max_bytes = LIM(MAX_REPLY_BYTES);
        int irc = sbertd_query(d, v, &p, &res);
        /* the index stops reading at max_bytes; the JSON of what it read may still be larger */
        if (irc == SBERT_INDEX_ETOOBIG || (!irc && op_results_too_large(d, res)))
            rc = op_reply_too_large(d,
                                    "ask for a smaller k, or leave text, metadata and vector out "
                                    "of \"include\"",
                                    err);
        else if (irc)
            rc = op_index_error(irc, NULL, -1, err);
    }
    if (!rc) {
        cJSON *a = cJSON_AddArrayToObject(reply, "results");
        if (!a) rc = op_oom(err);
        for (size_t i = 0; !rc && i < res->n; i++) {
            cJSON *o = op_doc_json(&res->docs[i], include, res->dim, 1, 0);
            if (!o || !cJSON_AddItemToArray(a, o)) {
                cJSON_Delete(o);
                rc = op_oom(err);
            }
        }
        if (!rc && has_text && !cJSON_AddBoolToObject(reply, "truncated", trunc)) rc = op_oom(err);
    }
    sbert_index_results_free(res);
    sbert_index_filter_free(f);
    free(v);
    return rc;
}

/* Scores every i < j pair of the n unit rows of v (the dot product: util.cos_sim of the encoded
 * texts) and keeps the best in top, sorted best first. Returns 0 or -1 (out of memory). */
static int pairs_score(const float *v, size_t n, size_t dim, float min_score,
                       struct sbert_util_topk *top)
{
    for (size_t i = 0; i + 1 < n; i++)
        for (size_t j = i + 1; j < n; j++) {
            float s = 0;
            for (size_t k = 0; k < dim; k++)
                s += v[i * dim + k] * v[j * dim + k];
            if (s < min_score) continue;
            struct sbert_util_pair c = {s, i, j};
            if (sbert_util_topk_add(top, &c)) return -1;
        }
    sbert_util_topk_sort(top);
    return 0;
}

/* Adds "pairs" of texts (lens: their lengths) for the pairs in top. */
static int pairs_list_reply(struct sbertd *d, const struct sbert_util_topk *top,
                            const char *const *texts, const size_t *lens, cJSON *reply,
                            struct sbert_proto_error *err)
{
    cJSON *a = cJSON_AddArrayToObject(reply, "pairs");
    if (!a) return op_oom(err);
    size_t bytes = 0;
    for (size_t p = 0; p < top->n; p++) {
        const struct sbert_util_pair *h = &top->v[p];
        /* each pair repeats its two texts: n pairs of a few texts can be far larger than the
         * request */
        bytes += 2 * DOC_JSON_OVERHEAD + lens[h->a] + lens[h->b];
        if (bytes > LIM(MAX_REPLY_BYTES))
            return op_reply_too_large(d, "ask for fewer pairs (\"n\")", err);
        cJSON *o = cJSON_CreateObject(), *x, *y;
        if (!o || !cJSON_AddItemToArray(a, o) || !(x = cJSON_AddObjectToObject(o, "a")) ||
            !cJSON_AddNumberToObject(x, "index", (double)h->a) ||
            !cJSON_AddStringToObject(x, "text", texts[h->a]) ||
            !(y = cJSON_AddObjectToObject(o, "b")) ||
            !cJSON_AddNumberToObject(y, "index", (double)h->b) ||
            !cJSON_AddStringToObject(y, "text", texts[h->b]) ||
            sbert_proto_add_float(o, "score", h->score))
            return op_oom(err);
    }
    return 0;
}

/* Pairs within a given list: every i < j scored exactly (util.cos_sim), best `limit` kept; ties
 * go to the lower i, then the lower j (sentence-transformers' paraphrase_mining order). */
static int pairs_list(struct sbertd *d, struct request *r, cJSON *reply, size_t limit,
                      float min_score, struct sbert_proto_error *err)
{
    const cJSON *root = sbertd_req_root(r);
    const char **texts = NULL;
    size_t *lens = NULL, n = 0, dim = (size_t)sbertd_model_info(d)->dim;
    int rc = sbert_proto_get_texts(root, "texts", 1, LIM(MAX_BATCH), LIM(MAX_TEXT_BYTES), &texts,
                                   &lens, &n, err);
    if (rc) return rc;
    if (n < 2) {
        free(texts);
        free(lens);
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"texts\" needs at least 2 texts");
    }
    float *v = malloc(n * dim * sizeof *v);
    int *trunc = calloc(n, sizeof *trunc);
    size_t total = n * (n - 1) / 2;
    struct sbert_util_topk top;
    sbert_util_topk_init(&top, limit < total ? limit : total); /* limit >= 1 */
    if (!v || !trunc) rc = op_oom(err);
    if (!rc) rc = sbertd_encode(d, texts, lens, n, v, trunc, 1, err);
    if (!rc) {
        normalise_rows(v, n, dim);
        if (pairs_score(v, n, dim, min_score, &top)) rc = op_oom(err);
    }
    if (!rc) rc = pairs_list_reply(d, &top, texts, lens, reply, err);
    if (!rc && op_add_truncated(reply, trunc, n)) rc = op_oom(err);
    sbert_util_topk_free(&top);
    free(v);
    free(trunc);
    free(texts);
    free(lens);
    return rc;
}

/* The documents of both sides of pairs, in pair order (2i is a, 2i+1 is b), bounded by what is
 * left of max_reply_bytes after the ids (avail). *docs stays NULL when pairs is empty. */
static int pairs_docs(struct sbertd *d, const struct sbert_index_pairs *pairs, unsigned include,
                      size_t avail, struct sbert_index_results **docs,
                      struct sbert_proto_error *err)
{
    if (!pairs->n) return 0;
    const char **ids = malloc(2 * pairs->n * sizeof *ids);
    size_t *lens = malloc(2 * pairs->n * sizeof *lens);
    int rc = 0;
    if (!ids || !lens) rc = op_oom(err);
    for (size_t i = 0; !rc && i < pairs->n; i++) {
        ids[2 * i] = pairs->pairs[i].a;
        ids[2 * i + 1] = pairs->pairs[i].b;
        lens[2 * i] = strlen(ids[2 * i]);
        lens[2 * i + 1] = strlen(ids[2 * i + 1]);
    }
    /* bounded: with include, each pair carries both documents' texts and metadata */
    int irc =
        rc ? 0
           : sbert_index_get_max(sbertd_store(d), ids, lens, 2 * pairs->n, include, avail, docs);
    if (irc == SBERT_INDEX_ETOOBIG)
        rc = op_reply_too_large(d,
                                "ask for fewer pairs (\"n\"), or leave text, metadata and "
                                "vector out of \"include\"",
                                err);
    else if (irc)
        rc = op_index_error(irc, NULL, -1, err);
    free(ids);
    free(lens);
    return rc;
}

/* One side of a pair: its document (docs: what include asked for) or just its id. */
static cJSON *pair_side(const struct sbert_index_results *docs, size_t at, const char *id,
                        unsigned include)
{
    if (docs) return op_doc_json(&docs->docs[at], include, docs->dim, 0, 0);
    cJSON *x = cJSON_CreateObject();
    if (x) cJSON_AddStringToObject(x, "id", id);
    return x;
}

/* Adds "pairs" for pairs of the store, with their documents when docs is not NULL. */
static int pairs_store_reply(const struct sbert_index_pairs *pairs,
                             const struct sbert_index_results *docs, unsigned include, cJSON *reply,
                             struct sbert_proto_error *err)
{
    cJSON *a = cJSON_AddArrayToObject(reply, "pairs");
    if (!a) return op_oom(err);
    for (size_t i = 0; i < pairs->n; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            return op_oom(err);
        }
        cJSON *x = pair_side(docs, 2 * i, pairs->pairs[i].a, include);
        cJSON *y = pair_side(docs, 2 * i + 1, pairs->pairs[i].b, include);
        if (!x || !cJSON_AddItemToObject(o, "a", x)) {
            cJSON_Delete(x);
            cJSON_Delete(y);
            return op_oom(err);
        }
        if (!y || !cJSON_AddItemToObject(o, "b", y)) {
            cJSON_Delete(y);
            return op_oom(err);
        }
        if (sbert_proto_add_float(o, "score", pairs->pairs[i].score)) return op_oom(err);
    }
    return 0;
}

/* Pairs within the store (sbert_index_pairs), with the documents include asks for. */
static int pairs_store(struct sbertd *d, const struct sbert_index_pairs_params *p, unsigned include,
                       cJSON *reply, struct sbert_proto_error *err)
{
    struct sbert_index_pairs *pairs = NULL;
    struct sbert_index_results *docs = NULL;
    int rc = 0, irc = sbert_index_pairs(sbertd_store(d), p, &pairs);
    if (irc) {
        sbert_index_pairs_free(pairs);
        return op_index_error(irc, NULL, -1, err);
    }
    size_t id_bytes = 0;
    for (size_t i = 0; i < pairs->n; i++)
        id_bytes += 2 * DOC_JSON_OVERHEAD + strlen(pairs->pairs[i].a) + strlen(pairs->pairs[i].b);
    if (id_bytes > LIM(MAX_REPLY_BYTES))
        rc = op_reply_too_large(d, "ask for fewer pairs (\"n\")", err);
    if (!rc && include)
        rc = pairs_docs(d, pairs, include, LIM(MAX_REPLY_BYTES) - id_bytes, &docs, err);
    if (!rc) rc = pairs_store_reply(pairs, docs, include, reply, err);
    sbert_index_results_free(docs);
    sbert_index_pairs_free(pairs);
    return rc;
}

int op_run_pairs(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    const cJSON *root = sbertd_req_root(r);
    long long n = 100, per_doc_k = 100;
    double min_score = -2;
    unsigned include = SBERT_PROTO_INCLUDE_TEXT;
    int rc;
    if ((rc = sbert_proto_get_int(root, "n", 0, 0, LLONG_MAX, SBERT_PROTO_EBAD_REQUEST, &n, err)) ||
        (rc = sbert_proto_get_number(root, "min_score", 0, -1, 1, SBERT_PROTO_EBAD_SCORE,
                                     &min_score, err)))
        return rc;
    if ((size_t)n > LIM(MAX_PAIRS))
        return sbert_proto_error_set(err, SBERT_PROTO_ETOO_LARGE, -1,
                                     "\"n\" exceeds max_pairs (%zu)", LIM(MAX_PAIRS));
    if (n == 0 && min_score < -1)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"n\": 0 (no count limit) needs \"min_score\"");
    size_t limit = n ? (size_t)n : LIM(MAX_PAIRS);
    if (cJSON_HasObjectItem(root, "texts")) {
        static const char *const list_members[] = {"texts", "n", "min_score", NULL};
        if ((rc = sbert_proto_check_members(root, list_members, 1, err)))
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                         "with \"texts\", only \"n\" and \"min_score\" apply");
        return pairs_list(d, r, reply, limit, (float)min_score, err);
    }
    if ((rc = sbert_proto_get_int(root, "per_doc_k", 0, 1, (long long)LIM(MAX_K),
                                  SBERT_PROTO_EBAD_K, &per_doc_k, err)) ||
        (rc = sbert_proto_get_include(root, "include", &include, err)))
        return rc;
    sbert_index_filter *f = NULL;
    if ((rc = op_get_filter(root, &f, err))) return rc;
    struct sbert_index_pairs_params p = sbert_index_pairs_default_params();
    p.top_n = limit;
    p.min_score = (float)min_score;
    p.per_doc_k = (size_t)per_doc_k;
    p.filter = f;
    rc = pairs_store(d, &p, include, reply, err);
    sbert_index_filter_free(f);
    return rc;
}
