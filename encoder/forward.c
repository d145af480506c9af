/*
 * The BERT encoder forward pass in fp32 (HF transformers' BertModel, eval mode), then pooling.
 *
 * Sequences are packed back to back into one [tokens x hidden] matrix, so every dense layer is one
 * matrix product over real tokens only; attention, the one place tokens of a sequence meet, runs
 * per (sequence, head) within the sequence's own rows, which is exactly what BERT's padding mask
 * computes (masked scores get exp(-huge) = 0). Each thread calls single-threaded BLAS.
 *
 * Two ways to use the threads. With at least as many sequences as threads, threads take groups of
 * whole sequences and run them independently (no synchronisation). With fewer (a query: one short
 * text), that would leave threads idle while one core streams all the weights, and for a few rows
 * the weights' memory traffic is the cost; so every thread takes part in every layer instead:
 * dense layers split by output columns (contiguous rows of the [N x K] weight), attention by
 * (sequence, head), LayerNorm and embeddings by token rows (forward_split).
 */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <sched.h>
#include <stdatomic.h>
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
    if (m->precision == SBERT_PRECISION_INT8) {
        s->xq = malloc(T * H);
        s->ctxq = malloc(T * H);
        s->inq = malloc(T * NI);
        s->xs = malloc(T * sizeof(float));
        s->ctxs = malloc(T * sizeof(float));
        s->ins = malloc(T * sizeof(float));
        s->tile = malloc((size_t)n_threads * SBERT_QTILE_ROWS * SBERT_QTILE_COLS * sizeof(int32_t));
        if (!s->xq || !s->ctxq || !s->inq || !s->xs || !s->ctxs || !s->ins || !s->tile) {
            sbert_fwd_scratch_free(s);
            return SBERT_ENOMEM;
        }
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
    free(s->xq);
    free(s->ctxq);
    free(s->inq);
    free(s->xs);
    free(s->ctxs);
    free(s->ins);
    free(s->tile);
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
void sbert_layer_norm(float *restrict x, int n, const float *restrict g, const float *restrict b,
                      float eps)
{
    float sum = 0, ss = 0;
#pragma omp simd reduction(+ : sum)
    for (int i = 0; i < n; i++)
        sum += x[i];
    const float mean = sum / (float)n;
#pragma omp simd reduction(+ : ss)
    for (int i = 0; i < n; i++)
        ss += (x[i] - mean) * (x[i] - mean);
    const float r = 1.0f / sqrtf(ss / (float)n + eps);
#pragma omp simd
    for (int i = 0; i < n; i++)
        x[i] = (x[i] - mean) * r * g[i] + b[i];
}

/* y = act(y) over n values: exact erf GELU (hidden_act "gelu") or the tanh form. */
void sbert_gelu(float *restrict y, int n, int act)
{
    if (act == SBERT_ACT_GELU_ERF) {
#pragma omp simd
        for (int i = 0; i < n; i++)
            y[i] = 0.5f * y[i] * (1.0f + erff(y[i] * 0.70710678118654752f));
    } else {
#pragma omp simd
        for (int i = 0; i < n; i++) {
            float x = y[i], u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
            y[i] = 0.5f * x * (1.0f + tanhf(u));
        }
    }
}

/* Fills M rows of width n (row stride ld) with the bias row b (products then accumulate onto it).
 */
static void fill_rows(float *restrict y, int M, int n, int ld, const float *restrict b)
{
    for (int r = 0; r < M; r++)
        memcpy(y + (size_t)r * ld, b, (size_t)n * sizeof *y);
}

/* Adds the bias row b to M rows of width n (row stride ld). */
static void add_rows(float *restrict y, int M, int n, int ld, const float *restrict b)
{
    for (int r = 0; r < M; r++) {
        float *restrict yr = y + (size_t)r * ld;
#pragma omp simd
        for (int j = 0; j < n; j++)
            yr[j] += b[j];
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
 * y[M x N] += x[M x K] * W^T for few rows (one short text); y's row stride is ldy. sgemm packs all
 * of W for every call, which for a handful of rows costs more than the arithmetic; this streams W
 * once, two x rows against four W rows at a time (8 accumulators, 6 loads per 8 FMAs). K must be a
 * multiple of 8. Each output element's sum runs in the same order whatever M, N and the slice of W
 * are, so splitting the columns between threads changes no bit.
 */
static void small_gemm(const float *x, int M, int K, const float *w, int N, float *y, int ldy)
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
            float *ya = y + (size_t)m * ldy + n, *yb = ya + ldy;
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
            float *ya = y + (size_t)m * ldy + n;
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
            y[(size_t)m * ldy + n] += hsum(a0);
        }
}
#endif

/*
 * y[M x N] += x[M x K] * W^T for W stored [N x K] (torch Linear layout), y with row stride ldy.
 * Columns n0..n1 of a wider product are w + n0 * K and y + n0 with N = n1 - n0.
 */
static void linear_acc(const float *x, int M, int K, const float *w, int N, float *y, int ldy)
{
    if (M <= 0 || N <= 0) return;
#if defined(__AVX2__) && defined(__FMA__)
    if (M <= SMALL_M && K % 8 == 0) {
        small_gemm(x, M, K, w, N, y, ldy);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 1.0f, y, ldy);
}

/*
 * Softmax attention for one head of one sequence of L tokens. q, k, v point at the head's first
 * column in the packed [T x 3H] matrix (row stride ld), ctx at its column in [T x H] (stride ldc).
 * kt is scratch of dh * L floats (K transposed, so each score row is a run of contiguous
 * multiply-adds), s of L floats.
 */
void sbert_attend(const float *q, const float *k, const float *v, int ld, int L, int dh,
                  float scale, float *restrict ctx, int ldc, float *restrict kt, float *restrict s)
{
    for (int j = 0; j < L; j++)
        for (int d = 0; d < dh; d++)
            kt[(size_t)d * L + j] = k[(size_t)j * ld + d];
    for (int i = 0; i < L; i++) {
        const float *qi = q + (size_t)i * ld;
        for (int j = 0; j < L; j++)
            s[j] = 0;
        for (int d = 0; d < dh; d++) {
            const float qd = qi[d] * scale;
            const float *restrict kd = kt + (size_t)d * L;
#pragma omp simd
            for (int j = 0; j < L; j++)
                s[j] += qd * kd[j];
        }
        float mx = s[0], sum = 0;
        for (int j = 1; j < L; j++)
            mx = s[j] > mx ? s[j] : mx;
#pragma omp simd
        for (int j = 0; j < L; j++)
            s[j] = expf(s[j] - mx);
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < L; j++)
            sum += s[j];
        const float inv = 1.0f / sum;
        float *restrict c = ctx + (size_t)i * ldc;
        for (int d = 0; d < dh; d++)
            c[d] = 0;
        for (int j = 0; j < L; j++) {
            const float p = s[j] * inv;
            const float *restrict vj = v + (size_t)j * ld;
#pragma omp simd
            for (int d = 0; d < dh; d++)
                c[d] += p * vj[d];
        }
    }
}

