/*
 * The BERT encoder forward pass in fp32 (HF transformers' BertModel, eval mode), then pooling.
 *
 * Sequences are packed back to back into one [tokens x hidden] matrix, so every dense layer is one
 * matrix product over real tokens only; attention, the one place tokens of a sequence meet, runs
 * per (sequence, head) within the sequence's own rows, which is exactly what BERT's padding mask
 * computes (masked scores get exp(-huge) = 0). Threads take groups of whole sequences and run them
 * independently; each calls single-threaded BLAS.
 */
#include "model.h"

#include <cblas.h>
#include <math.h>
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
    s->gstart = malloc(((size_t)n_threads + 1) * sizeof(int));
    if (!s->x || !s->qkv || !s->ctx || !s->inter || !s->scores || !s->start || !s->pos ||
        !s->gstart) {
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
    free(s->gstart);
    memset(s, 0, sizeof *s);
}

/*
 * glibc (2.35+) ships SIMD versions of erff, expf and tanhf in libmvec (a few ULP); declaring the
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

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

enum { SMALL_M = 24 }; /* at most this many rows go through small_gemm() (measured crossover) */

static inline float hsum(__m256 v)
{
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_movehdup_ps(a));
    return _mm_cvtss_f32(a);
}

/*
 * y[M x N] += x[M x K] * W^T for few rows (one short text). sgemm packs all of W for every call,
 * which for a handful of rows costs more than the arithmetic; this streams W once, two x rows
 * against four W rows at a time (8 accumulators, 6 loads per 8 FMAs). K must be a multiple of 8.
 */
static void small_gemm(const float *x, int M, int K, const float *w, int N, float *y)
{
    int n = 0;
    for (; n + 4 <= N; n += 4) {
        const float *w0 = w + (size_t)n * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
        int m = 0;
        for (; m + 2 <= M; m += 2) {
            const float *xa = x + (size_t)m * K, *xb = xa + K;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0,
                   b3 = a0;
            for (int k = 0; k < K; k += 8) {
                __m256 va = _mm256_loadu_ps(xa + k), vb = _mm256_loadu_ps(xb + k);
                __m256 v0 = _mm256_loadu_ps(w0 + k), v1 = _mm256_loadu_ps(w1 + k);
                __m256 v2 = _mm256_loadu_ps(w2 + k), v3 = _mm256_loadu_ps(w3 + k);
                a0 = _mm256_fmadd_ps(va, v0, a0);
                a1 = _mm256_fmadd_ps(va, v1, a1);
                a2 = _mm256_fmadd_ps(va, v2, a2);
                a3 = _mm256_fmadd_ps(va, v3, a3);
                b0 = _mm256_fmadd_ps(vb, v0, b0);
                b1 = _mm256_fmadd_ps(vb, v1, b1);
                b2 = _mm256_fmadd_ps(vb, v2, b2);
                b3 = _mm256_fmadd_ps(vb, v3, b3);
            }
            float *ya = y + (size_t)m * N + n, *yb = ya + N;
            ya[0] += hsum(a0);
            ya[1] += hsum(a1);
            ya[2] += hsum(a2);
            ya[3] += hsum(a3);
            yb[0] += hsum(b0);
            yb[1] += hsum(b1);
            yb[2] += hsum(b2);
            yb[3] += hsum(b3);
        }
        for (; m < M; m++) {
            const float *xa = x + (size_t)m * K;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int k = 0; k < K; k += 8) {
                __m256 va = _mm256_loadu_ps(xa + k);
                a0 = _mm256_fmadd_ps(va, _mm256_loadu_ps(w0 + k), a0);
                a1 = _mm256_fmadd_ps(va, _mm256_loadu_ps(w1 + k), a1);
                a2 = _mm256_fmadd_ps(va, _mm256_loadu_ps(w2 + k), a2);
                a3 = _mm256_fmadd_ps(va, _mm256_loadu_ps(w3 + k), a3);
            }
            float *ya = y + (size_t)m * N + n;
            ya[0] += hsum(a0);
            ya[1] += hsum(a1);
            ya[2] += hsum(a2);
            ya[3] += hsum(a3);
        }
    }
    for (; n < N; n++)
        for (int m = 0; m < M; m++) {
            const float *xa = x + (size_t)m * K, *wn = w + (size_t)n * K;
            __m256 a0 = _mm256_setzero_ps();
            for (int k = 0; k < K; k += 8)
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xa + k), _mm256_loadu_ps(wn + k), a0);
            y[(size_t)m * N + n] += hsum(a0);
        }
}
#endif

