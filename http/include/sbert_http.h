/*
 * sbert_http.h — the protocol of proto/PROTOCOL.md carried over HTTP/1.1 (PROTOCOL.md section 6),
 * with a search page, the OpenAPI document and Prometheus metrics, on libmicrohttpd.
 *
 * The library owns nothing of the daemon: it turns an HTTP request into one protocol request
 * (JSON text), hands it to the caller's handle() callback, and turns the protocol reply into an
 * HTTP response whose status comes from the reply's error code (one table, section 6).
 *
 *     struct sbert_http_params p = sbert_http_default_params();
 *     p.address = "127.0.0.1:8780";
 *     p.handle = my_handle;             // executes one protocol request
 *     p.user = my_daemon;
 *     struct sbert_http *h;
 *     char err[256];
 *     if (sbert_http_start(&p, &h, err, sizeof err) != 0) ... err says why ...
 *     ...
 *     sbert_http_stop(h);
 *
 * Errors: functions that can fail return 0 or a negative SBERT_HTTP_E* code and, where they take
 * one, write a sentence into err (errlen bytes, always NUL-terminated) with the system's or
 * libmicrohttpd's text. sbert_http_strerror() describes a code.
 *
 * Threading: by default (threads = 0) every connection has its own thread, so handle() may block
 * for as long as the request takes (a reindex on one connection never delays a health check on
 * another); with threads > 0 a pool of that many threads polls all connections, and a blocking
 * handle() delays the other connections of its thread. handle() and metrics() are called from
 * those threads, concurrently: they must be thread-safe. No callback is running or called once
 * sbert_http_stop() has returned.
 *
 * This library never prints and never exits: libmicrohttpd's own messages go to params.log.
 */
#ifndef SBERT_HTTP_H
#define SBERT_HTTP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
    SBERT_HTTP_OK = 0,
    SBERT_HTTP_EINVAL = -1,  /* a parameter is missing or malformed (address, limits, callback) */
    SBERT_HTTP_EREMOTE = -2, /* a non-loopback address without allow_remote */
    SBERT_HTTP_ESOCKET = -3, /* the address could not be resolved, bound or listened on */
    SBERT_HTTP_EMHD = -4,    /* libmicrohttpd refused to start */
    SBERT_HTTP_ENOMEM = -5,
};

/* Returns a static description of err; never NULL. */
const char *sbert_http_strerror(int err);

/*
 * Executes one protocol request: json is a complete request message of len bytes (PROTOCOL.md
 * section 2, with "v" and "op" filled in from the path, and "token" from the Authorization header
 * when a token is configured and the body has none), NUL-terminated, borrowed for the call.
 * Returns 0 with *reply a malloc'd protocol reply of *reply_len bytes, which the library takes
 * and frees; any other return value means "no reply" and the client gets 500 with an internal
 * error reply (nothing in *reply is read then).
 */
typedef int (*sbert_http_handle_fn)(const char *json, size_t len, char **reply, size_t *reply_len,
                                    void *user);

/* Returns 0 with *text a malloc'd NUL-terminated Prometheus text exposition (format 0.0.4), which
 * the library takes and frees; any other value gives 500. */
typedef int (*sbert_http_metrics_fn)(char **text, void *user);

/* The log callback (sbert_util_log_fn's shape): level is syslog's (3 error .. 7 debug), msg is
 * valid only during the call. */
typedef void (*sbert_http_log_fn)(int level, const char *msg, void *user);

struct sbert_http_params {
    /* "HOST:PORT" or "[V6]:PORT"; HOST may be a name. Port 0 picks a free port
     * (sbert_http_port()). Ignored when listen_fd >= 0. Borrowed for the call. */
    const char *address;
    /* An already bound, listening TCP socket (systemd socket activation: sd_listen_fds()), or -1.
     * The library takes it on every return of sbert_http_start(), success or failure: it is
     * closed by sbert_http_stop() or before a failing start returns. */
    int listen_fd;
    /* 0: refuse an address (or listen_fd) that is not loopback (127.0.0.0/8, ::1, "localhost"),
     * and answer 403 to a request whose Host header is not a loopback name (a web page that a
     * DNS name rebound to 127.0.0.1 must not reach the daemon). 1: any address, any Host. */
    int allow_remote;
    /* NULL or "": no authentication. Else every request needs "Authorization: Bearer <token>"
     * (compared in constant time; 401 otherwise), and requests reach handle() with it as
     * "token" (the daemon's auth_token must be the same). Copied by sbert_http_start(). */
    const char *token;
    size_t max_body_bytes;         /* the protocol's max_message_size: larger bodies get 413 */
    unsigned max_connections;      /* more are refused at accept */
    unsigned timeout_s;            /* a connection idle (no byte received) this long is closed */
    unsigned header_deadline_s;    /* a request whose headers are not all in after this long is
                                      cut off, trickling or not (slowloris); 0: none */
    unsigned threads;              /* 0: a thread per connection; N: a pool of N polling threads */
    sbert_http_handle_fn handle;   /* required */
    sbert_http_metrics_fn metrics; /* NULL: GET /metrics is 404 */
    sbert_http_log_fn log;         /* NULL: messages are dropped */
    void *user;                    /* passed to every callback */
};

/* Returns the defaults: address "127.0.0.1:8780", listen_fd -1, allow_remote 0, no token,
 * max_body_bytes SBERT_PROTO_DEFAULT_MAX_MESSAGE_SIZE (96 MiB), max_connections 256, timeout_s 30,
 * header_deadline_s 10, threads 0, and no callbacks. */
struct sbert_http_params sbert_http_default_params(void);

/* The server. Opaque. */
struct sbert_http;

/*
 * Checks p, binds p->address (or takes p->listen_fd), builds the OpenAPI document and starts
 * serving. On success returns 0 and *out is the server, released with sbert_http_stop(); on
 * failure returns an SBERT_HTTP_E* code, *out is NULL and err says why. p and everything it
 * points to are borrowed for the call, except user, which must outlive the server.
 */
int sbert_http_start(const struct sbert_http_params *p, struct sbert_http **out, char *err,
                     size_t errlen);

/* The TCP port the server listens on (the chosen one when the address had port 0). */
unsigned sbert_http_port(const struct sbert_http *h);

/* Stops accepting, closes every connection, waits for the callbacks in progress to return and
 * frees h. NULL is allowed. */
void sbert_http_stop(struct sbert_http *h);

#ifdef __cplusplus
}
#endif

#endif
