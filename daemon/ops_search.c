/* ops_search.c — the search ops: query, similarity, encode, pairs (PROTOCOL.md section 4). */
#define _GNU_SOURCE
#include "ops_common.h"

#include "sbert_util.h"

#include <limits.h>
#include <stdio.h>
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
                                   LIM(MAX_QUERY_TEXT_BYTES), &texts, &lens, &n, err);
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
        if ((rc = sbert_proto_get_text(sbertd_req_root(r), "a", 1, LIM(MAX_QUERY_TEXT_BYTES), &t[0],
                                       &l[0], err)) ||
            (rc = sbert_proto_get_text(sbertd_req_root(r), "b", 1, LIM(MAX_QUERY_TEXT_BYTES), &t[1],
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
    int rc = sbert_proto_get_texts(sbertd_req_root(r), "a", 1, LIM(MAX_BATCH),
                                   LIM(MAX_QUERY_TEXT_BYTES), &ta, &la, &na, err);
    if (!rc)
        rc = sbert_proto_get_texts(sbertd_req_root(r), "b", 1, LIM(MAX_BATCH),
                                   LIM(MAX_QUERY_TEXT_BYTES), &tb, &lb, &nb, err);
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

static void query_req_clear(struct op_query *q)
{
    free(q->texts);
    free(q->lens);
    free(q->v);
    free(q->trunc);
    sbert_index_filter_free(q->filter);
}

/* Reads the queries' vectors: "vector", or each item of "vectors" as "vector" would be read. */
static int query_get_vectors(struct sbertd *d, const cJSON *root, struct op_query *q,
                             struct sbert_proto_error *err)
{
    size_t dim = (size_t)sbertd_model_info(d)->dim;
    const cJSON *arr = NULL;
    int rc;
    if (q->plural &&
        (rc = sbert_proto_get_array(root, "vectors", 1, LIM(MAX_BATCH), &arr, &q->n, err)))
        return rc;
    if (!(q->v = malloc(q->n * dim * sizeof *q->v))) return op_oom(err);
    if (!q->plural) {
        if ((rc = sbert_proto_get_vector(root, "vector", (int)dim, q->v, err))) return rc;
        return op_vector_nonzero(q->v, dim, "\"vector\"", -1, err);
    }
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
    {
        char what[48];
        snprintf(what, sizeof what, "vectors[%zu]", i);
        if ((rc = sbert_proto_check_vector(x, what, (long)i, (int)dim, q->v + i * dim, err)) ||
            (rc = op_vector_nonzero(q->v + i * dim, dim, what, (long)i, err)))
            return rc;
        i++;
    }
    return 0;
}

/* "group" and "passages_per_document": what a dense query's hits are. */
static int query_grouping(const cJSON *root, struct op_query *q, struct sbert_proto_error *err)
{
    const char *group = NULL;
    long long per = 1;
    int rc;
    if ((rc = sbert_proto_get_string(root, "group", 0, 16, &group, err)) ||
        (rc = sbert_proto_get_int(root, "passages_per_document", 0, 1, MAX_PASSAGES_PER_DOCUMENT,
                                  SBERT_PROTO_EBAD_REQUEST, &per, err)))
        return rc;
    if (group && strcmp(group, "document") != 0 && strcmp(group, "passage") != 0)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"group\" must be \"document\" or \"passage\"");
    q->group_passages = group && strcmp(group, "passage") == 0;
    q->passages_per_doc = (size_t)per;
    int asked = group || cJSON_HasObjectItem(root, "passages_per_document");
    if (asked && q->search)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"group\" and \"passages_per_document\" apply to dense "
                                     "queries without diversity: keyword, hybrid and diverse "
                                     "hits are documents without passages");
    if (q->group_passages && cJSON_HasObjectItem(root, "passages_per_document"))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"passages_per_document\" applies to document hits, not "
                                     "to \"group\": \"passage\"");
    return 0;
}

/* Validates the whole request (every limit and the filter before any text is encoded), then
 * encodes its texts as one batch. */
