/* ops_documents.c — the document ops: add, get, delete (PROTOCOL.md section 4). add and delete
 * are writes: prepared in a worker, run in the committer, add's encode staged in the writer.
 * delete's filter form is ops_manage.c's. */
#define _GNU_SOURCE
#include "ops_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbert_text.h"

/* ---- get ------------------------------------------------------------------------------------- */

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
    if (!l) return;
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
    int rc = sbert_proto_get_array(root, "ids", 1, LIM(MAX_BATCH), &arr, &n, err);
    if (rc) return rc;
    struct id_list *l = calloc(1, sizeof *l);
    if (!l || !(l->ids = malloc(n * sizeof *l->ids)) || !(l->lens = malloc(n * sizeof *l->lens)) ||
        !(l->numbufs = malloc(n * sizeof *l->numbufs))) {
        id_list_free(l);
        return op_oom(err);
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

int op_run_get(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    unsigned include = SBERT_PROTO_INCLUDE_TEXT | SBERT_PROTO_INCLUDE_METADATA;
    struct id_list *l = NULL;
    int rc = sbert_proto_get_include(sbertd_req_root(r), "include", &include, err);
    if (rc || (rc = get_ids(d, sbertd_req_root(r), &l, err))) return rc;
    struct sbert_index_results *res = NULL;
    int irc = sbert_index_get_max(sbertd_req_store(r), l->ids, l->lens, l->n, include,
                                  LIM(MAX_REPLY_BYTES), &res);
    if (irc == SBERT_INDEX_ETOOBIG || (!irc && op_results_too_large(d, res)))
        rc = op_reply_too_large(d,
                                "ask for fewer ids, or leave text, metadata and vector out of "
                                "\"include\"",
                                err);
    else if (irc)
        rc = op_index_error(irc, NULL, -1, err);
    cJSON *a = rc ? NULL : cJSON_AddArrayToObject(reply, "documents");
    if (!rc && !a) rc = op_oom(err);
    for (size_t i = 0; !rc && i < res->n; i++) {
        cJSON *o = op_doc_json(&res->docs[i], include, res->dim, 0, 1);
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            rc = op_oom(err);
        }
    }
    sbert_index_results_free(res);
    id_list_free(l);
    return rc;
}

/* ---- add ------------------------------------------------------------------------------------- */

struct add_prep {
    size_t n;
    struct sbert_index_put_item *items;
    const char **texts;
    size_t *lens;
    char (*numbufs)[24];
    char **metas;  /* compact metadata JSON, malloc'd */
    float *given;  /* n * dim: the precomputed "vector" of the documents that have one */
    char *has_vec; /* per document: it came with a "vector" (stored as one passage) */
    int *trunc;
    size_t n_cached; /* of the encoded texts, those the embedding cache (or a repeat) served */
    /* set by add_split: the passages, document i's are rows first[i]..first[i+1]), then one row
     * per document of several passages: its document vector, the whole text encoded (which the
     * encoder truncates to its window, as before passages) */
    int split;
    size_t *first;  /* n + 1 */
    size_t *spans;  /* 2 per passage row: {start, end} in the document's text */
    float *vecs;    /* (passage rows + document vector rows) * dim */
    size_t *rowdoc; /* per passage row: its document */
    /* the rows without a precomputed vector, which are encoded: their rows and texts */
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
    if (!a) return;
    for (size_t i = 0; a->metas && i < a->n; i++)
        free(a->metas[i]);
    free(a->metas);
    free(a->items);
    free(a->texts);
    free(a->lens);
    free(a->numbufs);
    free(a->given);
    free(a->has_vec);
    free(a->first);
    free(a->spans);
    free(a->vecs);
    free(a->rowdoc);
    free(a->trunc);
    free(a->enc);
    free(a->etexts);
    free(a->elens);
    free(a);
}

/* Copies the encoder's rows and truncation flags for a's encoded texts (n_enc of each, in the
 * order of enc) to their places in vecs and their documents' trunc, and counts those that came
 * from the embedding cache. A document vector's text is truncated by design: only a passage's
 * truncation is reported. */
