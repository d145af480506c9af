/* notify.c — sd_notify(3)'s sending side for sbertctl (notify.h). */
#define _GNU_SOURCE
#include "notify.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct sbc_notify {
    int fd;
    struct sockaddr_un addr;
    socklen_t addr_len;
    double last_status; /* CLOCK_MONOTONIC seconds of the last STATUS= sent, 0: none yet */
};

const char *sbc_notify_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
    case SBC_NOTIFY_ENOMEM:
        return "out of memory";
    case SBC_NOTIFY_EADDR:
        return "NOTIFY_SOCKET is not a unix socket path or @name";
    case SBC_NOTIFY_ESEND:
        return "cannot send to NOTIFY_SOCKET";
    default:
        return "unknown error";
    }
}

int sbc_notify_open(sbc_notify **out)
{
    *out = NULL;
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path) return 0;
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof((struct sockaddr_un *)0)->sun_path)
        return SBC_NOTIFY_EADDR;
    sbc_notify *n = calloc(1, sizeof *n);
    if (!n) return SBC_NOTIFY_ENOMEM;
    n->addr.sun_family = AF_UNIX;
    memcpy(n->addr.sun_path, path, len);
    if (path[0] == '@') n->addr.sun_path[0] = '\0'; /* the abstract namespace: no NUL at the end */
    n->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (n->fd < 0) {
        free(n);
        return SBC_NOTIFY_ESEND;
    }
    *out = n;
    return 0;
}

int sbc_notify_send(sbc_notify *n, const char *msg)
{
    if (!n) return 0;
    ssize_t w =
        sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&n->addr, n->addr_len);
    return w < 0 ? SBC_NOTIFY_ESEND : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int sbc_notify_status(sbc_notify *n, int force, const char *fmt, ...)
{
    if (!n) return 0;
    double t = now_s();
    if (!force && n->last_status > 0 && t - n->last_status < 1.0) return 0;
    /* systemctl status shows one line: longer texts are cut there anyway */
    char msg[7 + 256] = "STATUS=";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + 7, sizeof msg - 7, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    if (!force) n->last_status = t; /* a forced state does not delay the next progress line */
    return sbc_notify_send(n, msg);
}

void sbc_notify_free(sbc_notify *n)
{
    if (!n) return;
    close(n->fd);
    free(n);
}
