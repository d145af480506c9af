/*
 * sha256.h — FIPS 180-4 SHA-256, private to the encoder (it fingerprints model.safetensors for
 * sbert_model_info). A context is plain data owned by the caller; no shared state, so any number
 * of threads may hash at once on their own contexts.
 */
#ifndef SBERT_SHA256_H
#define SBERT_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sbert_sha256 {
    uint32_t h[8];
    uint64_t total;   /* bytes hashed so far */
    uint8_t buf[64];  /* a partial block */
    size_t used;      /* bytes in buf */
    int accel;        /* set by init when the CPU has SHA extensions; 0 forces the portable code */
};

void sbert_sha256_init(struct sbert_sha256 *c);
void sbert_sha256_update(struct sbert_sha256 *c, const void *data, size_t len);
/* Writes the 32-byte digest; c must be initialised again before reuse. */
void sbert_sha256_final(struct sbert_sha256 *c, uint8_t digest[32]);
/* One-shot: writes 64 lowercase hex digits and a NUL into hex. */
void sbert_sha256_hex(const void *data, size_t len, char hex[65]);

#endif
