/*
 * The BERT encoder forward pass in fp32 (HF transformers' BertModel, eval mode), then pooling.
 *
 * Sequences are packed back to back into one [tokens x hidden] matrix, so every dense layer is one
 * matrix product over real tokens only; attention, the one place tokens of a sequence meet, runs
 * per (sequence, head) within the sequence's own rows, which is exactly what BERT's padding mask
 * computes (masked scores get exp(-huge) = 0). Threads split the rows for the dense layers and the
 * (sequence, head) pairs for attention; each calls single-threaded BLAS.
 */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

int sbert_fwd_scratch_init(struct sbert_fwd_scratch *s, const struct sbert_model *m, int max_tokens,
                           int max_len, int n_threads)
{
    memset(s, 0, sizeof *s);
    s->max_tokens = max_tokens;
    s->max_len = max_len;
    s->n_threads = n_threads;
    size_t T = (size_t)max_tokens, H = (size_t)m->hidden, NI = (size_t)m->inter;
    size_t L = (size_t)max_len;
    s->x = malloc(T * H * sizeof(float));
    s->qkv = malloc(T * 3 * H * sizeof(float));
    s->ctx = malloc(T * H * sizeof(float));
    s->inter = malloc(T * (NI > H ? NI : H) * sizeof(float));
    s->scores = malloc((size_t)n_threads * L * L * sizeof(float));
    s->start = malloc((T + 1) * sizeof(int));
    s->pos = malloc((T + 1) * sizeof(int));
    if (!s->x || !s->qkv || !s->ctx || !s->inter || !s->scores || !s->start || !s->pos) {
        sbert_fwd_scratch_free(s);
        return SBERT_ENOMEM;
    }
    return 0;
}

