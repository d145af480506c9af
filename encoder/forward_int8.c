/*
 * The transformer layers with int8 dense layers (sbert.h, SBERT_PRECISION_INT8; quant.h).
 *
 * Each dense layer's input is held twice: fp32 where the fp32 ops need it and s8 with one scale
 * per row, written by the op that finishes the row (embeddings and LayerNorm quantise their own
 * output row; the attention context and the GELU output are quantised row by row once complete).
 * A dense layer's int32 sums for a tile of SBERT_QTILE_ROWS x SBERT_QTILE_COLS go to a per-thread
 * buffer that stays in L1, and are turned at once into fp32 with the row's and channel's scales
 * plus the bias (and GELU, or the residual add), so the tile is read once while hot. That
 * epilogue is plain C shared by every kernel: the kernels' int32 sums being exact, the whole
 * pass is bit-identical whichever kernel runs.
 *
 * Scheduling is forward.c's forward_split for every batch: the pass is a fixed list of steps,
 * each cut into chunks numbered across the whole pass and claimed from one counter; a chunk
 * waits only until every chunk of the earlier steps is done. A dense step's chunks are tiles
 * (row block x column block), so one text's layer is shared by the threads, and a batch's too.
 * Every chunk's arithmetic is the same whichever thread runs it, and a row's results depend only
 * on that row (and its sequence's rows in attention): results do not depend on the thread count
 * or the batch.
 */
#include "model.h"

#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

enum { RB = SBERT_QTILE_ROWS, CB = SBERT_QTILE_COLS, ROWS = 8 };
enum { ST_QKV, ST_ATT, ST_QCTX, ST_AO, ST_LN1, ST_IN, ST_QIN, ST_OUT, ST_LN2, ST_N };
enum { EPI_STORE, EPI_RESIDUAL, EPI_GELU }; /* what a dense tile does with its sums */

struct pass {
    const struct sbert_model *m;
    struct sbert_fwd_scratch *s;
    const int32_t *ids;
    const int *lens;
    int nseq, M, nrb; /* sequences, token rows, row blocks of RB */
    atomic_int next, done;
    int n_emb;         /* embedding chunks, before the first layer */
    int cnt[ST_N];     /* chunks of each step of a layer */
    int off[ST_N + 1]; /* first chunk of each step within a layer; off[ST_N] per layer */
    int total;
};

static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Waits until `done` reaches need; yields the core soon, since the chunk it waits for may belong
 * to a thread that is not running. */
static void wait_done(atomic_int *done, int need)
{
    for (int spin = 0; atomic_load_explicit(done, memory_order_acquire) < need; spin++)
        if (spin >= 64) sched_yield();
}

/*
 * Tile c of a dense layer: rows of row block c / (column blocks), columns of the rest, of
 * y = dequant(a * W^T) + bias, then stored, added to y (the residual stream) or put through GELU.
 */
static void dense_tile(const struct pass *p, int t, const struct sbert_qweight *w, const int8_t *a,
                       const float *as, int c, float *y, int ldy, int epi)
{
    const int ncb = ceil_div(w->n, CB);
    const int r0 = c / ncb * RB, r1 = r0 + RB < p->M ? r0 + RB : p->M;
    const int c0 = c % ncb * CB, c1 = c0 + CB < w->n ? c0 + CB : w->n;
    const int c1p = c0 + CB < w->np ? c0 + CB : w->np;
    int32_t *tile = p->s->tile + (size_t)t * RB * CB;
    p->m->qgemm(a + (size_t)r0 * w->k, (size_t)w->k, r1 - r0, w, c0, c1p, tile, CB);
    const float *ws = w->scale + c0, *b = w->bias + c0;
    const int n = c1 - c0;
    for (int r = r0; r < r1; r++) {
        const int32_t *acc = tile + (size_t)(r - r0) * CB;
        float *yr = y + (size_t)r * ldy + c0;
        const float sa = as[r];
        if (epi == EPI_RESIDUAL) {
#pragma omp simd
            for (int j = 0; j < n; j++) yr[j] += (float)acc[j] * (sa * ws[j]) + b[j];
        } else {
#pragma omp simd
            for (int j = 0; j < n; j++) yr[j] = (float)acc[j] * (sa * ws[j]) + b[j];
            if (epi == EPI_GELU) sbert_gelu(yr, n, p->m->act);
        }
    }
}

/*
 * Rows r0..r1 of x (width k) quantised for dense layer `which` of layer l (with its smoothing, if
 * any); nothing when l is past the last layer (its output has no int8 consumer). While the model is being calibrated
 * (m->calib, one thread), records the largest |x| of each channel in the consumer's slot.
 */
static void quantize_rows(const struct sbert_model *m, int l, int which, const float *x, int k,
                          int r0, int r1, int8_t *q, float *qs)
{
    if (l >= m->layers) return;
    const struct sbert_layer_weights *lw = &m->layer[l];
    const struct sbert_qweight *to = which == SBERT_Q_QKV  ? &lw->q_qkv
                                     : which == SBERT_Q_AO ? &lw->q_ao
                                     : which == SBERT_Q_IN ? &lw->q_in
                                                           : &lw->q_out;
    if (m->calib) {
        float *amax = m->calib + ((size_t)l * SBERT_Q_N + (size_t)which) * (size_t)m->calib_width;
        for (int r = r0; r < r1; r++)
            for (int i = 0; i < k; i++) amax[i] = fmaxf(amax[i], fabsf(x[(size_t)r * k + i]));
    }
    for (int r = r0; r < r1; r++)
        qs[r] = sbert_quantize_row_mul(x + (size_t)r * k, to->smooth, k, q + (size_t)r * k);
}

