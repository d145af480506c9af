/* proto.c — the sbertd wire protocol: validation, parsing and building of messages. */
#include "sbert_proto.h"
#include "sbert_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- error codes ----------------------------------------------------------------------------- */

struct code_entry {
    int code;
    const char *name;
    const char *text;
};

/* The table of PROTOCOL.md section 5; index i holds code -(i + 1). */
static const struct code_entry codes[] = {
    {SBERT_PROTO_EBAD_JSON, "bad_json", "the message is not a JSON object"},
    {SBERT_PROTO_EBAD_UTF8, "bad_utf8", "the message is not valid UTF-8"},
    {SBERT_PROTO_EBAD_VERSION, "bad_version", "unsupported or missing protocol version"},
    {SBERT_PROTO_EUNKNOWN_OP, "unknown_op", "unknown operation"},
    {SBERT_PROTO_EUNAUTHORIZED, "unauthorized", "missing or wrong token"},
    {SBERT_PROTO_EBAD_REQUEST, "bad_request", "malformed request"},
    {SBERT_PROTO_ETOO_LARGE, "too_large", "request exceeds a size limit"},
    {SBERT_PROTO_EEMPTY_TEXT, "empty_text", "empty text"},
    {SBERT_PROTO_ETEXT_TOO_LONG, "text_too_long",
     "text exceeds max_text_bytes (a document's) or max_query_text_bytes"},
    {SBERT_PROTO_EBAD_K, "bad_k", "k out of range"},
    {SBERT_PROTO_EBAD_SCORE, "bad_score", "min_score out of range"},
    {SBERT_PROTO_EBAD_FILTER, "bad_filter", "invalid filter"},
    {SBERT_PROTO_EBAD_VECTOR, "bad_vector", "invalid vector"},
    {SBERT_PROTO_EBAD_ID, "bad_id", "invalid id"},
    {SBERT_PROTO_EBAD_METADATA, "bad_metadata", "invalid metadata"},
    {SBERT_PROTO_EREQ_ID_REUSED, "req_id_reused", "req_id reused with a different request"},
    {SBERT_PROTO_EEXISTS, "exists", "target exists"},
    {SBERT_PROTO_ENO_SPACE, "no_space", "no space left on the device"},
    {SBERT_PROTO_EIO_ERROR, "io_error", "input/output error"},
    {SBERT_PROTO_EBUSY, "busy", "too many requests in progress"},
    {SBERT_PROTO_ESHUTTING_DOWN, "shutting_down", "the daemon is shutting down"},
    {SBERT_PROTO_EINTERNAL, "internal", "internal error"},
    {SBERT_PROTO_ENO_COLLECTION, "no_collection", "no such collection"},
};
#define N_CODES (sizeof codes / sizeof codes[0])

const char *sbert_proto_strerror(int err)
{
    if (err == SBERT_PROTO_OK) return "success";
    if (err == SBERT_PROTO_EUNKNOWN_CODE) return "error code unknown to this protocol version";
    if (err < 0 && (size_t)-err <= N_CODES) return codes[-err - 1].text;
    return "unknown error";
}

const char *sbert_proto_code_name(int err)
{
    if (err < 0 && (size_t)-err <= N_CODES) return codes[-err - 1].name;
    return "internal";
}

int sbert_proto_code_from_name(const char *name)
{
    for (size_t i = 0; name && i < N_CODES; i++)
        if (strcmp(codes[i].name, name) == 0) return codes[i].code;
    return SBERT_PROTO_EUNKNOWN_CODE;
}

int sbert_proto_error_set(struct sbert_proto_error *err, int code, long index, const char *fmt, ...)
{
    if (!err) return code;
    err->code = code;
    err->index = index;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    snprintf(err->code_name, sizeof err->code_name, "%s", sbert_proto_code_name(code));
    return code;
}

/* ---- requests -------------------------------------------------------------------------------- */

