/*
 * vindex_snap.c — vindex snapshots (vindex.h: vindex_snapshot_write/read/peek/remove_temps): the
 * file format below, written through a hashing stream and read back block by block, each block
 * checked just before FAISS or the flat loader sees its bytes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "IndexIVF_c.h"
#include "error_c.h"
#include "index_io_c.h"
#include "vindex_format.h"
#include "vindex_hash.h"
#include "vindex_impl.h"
#include "vindex_shim.h"

/* The body stream: stdio over the temp file's descriptor, hashing each block as FAISS writes. */
struct body_sink {
    int fd;
    struct vindex_hash h; /* of the current block */
    size_t in_block;      /* bytes of the current block so far */
    uint64_t *table;      /* hashes of the finished blocks */
    size_t nblocks, cap;
    uint64_t bytes;
    int err;
};

static int sink_end_block(struct body_sink *s)
{
    if (s->nblocks == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 1024;
        uint64_t *t = realloc(s->table, cap * sizeof *t);
        if (!t) return -1;
        s->table = t;
        s->cap = cap;
    }
    s->table[s->nblocks++] = vindex_hash_final(&s->h);
    vindex_hash_init(&s->h);
    s->in_block = 0;
    return 0;
}

/* A failure returns 0, never -1: fopencookie(3) says the function must not return a negative
 * value, and glibc 2.36 takes -1 as a count (SIZE_MAX), after which fwrite copies one byte past
 * the caller's buffer (a crash found by faults_daemon: a snapshot over 256 KiB whose block table
 * could not grow). s->err makes the snapshot fail. */
static ssize_t sink_write(void *cookie, const char *buf, size_t size)
{
    struct body_sink *s = cookie;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(s->fd, buf + done, size - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            s->err = errno;
            return 0;
        }
        done += (size_t)w;
    }
    for (size_t off = 0; off < size;) {
        size_t n = size - off < SNAP_BLOCK - s->in_block ? size - off : SNAP_BLOCK - s->in_block;
        vindex_hash_update(&s->h, buf + off, n);
        s->in_block += n;
        off += n;
        if (s->in_block == SNAP_BLOCK && sink_end_block(s) != 0) {
            s->err = ENOMEM;
            return 0;
        }
    }
    s->bytes += size;
    return (ssize_t)size;
}

/* The code of a failed write, sync or rename with errno e. */
static int io_code(int e)
{
    if (e == ENOMEM) return VINDEX_ENOMEM;
    return e == ENOSPC || e == EDQUOT || e == EFBIG ? VINDEX_ENOSPC : VINDEX_EIO;
}

static int sync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return -1;
    char *slash = strrchr(copy, '/');
    const char *dir = ".";
    if (slash == copy)
        dir = "/";
    else if (slash) {
        *slash = '\0';
        dir = copy;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = fd < 0 ? -1 : fsync(fd);
    if (fd >= 0) close(fd);
    free(copy);
    return rc;
}

static int write_all_at(int fd, const void *buf, size_t len, off_t off)
{
    const char *p = buf;
    while (len) {
        ssize_t w = pwrite(fd, p, len, off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
        off += w;
    }
    return 0;
}

/* Whether a state's index is snapshotted in the raw flat layout (see the file layout). */
static int raw_flat(uint32_t kind, int trained)
{
    return kind == KIND_FLAT || (kind == KIND_IVF && !trained);
}

/* The raw flat layout of an IDMap2 over Flat: u64 n, n i64 labels, n * dim f32. Returns 0, -1 on
 * a write error, or a VINDEX_E* code. */
static int write_flat(const FaissIndex *idx, size_t n, size_t dim, FILE *f)
{
    const float *x = vshim_flat_vectors(idx);
    int64_t *labels = malloc((n ? n : 1) * sizeof *labels);
    if (!labels) return VINDEX_ENOMEM;
    /* x is NULL for a Flat index that never held a vector (FAISS 1.7.3's get_xb() is the data()
     * of an empty std::vector) */
    if ((!x && n) || vshim_labels(idx, VSHIM_IDMAP, labels, NULL, 0) != 0) {
        free(labels);
        return VINDEX_EFAISS;
    }
    uint64_t n64 = n;
    int rc = fwrite(&n64, sizeof n64, 1, f) == 1 && fwrite(labels, sizeof *labels, n, f) == n &&
                     (n == 0 || fwrite(x, sizeof *x * dim, n, f) == n)
                 ? 0
                 : -1;
    free(labels);
    return rc;
}

/* Writes the snapshot body and header into fd (read lock held). */
static int snapshot_fill(vindex *v, int fd, uint64_t change, const void *user, size_t user_len,
                         char *errbuf, size_t errlen)
{
    const struct vstate *s = &v->s;
    size_t spec_len = strlen(s->spec);
    uint32_t header_len = SNAP_FIXED + (uint32_t)spec_len;
    if (lseek(fd, header_len, SEEK_SET) < 0)
        return sbert_util_errf(errbuf, errlen, VINDEX_EIO, "seek in snapshot: %s", strerror(errno));

    struct body_sink sink = {.fd = fd};
    vindex_hash_init(&sink.h);
    cookie_io_functions_t io = {.write = sink_write};
    FILE *f = fopencookie(&sink, "w", io);
    if (!f) return sbert_util_errf(errbuf, errlen, VINDEX_ENOMEM, "fopencookie failed");
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    uint64_t ntotal = (uint64_t)faiss_Index_ntotal(s->idx);
    int frc = 0, flush_rc = 0;
    if (raw_flat(s->kind, s->trained)) {
        flush_rc = write_flat(s->idx, (size_t)ntotal, (size_t)v->p.dim, f);
        if (flush_rc == VINDEX_ENOMEM || flush_rc == VINDEX_EFAISS) {
            fclose(f);
            free(sink.table);
            return sbert_util_errf(errbuf, errlen, flush_rc,
                                   "reading the flat index for its snapshot");
        }
    } else {
        frc = faiss_write_index(s->idx, f);
    }
    if (fflush(f) != 0) flush_rc = -1;
    uint64_t index_len = sink.bytes;
    if (frc == 0 && flush_rc == 0 && s->kind == KIND_HNSW) {
        /* dead[] is sized for ntotal already (grow_dead on every add). */
        if (ntotal && fwrite(s->dead, 1, ntotal, f) != ntotal) flush_rc = -1;
        if (fflush(f) != 0) flush_rc = -1;
    }
    fclose(f);
    if (frc == 0 && flush_rc == 0 && !sink.err && sink.in_block && sink_end_block(&sink) != 0)
        sink.err = ENOMEM;
    uint64_t table_hash =
        sink.table ? vindex_hash64(sink.table, sink.nblocks * sizeof *sink.table) : 0;
    if (frc == 0 && flush_rc == 0 && !sink.err &&
        write_all_at(fd, sink.table, sink.nblocks * sizeof *sink.table,
                     (off_t)(header_len + sink.bytes)) != 0)
        sink.err = errno;
    free(sink.table);
    /* FAISS's write fails when our sink did: the sink's errno is the cause */
    if (frc != 0 && !sink.err) return vindex_faiss_fail(errbuf, errlen, "FAISS write_index");
    if (frc != 0 || flush_rc != 0 || sink.err)
        return sbert_util_errf(errbuf, errlen, io_code(sink.err ? sink.err : EIO),
                               "writing snapshot: %s", strerror(sink.err ? sink.err : EIO));

    unsigned char hdr[SNAP_FIXED];
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, SNAP_MAGIC, 8);
    put32(hdr + 8, VINDEX_SNAPSHOT_VERSION);
    put32(hdr + 12, header_len);
    put32(hdr + 16, (uint32_t)v->p.dim);
    put32(hdr + 20, (uint32_t)s->kind);
    put32(hdr + 24, s->trained ? 1u : 0u);
    put32(hdr + 28, (uint32_t)spec_len);
    put64(hdr + 32, change);
    put64(hdr + 40, s->live.n);
    put64(hdr + 48, ntotal);
    put64(hdr + 56, s->ndead);
    put64(hdr + 64, index_len);
    put64(hdr + 72, sink.bytes);
    put64(hdr + 80, table_hash);
    put32(hdr + 88, (uint32_t)user_len);
    put32(hdr + 92, SNAP_BLOCK);
    if (user_len) memcpy(hdr + 96, user, user_len);
    put64(hdr + SNAP_HASHED, vsnap_header_hash(hdr, s->spec, spec_len));
    if (write_all_at(fd, hdr, sizeof hdr, 0) != 0 ||
        write_all_at(fd, s->spec, spec_len, SNAP_FIXED) != 0) {
        int e = errno;
        return sbert_util_errf(errbuf, errlen, io_code(e), "writing snapshot header: %s",
                               strerror(e));
    }
    if (fsync(fd) != 0) {
        int e = errno;
        return sbert_util_errf(errbuf, errlen, io_code(e), "fsync of snapshot: %s", strerror(e));
    }
    return 0;
}