static void run_chunk(const struct pass *p, int t, int g)
{
    const struct sbert_model *m = p->m;
    struct sbert_fwd_scratch *s = p->s;
    const int H = m->hidden, NI = m->inter, nh = m->heads, dh = H / nh, H3 = 3 * H, M = p->M;
    if (g < p->n_emb) {
        const int r0 = g * ROWS, r1 = r0 + ROWS < M ? r0 + ROWS : M;
        sbert_embed_rows(m, p->ids, s->pos, s->x, r0, r1);
        quantize_rows(m, 0, SBERT_Q_QKV, s->x, H, r0, r1, s->xq, s->xs);
        return;
    }
    const int l = (g - p->n_emb) / p->off[ST_N], in_l = (g - p->n_emb) % p->off[ST_N];
    int k = 0;
    while (in_l >= p->off[k + 1]) k++;
    const int c = in_l - p->off[k];
    wait_done((atomic_int *)&p->done, p->n_emb + l * p->off[ST_N] + p->off[k]);

    const struct sbert_layer_weights *w = &m->layer[l];
    const int r0 = c * ROWS, r1 = r0 + ROWS < M ? r0 + ROWS : M;
    switch (k) {
    case ST_QKV: dense_tile(p, t, &w->q_qkv, s->xq, s->xs, c, s->qkv, H3, EPI_STORE); break;
    case ST_ATT: {
        const int sq = c / nh, h = c % nh;
        const float *base = s->qkv + (size_t)s->start[sq] * H3 + h * dh;
        float *kt = s->scores + (size_t)t * s->max_len * (dh + 1), *srow = kt + (size_t)s->max_len * dh;
        sbert_attend(base, base + H, base + 2 * H, H3, p->lens[sq], dh, 1.0f / sqrtf((float)dh),
                     s->ctx + (size_t)s->start[sq] * H + h * dh, H, kt, srow);
        break;
    }
    case ST_QCTX: quantize_rows(m, l, SBERT_Q_AO, s->ctx, H, r0, r1, s->ctxq, s->ctxs); break;
    case ST_AO: dense_tile(p, t, &w->q_ao, s->ctxq, s->ctxs, c, s->x, H, EPI_RESIDUAL); break;
    case ST_IN: dense_tile(p, t, &w->q_in, s->xq, s->xs, c, s->inter, NI, EPI_GELU); break;
    case ST_QIN: quantize_rows(m, l, SBERT_Q_OUT, s->inter, NI, r0, r1, s->inq, s->ins); break;
    case ST_OUT: dense_tile(p, t, &w->q_out, s->inq, s->ins, c, s->x, H, EPI_RESIDUAL); break;
    default: /* ST_LN1, ST_LN2: LayerNorm, then the s8 copy for the next dense layer */
        for (int r = r0; r < r1; r++)
            sbert_layer_norm(s->x + (size_t)r * H, H, k == ST_LN1 ? w->ln1_g : w->ln2_g,
                             k == ST_LN1 ? w->ln1_b : w->ln2_b, m->ln_eps);
        if (k == ST_LN1)
            quantize_rows(m, l, SBERT_Q_IN, s->x, H, r0, r1, s->xq, s->xs);
        else
            quantize_rows(m, l + 1, SBERT_Q_QKV, s->x, H, r0, r1, s->xq, s->xs);
        break;
    }
}

static void worker(void *arg, int t, int n)
{
    (void)n;
    struct pass *p = arg;
    for (int g; (g = atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed)) < p->total;) {
        run_chunk(p, t, g);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

void sbert_forward_int8(const struct sbert_model *m, struct sbert_fwd_scratch *s,
                        const int32_t *ids, const int *lens, int nseq)
{
    const int H = m->hidden, NI = m->inter, M = s->start[nseq];
    struct pass p = {.m = m, .s = s, .ids = ids, .lens = lens, .nseq = nseq, .M = M};
    p.nrb = ceil_div(M, RB);
    p.n_emb = ceil_div(M, ROWS);
    atomic_init(&p.next, 0);
    atomic_init(&p.done, 0);
    p.cnt[ST_QKV] = p.nrb * ceil_div(3 * H, CB);
    p.cnt[ST_ATT] = nseq * m->heads;
    p.cnt[ST_AO] = p.cnt[ST_OUT] = p.nrb * ceil_div(H, CB);
    p.cnt[ST_IN] = p.nrb * ceil_div(NI, CB);
    p.cnt[ST_QCTX] = p.cnt[ST_LN1] = p.cnt[ST_QIN] = p.cnt[ST_LN2] = ceil_div(M, ROWS);
    for (int k = 0; k < ST_N; k++) p.off[k + 1] = p.off[k] + p.cnt[k];
    p.total = p.n_emb + m->layers * p.off[ST_N];
    sbert_pool_run(m->pool, s->n_threads, worker, &p);
}
