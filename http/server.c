/*
 * server.c — the libmicrohttpd daemon: connections, bodies, authentication, and the responses of
 * every route (PROTOCOL.md section 6). The mapping itself is route.c's and status.c's.
 */
#include "sbert_http.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "listen.h"
#include "page.h"
#include "route.h"
#include "sbert_proto.h"
#include "sbert_util.h"

/* One connection, from accept to close, for the header deadline (slowloris). */
struct http_conn {
    int fd;
    int in_request;   /* 1 from the complete headers of a request to its completion */
    int cut;          /* shut down by the reaper */
    int linked;       /* in the server's list (under its mu) */
    double since;     /* when the current header clock started (monotonic seconds) */
    double allowance; /* seconds the headers may take from since */
    struct http_conn *prev, *next;
};

/* One request, from its headers to its response. */
struct http_req {
    struct http_route route;
    char *body; /* owned, len bytes of cap */
    size_t len, cap;
    int too_large;  /* the body passed max_body_bytes while it was read */
    size_t dropped; /* bytes of such a body read (kept or dropped) */
    int no_memory;  /* the body could not be kept: answered busy once it is read */
    int answered;   /* a response was queued before the body was read */
};

struct sbert_http {
    struct MHD_Daemon *mhd;
    sbert_http_handle_fn handle;
    sbert_http_metrics_fn metrics;
    sbert_http_log_fn log;
    void *user;
    int allow_remote;
    size_t max_body;
    char *token; /* owned; NULL: none */
    size_t token_len;
    char *openapi; /* owned, the printed document */
    size_t openapi_len;
    unsigned port;
    unsigned timeout_s, header_deadline_s;

    /* The reaper thread and the connections it watches, under mu. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stopping;
    int reaper_started;
    pthread_t reaper;
    struct http_conn *conns;
};

const char *sbert_http_strerror(int err)
{
    switch (err) {
    case SBERT_HTTP_OK:
        return "success";
    case SBERT_HTTP_EINVAL:
        return "invalid HTTP parameters";
    case SBERT_HTTP_EREMOTE:
        return "a non-loopback HTTP address without allow_remote";
    case SBERT_HTTP_ESOCKET:
        return "cannot listen on the HTTP address";
    case SBERT_HTTP_EMHD:
        return "libmicrohttpd could not start";
    case SBERT_HTTP_ENOMEM:
        return "out of memory";
    default:
        return "unknown HTTP error";
    }
}

struct sbert_http_params sbert_http_default_params(void)
{
    struct sbert_http_params p = {0};
    p.address = "127.0.0.1:8780";
    p.listen_fd = -1;
    p.max_body_bytes = SBERT_PROTO_DEFAULT_MAX_MESSAGE_SIZE;
    p.max_connections = 256;
    p.timeout_s = 30;
    p.header_deadline_s = 10;
    return p;
}

unsigned sbert_http_port(const struct sbert_http *h)
{
    return h->port;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- logging and connections ----------------------------------------------------------------- */

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct sbert_http *h = cls;
    if (!h->log) return;
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* libmicrohttpd 0.9.75 says this at every start although the logger is its first option
     * (systemd-journal-remote's logs show it too): noise, not news. */
    if (strstr(msg, "MHD_OPTION_EXTERNAL_LOGGER is not the first option")) return;
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    h->log(4, msg, h->user);
}

/* libmicrohttpd notifies NOTIFY_CLOSED before it closes the socket (a connection's thread at its
 * end, MHD_cleanup_connections in the polling modes), so a connection leaves the list, under mu,
 * while its fd is still its own: the reaper never shuts down a number that was reused. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct sbert_http *h = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct http_conn *k = calloc(1, sizeof *k);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = k;
        if (!k || !ci) return; /* not watched: the idle timeout still applies */
        k->fd = ci->connect_fd;
        k->since = now_s();
        k->allowance = h->header_deadline_s;
        pthread_mutex_lock(&h->mu);
        k->linked = 1;
        k->next = h->conns;
        if (h->conns) h->conns->prev = k;
        h->conns = k;
        pthread_mutex_unlock(&h->mu);
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct http_conn *k = *socket_context;
        if (!k) return;
        pthread_mutex_lock(&h->mu);
        if (k->linked) {
            if (k->prev)
                k->prev->next = k->next;
            else
                h->conns = k->next;
            if (k->next) k->next->prev = k->prev;
        }
        pthread_mutex_unlock(&h->mu);
        free(k);
        *socket_context = NULL;
    }
}