int vindex_snapshot_remove_temps(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    char dir[4096], prefix[512];
    snprintf(dir, sizeof dir, "%.*s", (int)(slash ? dlen : 1), slash ? path : ".");
    /* the name vindex_snapshot_write gives its temporary file */
    snprintf(prefix, sizeof prefix, "%s.tmp.", slash ? slash + 1 : path);
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char p[4600];
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 &&
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p && unlink(p) == 0)
            n++;
    }
    closedir(d);
    return n;
}

int vindex_snapshot_write(vindex *v, const char *path, uint64_t change_counter, const void *user,
                          size_t user_len, char *errbuf, size_t errlen)
{
    if (!v || !path || user_len > VINDEX_SNAPSHOT_USER_MAX || (user_len && !user))
        return sbert_util_errf(errbuf, errlen, VINDEX_EINVAL,
                               "NULL index or path, or bad caller bytes");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return VINDEX_ENOMEM;
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        free(tmp);
        return sbert_util_errf(errbuf, errlen, io_code(e),
                               "creating a temporary file next to %s: %s", path, strerror(e));
    }
    pthread_rwlock_rdlock(&v->lock);
    int rc = snapshot_fill(v, fd, change_counter, user, user_len, errbuf, errlen);
    pthread_rwlock_unlock(&v->lock);
    if (close(fd) != 0 && rc == 0)
        rc =
            sbert_util_errf(errbuf, errlen, io_code(errno), "closing %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = sbert_util_errf(errbuf, errlen, io_code(errno), "renaming %s to %s: %s", tmp, path,
                             strerror(errno));
    if (rc != 0) {
        unlink(tmp);
        free(tmp);
        return rc;
    }
    free(tmp);
    if (sync_dir_of(path) != 0)
        return sbert_util_errf(errbuf, errlen, io_code(errno), "fsync of the directory of %s: %s",
                               path, strerror(errno));
    return 0;
}

/* Checks magic, version and the header hash of the first len bytes of a file; fills h and meta. */
int vindex_snapshot_peek(const char *path, struct vindex_snapshot_meta *meta, char *errbuf,
                         size_t errlen)
{
    if (!path || !meta) return sbert_util_errf(errbuf, errlen, VINDEX_EINVAL, "NULL path or meta");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        sbert_util_errf(errbuf, errlen, VINDEX_EIO, "opening snapshot %s: %s", path, strerror(e));
        errno = e;
        return VINDEX_EIO;
    }
    unsigned char buf[SNAP_FIXED + 128];
    size_t got = 0;
    while (got < sizeof buf) {
        ssize_t r = read(fd, buf + got, sizeof buf - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    struct snap_header h;
    return vsnap_parse_header(buf, got, path, &h, meta, errbuf, errlen);
}

/* Reads the raw flat layout (see the file layout) into a new IDMap2 over Flat. */
static int read_flat(struct vshim_body *b, const struct snap_header *h, int dim, FaissIndex **out,
                     char *errbuf, size_t errlen)
{
    uint64_t n;
    size_t per = sizeof(int64_t) + (size_t)dim * sizeof(float);
    if (h->index_len < sizeof n || vshim_body_copy(b, &n, 0, sizeof n) != 0 || n != h->ntotal ||
        n > (h->index_len - sizeof n) / per || h->index_len != sizeof n + n * per)
        return sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                               "snapshot's flat index part does not match its header");
    return vshim_flat_read(dim, (size_t)n, b, sizeof n, out, errbuf, errlen);
}