/*
 * What cJSON lets through and RFC 8259 does not, found in the raw text in one pass:
 * - a raw control character (U+0000..U+001F) inside a string: cJSON keeps it, and a NUL cuts the
 *   C string short, so the text stored would not be the text sent. Returns SBERT_PROTO_EBAD_JSON.
 * - one outside strings other than the four JSON whitespace characters: cJSON skips every byte up
 *   to 0x20 as whitespace. SBERT_PROTO_EBAD_JSON. (A NUL as the very last byte, the terminator a
 *   C client may send, is allowed.)
 * - the escape \u0000, which cJSON turns into a NUL that silently ends the string.
 *   SBERT_PROTO_EBAD_REQUEST.
 * Returns 0 when none is there; *at receives the offending byte's offset.
 */
static int strict_scan(const char *s, size_t len, size_t *at)
{
    int in_string = 0, nul_escape = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        *at = i;
        if (in_string) {
            if (c < 0x20) return SBERT_PROTO_EBAD_JSON;
            if (c == '"') {
                in_string = 0;
            } else if (c == '\\' && i + 1 < len) {
                if (s[i + 1] == 'u' && len - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0)
                    nul_escape = 1;
                i++; /* the escaped character, so that \" does not end the string */
            }
        } else if (c == '"') {
            in_string = 1;
        } else if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r' &&
                   !(c == 0 && i == len - 1)) {
            return SBERT_PROTO_EBAD_JSON;
        }
    }
    return nul_escape ? SBERT_PROTO_EBAD_REQUEST : 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Returns the first member name that occurs twice in one object anywhere in j, or NULL. cJSON
 * reads a duplicate as its first occurrence where most parsers take the last, so a proxy checking
 * "op" could see another request than the daemon runs. Sorting keeps a 100 000-member object at
 * n log n; *oom is set when the scratch array could not be allocated.
 */
static const char *duplicate_member(const cJSON *j, int *oom)
{
    if (!cJSON_IsObject(j) && !cJSON_IsArray(j)) return NULL;
    size_t n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, j)
    {
        const char *d = duplicate_member(x, oom);
        if (d || *oom) return d;
        n++;
    }
    if (!cJSON_IsObject(j) || n < 2) return NULL;
    const char **names = malloc(n * sizeof *names);
    if (!names) {
        *oom = 1;
        return NULL;
    }
    size_t k = 0;
    cJSON_ArrayForEach(x, j) names[k++] = x->string;
    qsort(names, n, sizeof *names, cmp_names);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(names[i - 1], names[i]) == 0) dup = names[i];
    free(names);
    return dup;
}

static int is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

void sbert_proto_request_clear(struct sbert_proto_request *req)
{
    if (!req) return;
    cJSON_Delete(req->root);
    memset(req, 0, sizeof *req);
}

int sbert_proto_request_parse(const char *buf, size_t len, struct sbert_proto_request *req,
                              char **req_id_out, struct sbert_proto_error *err)
{
    memset(req, 0, sizeof *req);
    if (req_id_out) *req_id_out = NULL;
    if (!sbert_util_utf8_valid(buf, len))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_UTF8, -1,
                                     "the message is not valid UTF-8");
    size_t at = 0;
    int strict = strict_scan(buf, len, &at);
    if (strict == SBERT_PROTO_EBAD_JSON)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_JSON, -1,
                                     "a raw control character (byte %zu): JSON strings must "
                                     "escape them, and between tokens only space, tab, CR and LF "
                                     "are whitespace",
                                     at);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (!root && sbert_util_json_valid(buf, len, NULL))
        /* sound JSON that cJSON could not allocate for: not the client's fault */
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
    if (!root)
        /* cJSON_GetErrorPtr() would say where, but it is global state shared between threads */
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_JSON, -1,
                                     "the message is not valid JSON");
    for (const char *p = end; p && p < buf + len; p++) {
        /* a NUL terminator sent by a C client is tolerated as the end */
        if (*p == '\0' && p == buf + len - 1) break;
        if (!is_json_ws(*p)) {
            cJSON_Delete(root);
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_JSON, -1,
                                         "data after the JSON object (byte %ld)", (long)(p - buf));
        }
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_JSON, -1,
                                     "the message is not a JSON object");
    }
    int rc = 0;
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(root, "req_id");
    if (rid) {
        if (!cJSON_IsString(rid) || rid->valuestring[0] == '\0' ||
            strlen(rid->valuestring) > SBERT_PROTO_REQ_ID_MAX) {
            rc = sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                       "req_id must be a string of 1..%d bytes",
                                       SBERT_PROTO_REQ_ID_MAX);
            goto fail;
        }
        req->req_id = rid->valuestring;
    }
    if (strict == SBERT_PROTO_EBAD_REQUEST) {
        rc = sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                   "strings must not contain \\u0000");
        goto fail;
    }
    int oom = 0;
    const char *dup = duplicate_member(root, &oom);
    if (dup || oom) {
        rc = oom ? sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory")
                 : sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                         "member \"%.64s\" appears twice in one object", dup);
        goto fail;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "v");
    if (!cJSON_IsNumber(v) || v->valuedouble != SBERT_PROTO_VERSION) {
        rc = sbert_proto_error_set(err, SBERT_PROTO_EBAD_VERSION, -1,
                                   "\"v\" must be %d (this daemon speaks protocol version %d)",
                                   SBERT_PROTO_VERSION, SBERT_PROTO_VERSION);
        goto fail;
    }
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    if (!cJSON_IsString(op)) {
        rc = sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                   "\"op\" is missing or not a string");
        goto fail;
    }
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(root, "token");
    if (tok) {
        if (!cJSON_IsString(tok) || strlen(tok->valuestring) > SBERT_PROTO_TOKEN_MAX) {
            rc = sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                       "token must be a string of at most %d bytes",
                                       SBERT_PROTO_TOKEN_MAX);
            goto fail;
        }
        req->token = tok->valuestring;
    }
    req->root = root;
    req->op = op->valuestring;
    return 0;
