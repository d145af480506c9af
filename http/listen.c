/*
 * listen.c — the listening socket: bound here from "host:port", or taken from systemd, and held
 * to the loopback rule (PROTOCOL.md sections 1 and 6).
 */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sbert_http.h"
#include "sbert_util.h"

static int addr_is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
    }
    return 0;
}

/* Splits "host:port" or "[v6]:port" into host and port. */
static int split_address(const char *address, char *host, size_t hostlen, char *port,
                         size_t portlen)
{
    const char *colon = strrchr(address, ':');
    if (!colon || colon == address || colon[1] == '\0') return -1;
    const char *h = address;
    size_t n = (size_t)(colon - address);
    if (h[0] == '[') {
        if (n < 3 || h[n - 1] != ']') return -1;
        h++;
        n -= 2;
    } else if (memchr(h, ':', n)) {
        return -1; /* a bare IPv6 address: ambiguous, must be bracketed */
    }
    if (n >= hostlen || strlen(colon + 1) >= portlen) return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    strcpy(port, colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9') return -1;
    return 0;
}

/* Checks the bound address of fd against allow_remote and returns its port in *port. */
static int check_bound(int fd, int allow_remote, unsigned *port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return sbert_util_errf(err, errlen, SBERT_HTTP_ESOCKET, "getsockname: %s", strerror(errno));
    int listening = 0;
    socklen_t il = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &il) != 0 || !listening)
        return sbert_util_errf(err, errlen, SBERT_HTTP_EINVAL,
                               "the socket handed over is not listening");
    if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
        return sbert_util_errf(err, errlen, SBERT_HTTP_EINVAL,
                               "the socket handed over is not TCP over IPv4 or IPv6");
    char name[INET6_ADDRSTRLEN + 8] = "?";
    const void *a = ss.ss_family == AF_INET
                        ? (const void *)&((struct sockaddr_in *)&ss)->sin_addr
                        : (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
    inet_ntop(ss.ss_family, a, name, sizeof name);
    *port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                          : ((struct sockaddr_in6 *)&ss)->sin6_port);
    if (!allow_remote && !addr_is_loopback(&ss))
        return sbert_util_errf(err, errlen, SBERT_HTTP_EREMOTE,
                               "refusing to serve HTTP on %s: not a loopback address (set "
                               "allow_remote to allow it, and a token)",
                               name);
    return 0;
}

int http_listen_open(const char *address, int allow_remote, int *fd_out, unsigned *port, char *err,
                     size_t errlen)
{
    *fd_out = -1;
    char host[256], portstr[16];
    if (!address || split_address(address, host, sizeof host, portstr, sizeof portstr) != 0)
        return sbert_util_errf(err, errlen, SBERT_HTTP_EINVAL,
                               "HTTP address \"%s\" is not HOST:PORT or [V6]:PORT",
                               address ? address : "(null)");
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int g = getaddrinfo(host, portstr, &hints, &res);
    if (g != 0)
        return sbert_util_errf(err, errlen, SBERT_HTTP_ESOCKET, "cannot resolve %s: %s", host,
                               gai_strerror(g));
    /* The first address is the one bound; a name's loopback status is that of what it resolved
     * to, checked on the bound socket below. */
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return sbert_util_errf(err, errlen, SBERT_HTTP_ESOCKET, "socket: %s", strerror(errno));
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (res->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    /* The loopback rule is checked on the address before bind, so that a refused address is
     * never bound even for a moment. */
    struct sockaddr_storage ss = {0};
    memcpy(&ss, res->ai_addr, res->ai_addrlen);
    if (!allow_remote && !addr_is_loopback(&ss)) {
        freeaddrinfo(res);
        close(fd);
        return sbert_util_errf(err, errlen, SBERT_HTTP_EREMOTE,
                               "refusing to serve HTTP on %s: not a loopback address (set "
                               "allow_remote to allow it, and a token)",
                               address);
    }
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
        int e = errno;
        freeaddrinfo(res);
        close(fd);
        return sbert_util_errf(err, errlen, SBERT_HTTP_ESOCKET, "cannot listen on %s: %s", address,
                               strerror(e));
    }
    freeaddrinfo(res);
    int rc = check_bound(fd, allow_remote, port, err, errlen);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    *fd_out = fd;
    return 0;
}

int http_listen_check(int fd, int allow_remote, unsigned *port, char *err, size_t errlen)
{
    return check_bound(fd, allow_remote, port, err, errlen);
}
