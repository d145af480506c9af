/*
 * sbert_c.h — the encoder's stable C ABI, exported by the shared library libsbert.so.1 for
 * programs in other languages (the Python package's sbertd.Encoder loads it with ctypes).
 *
 * It is a thin layer over sbert.h that keeps to plain C types (no structs cross it), so that the
 * ABI stays the same while sbert.h grows: the functions below, with these exact signatures, make
 * up ABI version 1 (SBERT_C_ABI_VERSION; symbol version SBERT_C_1). A later version adds
 * functions and never changes these. Nothing else is exported by libsbert.so.
 *
 * Thread safety: an encoder is read-only once sbert_c_encoder_create() has returned: any number
 * of threads may call sbert_c_encoder_encode(), _dim() and _max_seq_length() on the same encoder
 * at once (each call owns its scratch memory). sbert_c_encoder_free() must not run concurrently
 * with any other call on that encoder. Each encode call runs up to the encoder's thread count of
 * OpenMP threads, each calling BLAS single-threaded: loading an encoder sets OpenBLAS's thread
 * count to 1 for the whole process (openblas_set_num_threads(1)), which affects other users of
 * the same OpenBLAS library in the process (not numpy's wheels, which bundle their own).
 *
 * Errors: functions that can fail return 0 or a negative SBERT_C_E* code (the same numbers as
 * sbert.h's SBERT_E*); sbert_c_strerror() names a code. There is no global error state:
 * sbert_c_encoder_create() writes a sentence naming the file and the reason into the caller's
 * errbuf, and an encode that fails on one text says which through *bad_index.
 *
 * The library never prints and never exits.
 */
#ifndef SBERT_C_H
#define SBERT_C_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBERT_C_ABI_VERSION 1

enum {
    SBERT_C_OK = 0,
    SBERT_C_ENOMEM = -1,       /* allocation failed */
    SBERT_C_EIO = -2,          /* a model file could not be opened, read or mapped */
    SBERT_C_EFORMAT = -3,      /* a model file is malformed or truncated */
    SBERT_C_EUNSUPPORTED = -4, /* well-formed but not supported (architecture, dtype, ...) */
    SBERT_C_EUTF8 = -5,        /* an input text is not valid UTF-8 */
    SBERT_C_EINVAL = -6,       /* a bad argument (NULL pointer, n_threads < 0, ...) */
    SBERT_C_ETHREAD = -7,      /* a worker thread could not be started */
};

typedef struct sbert_c_encoder sbert_c_encoder;

/* Returns SBERT_C_ABI_VERSION as the library was built: a caller checks it before other calls. */
int sbert_c_abi_version(void);

/* Returns a static string describing err; never NULL. */
const char *sbert_c_strerror(int err);

/*
 * Loads the sentence-transformers model directory model_dir (as sbert_model_load() does).
 * n_threads is the number of threads each encode call uses: 0 means 1; the result does not depend
 * on it beyond float rounding (see sbert_encode() in sbert.h). On success returns 0 and *out owns
 * the encoder: free it with sbert_c_encoder_free(). On failure returns a negative code, sets *out
 * to NULL and, when errbuf is not NULL and errlen > 0, writes a NUL-terminated message naming the
 * file and the reason into errbuf.
 */
int sbert_c_encoder_create(const char *model_dir, int n_threads, sbert_c_encoder **out,
                           char *errbuf, size_t errlen);

/* Releases the encoder and unmaps its files. NULL is allowed. */
void sbert_c_encoder_free(sbert_c_encoder *e);

/* The embedding dimension (384 for all-MiniLM-L6-v2). */
int sbert_c_encoder_dim(const sbert_c_encoder *e);

/* Tokens per text, [CLS] and [SEP] included (256 for all-MiniLM-L6-v2); longer texts are
 * encoded from their first tokens, as sentence-transformers does. */
int sbert_c_encoder_max_seq_length(const sbert_c_encoder *e);

/*
 * Encodes n texts into out: n * dim floats, row i for texts[i], L2-normalised when the model
 * normalises — the same numbers as sbert_encode() and the sbert-encode program. texts[i] is UTF-8
 * of lens[i] bytes (need not be NUL-terminated; an empty text is allowed); lens may be NULL when
 * every text is NUL-terminated. All pointers are borrowed for the call only. truncated, when not
 * NULL, receives n flags (1 where a text was cut to max_seq_length tokens). n == 0 does nothing
 * and returns 0.
 * On failure returns a negative code and out's contents are unspecified; when the failure is one
 * text's (SBERT_C_EUTF8), *bad_index (may be NULL) is set to its index.
 */
int sbert_c_encoder_encode(const sbert_c_encoder *e, const char *const *texts, const size_t *lens,
                           size_t n, float *out, int *truncated, size_t *bad_index);

#ifdef __cplusplus
}
#endif

#endif