fail:
    if (req_id_out && req->req_id) *req_id_out = strdup(req->req_id);
    cJSON_Delete(root);
    memset(req, 0, sizeof *req);
    return rc;
}

static int name_in(const char *name, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(*list, name) == 0) return 1;
    return 0;
}

int sbert_proto_check_members(const cJSON *obj, const char *const *allowed, int common,
                              struct sbert_proto_error *err)
{
    size_t n_common;
    const struct sbert_proto_member *common_members = sbert_proto_envelope(&n_common);
    const cJSON *m;
    cJSON_ArrayForEach(m, obj)
    {
        if (!m->string || name_in(m->string, allowed)) continue;
        int is_common = 0;
        for (size_t i = 0; common && i < n_common && !is_common; i++)
            is_common = strcmp(common_members[i].name, m->string) == 0;
        if (is_common) continue;
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1, "unknown member \"%.64s\"",
                                     m->string);
    }
    return 0;
}

static const char *type_name(const cJSON *x)
{
    if (cJSON_IsString(x)) return "a string";
    if (cJSON_IsNumber(x)) return "a number";
    if (cJSON_IsBool(x)) return "a boolean";
    if (cJSON_IsNull(x)) return "null";
    if (cJSON_IsArray(x)) return "an array";
    if (cJSON_IsObject(x)) return "an object";
    return "invalid";
}

/* Looks name up in obj; returns 1 when present, 0 when absent and optional, or an error. */
static int member(const cJSON *obj, const char *name, int required, const cJSON **out,
                  struct sbert_proto_error *err)
{
    *out = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (*out) return 1;
    if (required)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1, "\"%s\" is required", name);
    return 0;
}

int sbert_proto_check_text(const cJSON *item, const char *what, long index, size_t max_bytes,
                           const char **s, size_t *len, struct sbert_proto_error *err)
{
    if (!cJSON_IsString(item))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, index,
                                     "%s must be a string, not %s", what, type_name(item));
    size_t n = strlen(item->valuestring);
    if (n == 0)
        return sbert_proto_error_set(err, SBERT_PROTO_EEMPTY_TEXT, index, "%s is empty", what);
    if (n > max_bytes)
        return sbert_proto_error_set(err, SBERT_PROTO_ETEXT_TOO_LONG, index,
                                     "%s has %zu bytes, more than %zu (max_text_bytes for a "
                                     "document's text, max_query_text_bytes for any other)",
                                     what, n, max_bytes);
    *s = item->valuestring;
    *len = n;
    return 0;
}

