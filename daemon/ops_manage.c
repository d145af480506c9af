/* ops_manage.c — the data management ops (PROTOCOL.md section 4): list (pages in id order with an
 * opaque cursor) and count, which read; patch and delete's filter form, which write (prepared in
 * a worker, run in the committer). */
#define _GNU_SOURCE
#include "ops_common.h"

#include "sbert_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* list's limit: the default, and documents examined per page at least (a filter that accepts
 * few documents still moves a page this far). The most is max_batch. */
#define LIST_DEFAULT_LIMIT 100
#define LIST_MIN_SCAN 4096
#define LIST_SCAN_PER_DOC 8

/* ---- cursors ------------------------------------------------------------------------------------
 * A cursor is base64url (RFC 4648 section 5, no padding) of a version byte (1) and the id of the
 * last document a page examined. It names a position, not a document: it stays valid when that
 * document is deleted, and pages resume after the place its id has in id order. */

#define CURSOR_VERSION 1
/* the longest cursor: base64url of 1 + SBERT_INDEX_ID_MAX bytes */
#define CURSOR_MAX (((1 + SBERT_INDEX_ID_MAX) * 4 + 2) / 3)

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* The cursor of id (len bytes) into out (CURSOR_MAX + 1 bytes). */
static void cursor_encode(const char *id, size_t len, char *out)
{
    unsigned char raw[1 + SBERT_INDEX_ID_MAX];
    raw[0] = CURSOR_VERSION;
    memcpy(raw + 1, id, len);
    size_t n = len + 1, o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)raw[i] << 16;
        if (i + 1 < n) v |= (unsigned)raw[i + 1] << 8;
        if (i + 2 < n) v |= raw[i + 2];
        out[o++] = b64url[(v >> 18) & 63];
        out[o++] = b64url[(v >> 12) & 63];
        if (i + 1 < n) out[o++] = b64url[(v >> 6) & 63];
        if (i + 2 < n) out[o++] = b64url[v & 63];
    }
    out[o] = 0;
}

static int b64_value(char c)
{
    const char *p = c ? strchr(b64url, c) : NULL;
    return p ? (int)(p - b64url) : -1;
}

/* Decodes cursor s into id (SBERT_INDEX_ID_MAX bytes), *len its length. Returns 0, or -1 with
 * why: a cursor this daemon did not make is refused, never used as a position. */
static int cursor_decode(const char *s, char *id, size_t *len, const char **why)
{
    size_t n = strlen(s);
    unsigned char raw[1 + SBERT_INDEX_ID_MAX + 2];
    size_t o = 0;
    if (n < 3 || n > CURSOR_MAX || n % 4 == 1) {
        *why = "it has the wrong length";
        return -1;
    }
    for (size_t i = 0; i < n; i += 4) {
        unsigned v = 0;
        size_t k = n - i < 4 ? n - i : 4;
        for (size_t j = 0; j < 4; j++) {
            int x = j < k ? b64_value(s[i + j]) : 0;
            if (x < 0) {
                *why = "it has a character outside base64url";
                return -1;
            }
            v = v << 6 | (unsigned)x;
        }
        raw[o++] = (unsigned char)(v >> 16);
        if (k > 2) raw[o++] = (unsigned char)(v >> 8);
        if (k > 3) raw[o++] = (unsigned char)v;
        /* the bits below the last whole byte must be zero, so each position has one cursor */
        if ((k == 2 && (v & 0xFFFF)) || (k == 3 && (v & 0xFF))) {
            *why = "it is not canonical base64url";
            return -1;
        }
    }
    if (raw[0] != CURSOR_VERSION) {
        *why = "it has an unknown version";
        return -1;
    }
    *len = o - 1;
    if (*len == 0 || *len > SBERT_INDEX_ID_MAX || memchr(raw + 1, 0, *len) ||
        !sbert_util_utf8_valid(raw + 1, *len)) {
        *why = "it does not hold an id";
        return -1;
    }
    memcpy(id, raw + 1, *len);
    return 0;
}

/* ---- list ------------------------------------------------------------------------------------ */