static struct http_conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void conn_set_in_request(struct sbert_http *h, struct MHD_Connection *c, int in)
{
    struct http_conn *k = conn_of(c);
    if (!k) return;
    pthread_mutex_lock(&h->mu);
    k->in_request = in;
    if (!in) {
        /* The next request on a kept-alive connection may idle first (timeout_s) and then has
         * the header deadline to send its headers. */
        k->since = now_s();
        k->allowance = (double)h->timeout_s + h->header_deadline_s;
    }
    pthread_mutex_unlock(&h->mu);
}

/* Shuts down connections whose headers are overdue: libmicrohttpd's timeout counts idle time
 * only, which a client trickling one byte a second never reaches. shutdown() (not close) leaves
 * the fd to libmicrohttpd, whose next read sees the end and closes the connection. */
static void *reaper_main(void *arg)
{
    struct sbert_http *h = arg;
    pthread_mutex_lock(&h->mu);
    while (!h->stopping) {
        double t = now_s();
        for (struct http_conn *k = h->conns; k; k = k->next) {
            if (!k->in_request && !k->cut && t - k->since > k->allowance) {
                shutdown(k->fd, SHUT_RDWR);
                k->cut = 1;
                sbert_util_logf(h->log, h->user, 6,
                                "http: closed a connection whose request headers took over %.0f s",
                                k->allowance);
            }
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&h->cv, &h->mu, &ts);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* ---- responses --------------------------------------------------------------------------------
 */

/* Queues a response of len bytes taken from buf (malloc'd; freed by libmicrohttpd, or here). */
static enum MHD_Result respond(struct MHD_Connection *c, unsigned status, char *buf, size_t len,
                               const char *type, const char *allow, unsigned retry_after_s)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    /* The page's script and the API are same-origin; nothing here is to be framed or sniffed. */
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (retry_after_s) {
        char ra[16];
        snprintf(ra, sizeof ra, "%u", retry_after_s);
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"sbertd\"");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

/* An error reply of the protocol (code, msg) with the given status (0: the table's). */
static enum MHD_Result respond_error(struct MHD_Connection *c, unsigned status, int code,
                                     const char *msg, const char *allow)
{
    char *buf;
    size_t len;
    unsigned retry = 0;
    unsigned table_status = http_status_of_code(code, &retry);
    if (http_error_json(code, msg, &buf, &len) != 0) return MHD_NO;
    return respond(c, status ? status : table_status, buf, len, "application/json", allow, retry);
}

static enum MHD_Result respond_static(struct MHD_Connection *c, const char *data, size_t len,
                                      const char *type)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ok;
}

/* Runs one protocol request and queues its reply with the status of its code. */
static enum MHD_Result respond_op(struct sbert_http *h, struct MHD_Connection *c,
                                  struct http_req *q)
{
    char *json = NULL, *reply = NULL;
    size_t json_len = 0, reply_len = 0;
    struct sbert_proto_error e;
    int rc = http_request_build(q->route.op, q->body, q->len, h->token, &json, &json_len, &e);
    if (rc != 0) return respond_error(c, 0, rc, e.message, NULL);
    rc = h->handle(json, json_len, &reply, &reply_len, h->user);
    free(json);
    if (rc != 0 || !reply)
        return respond_error(c, 0, SBERT_PROTO_EINTERNAL, "the daemon gave no reply", NULL);
    unsigned retry = 0;
    unsigned status = http_status_of_reply(reply, reply_len, &retry);
    return respond(c, status, reply, reply_len, "application/json", NULL, retry);
}

static enum MHD_Result respond_metrics(struct sbert_http *h, struct MHD_Connection *c)
{
    char *text = NULL;
    if (h->metrics(&text, h->user) != 0 || !text) {
        free(text);
        return respond_error(c, 0, SBERT_PROTO_EINTERNAL, "the metrics could not be gathered",
                             NULL);
    }
    return respond(c, 200, text, strlen(text), "text/plain; version=0.0.4; charset=utf-8", NULL, 0);
}

/* ---- requests ---------------------------------------------------------------------------------
 */

/* "application/json", with parameters (charset) or not. Requiring it keeps other sites' pages
 * out: a browser sends a cross-origin application/json POST only after a CORS preflight, which
 * this server never grants, whereas a form or text/plain POST needs none. */
static int is_json_type(const char *type)
{
    if (!type) return 0;
    while (*type == ' ')
        type++;
    size_t n = strlen("application/json");
    return strncasecmp(type, "application/json", n) == 0 &&
           (type[n] == '\0' || type[n] == ';' || type[n] == ' ');
}

/* The checks made once the headers are in, before any of the body is read. Returns 1 when it
 * queued a response (or failed to: *result says), 0 when the request goes on. */
static int check_headers(struct sbert_http *h, struct MHD_Connection *c, struct http_req *q,
                         enum MHD_Result *result)
{
    *result = MHD_YES;
    if (!h->allow_remote &&
        !http_host_is_loopback(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"))) {
        *result = respond_error(c, 403, SBERT_PROTO_EBAD_REQUEST,
                                "the Host header is not a loopback name (this server is "
                                "loopback-only)",
                                NULL);
        return 1;
    }
    int public_route = q->route.kind == HTTP_ROUTE_PAGE || q->route.kind == HTTP_ROUTE_OPENAPI;
    if (h->token && !public_route &&
        !http_bearer_ok(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"), h->token,
                        h->token_len)) {
        *result = respond_error(c, 0, SBERT_PROTO_EUNAUTHORIZED,
                                "missing or wrong \"Authorization: Bearer\" token", NULL);
        return 1;
    }
    if (q->route.kind == HTTP_ROUTE_NONE) {
        *result = respond_error(c, 404, SBERT_PROTO_EUNKNOWN_OP,
                                "no such route (POST /v1/<op>; see GET /openapi.json)", NULL);
        return 1;
    }
    if (!q->route.method_ok) {
        *result = respond_error(c, 405, SBERT_PROTO_EBAD_REQUEST, "method not allowed here",
                                q->route.allow);
        return 1;
    }
    if (!q->route.has_body) return 0;
    if (!is_json_type(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type"))) {
        *result = respond_error(c, 415, SBERT_PROTO_EBAD_REQUEST,
                                "the body must be Content-Type: application/json", NULL);
        return 1;
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || n > h->max_body) {
            char msg[128];
            snprintf(msg, sizeof msg, "the body exceeds max_message_size (%zu bytes)", h->max_body);
            *result = respond_error(c, 0, SBERT_PROTO_ETOO_LARGE, msg, NULL);
            return 1;
        }
        /* Reserved up to 1 MiB ahead: an announced length costs memory only as bytes arrive,
         * so idle connections that promise 64 MiB hold little. */
        size_t reserve = n < (1u << 20) ? (size_t)n : (1u << 20);
        if (reserve > 0) {
            q->body = malloc(reserve + 1);
            if (!q->body) {
                *result = respond_error(c, 0, SBERT_PROTO_EBUSY, "out of memory", NULL);
                return 1;
            }
            q->cap = reserve + 1;
        }
    }
    return 0;
}

/* Appends n bytes of body; 0, -1 when the body passed max_body_bytes, -2 when memory ran out. */
static int append_body(struct sbert_http *h, struct http_req *q, const char *data, size_t n)
{
    if (n > h->max_body - q->len) return -1;
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < q->len + n + 1)
            cap = cap > h->max_body / 2 ? h->max_body + 1 : cap * 2;
        char *b = realloc(q->body, cap);
        if (!b) return -2;
        q->body = b;
        q->cap = cap;
    }
    memcpy(q->body + q->len, data, n);
    q->len += n;
    return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    (void)version;
    struct sbert_http *h = cls;
    struct http_req *q = *req_cls;
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q) return MHD_NO;
        *req_cls = q;
        conn_set_in_request(h, c, 1);
        http_route_match(method, url, &q->route);
        enum MHD_Result result;
        if (check_headers(h, c, q, &result)) {
            q->answered = 1;
            return result;
        }
        return MHD_YES;
    }
    if (q->answered) {
        *upload_data_size = 0; /* a body after an early answer is read and dropped */
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (q->too_large || q->no_memory) {
            /* libmicrohttpd 0.9.75 takes no response in the middle of a body: the rest of it is
             * read and dropped, up to twice max_body_bytes in all (the protocol's band of
             * 2 x max_message_size, section 1); a body longer than that is cut off without a
             * reply, as nanomsg does. */
            q->dropped += n;
            int past_band = q->dropped > h->max_body && q->dropped - h->max_body > h->max_body;
            return past_band ? MHD_NO : MHD_YES;
        }
        int rc = append_body(h, q, upload_data, n);
        if (rc != 0) {
            q->too_large = rc == -1;
            q->no_memory = rc == -2;
            q->dropped = q->len + n;
            free(q->body);
            q->body = NULL;
            q->len = q->cap = 0;
        }
        return MHD_YES;
    }
    if (q->no_memory)
        return respond_error(c, 0, SBERT_PROTO_EBUSY, "out of memory for the body", NULL);
    if (q->too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "the body exceeds max_message_size (%zu bytes)", h->max_body);
        return respond_error(c, 0, SBERT_PROTO_ETOO_LARGE, msg, NULL);
    }
    switch (q->route.kind) {
    case HTTP_ROUTE_OP:
        return respond_op(h, c, q);
    case HTTP_ROUTE_PAGE:
        return respond_static(c, http_page, http_page_len, "text/html; charset=utf-8");
    case HTTP_ROUTE_OPENAPI:
        return respond_static(c, h->openapi, h->openapi_len, "application/json");
    case HTTP_ROUTE_METRICS:
        if (!h->metrics)
            return respond_error(c, 404, SBERT_PROTO_EUNKNOWN_OP, "no metrics configured", NULL);
        return respond_metrics(h, c);
    case HTTP_ROUTE_NONE:
        break;
    }
    return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    struct sbert_http *h = cls;
    struct http_req *q = *req_cls;
    if (q) {
        free(q->body);
        free(q);
        *req_cls = NULL;
    }
    conn_set_in_request(h, c, 0);
}

