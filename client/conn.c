/* conn.c — the nanomsg REQ connection behind conn.h. */
#define _POSIX_C_SOURCE 200809L
#include "conn.h"
#include "sbert_util.h"

#include <errno.h>
#include <fcntl.h>
#include <nanomsg/nn.h>
#include <nanomsg/reqrep.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct sbc_conn {
    int sock;
    char *url;
    int timeout_ms;
};

const char *sbc_conn_strerror(int err)
{
    switch (err) {
    case SBC_CONN_OK:
        return "success";
    case SBC_CONN_ENOMEM:
        return "out of memory";
    case SBC_CONN_EINVAL:
        return "invalid endpoint";
    case SBC_CONN_EUNREACHABLE:
        return "cannot reach sbertd";
    case SBC_CONN_ETIMEOUT:
        return "no reply from sbertd";
    case SBC_CONN_ENN:
        return "nanomsg error";
    default:
        return "unknown error";
    }
}

static int probe_ipc(const char *url, const char *path, char *errbuf, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path)
        return sbert_util_errf(errbuf, errlen, SBC_CONN_EINVAL,
                               "%s: socket path longer than %zu bytes", url,
                               sizeof sa.sun_path - 1);
    struct stat st;
    if (stat(path, &st) != 0)
        return sbert_util_errf(errbuf, errlen, SBC_CONN_EUNREACHABLE,
                               "cannot reach sbertd at %s: %s (is sbertd running? set --socket or "
                               "SBERTD_SOCKET)",
                               url, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return sbert_util_errf(errbuf, errlen, SBC_CONN_EUNREACHABLE,
                               "cannot reach sbertd at %s: not a socket", url);
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return sbert_util_errf(errbuf, errlen, SBC_CONN_ENN, "socket: %s", strerror(errno));
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int e = errno;
    close(fd);
    if (r != 0)
        return sbert_util_errf(
            errbuf, errlen, SBC_CONN_EUNREACHABLE,
            "cannot reach sbertd at %s: %s (a stale socket file? is sbertd running?)", url,
            strerror(e));
    return 0;
}

/* Probes tcp://HOST:PORT with a TCP connect bounded by timeout_ms. Other tcp forms (an interface
 * before ';') are left to nanomsg. */
static int probe_tcp(const char *url, const char *hostport, int timeout_ms, char *errbuf,
                     size_t errlen)
{
    if (strchr(hostport, ';')) return 0;
    char host[256];
    const char *colon = strrchr(hostport, ':');
    if (!colon || (size_t)(colon - hostport) >= sizeof host)
        return sbert_util_errf(errbuf, errlen, SBC_CONN_EINVAL, "%s: expected tcp://HOST:PORT",
                               url);
    const char *h = hostport;
    size_t hl = (size_t)(colon - hostport);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') h++, hl -= 2;
    memcpy(host, h, hl);
    host[hl] = '\0';
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g != 0)
        return sbert_util_errf(errbuf, errlen, SBC_CONN_EUNREACHABLE,
                               "cannot reach sbertd at %s: %s", url, gai_strerror(g));
    int err = SBC_CONN_EUNREACHABLE, e = ECONNREFUSED;
    for (struct addrinfo *a = ai; a && err != 0; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            err = 0;
        } else if (errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int so = 0;
            socklen_t sl = sizeof so;
            int pr = poll(&p, 1, timeout_ms);
            if (pr == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl) == 0 && so == 0)
                err = 0;
            else
                e = pr == 0 ? ETIMEDOUT : so;
        } else {
            e = errno;
        }
        close(fd);
    }
    freeaddrinfo(ai);
    if (err)
        return sbert_util_errf(errbuf, errlen, err, "cannot reach sbertd at %s: %s", url,
                               strerror(e));
    return 0;
}

static int nn_fail(int err, const char *what, const char *url, char *errbuf, size_t errlen)
{
    return sbert_util_errf(errbuf, errlen, err, "%s %s: %s", what, url, nn_strerror(nn_errno()));
}