/* Loads the body into a state (no lock: the vindex is not shared yet); vshim_read_index() checks
 * every block of it against the table. t[0..1] receive the seconds spent in FAISS's read and in
 * the label bookkeeping. */
static int load_body(vindex *v, const struct snap_header *h, const unsigned char *body,
                     const uint64_t *table, double t[2], char *errbuf, size_t errlen)
{
    struct vstate *s = &v->s;
    FaissIndex *idx = NULL;
    struct vshim_body b = {
        .body = body, .len = (size_t)h->body_len, .hashes = table, .block = h->block};
    double t0 = vindex_mono_s();
    int rc = raw_flat(h->kind, h->flags & 1)
                 ? read_flat(&b, h, v->p.dim, &idx, errbuf, errlen)
                 : vshim_read_index(&b, (size_t)h->index_len, &idx, errbuf, errlen);
    if (rc == 0 && vshim_body_check(&b, b.len) != 0) { /* the rest: the HNSW dead map */
        faiss_Index_free(idx);
        rc = sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                             "a block of the snapshot body fails its checksum");
    }
    t[0] = vindex_mono_s() - t0;
    if (rc) return rc;
    t0 = vindex_mono_s();
    faiss_Index_free(s->idx);
    s->idx = idx;
    int is_ivf = faiss_IndexIVF_cast(idx) != NULL;
    int want_ivf = s->kind == KIND_IVF && (h->flags & 1);
    if (faiss_Index_d(idx) != v->p.dim || (uint64_t)faiss_Index_ntotal(idx) != h->ntotal ||
        is_ivf != want_ivf || (s->kind == KIND_HNSW) != (vshim_is_hnsw(idx) != 0))
        return sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                               "snapshot index does not match its header (type, dim or size)");
    s->trained = want_ivf;
    if (s->kind == KIND_HNSW &&
        (rc = vshim_set_hnsw(idx, v->p.ef_construction, v->p.ef_search, errbuf, errlen)) != 0)
        return rc;

    size_t ntotal = (size_t)h->ntotal;
    int64_t *labels = malloc((ntotal ? ntotal : 1) * sizeof *labels);
    if (!labels) return VINDEX_ENOMEM;
    rc = vshim_labels(idx, is_ivf ? VSHIM_IVF : VSHIM_IDMAP, labels, errbuf, errlen);
    if (rc == 0 && s->kind == KIND_HNSW) {
        rc = vindex_grow_dead(s, ntotal);
        if (rc == 0 && ntotal) memcpy(s->dead, body + h->index_len, ntotal);
    }
    if (rc == 0) rc = vindex_lset_reserve(&s->live, ntotal);
    s->ndead = 0;
    for (size_t i = 0; rc == 0 && i < ntotal; i++) {
        if (s->kind == KIND_HNSW && s->dead[i]) {
            if (s->dead[i] != 1) rc = VINDEX_ECORRUPT;
            s->ndead++;
            continue;
        }
        if (labels[i] < 0 || vindex_lset_has(&s->live, labels[i]))
            rc = VINDEX_ECORRUPT;
        else
            vindex_lset_put(&s->live, labels[i]);
    }
    free(labels);
    /* The int8 copy is derived (one pass over the vectors), not stored: the format is unchanged. */
    if (rc == 0 && s->kind == KIND_FLAT)
        rc = qscan_rebuild(&s->q, (size_t)v->p.dim, vshim_flat_vectors(idx), ntotal);
    t[1] = vindex_mono_s() - t0;
    if (rc == VINDEX_ECORRUPT || (rc == 0 && (s->live.n != h->count || s->ndead != h->ndead)))
        return sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                               "snapshot labels do not match its header (duplicates or counts)");
    return rc;
}