/* ---- start and stop ---------------------------------------------------------------------------
 */

static void free_server(struct sbert_http *h)
{
    free(h->token);
    free(h->openapi);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

int sbert_http_start(const struct sbert_http_params *p, struct sbert_http **out, char *err,
                     size_t errlen)
{
    *out = NULL;
    int fd = p ? p->listen_fd : -1;
    int rc;
    if (!p || !p->handle || p->max_body_bytes == 0 || p->max_connections == 0) {
        rc = sbert_util_errf(err, errlen, SBERT_HTTP_EINVAL,
                             "HTTP parameters need handle, max_body_bytes and max_connections");
        goto fail_fd;
    }
    struct sbert_http *h = calloc(1, sizeof *h);
    if (!h) {
        rc = sbert_util_errf(err, errlen, SBERT_HTTP_ENOMEM, "out of memory");
        goto fail_fd;
    }
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->handle = p->handle;
    h->metrics = p->metrics;
    h->log = p->log;
    h->user = p->user;
    h->allow_remote = p->allow_remote;
    h->max_body = p->max_body_bytes;
    h->timeout_s = p->timeout_s;
    h->header_deadline_s = p->header_deadline_s;
    if (p->token && p->token[0]) {
        h->token = strdup(p->token);
        h->token_len = strlen(p->token);
    }
    cJSON *doc = NULL;
    if ((p->token && p->token[0] && !h->token) || sbert_proto_openapi(&doc) != 0 ||
        sbert_proto_print(doc, &h->openapi, &h->openapi_len) != 0) {
        cJSON_Delete(doc);
        free_server(h);
        rc = sbert_util_errf(err, errlen, SBERT_HTTP_ENOMEM, "out of memory");
        goto fail_fd;
    }
    cJSON_Delete(doc);

    if (fd >= 0)
        rc = http_listen_check(fd, p->allow_remote, &h->port, err, errlen);
    else
        rc = http_listen_open(p->address, p->allow_remote, &fd, &h->port, err, errlen);
    if (rc != 0) {
        free_server(h);
        goto fail_fd;
    }

    unsigned flags = MHD_USE_ERROR_LOG | MHD_USE_INTERNAL_POLLING_THREAD;
    /* poll/epoll rather than select: no FD_SETSIZE ceiling on descriptor numbers. */
    flags |= p->threads == 0 ? MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL : MHD_USE_EPOLL;
    struct MHD_OptionItem pool[] = {
        {p->threads ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, p->threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,                       //
                              MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,                  //
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,                 //
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)p->max_connections, //
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)p->timeout_s,     //
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,            //
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,              //
                              MHD_OPTION_ARRAY, pool,                                    //
                              MHD_OPTION_END);
    if (!h->mhd) {
        free_server(h);
        rc = sbert_util_errf(err, errlen, SBERT_HTTP_EMHD,
                             "libmicrohttpd could not start on port %u (see the log)", 0u);
        goto fail_fd;
    }
    if (p->header_deadline_s > 0) {
        if (pthread_create(&h->reaper, NULL, reaper_main, h) != 0) {
            MHD_stop_daemon(h->mhd);
            free_server(h);
            close(fd);
            return sbert_util_errf(err, errlen, SBERT_HTTP_ENOMEM, "cannot start a thread");
        }
        h->reaper_started = 1;
    }
    *out = h;
    return 0;

fail_fd:
    if (fd >= 0) close(fd);
    return rc;
}

void sbert_http_stop(struct sbert_http *h)
{
    if (!h) return;
    if (h->reaper_started) {
        pthread_mutex_lock(&h->mu);
        h->stopping = 1;
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->reaper, NULL);
    }
    /* Closes the listening socket and every connection, joining their threads. */
    MHD_stop_daemon(h->mhd);
    free_server(h);
}