/* The page's byte bound for the index: max_reply_bytes less what JSON adds around documents. The
 * index counts a float as 4 bytes, JSON up to SBERT_PROTO_FLOAT_JSON_MAX. */
static size_t list_max_bytes(struct sbertd *d, size_t limit, unsigned include)
{
    size_t reply = LIM(MAX_REPLY_BYTES), fixed = limit * DOC_JSON_OVERHEAD + CURSOR_MAX + 256;
    size_t b = reply > fixed ? reply - fixed : 1;
    if (include & SBERT_PROTO_INCLUDE_VECTOR) b /= SBERT_PROTO_FLOAT_JSON_MAX / sizeof(float);
    return b ? b : 1;
}

static int list_reply(const struct sbert_index_results *res, unsigned include, const char *next,
                      size_t next_len, cJSON *reply, struct sbert_proto_error *err)
{
    cJSON *a = cJSON_AddArrayToObject(reply, "documents");
    if (!a) return op_oom(err);
    for (size_t i = 0; i < res->n; i++) {
        cJSON *o = op_doc_json(&res->docs[i], include, res->dim, 0, 0);
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            return op_oom(err);
        }
    }
    if (next) {
        char c[CURSOR_MAX + 1];
        cursor_encode(next, next_len, c);
        if (!cJSON_AddStringToObject(reply, "cursor", c)) return op_oom(err);
    }
    return 0;
}

int op_run_list(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    const cJSON *root = sbertd_req_root(r);
    struct sbert_index_list_params p = {.include = SBERT_PROTO_INCLUDE_TEXT |
                                                   SBERT_PROTO_INCLUDE_METADATA};
    long long limit = LIST_DEFAULT_LIMIT;
    const char *cursor = NULL;
    char after[SBERT_INDEX_ID_MAX];
    sbert_index_filter *f = NULL;
    int rc = sbert_proto_get_include(root, "include", &p.include, err);
    if (!rc)
        rc = sbert_proto_get_int(root, "limit", 0, 1, (long long)LIM(MAX_BATCH),
                                 SBERT_PROTO_EBAD_REQUEST, &limit, err);
    if (!rc) rc = sbert_proto_get_string(root, "cursor", 0, CURSOR_MAX + 1, &cursor, err);
    if (!rc && cursor) {
        const char *why = "";
        if (cursor_decode(cursor, after, &p.after_len, &why))
            rc = sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, -1,
                                       "\"cursor\" is not a cursor of list: %s", why);
        p.after = after;
    }
    if (rc || (rc = op_get_filter(root, &f, err))) return rc;
    p.filter = f;
    p.limit = (size_t)limit;
    p.max_scan =
        p.limit * LIST_SCAN_PER_DOC > LIST_MIN_SCAN ? p.limit * LIST_SCAN_PER_DOC : LIST_MIN_SCAN;
    p.max_bytes = list_max_bytes(d, p.limit, p.include);
    struct sbert_index_results *res = NULL;
    char *next = NULL;
    size_t next_len = 0;
    int irc = sbert_index_list(sbertd_req_store(r), &p, &res, &next, &next_len);
    if (irc == SBERT_INDEX_ETOOBIG || (!irc && op_results_too_large(d, res)))
        rc = op_reply_too_large(d,
                                "leave text, metadata and vector out of \"include\" (one document "
                                "alone is larger)",
                                err);
    else if (irc)
        rc = op_index_error(irc, NULL, -1, err);
    else
        rc = list_reply(res, p.include, next, next_len, reply, err);
    sbert_index_results_free(res);
    free(next);
    sbert_index_filter_free(f);
    return rc;
}

/* ---- count ----------------------------------------------------------------------------------- */

int op_run_count(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    (void)d;
    sbert_index_filter *f = NULL;
    int rc = op_get_filter(sbertd_req_root(r), &f, err);
    if (rc) return rc;
    uint64_t n = 0;
    int irc = sbert_index_count_filter(sbertd_req_store(r), f, &n);
    sbert_index_filter_free(f);
    if (irc) return op_index_error(irc, NULL, -1, err);
    return cJSON_AddNumberToObject(reply, "count", (double)n) ? 0 : op_oom(err);
}