/* x rows r0..r1 = LayerNorm(word + position + token type 0 embeddings) of their tokens. */
void sbert_embed_rows(const struct sbert_model *m, const int32_t *ids, const int *pos, float *x,
                      int r0, int r1)
{
    const int H = m->hidden;
    for (int r = r0; r < r1; r++) {
        float *xe = x + (size_t)r * H;
        const float *we = m->word + (size_t)ids[r] * H, *pe = m->pos + (size_t)pos[r] * H;
        for (int j = 0; j < H; j++)
            xe[j] = we[j] + m->type0[j] + pe[j];
        sbert_layer_norm(xe, H, m->emb_ln_g, m->emb_ln_b, m->ln_eps);
    }
}

/*
 * The whole network over nseq >= n_threads sequences: they are split into at most n_threads
 * consecutive groups of about equal cost (dense layers grow with L, attention with L^2); each
 * thread runs every layer on its own group with no synchronisation at all, which also keeps it
 * fast when the cores are shared.
 */
static void forward_groups(const struct sbert_model *m, struct sbert_fwd_scratch *s,
                           const int32_t *ids, const int *lens, int nseq)
{
    const int H = m->hidden, NI = m->inter, nh = m->heads, dh = H / nh, H3 = 3 * H;
    const float scale = 1.0f / sqrtf((float)dh), eps = m->ln_eps;
    const int *start = s->start;
    float *x = s->x, *qkv = s->qkv, *ctx = s->ctx, *inter = s->inter;

    const double per_tok = 8.0 * H * H + 4.0 * H * NI, per_pair = 4.0 * H;
    double total = 0;
    for (int i = 0; i < nseq; i++)
        total += lens[i] * (per_tok + per_pair * lens[i]);
    int ng = s->n_threads < nseq ? s->n_threads : nseq;
    int *gstart = s->gstart;
    gstart[0] = 0;
    for (int g = 1; g <= ng; g++)
        gstart[g] = nseq;
    double acc = 0;
    for (int i = 0, g = 1; i < nseq && g < ng; i++) {
        acc += lens[i] * (per_tok + per_pair * lens[i]);
        if (acc >= total * g / ng) gstart[g++] = i + 1;
    }

#pragma omp parallel for num_threads(ng) schedule(static, 1) if (ng > 1)
    for (int g = 0; g < ng; g++) {
        const int s0 = gstart[g], s1 = gstart[g + 1];
        const int r0 = start[s0], M = start[s1] - r0;
        float *kt = s->scores + (size_t)g * s->max_len * (dh + 1),
              *srow = kt + (size_t)s->max_len * dh;
        float *xr = x + (size_t)r0 * H, *qkvr = qkv + (size_t)r0 * H3, *ctxr = ctx + (size_t)r0 * H;
        float *inr = inter + (size_t)r0 * NI;

        sbert_embed_rows(m, ids, s->pos, x, r0, r0 + M);
        for (int l = 0; l < m->layers; l++) {
            const struct sbert_layer_weights *w = &m->layer[l];
            fill_rows(qkvr, M, H3, H3, w->qkv_b);
            linear_acc(xr, M, H, w->qkv_w, H3, qkvr, H3);
            for (int sq = s0; sq < s1; sq++)
                for (int h = 0; h < nh; h++) {
                    const float *base = qkv + (size_t)start[sq] * H3 + h * dh;
                    sbert_attend(base, base + H, base + 2 * H, H3, lens[sq], dh, scale,
                                 ctx + (size_t)start[sq] * H + h * dh, H, kt, srow);
                }
            /* The residual stream x takes the bias and the products in place, then LayerNorm. */
            add_rows(xr, M, H, H, w->ao_b);
            linear_acc(ctxr, M, H, w->ao_w, H, xr, H);
            for (int r = 0; r < M; r++)
                sbert_layer_norm(xr + (size_t)r * H, H, w->ln1_g, w->ln1_b, eps);
            fill_rows(inr, M, NI, NI, w->in_b);
            linear_acc(xr, M, H, w->in_w, NI, inr, NI);
            sbert_gelu(inr, M * NI, m->act);
            add_rows(xr, M, H, H, w->out_b);
            linear_acc(inr, M, NI, w->out_w, H, xr, H);
            for (int r = 0; r < M; r++)
                sbert_layer_norm(xr + (size_t)r * H, H, w->ln2_g, w->ln2_b, eps);
        }
    }
}

