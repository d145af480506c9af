/* files.c — the files under a path, and one file as a document (files.h). */
#define _GNU_SOURCE
#include "files.h"
#include "sbert_extract.h"
#include "sbert_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t mtime_ns(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_hidden(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* Walks the directory path (whose id prefix is rel, "" at the top). Depth is bounded only by the
 * path length the kernel accepts: each level holds one open directory listing, no descriptor. */
static int walk_dir(const char *path, const char *rel, const char *root, sbc_file_fn fn, void *user)
{
    struct dirent **names;
    int n = scandir(path, &names, not_hidden, by_name);
    if (n < 0) {
        struct sbc_file f = {path, rel, root, 0, 0, 1};
        char why[300];
        snprintf(why, sizeof why, "cannot list the directory: %s", strerror(errno));
        return fn(&f, why, user);
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char *p = NULL, *r = NULL;
        if (!rc && (asprintf(&p, "%s/%s", path, names[i]->d_name) < 0 ||
                    asprintf(&r, "%s%s%s", rel, *rel ? "/" : "", names[i]->d_name) < 0))
            rc = -1;
        struct stat st;
        if (!rc) {
            struct sbc_file f = {p, r, root, 0, 0, 0};
            if (lstat(p, &st) != 0) {
                char why[300];
                snprintf(why, sizeof why, "%s", strerror(errno));
                /* it may be a directory: its files are unknown, not gone (sync keeps them) */
                f.dir = errno != ENOENT;
                rc = fn(&f, why, user);
            } else if (S_ISLNK(st.st_mode)) {
                rc = fn(&f, "a symbolic link (not followed)", user);
            } else if (S_ISDIR(st.st_mode)) {
                rc = walk_dir(p, r, root, fn, user);
            } else if (!S_ISREG(st.st_mode)) {
                rc = fn(&f, "not a regular file", user);
            } else {
                f.size = st.st_size;
                f.mtime_ns = mtime_ns(&st);
                rc = fn(&f, NULL, user);
            }
        }
        free(p);
        free(r);
        free(names[i]);
    }
    free(names);
    return rc;
}

int sbc_files_walk(const char *path, sbc_file_fn fn, void *user, char *errbuf, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return sbert_util_errf(errbuf, errlen, -1, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
        return sbert_util_errf(errbuf, errlen, -1, "%s: not a regular file or directory", path);
    /* a file's root is its directory, resolved apart from the file's own name, so that
     * root/id names the file even when the file is a symbolic link */
    const char *base = strrchr(path, '/');
    char *dir = S_ISDIR(st.st_mode) ? strdup(path)
                : base              ? strndup(path, (size_t)(base - path) + (base == path))
                                    : strdup(".");
    char *root = dir ? realpath(dir, NULL) : NULL;
    int err = errno;
    free(dir);
    if (!root) return sbert_util_errf(errbuf, errlen, -1, "%s: %s", path, strerror(err));
    int rc;
    if (S_ISDIR(st.st_mode)) {
        rc = walk_dir(path, "", root, fn, user);
    } else {
        struct sbc_file f = {path, base ? base + 1 : path, root, st.st_size, mtime_ns(&st), 0};
        rc = fn(&f, NULL, user);
    }
    free(root);
    return rc;
}

/* The whole file, read once (a file that grows meanwhile: the bytes it had at the open); NULL
 * with errbuf on failure. */
static char *read_all(const struct sbc_file *f, size_t max, size_t *len, char *errbuf,
                      size_t errlen)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        sbert_util_errf(errbuf, errlen, -1, "%s", strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    if ((uint64_t)st.st_size > max) {
        sbert_util_errf(errbuf, errlen, -1, "%lld bytes, over the limit of %zu",
                        (long long)st.st_size, max);
        close(fd);
        return NULL;
    }
    size_t cap = (size_t)st.st_size, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) sbert_util_errf(errbuf, errlen, -1, "out of memory");
    while (buf && n < cap) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            sbert_util_errf(errbuf, errlen, -1, "%s", strerror(errno));
            free(buf);
            buf = NULL;
        } else if (r == 0) {
            break; /* it shrank meanwhile */
        } else {
            n += (size_t)r;
        }
    }
    close(fd);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

int sbc_file_doc_make(const struct sbc_file *f, size_t max_file_bytes, size_t max_text_bytes,
                      const char *known_sha256, struct sbc_file_doc *out, char *errbuf,
                      size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (errbuf && errlen) errbuf[0] = '\0';
    size_t len;
    char *data = read_all(f, max_file_bytes, &len, errbuf, errlen);
    if (!data) return -1;
    sbert_sha256_hex(data, len, out->sha256);
    if (known_sha256 && strcmp(known_sha256, out->sha256) == 0) {
        free(data);
        return 1;
    }
    int format = sbert_extract_detect(f->path, data, len < 8192 ? len : 8192);
    if (format < 0) {
        free(data);
        return sbert_util_errf(errbuf, errlen, -1, "%s", sbert_extract_strerror(format));
    }
    struct sbert_extract_params p;
    sbert_extract_default_params(&p);
    p.max_text_bytes = max_text_bytes;
    struct sbert_extract_doc d;
    char why[400];
    int rc = sbert_extract(format, data, len, &p, &d, why, sizeof why);
    free(data);
    if (rc)
        return sbert_util_errf(errbuf, errlen, -1, "%s", why[0] ? why : sbert_extract_strerror(rc));
    size_t lead = 0;
    while (lead < d.len && strchr(" \t\r\n", d.text[lead]))
        lead++;
    if (lead == d.len) {
        sbert_extract_doc_free(&d);
        return sbert_util_errf(errbuf, errlen, -1, "no text");
    }
    cJSON *m = cJSON_CreateObject();
    char *json = NULL;
    if (m && cJSON_AddStringToObject(m, "path", f->rel) &&
        cJSON_AddStringToObject(m, "root", f->root) &&
        (!d.title || cJSON_AddStringToObject(m, "title", d.title)) &&
        cJSON_AddStringToObject(m, "format", sbert_extract_format_name(format)) &&
        cJSON_AddNumberToObject(m, "size", (double)f->size) &&
        cJSON_AddNumberToObject(m, "mtime", (double)(f->mtime_ns / 1000000000)) &&
        cJSON_AddNumberToObject(m, "mtime_nsec", (double)(f->mtime_ns % 1000000000)) &&
        cJSON_AddStringToObject(m, "sha256", out->sha256))
        json = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    free(d.title);
    if (!json) {
        sbert_extract_doc_free(&d);
        return sbert_util_errf(errbuf, errlen, -1, "out of memory");
    }
    out->text = d.text;
    out->len = d.len;
    out->metadata_json = json;
    return 0;
}

void sbc_file_doc_free(struct sbc_file_doc *d)
{
    if (!d) return;
    free(d->text);
    free(d->metadata_json);
    memset(d, 0, sizeof *d);
}
