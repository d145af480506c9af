/*
 * openapi.c — the OpenAPI 3.0 document of the HTTP transport (PROTOCOL.md section 6), built from
 * the op table so that it lists exactly the operations and members sbertd knows.
 */
#include "sbert_proto.h"

#include <stdio.h>
#include <string.h>

/* One JSON Schema per member type (section 4's "type" column). */
static cJSON *type_schema(enum sbert_proto_mtype t)
{
    static const char *const scalar[] = {
        [SBERT_PROTO_M_STRING] = "string", [SBERT_PROTO_M_INT] = "integer",
        [SBERT_PROTO_M_NUMBER] = "number", [SBERT_PROTO_M_BOOL] = "boolean",
        [SBERT_PROTO_M_ARRAY] = "array",   [SBERT_PROTO_M_OBJECT] = "object",
    };
    static const char *const items[] = {
        [SBERT_PROTO_M_STRINGS] = "string",
        [SBERT_PROTO_M_NUMBERS] = "number",
        [SBERT_PROTO_M_OBJECTS] = "object",
    };
    cJSON *s = cJSON_CreateObject();
    if (!s) return NULL;
    if (t <= SBERT_PROTO_M_OBJECT) {
        cJSON_AddStringToObject(s, "type", scalar[t]);
    } else if (t <= SBERT_PROTO_M_OBJECTS) {
        cJSON_AddStringToObject(s, "type", "array");
        cJSON *it = cJSON_AddObjectToObject(s, "items");
        if (it) cJSON_AddStringToObject(it, "type", items[t]);
    } else if (t == SBERT_PROTO_M_VECTORS) {
        cJSON_AddStringToObject(s, "type", "array");
        cJSON *it = cJSON_AddObjectToObject(s, "items");
        cJSON *num = NULL;
        if (it && cJSON_AddStringToObject(it, "type", "array"))
            num = cJSON_AddObjectToObject(it, "items");
        if (num) cJSON_AddStringToObject(num, "type", "number");
    } else { /* string or array of strings */
        cJSON *one = cJSON_AddArrayToObject(s, "oneOf");
        cJSON *a = cJSON_CreateObject(), *b = cJSON_CreateObject();
        cJSON_AddItemToArray(one, a);
        cJSON_AddItemToArray(one, b);
        cJSON_AddStringToObject(a, "type", "string");
        cJSON_AddStringToObject(b, "type", "array");
        cJSON *it = cJSON_AddObjectToObject(b, "items");
        if (it) cJSON_AddStringToObject(it, "type", "string");
    }
    cJSON_AddStringToObject(s, "x-sbert-type", sbert_proto_mtype_name(t));
    return s;
}

static void add_member(cJSON *props, cJSON *required, const struct sbert_proto_member *m)
{
    cJSON_AddItemToObject(props, m->name, type_schema(m->type));
    if (m->required) cJSON_AddItemToArray(required, cJSON_CreateString(m->name));
}

static cJSON *ref(const char *target)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "$ref", target);
    return r;
}

static cJSON *json_content(cJSON *schema)
{
    cJSON *c = cJSON_CreateObject();
    cJSON *mt = cJSON_AddObjectToObject(c, "application/json");
    cJSON_AddItemToObject(mt, "schema", schema);
    return c;
}

/* The request schema of op over HTTP: v and op are optional there (the path names the op). */
static cJSON *request_schema(const struct sbert_proto_op *op)
{
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "type", "object");
    cJSON_AddBoolToObject(s, "additionalProperties", 0);
    cJSON *props = cJSON_AddObjectToObject(s, "properties");
    cJSON *req = cJSON_CreateArray();
    size_t ne;
    const struct sbert_proto_member *env = sbert_proto_envelope(&ne);
    for (size_t i = 0; i < ne; i++) {
        cJSON_AddItemToObject(props, env[i].name, type_schema(env[i].type));
    }
    cJSON *v = cJSON_GetObjectItemCaseSensitive(props, "v");
    if (v) cJSON_AddNumberToObject(v, "default", SBERT_PROTO_VERSION);
    cJSON *o = cJSON_GetObjectItemCaseSensitive(props, "op");
    if (o) {
        cJSON *e = cJSON_AddArrayToObject(o, "enum");
        cJSON_AddItemToArray(e, cJSON_CreateString(op->name));
    }
    int max_group = 0;
    for (size_t i = 0; i < op->n_members; i++) {
        add_member(props, req, &op->members[i]);
        if (op->members[i].one_of > max_group) max_group = op->members[i].one_of;
    }
    /* "one of": exactly one member of each group, as oneOf of single-member requirements. */
    for (int g = 1; g <= max_group; g++) {
        cJSON *one = cJSON_CreateArray();
        for (size_t i = 0; i < op->n_members; i++) {
            if (op->members[i].one_of != g) continue;
            cJSON *alt = cJSON_CreateObject();
            cJSON *r = cJSON_AddArrayToObject(alt, "required");
            cJSON_AddItemToArray(r, cJSON_CreateString(op->members[i].name));
            cJSON_AddItemToArray(one, alt);
        }
        if (max_group == 1) {
            cJSON_AddItemToObject(s, "oneOf", one);
        } else {
            cJSON *all = cJSON_GetObjectItemCaseSensitive(s, "allOf");
            if (!all) all = cJSON_AddArrayToObject(s, "allOf");
            cJSON *w = cJSON_CreateObject();
            cJSON_AddItemToObject(w, "oneOf", one);
            cJSON_AddItemToArray(all, w);
        }
    }
    if (cJSON_GetArraySize(req) > 0)
        cJSON_AddItemToObject(s, "required", req);
    else
        cJSON_Delete(req);
    return s;
}