/*
 * The split pass is a fixed sequence of steps (embeddings, then per layer: QKV, attention, output
 * dense, LayerNorm, intermediate dense + GELU, output dense, LayerNorm), each cut into chunks that
 * need only earlier steps' results. Chunks are numbered across the whole pass and claimed in that
 * order from one counter; a chunk of step k starts once `done` (chunks finished) reaches the
 * number of chunks before step k. Since a chunk only starts after every chunk before its step has
 * finished, `done` cannot count a later step's chunk while an earlier one is unfinished. Unlike a
 * barrier per step, a thread that the OS has descheduled (shared cores, the daemon's other work)
 * holds nobody up unless it holds an unfinished chunk: the running threads take the rest.
 */
enum { COLS = 32, ROWS = 8 }; /* chunk sizes: output columns of a dense layer; token rows */
enum { ST_QKV, ST_ATT, ST_AO, ST_LN1, ST_IN, ST_OUT, ST_LN2, ST_N };

struct split_pass {
    atomic_int next, done;
    int n_emb;         /* embedding chunks, before the first layer */
    int cnt[ST_N];     /* chunks of each step of a layer */
    int off[ST_N + 1]; /* first chunk of each step within a layer; off[ST_N] per layer */
    int total;
};

static int ceil_div(int a, int b)
{
    return (a + b - 1) / b;
}