static void add_scatter(struct add_prep *a, size_t dim, const float *rows, const int *trunc,
                        const int *cached)
{
    a->n_cached = 0;
    for (size_t j = 0; j < a->n_enc; j++) {
        memcpy(a->vecs + a->enc[j] * dim, rows + j * dim, dim * sizeof *rows);
        if (trunc[j] && a->enc[j] < a->first[a->n]) a->trunc[a->rowdoc[a->enc[j]]] = 1;
        a->n_cached += cached[j] != 0;
    }
}

/* Appends passage {start, end} of document i as row *rows of a, growing the buffers (*cap rows). */
static int add_row(struct add_prep *a, size_t i, size_t start, size_t end, size_t *rows,
                   size_t *cap)
{
    if (*rows == *cap) {
        size_t c = *cap ? 2 * *cap : 64;
        size_t *sp = realloc(a->spans, 2 * c * sizeof *sp);
        if (sp) a->spans = sp;
        size_t *rd = sp ? realloc(a->rowdoc, c * sizeof *rd) : NULL;
        if (!rd) return -1;
        a->rowdoc = rd;
        *cap = c;
    }
    a->spans[2 * *rows] = start;
    a->spans[2 * *rows + 1] = end;
    a->rowdoc[(*rows)++] = i;
    return 0;
}

/* Splits a's documents into passages (once): a document that came with a "vector", and one
 * that fits the model, is one passage, the whole text. Then sets up the rows to encode and the
 * items' vectors, document vectors and passages. */
static int add_split(struct sbertd *d, struct add_prep *a, struct sbert_proto_error *err)
{
    if (a->split) return 0;
    size_t dim = (size_t)sbertd_model_info(d)->dim, rows = 0, cap = 0;
    if (!(a->first = malloc((a->n + 1) * sizeof *a->first))) return op_oom(err);
    for (size_t i = 0; i < a->n; i++) {
        a->first[i] = rows;
        struct sbert_passage *ps = NULL;
        size_t np = 0;
        int rc = a->has_vec[i] ? 0 : sbertd_passages(d, a->texts[i], a->lens[i], &ps, &np, err);
        if (rc) return rc;
        for (size_t j = 0; j < np && !rc; j++)
            rc = add_row(a, i, ps[j].start, ps[j].end, &rows, &cap);
        if (np == 0) rc = add_row(a, i, 0, a->lens[i], &rows, &cap);
        free(ps);
        if (rc) return op_oom(err);
    }
    a->first[a->n] = rows;
    size_t all = rows;
    for (size_t i = 0; i < a->n; i++)
        all += a->first[i + 1] - a->first[i] > 1;
    if (!(a->vecs = malloc(all * dim * sizeof *a->vecs)) ||
        !(a->enc = malloc(all * sizeof *a->enc)) ||
        !(a->etexts = malloc(all * sizeof *a->etexts)) ||
        !(a->elens = malloc(all * sizeof *a->elens)))
        return op_oom(err);
    for (size_t i = 0; i < a->n; i++) {
        struct sbert_index_put_item *it = &a->items[i];
        size_t np = a->first[i + 1] - a->first[i];
        it->vector = a->vecs + a->first[i] * dim;
        it->n_passages = np;
        it->passages = a->spans + 2 * a->first[i];
        if (a->has_vec[i]) {
            memcpy(a->vecs + a->first[i] * dim, a->given + i * dim, dim * sizeof *a->vecs);
            continue;
        }
        for (size_t r = a->first[i]; r < a->first[i + 1]; r++) {
            a->enc[a->n_enc] = r;
            a->etexts[a->n_enc] = a->texts[i] + a->spans[2 * r];
            a->elens[a->n_enc++] = a->spans[2 * r + 1] - a->spans[2 * r];
        }
        if (np > 1) {
            it->doc_vector = a->vecs + rows * dim;
            a->enc[a->n_enc] = rows++;
            a->etexts[a->n_enc] = a->texts[i];
            a->elens[a->n_enc++] = a->lens[i];
        }
    }
    a->split = 1;
    return 0;
}

