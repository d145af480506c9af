/* ops_keyword.c — query in keyword and hybrid mode, and with diversity (PROTOCOL.md section 4,
 * query's "mode" and "diversity"): BM25 over the keyword index, alone or fused with the vector
 * ranking, and maximal marginal relevance over any ranking (sbert_index_search). */
#define _GNU_SOURCE
#include "ops_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The search parameters of the request's mode, fusion, weight and candidates members. */
static int search_params(const cJSON *root, struct sbert_index_search_params *p,
                         struct sbert_proto_error *err)
{
    const char *mode = "dense", *fusion = NULL;
    double weight = 0.5, diversity = 0;
    long long cand = 0;
    int rc;
    if ((rc = sbert_proto_get_string(root, "mode", 0, 16, &mode, err)) ||
        (rc = sbert_proto_get_number(root, "diversity", 0, 0, 1, SBERT_PROTO_EBAD_REQUEST,
                                     &diversity, err)) ||
        (rc = sbert_proto_get_string(root, "fusion", 0, 16, &fusion, err)) ||
        (rc = sbert_proto_get_number(root, "weight", 0, 0, 1, SBERT_PROTO_EBAD_REQUEST, &weight,
                                     err)) ||
        (rc = sbert_proto_get_int(root, "candidates", 0, 1, 10000, SBERT_PROTO_EBAD_REQUEST, &cand,
                                  err)))
        return rc;
    p->mode = strcmp(mode, "dense") == 0     ? SBERT_INDEX_MODE_DENSE
              : strcmp(mode, "keyword") == 0 ? SBERT_INDEX_MODE_KEYWORD
              : strcmp(mode, "hybrid") == 0  ? SBERT_INDEX_MODE_HYBRID
                                             : -1;
    if (p->mode < 0)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"mode\" must be \"dense\", \"keyword\" or \"hybrid\"");
    p->fusion = !fusion || strcmp(fusion, "rrf") == 0 ? SBERT_INDEX_FUSION_RRF
                : strcmp(fusion, "weighted") == 0     ? SBERT_INDEX_FUSION_WEIGHTED
                                                      : -1;
    if (p->fusion < 0)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"fusion\" must be \"rrf\" or \"weighted\"");
    p->weight = (float)weight;
    p->diversity = (float)diversity;
    p->candidates = (size_t)cand;
    return 0;
}

/* One hit with its scores and ranks in each list (null where it was not in that list). */
static cJSON *hit_json(const struct sbert_index_doc *doc, unsigned include, int dim)
{
    cJSON *o = op_doc_json(doc, include, dim, 1, 0);
    if (!o) return NULL;
    int bad = isnan(doc->dense_score)
                  ? !cJSON_AddNullToObject(o, "dense_score")
                  : sbert_proto_add_float(o, "dense_score", doc->dense_score) != 0;
    bad = bad || sbert_proto_add_float(o, "keyword_score", doc->keyword_score) != 0;
    bad = bad || !(doc->dense_rank ? cJSON_AddNumberToObject(o, "dense_rank", doc->dense_rank)
                                   : cJSON_AddNullToObject(o, "dense_rank"));
    bad = bad || !(doc->keyword_rank ? cJSON_AddNumberToObject(o, "keyword_rank", doc->keyword_rank)
                                     : cJSON_AddNullToObject(o, "keyword_rank"));
    if (bad) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int search_reply(struct sbertd *d, const struct sbert_index_results *res, unsigned include,
                        int trunc, int encoded, cJSON *reply, struct sbert_proto_error *err)
{
    (void)d;
    cJSON *a = cJSON_AddArrayToObject(reply, "results");
    if (!a) return op_oom(err);
    for (size_t i = 0; i < res->n; i++) {
        cJSON *o = hit_json(&res->docs[i], include, res->dim);
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            return op_oom(err);
        }
    }
    if (encoded && !cJSON_AddBoolToObject(reply, "truncated", trunc)) return op_oom(err);
    return 0;
}

int op_run_search(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    const cJSON *root = sbertd_req_root(r);
    struct sbert_index_search_params p = sbert_index_search_default_params();
    long long k = 10;
    double min_score = -2;
    unsigned include = SBERT_PROTO_INCLUDE_TEXT | SBERT_PROTO_INCLUDE_METADATA;
    const char *text = NULL;
    size_t len = 0;
    int rc;
    if ((rc = search_params(root, &p, err))) return rc;
    int has_text = cJSON_HasObjectItem(root, "text"), has_vec = cJSON_HasObjectItem(root, "vector");
    if (p.mode != SBERT_INDEX_MODE_DENSE && !sbertd_keyword_enabled(d))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "this daemon keeps no keyword index (keyword_language = off)");
    if (p.mode != SBERT_INDEX_MODE_DENSE && (!has_text || has_vec))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "keyword and hybrid queries take \"text\" (and no "
                                     "\"vector\"): BM25 needs the words");
    if (has_text == has_vec)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "give exactly one of \"text\" and \"vector\"");
    if ((rc = sbert_proto_get_int(root, "k", 0, 1, (long long)LIM(MAX_K), SBERT_PROTO_EBAD_K, &k,
                                  err)) ||
        (rc = sbert_proto_get_number(root, "min_score", 0, -1, 1, SBERT_PROTO_EBAD_SCORE,
                                     &min_score, err)) ||
        (rc = sbert_proto_get_include(root, "include", &include, err)) ||
        (has_text &&
         (rc = sbert_proto_get_text(root, "text", 1, LIM(MAX_TEXT_BYTES), &text, &len, err))))
        return rc;
    /* keyword mode encodes the text only to apply min_score, which is a cosine */
    int encode =
        has_text && (p.mode != SBERT_INDEX_MODE_KEYWORD || cJSON_HasObjectItem(root, "min_score"));
    size_t dim = (size_t)sbertd_model_info(d)->dim;
    float *v = encode || has_vec ? malloc(dim * sizeof *v) : NULL;
    int trunc = 0;
    if ((encode || has_vec) && !v) return op_oom(err);
    if (encode)
        rc = sbertd_encode(d, &text, &len, 1, v, &trunc, 1, err);
    else if (has_vec)
        rc = op_get_query_vector(root, (int)dim, v, err);
    sbert_index_filter *f = NULL;
    if (!rc) rc = op_get_filter(root, &f, err);
    struct sbert_index_results *res = NULL;
    if (!rc) {
        p.q.k = (size_t)k;
        p.q.min_score = (float)min_score;
        p.q.filter = f;
        p.q.include = include;
        p.q.dim = (int)dim;
        p.q.max_bytes = LIM(MAX_REPLY_BYTES);
        p.text = text;
        p.text_len = len;
        p.vector = v;
        int irc = sbert_index_search(sbertd_store(d), &p, &res);
        if (irc == SBERT_INDEX_ETOOBIG || (!irc && op_results_too_large(d, res)))
            rc = op_reply_too_large(d,
                                    "ask for a smaller k, or leave text, metadata and vector out "
                                    "of \"include\"",
                                    err);
        else if (irc)
            rc = op_index_error(irc, NULL, -1, err);
    }
    if (!rc) rc = search_reply(d, res, include, trunc, encode, reply, err);
    sbert_index_results_free(res);
    sbert_index_filter_free(f);
    free(v);
    return rc;
}