static int query_read(struct sbertd *d, const cJSON *root, struct op_query *q,
                      struct sbert_proto_error *err)
{
    static const char *const forms[] = {"text", "vector", "texts", "vectors"};
    int which = -1, given = 0;
    for (int i = 0; i < 4; i++)
        if (cJSON_HasObjectItem(root, forms[i])) {
            which = i;
            given++;
        }
    if (given != 1)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "give exactly one of \"text\", \"vector\", \"texts\" and "
                                     "\"vectors\"");
    q->by_text = which == 0 || which == 2;
    q->plural = which >= 2;
    q->n = 1;
    q->k = 10;
    q->min_score = -2;
    q->include = SBERT_PROTO_INCLUDE_TEXT | SBERT_PROTO_INCLUDE_METADATA;
    int rc;
    if ((rc = sbert_proto_get_int(root, "k", 0, 1, (long long)LIM(MAX_K), SBERT_PROTO_EBAD_K, &q->k,
                                  err)) ||
        (rc = sbert_proto_get_number(root, "min_score", 0, -1, 1, SBERT_PROTO_EBAD_SCORE,
                                     &q->min_score, err)) ||
        (rc = sbert_proto_get_include(root, "include", &q->include, err)) ||
        (rc = op_search_members(d, root, q, err)) || (rc = query_grouping(root, q, err)))
        return rc;
    if (q->by_text && q->plural)
        rc = sbert_proto_get_texts(root, "texts", 1, LIM(MAX_BATCH), LIM(MAX_QUERY_TEXT_BYTES),
                                   &q->texts, &q->lens, &q->n, err);
    else if (q->by_text) {
        if (!(q->texts = malloc(sizeof *q->texts)) || !(q->lens = malloc(sizeof *q->lens)))
            return op_oom(err);
        rc = sbert_proto_get_text(root, "text", 1, LIM(MAX_QUERY_TEXT_BYTES), &q->texts[0],
                                  &q->lens[0], err);
    } else
        rc = query_get_vectors(d, root, q, err);
    if (rc || (rc = op_get_filter(root, &q->filter, err)) || !q->by_text) return rc;
    /* keyword mode encodes the texts only to apply min_score, which is a cosine */
    if (q->search && q->sp.mode == SBERT_INDEX_MODE_KEYWORD &&
        !cJSON_HasObjectItem(root, "min_score"))
        return 0;
    q->encoded = 1;
    size_t dim = (size_t)sbertd_model_info(d)->dim;
    if (!(q->v = malloc(q->n * dim * sizeof *q->v)) || !(q->trunc = calloc(q->n, sizeof *q->trunc)))
        return op_oom(err);
    return sbertd_encode(d, q->texts, q->lens, q->n, q->v, q->trunc, 1, err);
}

/* Searches q's queries into res (n entries): a single query as every single query is searched
 * (sbertd_query), a batch with one sbertd_query_many whose queries share max_reply_bytes equally,
 * so that the whole reply stays bounded while it is read. */
static int query_search(struct sbertd *d, const struct op_query *q,
                        struct sbert_index_results **res, struct sbert_proto_error *err)
{
    struct sbert_index_query_params p = sbert_index_query_default_params();
    p.k = (size_t)q->k;
    p.min_score = (float)q->min_score;
    p.filter = q->filter;
    p.include = q->include;
    p.dim = sbertd_model_info(d)->dim;
    p.lead_weight = sbertd_lead_weight(d);
    p.group_passages = q->group_passages;
    p.passages_per_doc = q->passages_per_doc;
    p.max_bytes = LIM(MAX_REPLY_BYTES) / q->n;
    if (!p.max_bytes) p.max_bytes = 1; /* 0 would mean unbounded */
    int irc = 0;
    if (!q->plural)
        irc = sbertd_query(d, q->store, q->v, &p, &res[0]);
    else {
        struct sbert_index_query_params *ps = malloc(q->n * sizeof *ps);
        int *rcs = malloc(q->n * sizeof *rcs);
        if (!ps || !rcs) {
            free(ps);
            free(rcs);
            return op_oom(err);
        }
        for (size_t i = 0; i < q->n; i++)
            ps[i] = p;
        irc = sbertd_query_many(d, q->store, q->v, q->n, ps, res, rcs);
        /* a query over its share of the reply makes the batch's reply too large */
        for (size_t i = 0; irc && i < q->n; i++)
            if (rcs[i] == SBERT_INDEX_ETOOBIG) irc = SBERT_INDEX_ETOOBIG;
        free(ps);
        free(rcs);
    }
    size_t bytes = 0;
    for (size_t i = 0; !irc && i < q->n; i++)
        bytes += op_results_bytes(res[i]);
    /* the index stops reading at max_bytes; the JSON of what it read may still be larger */
    if (irc == SBERT_INDEX_ETOOBIG || (!irc && bytes > LIM(MAX_REPLY_BYTES)))
        return op_reply_too_large(d,
                                  q->plural ? "send fewer queries (each may take max_reply_bytes "
                                              "/ their number), ask for a smaller k, or leave "
                                              "text, metadata and vector out of \"include\""
                                            : "ask for a smaller k, or leave text, metadata and "
                                              "vector out of \"include\"",
                                  err);
    return irc ? op_index_error(irc, NULL, -1, err) : 0;
}

/* passages_per_document: "passages", the hit's best passages, best first (the first is its
 * "passage"). Returns 0 or -1 (out of memory). */
static int query_passages_json(cJSON *o, const struct sbert_index_doc *doc)
{
    cJSON *a = cJSON_AddArrayToObject(o, "passages");
    for (size_t j = 0; a && j < doc->n_passages; j++) {
        cJSON *p = op_passage_json(&doc->passages[j]);
        if (!p || !cJSON_AddItemToArray(a, p)) {
            cJSON_Delete(p);
            return -1;
        }
    }
    return a ? 0 : -1;
}

/* One query's results as a new JSON array (the caller owns it; NULL when out of memory). */
static cJSON *query_results_json(const struct op_query *q, const struct sbert_index_results *res)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < res->n; i++) {
        const struct sbert_index_doc *doc = &res->docs[i];
        cJSON *o = op_doc_json(doc, q->include, res->dim, 1, 0);
        if (o && q->search && op_search_hit_json(o, doc)) {
            cJSON_Delete(o);
            o = NULL;
        }
        if (o && q->passages_per_doc > 1 && query_passages_json(o, doc)) {
            cJSON_Delete(o);
            o = NULL;
        }
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            return NULL;
        }
    }
    return a;
}

/* "results" (a list, or a list of lists for a batch) and "truncated" for the texts. */
static int query_reply(const struct op_query *q, struct sbert_index_results **res, cJSON *reply)
{
    cJSON *outer = q->plural ? cJSON_AddArrayToObject(reply, "results") : reply;
    if (!outer) return -1;
    for (size_t i = 0; i < q->n; i++) {
        cJSON *a = query_results_json(q, res[i]);
        if (!a || !(q->plural ? cJSON_AddItemToArray(outer, a)
                              : cJSON_AddItemToObject(outer, "results", a))) {
            cJSON_Delete(a);
            return -1;
        }
    }
    if (!q->encoded) return 0;
    if (q->plural) return op_add_truncated(reply, q->trunc, q->n);
    return cJSON_AddBoolToObject(reply, "truncated", q->trunc[0]) ? 0 : -1;
}

int op_run_query(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    struct op_query q = {.store = sbertd_req_store(r)};
    struct sbert_index_results **res = NULL;
    int rc = query_read(d, sbertd_req_root(r), &q, err);
    if (!rc && !(res = calloc(q.n, sizeof *res))) rc = op_oom(err);
    if (!rc) rc = q.search ? op_search_run(d, &q, res, err) : query_search(d, &q, res, err);
    if (!rc && query_reply(&q, res, reply)) rc = op_oom(err);
    for (size_t i = 0; res && i < q.n; i++)
        sbert_index_results_free(res[i]);
    free(res);
    query_req_clear(&q);
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
    int rc = sbert_proto_get_texts(root, "texts", 1, LIM(MAX_BATCH), LIM(MAX_QUERY_TEXT_BYTES),
                                   &texts, &lens, &n, err);
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
static int pairs_docs(struct sbertd *d, sbert_index *store, const struct sbert_index_pairs *pairs,
                      unsigned include, size_t avail, struct sbert_index_results **docs,
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
    int irc = rc ? 0 : sbert_index_get_max(store, ids, lens, 2 * pairs->n, include, avail, docs);
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
static int pairs_store(struct sbertd *d, sbert_index *store,
                       const struct sbert_index_pairs_params *p, unsigned include, cJSON *reply,
                       struct sbert_proto_error *err)
{
    struct sbert_index_pairs *pairs = NULL;
    struct sbert_index_results *docs = NULL;
    int rc = 0, irc = sbert_index_pairs(store, p, &pairs);
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
        rc = pairs_docs(d, store, pairs, include, LIM(MAX_REPLY_BYTES) - id_bytes, &docs, err);
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
        static const char *const list_members[] = {"texts", "n", "min_score", "collection", NULL};
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
    rc = pairs_store(d, sbertd_req_store(r), &p, include, reply, err);
    sbert_index_filter_free(f);
    return rc;
}
