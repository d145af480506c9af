/* watch.c — a directory tree followed with inotify (watch.h). */
#define _GNU_SOURCE
#include "watch.h"
#include "sbert_util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A file written and closed, renamed in or out, deleted, created (a directory, a FIFO, a link:
 * whatever the walk will report), or touched (chmod, utime). IN_DONT_FOLLOW and IN_ONLYDIR: a
 * link to a directory is not followed, as the walk does not follow it. */
#define WATCH_MASK                                                                                 \
    (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB |            \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_DONT_FOLLOW | IN_ONLYDIR)

struct sbc_watch {
    char *root;
    int fd;          /* the inotify instance of the current watch set */
    long unwatched;  /* directories the last build could not watch */
    char first[512]; /* the first of them, and why */
};

static int add_tree(sbc_watch *w, const char *path)
{
    if (inotify_add_watch(w->fd, path, WATCH_MASK) < 0) {
        if (!strcmp(path, w->root)) return -errno;
        if (!w->unwatched++) snprintf(w->first, sizeof w->first, "%s: %s", path, strerror(errno));
        return 0;
    }
    DIR *d = opendir(path);
    if (!d) return 0; /* the walk reports it; its own events are still watched */
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p;
        if (asprintf(&p, "%s/%s", path, e->d_name) < 0) {
            rc = -ENOMEM;
            break;
        }
        struct stat st;
        int dir = e->d_type == DT_DIR ||
                  (e->d_type == DT_UNKNOWN && lstat(p, &st) == 0 && S_ISDIR(st.st_mode));
        if (dir) rc = add_tree(w, p);
        free(p);
    }
    closedir(d);
    return rc;
}

/* A fresh inotify instance watching the tree as it is now. */
static int rebuild(sbc_watch *w, char *errbuf, size_t errlen)
{
    if (w->fd >= 0) close(w->fd);
    w->unwatched = 0;
    w->first[0] = '\0';
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0)
        return sbert_util_errf(errbuf, errlen, SBC_WATCH_ESYS, "inotify_init1: %s",
                               strerror(errno));
    int rc = add_tree(w, w->root);
    if (rc == -ENOMEM) return sbert_util_errf(errbuf, errlen, SBC_WATCH_ENOMEM, "out of memory");
    if (rc < 0)
        return sbert_util_errf(errbuf, errlen, SBC_WATCH_ESYS, "%s: cannot watch: %s", w->root,
                               strerror(-rc));
    return 0;
}

int sbc_watch_open(const char *root, sbc_watch **out, char *errbuf, size_t errlen)
{
    *out = NULL;
    sbc_watch *w = calloc(1, sizeof *w);
    if (!w || !(w->root = strdup(root))) {
        free(w);
        return sbert_util_errf(errbuf, errlen, SBC_WATCH_ENOMEM, "out of memory");
    }
    w->fd = -1;
    int rc = rebuild(w, errbuf, errlen);
    if (rc) {
        sbc_watch_free(w);
        return rc;
    }
    *out = w;
    return 0;
}

/* Reads the events queued now. Returns 0 (nothing that counts), 1 (a change), 2 (a change that
 * needs the watch set built again) or -errno. */
static int drain(sbc_watch *w)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    int seen = 0;
    for (;;) {
        ssize_t n = read(w->fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return seen;
        if (n <= 0) return n < 0 ? -errno : -EIO;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            p += sizeof *e + e->len;
            /* a lost event, a watch the kernel removed (its directory deleted, or its file
             * system unmounted: IN_UNMOUNT, then IN_IGNORED for each watch): rebuild the set */
            if (e->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_UNMOUNT)) {
                seen = 2;
                continue;
            }
            if (e->len && e->name[0] == '.') continue;
            int structural = (e->mask & IN_ISDIR &&
                              e->mask & (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE)) ||
                             e->mask & (IN_DELETE_SELF | IN_MOVE_SELF);
            if (structural)
                seen = 2;
            else if (!seen)
                seen = 1;
        }
    }
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ppoll on the inotify descriptor for ms (-1: without end): 1 readable, 0 timeout, 2 a signal,
 * -errno. */
static int wait_fd(const sbc_watch *w, int ms, const sigset_t *sigmask)
{
    struct pollfd p = {.fd = w->fd, .events = POLLIN};
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    int n = ppoll(&p, 1, ms < 0 ? NULL : &ts, sigmask);
    if (n < 0) return errno == EINTR ? 2 : -errno;
    return n > 0;
}

int sbc_watch_wait(sbc_watch *w, int idle_ms, int quiet_ms, int max_ms, const sigset_t *sigmask,
                   char *errbuf, size_t errlen)
{
    int seen = 0;
    long first = 0, idle_end = idle_ms < 0 ? -1 : now_ms() + idle_ms;
    for (;;) {
        long now = now_ms();
        int ms;
        if (seen && now >= first + max_ms) break; /* a steady stream of events: go anyway */
        if (seen) {
            ms = quiet_ms;
            if (now + ms > first + max_ms)
                ms = (int)(first + max_ms > now ? first + max_ms - now : 0);
        } else {
            ms = idle_end < 0 ? -1 : (int)(idle_end > now ? idle_end - now : 0);
        }
        int r = wait_fd(w, ms, sigmask);
        if (r == 2) return SBC_WATCH_SIGNAL;
        if (r < 0)
            return sbert_util_errf(errbuf, errlen, SBC_WATCH_ESYS, "%s: ppoll: %s", w->root,
                                   strerror(-r));
        if (r == 0) {
            if (!seen) return SBC_WATCH_IDLE;
            break;
        }
        int d = drain(w);
        if (d < 0)
            return sbert_util_errf(errbuf, errlen, SBC_WATCH_ESYS, "%s: reading inotify: %s",
                                   w->root, strerror(-d));
        if (d && !seen) first = now_ms();
        if (d > seen) seen = d;
    }
    if (seen == 2) {
        int rc = rebuild(w, errbuf, errlen);
        if (rc) return rc;
    }
    return SBC_WATCH_CHANGED;
}

long sbc_watch_unwatched(const sbc_watch *w, char *buf, size_t len)
{
    if (len) snprintf(buf, len, "%s", w->first);
    return w->unwatched;
}

void sbc_watch_free(sbc_watch *w)
{
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    free(w->root);
    free(w);
}

const char *sbc_watch_strerror(int code)
{
    switch (code) {
    case 0:
        return "success";
    case SBC_WATCH_ESYS:
        return "inotify or directory call failed";
    case SBC_WATCH_ENOMEM:
        return "out of memory";
    default:
        return "unknown error";
    }
}
