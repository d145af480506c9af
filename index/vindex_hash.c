/*
 * vindex_hash.c — the snapshot checksum (vindex_hash.h): a streaming 64-bit hash with XXH64's
 * round and avalanche (not claimed to be XXH64-compatible).
 */
#include <string.h>

#include "vindex_hash.h"

#define H_P1 11400714785074694791ULL
#define H_P2 14029467366897019727ULL
#define H_P3 1609587929392839161ULL
#define H_P4 9650029242287828579ULL
#define H_P5 2870177450012600261ULL

static uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}
static uint64_t h_round(uint64_t acc, uint64_t in)
{
    return rotl64(acc + in * H_P2, 31) * H_P1;
}
static uint64_t h_read64(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

void vindex_hash_init(struct vindex_hash *h)
{
    memset(h, 0, sizeof *h);
    h->v[0] = H_P1 + H_P2;
    h->v[1] = H_P2;
    h->v[2] = 0;
    h->v[3] = (uint64_t)0 - H_P1;
}

static void h_stripe(struct vindex_hash *h, const unsigned char *p)
{
    for (int i = 0; i < 4; i++)
        h->v[i] = h_round(h->v[i], h_read64(p + 8 * i));
}

void vindex_hash_update(struct vindex_hash *h, const void *data, size_t len)
{
    /* data may be NULL when len is 0 (an empty array); memcpy and pointer arithmetic on NULL are
     * undefined even for 0 bytes. */
    if (len == 0) return;
    const unsigned char *p = data;
    h->total += len;
    if (h->nbuf) {
        size_t take = 32 - h->nbuf < len ? 32 - h->nbuf : len;
        memcpy(h->buf + h->nbuf, p, take);
        h->nbuf += take;
        p += take;
        len -= take;
        if (h->nbuf < 32) return;
        h_stripe(h, h->buf);
        h->nbuf = 0;
    }
    for (; len >= 32; p += 32, len -= 32)
        h_stripe(h, p);
    memcpy(h->buf, p, len);
    h->nbuf = len;
}

uint64_t vindex_hash_final(const struct vindex_hash *h)
{
    uint64_t x =
        rotl64(h->v[0], 1) + rotl64(h->v[1], 7) + rotl64(h->v[2], 12) + rotl64(h->v[3], 18);
    x += h->total;
    size_t i = 0;
    for (; i + 8 <= h->nbuf; i += 8)
        x = rotl64(x ^ h_round(0, h_read64(h->buf + i)), 27) * H_P1 + H_P4;
    for (; i < h->nbuf; i++)
        x = rotl64(x ^ (h->buf[i] * H_P5), 11) * H_P1;
    x ^= x >> 33;
    x *= H_P2;
    x ^= x >> 29;
    x *= H_P3;
    x ^= x >> 32;
    return x;
}

uint64_t vindex_hash64(const void *data, size_t len)
{
    struct vindex_hash h;
    vindex_hash_init(&h);
    vindex_hash_update(&h, data, len);
    return vindex_hash_final(&h);
}
