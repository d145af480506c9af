/*
 * model.h — the loaded model and the forward pass, private to the encoder (model.c loads,
 * forward.c computes, encode.c batches). Everything in struct sbert_model is read-only after
 * sbert_model_load() returns; forward state lives in a caller-owned struct sbert_fwd_scratch.
 */
#ifndef SBERT_MODEL_H
#define SBERT_MODEL_H

#include "internal.h"
#include "safetensors.h"

enum { SBERT_ACT_GELU_ERF = 0, SBERT_ACT_GELU_TANH = 1 };

struct sbert_layer_weights {
    float *qkv_w; /* owned: [3H x H], the query, key and value weights stacked row-wise */
    float *qkv_b; /* owned: [3H] */
    const float *ao_w, *ao_b;     /* attention output dense [H x H], [H] */
    const float *ln1_g, *ln1_b;   /* attention output LayerNorm */
    const float *in_w, *in_b;     /* intermediate dense [I x H], [I] */
    const float *out_w, *out_b;   /* output dense [H x I], [H] */
    const float *ln2_g, *ln2_b;   /* output LayerNorm */
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
};

/*
 * Per-call scratch for packed batches of at most max_tokens tokens and sequences of at most
 * max_len tokens, for n_threads threads. Owned by one sbert_encode() call.
 */
struct sbert_fwd_scratch {
    int max_tokens, max_len, n_threads;
    float *x, *qkv, *ctx, *inter; /* [T x H], [T x 3H], [T x H], [T x I] */
    float *scores;                /* n_threads x [max_len x (head_dim + 1)]: attention scratch */
    int *start, *pos;             /* [max_tokens + 1]: first row of each sequence; token positions */
    int *gstart;                  /* [n_threads + 1]: first sequence of each thread's group */
};

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

#endif
