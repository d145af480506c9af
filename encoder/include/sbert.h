/*
 * sbert.h — the sbertd encoder: a sentence-transformers (BERT architecture) model in C.
 *
 * Loads a standard sentence-transformers directory (config.json, vocab.txt, tokenizer_config.json,
 * special_tokens_map.json, sentence_bert_config.json, modules.json, 1_Pooling/config.json,
 * model.safetensors), tokenizes text exactly as HF BertTokenizerFast does, runs the BERT forward
 * pass in fp32 through BLAS, pools (mean, CLS or max) and L2-normalises when the model has a
 * Normalize module. The result matches sentence-transformers' model.encode().
 *
 * Thread safety: an sbert_model (weights, vocabulary, configuration) is read-only once
 * sbert_model_load() has returned; any number of threads may call sbert_tokenize() and
 * sbert_encode() on the same model at once. Each sbert_encode() call owns its scratch memory.
 * The encoder runs its own (OpenMP) threads, each calling BLAS single-threaded, so
 * sbert_model_load() sets OpenBLAS's thread count to 1 for the whole process
 * (openblas_set_num_threads(1)); OpenBLAS's own pool would otherwise oversubscribe the cores.
 *
 * Errors: every function that can fail returns 0 (SBERT_OK) or a negative SBERT_E* code;
 * sbert_strerror() names it. Functions that read files also take an optional errbuf that receives
 * a sentence naming the file and the reason. This library never prints: it logs through the
 * callback given in sbert_model_params, if any.
 */
#ifndef SBERT_H
#define SBERT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBERT_VERSION "0.1.0"

enum {
    SBERT_OK = 0,
    SBERT_ENOMEM = -1,       /* allocation failed */
    SBERT_EIO = -2,          /* a model file could not be opened, read or mapped */
    SBERT_EFORMAT = -3,      /* a model file is malformed or truncated */
    SBERT_EUNSUPPORTED = -4, /* well-formed but not supported (architecture, dtype, activation) */
    SBERT_EUTF8 = -5,        /* an input text is not valid UTF-8 */
    SBERT_EINVAL = -6,       /* a bad argument (NULL pointer, zero capacity, ...) */
    SBERT_ETHREAD = -7,      /* a worker thread could not be started */
};

/* Returns a static string describing err; never NULL. */
const char *sbert_strerror(int err);

enum { SBERT_LOG_ERROR = 0, SBERT_LOG_WARN = 1, SBERT_LOG_INFO = 2, SBERT_LOG_DEBUG = 3 };

/* A log sink. msg is valid only during the call. May be called from any thread that calls into
 * the library, so it must be thread-safe. */
typedef void (*sbert_log_fn)(int level, const char *msg, void *user);

enum { SBERT_POOL_MEAN = 0, SBERT_POOL_CLS = 1, SBERT_POOL_MAX = 2 };

/*
 * The arithmetic of the dense layers.
 * SBERT_PRECISION_FP32: fp32 through BLAS, sentence-transformers' results to ~1e-7 (the default).
 * SBERT_PRECISION_INT8: the four dense layers of each transformer layer in int8: weights s8 with
 *   one scale per output channel (quantised at load), activations s8 with one scale per token,
 * int32 sums, dequantisation + bias (+ GELU) in fp32; embeddings, LayerNorm, attention's products,
 *   softmax, residuals and pooling stay fp32. A text's vector depends on that text alone (not on
 *   its batch or the thread count) and is the same bit for bit on every CPU kernel; its cosine to
 *   the fp32 vector is about 0.999. The kernel is chosen at load for the CPU (AMX, which leaves
 *   products of fewer than 32 token rows to AVX512-VNNI; AVX512-VNNI; AVX-VNNI; AVX2; or portable
 *   C); the environment variable SBERT_INT8_ISA=scalar|avx2|avxvnni|avx512vnni|amx forces one
 *   (load fails with SBERT_EUNSUPPORTED when the CPU or OS lacks it). Choosing AMX asks Linux for
 *   the process's permission to use its tile state. At load the kernel is run against the portable
 *   one on the model's own weights: one that disagrees is not used (the next best is, with a
 *   warning through log; a forced one fails the load). int8 runs on threads of its own, not
 *   OpenMP's.
 * Vectors of different precisions are close but not equal: do not mix them in one index.
 */
enum { SBERT_PRECISION_FP32 = 0, SBERT_PRECISION_INT8 = 1 };

/* "fp32" or "int8"; NULL for an unknown precision. */
const char *sbert_precision_name(int precision);

typedef struct sbert_model sbert_model;