/* ---- delete by filter ------------------------------------------------------------------------ */

static void filter_free(void *f)
{
    sbert_index_filter_free(f);
}

int op_prepare_delete_filter(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    (void)d;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(sbertd_req_root(r), "filter");
    /* {} accepts every document: a typo must not empty a store */
    if (cJSON_IsObject(m) && !m->child)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_FILTER, -1,
                                     "delete refuses the empty filter {}, which matches every "
                                     "document; to delete them all, say so with a filter such as "
                                     "{\"$or\":[{\"k\":{\"$exists\":true}},{\"k\":{\"$exists\":"
                                     "false}}]}");
    sbert_index_filter *f = NULL;
    int rc = op_get_filter(sbertd_req_root(r), &f, err);
    if (rc) return rc;
    sbertd_req_set_prep(r, f, filter_free);
    return 0;
}

static int delf_members(cJSON *reply, const void *arg)
{
    return cJSON_AddNumberToObject(reply, "deleted", (double)*(const uint64_t *)arg) ? 0 : -1;
}

static void delf_progress(void *user, uint64_t deleted)
{
    (void)deleted;
    sbertd_progress(user);
}

int op_run_delete_filter(struct sbertd *d, struct request *r, cJSON *reply,
                         struct sbert_proto_error *err)
{
    uint64_t deleted = 0;
    char why[512] = "";
    struct sbert_index_write_req wr;
    struct op_remember m = {r, delf_members, &deleted};
    struct sbert_index_delete_filter_params p = {.filter = sbertd_req_prep(r),
                                                 .req = op_write_req(r, &wr, &m),
                                                 .progress = delf_progress,
                                                 .progress_user = d};
    int irc = sbert_index_delete_filter(sbertd_req_store(r), &p, &deleted, why, sizeof why);
    if (irc) {
        char msg[640];
        snprintf(msg, sizeof msg, "%s (%llu documents were deleted before the failure)", why,
                 (unsigned long long)deleted);
        return op_index_error(irc, msg, -1, err);
    }
    return delf_members(reply, &deleted) ? op_oom(err) : 0;
}

/* ---- patch ----------------------------------------------------------------------------------- */

struct patch_prep {
    size_t n;
    struct sbert_index_patch_item *items;
    char (*numbufs)[24];
    char **sets;          /* compact JSON of each set, malloc'd (cJSON's); NULL for none */
    const char ***unsets; /* each item's keys, borrowed from the request */
};

static void patch_prep_free(void *x)
{
    struct patch_prep *p = x;
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        if (p->sets) cJSON_free(p->sets[i]);
        if (p->unsets) free(p->unsets[i]);
    }
    free(p->items);
    free(p->numbufs);
    free(p->sets);
    free(p->unsets);
    free(p);
}

/* documents[i].set: an object of finite numbers, its compact JSON within max_metadata_bytes. */
static int patch_set(struct sbertd *d, const cJSON *set, size_t i, struct patch_prep *p,
                     struct sbert_proto_error *err)
{
    if (!cJSON_IsObject(set))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                     "documents[%zu].set must be an object", i);
    if (!op_json_finite(set))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                     "documents[%zu].set has a number out of the double range "
                                     "(e.g. 1e400)",
                                     i);
    if (!(p->sets[i] = cJSON_PrintUnformatted(set))) return op_oom(err);
    size_t len = strlen(p->sets[i]);
    if (len > LIM(MAX_METADATA_BYTES))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_METADATA, (long)i,
                                     "documents[%zu].set has %zu bytes, more than "
                                     "max_metadata_bytes (%zu)",
                                     i, len, LIM(MAX_METADATA_BYTES));
    p->items[i].set = p->sets[i];
    p->items[i].set_len = len;
    return 0;
}

