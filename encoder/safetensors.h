/*
 * safetensors.h — a read-only view of a .safetensors file, private to the encoder.
 *
 * Format (https://huggingface.co/docs/safetensors): an 8-byte little-endian header length N, N
 * bytes of JSON mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets
 * relative to the byte after the header), then the data. sbert_st_open() maps the file read-only
 * and validates every entry against the file size before anything is read through it.
 *
 * Thread safety: an open file is read-only; sbert_st_get_f32() is called only while the model is
 * being loaded (it may allocate), lookups afterwards touch nothing shared.
 */
#ifndef SBERT_SAFETENSORS_H
#define SBERT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define SBERT_ST_MAX_DIMS 8

typedef struct sbert_st_file sbert_st_file;

/*
 * Maps path and parses its header. On success *out owns the mapping (sbert_st_close()). On
 * failure returns SBERT_EIO (cannot open/map) or SBERT_EFORMAT (truncated, bad JSON, offsets
 * outside the data, sizes that do not match shapes), *out is NULL, and errbuf names the file and
 * the problem.
 */
int sbert_st_open(const char *path, sbert_st_file **out, char *errbuf, size_t errlen);

/* Unmaps the file and frees every buffer sbert_st_get_f32() allocated. NULL is allowed. */
void sbert_st_close(sbert_st_file *f);

/* The whole mapped file (for fingerprinting). Borrowed until sbert_st_close(). */
const void *sbert_st_bytes(const sbert_st_file *f, size_t *size);

/*
 * Finds tensor name (also as "bert." + name, the prefix BertForX checkpoints use), checks that its
 * shape is exactly shape[0..ndim-1], and sets *data to its values as float32: a pointer into the
 * mapping for aligned little-endian F32, otherwise a buffer converted from F16/BF16 (or copied
 * when misaligned) that the file owns. Borrowed until sbert_st_close().
 * Errors: SBERT_EFORMAT (missing, wrong shape), SBERT_EUNSUPPORTED (dtype not F32/F16/BF16),
 * SBERT_ENOMEM; errbuf names the tensor and the file.
 */
int sbert_st_get_f32(sbert_st_file *f, const char *name, const int64_t *shape, int ndim,
                     const float **data, char *errbuf, size_t errlen);

#endif