int vindex_snapshot_read(const char *path, const struct vindex_params *params, vindex **out,
                         struct vindex_snapshot_meta *meta, char *errbuf, size_t errlen)
{
    if (!path || !out) return sbert_util_errf(errbuf, errlen, VINDEX_EINVAL, "NULL path or out");
    *out = NULL;
    if (meta) memset(meta, 0, sizeof *meta);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        sbert_util_errf(errbuf, errlen, VINDEX_EIO, "opening snapshot %s: %s", path, strerror(e));
        errno = e;
        return VINDEX_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return sbert_util_errf(errbuf, errlen, VINDEX_EIO, "stat of snapshot %s: %s", path,
                               strerror(e));
    }
    size_t size = (size_t)st.st_size;
    if (size < SNAP_FIXED) {
        close(fd);
        return sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                               "snapshot %s is truncated (%zu bytes)", path, size);
    }
    double t0 = vindex_mono_s();
    /* MAP_POPULATE: the loader touches every page once, in order; mapping them all in one call
     * costs less than a fault per page (or per fault-around window). */
    unsigned char *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return sbert_util_errf(errbuf, errlen, VINDEX_EIO, "mapping snapshot %s: %s", path,
                               strerror(e));
    double t_map = vindex_mono_s() - t0, t_load[2] = {0, 0};

    struct snap_header h;
    struct vindex_snapshot_meta m;
    vindex *v = NULL;
    uint64_t *table = NULL;
    size_t nblocks = 0;
    struct vindex_params def = vindex_default_params();
    const struct vindex_params *p = params ? params : &def;
    int rc = vsnap_parse_header(map, size, path, &h, &m, errbuf, errlen);
    if (rc == 0 && meta) *meta = m;
    if (rc != 0) {
        /* vsnap_parse_header() has written the reason */
    } else if (!p->spec || strcmp(m.spec, p->spec) != 0 || m.dim != p->dim) {
        rc = sbert_util_errf(errbuf, errlen, VINDEX_ESPEC,
                             "snapshot %s is for \"%s\" dim %d, expected \"%s\" dim %d", path,
                             m.spec, m.dim, p->spec ? p->spec : "(null)", p->dim);
    } else if (!(nblocks = vsnap_blocks_fit(&h, size))) {
        rc = sbert_util_errf(
            errbuf, errlen, VINDEX_ECORRUPT,
            "snapshot %s is truncated or has trailing bytes (%zu bytes, header says a body "
            "of %llu in blocks of %u)",
            path, size, (unsigned long long)h.body_len, h.block);
    } else if ((rc = vsnap_read_table(map, &h, nblocks, &table, path, errbuf, errlen)) != 0) {
        /* vsnap_read_table() has written the reason */
    } else if ((rc = vindex_create(p, &v, errbuf, errlen)) == 0) {
        if ((uint32_t)v->s.kind != h.kind ||
            h.body_len != h.index_len + (v->s.kind == KIND_HNSW ? h.ntotal : 0))
            rc = sbert_util_errf(errbuf, errlen, VINDEX_ECORRUPT,
                                 "snapshot %s: body layout does not match its kind", path);
        else
            rc = load_body(v, &h, map + h.header_len, table, t_load, errbuf, errlen);
    }
    free(table);
    munmap(map, size);
    if (rc) {
        vindex_free(v);
        return rc;
    }
    vlog(v, VINDEX_LOG_DEBUG,
         "snapshot %s (%zu bytes) loaded in %.3f s: map %.3f s, checked index read %.3f s, labels "
         "%.3f s",
         path, size, vindex_mono_s() - t0, t_map, t_load[0], t_load[1]);
    pthread_rwlock_wrlock(&v->lock);
    vindex_maybe_train(v);
    pthread_rwlock_unlock(&v->lock);
    *out = v;
    return 0;
}