/* documents[i].unset: an array of key names (strings). */
static int patch_unset(const cJSON *unset, size_t i, struct patch_prep *p,
                       struct sbert_proto_error *err)
{
    if (!cJSON_IsArray(unset))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, (long)i,
                                     "documents[%zu].unset must be an array of key names", i);
    size_t n = (size_t)cJSON_GetArraySize(unset), k = 0;
    if (n && !(p->unsets[i] = malloc(n * sizeof *p->unsets[i]))) return op_oom(err);
    const cJSON *x;
    cJSON_ArrayForEach(x, unset)
    {
        if (!cJSON_IsString(x))
            return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, (long)i,
                                         "documents[%zu].unset[%zu] must be a string", i, k);
        p->unsets[i][k++] = x->valuestring;
    }
    p->items[i].unset = p->unsets[i];
    p->items[i].n_unset = n;
    return 0;
}

static int patch_item(struct sbertd *d, const cJSON *x, size_t i, struct patch_prep *p,
                      struct sbert_proto_error *err)
{
    static const char *const members[] = {"id", "set", "unset", NULL};
    if (!cJSON_IsObject(x))
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, (long)i,
                                     "documents[%zu] must be an object", i);
    if (sbert_proto_check_members(x, members, 0, err)) {
        err->index = (long)i;
        return err->code;
    }
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(x, "id");
    const cJSON *set = cJSON_GetObjectItemCaseSensitive(x, "set");
    const cJSON *unset = cJSON_GetObjectItemCaseSensitive(x, "unset");
    char what[40];
    snprintf(what, sizeof what, "documents[%zu].id", i);
    if (!id)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, (long)i, "%s is required",
                                     what);
    if (!set && !unset)
        return sbert_proto_error_set(err, SBERT_PROTO_EBAD_REQUEST, (long)i,
                                     "documents[%zu] needs \"set\" or \"unset\"", i);
    int rc = sbert_proto_check_id(id, what, (long)i, p->numbufs[i], &p->items[i].id,
                                  &p->items[i].id_len, err);
    if (!rc && set) rc = patch_set(d, set, i, p, err);
    if (!rc && unset) rc = patch_unset(unset, i, p, err);
    return rc;
}

int op_prepare_patch(struct sbertd *d, struct request *r, struct sbert_proto_error *err)
{
    const cJSON *arr;
    size_t n;
    int rc =
        sbert_proto_get_array(sbertd_req_root(r), "documents", 1, LIM(MAX_BATCH), &arr, &n, err);
    if (rc) return rc;
    struct patch_prep *p = calloc(1, sizeof *p);
    if (!p) return op_oom(err);
    sbertd_req_set_prep(r, p, patch_prep_free);
    if (!(p->items = calloc(n, sizeof *p->items)) ||
        !(p->numbufs = malloc(n * sizeof *p->numbufs)) || !(p->sets = calloc(n, sizeof *p->sets)) ||
        !(p->unsets = calloc(n, sizeof *p->unsets)))
        return op_oom(err);
    p->n = n;
    size_t i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, arr)
    {
        if ((rc = patch_item(d, x, i++, p, err))) return rc;
    }
    return 0;
}

static int patch_members(cJSON *reply, const void *arg)
{
    const struct patch_prep *p = arg;
    size_t patched = 0;
    for (size_t i = 0; i < p->n; i++)
        patched += p->items[i].found != 0;
    cJSON *a = NULL;
    if (!cJSON_AddNumberToObject(reply, "patched", (double)patched) ||
        !(a = cJSON_AddArrayToObject(reply, "found")))
        return -1;
    for (size_t i = 0; i < p->n; i++)
        if (!cJSON_AddItemToArray(a, cJSON_CreateBool(p->items[i].found))) return -1;
    return 0;
}

int op_run_patch(struct sbertd *d, struct request *r, cJSON *reply, struct sbert_proto_error *err)
{
    struct patch_prep *p = sbertd_req_prep(r);
    size_t bad = 0;
    char why[512] = "";
    struct sbert_index_write_req wr;
    struct op_remember m = {r, patch_members, p};
    int irc = sbert_index_patch_req(sbertd_req_store(r), p->items, p->n, LIM(MAX_METADATA_BYTES),
                                    op_write_req(r, &wr, &m), &bad, why, sizeof why);
    if (irc)
        return op_index_error(
            irc, why, (irc == SBERT_INDEX_EID || irc == SBERT_INDEX_EMETADATA) ? (long)bad : -1,
            err);
    return patch_members(reply, p) ? op_oom(err) : 0;
}
