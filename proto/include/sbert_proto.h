/*
 * sbert_proto.h — the sbertd wire protocol (proto/PROTOCOL.md, version 1): the message parsing,
 * validation and building shared by sbertd and sbertctl. Messages are cJSON trees.
 *
 * Errors: every function that can fail returns 0 (SBERT_PROTO_OK) or a negative SBERT_PROTO_E*
 * code. Each code *is* a wire error code of PROTOCOL.md section 5: sbert_proto_code_name() gives
 * its name on the wire ("bad_k"), sbert_proto_strerror() a description. Validation functions also
 * fill a struct sbert_proto_error with a message naming the member ("documents[3].text is empty")
 * and, for list items, the index, ready to be sent with sbert_proto_reply_error().
 *
 * Ownership: cJSON trees returned by this module are owned by the caller (cJSON_Delete). Strings
 * returned by getters are borrowed from the cJSON tree they were read from and valid while it
 * lives. Arrays this module allocates are said so and freed with free().
 *
 * Thread safety: no shared state; every function may be called from any thread on distinct
 * objects. This library never prints and never exits.
 */
#ifndef SBERT_PROTO_H
#define SBERT_PROTO_H

#include <stddef.h>

#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBERT_PROTO_VERSION 1

/* Defaults of the daemon's limits (PROTOCOL.md section 3); clients may use them for sizing. */
/* A message holds one document of the largest text (64 MiB) with room for its JSON. */
#define SBERT_PROTO_DEFAULT_MAX_MESSAGE_SIZE (96u << 20)
#define SBERT_PROTO_DEFAULT_MAX_BATCH 4096
/* A document's text (add): stored whole, encoded as passages. */
#define SBERT_PROTO_DEFAULT_MAX_TEXT_BYTES (64u << 20)
/* A text encoded whole (query, similarity, encode, pairs): the model reads its first
 * max_seq_length tokens only. */
#define SBERT_PROTO_DEFAULT_MAX_QUERY_TEXT_BYTES 65536
#define SBERT_PROTO_DEFAULT_MAX_K 1000
#define SBERT_PROTO_DEFAULT_MAX_PAIRS 100000
#define SBERT_PROTO_DEFAULT_MAX_MATRIX (1u << 20)
#define SBERT_PROTO_DEFAULT_MAX_METADATA_BYTES 65536
#define SBERT_PROTO_DEFAULT_MAX_CONCURRENT 1024
#define SBERT_PROTO_REQ_ID_MAX 128
#define SBERT_PROTO_TOKEN_MAX 1024
#define SBERT_PROTO_ID_MAX 512
/* The most bytes one float of a vector takes in a message: "%.9g" is at most 15 characters
 * ("-1.23456789e-38"), plus a comma. */
#define SBERT_PROTO_FLOAT_JSON_MAX 16

/* Error codes: the wire codes of PROTOCOL.md section 5, in that order. */
enum {
    SBERT_PROTO_OK = 0,
    SBERT_PROTO_EBAD_JSON = -1,
    SBERT_PROTO_EBAD_UTF8 = -2,
    SBERT_PROTO_EBAD_VERSION = -3,
    SBERT_PROTO_EUNKNOWN_OP = -4,
    SBERT_PROTO_EUNAUTHORIZED = -5,
    SBERT_PROTO_EBAD_REQUEST = -6,
    SBERT_PROTO_ETOO_LARGE = -7,
    SBERT_PROTO_EEMPTY_TEXT = -8,
    SBERT_PROTO_ETEXT_TOO_LONG = -9,
    SBERT_PROTO_EBAD_K = -10,
    SBERT_PROTO_EBAD_SCORE = -11,
    SBERT_PROTO_EBAD_FILTER = -12,
    SBERT_PROTO_EBAD_VECTOR = -13,
    SBERT_PROTO_EBAD_ID = -14,
    SBERT_PROTO_EBAD_METADATA = -15,
    SBERT_PROTO_EREQ_ID_REUSED = -16,
    SBERT_PROTO_EEXISTS = -17,
    SBERT_PROTO_ENO_SPACE = -18,
    SBERT_PROTO_EIO_ERROR = -19,
    SBERT_PROTO_EBUSY = -20,
    SBERT_PROTO_ESHUTTING_DOWN = -21,
    SBERT_PROTO_EINTERNAL = -22,
    SBERT_PROTO_ENO_COLLECTION = -23,
    /* Not a wire code: a reply whose code this version does not know (see error.code_name);
     * always one below the last wire code, so that every code is in (EUNKNOWN_CODE, 0). */
    SBERT_PROTO_EUNKNOWN_CODE = -24,
};