/* Passages one sbertd_encode() call of an add takes at most: between calls the watchdog hears
 * that the add makes progress (a document of 64 MiB of prose is ~50,000 passages, an hour or more
 * of encoding on a small machine, past watchdog_stall_sec). Adds of more passages than
 * ADD_SHARED_MAX together are encoded request by request, in such pieces. */
#define ADD_ENCODE_PIECE 256
#define ADD_SHARED_MAX 4096

/* Encodes a's passages that came without a vector. */
static int add_encode(struct sbertd *d, struct add_prep *a, struct sbert_proto_error *err)
{
    size_t dim = (size_t)sbertd_model_info(d)->dim;
    int rc = add_split(d, a, err);
    if (rc) return rc;
    if (a->n_enc == 0) return 0;
    float *rows = malloc(a->n_enc * dim * sizeof *rows);
    int *trunc = malloc(a->n_enc * sizeof *trunc), *cached = malloc(a->n_enc * sizeof *cached);
    if (!rows || !trunc || !cached) rc = op_oom(err);
    for (size_t at = 0; !rc && at < a->n_enc; at += ADD_ENCODE_PIECE) {
        size_t m = a->n_enc - at < ADD_ENCODE_PIECE ? a->n_enc - at : ADD_ENCODE_PIECE;
        rc = sbertd_encode_docs(d, a->etexts + at, a->elens + at, m, rows + at * dim, trunc + at,
                                cached + at, err);
        sbertd_request_progress(d);
    }
    if (!rc) add_scatter(a, dim, rows, trunc, cached);
    free(rows);
    free(trunc);
    free(cached);
    return rc;
}

/* A precomputed vector (e.g. from sbert-encode or the Python Encoder on other machines) is stored
 * as given, so it must already be what this model makes: dim finite floats of unit norm. */
static int add_vector(const cJSON *x, size_t i, size_t dim, float *out,
                      struct sbert_proto_error *err)
{
    int rc = sbert_proto_get_vector(x, "vector", (int)dim, out, err);
    if (rc) {
        char m[sizeof err->message];
        snprintf(m, sizeof m, "%s", err->message);
        return sbert_proto_error_set(err, rc, (long)i, "documents[%zu]: %s", i, m);
    }
    double ss = 0;
    for (size_t j = 0; j < dim; j++)
        ss += (double)out[j] * out[j];
    if (fabs(sqrt(ss) - 1.0) > 1e-3)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_VECTOR, (long)i,
                                     "documents[%zu].vector has L2 norm %.6g; a precomputed vector "
                                     "must be normalised (norm 1 within 1e-3), as the model's are",
                                     i, sqrt(ss));
    return 0;
}