/* Waits until `done` reaches need; yields the core soon, since the chunk it waits for may belong
 * to a thread that is not running. */
static void wait_done(atomic_int *done, int need)
{
    for (int spin = 0; atomic_load_explicit(done, memory_order_acquire) < need; spin++)
        if (spin >= 64) sched_yield();
}

/*
 * The whole network over nseq < n_threads sequences with every thread in every step: dense layers
 * split by output columns (a chunk reads only its rows of W, so the threads share the weights'
 * memory traffic), attention by (sequence, head), LayerNorm and embeddings by rows. Each chunk's
 * arithmetic is the same whichever thread runs it, so results do not depend on the thread count.
 */
static void forward_split(const struct sbert_model *m, struct sbert_fwd_scratch *s,
                          const int32_t *ids, const int *lens, int nseq)
{
    const int H = m->hidden, NI = m->inter, nh = m->heads, dh = H / nh, H3 = 3 * H;
    const float scale = 1.0f / sqrtf((float)dh), eps = m->ln_eps;
    const int *start = s->start, M = start[nseq];
    float *x = s->x, *qkv = s->qkv, *ctx = s->ctx, *inter = s->inter;

    struct split_pass sp = {.n_emb = ceil_div(M, ROWS)};
    atomic_init(&sp.next, 0);
    atomic_init(&sp.done, 0);
    sp.cnt[ST_QKV] = ceil_div(H3, COLS);
    sp.cnt[ST_ATT] = nseq * nh;
    sp.cnt[ST_AO] = sp.cnt[ST_OUT] = ceil_div(H, COLS);
    sp.cnt[ST_LN1] = sp.cnt[ST_LN2] = ceil_div(M, ROWS);
    sp.cnt[ST_IN] = ceil_div(NI, COLS);
    for (int k = 0; k < ST_N; k++)
        sp.off[k + 1] = sp.off[k] + sp.cnt[k];
    sp.total = sp.n_emb + m->layers * sp.off[ST_N];

#pragma omp parallel num_threads(s->n_threads)
    {
        const int t = omp_get_thread_num();
        float *kt = s->scores + (size_t)t * s->max_len * (dh + 1),
              *srow = kt + (size_t)s->max_len * dh;
        for (int g;
             (g = atomic_fetch_add_explicit(&sp.next, 1, memory_order_relaxed)) < sp.total;) {
            if (g < sp.n_emb) {
                const int r0 = g * ROWS, r1 = r0 + ROWS < M ? r0 + ROWS : M;
                sbert_embed_rows(m, ids, s->pos, x, r0, r1);
                atomic_fetch_add_explicit(&sp.done, 1, memory_order_release);
                continue;
            }
            const int l = (g - sp.n_emb) / sp.off[ST_N], in_l = (g - sp.n_emb) % sp.off[ST_N];
            int k = 0;
            while (in_l >= sp.off[k + 1])
                k++;
            const int c = in_l - sp.off[k];
            wait_done(&sp.done, sp.n_emb + l * sp.off[ST_N] + sp.off[k]);

            const struct sbert_layer_weights *w = &m->layer[l];
            const int r0 = c * ROWS, r1 = r0 + ROWS < M ? r0 + ROWS : M;
            int c0 = c * COLS, c1 = c0 + COLS;
            switch (k) {
            case ST_QKV:
                c1 = c1 < H3 ? c1 : H3;
                fill_rows(qkv + c0, M, c1 - c0, H3, w->qkv_b + c0);
                linear_acc(x, M, H, w->qkv_w + (size_t)c0 * H, c1 - c0, qkv + c0, H3);
                break;
            case ST_ATT: {
                const int sq = c / nh, h = c % nh;
                const float *base = qkv + (size_t)start[sq] * H3 + h * dh;
                sbert_attend(base, base + H, base + 2 * H, H3, lens[sq], dh, scale,
                             ctx + (size_t)start[sq] * H + h * dh, H, kt, srow);
                break;
            }
            case ST_AO:
            case ST_OUT: {
                /* The residual stream x takes the bias and the products in place. */
                const float *in = k == ST_AO ? ctx : inter, *wt = k == ST_AO ? w->ao_w : w->out_w;
                const int K = k == ST_AO ? H : NI;
                c1 = c1 < H ? c1 : H;
                add_rows(x + c0, M, c1 - c0, H, (k == ST_AO ? w->ao_b : w->out_b) + c0);
                linear_acc(in, M, K, wt + (size_t)c0 * K, c1 - c0, x + c0, H);
                break;
            }
            case ST_LN1:
            case ST_LN2:
                for (int r = r0; r < r1; r++)
                    sbert_layer_norm(x + (size_t)r * H, H, k == ST_LN1 ? w->ln1_g : w->ln2_g,
                                     k == ST_LN1 ? w->ln1_b : w->ln2_b, eps);
                break;
            default: /* ST_IN */
                c1 = c1 < NI ? c1 : NI;
                fill_rows(inter + c0, M, c1 - c0, NI, w->in_b + c0);
                linear_acc(x, M, H, w->in_w + (size_t)c0 * H, c1 - c0, inter + c0, NI);
                for (int r = 0; r < M; r++)
                    sbert_gelu(inter + (size_t)r * NI + c0, c1 - c0, m->act);
                break;
            }
            atomic_fetch_add_explicit(&sp.done, 1, memory_order_release);
        }
    }
}