/* Returns a static description of err; never NULL. */
const char *sbert_proto_strerror(int err);

/* Returns the wire name of err ("bad_json", ...); "internal" for codes without one. */
const char *sbert_proto_code_name(int err);

/* Returns the code whose wire name is name, or SBERT_PROTO_EUNKNOWN_CODE. */
int sbert_proto_code_from_name(const char *name);

/* An error to report: the code, a sentence, and the list index it concerns (-1: none). */
struct sbert_proto_error {
    int code;
    long index;
    char message[512];
    char code_name[32]; /* the wire name as received (replies) or sent */
};

/* Sets err (which may be NULL) to code, index and a printf-formatted message; returns code. */
int sbert_proto_error_set(struct sbert_proto_error *err, int code, long index, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- requests (daemon side) ------------------------------------------------------------------ */

/* A parsed request. root owns the tree; op, req_id and token are borrowed from it (req_id and
 * token NULL when absent). */
struct sbert_proto_request {
    cJSON *root;
    const char *op;
    const char *req_id;
    const char *token;
};

/*
 * Parses one request message of len bytes: checks UTF-8 (bad_utf8), refuses \u0000 in strings
 * (bad_request), parses one JSON object with nothing but whitespace after it (bad_json), checks
 * "v" (bad_version), "op" (bad_request when missing or not a string), and the types and lengths
 * of "req_id" and "token" (bad_request); internal when memory ran out. On success fills *req
 * (release with sbert_proto_request_clear()); on failure *req is zeroed. When the message parsed as
 * an object but a later check failed, *req_id_out (may be NULL) receives a malloc'd copy of its
 * req_id, if it had a valid one, so that the error reply can echo it (the caller frees it); else
 * NULL.
 */
int sbert_proto_request_parse(const char *buf, size_t len, struct sbert_proto_request *req,
                              char **req_id_out, struct sbert_proto_error *err);

/* Frees req->root and zeroes *req. NULL is allowed. */
void sbert_proto_request_clear(struct sbert_proto_request *req);

/* Checks that every member of obj is one of the NULL-terminated list allowed, or one of the
 * common members "v", "op", "req_id", "token" when common is 1. Else bad_request naming it. */
int sbert_proto_check_members(const cJSON *obj, const char *const *allowed, int common,
                              struct sbert_proto_error *err);

/* Member getters. name is the member's name (also used in messages). When the member is absent:
 * required = 1 gives bad_request, required = 0 returns 0 and leaves the output unchanged (so the
 * caller presets the default). Wrong JSON types are bad_request. */

/* A text: a string of 1..max_bytes bytes (empty_text, text_too_long). *s is borrowed. */
int sbert_proto_get_text(const cJSON *obj, const char *name, int required, size_t max_bytes,
                         const char **s, size_t *len, struct sbert_proto_error *err);

/* Checks one text item (a string, 1..max_bytes) of a list named what, at position index. */
int sbert_proto_check_text(const cJSON *item, const char *what, long index, size_t max_bytes,
                           const char **s, size_t *len, struct sbert_proto_error *err);

/* A string of 1..max_bytes bytes that is not a text (e.g. "dir"): too long is bad_request. */
int sbert_proto_get_string(const cJSON *obj, const char *name, int required, size_t max_bytes,
                           const char **s, struct sbert_proto_error *err);

/* An integer in min..max: a JSON number with no fractional part; out of range or fractional
 * gives range_code (e.g. SBERT_PROTO_EBAD_K). */
int sbert_proto_get_int(const cJSON *obj, const char *name, int required, long long min,
                        long long max, int range_code, long long *out,
                        struct sbert_proto_error *err);

/* A finite number in min..max; else range_code. */
int sbert_proto_get_number(const cJSON *obj, const char *name, int required, double min, double max,
                           int range_code, double *out, struct sbert_proto_error *err);

/* An array of 1..max_items elements (empty: bad_request; longer: too_large). *arr borrowed. */
int sbert_proto_get_array(const cJSON *obj, const char *name, int required, size_t max_items,
                          const cJSON **arr, size_t *n, struct sbert_proto_error *err);

/* A list of texts: an array (as sbert_proto_get_array) of strings each 1..max_bytes. On success
 * *texts and *lens are malloc'd arrays of *n entries (the strings are borrowed from obj); the
 * caller frees both arrays. */
int sbert_proto_get_texts(const cJSON *obj, const char *name, int required, size_t max_items,
                          size_t max_bytes, const char ***texts, size_t **lens, size_t *n,
                          struct sbert_proto_error *err);

/* An id item: a string of 1..SBERT_PROTO_ID_MAX bytes, or an integer in -2^53..2^53 written as
 * decimal into numbuf (at least 24 bytes), *s then points to numbuf. Else bad_id. */
int sbert_proto_check_id(const cJSON *item, const char *what, long index, char *numbuf,
                         const char **s, size_t *len, struct sbert_proto_error *err);

/* include flags, the same values as the index module's SBERT_INDEX_INCLUDE_*. */
enum {
    SBERT_PROTO_INCLUDE_TEXT = 1u << 0,
    SBERT_PROTO_INCLUDE_METADATA = 1u << 1,
    SBERT_PROTO_INCLUDE_VECTOR = 1u << 2
};

/* "include": an array of "text", "metadata", "vector" (duplicates allowed, empty allowed). */
int sbert_proto_get_include(const cJSON *obj, const char *name, unsigned *flags,
                            struct sbert_proto_error *err);

/* A vector of exactly dim finite numbers into out (dim floats); else bad_vector. */
int sbert_proto_get_vector(const cJSON *obj, const char *name, int dim, float *out,
                           struct sbert_proto_error *err);

/* Checks one vector item (an array of exactly dim finite float32 numbers) of a list named what,
 * at position index, into out (dim floats); else bad_vector with that index. */
int sbert_proto_check_vector(const cJSON *item, const char *what, long index, int dim, float *out,
                             struct sbert_proto_error *err);

/* ---- replies (daemon side) and requests (client side) ---------------------------------------- */

/* Returns {"v":1,"ok":true} plus "req_id" when req_id is not NULL; NULL when out of memory. */
cJSON *sbert_proto_reply_new(const char *req_id);

/* Returns {"v":1,"ok":false,"req_id"?,"error":{"code","message","index"?}} for err; NULL when
 * out of memory. */
cJSON *sbert_proto_reply_error(const struct sbert_proto_error *err, const char *req_id);

/* Returns {"v":1,"op":op} plus "req_id" and "token" when not NULL; NULL when out of memory. */
cJSON *sbert_proto_request_new(const char *op, const char *req_id, const char *token);

/* Adds a float32 as a number with 9 significant digits (round-trips) to object obj under name,
 * or appends it to array obj when name is NULL. Returns 0 or SBERT_PROTO_EINTERNAL (no memory). */
int sbert_proto_add_float(cJSON *obj, const char *name, float x);

/* Adds an array of n float32 numbers (9 significant digits; non-finite values as null) to obj
 * under name, or appends it to array obj when name is NULL. One allocation, no per-number
 * cJSON nodes. Returns 0 or SBERT_PROTO_EINTERNAL. */
int sbert_proto_add_floats(cJSON *obj, const char *name, const float *v, size_t n);

/* Serialises msg compactly. On success *out is a malloc'd NUL-terminated string (free()) of
 * *len bytes. Returns 0 or SBERT_PROTO_EINTERNAL. */
int sbert_proto_print(const cJSON *msg, char **out, size_t *len);

/*
 * Parses a reply message. Returns 0 for an "ok": true reply, with *root owning the tree. For an
 * "ok": false reply returns its code (SBERT_PROTO_EUNKNOWN_CODE for a name this version does not
 * know), fills *err (code_name always holds the name received) and also sets *root. A message
 * that is not a version-1 reply returns SBERT_PROTO_EBAD_JSON (or EBAD_VERSION) with *root NULL,
 * and one that could not be parsed for want of memory SBERT_PROTO_EINTERNAL.
 */
int sbert_proto_reply_parse(const char *buf, size_t len, cJSON **root,
                            struct sbert_proto_error *err);

/* ---- the op table (PROTOCOL.md sections 2 and 4) --------------------------------------------- */

/*
 * The protocol's vocabulary as data: every operation of section 4 with the request members it
 * defines, their types, which are required and whether the operation writes, and the members of
 * section 2 that every request may carry. The daemon maps the ops to its handlers, sbertctl builds
 * its requests from them, the fuzzers draw names from them, and tests/proto (test
 * proto_optable_doc) fails when PROTOCOL.md says otherwise.
 *
 * Everything returned here is static, read-only data: valid for the life of the program and
 * shared by every thread without locking.
 */

/* The type of a member, one per spelling of section 4's "type" column (sbert_proto_mtype_name()).
 * It is the JSON shape only; ranges and lengths are the getters' business. */
enum sbert_proto_mtype {
    SBERT_PROTO_M_STRING,            /* "string" */
    SBERT_PROTO_M_INT,               /* "int": a number without a fractional part */
    SBERT_PROTO_M_NUMBER,            /* "number" */
    SBERT_PROTO_M_BOOL,              /* "bool" (no request member has it in version 1) */
    SBERT_PROTO_M_ARRAY,             /* "array": elements checked by the getter (include) */
    SBERT_PROTO_M_OBJECT,            /* "object" */
    SBERT_PROTO_M_STRINGS,           /* "array of strings" (ids may also be integers, section 2) */
    SBERT_PROTO_M_NUMBERS,           /* "array of numbers" */
    SBERT_PROTO_M_OBJECTS,           /* "array of objects" */
    SBERT_PROTO_M_STRING_OR_STRINGS, /* "string or array of strings" */
    SBERT_PROTO_M_VECTORS            /* "array of arrays of numbers" (query's vectors) */
};

/* Member flags. */
enum {
    /* A list bounded by max_batch (section 3's table names it). */
    SBERT_PROTO_MF_BATCH = 1u << 0,
    /* pairs: applies in collection mode only, i.e. without "texts" ("collection mode only"). */
    SBERT_PROTO_MF_COLLECTION = 1u << 1,
    /* Required when the daemon is configured for it: "token" with auth_token ("when
     * configured"); required is then 0. */
    SBERT_PROTO_MF_CONFIGURED = 1u << 2
};

/* One request member. */
struct sbert_proto_member {
    const char *name;
    enum sbert_proto_mtype type;
    int required;   /* 1: every request of the op has it; 0: optional, or one of a group */
    int one_of;     /* 0, or a group number > 0: exactly one member of the op with that number must
                       be present ("one of" in section 4; query's text, vector, texts
                       and vectors) */
    unsigned flags; /* SBERT_PROTO_MF_* */
};

/* The operations, in section 4's order; an op's id is its index in sbert_proto_ops(). */
enum sbert_proto_op_id {
    SBERT_PROTO_OP_ADD,
    SBERT_PROTO_OP_GET,
    SBERT_PROTO_OP_DELETE,
    SBERT_PROTO_OP_QUERY,
    SBERT_PROTO_OP_SIMILARITY,
    SBERT_PROTO_OP_ENCODE,
    SBERT_PROTO_OP_PAIRS,
    SBERT_PROTO_OP_STATS,
    SBERT_PROTO_OP_HEALTH,
    SBERT_PROTO_OP_BACKUP,
    SBERT_PROTO_OP_REINDEX,
    SBERT_PROTO_OP_LIST,
    SBERT_PROTO_OP_COUNT,
    SBERT_PROTO_OP_PATCH,
    SBERT_PROTO_OP_CREATE_COLLECTION,
    SBERT_PROTO_OP_LIST_COLLECTIONS,
    SBERT_PROTO_OP_DESCRIBE_COLLECTION,
    SBERT_PROTO_OP_DROP_COLLECTION,
    SBERT_PROTO_N_OPS
};

/* One operation of section 4. */
struct sbert_proto_op {
    const char *name;
    int writes; /* 1: "(write)" in section 4: serialised, idempotent by req_id (section 2) */
    const struct sbert_proto_member *members; /* the op's own members, in section 4's order */
    size_t n_members;                         /* 0: "No members." */
    const char *summary; /* section 4's heading after the dash, without "(write)" */
    enum sbert_proto_op_id id;
};

/* Returns the operation named name (exact, case-sensitive: section 5's unknown_op), or NULL for
 * an unknown name or NULL. */
const struct sbert_proto_op *sbert_proto_op_find(const char *name);

/* Returns every operation, SBERT_PROTO_N_OPS of them in section 4's order (ops[i].id == i), and
 * stores their number in *n unless n is NULL. */
const struct sbert_proto_op *sbert_proto_ops(size_t *n);

/* Returns the members common to every request (section 2: v, op, req_id, token) and stores
 * their number in *n unless n is NULL. */
const struct sbert_proto_member *sbert_proto_envelope(size_t *n);

/* Returns op's own member named name, or NULL when op does not define it (the common members of
 * sbert_proto_envelope() are not op members). */
const struct sbert_proto_member *sbert_proto_op_member(const struct sbert_proto_op *op,
                                                       const char *name);

/* Returns the type's spelling in section 4's "type" column ("array of strings"); "?" for a value
 * outside the enum. */
const char *sbert_proto_mtype_name(enum sbert_proto_mtype type);

/* Returns 1 when the JSON value x has the shape type (for arrays: every element; an empty array
 * matches every array type), else 0 (also for x NULL). */
int sbert_proto_mtype_matches(enum sbert_proto_mtype type, const cJSON *x);

/* Checks that every member of the request object req is one of op's members or a common member;
 * else bad_request naming it, as sbert_proto_check_members(). Presence and types are left to the
 * getters. */
int sbert_proto_op_check_members(const struct sbert_proto_op *op, const cJSON *req,
                                 struct sbert_proto_error *err);

/* What sbert_proto_op_check_request() checks besides names, presence and "one of" groups. */
enum { SBERT_PROTO_CHECK_TYPES = 1u << 0 /* each member's type (sbert_proto_mtype_matches) */ };

/*
 * Checks a whole request against the table, as a client does before sending it: "v" and "op"
 * present, op known (else unknown_op), every member defined for the op or common, every
 * required member present, exactly one of each "one of" group, and with SBERT_PROTO_CHECK_TYPES
 * in flags every member of its type. Else bad_request naming the member. Only the shape: values,
 * ranges and the rules between members that section 4 states in prose are the daemon's getters'
 * to check (with their own codes, e.g. bad_k). *op_out (may be NULL) receives the op, or NULL
 * when it is unknown.
 */
int sbert_proto_op_check_request(const cJSON *req, unsigned flags,
                                 const struct sbert_proto_op **op_out,
                                 struct sbert_proto_error *err);

/* ---- the OpenAPI document (PROTOCOL.md section 6) ------------------------------------------- */

/*
 * Builds the OpenAPI 3.0 document of the HTTP transport from the op table: a POST /v1/<op> path
 * for every op (GET too for health) with its request members, their types and which are
 * required ("one of" groups as oneOf), the reply and error reply shapes, and bearer
 * authentication. On success returns 0 with *out a tree the caller owns (cJSON_Delete); else
 * SBERT_PROTO_EINTERNAL (no memory) and *out is NULL.
 */
int sbert_proto_openapi(cJSON **out);

#ifdef __cplusplus
}
#endif

#endif