struct sbert_model_params {
    int n_threads;    /* threads sbert_encode() uses when its params say 0; default 1 */
    sbert_log_fn log; /* NULL: no logging */
    void *log_user;
    int precision; /* SBERT_PRECISION_*; default SBERT_PRECISION_FP32 */
};

/* Returns the defaults: 1 thread, no logging, fp32. */
struct sbert_model_params sbert_model_default_params(void);

/*
 * Loads the model in directory dir. params may be NULL for the defaults. model.safetensors is
 * memory-mapped read-only; F32 and F16 tensors are accepted (F16 is widened to F32 at load).
 * Every tensor's dtype and shape is checked against config.json; unused tensors (pooler,
 * position_ids) are skipped.
 * On success returns 0 and *out owns the model (free with sbert_model_free()).
 * On failure returns a negative code, sets *out to NULL, and writes a message naming the file and
 * the reason into errbuf (when errbuf is not NULL and errlen > 0).
 */
int sbert_model_load(const char *dir, const struct sbert_model_params *params, sbert_model **out,
                     char *errbuf, size_t errlen);

/* Releases the model and unmaps its files. NULL is allowed. No call on m may be in progress. */
void sbert_model_free(sbert_model *m);

struct sbert_model_info {
    const char *name;        /* the directory's last path component */
    const char *path;        /* the directory as given to sbert_model_load() */
    char weights_sha256[65]; /* hex sha256 of model.safetensors, NUL-terminated */
    int dim;                 /* embedding dimension (hidden_size) */
    int max_seq_length;      /* tokens per text including [CLS] and [SEP] (sentence_bert_config) */
    int n_layers, n_heads, intermediate_size, vocab_size;
    int pooling;   /* SBERT_POOL_* */
    int normalize; /* 1 when a Normalize module follows pooling */
    int do_lower_case, strip_accents, tokenize_chinese_chars;
    int precision;           /* SBERT_PRECISION_* the model was loaded with */
    const char *int8_kernel; /* int8: the kernel in use ("amx", "avx512vnni", "avxvnni", "avx2",
                                "scalar");
                                else NULL */
};

/* Returns a description of m. Borrowed: valid until sbert_model_free(m). */
const struct sbert_model_info *sbert_model_info(const sbert_model *m);

/*
 * Tokenizes one text as sentence-transformers does: surrounding whitespace stripped, HF
 * BertTokenizerFast normalisation and WordPiece, [CLS] ... [SEP], truncated to max_seq_length ids.
 * text is UTF-8 of len bytes (it need not be NUL-terminated). Writes at most cap ids to ids and
 * sets *n_ids to the number written (>= 2: [CLS] and [SEP] are always there). *truncated (may be
 * NULL) is set to 1 when tokens were dropped to fit max_seq_length or cap, else 0.
 * Invalid UTF-8 (overlong forms, surrogates, code points above U+10FFFF, cut sequences) is
 * refused with SBERT_EUTF8 and nothing else happens: sbertd never guesses at bytes.
 */
int sbert_tokenize(const sbert_model *m, const char *text, size_t len, int32_t *ids, size_t cap,
                   size_t *n_ids, int *truncated);

struct sbert_encode_params {
    int n_threads;      /* 0: the model's default */
    uint64_t *n_tokens; /* when not NULL, receives the tokens the call encoded ([CLS] and [SEP]
                           included; after truncation), for throughput counters */
};

/* Returns {0}: the model's default thread count. */
struct sbert_encode_params sbert_encode_default_params(void);

/*
 * Encodes n texts into out, n * dim floats, row i for texts[i] (input order, whatever order they
 * are computed in). lens[i] is the byte length of texts[i]; lens may be NULL when every text is
 * NUL-terminated. params may be NULL for the defaults. truncated, when not NULL, receives n flags
 * (1 where a text was cut to max_seq_length). Texts are sorted by length internally and run in
 * packed batches, so padding costs nothing; memory is bounded whatever n is (4096 texts are
 * tokenized at a time, each forward pass holds at most 2048 tokens). Up to n_threads threads
 * share a pass: with at least n_threads texts in it each takes a group of whole texts; with
 * fewer (a call with one text) all of them share every layer (dense layers by output columns,
 * attention by head).
 * Results do not depend on the thread count or on the other texts of the call beyond float
 * rounding (~1e-7).
 * On failure returns a negative code; when the failure is one text's (SBERT_EUTF8), *bad_index
 * (may be NULL) names it. out's contents are then unspecified.
 */
int sbert_encode(const sbert_model *m, const char *const *texts, const size_t *lens, size_t n,
                 float *out, const struct sbert_encode_params *params, int *truncated,
                 size_t *bad_index);

#ifdef __cplusplus
}
#endif

#endif