int sbert_proto_get_text(const cJSON *obj, const char *name, int required, size_t max_bytes,
                         const char **s, size_t *len, struct sbert_proto_error *err)
{
    const cJSON *m;
    int rc = member(obj, name, required, &m, err);
    if (rc <= 0) return rc;
    return sbert_proto_check_text(m, name, -1, max_bytes, s, len, err);
}

int sbert_proto_get_string(const cJSON *obj, const char *name, int required, size_t max_bytes,
                           const char **s, struct sbert_proto_error *err)
{
    const cJSON *m;
    int rc = member(obj, name, required, &m, err);
    if (rc <= 0) return rc;
    if (!cJSON_IsString(m) || m->valuestring[0] == '\0' || strlen(m->valuestring) > max_bytes)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"%s\" must be a string of 1..%zu bytes", name, max_bytes);
    *s = m->valuestring;
    return 0;
}

int sbert_proto_get_int(const cJSON *obj, const char *name, int required, long long min,
                        long long max, int range_code, long long *out,
                        struct sbert_proto_error *err)
{
    const cJSON *m;
    int rc = member(obj, name, required, &m, err);
    if (rc <= 0) return rc;
    if (!cJSON_IsNumber(m))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"%s\" must be an integer, not %s", name, type_name(m));
    double d = m->valuedouble;
    /* (double)LLONG_MAX rounds up to 2^63, which d > max lets through: refuse it explicitly,
     * its conversion to long long is undefined (found by tests/fuzz/fuzz_proto). */
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max ||
        d >= 9223372036854775808.0)
        return sbert_proto_error_set(err, range_code, -1,
                                     "\"%s\" must be an integer in %lld..%lld, got %.17g", name,
                                     min, max, d);
    *out = (long long)d;
    return 0;
}

int sbert_proto_get_number(const cJSON *obj, const char *name, int required, double min, double max,
                           int range_code, double *out, struct sbert_proto_error *err)
{
    const cJSON *m;
    int rc = member(obj, name, required, &m, err);
    if (rc <= 0) return rc;
    if (!cJSON_IsNumber(m))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"%s\" must be a number, not %s", name, type_name(m));
    double d = m->valuedouble;
    if (!isfinite(d) || d < min || d > max)
        return sbert_proto_error_set(err, range_code, -1, "\"%s\" must be in %g..%g, got %.17g",
                                     name, min, max, d);
    *out = d;
    return 0;
}

int sbert_proto_get_array(const cJSON *obj, const char *name, int required, size_t max_items,
                          const cJSON **arr, size_t *n, struct sbert_proto_error *err)
{
    const cJSON *m;
    int rc = member(obj, name, required, &m, err);
    if (rc <= 0) return rc;
    if (!cJSON_IsArray(m))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"%s\" must be an array, not %s", name, type_name(m));
    size_t count = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, m) count++;
    if (count == 0)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1, "\"%s\" is empty", name);
    if (count > max_items)
        return sbert_proto_error_set(err, SBERT_PROTO_ETOO_LARGE, -1,
                                     "\"%s\" has %zu items, more than max_batch (%zu)", name, count,
                                     max_items);
    *arr = m;
    *n = count;
    return 0;
}

int sbert_proto_get_texts(const cJSON *obj, const char *name, int required, size_t max_items,
                          size_t max_bytes, const char ***texts, size_t **lens, size_t *n,
                          struct sbert_proto_error *err)
{
    const cJSON *arr;
    size_t count;
    if (!cJSON_GetObjectItemCaseSensitive(obj, name) && !required) return 0;
    int rc = sbert_proto_get_array(obj, name, required, max_items, &arr, &count, err);
    if (rc) return rc;
    const char **t = malloc(count * sizeof *t);
    size_t *l = malloc(count * sizeof *l);
    if (!t || !l) {
        free(t);
        free(l);
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
    }
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
    {
        char what[96];
        snprintf(what, sizeof what, "%s[%zu]", name, i);
        rc = sbert_proto_check_text(x, what, (long)i, max_bytes, &t[i], &l[i], err);
        if (rc) {
            free(t);
            free(l);
            return rc;
        }
        i++;
    }
    *texts = t;
    *lens = l;
    *n = count;
    return 0;
}

