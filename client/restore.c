/* restore.c — a backup into place of a stopped store (restore.h). */
#define _GNU_SOURCE
#include "restore.h"
#include "rotate.h"
#include "sbert_util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The files of a store that a restore carries; anything else (LMDB's lock file, LOCK) is made
 * again by the daemon. */
static const char *const FILES[] = {"store.mdb", "index.snap"};

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Copies src to dst through dst.tmp: written, fsynced, given owner and mode, renamed. */
static int copy_file(const char *src, const char *dst, uid_t uid, gid_t gid, int chown_it,
                     char *errbuf, size_t errlen)
{
    char tmp[PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp", dst);
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return sbert_util_errf(errbuf, errlen, -1, "%s: %s", src, strerror(errno));
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (out < 0) {
        int e = errno;
        close(in);
        return sbert_util_errf(errbuf, errlen, -1, "%s: %s", tmp, strerror(e));
    }
    char buf[1 << 16];
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            rc = sbert_util_errf(errbuf, errlen, -1, "%s: %s", src, strerror(errno));
            break;
        }
        if (n == 0) break;
        for (ssize_t off = 0; off < n && !rc;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0)
                rc = sbert_util_errf(errbuf, errlen, -1, "%s: %s", tmp, strerror(errno));
            else
                off += w;
        }
        if (rc) break;
    }
    if (!rc && chown_it && fchown(out, uid, gid) != 0)
        rc = sbert_util_errf(errbuf, errlen, -1, "%s: chown: %s", tmp, strerror(errno));
    if (!rc && fsync(out) != 0)
        rc = sbert_util_errf(errbuf, errlen, -1, "%s: fsync: %s", tmp, strerror(errno));
    close(in);
    if (close(out) != 0 && !rc)
        rc = sbert_util_errf(errbuf, errlen, -1, "%s: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, dst) != 0)
        rc = sbert_util_errf(errbuf, errlen, -1, "%s: %s", dst, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

/* -1 with errbuf when a process holds dir's store lock. */
static int check_unlocked(const char *dir, char *errbuf, size_t errlen)
{
    char path[PATH_MAX + 8];
    snprintf(path, sizeof path, "%s/LOCK", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    int held = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return held ? sbert_util_errf(errbuf, errlen, -1,
                                  "%s: a running sbertd has this store open; stop it first "
                                  "(systemctl stop sbertd)",
                                  dir)
                : 0;
}

int sbc_restore(const char *backup, const char *data, char *aside, size_t aside_len, char *errbuf,
                size_t errlen)
{
    aside[0] = '\0';
    char rb[PATH_MAX], rd[PATH_MAX];
    if (!realpath(backup, rb))
        return sbert_util_errf(errbuf, errlen, -1, "%s: %s", backup, strerror(errno));
    struct stat old;
    int had = stat(data, &old) == 0;
    if (had && !S_ISDIR(old.st_mode))
        return sbert_util_errf(errbuf, errlen, -1, "%s: not a directory", data);
    if (had && realpath(data, rd)) {
        size_t lb = strlen(rb), ld = strlen(rd);
        if (strcmp(rb, rd) == 0 || (lb > ld && strncmp(rb, rd, ld) == 0 && rb[ld] == '/') ||
            (ld > lb && strncmp(rd, rb, lb) == 0 && rd[lb] == '/'))
            return sbert_util_errf(errbuf, errlen, -1,
                                   "the backup and the store directory must be apart (%s, %s)", rb,
                                   rd);
    }
    if (had && check_unlocked(data, errbuf, errlen)) return -1;
    uid_t uid = had ? old.st_uid : getuid();
    gid_t gid = had ? old.st_gid : getgid();
    mode_t mode = had ? (old.st_mode & 07777) : 0750;
    int chown_it = had && geteuid() == 0;
    if (had) {
        char name[64];
        if (sbc_rotate_name(time(NULL), 0, name, sizeof name) < 0 ||
            snprintf(aside, aside_len, "%s.pre-restore-%s", data, name + strlen("sbertd-")) >=
                (int)aside_len)
            return sbert_util_errf(errbuf, errlen, -1, "%s: path too long", data);
        if (rename(data, aside) != 0) {
            int e = errno;
            aside[0] = '\0';
            return sbert_util_errf(errbuf, errlen, -1, "moving %s aside: %s", data, strerror(e));
        }
    }
    int rc = 0;
    if (mkdir(data, mode) != 0 || (chown_it && chown(data, uid, gid) != 0) ||
        chmod(data, mode) != 0)
        rc = sbert_util_errf(errbuf, errlen, -1, "%s: %s", data, strerror(errno));
    for (size_t i = 0; !rc && i < sizeof FILES / sizeof FILES[0]; i++) {
        char src[PATH_MAX + 16], dst[PATH_MAX + 16];
        snprintf(src, sizeof src, "%s/%s", rb, FILES[i]);
        snprintf(dst, sizeof dst, "%s/%s", data, FILES[i]);
        struct stat st;
        if (stat(src, &st) != 0) {
            if (i == 0) rc = sbert_util_errf(errbuf, errlen, -1, "%s: %s", src, strerror(errno));
            continue; /* no index.snap: the daemon rebuilds the vector index */
        }
        rc = copy_file(src, dst, uid, gid, chown_it, errbuf, errlen);
    }
    if (!rc && fsync_dir(data) != 0)
        rc = sbert_util_errf(errbuf, errlen, -1, "%s: fsync: %s", data, strerror(errno));
    if (!rc) {
        char parent[PATH_MAX];
        snprintf(parent, sizeof parent, "%s", data);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = '\0';
        else
            snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
        fsync_dir(parent);
    }
    if (rc && aside[0]) {
        size_t n = strlen(errbuf);
        if (errbuf && n + 1 < errlen)
            snprintf(errbuf + n, errlen - n, "; the previous store is in %s", aside);
    }
    return rc;
}