static int set_timeout(sbc_conn *c, int timeout_ms)
{
    /* Re-sending is left to reconnects: the interval is past the point where we give up. */
    int resend = timeout_ms > 0 && timeout_ms < 0x3fffffff ? timeout_ms * 2 : 0x7fffffff;
    if (nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_SNDTIMEO, &timeout_ms, sizeof timeout_ms) < 0 ||
        nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RCVTIMEO, &timeout_ms, sizeof timeout_ms) < 0 ||
        nn_setsockopt(c->sock, NN_REQ, NN_REQ_RESEND_IVL, &resend, sizeof resend) < 0)
        return SBC_CONN_ENN;
    c->timeout_ms = timeout_ms;
    return 0;
}

int sbc_conn_open(const char *url, int timeout_ms, size_t max_message, sbc_conn **out, char *errbuf,
                  size_t errlen)
{
    *out = NULL;
    if (!url || !*url || timeout_ms <= 0 || max_message == 0 || max_message > 0x7fffffff)
        return sbert_util_errf(errbuf, errlen, SBC_CONN_EINVAL, "invalid endpoint or limits");
    int r = 0;
    if (strncmp(url, "ipc://", 6) == 0)
        r = probe_ipc(url, url + 6, errbuf, errlen);
    else if (strncmp(url, "tcp://", 6) == 0)
        r = probe_tcp(url, url + 6, timeout_ms, errbuf, errlen);
    else if (!strstr(url, "://"))
        return sbert_util_errf(errbuf, errlen, SBC_CONN_EINVAL,
                               "%s: not an endpoint URL (expected ipc://PATH or tcp://HOST:PORT)",
                               url);
    if (r < 0) return r;

    sbc_conn *c = calloc(1, sizeof *c);
    if (!c || !(c->url = strdup(url))) {
        free(c);
        return SBC_CONN_ENOMEM;
    }
    c->sock = nn_socket(AF_SP, NN_REQ);
    if (c->sock < 0) {
        r = nn_fail(SBC_CONN_ENN, "socket for", url, errbuf, errlen);
        free(c->url);
        free(c);
        return r;
    }
    int maxsz = (int)max_message, linger = 0;
    if (nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &maxsz, sizeof maxsz) < 0 ||
        nn_setsockopt(c->sock, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof linger) < 0 ||
        set_timeout(c, timeout_ms) < 0) {
        r = nn_fail(SBC_CONN_ENN, "options for", url, errbuf, errlen);
        goto err;
    }
    if (nn_connect(c->sock, url) < 0) {
        r = nn_fail(nn_errno() == EINVAL ? SBC_CONN_EINVAL : SBC_CONN_ENN, "connect to", url,
                    errbuf, errlen);
        goto err;
    }
    *out = c;
    return 0;
err:
    sbc_conn_close(c);
    return r;
}

int sbc_conn_call(sbc_conn *c, const char *req, size_t len, char **reply, size_t *reply_len,
                  char *errbuf, size_t errlen)
{
    *reply = NULL;
    *reply_len = 0;
    if (nn_send(c->sock, req, len, 0) < 0) {
        if (nn_errno() == ETIMEDOUT)
            return sbert_util_errf(errbuf, errlen, SBC_CONN_ETIMEOUT,
                                   "cannot send to sbertd at %s within %d ms", c->url,
                                   c->timeout_ms);
        return nn_fail(SBC_CONN_ENN, "send to", c->url, errbuf, errlen);
    }
    void *msg = NULL;
    int n = nn_recv(c->sock, &msg, NN_MSG, 0);
    if (n < 0) {
        if (nn_errno() == ETIMEDOUT)
            return sbert_util_errf(errbuf, errlen, SBC_CONN_ETIMEOUT,
                                   "no reply from sbertd at %s within %.1f s (is it running and "
                                   "reachable? a longer --timeout may help)",
                                   c->url, c->timeout_ms / 1000.0);
        return nn_fail(SBC_CONN_ENN, "receive from", c->url, errbuf, errlen);
    }
    char *copy = malloc((size_t)n + 1);
    if (!copy) {
        nn_freemsg(msg);
        return SBC_CONN_ENOMEM;
    }
    memcpy(copy, msg, (size_t)n);
    copy[n] = '\0';
    nn_freemsg(msg);
    *reply = copy;
    *reply_len = (size_t)n;
    return 0;
}

void sbc_conn_close(sbc_conn *c)
{
    if (!c) return;
    nn_close(c->sock);
    free(c->url);
    free(c);
}
