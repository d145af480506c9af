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
    s->scores = malloc((size_t)n_threads * L * (size_t)(m->hidden / m->heads + 1) * sizeof(float));
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

/*
 * glibc (2.35+) ships SIMD versions of erff and expf in libmvec (4 ULP or better); declaring the
 * simd variants lets the vectoriser call them on 8 floats at a time. Without them the loops below
 * still compute the same functions, one element at a time.
 */
#if defined(__GLIBC__) && defined(__x86_64__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 35)
#pragma omp declare simd notinbranch
extern float erff(float);
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern float tanhf(float);
#endif

/* x = LayerNorm(x) with gamma g and beta b over n values (biased variance, as torch). */
static void layer_norm(float *restrict x, int n, const float *restrict g, const float *restrict b,
                       float eps)
{
    float sum = 0, ss = 0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++) sum += x[i];
    const float mean = sum / (float)n;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < n; i++) ss += (x[i] - mean) * (x[i] - mean);
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
#pragma omp simd
    for (int i = 0; i < n; i++) x[i] = (x[i] - mean) * r * g[i] + b[i];
}

/* y = act(y) over n values: exact erf GELU (hidden_act "gelu") or the tanh form. */
static void gelu(float *restrict y, int n, int act)
{
    if (act == SBERT_ACT_GELU_ERF) {
#pragma omp simd
        for (int i = 0; i < n; i++) y[i] = 0.5f * y[i] * (1.0f + erff(y[i] * 0.70710678118654752f));
    } else {
#pragma omp simd
        for (int i = 0; i < n; i++) {
            float x = y[i], u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            y[i] = 0.5f * x * (1.0f + tanhf(u));
        }
    }
}

/* Fills M rows of width n with the bias row b (the products then accumulate onto it). */
static void fill_rows(float *restrict y, int M, int n, const float *restrict b)
{
    for (int r = 0; r < M; r++) memcpy(y + (size_t)r * n, b, (size_t)n * sizeof *y);
}

/* Adds the bias row b to M rows of width n. */
static void add_rows(float *restrict y, int M, int n, const float *restrict b)
{
    for (int r = 0; r < M; r++) {
        float *restrict yr = y + (size_t)r * n;
#pragma omp simd
        for (int j = 0; j < n; j++) yr[j] += b[j];
    }
}

/* y[M x N] += x[M x K] * W^T for W stored [N x K] (torch Linear layout). */
static void linear_acc(const float *x, int M, int K, const float *w, int N, float *y)
{
    if (M <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 1.0f, y, N);
}

/*
 * Softmax attention for one head of one sequence of L tokens. q, k, v point at the head's first
 * column in the packed [T x 3H] matrix (row stride ld), ctx at its column in [T x H] (stride ldc).
 * kt is scratch of dh * L floats (K transposed, so each score row is a run of contiguous
 * multiply-adds), s of L floats.
 */
static void attend(const float *q, const float *k, const float *v, int ld, int L, int dh, float scale,
                   float *restrict ctx, int ldc, float *restrict kt, float *restrict s)
{
    for (int j = 0; j < L; j++)
        for (int d = 0; d < dh; d++) kt[(size_t)d * L + j] = k[(size_t)j * ld + d];
    for (int i = 0; i < L; i++) {
        const float *qi = q + (size_t)i * ld;
        for (int j = 0; j < L; j++) s[j] = 0;
        for (int d = 0; d < dh; d++) {
            const float qd = qi[d] * scale;
            const float *restrict kd = kt + (size_t)d * L;
#pragma omp simd
            for (int j = 0; j < L; j++) s[j] += qd * kd[j];
        }
        float mx = s[0], sum = 0;
        for (int j = 1; j < L; j++) mx = s[j] > mx ? s[j] : mx;
#pragma omp simd
        for (int j = 0; j < L; j++) s[j] = expf(s[j] - mx);
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < L; j++) sum += s[j];
        const float inv = 1.0f / sum;
        float *restrict c = ctx + (size_t)i * ldc;
        for (int d = 0; d < dh; d++) c[d] = 0;
        for (int j = 0; j < L; j++) {
            const float p = s[j] * inv;
            const float *restrict vj = v + (size_t)j * ld;
#pragma omp simd
            for (int d = 0; d < dh; d++) c[d] += p * vj[d];
        }
    }
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
        float *kt = s->scores + (size_t)t * s->max_len * (dh + 1), *srow = kt + (size_t)s->max_len * dh;

        for (int r = r0; r < r1; r++) {
            float *xr = x + (size_t)r * H;
            const float *we = m->word + (size_t)ids[r] * H, *pe = m->pos + (size_t)pos[r] * H;
            for (int j = 0; j < H; j++) xr[j] = we[j] + m->type0[j] + pe[j];
            layer_norm(xr, H, m->emb_ln_g, m->emb_ln_b, eps);
        }
        for (int l = 0; l < m->layers; l++) {
            const struct sbert_layer_weights *w = &m->layer[l];
            float *xr = x + (size_t)r0 * H;
            fill_rows(qkv + (size_t)r0 * H3, M, H3, w->qkv_b);
            linear_acc(xr, M, H, w->qkv_w, H3, qkv + (size_t)r0 * H3);
#pragma omp barrier
#pragma omp for schedule(dynamic, 1)
            for (int p = 0; p < nseq * nh; p++) {
                int sq = p / nh, h = p % nh;
                const float *base = qkv + (size_t)start[sq] * H3 + h * dh;
                attend(base, base + H, base + 2 * H, H3, lens[sq], dh, scale,
                       ctx + (size_t)start[sq] * H + h * dh, H, kt, srow);
            }
            /* implicit barrier: every row's context is complete. The residual stream x takes
             * the bias and the products in place, then LayerNorm. */
            add_rows(xr, M, H, w->ao_b);
            linear_acc(ctx + (size_t)r0 * H, M, H, w->ao_w, H, xr);
            for (int r = 0; r < M; r++) layer_norm(xr + (size_t)r * H, H, w->ln1_g, w->ln1_b, eps);
            fill_rows(inter + (size_t)r0 * NI, M, NI, w->in_b);
            linear_acc(xr, M, H, w->in_w, NI, inter + (size_t)r0 * NI);
            gelu(inter + (size_t)r0 * NI, M * NI, m->act);
            add_rows(xr, M, H, w->out_b);
            linear_acc(inter + (size_t)r0 * NI, M, NI, w->out_w, H, xr);
            for (int r = 0; r < M; r++) layer_norm(xr + (size_t)r * H, H, w->ln2_g, w->ln2_b, eps);
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