void sbert_forward(const struct sbert_model *m, struct sbert_fwd_scratch *s, const int32_t *ids,
                   const int *lens, int nseq, float *out)
{
    const int H = m->hidden;
    int *start = s->start, *pos = s->pos;
    start[0] = 0;
    for (int i = 0; i < nseq; i++) {
        start[i + 1] = start[i] + lens[i];
        for (int p = 0; p < lens[i]; p++)
            pos[start[i] + p] = p;
    }
    if (m->precision == SBERT_PRECISION_INT8)
        sbert_forward_int8(m, s, ids, lens, nseq);
    else if (nseq < s->n_threads)
        forward_split(m, s, ids, lens, nseq);
    else
        forward_groups(m, s, ids, lens, nseq);
    const float *x = s->x;

    for (int i = 0; i < nseq; i++) {
        float *o = out + (size_t)i * H;
        const float *xs = x + (size_t)start[i] * H;
        if (m->info.pooling == SBERT_POOL_CLS) {
            memcpy(o, xs, (size_t)H * sizeof *o);
        } else if (m->info.pooling == SBERT_POOL_MAX) {
            memcpy(o, xs, (size_t)H * sizeof *o);
            for (int p = 1; p < lens[i]; p++)
                for (int j = 0; j < H; j++)
                    o[j] = xs[(size_t)p * H + j] > o[j] ? xs[(size_t)p * H + j] : o[j];
        } else {
            memset(o, 0, (size_t)H * sizeof *o);
            for (int p = 0; p < lens[i]; p++)
                for (int j = 0; j < H; j++)
                    o[j] += xs[(size_t)p * H + j];
            for (int j = 0; j < H; j++)
                o[j] /= (float)lens[i];
        }
        if (m->info.normalize) {
            double n2 = 0;
            for (int j = 0; j < H; j++)
                n2 += (double)o[j] * o[j];
            float inv = 1.0f / fmaxf((float)sqrt(n2), 1e-12f);
            for (int j = 0; j < H; j++)
                o[j] *= inv;
        }
    }
}
