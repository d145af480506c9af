/* ops_keyword.c — query in keyword and hybrid mode, and with diversity (PROTOCOL.md section 4,
 * query's "mode" and "diversity"): BM25 over the keyword index, alone or fused with the vector
 * ranking, and maximal marginal relevance over any ranking (sbert_index_search). ops_search.c
 * reads the request's forms and hands such queries here. */
#define _GNU_SOURCE
#include "ops_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int op_search_members(struct sbertd *d, const cJSON *root, struct op_query *q,
                      struct sbert_proto_error *err)
{
    const char *mode = "dense", *fusion = NULL;
    double weight = 0.5, diversity = 0;
    long long cand = 0;
    int rc;
    if ((rc = sbert_proto_get_string(root, "mode", 0, 16, &mode, err)) ||
        (rc = sbert_proto_get_string(root, "fusion", 0, 16, &fusion, err)) ||
        (rc = sbert_proto_get_number(root, "weight", 0, 0, 1, SBERT_PROTO_EBAD_REQUEST, &weight,
                                     err)) ||
        (rc = sbert_proto_get_number(root, "diversity", 0, 0, 1, SBERT_PROTO_EBAD_REQUEST,
                                     &diversity, err)) ||
        (rc = sbert_proto_get_int(root, "candidates", 0, 1, 10000, SBERT_PROTO_EBAD_REQUEST, &cand,
                                  err)))
        return rc;
    struct sbert_index_search_params *p = &q->sp;
    *p = sbert_index_search_default_params();
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
    q->search = p->mode != SBERT_INDEX_MODE_DENSE || diversity > 0;
    if (p->mode == SBERT_INDEX_MODE_DENSE) return 0;
    if (!sbertd_keyword_enabled(d, q->store))
        return sbert_proto_error_set(
            err, SBERT_PROTO_EBAD_REQUEST, -1,
            "this collection keeps no keyword index (keyword_language = off)");
    if (!q->by_text)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "keyword and hybrid queries take \"text\" or \"texts\": "
                                     "BM25 needs the words");
    return 0;
}

int op_search_run(struct sbertd *d, const struct op_query *q, struct sbert_index_results **res,
                  struct sbert_proto_error *err)
{
    size_t dim = (size_t)sbertd_model_info(d)->dim;
    struct sbert_index_search_params p = q->sp;
    p.q.k = (size_t)q->k;
    p.q.min_score = (float)q->min_score;
    p.q.filter = q->filter;
    p.q.include = q->include;
    p.q.dim = (int)dim;
    p.q.lead_weight = sbertd_lead_weight(d);
    /* the queries of a batch share the reply's bound, as dense batches do (ops_search.c) */
    p.q.max_bytes = LIM(MAX_REPLY_BYTES) / q->n;
    if (!p.q.max_bytes) p.q.max_bytes = 1; /* 0 would mean unbounded */
    int irc = 0;
    size_t bytes = 0;
    for (size_t i = 0; i < q->n && !irc; i++) {
        p.text = q->by_text ? q->texts[i] : NULL;
        p.text_len = q->by_text ? q->lens[i] : 0;
        p.vector = q->v ? q->v + i * dim : NULL;
        irc = sbert_index_search(q->store, &p, &res[i]);
        if (!irc) bytes += op_results_bytes(res[i]);
        if (q->n > 1) sbertd_request_progress(d);
    }
    if (irc == SBERT_INDEX_ETOOBIG || (!irc && bytes > LIM(MAX_REPLY_BYTES)))
        return op_reply_too_large(d,
                                  "send fewer queries, ask for a smaller k, or leave text, "
                                  "metadata and vector out of \"include\"",
                                  err);
    return irc ? op_index_error(irc, NULL, -1, err) : 0;
}

int op_search_hit_json(cJSON *o, const struct sbert_index_doc *doc)
{
    int bad = isnan(doc->dense_score) ? !cJSON_AddNullToObject(o, "dense_score")
                                      : sbert_proto_add_float(o, "dense_score", doc->dense_score);
    bad = bad || sbert_proto_add_float(o, "keyword_score", doc->keyword_score);
    bad = bad || !(doc->dense_rank ? cJSON_AddNumberToObject(o, "dense_rank", doc->dense_rank)
                                   : cJSON_AddNullToObject(o, "dense_rank"));
    bad = bad || !(doc->keyword_rank ? cJSON_AddNumberToObject(o, "keyword_rank", doc->keyword_rank)
                                     : cJSON_AddNullToObject(o, "keyword_rank"));
    return bad ? -1 : 0;
}
