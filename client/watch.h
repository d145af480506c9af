/*
 * watch.h — follows a directory tree with inotify for `sbertctl sync --watch`: says when
 * something under it changed and then stayed quiet, nothing about what changed (the caller syncs
 * the whole tree again, which skips unchanged files by size and time without reading them).
 *
 * Every directory under the root is watched, found as files.h walks (no names starting with ".",
 * no symbolic links followed). Events on names starting with "." are ignored, so an editor's swap
 * and temporary files cause no round; the rename that puts a file in place does. When a
 * directory is created, moved or deleted, or the kernel's queue overflowed (IN_Q_OVERFLOW), the
 * watch set is built again from the tree before sbc_watch_wait returns: events lost meanwhile
 * concern the tree as it is then, which the caller's sync reads next.
 *
 * Errors: 0 or a negative SBC_WATCH_E* code with errbuf saying what and where.
 * Thread safety: one thread per handle.
 */
#ifndef SBC_WATCH_H
#define SBC_WATCH_H

#include <signal.h>
#include <stddef.h>

typedef struct sbc_watch sbc_watch;

enum {
    SBC_WATCH_ESYS = -1,   /* an inotify or directory call failed on the root (errbuf) */
    SBC_WATCH_ENOMEM = -2, /* out of memory */
};

/* What sbc_watch_wait saw. */
enum {
    SBC_WATCH_CHANGED = 1, /* changes, then quiet_ms without any (or max_ms since the first) */
    SBC_WATCH_SIGNAL = 2,  /* a signal arrived while waiting */
    SBC_WATCH_IDLE = 3,    /* idle_ms passed without a change */
};

/* Watches the tree under root (a directory; the handle keeps a copy of the path). A
 * subdirectory that cannot be watched (no permission, the inotify watch limit) does not fail
 * the call: see sbc_watch_unwatched. *out is freed with sbc_watch_free. */
int sbc_watch_open(const char *root, sbc_watch **out, char *errbuf, size_t errlen);

/* Waits for changes: for the first event up to idle_ms (-1: without end), then until quiet_ms
 * pass without another or max_ms since the first. Signals are received only during the wait,
 * with the signal mask set to sigmask (NULL: unchanged; as ppoll(2)), so a caller that blocks
 * SIGTERM elsewhere learns of it here, without a race. Returns SBC_WATCH_CHANGED,
 * SBC_WATCH_SIGNAL, SBC_WATCH_IDLE or a negative code. */
int sbc_watch_wait(sbc_watch *w, int idle_ms, int quiet_ms, int max_ms, const sigset_t *sigmask,
                   char *errbuf, size_t errlen);

/* The number of directories the last build of the watch set could not watch (0: all are), with
 * the first one's path and reason in buf. */
long sbc_watch_unwatched(const sbc_watch *w, char *buf, size_t len);

void sbc_watch_free(sbc_watch *w);

const char *sbc_watch_strerror(int code);

#endif
