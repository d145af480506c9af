/*
 * vindex_hash.h — private to index/'s vector index: the checksum of vindex snapshots (their
 * header, block table and each body block; format in vindex_snap.c), used by vindex_snap.c to
 * write and check them and by vindex_shim.cpp to check body blocks as FAISS reads them. Its own
 * file so that neither of those depends on the other for it.
 *
 * A streaming 64-bit hash with XXH64's round and avalanche, not claimed to be XXH64-compatible:
 * it guards against torn and damaged files, not against an adversary. Part of the snapshot
 * format: changing it changes every snapshot's checksums (VINDEX_SNAPSHOT_VERSION).
 * Reentrant; a struct vindex_hash belongs to one thread.
 */
#ifndef SBERT_VINDEX_HASH_H
#define SBERT_VINDEX_HASH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A hash in progress: vindex_hash_init, any number of vindex_hash_update, vindex_hash_final. */
struct vindex_hash {
    uint64_t v[4];
    uint64_t total;
    unsigned char buf[32];
    size_t nbuf;
};

void vindex_hash_init(struct vindex_hash *h);
/* Adds len bytes at data (data may be NULL when len is 0). */
void vindex_hash_update(struct vindex_hash *h, const void *data, size_t len);
/* The hash of everything added; h is unchanged. */
uint64_t vindex_hash_final(const struct vindex_hash *h);

/* The hash of len bytes at p, in one call. */
uint64_t vindex_hash64(const void *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif
