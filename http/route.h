/*
 * route.h — private to http/: the mapping of an HTTP request to a protocol request, and of a
 * protocol reply to an HTTP status (PROTOCOL.md section 6). No I/O and no libmicrohttpd here, so
 * that tests/fuzz/fuzz_http.c can drive it byte by byte.
 *
 * Thread safety: no shared state; every function is reentrant.
 */
#ifndef SBERT_HTTP_ROUTE_H
#define SBERT_HTTP_ROUTE_H

#include <stddef.h>

#include "sbert_proto.h"

/* What a request line names. */
enum http_route_kind {
    HTTP_ROUTE_NONE,    /* no such path: 404 */
    HTTP_ROUTE_OP,      /* /v1/<op>: route.op */
    HTTP_ROUTE_PAGE,    /* / */
    HTTP_ROUTE_OPENAPI, /* /openapi.json */
    HTTP_ROUTE_METRICS, /* /metrics */
};

struct http_route {
    enum http_route_kind kind;
    const struct sbert_proto_op *op; /* HTTP_ROUTE_OP only (static, from the op table) */
    int method_ok;     /* 0: the path exists but not for this method: 405 with allow */
    const char *allow; /* the Allow header of the path, static; NULL for HTTP_ROUTE_NONE */
    int has_body;      /* 1: the method carries a protocol request (POST /v1/<op>) */
};

/* Matches method and path (the URL without the query string, as libmicrohttpd hands it). HEAD
 * is accepted wherever GET is. Never fails: an unknown path is HTTP_ROUTE_NONE, an unknown op
 * under /v1/ too (the caller answers unknown_op). */
void http_route_match(const char *method, const char *path, struct http_route *r);

/*
 * Builds the protocol request for op from an HTTP body of len bytes (len 0: "{}"; body may be
 * NULL then): the body must be one JSON object; "op" may be missing (op's name is added) but when
 * present (every occurrence) must be the string op->name; "v" is added as 1 when missing; "token"
 * is added when token is not NULL and the body has none. Everything else is the body's own bytes,
 * untouched, for the daemon's parser to judge (the members are spliced in after the opening
 * brace: nothing is re-serialised, so a number or an escape means what the client wrote).
 * On success returns 0 with *out a malloc'd NUL-terminated request of *out_len bytes (the caller
 * frees it). Else a protocol error code with err filled: bad_utf8 or bad_json for a body that is
 * not a JSON object, bad_request for an op that disagrees with the path, internal (no memory).
 */
int http_request_build(const struct sbert_proto_op *op, const char *body, size_t len,
                       const char *token, char **out, size_t *out_len,
                       struct sbert_proto_error *err);

/* The HTTP status of a protocol error code (SBERT_PROTO_E*; 0 is 200): PROTOCOL.md section 6's
 * table. A code this version does not know is 500. *retry_after_s (may be NULL) receives the
 * Retry-After seconds to send, 0 for none. */
unsigned http_status_of_code(int code, unsigned *retry_after_s);

/* The status of a protocol reply of len bytes: 200 for "ok": true, else that of its error code
 * (a reply that does not parse as one: 500). *retry_after_s as for http_status_of_code(). */
unsigned http_status_of_reply(const char *reply, size_t len, unsigned *retry_after_s);

/* 1 when header (an Authorization value, may be NULL) is "Bearer <token>" (the scheme in any
 * case), compared in time that does not depend on where token and the header differ. */
int http_bearer_ok(const char *header, const char *token, size_t token_len);

/* 1 when host (a Host header value: name or address, optional :port, [v6]) is loopback:
 * "localhost", 127.0.0.0/8 or ::1. NULL is not. */
int http_host_is_loopback(const char *host);

/* Builds a protocol error reply {"v":1,"ok":false,"error":{...}} of code with message msg.
 * Returns 0 with *out malloc'd (*out_len bytes), or SBERT_PROTO_EINTERNAL. */
int http_error_json(int code, const char *msg, char **out, size_t *out_len);

#endif