void sbert_fwd_scratch_free(struct sbert_fwd_scratch *s)
{
    free(s->x);
    free(s->qkv);
    free(s->ctx);
    free(s->inter);
    free(s->scores);
    free(s->start);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

/* x = LayerNorm(x) with gamma g and beta b over n values (biased variance, as torch). */
static void layer_norm(float *x, int n, const float *g, const float *b, float eps)
{
    float mean = 0;
    for (int i = 0; i < n; i++) mean += x[i];
    mean /= (float)n;
    float var = 0;
    for (int i = 0; i < n; i++) {
        float d = x[i] - mean;
        var += d * d;
    }
    var /= (float)n;
    float r = 1.0f / sqrtf(var + eps);
    for (int i = 0; i < n; i++) x[i] = (x[i] - mean) * r * g[i] + b[i];
}

static float gelu(float x, int act)
{
    if (act == SBERT_ACT_GELU_ERF) return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    /* gelu_new / gelu_pytorch_tanh */
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

/* y[M x N] = x[M x K] * W^T for W stored [N x K] (torch Linear layout). */
static void linear(const float *x, int M, int K, const float *w, int N, float *y)
{
    if (M <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
}

/* Softmax attention for one head of one sequence of L tokens. q/k/v point at the head's first
 * column in the packed [T x 3H] matrix (row stride ld), ctx at its column in [T x H]. */
static void attend(const float *q, const float *k, const float *v, int ld, int L, int dh, float scale,
                   float *ctx, int ldc, float *sc)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, dh, scale, q, ld, k, ld, 0.0f, sc, L);
    for (int i = 0; i < L; i++) {
        float *r = sc + (size_t)i * L, mx = r[0], sum = 0;
        for (int j = 1; j < L; j++) mx = r[j] > mx ? r[j] : mx;
        for (int j = 0; j < L; j++) sum += (r[j] = expf(r[j] - mx));
        float inv = 1.0f / sum;
        for (int j = 0; j < L; j++) r[j] *= inv;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, dh, L, 1.0f, sc, L, v, ld, 0.0f, ctx,
                ldc);
}

void sbert_forward(const struct sbert_model *m, struct sbert_fwd_scratch *s, const int32_t *ids,
                   const int *lens, int nseq, float *out)
{
    const int H = m->hidden, NI = m->inter, nh = m->heads, dh = H / nh, H3 = 3 * H;
    const float scale = 1.0f / sqrtf((float)dh), eps = m->ln_eps;
    int T = 0;
    for (int i = 0; i < nseq; i++) T += lens[i];
    int *start = s->start, *pos = s->pos;
    start[0] = 0;
    for (int i = 0; i < nseq; i++) {
        start[i + 1] = start[i] + lens[i];
        for (int p = 0; p < lens[i]; p++) pos[start[i] + p] = p;
    }
    float *x = s->x, *qkv = s->qkv, *ctx = s->ctx, *inter = s->inter;

#pragma omp parallel num_threads(s->n_threads)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int r0 = (int)((long)T * t / nt), r1 = (int)((long)T * (t + 1) / nt), M = r1 - r0;
        float *sc = s->scores + (size_t)t * s->max_len * s->max_len;

        for (int r = r0; r < r1; r++) {
            float *xr = x + (size_t)r * H;
            const float *we = m->word + (size_t)ids[r] * H, *pe = m->pos + (size_t)pos[r] * H;
            for (int j = 0; j < H; j++) xr[j] = we[j] + m->type0[j] + pe[j];
            layer_norm(xr, H, m->emb_ln_g, m->emb_ln_b, eps);
        }
        for (int l = 0; l < m->layers; l++) {
            const struct sbert_layer_weights *w = &m->layer[l];
            linear(x + (size_t)r0 * H, M, H, w->qkv_w, H3, qkv + (size_t)r0 * H3);
            for (int r = r0; r < r1; r++) {
                float *y = qkv + (size_t)r * H3;
                for (int j = 0; j < H3; j++) y[j] += w->qkv_b[j];
            }
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
            for (int p = 0; p < nseq * nh; p++) {
                int sq = p / nh, h = p % nh;
                const float *base = qkv + (size_t)start[sq] * H3 + h * dh;
                attend(base, base + H, base + 2 * H, H3, lens[sq], dh, scale,
                       ctx + (size_t)start[sq] * H + h * dh, H, sc);
            }
            /* implicit barrier: every row's context is complete */
            float *a = qkv; /* free once attention is done: the attention output, [T x H] */
            linear(ctx + (size_t)r0 * H, M, H, w->ao_w, H, a + (size_t)r0 * H);
            for (int r = r0; r < r1; r++) {
                float *y = a + (size_t)r * H, *xr = x + (size_t)r * H;
                for (int j = 0; j < H; j++) xr[j] += y[j] + w->ao_b[j];
                layer_norm(xr, H, w->ln1_g, w->ln1_b, eps);
            }
            linear(x + (size_t)r0 * H, M, H, w->in_w, NI, inter + (size_t)r0 * NI);
            for (int r = r0; r < r1; r++) {
                float *y = inter + (size_t)r * NI;
                for (int j = 0; j < NI; j++) y[j] = gelu(y[j] + w->in_b[j], m->act);
            }
            linear(inter + (size_t)r0 * NI, M, NI, w->out_w, H, ctx + (size_t)r0 * H);
            for (int r = r0; r < r1; r++) {
                float *y = ctx + (size_t)r * H, *xr = x + (size_t)r * H;
                for (int j = 0; j < H; j++) xr[j] += y[j] + w->out_b[j];
                layer_norm(xr, H, w->ln2_g, w->ln2_b, eps);
            }
#pragma omp barrier
        }
    }

    for (int i = 0; i < nseq; i++) {
        float *o = out + (size_t)i * H;
        const float *xs = x + (size_t)start[i] * H;
        if (m->info.pooling == SBERT_POOL_CLS) {
            memcpy(o, xs, (size_t)H * sizeof *o);
        } else if (m->info.pooling == SBERT_POOL_MAX) {
            memcpy(o, xs, (size_t)H * sizeof *o);
            for (int p = 1; p < lens[i]; p++)
                for (int j = 0; j < H; j++) o[j] = xs[(size_t)p * H + j] > o[j] ? xs[(size_t)p * H + j] : o[j];
        } else {
            memset(o, 0, (size_t)H * sizeof *o);
            for (int p = 0; p < lens[i]; p++)
                for (int j = 0; j < H; j++) o[j] += xs[(size_t)p * H + j];
            for (int j = 0; j < H; j++) o[j] /= (float)lens[i];
        }
        if (m->info.normalize) {
            double n2 = 0;
            for (int j = 0; j < H; j++) n2 += (double)o[j] * o[j];
            float inv = 1.0f / fmaxf((float)sqrt(n2), 1e-12f);
            for (int j = 0; j < H; j++) o[j] *= inv;
        }
    }
}