int sbert_proto_check_id(const cJSON *item, const char *what, long index, char *numbuf,
                         const char **s, size_t *len, struct sbert_proto_error *err)
{
    if (cJSON_IsNumber(item)) {
        double d = item->valuedouble;
        if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0)
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_ID, index,
                                         "%s: a numeric id must be an integer within +-2^53", what);
        int n = snprintf(numbuf, 24, "%lld", (long long)d);
        *s = numbuf;
        *len = (size_t)n;
        return 0;
    }
    if (!cJSON_IsString(item))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_ID, index,
                                     "%s must be a string or an integer, not %s", what,
                                     type_name(item));
    size_t n = strlen(item->valuestring);
    if (n == 0 || n > SBERT_PROTO_ID_MAX)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_ID, index,
                                     "%s must have 1..%d bytes, has %zu", what, SBERT_PROTO_ID_MAX,
                                     n);
    *s = item->valuestring;
    *len = n;
    return 0;
}

int sbert_proto_get_include(const cJSON *obj, const char *name, unsigned *flags,
                            struct sbert_proto_error *err)
{
    const cJSON *m;
    int rc = member(obj, name, 0, &m, err);
    if (rc <= 0) return rc;
    if (!cJSON_IsArray(m))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                     "\"%s\" must be an array of field names", name);
    static const struct {
        const char *name;
        unsigned flag;
    } fields[] = {{"text", SBERT_PROTO_INCLUDE_TEXT},
                  {"metadata", SBERT_PROTO_INCLUDE_METADATA},
                  {"vector", SBERT_PROTO_INCLUDE_VECTOR}};
    unsigned f = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, m)
    {
        size_t i = 0;
        while (i < sizeof fields / sizeof fields[0] &&
               !(cJSON_IsString(x) && strcmp(x->valuestring, fields[i].name) == 0))
            i++;
        if (i == sizeof fields / sizeof fields[0])
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                         "\"%s\" may name only \"text\", \"metadata\", \"vector\"",
                                         name);
        f |= fields[i].flag;
    }
    *flags = f;
    return 0;
}

int sbert_proto_check_vector(const cJSON *item, const char *what, long index, int dim, float *out,
                             struct sbert_proto_error *err)
{
    if (!cJSON_IsArray(item))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_VECTOR, index,
                                     "%s must be an array of %d numbers", what, dim);
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, item)
    {
        if (i >= dim)
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_VECTOR, index,
                                         "%s has more than %d numbers", what, dim);
        if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) || fabs(x->valuedouble) > 3.4e38)
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_VECTOR, index,
                                         "%s[%d] is not a finite float", what, i);
        out[i++] = (float)x->valuedouble;
    }
    if (i != dim)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_VECTOR, index,
                                     "%s has %d numbers, the model's dim is %d", what, i, dim);
    return 0;
}

int sbert_proto_get_vector(const cJSON *obj, const char *name, int dim, float *out,
                           struct sbert_proto_error *err)
{
    const cJSON *m;
    int rc = member(obj, name, 1, &m, err);
    if (rc <= 0) return rc;
    char what[80];
    snprintf(what, sizeof what, "\"%.64s\"", name);
    return sbert_proto_check_vector(m, what, -1, dim, out, err);
}

/* ---- building -------------------------------------------------------------------------------- */

