/*
 * ops_common.h — private to the op handlers (ops*.c): the helpers the families share (errors,
 * reply size bounds, documents as JSON, filters) and the handlers that ops.c's table names.
 * Handlers reach the server only through op.h.
 */
#ifndef SBERTD_OPS_COMMON_H
#define SBERTD_OPS_COMMON_H

#include "op.h"

/* The most passages a query asks for per document hit ("passages_per_document"). */
#define MAX_PASSAGES_PER_DOCUMENT 1000

/* A live limit (op.h) as a size_t, in a handler whose server handle is d: LIM(MAX_BATCH). */
#define LIM(X) ((size_t)sbertd_limit(d, SBERTD_LIMIT_##X))

/* JSON of a document or pair around its strings ({"id":"","found":true,"text":"",...}), for the
 * running estimate of a reply's size. */
#define DOC_JSON_OVERHEAD 64

/* Sets err to internal "out of memory" and returns its code. */
int op_oom(struct sbert_proto_error *err);

/* Maps an index error to a protocol error (err gets the index's message, and msg after it when
 * msg is neither NULL nor empty; index is the error's item, or -1). Returns the protocol code. */
int op_index_error(int rc, const char *msg, long index, struct sbert_proto_error *err);

/* The error of a reply that would exceed max_reply_bytes: found while it is built, before it
 * takes that much memory (sbertd_finish checks the printed reply too). advice says what to ask
 * for instead. */
int op_reply_too_large(struct sbertd *d, const char *advice, struct sbert_proto_error *err);

/* Whether res's documents as JSON would exceed max_reply_bytes. */
int op_results_too_large(struct sbertd *d, const struct sbert_index_results *res);

/* The size of res's documents as JSON (an estimate from above); 0 for res NULL. */
size_t op_results_bytes(const struct sbert_index_results *res);

/* Adds "truncated": [i, ...] for the flags set in trunc[0..n). Returns 0 or -1 (out of memory). */
int op_add_truncated(cJSON *reply, const int *trunc, size_t n);

/* A passage of a query hit as a new JSON object {start, end, text, score} (the caller owns it;
 * NULL when out of memory). */
cJSON *op_passage_json(const struct sbert_index_passage *p);

/* A document of a result as a new JSON object (the caller owns it; NULL when out of memory): id,
 * then "found" (when found is set), "score" (when score is set), what include asks for, and
 * "passage" (its best passage, when the result has passages: a query's). */
cJSON *op_doc_json(const struct sbert_index_doc *doc, unsigned include, int dim, int score,
                   int found);

/* Compiles the optional "filter" member; *f stays NULL when there is none. The caller frees *f
 * with sbert_index_filter_free. */
int op_get_filter(const cJSON *root, sbert_index_filter **f, struct sbert_proto_error *err);

/* cJSON reads 1e400 as inf and prints inf as null: metadata with such a number is refused rather
 * than stored with a null in place of the number sent. Returns 1 when every number in x is
 * finite. Recursion depth is bounded by cJSON's nesting limit. */
int op_json_finite(const cJSON *x);

/* A write's reply members, built from its outputs: once inside the write transaction for the
 * store to remember (op_write_req), once after it for the reply sent. */
struct op_remember {
    const struct request *r;
    int (*members)(cJSON *reply, const void *arg); /* 0, or -1 when out of memory */
    const void *arg;
};

/* Fills wr so that the store remembers r's reply (built by m) with the write, and returns it; or
 * NULL when r has no req_id (nothing to remember). wr and m must outlive the write call. */
const struct sbert_index_write_req *
op_write_req(const struct request *r, struct sbert_index_write_req *wr, struct op_remember *m);

/* ---- the handlers, by family ------------------------------------------------------------------
 */

/* ops_documents.c */
int op_prepare_add(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
void op_stage_add(struct sbertd *d, struct request **rs, size_t n);
int op_run_add(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_run_get(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_prepare_delete(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
int op_run_delete(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);

/* ops_manage.c (delete's filter form is prepared and run there, called by ops_documents.c) */
int op_run_list(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_run_count(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_prepare_patch(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
int op_run_patch(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_prepare_delete_filter(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
int op_run_delete_filter(struct sbertd *d, struct request *r, cJSON *reply,
                         struct sbert_proto_error *err);

/* ops_search.c */
int op_run_query(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
/* A query vector v (dim floats, read as float32) must have a direction: a zero vector would give
 * every document the score 0 and an arbitrary ranking. what names it, index is its item or -1.
 * Returns 0 or SBERT_PROTO_EBAD_VECTOR (err set). */
int op_vector_nonzero(const float *v, size_t dim, const char *what, long index,
                      struct sbert_proto_error *err);

/* A query request, whichever of its four forms and modes (PROTOCOL.md section 4, query): n
 * queries with the same k, filter, min_score, include and mode. Read by ops_search.c. */
struct op_query {
    sbert_index *store; /* the collection's */
    int by_text;        /* text or texts */
    int plural;         /* texts or vectors: one result list per query */
    int encoded;        /* the texts were encoded (every mode but keyword without min_score) */
    size_t n;
    const char **texts; /* by_text: n texts borrowed from the request, in a malloc'd array */
    size_t *lens;
    float *v;   /* n rows of dim floats (NULL for texts not encoded) */
    int *trunc; /* encoded: n flags */
    long long k;
    double min_score;
    unsigned include;
    sbert_index_filter *filter;
    int group_passages;      /* "group": "passage": the hits are passages */
    size_t passages_per_doc; /* "passages_per_document": the best passages of a document hit */
    int search; /* a mode other than dense, or diversity: sbert_index_search (ops_keyword.c) */
    struct sbert_index_search_params sp;
};

/* ops_keyword.c: the query's mode, fusion, weight, candidates and diversity members into q->sp,
 * setting q->search when they ask for more than a dense query (q's form already read). */
int op_search_members(struct sbertd *d, const cJSON *root, struct op_query *q,
                      struct sbert_proto_error *err);
/* Runs q's queries (q->search) into res (q->n entries), sharing max_reply_bytes equally. */
int op_search_run(struct sbertd *d, const struct op_query *q, struct sbert_index_results **res,
                  struct sbert_proto_error *err);
/* Adds a searched hit's dense_score, keyword_score, dense_rank and keyword_rank to o. Returns 0
 * or -1 (out of memory). */
int op_search_hit_json(cJSON *o, const struct sbert_index_doc *doc);
int op_run_similarity(struct sbertd *d, struct request *r, cJSON *reply,
                      struct sbert_proto_error *err);
int op_run_encode(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_run_pairs(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);

/* ops_collections.c */
int op_prepare_create_collection(struct sbertd *d, struct request *r,
                                 struct sbert_proto_error *err);
int op_run_create_collection(struct sbertd *d, struct request *r, cJSON *reply,
                             struct sbert_proto_error *err);
int op_run_list_collections(struct sbertd *d, struct request *r, cJSON *reply,
                            struct sbert_proto_error *err);
int op_run_describe_collection(struct sbertd *d, struct request *r, cJSON *reply,
                               struct sbert_proto_error *err);
int op_prepare_drop_collection(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
int op_run_drop_collection(struct sbertd *d, struct request *r, cJSON *reply,
                           struct sbert_proto_error *err);

/* ops_admin.c */
int op_run_stats(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_run_health(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_prepare_backup(struct sbertd *d, struct request *r, struct sbert_proto_error *err);
int op_run_backup(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err);
int op_run_reindex(struct sbertd *d, struct request *r, cJSON *reply,
                   struct sbert_proto_error *err);

#endif