int op_prepare_add(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    const cJSON *arr;
    size_t n;
    int rc =
        sbert_proto_get_array(sbertd_req_root(r), "documents", 1, LIM(MAX_BATCH), &arr, &n, err);
    if (rc) return rc;
    struct add_prep *a = calloc(1, sizeof *a);
    if (!a) return op_oom(err);
    sbertd_req_set_prep(r, a, add_prep_free);
    size_t dim = (size_t)sbertd_model_info(d)->dim;
    if (!(a->items = calloc(n, sizeof *a->items)) || !(a->texts = malloc(n * sizeof *a->texts)) ||
        !(a->lens = malloc(n * sizeof *a->lens)) ||
        !(a->numbufs = malloc(n * sizeof *a->numbufs)) ||
        !(a->metas = calloc(n, sizeof *a->metas)) ||
        !(a->given = malloc(n * dim * sizeof *a->given)) ||
        !(a->has_vec = calloc(n, sizeof *a->has_vec)) || !(a->trunc = calloc(n, sizeof *a->trunc)))
        return op_oom(err);
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
        if (id && (rc = sbert_proto_check_id(id, what, (long)i, a->numbufs[i], &it->id, &it->id_len,
                                             err)))
            return rc;
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(x, "text");
        snprintf(what, sizeof what, "documents[%zu].text", i);
        if (!text)
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, (long)i, "%s is required",
                                         what);
        if ((rc = sbert_proto_check_text(text, what, (long)i, LIM(MAX_TEXT_BYTES), &a->texts[i],
                                         &a->lens[i], err)))
            return rc;
        it->text = a->texts[i];
        it->text_len = a->lens[i];
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(x, "metadata");
        if (meta && !cJSON_IsNull(meta)) {
            if (!cJSON_IsObject(meta))
                return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                             "documents[%zu].metadata must be an object", i);
            if (!op_json_finite(meta))
                return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                             "documents[%zu].metadata has a number out of the "
                                             "double range (e.g. 1e400)",
                                             i);
            if (!(a->metas[i] = cJSON_PrintUnformatted(meta))) return op_oom(err);
            size_t ml = strlen(a->metas[i]);
            if (ml > LIM(MAX_METADATA_BYTES))
                return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                             "documents[%zu].metadata has %zu bytes, more than "
                                             "max_metadata_bytes (%zu)",
                                             i, ml, LIM(MAX_METADATA_BYTES));
            it->metadata = a->metas[i];
            it->metadata_len = ml;
        }
        it->dim = (int)dim;
        if (cJSON_HasObjectItem(x, "vector")) {
            if ((rc = add_vector(x, i, dim, a->given + i * dim, err))) return rc;
            a->has_vec[i] = 1;
        }
        i++;
    }
    return 0;
}

/* ---- add (continued) ------------------------------------------------------------------------- */

static int add_members(cJSON *reply, const void *arg)
{
    const struct add_prep *a = arg;
    cJSON *ids = cJSON_AddArrayToObject(reply, "ids");
    cJSON *rep = cJSON_AddArrayToObject(reply, "replaced");
    if (!ids || !rep) return -1;
    for (size_t i = 0; i < a->n; i++) {
        const struct sbert_index_put_item *it = &a->items[i];
        cJSON *s = it->id ? cJSON_CreateString(it->id) : cJSON_CreateString(it->gen_id);
        if (!s || !cJSON_AddItemToArray(ids, s) ||
            !cJSON_AddItemToArray(rep, cJSON_CreateBool(it->replaced)))
            return -1;
    }
    if (!cJSON_AddNumberToObject(reply, "encoded", (double)(a->n_enc - a->n_cached)) ||
        !cJSON_AddNumberToObject(reply, "cached", (double)a->n_cached))
        return -1;
    return op_add_truncated(reply, a->trunc, a->n);
}

/* Stores a prepared, encoded add (and its reply, under its req_id) and builds its reply. */
static int add_store(struct sbertd *d, struct request *r, cJSON *reply,
                     struct sbert_proto_error *err)
{
    (void)d;
    struct add_prep *a = sbertd_req_prep(r);
    size_t bad = 0;
    char why[512] = "";
    struct sbert_index_write_req wr;
    struct op_remember m = {r, add_members, a};
    int irc = sbert_index_put_req(sbertd_req_store(r), a->items, a->n, op_write_req(r, &wr, &m),
                                  &bad, why, sizeof why);
    if (irc)
        return op_index_error(irc, why,
                              (irc == SBERT_INDEX_EID || irc == SBERT_INDEX_EMETADATA ||
                               irc == SBERT_INDEX_ETEXT || irc == SBERT_INDEX_EINVAL)
                                  ? (long)bad
                                  : -1,
                              err);
    return add_members(reply, a) ? op_oom(err) : 0;
}

/* Runs in the committer: stores what stage_add encoded (or encodes first, when the writer's
 * stage did not run for this request). */
int op_run_add(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    struct add_prep *a = sbertd_req_prep(r);
    if (a->stage_rc) {
        *err = a->stage_err;
        return a->stage_rc;
    }
    if (!a->encoded) {
        int rc = add_encode(d, a, err);
        if (rc) return rc;
    }
    return add_store(d, r, reply, err);
}