cJSON *sbert_proto_reply_new(const char *req_id)
{
    cJSON *r = cJSON_CreateObject();
    if (!r || !cJSON_AddNumberToObject(r, "v", SBERT_PROTO_VERSION) ||
        !cJSON_AddTrueToObject(r, "ok") ||
        (req_id && !cJSON_AddStringToObject(r, "req_id", req_id))) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

cJSON *sbert_proto_reply_error(const struct sbert_proto_error *err, const char *req_id)
{
    cJSON *r = cJSON_CreateObject();
    cJSON *e = NULL;
    if (!r || !cJSON_AddNumberToObject(r, "v", SBERT_PROTO_VERSION) ||
        !cJSON_AddFalseToObject(r, "ok") ||
        (req_id && !cJSON_AddStringToObject(r, "req_id", req_id)) ||
        !(e = cJSON_AddObjectToObject(r, "error")) ||
        !cJSON_AddStringToObject(e, "code", sbert_proto_code_name(err->code)) ||
        !cJSON_AddStringToObject(e, "message", err->message) ||
        (err->index >= 0 && !cJSON_AddNumberToObject(e, "index", (double)err->index))) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

cJSON *sbert_proto_request_new(const char *op, const char *req_id, const char *token)
{
    cJSON *r = cJSON_CreateObject();
    if (!r || !cJSON_AddNumberToObject(r, "v", SBERT_PROTO_VERSION) ||
        !cJSON_AddStringToObject(r, "op", op) ||
        (req_id && !cJSON_AddStringToObject(r, "req_id", req_id)) ||
        (token && !cJSON_AddStringToObject(r, "token", token))) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

static int attach(cJSON *obj, const char *name, cJSON *item)
{
    if (!item) return SBERT_PROTO_EINTERNAL;
    cJSON_bool ok = name ? cJSON_AddItemToObject(obj, name, item) : cJSON_AddItemToArray(obj, item);
    if (!ok) {
        cJSON_Delete(item);
        return SBERT_PROTO_EINTERNAL;
    }
    return 0;
}

static int format_float(char *buf, size_t cap, float x)
{
    if (!isfinite(x)) return snprintf(buf, cap, "null");
    return snprintf(buf, cap, "%.9g", (double)x);
}

int sbert_proto_add_float(cJSON *obj, const char *name, float x)
{
    char buf[32];
    format_float(buf, sizeof buf, x);
    return attach(obj, name, cJSON_CreateRaw(buf));
}

int sbert_proto_add_floats(cJSON *obj, const char *name, const float *v, size_t n)
{
    size_t cap = 2 + n * SBERT_PROTO_FLOAT_JSON_MAX + 1;
    char *buf = malloc(cap);
    if (!buf) return SBERT_PROTO_EINTERNAL;
    size_t at = 0;
    buf[at++] = '[';
    for (size_t i = 0; i < n; i++) {
        if (i) buf[at++] = ',';
        at += (size_t)format_float(buf + at, cap - at, v[i]);
    }
    buf[at++] = ']';
    buf[at] = '\0';
    int rc = attach(obj, name, cJSON_CreateRaw(buf));
    free(buf);
    return rc;
}

int sbert_proto_print(const cJSON *msg, char **out, size_t *len)
{
    char *s = cJSON_PrintUnformatted(msg);
    if (!s) return SBERT_PROTO_EINTERNAL;
    *out = s;
    *len = strlen(s);
    return 0;
}

int sbert_proto_reply_parse(const char *buf, size_t len, cJSON **root,
                            struct sbert_proto_error *err)
{
    *root = NULL;
    cJSON *r = cJSON_ParseWithLength(buf, len);
    if (!r && sbert_util_json_valid(buf, len, NULL))
        return sbert_proto_error_set(err, SBERT_PROTO_EINTERNAL, -1, "out of memory");
    if (!r || !cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_JSON, -1,
                                     "the reply is not a JSON object");
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(r, "v");
    if (!cJSON_IsNumber(v) || v->valuedouble != SBERT_PROTO_VERSION) {
        cJSON_Delete(r);
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_VERSION, -1,
                                     "the reply is not protocol version %d", SBERT_PROTO_VERSION);
    }
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(r, "ok");
    if (cJSON_IsTrue(ok)) {
        *root = r;
        return 0;
    }
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *index = cJSON_GetObjectItemCaseSensitive(e, "index");
    if (!cJSON_IsFalse(ok) || !cJSON_IsString(code)) {
        cJSON_Delete(r);
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_JSON, -1,
                                     "the reply has neither ok:true nor an error object");
    }
    int c = sbert_proto_code_from_name(code->valuestring);
    if (err) {
        err->code = c;
        /* an index that no long holds is dropped, not converted (undefined; fuzz_proto) */
        double ix = cJSON_IsNumber(index) ? index->valuedouble : -1;
        err->index = ix >= 0 && ix < 9007199254740992.0 ? (long)ix : -1;
        snprintf(err->message, sizeof err->message, "%s",
                 cJSON_IsString(msg) ? msg->valuestring : "");
        snprintf(err->code_name, sizeof err->code_name, "%s", code->valuestring);
    }
    *root = r;
    return c;
}
