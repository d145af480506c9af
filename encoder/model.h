/*
 * model.h — the loaded model and the forward pass, private to the encoder (model.c loads,
 * forward.c computes, encode.c batches). Everything in struct sbert_model is read-only after
 * sbert_model_load() returns; forward state lives in a caller-owned struct sbert_fwd_scratch.
 */
#ifndef SBERT_MODEL_H
#define SBERT_MODEL_H

#include "internal.h"
#include "pool.h"
#include "quant.h"
#include "safetensors.h"

enum { SBERT_ACT_GELU_ERF = 0, SBERT_ACT_GELU_TANH = 1 };
enum { SBERT_Q_QKV, SBERT_Q_AO, SBERT_Q_IN, SBERT_Q_OUT, SBERT_Q_N }; /* a layer's dense layers */

struct sbert_layer_weights {
    float *qkv_w; /* owned: [3H x H], the query, key and value weights stacked row-wise */
    float *qkv_b; /* owned: [3H] */
    const float *ao_w, *ao_b;   /* attention output dense [H x H], [H] */
    const float *ln1_g, *ln1_b; /* attention output LayerNorm */
    const float *in_w, *in_b;   /* intermediate dense [I x H], [I] */
    const float *out_w, *out_b; /* output dense [H x I], [H] */
    const float *ln2_g, *ln2_b; /* output LayerNorm */
    /* int8 precision only: the four dense layers quantised and packed (quant.h) */
    struct sbert_qweight q_qkv, q_ao, q_in, q_out;
};

struct sbert_model {
    struct sbert_model_info info;
    struct sbert_model_params params;
    char *name, *path;
    int hidden, heads, layers, inter, vocab, max_pos, type_vocab, act;
    int pool_dim; /* the Pooling module's word_embedding_dimension (0: not given) */
    float ln_eps;
    const float *word, *pos, *type0; /* embeddings; type0 is token type 0's row */
    const float *emb_ln_g, *emb_ln_b;
    struct sbert_layer_weights *layer;
    sbert_st_file *st;
    sbert_tokenizer *tok;
    int precision;        /* SBERT_PRECISION_* */
    sbert_qgemm_fn qgemm; /* int8: the kernel chosen at load */
    sbert_pool *pool;     /* int8: the forward pass's threads (internally synchronised) */
    /* int8, during sbert_model_load() only: largest |input| per channel of each dense layer,
     * [layers][SBERT_Q_N][calib_width], filled by a one-thread calibration pass (smooth.c) */
    float *calib;
    int calib_width;
};

/* int8: measures the dense layers' inputs on a fixed set of texts and re-packs the layers whose
 * inputs have outlier channels with SmoothQuant smoothing (smooth.c). Called at the end of
 * sbert_model_load(), on a model that can already encode in int8. */
int sbert_int8_smooth(struct sbert_model *m);

/*
 * Per-call scratch for packed batches of at most max_tokens tokens and sequences of at most
 * max_len tokens, for n_threads threads. Owned by one sbert_encode() call.
 */
struct sbert_fwd_scratch {
    int max_tokens, max_len, n_threads;
    float *x, *qkv, *ctx, *inter; /* [T x H], [T x 3H], [T x H], [T x I] */
    float *scores;                /* n_threads x [max_len x (head_dim + 1)]: attention scratch */
    int *start, *pos; /* [max_tokens + 1]: first row of each sequence; token positions */
    int *gstart;      /* [n_threads + 1]: first sequence of each thread's group */
    /* int8 only: s8 copies of the dense layers' inputs, one scale per row, and per-thread tiles */
    int8_t *xq, *ctxq, *inq; /* [T x H], [T x H], [T x I] */
    float *xs, *ctxs, *ins;  /* [T] each */
    int32_t *tile;           /* n_threads x [SBERT_QTILE_ROWS x SBERT_QTILE_COLS] */
};

enum { SBERT_QTILE_ROWS = 64, SBERT_QTILE_COLS = 64 }; /* an int8 dense layer's unit of work */

int sbert_fwd_scratch_init(struct sbert_fwd_scratch *s, const struct sbert_model *m, int max_tokens,
                           int max_len, int n_threads);
void sbert_fwd_scratch_free(struct sbert_fwd_scratch *s);

/*
 * Runs the encoder on nseq sequences packed back to back in ids (lens[i] ids each, sum at most
 * s->max_tokens, each at most s->max_len) and writes one pooled (and, when the model says so,
 * L2-normalised) embedding of m->hidden floats per sequence into out. Uses up to s->n_threads
 * threads: one per group of whole sequences when nseq >= n_threads, else all of them on every
 * layer (forward.c, forward_split).
 */
void sbert_forward(const struct sbert_model *m, struct sbert_fwd_scratch *s, const int32_t *ids,
                   const int *lens, int nseq, float *out);

/* sbert_forward()'s transformer layers in int8 (forward_int8.c): leaves the last hidden states in
 * s->x. s->start and s->pos must be filled. Runs on m->pool. */
void sbert_forward_int8(const struct sbert_model *m, struct sbert_fwd_scratch *s,
                        const int32_t *ids, const int *lens, int nseq);

/* ---- forward.c's fp32 building blocks, shared with forward_int8.c ---- */

/* x = LayerNorm(x) over n values with gamma g, beta b (biased variance, as torch). */
void sbert_layer_norm(float *restrict x, int n, const float *restrict g, const float *restrict b,
                      float eps);
/* y = act(y) over n values (SBERT_ACT_*). */
void sbert_gelu(float *restrict y, int n, int act);
/* Softmax attention of one head of one sequence (forward.c says how the arguments are laid out). */
void sbert_attend(const float *q, const float *k, const float *v, int ld, int L, int dh,
                  float scale, float *restrict ctx, int ldc, float *restrict kt, float *restrict s);
/* x rows r0..r1 = LayerNorm(word + position + token type 0 embeddings) of their tokens. */
void sbert_embed_rows(const struct sbert_model *m, const int32_t *ids, const int *pos, float *x,
                      int r0, int r1);

#endif