/* The writer's stage for consecutive adds: each request's documents split into passages, then
 * one sbert_encode() over all their passages (up to ADD_SHARED_MAX; more are encoded request by
 * request, in pieces), outside any lock, while the committer stores earlier ones. Should the
 * shared encode fail, each request encodes alone, so that only the guilty one carries the error
 * to run_add. */
void op_stage_add(struct sbertd *d, struct request **rs, size_t n)
{
    size_t total = 0, dim = (size_t)sbertd_model_info(d)->dim;
    /* a request whose split fails carries the error to run_add and takes no part */
    for (size_t i = 0; i < n; i++) {
        struct add_prep *a = sbertd_req_prep(rs[i]);
        a->stage_rc = add_split(d, a, &a->stage_err);
        if (!a->stage_rc) total += a->n_enc;
    }
    int share = n > 1 && total <= ADD_SHARED_MAX;
    const char **texts = share ? malloc(total * sizeof *texts) : NULL;
    size_t *lens = share ? malloc(total * sizeof *lens) : NULL;
    float *out = share ? malloc(total * dim * sizeof *out) : NULL;
    int *trunc = share ? malloc(total * sizeof *trunc) : NULL;
    int *cached = share ? malloc(total * sizeof *cached) : NULL;
    int shared = 0;
    if (texts && lens && out && trunc && cached) {
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            struct add_prep *a = sbertd_req_prep(rs[i]);
            if (a->stage_rc) continue;
            memcpy(texts + at, a->etexts, a->n_enc * sizeof *texts);
            memcpy(lens + at, a->elens, a->n_enc * sizeof *lens);
            at += a->n_enc;
        }
        struct sbert_proto_error err;
        if (total == 0 ||
            sbertd_encode_docs(d, texts, lens, total, out, trunc, cached, &err) == 0) {
            shared = 1;
            at = 0;
            for (size_t i = 0; i < n; i++) {
                struct add_prep *a = sbertd_req_prep(rs[i]);
                if (a->stage_rc) continue;
                add_scatter(a, dim, out + at * dim, trunc + at, cached + at);
                a->encoded = 1;
                at += a->n_enc;
            }
        }
    }
    free(texts);
    free(lens);
    free(out);
    free(trunc);
    free(cached);
    for (size_t i = 0; !shared && i < n; i++) {
        struct add_prep *a = sbertd_req_prep(rs[i]);
        if (a->stage_rc) continue;
        a->stage_rc = add_encode(d, a, &a->stage_err);
        a->encoded = a->stage_rc == 0;
    }
}

/* ---- delete ------------------------------------------------------------------------------------
 */

int op_prepare_delete(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    const cJSON *root = sbertd_req_root(r);
    if (cJSON_HasObjectItem(root, "filter")) {
        if (cJSON_HasObjectItem(root, "ids"))
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                         "delete: give exactly one of \"ids\", \"filter\", not 2");
        return op_prepare_delete_filter(d, r, err);
    }
    struct id_list *l = NULL;
    int rc = get_ids(d, sbertd_req_root(r), &l, err);
    if (rc) return rc;
    sbertd_req_set_prep(r, l, id_list_free);
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
        if (!cJSON_AddItemToArray(a, cJSON_CreateBool(o->existed[i]))) return -1;
    return 0;
}

int op_run_delete(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    if (cJSON_HasObjectItem(sbertd_req_root(r), "filter"))
        return op_run_delete_filter(d, r, reply, err);
    struct id_list *l = sbertd_req_prep(r);
    struct del_out o = {l->n, 0, calloc(l->n, sizeof *o.existed)};
    if (!o.existed) return op_oom(err);
    char why[512] = "";
    struct sbert_index_write_req wr;
    struct op_remember m = {r, del_members, &o};
    int rc = 0, irc = sbert_index_delete_req(sbertd_req_store(r), l->ids, l->lens, l->n, o.existed,
                                             &o.deleted, op_write_req(r, &wr, &m), why, sizeof why);
    if (irc)
        rc = op_index_error(irc, why, -1, err);
    else if (del_members(reply, &o))
        rc = op_oom(err);
    free(o.existed);
    return rc;
}
