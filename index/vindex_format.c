/*
 * vindex_format.c — the snapshot format's parsing and checks (vindex_format.h), and
 * vindex_snapshot_check: every byte of a snapshot checked against its checksums without FAISS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sbert_util.h"
#include "vindex_format.h"
#include "vindex_hash.h"

uint64_t vsnap_header_hash(const unsigned char *fixed, const char *spec, size_t spec_len)
{
    struct vindex_hash h;
    vindex_hash_init(&h);
    vindex_hash_update(&h, fixed, SNAP_HASHED);
    vindex_hash_update(&h, spec, spec_len);
    return vindex_hash_final(&h);
}

int vsnap_parse_header(const unsigned char *map, size_t len, const char *path,
                       struct snap_header *h, struct vindex_snapshot_meta *meta, char *errbuf,
                       size_t errlen)
{
    if (len < SNAP_FIXED || memcmp(map, SNAP_MAGIC, 8) != 0)
        return sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                               "%s is not a vindex snapshot (truncated header or bad magic)", path);
    h->version = get32(map + 8);
    h->header_len = get32(map + 12);
    h->dim = get32(map + 16);
    h->kind = get32(map + 20);
    h->flags = get32(map + 24);
    h->spec_len = get32(map + 28);
    h->change = get64(map + 32);
    h->count = get64(map + 40);
    h->ntotal = get64(map + 48);
    h->ndead = get64(map + 56);
    h->index_len = get64(map + 64);
    h->body_len = get64(map + 72);
    h->table_hash = get64(map + 80);
    h->user_len = get32(map + 88);
    h->block = get32(map + 92);
    h->header_hash = get64(map + SNAP_HASHED);
    if (h->version != VINDEX_SNAPSHOT_VERSION)
        return sbert_util_errf(errbuf, errlen, VINDEX_EVERSION,
                               "snapshot %s has format version %u, this build reads %u", path,
                               h->version, VINDEX_SNAPSHOT_VERSION);
    if (h->spec_len >= 128 || h->header_len != SNAP_FIXED + h->spec_len || len < h->header_len ||
        h->user_len > VINDEX_SNAPSHOT_USER_MAX || h->block == 0 ||
        h->header_hash != vsnap_header_hash(map, (const char *)map + SNAP_FIXED, h->spec_len))
        return sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT, "snapshot %s has a damaged header",
                               path);
    if (meta) {
        memset(meta, 0, sizeof *meta);
        meta->version = h->version;
        meta->dim = (int)h->dim;
        memcpy(meta->spec, map + SNAP_FIXED, h->spec_len);
        meta->change_counter = h->change;
        meta->count = h->count;
        meta->user_len = h->user_len;
        memcpy(meta->user, map + 96, h->user_len);
    }
    return 0;
}

size_t vsnap_blocks_fit(const struct snap_header *h, size_t size)
{
    if (h->block != SNAP_BLOCK || h->index_len > h->body_len || size < h->header_len) return 0;
    size_t n = (size_t)((h->body_len + h->block - 1) / h->block);
    size_t rest = size - h->header_len;
    if (h->body_len > rest || (rest - h->body_len) / sizeof(uint64_t) != n ||
        (rest - h->body_len) % sizeof(uint64_t) != 0)
        return 0;
    return n;
}

int vsnap_read_table(const unsigned char *map, const struct snap_header *h, size_t nblocks,
                     uint64_t **out, const char *path, char *errbuf, size_t errlen)
{
    size_t len = nblocks * sizeof **out;
    *out = malloc(len);
    if (!*out) return VINDEX_ENOMEM;
    memcpy(*out, map + h->header_len + h->body_len, len);
    if (vindex_hash64(*out, len) != h->table_hash)
        return sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                               "snapshot %s fails its checksum (block table)", path);
    return 0;
}

int vindex_snapshot_check(const char *path, struct vindex_snapshot_meta *meta, char *errbuf,
                          size_t errlen)
{
    if (!path || !meta) return sbert_util_errf(errbuf, errlen, VINDEX_EINVAL, "NULL path or meta");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        sbert_util_errf(errbuf, errlen, VINDEX_EIO, "opening snapshot %s: %s", path, strerror(e));
        errno = e;
        return VINDEX_EIO;
    }
    size_t size = (size_t)st.st_size;
    unsigned char *map = size ? mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return sbert_util_errf(errbuf, errlen, size ? VINDEX_EIO : VINDEX_ECORRUPT,
                               "mapping snapshot %s: %s", path, size ? strerror(e) : "empty");
    struct snap_header h;
    uint64_t *table = NULL;
    size_t nblocks = 0;
    int rc = vsnap_parse_header(map, size, path, &h, meta, errbuf, errlen);
    if (!rc && !(nblocks = vsnap_blocks_fit(&h, size)))
        rc = sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                             "snapshot %s is truncated or has trailing bytes", path);
    if (!rc) rc = vsnap_read_table(map, &h, nblocks, &table, path, errbuf, errlen);
    for (size_t i = 0; !rc && i < nblocks; i++) {
        uint64_t off = (uint64_t)i * h.block;
        size_t n = (size_t)(h.body_len - off < h.block ? h.body_len - off : h.block);
        if (vindex_hash64(map + h.header_len + off, n) != table[i])
            rc = sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                                 "snapshot %s fails its checksum (block %zu)", path, i);
    }
    free(table);
    munmap(map, size);
    return rc;
}