/* y[M x N] += x[M x K] * W^T for W stored [N x K] (torch Linear layout). */
static void linear_acc(const float *x, int M, int K, const float *w, int N, float *y)
{
    if (M <= 0) return;
#if defined(__AVX2__) && defined(__FMA__)
    if (M <= SMALL_M && K % 8 == 0) {
        small_gemm(x, M, K, w, N, y);
        return;
    }
#endif
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
    int *start = s->start, *pos = s->pos;
    start[0] = 0;
    for (int i = 0; i < nseq; i++) {
        start[i + 1] = start[i] + lens[i];
        for (int p = 0; p < lens[i]; p++) pos[start[i] + p] = p;
    }
    float *x = s->x, *qkv = s->qkv, *ctx = s->ctx, *inter = s->inter;

    /* Split the sequences into at most n_threads consecutive groups of about equal cost (dense
     * layers grow with L, attention with L^2); each thread then runs the whole network on its own
     * group with no synchronisation at all, which also keeps it fast when the cores are shared. */
    const double per_tok = 8.0 * H * H + 4.0 * H * NI, per_pair = 4.0 * H;
    double total = 0;
    for (int i = 0; i < nseq; i++) total += lens[i] * (per_tok + per_pair * lens[i]);
    int ng = s->n_threads < nseq ? s->n_threads : nseq;
    int *gstart = s->gstart;
    gstart[0] = 0;
    for (int g = 1; g <= ng; g++) gstart[g] = nseq;
    double acc = 0;
    for (int i = 0, g = 1; i < nseq && g < ng; i++) {
        acc += lens[i] * (per_tok + per_pair * lens[i]);
        if (acc >= total * g / ng) gstart[g++] = i + 1;
    }

#pragma omp parallel for num_threads(ng) schedule(static, 1) if (ng > 1)
    for (int g = 0; g < ng; g++) {
        const int s0 = gstart[g], s1 = gstart[g + 1];
        const int r0 = start[s0], M = start[s1] - r0;
        float *kt = s->scores + (size_t)g * s->max_len * (dh + 1), *srow = kt + (size_t)s->max_len * dh;
        float *xr = x + (size_t)r0 * H, *qkvr = qkv + (size_t)r0 * H3, *ctxr = ctx + (size_t)r0 * H;
        float *inr = inter + (size_t)r0 * NI;

        for (int r = r0; r < r0 + M; r++) {
            float *xe = x + (size_t)r * H;
            const float *we = m->word + (size_t)ids[r] * H, *pe = m->pos + (size_t)pos[r] * H;
            for (int j = 0; j < H; j++) xe[j] = we[j] + m->type0[j] + pe[j];
            layer_norm(xe, H, m->emb_ln_g, m->emb_ln_b, eps);
        }
        for (int l = 0; l < m->layers; l++) {
            const struct sbert_layer_weights *w = &m->layer[l];
            fill_rows(qkvr, M, H3, w->qkv_b);
            linear_acc(xr, M, H, w->qkv_w, H3, qkvr);
            for (int sq = s0; sq < s1; sq++)
                for (int h = 0; h < nh; h++) {
                    const float *base = qkv + (size_t)start[sq] * H3 + h * dh;
                    attend(base, base + H, base + 2 * H, H3, lens[sq], dh, scale,
                           ctx + (size_t)start[sq] * H + h * dh, H, kt, srow);
                }
            /* The residual stream x takes the bias and the products in place, then LayerNorm. */
            add_rows(xr, M, H, w->ao_b);
            linear_acc(ctxr, M, H, w->ao_w, H, xr);
            for (int r = 0; r < M; r++) layer_norm(xr + (size_t)r * H, H, w->ln1_g, w->ln1_b, eps);
            fill_rows(inr, M, NI, w->in_b);
            linear_acc(xr, M, H, w->in_w, NI, inr);
            gelu(inr, M * NI, m->act);
            add_rows(xr, M, H, w->out_b);
            linear_acc(inr, M, NI, w->out_w, H, xr);
            for (int r = 0; r < M; r++) layer_norm(xr + (size_t)r * H, H, w->ln2_g, w->ln2_b, eps);
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