static cJSON *responses(void)
{
    cJSON *r = cJSON_CreateObject();
    cJSON *ok = cJSON_AddObjectToObject(r, "200");
    cJSON_AddStringToObject(ok, "description", "the protocol's reply (PROTOCOL.md section 4)");
    cJSON_AddItemToObject(ok, "content", json_content(ref("#/components/schemas/Reply")));
    cJSON *e = cJSON_AddObjectToObject(r, "default");
    cJSON_AddStringToObject(e, "description",
                            "an error reply; the status follows its code (PROTOCOL.md section 6)");
    cJSON_AddItemToObject(e, "content", json_content(ref("#/components/schemas/ErrorReply")));
    return r;
}

static cJSON *op_operation(const struct sbert_proto_op *op, int with_body)
{
    cJSON *x = cJSON_CreateObject();
    char id[64];
    snprintf(id, sizeof id, "%s%s", op->name, with_body ? "" : "_get");
    cJSON_AddStringToObject(x, "operationId", id);
    cJSON_AddStringToObject(x, "summary", op->summary);
    cJSON_AddBoolToObject(x, "x-sbert-writes", op->writes);
    if (with_body) {
        cJSON *rb = cJSON_AddObjectToObject(x, "requestBody");
        cJSON_AddBoolToObject(rb, "required", 0);
        cJSON_AddItemToObject(rb, "content", json_content(request_schema(op)));
    }
    cJSON_AddItemToObject(x, "responses", responses());
    return x;
}

/* A GET route outside the protocol (the page, this document, the metrics). */
static void add_plain(cJSON *paths, const char *path, const char *summary, const char *type,
                      int auth)
{
    cJSON *p = cJSON_AddObjectToObject(paths, path);
    cJSON *g = cJSON_AddObjectToObject(p, "get");
    cJSON_AddStringToObject(g, "summary", summary);
    if (!auth) cJSON_AddArrayToObject(g, "security");
    cJSON *r = cJSON_AddObjectToObject(g, "responses");
    cJSON *ok = cJSON_AddObjectToObject(r, "200");
    cJSON_AddStringToObject(ok, "description", summary);
    cJSON *c = cJSON_AddObjectToObject(ok, "content");
    cJSON *t = cJSON_AddObjectToObject(c, type);
    cJSON *s = cJSON_AddObjectToObject(t, "schema");
    cJSON_AddStringToObject(s, "type", strcmp(type, "application/json") == 0 ? "object" : "string");
}

