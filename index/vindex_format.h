/*
 * vindex_format.h — private to index/'s vector index: the snapshot file format (layout below),
 * its header parser and block-table checks, shared by vindex_snap.c (which writes and loads
 * snapshots through FAISS) and vindex_format.c's vindex_snapshot_check (which checks one without
 * FAISS, so a program that only verifies stores, sbertctl restore, does not load FAISS).
 */
#ifndef SBERT_VINDEX_FORMAT_H
#define SBERT_VINDEX_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "vindex.h"

/*
 * File layout (little-endian, the only byte order this runs on):
 *    0  magic "SBVINDEX"        8
 *    8  u32 format version      (VINDEX_SNAPSHOT_VERSION)
 *   12  u32 header length       (SNAP_FIXED + spec length)
 *   16  u32 dim
 *   20  u32 kind                (0 Flat, 1 HNSW, 2 IVF)
 *   24  u32 flags               (bit 0: IVF trained)
 *   28  u32 spec length         (< 128)
 *   32  u64 store change counter
 *   40  u64 live count
 *   48  u64 FAISS ntotal
 *   56  u64 tombstone count
 *   64  u64 FAISS index length  (bytes written by faiss write_index)
 *   72  u64 body length         (index + the HNSW dead map of ntotal bytes)
 *   80  u64 block table hash    (vindex_hash64 of the block table)
 *   88  u32 caller bytes length (<= VINDEX_SNAPSHOT_USER_MAX)
 *   92  u32 block size          (SNAP_BLOCK)
 *   96  caller bytes, zero padded to 64
 *  160  u64 header hash         (of bytes 0..159 and the spec)
 *  168  spec bytes
 *  then the body, then the block table: one u64 vindex_hash64 per block of the body (blocks of
 *  the block size, the last one shorter).
 * The index part of the body is FAISS's write_index stream, except for Flat and untrained IVF
 * (an IDMap2 over Flat): there it is u64 n, n i64 labels (in position order), n * dim f32
 * vectors, which the loader copies into place (vshim_flat_make) instead of having FAISS grow and
 * zero-fill them page by page.
 * Version 1 had one hash of the whole body, checked in a pass of its own before FAISS parsed it
 * (and FAISS then zero-filled the vectors page fault by page fault before copying them in).
 * Per-block hashes let the loader check each block just before it copies it, while it is in
 * cache, so FAISS still parses only checked bytes and the body is read once. Measured here at
 * 1M x 384 Flat on a loaded 2-core machine (load 12): 2.1-3.1 s of CPU per load with version 1,
 * 1.4 s with version 2.
 */
#define SNAP_MAGIC "SBVINDEX"
#define SNAP_HASHED 160u
#define SNAP_FIXED 168u
/* 256 KiB: a block stays in L2 between its hash and its copy. */
#define SNAP_BLOCK (256u * 1024u)

struct snap_header {
    uint32_t version, header_len, dim, kind, flags, spec_len, user_len, block;
    uint64_t change, count, ntotal, ndead, index_len, body_len, table_hash, header_hash;
};

static inline void put32(unsigned char *p, uint32_t x)
{
    memcpy(p, &x, 4);
}
static inline void put64(unsigned char *p, uint64_t x)
{
    memcpy(p, &x, 8);
}
static inline uint32_t get32(const unsigned char *p)
{
    uint32_t x;
    memcpy(&x, p, 4);
    return x;
}
static inline uint64_t get64(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* The hash of the fixed header bytes and the spec, as stored at SNAP_HASHED. */
uint64_t vsnap_header_hash(const unsigned char *fixed, const char *spec, size_t spec_len);

/* Parses and checks the header at map (len bytes of the file at path) into *h and, when meta is
 * not NULL, *meta. Returns 0, VINDEX_ECORRUPT or VINDEX_EVERSION with errbuf saying why. */
int vsnap_parse_header(const unsigned char *map, size_t len, const char *path,
                       struct snap_header *h, struct vindex_snapshot_meta *meta, char *errbuf,
                       size_t errlen);

/* The number of blocks of the body when the file's size is exactly header + body + block table,
 * else 0 (a sound body is never empty, so 0 always means an unsound file). */
size_t vsnap_blocks_fit(const struct snap_header *h, size_t size);

/* Copies the block table out of the map into *out (malloc'd, freed by the caller) and checks it
 * against the header's hash. Returns 0, VINDEX_ENOMEM or VINDEX_ECORRUPT. */
int vsnap_read_table(const unsigned char *map, const struct snap_header *h, size_t nblocks,
                     uint64_t **out, const char *path, char *errbuf, size_t errlen);

#endif
