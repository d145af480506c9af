/* receiver.c — sbertd's side of nanomsg: the raw REP socket and its binds, the receiver thread
 * that admits or refuses each message, the reply's framing (the routing header), and the token
 * check (server.h). */
#define _GNU_SOURCE
#include "server.h"

#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>

/* ---- the socket ------------------------------------------------------------------------------ */

static int bind_all(struct sbertd *d)
{
    for (int i = 0; i < d->cfg.n_listen; i++) {
        const char *url = d->cfg.listen[i];
        int ipc = strncmp(url, "ipc://", 6) == 0;
        /* the socket file is created by bind: create it 0660 rather than chmod a window later */
        mode_t old = ipc ? umask(0117) : 0;
        d->eps[i] = nn_bind(d->sock, url);
        int e = nn_errno();
        if (ipc) umask(old);
        if (d->eps[i] < 0) {
            sbertd_log(LOG_ERR, "cannot listen on %s: %s", url, nn_strerror(e));
            return -1;
        }
        if (ipc && chmod(url + 6, 0660) != 0) {
            sbertd_log(LOG_ERR, "cannot set mode 0660 on %s: %s", url + 6, strerror(errno));
            return -1;
        }
        sbertd_log(LOG_INFO, "listening on %s", url);
    }
    return 0;
}

int sbertd_receiver_open(struct sbertd *d)
{
    d->sock = nn_socket(AF_SP_RAW, NN_REP);
    if (d->sock < 0) {
        sbertd_log(LOG_ERR, "nn_socket: %s", nn_strerror(nn_errno()));
        return -1;
    }
    /* nanomsg drops a message above NN_RCVMAXSIZE without a word (default 1 MiB): accept up to
     * twice max_message_size so that the band in between gets a too_large reply */
    uint64_t lim = 2 * d->cfg.max_message_size;
    int rcvmax = lim > INT_MAX ? INT_MAX : (int)lim;
    int rcvtimeo = 200;  /* the receiver wakes to notice a shutdown */
    int sndtimeo = 5000; /* a client that stops reading must not hold a worker forever */
    int ipv4only = 0;    /* nanomsg's default (1) cannot bind tcp://[::1], a loopback address */
    if (nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &rcvmax, sizeof rcvmax) ||
        nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_IPV4ONLY, &ipv4only, sizeof ipv4only) ||
        nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &rcvtimeo, sizeof rcvtimeo) ||
        nn_setsockopt(d->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &sndtimeo, sizeof sndtimeo)) {
        sbertd_log(LOG_ERR, "nn_setsockopt: %s", nn_strerror(nn_errno()));
        return -1;
    }
    return bind_all(d);
}

void sbertd_receiver_close(struct sbertd *d)
{
    for (int i = 0; i < d->cfg.n_listen; i++)
        if (d->eps[i] >= 0 && strncmp(d->cfg.listen[i], "ipc://", 6) == 0)
            unlink(d->cfg.listen[i] + 6);
    nn_close(d->sock);
}

/* ---- framing --------------------------------------------------------------------------------- */

void sbertd_request_free(struct request *r)
{
    if (!r) return;
    if (r->prep_free) r->prep_free(r->prep);
    sbert_proto_request_clear(&r->req);
    free(r->req_id_copy);
    if (r->http)
        free(r->body);
    else if (r->body)
        nn_freemsg(r->body);
    if (r->control) nn_freemsg(r->control);
    free(r);
}

void sbertd_receiver_send(struct sbertd *d, struct request *r, const char *buf, size_t len)
{
    if (r->http) {
        sbertd_http_deliver(r, buf, len);
        return;
    }
    struct nn_iovec iov = {(void *)buf, len};
    struct nn_msghdr h;
    memset(&h, 0, sizeof h);
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = &r->control;
    h.msg_controllen = NN_MSG;
    if (nn_sendmsg(d->sock, &h, 0) >= 0)
        r->control = NULL; /* nanomsg took the header */
    else
        sbertd_log(LOG_WARNING, "reply to a %s request not sent: %s",
                   r->op ? r->op->name : "malformed", nn_strerror(nn_errno()));
}

/* ---- auth ------------------------------------------------------------------------------------ */

/* Compares without an early exit, so the time taken does not tell how much of a guess was right. */
static int token_equal(const char *given, const char *want)
{
    size_t lg = strlen(given), lw = strlen(want);
    unsigned char diff = (unsigned char)(lg != lw);
    for (size_t i = 0; i < lw; i++)
        diff |= (unsigned char)(want[i] ^ (i < lg ? given[i] : 0));
    return diff == 0;
}

