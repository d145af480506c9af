/* ops_common.c — what the op families share (ops_common.h): the index->wire error map, the
 * reply size bounds, documents as JSON, filters. */
#define _GNU_SOURCE
#include "ops_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- index errors ---------------------------------------------------------------------------- */

static const struct {
    int index_rc;
    int proto_code;
} index_errors[] = {
    {SBERT_INDEX_ENOMEM, SBERT_PROTO_EINTERNAL},
    {SBERT_INDEX_EINVAL, SBERT_PROTO_EBAD_REQUEST},
    {SBERT_INDEX_EIO, SBERT_PROTO_EIO_ERROR},
    {SBERT_INDEX_ENOSPC, SBERT_PROTO_ENO_SPACE},
    {SBERT_INDEX_EMODEL, SBERT_PROTO_EINTERNAL},
    {SBERT_INDEX_EFORMAT, SBERT_PROTO_EIO_ERROR},
    {SBERT_INDEX_ENOTFOUND, SBERT_PROTO_EBAD_ID},
    {SBERT_INDEX_EFILTER, SBERT_PROTO_EBAD_FILTER},
    {SBERT_INDEX_EID, SBERT_PROTO_EBAD_ID},
    {SBERT_INDEX_EMETADATA, SBERT_PROTO_EBAD_METADATA},
    {SBERT_INDEX_EVINDEX, SBERT_PROTO_EINTERNAL},
    {SBERT_INDEX_ELOCKED, SBERT_PROTO_EIO_ERROR},
    {SBERT_INDEX_ECALLBACK, SBERT_PROTO_EINTERNAL},
    {SBERT_INDEX_EEXIST, SBERT_PROTO_EEXISTS},
    {SBERT_INDEX_ESPEC, SBERT_PROTO_EBAD_REQUEST},
    {SBERT_INDEX_ETEXT, SBERT_PROTO_EBAD_UTF8},
};

int op_index_error(int rc, const char *msg, long index, struct sbert_proto_error *err)
{
    int code = SBERT_PROTO_EINTERNAL;
    for (size_t i = 0; i < sizeof index_errors / sizeof index_errors[0]; i++)
        if (index_errors[i].index_rc == rc) code = index_errors[i].proto_code;
    return sbert_proto_error_set(err, code, index, "%s%s%s", sbert_index_strerror(rc),
                                 msg && *msg ? ": " : "", msg ? msg : "");
}

/* ---- replies --------------------------------------------------------------------------------- */

int op_oom(struct sbert_proto_error *err)
{
    return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
}

int op_reply_too_large(struct sbertd *d, const char *advice, struct sbert_proto_error *err)
{
    return sbert_proto_error_set(err, SBERT_PROTO_ETOO_LARGE, -1,
                                 "the reply would exceed max_reply_bytes (%zu bytes); %s",
                                 LIM(MAX_REPLY_BYTES), advice);
}

/* The index bounds results by their in-memory size (4 bytes a float), the reply by a vector's JSON
 * size. */
size_t op_results_bytes(const struct sbert_index_results *res)
{
    size_t bytes = 0;
    for (const struct sbert_index_doc *doc = res ? res->docs : NULL;
         res && doc < res->docs + res->n; doc++) {
        bytes += DOC_JSON_OVERHEAD + doc->id_len + doc->text_len + doc->metadata_len +
                 (doc->vector ? (size_t)res->dim * SBERT_PROTO_FLOAT_JSON_MAX : 0);
        for (size_t i = 0; i < doc->n_passages; i++)
            bytes += DOC_JSON_OVERHEAD + doc->passages[i].text_len;
    }
    return bytes;
}

int op_results_too_large(struct sbertd *d, const struct sbert_index_results *res)
{
    return op_results_bytes(res) > LIM(MAX_REPLY_BYTES);
}

int op_add_truncated(cJSON *reply, const int *trunc, size_t n)
{
    cJSON *a = cJSON_AddArrayToObject(reply, "truncated");
    if (!a) return -1;
    for (size_t i = 0; i < n; i++)
        if (trunc[i] && !cJSON_AddItemToArray(a, cJSON_CreateNumber((double)i))) return -1;
    return 0;
}

cJSON *op_passage_json(const struct sbert_index_passage *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddNumberToObject(o, "start", (double)p->start) ||
        !cJSON_AddNumberToObject(o, "end", (double)p->end) ||
        !cJSON_AddStringToObject(o, "text", p->text ? p->text : "") ||
        sbert_proto_add_float(o, "score", p->score)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *op_doc_json(const struct sbert_index_doc *doc, unsigned include, int dim, int score,
                   int found)
{
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "id", doc->id)) goto fail;
    if (found && !cJSON_AddBoolToObject(o, "found", doc->found)) goto fail;
    if (found && !doc->found) return o;
    if (score && sbert_proto_add_float(o, "score", doc->score)) goto fail;
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
    if (doc->n_passages) {
        cJSON *p = op_passage_json(&doc->passages[0]);
        if (!p || !cJSON_AddItemToObject(o, "passage", p)) {
            cJSON_Delete(p);
            goto fail;
        }
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

/* ---- query members ---------------------------------------------------------------------------
 */

int op_vector_nonzero(const float *v, size_t dim, const char *what, long index,
                      struct sbert_proto_error *err)
{
    for (size_t i = 0; i < dim; i++)
        if (v[i] != 0.0f) return 0;
    return sbert_proto_error_set(err, SBERT_PROTO_EBAD_VECTOR, index,
                                 "%s is all zeros (after float32 rounding)", what);
}

/* ---- filters --------------------------------------------------------------------------------- */

int op_get_filter(const cJSON *root, sbert_index_filter **f, struct sbert_proto_error *err)
{
    *f = NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "filter");
    if (!m) return 0;
    if (!cJSON_IsObject(m))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_FILTER, -1,
                                     "\"filter\" must be an object");
    char *json = cJSON_PrintUnformatted(m);
    if (!json) return op_oom(err);
    char why[400] = "";
    int rc = sbert_index_filter_compile(json, strlen(json), f, why, sizeof why);
    free(json);
    if (rc)
        return sbert_proto_error_set(
            err, rc == SBERT_INDEX_ENOMEM ? SBERT_PROTO_EINTERNAL : SBERT_PROTO_EBAD_FILTER, -1,
            "filter: %s", why[0] ? why : sbert_index_strerror(rc));
    return 0;
}

/* ---- metadata -------------------------------------------------------------------------------- */

int op_json_finite(const cJSON *x)
{
    if (cJSON_IsNumber(x)) return isfinite(x->valuedouble);
    for (const cJSON *c = x->child; c; c = c->next)
        if (!op_json_finite(c)) return 0;
    return 1;
}

/* ---- writes remembered by req_id ------------------------------------------------------------- */

/* sbert_index_write_req's reply callback: the whole reply text, as sbertd_finish prints it. */
static int remember_reply(void *user, char **out, size_t *len)
{
    const struct op_remember *m = user;
    cJSON *reply = sbert_proto_reply_new(sbertd_req_id(m->r));
    int rc = !reply || m->members(reply, m->arg) || sbert_proto_print(reply, out, len);
    cJSON_Delete(reply);
    return rc ? -1 : 0;
}

const struct sbert_index_write_req *
op_write_req(const struct request *r, struct sbert_index_write_req *wr, struct op_remember *m)
{
    const char *req_id = sbertd_req_id(r);
    if (!req_id) return NULL;
    wr->req_id = req_id;
    wr->req_id_len = strlen(req_id);
    wr->hash = sbertd_req_hash(r);
    wr->reply = remember_reply;
    wr->user = m;
    return wr;
}