static cJSON *components(void)
{
    cJSON *c = cJSON_CreateObject();
    cJSON *schemas = cJSON_AddObjectToObject(c, "schemas");

    cJSON *reply = cJSON_AddObjectToObject(schemas, "Reply");
    cJSON_AddStringToObject(reply, "type", "object");
    cJSON *rp = cJSON_AddObjectToObject(reply, "properties");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(rp, "v"), "type", "integer");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(rp, "ok"), "type", "boolean");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(rp, "req_id"), "type", "string");
    cJSON *rr = cJSON_AddArrayToObject(reply, "required");
    cJSON_AddItemToArray(rr, cJSON_CreateString("v"));
    cJSON_AddItemToArray(rr, cJSON_CreateString("ok"));
    cJSON_AddBoolToObject(reply, "additionalProperties", 1);

    cJSON *er = cJSON_AddObjectToObject(schemas, "ErrorReply");
    cJSON_AddStringToObject(er, "type", "object");
    cJSON *ep = cJSON_AddObjectToObject(er, "properties");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(ep, "v"), "type", "integer");
    cJSON *okf = cJSON_AddObjectToObject(ep, "ok");
    cJSON_AddStringToObject(okf, "type", "boolean");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(okf, "enum"), cJSON_CreateFalse());
    cJSON_AddStringToObject(cJSON_AddObjectToObject(ep, "req_id"), "type", "string");
    cJSON *eo = cJSON_AddObjectToObject(ep, "error");
    cJSON_AddStringToObject(eo, "type", "object");
    cJSON *eop = cJSON_AddObjectToObject(eo, "properties");
    cJSON *code = cJSON_AddObjectToObject(eop, "code");
    cJSON_AddStringToObject(code, "type", "string");
    cJSON_AddStringToObject(code, "description",
                            "PROTOCOL.md section 5; treat an unknown code as a generic error");
    cJSON *codes = cJSON_AddArrayToObject(code, "x-known-codes");
    for (int e = SBERT_PROTO_EBAD_JSON; e > SBERT_PROTO_EUNKNOWN_CODE; e--)
        cJSON_AddItemToArray(codes, cJSON_CreateString(sbert_proto_code_name(e)));
    cJSON_AddStringToObject(cJSON_AddObjectToObject(eop, "message"), "type", "string");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(eop, "index"), "type", "integer");
    cJSON *eor = cJSON_AddArrayToObject(eo, "required");
    cJSON_AddItemToArray(eor, cJSON_CreateString("code"));
    cJSON_AddItemToArray(eor, cJSON_CreateString("message"));
    cJSON *err_req = cJSON_AddArrayToObject(er, "required");
    cJSON_AddItemToArray(err_req, cJSON_CreateString("v"));
    cJSON_AddItemToArray(err_req, cJSON_CreateString("ok"));
    cJSON_AddItemToArray(err_req, cJSON_CreateString("error"));

    cJSON *sec = cJSON_AddObjectToObject(c, "securitySchemes");
    cJSON *b = cJSON_AddObjectToObject(sec, "bearerAuth");
    cJSON_AddStringToObject(b, "type", "http");
    cJSON_AddStringToObject(b, "scheme", "bearer");
    cJSON_AddStringToObject(b, "description", "the daemon's auth_token, when one is configured");
    return c;
}

int sbert_proto_openapi(cJSON **out)
{
    *out = NULL;
    cJSON *d = cJSON_CreateObject();
    if (!d) return SBERT_PROTO_EINTERNAL;
    cJSON_AddStringToObject(d, "openapi", "3.0.3");
    cJSON *info = cJSON_AddObjectToObject(d, "info");
    cJSON_AddStringToObject(info, "title", "sbertd");
    cJSON_AddStringToObject(info, "version", "1");
    cJSON_AddStringToObject(info, "description",
                            "The sbertd protocol (proto/PROTOCOL.md) over HTTP: POST /v1/<op> "
                            "takes and returns the protocol's JSON; \"v\" and \"op\" may be "
                            "omitted from the body.");
    /* Bearer authentication when the daemon has a token, none otherwise. */
    cJSON *security = cJSON_AddArrayToObject(d, "security");
    cJSON *sb = cJSON_CreateObject();
    cJSON_AddArrayToObject(sb, "bearerAuth");
    cJSON_AddItemToArray(security, sb);
    cJSON_AddItemToArray(security, cJSON_CreateObject());

    cJSON *paths = cJSON_AddObjectToObject(d, "paths");
    size_t n;
    const struct sbert_proto_op *ops = sbert_proto_ops(&n);
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/%s", ops[i].name);
        cJSON *p = cJSON_AddObjectToObject(paths, path);
        cJSON_AddItemToObject(p, "post", op_operation(&ops[i], 1));
        if (ops[i].id == SBERT_PROTO_OP_HEALTH)
            cJSON_AddItemToObject(p, "get", op_operation(&ops[i], 0));
    }
    add_plain(paths, "/", "the search page", "text/html", 0);
    add_plain(paths, "/openapi.json", "this document", "application/json", 0);
    add_plain(paths, "/metrics", "Prometheus text format 0.0.4", "text/plain", 1);
    cJSON_AddItemToObject(d, "components", components());

    /* cJSON's builders return NULL on a failed allocation and the adders then do nothing: one
     * check of the finished document's size catches a partial one. */
    char *probe = cJSON_PrintUnformatted(d);
    if (!probe || !cJSON_GetObjectItemCaseSensitive(d, "components") ||
        cJSON_GetArraySize(paths) != (int)n + 3) {
        cJSON_free(probe);
        cJSON_Delete(d);
        return SBERT_PROTO_EINTERNAL;
    }
    cJSON_free(probe);
    *out = d;
    return 0;
}