int sbertd_receiver_authorized(const struct sbertd *d, const char *token)
{
    return !d->cfg.auth_token[0] || (token && token_equal(token, d->cfg.auth_token));
}

/* ---- receiving ------------------------------------------------------------------------------- */

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void refuse(struct sbertd *d, struct request *r, int code, const char *msg)
{
    struct sbert_proto_error err;
    sbert_proto_error_set(&err, code, -1, "%s", msg);
    r->op_index = -1;
    sbertd_finish(d, r, NULL, &err);
}

void sbertd_receiver_admit(struct sbertd *d, struct request *r)
{
    r->t0_us = sbertd_now_us();
    r->op_index = -1;
    r->hash = fnv1a(r->body, r->len);
    uint64_t inflight = atomic_fetch_add(&d->in_flight, 1);
    uint64_t bytes = atomic_fetch_add(&d->inflight_bytes, r->len) + r->len;
    uint64_t max_message = sbertd_limit(d, SBERTD_LIMIT_MAX_MESSAGE_SIZE);
    char msg[160];
    if (atomic_load(&d->stopping)) {
        refuse(d, r, SBERT_PROTO_ESHUTTING_DOWN, "the daemon is shutting down");
    } else if (r->len > max_message) {
        snprintf(msg, sizeof msg, "the message has %zu bytes, more than max_message_size (%llu)",
                 r->len, (unsigned long long)max_message);
        refuse(d, r, SBERT_PROTO_ETOO_LARGE, msg);
    } else if (inflight >= sbertd_limit(d, SBERTD_LIMIT_MAX_CONCURRENT)) {
        snprintf(msg, sizeof msg, "%llu requests are in progress (max_concurrent); retry later",
                 (unsigned long long)inflight);
        refuse(d, r, SBERT_PROTO_EBUSY, msg);
    } else if (inflight > 0 && bytes > sbertd_limit(d, SBERTD_LIMIT_MAX_INFLIGHT_BYTES)) {
        /* parsed requests take a few times their size: this bounds the daemon's memory
         * under a flood of large ones (one request is always let through) */
        snprintf(msg, sizeof msg,
                 "%llu bytes of requests are in progress "
                 "(max_inflight_bytes); retry later",
                 (unsigned long long)(bytes - r->len));
        refuse(d, r, SBERT_PROTO_EBUSY, msg);
    } else
        queue_push(&d->work, r);
}

void *sbertd_receiver_main(void *arg)
{
    struct sbertd *d = arg;
    for (;;) {
        void *body = NULL, *control = NULL;
        struct nn_iovec iov = {&body, NN_MSG};
        struct nn_msghdr h;
        memset(&h, 0, sizeof h);
        h.msg_iov = &iov;
        h.msg_iovlen = 1;
        h.msg_control = &control;
        h.msg_controllen = NN_MSG;
        int rc = nn_recvmsg(d->sock, &h, 0);
        if (rc < 0) {
            int e = nn_errno();
            if (e == ETIMEDOUT || e == EAGAIN || e == EINTR) {
                if (atomic_load(&d->stopping) && atomic_load(&d->in_flight) == 0) break;
                continue;
            }
            if (e == EBADF || e == ETERM) break;
            sbertd_log(LOG_ERR, "receive failed: %s", nn_strerror(e));
            continue;
        }
        struct request *r = calloc(1, sizeof *r);
        if (!r) {
            /* Answered from the stack, so the client is not left waiting for a reply that never
             * comes; the message is not parsed (no memory), so its req_id is not echoed. */
            char oom[128];
            int n = snprintf(oom, sizeof oom,
                             "{\"v\":%d,\"ok\":false,\"error\":{\"code\":\"%s\","
                             "\"message\":\"out of memory\"}}",
                             SBERT_PROTO_VERSION, sbert_proto_code_name(SBERT_PROTO_EINTERNAL));
            struct request unread;
            memset(&unread, 0, sizeof unread);
            unread.control = control;
            sbertd_receiver_send(d, &unread, oom, (size_t)n);
            if (unread.control) nn_freemsg(unread.control);
            nn_freemsg(body);
            sbertd_log(LOG_ERR, "out of memory: a request was answered %s unread",
                       sbert_proto_code_name(SBERT_PROTO_EINTERNAL));
            continue;
        }
        r->body = body;
        r->len = (size_t)rc;
        r->control = control;
        sbertd_receiver_admit(d, r);
    }
    atomic_store(&d->receiver_alive, 0);
    return NULL;
}
