/* rotate.c — dated backups under one folder (rotate.h). */
#define _GNU_SOURCE
#include "rotate.h"
#include "sbert_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PREFIX "sbertd-"

int sbc_rotate_name(time_t t, int n, char *out, size_t outlen)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm)) return -1;
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    int w = n ? snprintf(out, outlen, PREFIX "%s-%d", stamp, n)
              : snprintf(out, outlen, PREFIX "%s", stamp);
    return w < 0 || (size_t)w >= outlen ? -1 : 0;
}

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

int sbc_rotate_is_name(const char *name)
{
    size_t p = strlen(PREFIX);
    if (strncmp(name, PREFIX, p) != 0) return 0;
    const char *s = name + p; /* YYYYMMDDTHHMMSSZ */
    if (strlen(s) < 16 || !digits(s, 8) || s[8] != 'T' || !digits(s + 9, 6) || s[15] != 'Z')
        return 0;
    s += 16;
    if (!*s) return 1;
    if (*s != '-' || !s[1] || strlen(s + 1) > 6) return 0;
    return digits(s + 1, (int)strlen(s + 1)) && s[1] != '0';
}

int sbc_rotate_next(const char *root, time_t t, char *out, size_t outlen, char *errbuf,
                    size_t errlen)
{
    char bare[64];
    if (sbc_rotate_name(t, 0, bare, sizeof bare) < 0)
        return sbert_util_errf(errbuf, errlen, -1, "no name for that time");
    DIR *d = opendir(root);
    if (!d) return sbert_util_errf(errbuf, errlen, -1, "%s: %s", root, strerror(errno));
    size_t bl = strlen(bare);
    long next = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, bare, bl) != 0 || !sbc_rotate_is_name(e->d_name)) continue;
        long n = e->d_name[bl] == '-' ? strtol(e->d_name + bl + 1, NULL, 10) : 0;
        if (n + 1 > next) next = n + 1;
    }
    closedir(d);
    if (sbc_rotate_name(t, (int)next, out, outlen) < 0)
        return sbert_util_errf(errbuf, errlen, -1, "%s: name too long", root);
    return 0;
}

/* 1 when root/name is a directory holding store.mdb and only regular files. */
static int is_backup(int rootfd, const char *name)
{
    int fd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return 0;
    }
    int store = 0, other = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            other = 1;
        store |= strcmp(e->d_name, "store.mdb") == 0;
    }
    closedir(d);
    return store && !other;
}

/* Removes root/name: its regular files, then the directory. */
static int remove_backup(int rootfd, const char *root, const char *name, char *errbuf,
                         size_t errlen)
{
    int fd = openat(rootfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        int e = errno;
        if (fd >= 0) close(fd);
        return sbert_util_errf(errbuf, errlen, -1, "%s/%s: %s", root, name, strerror(e));
    }
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
            unlinkat(dirfd(d), e->d_name, 0) != 0)
            rc = sbert_util_errf(errbuf, errlen, -1, "%s/%s/%s: %s", root, name, e->d_name,
                                 strerror(errno));
    closedir(d);
    if (!rc && unlinkat(rootfd, name, AT_REMOVEDIR) != 0)
        rc = sbert_util_errf(errbuf, errlen, -1, "%s/%s: %s", root, name, strerror(errno));
    return rc;
}

static int newest_first(const void *a, const void *b)
{
    /* same prefix and fixed-width stamp: later names sort later; "-N" follows the bare name */
    return -strverscmp(*(char *const *)a, *(char *const *)b);
}

int sbc_rotate_prune(const char *root, int keep, char ***removed, size_t *n_removed, char *errbuf,
                     size_t errlen)
{
    *removed = NULL;
    *n_removed = 0;
    if (keep < 1) return sbert_util_errf(errbuf, errlen, -1, "--keep must be at least 1");
    int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = rootfd < 0 ? NULL : fdopendir(dup(rootfd));
    if (!d) {
        int e = errno;
        if (rootfd >= 0) close(rootfd);
        return sbert_util_errf(errbuf, errlen, -1, "%s: %s", root, strerror(e));
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        if (!sbc_rotate_is_name(e->d_name) || !is_backup(rootfd, e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) {
                rc = sbert_util_errf(errbuf, errlen, -1, "out of memory");
                break;
            }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name)))
            rc = sbert_util_errf(errbuf, errlen, -1, "out of memory");
        else
            n++;
    }
    closedir(d);
    if (!rc && n > 1) qsort(names, n, sizeof *names, newest_first);
    /* the oldest first: names[n-1] down to names[keep] */
    char **out = NULL;
    size_t done = 0;
    if (!rc && n > (size_t)keep && !(out = malloc((n - (size_t)keep) * sizeof *out)))
        rc = sbert_util_errf(errbuf, errlen, -1, "out of memory");
    for (size_t i = n; !rc && i > (size_t)keep; i--) {
        rc = remove_backup(rootfd, root, names[i - 1], errbuf, errlen);
        if (!rc) {
            out[done++] = names[i - 1];
            names[i - 1] = NULL;
        }
    }
    close(rootfd);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (!done) {
        free(out);
        out = NULL;
    }
    *removed = out;
    *n_removed = done;
    return rc;
}
